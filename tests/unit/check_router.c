/* check_router.c - unit tests for router.c, the process's table of which workers want each
 * Redis channel: one broker SUBSCRIBE per channel whichever and however many workers want it,
 * UNSUBSCRIBE only when the last worker leaves, masks per channel, the table growing past its
 * buckets, the resubscription walk seeing every channel once, and worker ids out of range
 * ignored. A counting broker stands in for Redis (no workers: delivery is integration-tested). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "broker.h"
#include "env.h"
#include "router.h"

struct count_broker {
	struct broker b;
	int subs, unsubs;
	char last[64];
};

static int
cb_subscribe(struct broker *b, const char *ch, size_t len)
{
	struct count_broker *cb = (struct count_broker *)b;

	cb->subs++;
	snprintf(cb->last, sizeof(cb->last), "%.*s", (int)len, ch);
	return 0;
}

static void
cb_unsubscribe(struct broker *b, const char *ch, size_t len)
{
	struct count_broker *cb = (struct count_broker *)b;

	cb->unsubs++;
	snprintf(cb->last, sizeof(cb->last), "-%.*s", (int)len, ch);
}

static const struct broker_ops count_ops = {"count", cb_subscribe, cb_unsubscribe,
                                            NULL,    NULL,         NULL};

static struct env env; /* no bus: a lone router */
static struct count_broker cbk;
static struct router *r;

static void
setup(void)
{
	memset(&env, 0, sizeof(env));
	memset(&cbk, 0, sizeof(cbk));
	cbk.b.ops = &count_ops;
	r = router_new(&env);
	ck_assert_ptr_nonnull(r);
	router_set_broker(r, &cbk.b);
}

static void
teardown(void)
{
	router_free(r);
}

/* Each row: a step (worker, subscribe or not, channel) and what the broker has seen after it. */
static const struct {
	int worker, on;
	const char *channel;
	int subs, unsubs;
	uint64_t mask; /* of that channel afterwards */
} steps[] = {
    {0, 1, "chat", 1, 0, 0x1}, /* first worker: the one SUBSCRIBE */
    {3, 1, "chat", 1, 0, 0x9}, /* another worker: no second one */
    {0, 1, "chat", 1, 0, 0x9}, /* again (a relay repeated): nothing changes */
    {63, 1, "chat", 1, 0, 0x8000000000000009ull},
    {1, 1, "room:a", 2, 0, 0x2}, /* another channel: its own SUBSCRIBE */
    {0, 0, "chat", 2, 0, 0x8000000000000008ull},
    {5, 0, "chat", 2, 0, 0x8000000000000008ull},  /* a worker that never wanted it */
    {64, 1, "chat", 2, 0, 0x8000000000000008ull}, /* out of range: ignored */
    {-1, 0, "chat", 2, 0, 0x8000000000000008ull},
    {3, 0, "chat", 2, 0, 0x8000000000000000ull},
    {63, 0, "chat", 2, 1, 0},  /* the last one leaves: UNSUBSCRIBE */
    {2, 0, "nobody", 2, 1, 0}, /* unknown channel: nothing */
    {2, 1, "chat", 3, 1, 0x4}, /* wanted again: SUBSCRIBE again */
    {1, 0, "room:a", 3, 2, 0},
};

START_TEST(one_subscribe_per_channel_table)
{
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		size_t len = strlen(steps[i].channel);

		if (steps[i].on)
			router_subscribe(r, steps[i].worker, steps[i].channel, len);
		else
			router_unsubscribe(r, steps[i].worker, steps[i].channel, len);
		ck_assert_msg(cbk.subs == steps[i].subs && cbk.unsubs == steps[i].unsubs,
		              "step %zu: %d subscribes, %d unsubscribes", i, cbk.subs, cbk.unsubs);
		ck_assert_msg(router_mask(r, steps[i].channel, len) == steps[i].mask,
		              "step %zu: mask %llx", i,
		              (unsigned long long)router_mask(r, steps[i].channel, len));
	}
	ck_assert_uint_eq(router_sink.nchannels(r), 1);
}
END_TEST

START_TEST(channel_names_are_bytes)
{
	/* Prefixes of each other and names with NUL bytes are different channels. */
	router_subscribe(r, 0, "a", 1);
	router_subscribe(r, 0, "ab", 2);
	router_subscribe(r, 0, "a\0b", 3);
	ck_assert_int_eq(cbk.subs, 3);
	router_unsubscribe(r, 0, "a\0b", 3);
	ck_assert_str_eq(cbk.last, "-a");
	ck_assert_uint_eq(router_mask(r, "a", 1), 1);
	ck_assert_uint_eq(router_mask(r, "ab", 2), 1);
	ck_assert_uint_eq(router_mask(r, "a\0b", 3), 0);
}
END_TEST

/* A channel is live once the last SUBSCRIBE sent for it is answered: an answer to one sent
 * before everyone left (and its UNSUBSCRIBE) is not taken for the one sent when it was wanted
 * again. The bug this guards: a client's 101 answered while Redis had not subscribed yet. */
START_TEST(live_after_the_last_subscribe_is_confirmed)
{
	router_subscribe_gen(r, 1, "x", 1, 7);
	ck_assert_int_eq(router_live(r, "x", 1), 0);
	router_unsubscribe(r, 1, "x", 1); /* left before the answer: kept, not counted */
	ck_assert_uint_eq(router_sink.nchannels(r), 0);
	router_subscribe_gen(r, 2, "x", 1, 9);
	ck_assert_int_eq(cbk.subs, 2);
	ck_assert_uint_eq(router_sink.nchannels(r), 1);
	router_sink.confirmed(r, "x", 1); /* the first SUBSCRIBE's answer */
	ck_assert_int_eq(router_live(r, "x", 1), 0);
	router_sink.confirmed(r, "x", 1);
	ck_assert_int_eq(router_live(r, "x", 1), 1);
	router_sink.confirmed(r, "x", 1); /* one too many (a stale context's): ignored */
	ck_assert_int_eq(router_live(r, "x", 1), 1);
	router_sink.confirmed(r, "unknown", 7);

	/* Everyone leaves before the answer, which then frees the channel. */
	router_subscribe(r, 0, "y", 1);
	router_unsubscribe(r, 0, "y", 1);
	ck_assert_uint_eq(router_mask(r, "y", 1), 0);
	router_sink.confirmed(r, "y", 1);
	ck_assert_int_eq(router_live(r, "y", 1), 0);
	router_subscribe(r, 0, "y", 1); /* a fresh entry: its own SUBSCRIBE to wait for */
	ck_assert_int_eq(router_live(r, "y", 1), 0);
	router_sink.confirmed(r, "y", 1);
	ck_assert_int_eq(router_live(r, "y", 1), 1);
}
END_TEST

/* A reconnect resubscribes every wanted channel: none is live until its new answer, and those
 * everyone left are dropped rather than subscribed on the new link. */
static void
ignore_name(void *arg, const char *name, size_t len)
{
	(void)name;
	(void)len;
	(*(int *)arg)++;
}

START_TEST(resubscription_waits_again)
{
	int walked = 0;

	router_subscribe(r, 0, "a", 1);
	router_sink.confirmed(r, "a", 1);
	router_subscribe(r, 0, "gone", 4);
	router_unsubscribe(r, 0, "gone", 4);
	ck_assert_int_eq(router_live(r, "a", 1), 1);
	router_sink.foreach_channel(r, ignore_name, &walked);
	ck_assert_int_eq(walked, 1);
	ck_assert_int_eq(router_live(r, "a", 1), 0);
	router_sink.confirmed(r, "a", 1);
	ck_assert_int_eq(router_live(r, "a", 1), 1);
	ck_assert_uint_eq(router_sink.nchannels(r), 1);
}
END_TEST

static void
count_name(void *arg, const char *name, size_t len)
{
	int *seen = arg;
	int i;

	ck_assert(len > 2 && memcmp(name, "c:", 2) == 0);
	i = atoi(name + 2);
	ck_assert(i >= 0 && i < 5000);
	seen[i]++;
}

START_TEST(many_channels_grow_and_walk_once)
{
	static int seen[5000];
	char name[32];

	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < 5000; i++) {
		int n = snprintf(name, sizeof(name), "c:%d", i);

		router_subscribe(r, i % 4, name, (size_t)n);
	}
	ck_assert_int_eq(cbk.subs, 5000);
	ck_assert_uint_eq(router_sink.nchannels(r), 5000);
	router_sink.foreach_channel(r, count_name, seen);
	for (int i = 0; i < 5000; i++)
		ck_assert_int_eq(seen[i], 1);
	for (int i = 0; i < 5000; i += 2) {
		int n = snprintf(name, sizeof(name), "c:%d", i);

		router_unsubscribe(r, i % 4, name, (size_t)n);
		ck_assert_uint_eq(router_mask(r, name, (size_t)n), 0);
	}
	ck_assert_int_eq(cbk.unsubs, 2500);
	ck_assert_uint_eq(router_sink.nchannels(r), 2500);
	ck_assert_uint_eq(router_mask(r, "c:4999", 6), (uint64_t)1 << 3);
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("router");
	TCase *tc = tcase_create("router");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, one_subscribe_per_channel_table);
	tcase_add_test(tc, channel_names_are_bytes);
	tcase_add_test(tc, live_after_the_last_subscribe_is_confirmed);
	tcase_add_test(tc, resubscription_waits_again);
	tcase_add_test(tc, many_channels_grow_and_walk_once);
	suite_add_tcase(su, tc);
	return check_runner_main(su);
}
