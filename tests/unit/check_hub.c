/* check_hub.c - unit tests for hub.c: reference-counted channels (one broker subscription per
 * channel), fan-out to every subscriber with one frame per opcode, message_type selection, and
 * frames kept by a subscriber surviving the delivery. A counting broker stands in for Redis. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "hub.h"
#include "ws_frame.h"

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

static const struct broker_ops count_ops = { "count", cb_subscribe, cb_unsubscribe, NULL, NULL, NULL };

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

START_TEST(auto_type_binary_when_not_utf8)
{
	struct hub_sub s;
	const uint8_t bin[] = { 0xff, 0x00, 0xfe };

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
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, one_broker_subscription_per_channel);
	tcase_add_test(tc, fanout_frames_once_per_opcode);
	tcase_add_test(tc, auto_type_binary_when_not_utf8);
	tcase_add_test(tc, other_channels_and_unknown_channel_untouched);
	tcase_add_test(tc, kept_frame_survives_and_is_not_reused);
	tcase_add_test(tc, many_channels_grow_table);
	suite_add_tcase(su, tc);
	sr = srunner_create(su);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
