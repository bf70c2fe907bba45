/* check_broker_local.c - the in-process broker against a fake environment: a publish reaches
 * the other workers through env->bus (every worker but its own, all or none) and its own hub
 * directly; a refusal by the bus is counted and reported to the publisher; without a bus (a
 * lone hub) nothing is posted. A large message goes as one shared frame (bus.publish_frame); a
 * channel with history is appended between the bus's reservations and its posts
 * (bus.publish_commit), and not at all when the bus refuses it. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "broker.h"
#include "env.h"
#include "history.h"
#include "history_store.h"
#include "hub.h"
#include "metrics.h"

static struct {
	int calls, refuse;
	uint64_t mask;
	char channel[32];
	size_t len;
} bus;

static int
fake_publish(void *arg, uint64_t mask, const char *channel, size_t clen, const uint8_t *data,
             size_t len, size_t *refuser)
{
	(void)arg;
	(void)data;
	bus.calls++;
	bus.mask = mask;
	snprintf(bus.channel, sizeof(bus.channel), "%.*s", (int)clen, channel);
	bus.len = len;
	if (bus.refuse) {
		*refuser = 3;
		return -1;
	}
	return 0;
}

static struct {
	int calls, refuse, committed;
	uint64_t mask;
	size_t len, plen;
	uint8_t head[HISTORY_WIRE_MAGIC_LEN];
} more;

static int
fake_publish_frame(void *arg, uint64_t mask, const char *channel, size_t clen, struct hub_frame *f,
                   int is_text, size_t *refuser)
{
	(void)arg;
	(void)channel;
	(void)clen;
	(void)is_text;
	more.calls++;
	more.mask = mask;
	more.plen = f->plen;
	if (more.refuse) {
		*refuser = 1;
		return -1;
	}
	return 0;
}

static int
fake_publish_commit(void *arg, uint64_t mask, const char *channel, size_t clen, const uint8_t *data,
                    size_t len, int (*commit)(void *carg), void *carg, size_t *refuser)
{
	(void)arg;
	(void)channel;
	(void)clen;
	more.calls++;
	more.mask = mask;
	more.len = len;
	memcpy(more.head, data, len < sizeof(more.head) ? len : sizeof(more.head));
	if (more.refuse) {
		*refuser = 1;
		return -1;
	}
	if (commit(carg) < 0) {
		*refuser = SIZE_MAX;
		return -1;
	}
	more.committed++;
	return 0;
}

static void
sink(struct conn *c, struct hub_frame *f)
{
	(void)c;
	(void)f;
}

static struct env env;
static struct worker_stats stats;
static struct hub *hub;
static struct broker *b;
/* Workers 0 and 5, whose hubs have subscribers of "chat" and "news": a publish from worker 2
 * is posted to those two only. */
static struct env env0, env5;
static struct broker *b0, *b5;
#define OTHERS (((uint64_t)1 << 0) | ((uint64_t)1 << 5))

static void
setup(void)
{
	memset(&bus, 0, sizeof(bus));
	memset(&more, 0, sizeof(more));
	memset(&env, 0, sizeof(env));
	memset(&stats, 0, sizeof(stats));
	env.id = 2;
	env.stats = &stats;
	env.bus.publish = fake_publish;
	hub = hub_new(sink);
	ck_assert_ptr_nonnull(hub);
	b = broker_local_new(hub, &env);
	ck_assert_ptr_nonnull(b);
	hub_set_broker(hub, b);
	memset(&env0, 0, sizeof(env0));
	memset(&env5, 0, sizeof(env5));
	env0.id = 0;
	env5.id = 5;
	b0 = broker_local_new(hub, &env0);
	b5 = broker_local_new(hub, &env5);
	ck_assert_ptr_nonnull(b0);
	ck_assert_ptr_nonnull(b5);
	ck_assert_int_eq(b0->ops->subscribe(b0, "chat", 4), 0);
	ck_assert_int_eq(b5->ops->subscribe(b5, "chat", 4), 0);
	ck_assert_int_eq(b0->ops->subscribe(b0, "news", 4), 0);
	ck_assert_int_eq(b5->ops->subscribe(b5, "news", 4), 0);
}

static void
teardown(void)
{
	b0->ops->unsubscribe(b0, "chat", 4);
	b5->ops->unsubscribe(b5, "chat", 4);
	b0->ops->unsubscribe(b0, "news", 4);
	b5->ops->unsubscribe(b5, "news", 4);
	b0->ops->free(b0);
	b5->ops->free(b5);
	b->ops->free(b);
	hub_free(hub);
}

START_TEST(test_publish_goes_to_every_other_worker)
{
	ck_assert_int_eq(b->ops->publish(b, "chat", 4, (const uint8_t *)"hello", 5), 0);
	ck_assert_int_eq(bus.calls, 1);
	ck_assert_uint_eq(bus.mask, OTHERS); /* the other workers with subscribers */
	ck_assert_str_eq(bus.channel, "chat");
	ck_assert_uint_eq(bus.len, 5);
	ck_assert_uint_eq(stats.broadcasts_refused, 0);
	ck_assert_int_eq(b->ops->ready(b), 1);
}
END_TEST

/* A worker whose hub has no subscriber of the channel gets no copy: none at all for a channel
 * only this worker has, one fewer once worker 0's last subscriber leaves. */
START_TEST(test_publish_only_to_workers_with_subscribers)
{
	ck_assert_int_eq(b->ops->subscribe(b, "mine", 4), 0);
	ck_assert_int_eq(b->ops->publish(b, "mine", 4, (const uint8_t *)"x", 1), 0);
	ck_assert_uint_eq(bus.mask, 0); /* not even to itself through the bus */
	b->ops->unsubscribe(b, "mine", 4);
	b0->ops->unsubscribe(b0, "chat", 4);
	ck_assert_int_eq(b->ops->publish(b, "chat", 4, (const uint8_t *)"x", 1), 0);
	ck_assert_uint_eq(bus.mask, (uint64_t)1 << 5);
	ck_assert_int_eq(b0->ops->subscribe(b0, "chat", 4), 0);
	ck_assert_int_eq(b->ops->publish(b, "chat", 4, (const uint8_t *)"x", 1), 0);
	ck_assert_uint_eq(bus.mask, OTHERS);
}
END_TEST

START_TEST(test_refusal_is_counted_and_reported)
{
	bus.refuse = 1;
	ck_assert_int_eq(b->ops->publish(b, "chat", 4, (const uint8_t *)"x", 1), -1);
	ck_assert_int_eq(b->ops->publish(b, "chat", 4, (const uint8_t *)"x", 1), -1);
	ck_assert_uint_eq(stats.broadcasts_refused, 2);
}
END_TEST

START_TEST(test_lone_hub_posts_nothing)
{
	struct broker *lone = broker_local_new(hub, NULL);

	ck_assert_ptr_nonnull(lone);
	ck_assert_int_eq(lone->ops->publish(lone, "chat", 4, (const uint8_t *)"x", 1), 0);
	ck_assert_int_eq(bus.calls, 0);
	ck_assert_int_eq(lone->ops->subscribe(lone, "chat", 4), 0);
	lone->ops->unsubscribe(lone, "chat", 4);
	lone->ops->free(lone);
}
END_TEST

START_TEST(test_large_message_is_one_shared_frame)
{
	size_t n = 300u << 10;
	uint8_t *big = malloc(n);

	ck_assert_ptr_nonnull(big);
	memset(big, 'a', n);
	env.bus.publish_frame = fake_publish_frame;
	ck_assert_int_eq(b->ops->publish(b, "chat", 4, big, n), 0);
	ck_assert_int_eq(more.calls, 1);
	ck_assert_int_eq(bus.calls, 0); /* no copy per mailbox */
	ck_assert_uint_eq(more.mask, OTHERS);
	ck_assert_uint_eq(more.plen, n);
	/* A small one is still copied. */
	ck_assert_int_eq(b->ops->publish(b, "chat", 4, big, 100), 0);
	ck_assert_int_eq(bus.calls, 1);
	ck_assert_int_eq(more.calls, 1);
	more.refuse = 1;
	ck_assert_int_eq(b->ops->publish(b, "chat", 4, big, n), -1);
	ck_assert_uint_eq(stats.broadcasts_refused, 1);
	free(big);
}
END_TEST

START_TEST(test_history_appended_only_when_every_worker_takes_it)
{
	struct history_store *st = history_store_new("t");
	struct history_chan *hc;
	struct history_pos cur;

	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(history_store_enable(st, "news", 4, 16, 0), 0);
	env.history = st;
	env.bus.publish_commit = fake_publish_commit;
	ck_assert_int_eq(b->ops->publish(b, "news", 4, (const uint8_t *)"hello", 5), 0);
	ck_assert_int_eq(more.committed, 1);
	ck_assert_uint_eq(more.mask, OTHERS);
	ck_assert_uint_gt(more.len, 5); /* the position travels as the wire prefix */
	ck_assert_mem_eq(more.head, HISTORY_WIRE_MAGIC, HISTORY_WIRE_MAGIC_LEN);
	more.refuse = 1;
	ck_assert_int_eq(b->ops->publish(b, "news", 4, (const uint8_t *)"again", 5), -1);
	ck_assert_uint_eq(stats.broadcasts_refused, 1);
	history_store_lock(st);
	hc = history_store_find(st, "news", 4);
	ck_assert_ptr_nonnull(hc);
	history_chan_current(hc, &cur);
	history_store_unlock(st);
	ck_assert_uint_eq(cur.off, 1); /* the refused message is not in history */
	/* A channel without history goes the plain way. */
	ck_assert_int_eq(b->ops->publish(b, "chat", 4, (const uint8_t *)"x", 1), 0);
	ck_assert_int_eq(bus.calls, 1);
	history_store_free(st);
}
END_TEST

static Suite *
broker_local_suite(void)
{
	Suite *s = suite_create("broker_local");
	TCase *tc = tcase_create("bus");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_publish_goes_to_every_other_worker);
	tcase_add_test(tc, test_publish_only_to_workers_with_subscribers);
	tcase_add_test(tc, test_refusal_is_counted_and_reported);
	tcase_add_test(tc, test_lone_hub_posts_nothing);
	tcase_add_test(tc, test_large_message_is_one_shared_frame);
	tcase_add_test(tc, test_history_appended_only_when_every_worker_takes_it);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(broker_local_suite());
}
