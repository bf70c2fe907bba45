/* check_conn_deflate.c - permessage-deflate on connections, without sockets: negotiation under
 * a route's settings and the compression_memory budget (answered client_no_context_takeover
 * past it), and a broadcast through the hub compressed ONCE for every subscriber with the same
 * terms (the same bytes referenced), plain for the others, with nothing left behind. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "check_runner.h"
#include "config.h"
#include "conn.h"
#include "conn_deflate.h"
#include "conn_deflate_hub.h"
#include "http.h"
#include "hub.h"
#include "ws_deflate.h"
#include "ws_frame.h"

#define NCONN 4

static struct config cfg;
static struct config_route zroute, plainroute;
static struct conn conns[NCONN];
static struct hub *hub;
static struct {
	struct conn *c;
	struct hub_frame *f;
} seen[16];
static size_t nseen;

/* target_pubsub_deliver's first step, and a reference kept like a queued frame. */
static void
sink(struct conn *c, struct hub_frame *f)
{
	f = conn_deflate_hub_frame(c, f);
	hub_frame_ref(f);
	seen[nseen].c = c;
	seen[nseen].f = f;
	nseen++;
}

static int
negotiate(struct conn *c, const char *offer)
{
	char head[512];
	struct http_request req;

	snprintf(head, sizeof(head),
	         "GET /z HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	         "%s%s%s\r\n",
	         offer ? "Sec-WebSocket-Extensions: " : "", offer ? offer : "",
	         offer ? "\r\n" : "");
	ck_assert_int_eq(http_parse_request(head, strlen(head), &req), HTTP_PARSE_OK);
	return conn_deflate_negotiate(c, &req);
}

static void
setup(void)
{
	memset(&cfg, 0, sizeof(cfg));
	memset(conns, 0, sizeof(conns));
	memset(&zroute, 0, sizeof(zroute));
	memset(&plainroute, 0, sizeof(plainroute));
	cfg.compression_memory = 1 << 20;
	cfg.max_message_size = 1 << 20;
	zroute.path = "/z";
	zroute.compression = 1;
	zroute.compression_level = 6;
	zroute.compression_server_window_bits = 15;
	zroute.compression_client_window_bits = 15;
	zroute.compression_min_size = 16;
	plainroute.path = "/p";
	for (int i = 0; i < NCONN; i++) {
		conns[i].cfg = &cfg;
		conns[i].route = i < 3 ? &zroute : &plainroute;
	}
	nseen = 0;
	hub = hub_new(sink);
	ck_assert_ptr_nonnull(hub);
}

static void
teardown(void)
{
	hub_free(hub);
	for (int i = 0; i < NCONN; i++)
		conn_deflate_free(&conns[i]);
	ws_deflate_thread_free();
}

/* What a subscriber's socket would carry: the payload, inflated when RSV1. */
static size_t
payload_of(const struct hub_frame *f, uint8_t *out, size_t cap, int *rsv1)
{
	struct ws_frame_hdr h;
	uint8_t in[4096];
	z_stream zs;
	size_t n;

	ck_assert_int_eq(ws_frame_decode(f->data, f->len, WS_RSV1, 0, &h), WS_FRAME_OK);
	*rsv1 = (h.rsv & WS_RSV1) != 0;
	if (!*rsv1) {
		memcpy(out, f->data + h.hdr_len, (size_t)h.len);
		return (size_t)h.len;
	}
	memcpy(in, f->data + h.hdr_len, (size_t)h.len);
	memcpy(in + h.len, "\0\0\xff\xff", 4);
	memset(&zs, 0, sizeof(zs));
	ck_assert_int_eq(inflateInit2(&zs, -15), Z_OK);
	zs.next_in = in;
	zs.avail_in = (uInt)h.len + 4;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	ck_assert_int_eq(inflate(&zs, Z_SYNC_FLUSH), Z_OK);
	n = cap - zs.avail_out;
	inflateEnd(&zs);
	return n;
}

START_TEST(test_negotiate)
{
	ck_assert_int_eq(negotiate(&conns[0], "permessage-deflate"), 0);
	ck_assert_uint_eq(conns[0].pmd_on, 1);
	ck_assert_ptr_null(conns[0].pmd); /* nothing held while idle */
	ck_assert_uint_eq(conns[0].parser.rsv_allowed & WS_RSV1, WS_RSV1);
	/* No offer, a route without compression: nothing. A bad header: -1 (400). */
	ck_assert_int_eq(negotiate(&conns[1], NULL), 0);
	ck_assert_uint_eq(conns[1].pmd_on, 0);
	ck_assert_int_eq(negotiate(&conns[3], "permessage-deflate"), 0);
	ck_assert_uint_eq(conns[3].pmd_on, 0);
	ck_assert_uint_eq(conns[3].parser.rsv_allowed, 0);
	ck_assert_int_eq(negotiate(&conns[2], "permessage-deflate; =x"), -1);
	ck_assert_uint_eq(conns[2].pmd_on, 0);
}
END_TEST

/* One context (~40 KiB) fits: the second client that would keep one is told not to. */
START_TEST(test_budget)
{
	uint64_t base = ws_deflate_budget_used();

	cfg.compression_memory = base + ws_inflate_cost(15) + 100;
	ck_assert_int_eq(negotiate(&conns[0], "permessage-deflate"), 0);
	ck_assert_uint_eq(ws_deflate_budget_used(), base + ws_inflate_cost(15));
	ck_assert_int_eq(negotiate(&conns[1], "permessage-deflate"), 0);
	ck_assert_uint_eq(conns[1].pmd_on, 1);
	ck_assert_uint_eq(conns[1].pmd_cnt, 1);
	ck_assert_uint_eq(ws_deflate_budget_used(), base + ws_inflate_cost(15));
	conn_deflate_free(&conns[0]);
	ck_assert_uint_eq(ws_deflate_budget_used(), base);
}
END_TEST

START_TEST(test_broadcast_compressed_once)
{
	struct hub_sub s[NCONN];
	uint8_t msg[2000], out[4096];
	int rsv1;

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t) "{\"price\": 101.5, \"sym\": \"ABC\"}, "[i % 32];
	ck_assert_int_eq(negotiate(&conns[0], "permessage-deflate"), 0);
	ck_assert_int_eq(negotiate(&conns[1], "permessage-deflate; client_no_context_takeover"), 0);
	ck_assert_int_eq(negotiate(&conns[2], NULL), 0); /* on the route, offered nothing */
	memset(s, 0, sizeof(s));
	for (int i = 0; i < NCONN; i++)
		ck_assert_int_eq(hub_subscribe(hub, &s[i], &conns[i], "news", 4), 0);
	for (int round = 0; round < 3; round++) {
		nseen = 0;
		hub_deliver(hub, "news", 4, msg, sizeof(msg));
		ck_assert_uint_eq(nseen, NCONN);
		/* The two that negotiated the same terms share one compressed frame; the others
		 * share the plain one. */
		ck_assert_ptr_eq(seen[0].f, seen[1].f);
		ck_assert_ptr_eq(seen[2].f, seen[3].f);
		ck_assert_ptr_ne(seen[0].f, seen[2].f);
		ck_assert_uint_lt(seen[0].f->len, sizeof(msg) / 4);
		for (size_t i = 0; i < nseen; i++) {
			size_t n = payload_of(seen[i].f, out, sizeof(out), &rsv1);
			ck_assert_int_eq(rsv1, i < 2);
			ck_assert_uint_eq(n, sizeof(msg));
			ck_assert(memcmp(out, msg, n) == 0);
		}
		for (size_t i = 0; i < nseen; i++)
			hub_frame_unref(seen[i].f);
	}
	/* Under compression_min_size: plain for everyone. */
	nseen = 0;
	hub_deliver(hub, "news", 4, msg, 10);
	ck_assert_ptr_eq(seen[0].f, seen[2].f);
	for (size_t i = 0; i < nseen; i++)
		hub_frame_unref(seen[i].f);
	for (int i = 0; i < NCONN; i++)
		hub_unsubscribe(hub, &s[i]);
}
END_TEST

static Suite *
conn_deflate_suite(void)
{
	Suite *su = suite_create("conn_deflate");
	TCase *tc = tcase_create("pmd");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_negotiate);
	tcase_add_test(tc, test_budget);
	tcase_add_test(tc, test_broadcast_compressed_once);
	suite_add_tcase(su, tc);
	return su;
}

int
main(void)
{
	return check_runner_main(conn_deflate_suite());
}
