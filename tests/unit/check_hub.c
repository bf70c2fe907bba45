/* check_hub.c - unit tests for hub.c: reference-counted channels (one broker subscription per
 * channel), fan-out to every subscriber with one frame per opcode, message_type selection, and
 * frames kept by a subscriber surviving the delivery. A counting broker stands in for Redis. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "broker.h"
#include "conn.h"
#include "hub.h"
#include "ws_frame.h"

struct count_broker {
	struct broker b;
	int subs, unsubs;
	uint64_t gen; /* the hub's incarnation of the channel last subscribed */
	char last[64];
};

static int
cb_subscribe(struct broker *b, const char *ch, size_t len)
{
	struct count_broker *cb = (struct count_broker *)b;

	cb->subs++;
	cb->gen = hub_creating_gen(b->hub);
	memcpy(cb->last, ch, len < 63 ? len : 63);
	cb->last[len < 63 ? len : 63] = '\0';
	return 0;
}

static void
cb_unsubscribe(struct broker *b, const char *ch, size_t len)
{
	(void)ch;
	(void)len;
	((struct count_broker *)b)->unsubs++;
}

static const struct broker_ops count_ops = {"count", cb_subscribe, cb_unsubscribe,
                                            NULL,    NULL,         NULL};

/* What the delivery sink saw. */
#define MAXSEEN 16
static struct seen {
	struct conn *c;
	struct hub_frame *f;
	uint8_t opcode;
	size_t payload_len;
} seen[MAXSEEN];
static size_t nseen;
static int keep_frames; /* the sink takes a reference, like a slow subscriber's queue */

static void
sink(struct conn *c, struct hub_frame *f)
{
	struct ws_frame_hdr h;

	ck_assert_uint_lt(nseen, MAXSEEN);
	ck_assert_int_eq(ws_frame_decode(f->data, f->len, 0, 0, &h), WS_FRAME_OK);
	seen[nseen].c = c;
	seen[nseen].f = f;
	seen[nseen].opcode = h.opcode;
	seen[nseen].payload_len = (size_t)h.len;
	ck_assert_uint_eq(h.hdr_len + h.len, f->len);
	if (keep_frames)
		hub_frame_ref(f);
	nseen++;
}

static struct config_route routes[3];
static struct conn conns[4];
static struct count_broker cbk;
static struct hub *hub;

static void
setup(void)
{
	memset(routes, 0, sizeof(routes));
	memset(conns, 0, sizeof(conns));
	memset(&cbk, 0, sizeof(cbk));
	routes[0].message_type = MSGTYPE_AUTO;
	routes[1].message_type = MSGTYPE_TEXT;
	routes[2].message_type = MSGTYPE_BINARY;
	for (int i = 0; i < 4; i++)
		conns[i].route = &routes[i % 3];
	nseen = 0;
	keep_frames = 0;
	cbk.b.ops = &count_ops;
	hub = hub_new(sink);
	ck_assert_ptr_nonnull(hub);
	cbk.b.hub = hub;
	hub_set_broker(hub, &cbk.b);
}

static void
teardown(void)
{
	hub_free(hub);
}

START_TEST(one_broker_subscription_per_channel)
{
	struct hub_sub s[4];

	memset(s, 0, sizeof(s));
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(hub_subscribe(hub, &s[i], &conns[i], "chat", 4), 0);
	ck_assert_int_eq(cbk.subs, 1);
	ck_assert_str_eq(cbk.last, "chat");
	ck_assert_uint_eq(hub_nchannels(hub), 1);
	for (int i = 0; i < 3; i++)
		hub_unsubscribe(hub, &s[i]);
	ck_assert_int_eq(cbk.unsubs, 0); /* one subscriber left */
	hub_unsubscribe(hub, &s[3]);
	ck_assert_int_eq(cbk.unsubs, 1);
	ck_assert_uint_eq(hub_nchannels(hub), 0);
	hub_unsubscribe(hub, &s[3]); /* twice is harmless */
	ck_assert_int_eq(cbk.unsubs, 1);
}
END_TEST

START_TEST(fanout_frames_once_per_opcode)
{
	struct hub_sub s[4];

	memset(s, 0, sizeof(s));
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(hub_subscribe(hub, &s[i], &conns[i], "room:1", 6), 0);
	hub_deliver(hub, "room:1", 6, (const uint8_t *)"hello", 5);
	ck_assert_uint_eq(nseen, 4);
	/* conns 0 and 3 are auto (valid UTF-8: text), 1 text, 2 binary */
	ck_assert_int_eq(seen[0].opcode, WS_OP_TEXT);
	ck_assert_int_eq(seen[1].opcode, WS_OP_TEXT);
	ck_assert_int_eq(seen[2].opcode, WS_OP_BINARY);
	ck_assert_int_eq(seen[3].opcode, WS_OP_TEXT);
	/* the same text frame bytes went to all text subscribers */
	ck_assert_ptr_eq(seen[0].f, seen[1].f);
	ck_assert_ptr_eq(seen[0].f, seen[3].f);
	ck_assert_ptr_ne(seen[0].f, seen[2].f);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(seen[i].payload_len, 5);
	for (int i = 0; i < 4; i++)
		hub_unsubscribe(hub, &s[i]);
}
END_TEST

/* A frame built piecewise (as a large Redis message streams in) goes to every text and auto
 * subscriber as that very frame; only the binary route gets a copy; references balance. */
START_TEST(prebuilt_frame_shared_not_copied)
{
	struct hub_sub s[4];
	uint8_t *at;
	struct hub_frame *f = hub_frame_new(5, &at);
	struct ws_frame_hdr h;

	ck_assert_ptr_nonnull(f);
	memcpy(at, "he", 2);
	memcpy(at + 2, "llo", 3);
	hub_frame_seal(f, WS_OP_TEXT);
	ck_assert_int_eq(ws_frame_decode(f->data, f->len, 0, 0, &h), WS_FRAME_OK);
	ck_assert_uint_eq(h.hdr_len + 5, f->len);
	ck_assert_int_eq(memcmp(f->data + h.hdr_len, "hello", 5), 0);
	memset(s, 0, sizeof(s));
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(hub_subscribe(hub, &s[i], &conns[i], "big", 3), 0);
	keep_frames = 1;
	hub_deliver_frame(hub, "big", 3, f, 1);
	ck_assert_uint_eq(nseen, 4);
	ck_assert_ptr_eq(seen[0].f, f);
	ck_assert_ptr_eq(seen[1].f, f);
	ck_assert_ptr_eq(seen[3].f, f);
	ck_assert_ptr_ne(seen[2].f, f);
	ck_assert_int_eq(seen[2].opcode, WS_OP_BINARY);
	ck_assert_uint_eq(seen[2].payload_len, 5);
	ck_assert_int_eq(memcmp(seen[2].f->data + seen[2].f->len - 5, "hello", 5), 0);
	/* ours + three subscribers' */
	ck_assert_uint_eq(f->refs, 4);
	for (int i = 0; i < 4; i++)
		hub_frame_unref(seen[i].f);
	ck_assert_uint_eq(f->refs, 1);
	hub_frame_unref(f);
	for (int i = 0; i < 4; i++)
		hub_unsubscribe(hub, &s[i]);
}
END_TEST

START_TEST(auto_type_binary_when_not_utf8)
{
	struct hub_sub s;
	const uint8_t bin[] = {0xff, 0x00, 0xfe};

	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(hub_subscribe(hub, &s, &conns[0], "b", 1), 0);
	hub_deliver(hub, "b", 1, bin, sizeof(bin));
	ck_assert_uint_eq(nseen, 1);
	ck_assert_int_eq(seen[0].opcode, WS_OP_BINARY);
	hub_unsubscribe(hub, &s);
}
END_TEST

START_TEST(other_channels_and_unknown_channel_untouched)
{
	struct hub_sub a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	ck_assert_int_eq(hub_subscribe(hub, &a, &conns[0], "a", 1), 0);
	ck_assert_int_eq(hub_subscribe(hub, &b, &conns[1], "b", 1), 0);
	hub_deliver(hub, "a", 1, (const uint8_t *)"x", 1);
	ck_assert_uint_eq(nseen, 1);
	ck_assert_ptr_eq(seen[0].c, &conns[0]);
	hub_deliver(hub, "zzz", 3, (const uint8_t *)"x", 1);
	ck_assert_uint_eq(nseen, 1);
	hub_unsubscribe(hub, &a);
	hub_unsubscribe(hub, &b);
}
END_TEST

START_TEST(kept_frame_survives_and_is_not_reused)
{
	struct hub_sub s;

	memset(&s, 0, sizeof(s));
	keep_frames = 1;
	ck_assert_int_eq(hub_subscribe(hub, &s, &conns[1], "k", 1), 0);
	hub_deliver(hub, "k", 1, (const uint8_t *)"first", 5);
	hub_deliver(hub, "k", 1, (const uint8_t *)"second", 6);
	ck_assert_uint_eq(nseen, 2);
	ck_assert_ptr_ne(seen[0].f, seen[1].f);
	ck_assert_int_eq(memcmp(seen[0].f->data + 2, "first", 5), 0);
	ck_assert_int_eq(memcmp(seen[1].f->data + 2, "second", 6), 0);
	hub_frame_unref(seen[0].f);
	hub_frame_unref(seen[1].f);
	hub_unsubscribe(hub, &s);
}
END_TEST

/* The live callback: records who was told; the first one told leaves in the call (a client
 * whose 101 fails closes), which the walk must survive. */
static struct conn *told[8];
static size_t ntold;
static struct hub_sub *leave_in_call;

static void
live_cb(struct conn *c)
{
	ck_assert_uint_lt(ntold, 8);
	told[ntold++] = c;
	if (leave_in_call != NULL) {
		hub_unsubscribe(hub, leave_in_call);
		leave_in_call = NULL;
	}
}

/* With a confirming broker (Redis) a channel is live only once its incarnation is confirmed;
 * a confirmation for an earlier incarnation (everyone left, then came back) is ignored. */
START_TEST(channel_live_after_its_own_confirmation)
{
	struct hub_sub a, b, c, d;
	uint64_t g1;

	ck_assert_int_eq(hub_subscribe(hub, &a, &conns[0], "local", 5), 0);
	ck_assert_int_eq(hub_sub_live(&a), 1); /* the in-process bus: at once */
	hub_unsubscribe(hub, &a);

	ntold = 0;
	hub_set_confirming(hub, live_cb);
	ck_assert_int_eq(hub_subscribe(hub, &a, &conns[0], "x", 1), 0);
	g1 = cbk.gen;
	ck_assert_uint_ne(g1, 0);
	ck_assert_int_eq(hub_subscribe(hub, &b, &conns[1], "x", 1), 0);
	ck_assert_int_eq(hub_subscribe(hub, &c, &conns[2], "x", 1), 0);
	ck_assert_uint_eq(hub_creating_gen(hub), 0); /* outside a subscribe call */
	ck_assert_int_eq(hub_sub_live(&a), 0);
	hub_confirmed(hub, "x", 1, g1 + 1); /* not this incarnation */
	ck_assert_int_eq(hub_sub_live(&a), 0);
	ck_assert_uint_eq(ntold, 0);
	leave_in_call = &a;
	hub_confirmed(hub, "x", 1, g1);
	ck_assert_int_eq(hub_sub_live(&b), 1);
	ck_assert_uint_eq(ntold, 3);
	ck_assert_ptr_eq(told[0], &conns[0]);
	ck_assert_ptr_eq(told[1], &conns[1]);
	ck_assert_ptr_eq(told[2], &conns[2]);
	hub_confirmed(hub, "x", 1, g1); /* again: nobody is told twice */
	ck_assert_uint_eq(ntold, 3);

	/* Everyone leaves, a new one comes: the old confirmation (still in a mailbox) is stale. */
	hub_unsubscribe(hub, &b);
	hub_unsubscribe(hub, &c);
	ck_assert_int_eq(hub_subscribe(hub, &d, &conns[3], "x", 1), 0);
	ck_assert_uint_ne(cbk.gen, g1);
	hub_confirmed(hub, "x", 1, g1);
	ck_assert_int_eq(hub_sub_live(&d), 0);
	hub_confirmed(hub, "x", 1, cbk.gen);
	ck_assert_int_eq(hub_sub_live(&d), 1);
	ck_assert_uint_eq(ntold, 4);
	hub_confirmed(hub, "gone", 4, 0); /* a channel this hub does not hold */
	hub_unsubscribe(hub, &d);
	ck_assert_uint_eq(hub_nchannels(hub), 0);
}
END_TEST

START_TEST(many_channels_grow_table)
{
	struct hub_sub s[300];
	char name[16];

	memset(s, 0, sizeof(s));
	for (int i = 0; i < 300; i++) {
		int n = snprintf(name, sizeof(name), "ch%d", i);
		ck_assert_int_eq(hub_subscribe(hub, &s[i], &conns[0], name, (size_t)n), 0);
	}
	ck_assert_uint_eq(hub_nchannels(hub), 300);
	ck_assert_int_eq(cbk.subs, 300);
	hub_deliver(hub, "ch299", 5, (const uint8_t *)"x", 1);
	hub_deliver(hub, "ch0", 3, (const uint8_t *)"x", 1);
	ck_assert_uint_eq(nseen, 2);
	for (int i = 0; i < 300; i++)
		hub_unsubscribe(hub, &s[i]);
	ck_assert_uint_eq(hub_nchannels(hub), 0);
	ck_assert_int_eq(cbk.unsubs, 300);
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("hub");
	TCase *tc = tcase_create("hub");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, one_broker_subscription_per_channel);
	tcase_add_test(tc, fanout_frames_once_per_opcode);
	tcase_add_test(tc, auto_type_binary_when_not_utf8);
	tcase_add_test(tc, prebuilt_frame_shared_not_copied);
	tcase_add_test(tc, other_channels_and_unknown_channel_untouched);
	tcase_add_test(tc, kept_frame_survives_and_is_not_reused);
	tcase_add_test(tc, many_channels_grow_table);
	tcase_add_test(tc, channel_live_after_its_own_confirmation);
	suite_add_tcase(su, tc);
	return check_runner_main(su);
}
