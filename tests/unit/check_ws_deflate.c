/* check_ws_deflate.c - permessage-deflate's zlib side: round trips, the inflated-size limit
 * enforced while inflating (a bomb stops at max bytes of output), UTF-8 after inflation,
 * fragmented input, context takeover, BFINAL, bad data, and the memory budget. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "check_runner.h"
#include "utf8.h"
#include "ws_deflate.h"
#include "ws_frame.h"

/* A peer's compressor (the client side): raw deflate, sync flush, tail removed. */
struct peer {
	z_stream zs;
	uint8_t out[1 << 20];
	size_t n;
	int keep; /* context takeover: messages may refer to earlier ones */
};

static void
peer_init(struct peer *p, int bits)
{
	memset(&p->zs, 0, sizeof(p->zs));
	ck_assert_int_eq(deflateInit2(&p->zs, 6, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
}

static void
peer_msg(struct peer *p, const void *data, size_t len, int flush)
{
	if (!p->keep)
		ck_assert_int_eq(deflateReset(&p->zs), Z_OK);
	p->zs.next_in = (Bytef *)(uintptr_t)data;
	p->zs.avail_in = (uInt)len;
	p->zs.next_out = p->out;
	p->zs.avail_out = sizeof(p->out);
	ck_assert_int_eq(deflate(&p->zs, flush), flush == Z_FINISH ? Z_STREAM_END : Z_OK);
	p->n = sizeof(p->out) - p->zs.avail_out;
	if (flush == Z_SYNC_FLUSH) {
		ck_assert(p->n >= 4 && memcmp(p->out + p->n - 4, "\0\0\xff\xff", 4) == 0);
		p->n -= 4;
	}
}

static void
fill(uint8_t *b, size_t n, int text)
{
	uint32_t x = 12345;

	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245 + 12345;
		b[i] = text ? (uint8_t)('a' + (x >> 16) % 8) : (uint8_t)(x >> 16);
	}
}

/* Compress with ws_deflate_message, inflate with ws_inflate_feed in chunks of `chunk`. */
START_TEST(test_round_trip)
{
	static const size_t sizes[] = {1, 2, 100, 1000, 4096, 4097, 65535, 65536, 131072, 300000};
	static const unsigned bits[] = {9, 10, 12, 15};
	uint8_t *msg = malloc(300000);

	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
		for (size_t bi = 0; bi < 4; bi++)
			for (int text = 0; text < 2; text++) {
				size_t n = sizes[si], zlen, chunk = 1 + n / 7, off;
				const uint8_t *z;
				uint8_t *zc;
				struct ws_inflater in = {.bits = (uint8_t)bits[bi]};
				enum ws_inflate_status st = WS_INFLATE_MORE;
				uint16_t code;
				const char *why;

				fill(msg, n, text);
				z = ws_deflate_message(1 + (int)(si % 9), bits[bi], msg, n, &zlen);
				ck_assert_ptr_nonnull(z);
				zc = malloc(zlen + 1);
				memcpy(zc, z, zlen);
				for (off = 0; off < zlen || st == WS_INFLATE_MORE; off += chunk) {
					size_t k = zlen - off < chunk ? zlen - off : chunk;
					if (off >= zlen)
						k = 0;
					st = ws_inflate_feed(&in, zc + off, k, off == 0,
					                     off + k >= zlen, text, 0, &code, &why);
					ck_assert_int_ne(st, WS_INFLATE_ERROR);
					if (off + k >= zlen)
						break;
				}
				ck_assert_int_eq(st, WS_INFLATE_DONE);
				ck_assert_uint_eq(in.len, n);
				ck_assert(memcmp(in.buf, msg, n) == 0);
				ws_inflate_done(&in);
				ck_assert_ptr_null(in.zs); /* no takeover: nothing kept */
				ck_assert_ptr_null(in.buf);
				free(zc);
			}
	free(msg);
	ws_deflate_thread_free();
}
END_TEST

/* 1 KiB of compressed zeros inflating to ~1 MiB: refused after max bytes of output. */
START_TEST(test_bomb)
{
	static struct peer p;
	uint8_t *zeros = calloc(1, 8 << 20);
	struct ws_inflater in = {.bits = 15};
	uint16_t code = 0;
	const char *why = NULL;

	peer_init(&p, 15);
	peer_msg(&p, zeros, 8 << 20, Z_SYNC_FLUSH);
	ck_assert_uint_lt(p.n, 16 * 1024);
	ck_assert_int_eq(ws_inflate_feed(&in, p.out, p.n, 1, 1, 0, 65536, &code, &why),
	                 WS_INFLATE_ERROR);
	ck_assert_uint_eq(code, WS_CLOSE_TOO_BIG);
	ck_assert_uint_le(in.len, 65536);
	ck_assert_uint_le(in.cap, 65536);
	ws_inflate_done(&in);
	/* Exactly max inflated bytes fit. */
	peer_msg(&p, zeros, 65536, Z_SYNC_FLUSH);
	ck_assert_int_eq(ws_inflate_feed(&in, p.out, p.n, 1, 1, 0, 65536, &code, &why),
	                 WS_INFLATE_DONE);
	ck_assert_uint_eq(in.len, 65536);
	ws_inflater_free(&in);
	deflateEnd(&p.zs);
	free(zeros);
	ws_deflate_thread_free();
}
END_TEST

START_TEST(test_utf8_after_inflate)
{
	static struct peer p;
	struct ws_inflater in = {.bits = 15};
	uint16_t code = 0;
	const char *why = NULL;

	peer_init(&p, 15);
	peer_msg(&p, "ok \xce\xba\xe1\xbd\xb9", 8, Z_SYNC_FLUSH);
	ck_assert_int_eq(ws_inflate_feed(&in, p.out, p.n, 1, 1, 1, 0, &code, &why),
	                 WS_INFLATE_DONE);
	ws_inflate_done(&in);
	peer_msg(&p, "bad \xff", 5, Z_SYNC_FLUSH);
	ck_assert_int_eq(ws_inflate_feed(&in, p.out, p.n, 1, 1, 1, 0, &code, &why),
	                 WS_INFLATE_ERROR);
	ck_assert_uint_eq(code, WS_CLOSE_INVALID_DATA);
	ws_inflate_done(&in);
	peer_msg(&p, "cut \xce", 5, Z_SYNC_FLUSH);
	ck_assert_int_eq(ws_inflate_feed(&in, p.out, p.n, 1, 1, 1, 0, &code, &why),
	                 WS_INFLATE_ERROR);
	ck_assert_uint_eq(code, WS_CLOSE_INVALID_DATA);
	/* The same bytes as binary are fine. */
	ws_inflate_done(&in);
	peer_msg(&p, "cut \xce", 5, Z_SYNC_FLUSH);
	ck_assert_int_eq(ws_inflate_feed(&in, p.out, p.n, 1, 1, 0, 0, &code, &why),
	                 WS_INFLATE_DONE);
	ws_inflater_free(&in);
	deflateEnd(&p.zs);
	ws_deflate_thread_free();
}
END_TEST

/* Client context takeover: the second message refers to the first; the stream is kept. */
START_TEST(test_takeover)
{
	static struct peer p;
	struct ws_inflater in = {.bits = 15, .takeover = 1};
	const char *m = "the same sentence, twice over, the same sentence";
	uint16_t code;
	const char *why;

	peer_init(&p, 15);
	p.keep = 1;
	for (int i = 0; i < 3; i++) {
		peer_msg(&p, m, strlen(m), Z_SYNC_FLUSH);
		if (i > 0)
			ck_assert_uint_lt(p.n, 10); /* a back reference into the last message */
		ck_assert_int_eq(ws_inflate_feed(&in, p.out, p.n, 1, 1, 1, 0, &code, &why),
		                 WS_INFLATE_DONE);
		ck_assert_uint_eq(in.len, strlen(m));
		ck_assert(memcmp(in.buf, m, in.len) == 0);
		ws_inflate_done(&in);
		ck_assert_ptr_nonnull(in.zs);
	}
	/* A message ending in a final block (BFINAL) is fine too. */
	peer_msg(&p, "end", 3, Z_FINISH);
	ck_assert_int_eq(ws_inflate_feed(&in, p.out, p.n, 1, 1, 1, 0, &code, &why),
	                 WS_INFLATE_DONE);
	ck_assert_uint_eq(in.len, 3);
	ws_inflater_free(&in);
	deflateEnd(&p.zs);
	ws_deflate_thread_free();
}
END_TEST

START_TEST(test_bad_data)
{
	struct ws_inflater in = {.bits = 15};
	static const uint8_t bad[] = {0xff, 0xff, 0xff, 0xff};
	uint16_t code = 0;
	const char *why = NULL;

	ck_assert_int_eq(ws_inflate_feed(&in, bad, sizeof(bad), 1, 1, 0, 0, &code, &why),
	                 WS_INFLATE_ERROR);
	ck_assert_uint_eq(code, WS_CLOSE_INVALID_DATA);
	ws_inflater_free(&in);
	ws_deflate_thread_free();
}
END_TEST

/* What wsgate sends is what a peer inflates with the window it announced. */
START_TEST(test_deflate_for_peer)
{
	const char *m = "{\"type\":\"tick\",\"price\":101.25,\"symbol\":\"ABC\"}"
	                "{\"type\":\"tick\",\"price\":101.25,\"symbol\":\"ABC\"}";
	uint8_t buf[256], out[256];
	const uint8_t *z;
	size_t zlen;
	z_stream zs;

	z = ws_deflate_message(9, 9, (const uint8_t *)m, strlen(m), &zlen);
	ck_assert_ptr_nonnull(z);
	ck_assert_uint_lt(zlen, strlen(m));
	memcpy(buf, z, zlen);
	memcpy(buf + zlen, "\0\0\xff\xff", 4);
	memset(&zs, 0, sizeof(zs));
	ck_assert_int_eq(inflateInit2(&zs, -9), Z_OK);
	zs.next_in = buf;
	zs.avail_in = (uInt)zlen + 4;
	zs.next_out = out;
	zs.avail_out = sizeof(out);
	ck_assert_int_eq(inflate(&zs, Z_SYNC_FLUSH), Z_OK);
	ck_assert_uint_eq(sizeof(out) - zs.avail_out, strlen(m));
	ck_assert(memcmp(out, m, strlen(m)) == 0);
	inflateEnd(&zs);
	/* No context takeover: the same message compresses to the same bytes again. */
	memcpy(out, z, zlen);
	z = ws_deflate_message(9, 9, (const uint8_t *)m, strlen(m), &zlen);
	ck_assert(memcmp(out, z, zlen) == 0);
	ws_deflate_thread_free();
}
END_TEST

/* A message compressed fragment by fragment (a relay): the pieces, joined, inflate to the
 * message, the sync flush tail only at the end and removed; an empty last piece works too. */
START_TEST(test_stream)
{
	static const size_t pieces[] = {1, 700, 0, 40000, 3, 0};
	uint8_t *msg = malloc(50000), *wire = malloc(100000);
	size_t off = 0, wlen = 0, zlen;
	struct ws_inflater in = {.bits = 10};
	uint16_t code;
	const char *why;
	void *s = ws_deflate_stream_new(6, 10);

	ck_assert_ptr_nonnull(s);
	fill(msg, 50000, 1);
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		int last = i + 1 == sizeof(pieces) / sizeof(pieces[0]);
		const uint8_t *z = ws_deflate_stream_feed(s, msg + off, pieces[i], last, &zlen);
		ck_assert_ptr_nonnull(z);
		memcpy(wire + wlen, z, zlen);
		wlen += zlen;
		off += pieces[i];
	}
	ws_deflate_stream_free(s);
	ck_assert(wlen < off / 2);
	ck_assert(wlen < 4 || memcmp(wire + wlen - 4, "\0\0\xff\xff", 4) != 0);
	ck_assert_int_eq(ws_inflate_feed(&in, wire, wlen, 1, 1, 1, 0, &code, &why),
	                 WS_INFLATE_DONE);
	ck_assert_uint_eq(in.len, off);
	ck_assert(memcmp(in.buf, msg, off) == 0);
	ws_inflater_free(&in);
	ck_assert_uint_gt(ws_deflate_stream_cost(15), 256 * 1024);
	free(msg);
	free(wire);
	ws_deflate_thread_free();
}
END_TEST

START_TEST(test_budget)
{
	size_t c = ws_inflate_cost(15);
	uint64_t base = ws_deflate_budget_used();

	ck_assert_uint_gt(c, 32768);
	ck_assert_uint_lt(ws_inflate_cost(8), c);
	ck_assert_int_eq(ws_deflate_budget_take(base + 2 * c, c), 1);
	ck_assert_int_eq(ws_deflate_budget_take(base + 2 * c, c), 1);
	ck_assert_int_eq(ws_deflate_budget_take(base + 2 * c, c), 0);
	ws_deflate_budget_give(c);
	ck_assert_int_eq(ws_deflate_budget_take(base + 2 * c, c), 1);
	ws_deflate_budget_give(c);
	ws_deflate_budget_give(c);
	ck_assert_uint_eq(ws_deflate_budget_used(), base);
}
END_TEST

static Suite *
ws_deflate_suite(void)
{
	Suite *s = suite_create("ws_deflate");
	TCase *tc = tcase_create("zlib");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_bomb);
	tcase_add_test(tc, test_utf8_after_inflate);
	tcase_add_test(tc, test_takeover);
	tcase_add_test(tc, test_bad_data);
	tcase_add_test(tc, test_deflate_for_peer);
	tcase_add_test(tc, test_stream);
	tcase_add_test(tc, test_budget);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(ws_deflate_suite());
}
