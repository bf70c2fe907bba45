/* check_ws_frame.c - unit tests for ws_frame.c: header decode rows (lengths, RSV, opcodes,
 * control rules, masking bit, check order, need-more), encode round trips, ws_mask, close codes. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "ws_frame.h"

#define MAX_HDR 16

/*
 * Header rows.  n is how many bytes are handed to the decoder (may be fewer than the header).
 * For WS_FRAME_OK rows the decoded fields are checked, and every shorter prefix must give
 * WS_FRAME_NEED_MORE; for error rows early says the error must already show at 2 bytes.
 */
#define OK(fin, rsv, op, masked, len, hdr_len) WS_FRAME_OK, 0, fin, rsv, op, masked, len, hdr_len
#define ERR(st) st, 0, 0, 0, 0, 0, 0, 0
#define EARLY(st) st, 1, 0, 0, 0, 0, 0, 0 /* already reported from the first 2 bytes */

static const struct hdr_row {
	const char *name;
	uint8_t b[MAX_HDR];
	size_t n;
	unsigned rsv_allowed;
	int require_mask;
	enum ws_frame_status st;
	int early;
	uint8_t fin, rsv, op, masked;
	uint64_t len;
	size_t hdr_len;
} hdr_rows[] = {
    /* 7/16/64-bit lengths and their boundaries */
    {"len 0", {0x81, 0x00}, 2, 0, 0, OK(1, 0, 1, 0, 0, 2)},
    {"len 125", {0x82, 0x7d}, 2, 0, 0, OK(1, 0, 2, 0, 125, 2)},
    {"len 126 (16-bit)", {0x82, 0x7e, 0x00, 0x7e}, 4, 0, 0, OK(1, 0, 2, 0, 126, 4)},
    {"len 65535 (16-bit)", {0x82, 0x7e, 0xff, 0xff}, 4, 0, 0, OK(1, 0, 2, 0, 65535, 4)},
    {"len 65536 (64-bit)",
     {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0},
     10,
     0,
     0,
     OK(1, 0, 2, 0, 65536, 10)},
    {"len 2^63-1 (64-bit)",
     {0x02, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
     10,
     0,
     0,
     OK(0, 0, 2, 0, UINT64_C(0x7fffffffffffffff), 10)},
    {"64-bit bytes in order",
     {0x82, 0x7f, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07},
     10,
     0,
     0,
     OK(1, 0, 2, 0, UINT64_C(0x0001020304050607), 10)},
    {"masked len 5", {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d}, 6, 0, 1, OK(1, 0, 1, 1, 5, 6)},
    {"masked 16-bit", {0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4}, 8, 0, 1, OK(1, 0, 2, 1, 256, 8)},
    {"masked 64-bit",
     {0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4},
     14,
     0,
     1,
     OK(1, 0, 2, 1, UINT64_C(1) << 32, 14)},
    {"extra bytes ignored", {0x81, 0x01, 'x', 0x81, 0x01}, 5, 0, 0, OK(1, 0, 1, 0, 1, 2)},
    {"continuation fin=0", {0x00, 0x03}, 2, 0, 0, OK(0, 0, 0, 0, 3, 2)},
    {"close 125", {0x88, 0x7d}, 2, 0, 0, OK(1, 0, 8, 0, 125, 2)},
    {"ping 0", {0x89, 0x00}, 2, 0, 0, OK(1, 0, 9, 0, 0, 2)},
    {"pong 1", {0x8a, 0x01}, 2, 0, 0, OK(1, 0, 10, 0, 1, 2)},
    /* non-minimal and out-of-range lengths */
    {"16-bit form for 125", {0x82, 0x7e, 0x00, 0x7d}, 4, 0, 0, ERR(WS_FRAME_ERR_LENGTH)},
    {"16-bit form for 0", {0x82, 0x7e, 0x00, 0x00}, 4, 0, 0, ERR(WS_FRAME_ERR_LENGTH)},
    {"64-bit form for 65535",
     {0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
     10,
     0,
     0,
     ERR(WS_FRAME_ERR_LENGTH)},
    {"64-bit form for 0", {0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0}, 10, 0, 0, ERR(WS_FRAME_ERR_LENGTH)},
    {"64-bit top bit set",
     {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0},
     10,
     0,
     0,
     ERR(WS_FRAME_ERR_LENGTH)},
    {"64-bit all ones",
     {0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
     10,
     0,
     0,
     ERR(WS_FRAME_ERR_LENGTH)},
    /* RSV bits */
    {"RSV1", {0xc1, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_RSV)},
    {"RSV2", {0xa1, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_RSV)},
    {"RSV3", {0x91, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_RSV)},
    {"RSV1 negotiated", {0xc1, 0x00}, 2, 4, 0, OK(1, 4, 1, 0, 0, 2)},
    {"RSV2 not covered by RSV1", {0xa1, 0x00}, 2, 4, 0, EARLY(WS_FRAME_ERR_RSV)},
    /* reserved opcodes */
    {"opcode 3", {0x83, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_OPCODE)},
    {"opcode 4", {0x84, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_OPCODE)},
    {"opcode 5", {0x85, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_OPCODE)},
    {"opcode 6", {0x86, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_OPCODE)},
    {"opcode 7", {0x87, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_OPCODE)},
    {"opcode B", {0x8b, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_OPCODE)},
    {"opcode C", {0x8c, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_OPCODE)},
    {"opcode D", {0x8d, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_OPCODE)},
    {"opcode E", {0x8e, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_OPCODE)},
    {"opcode F", {0x8f, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_OPCODE)},
    /* control frames */
    {"ping 126 (16-bit form)", {0x89, 0xfe, 0x00, 0x7e}, 4, 0, 1, EARLY(WS_FRAME_ERR_CONTROL)},
    {"close 64-bit form", {0x88, 0xff}, 2, 0, 1, EARLY(WS_FRAME_ERR_CONTROL)},
    {"ping fin=0", {0x09, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_CONTROL)},
    {"close fin=0", {0x08, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_CONTROL)},
    {"pong fin=0", {0x0a, 0x80}, 2, 0, 1, EARLY(WS_FRAME_ERR_CONTROL)},
    /* mask */
    {"unmasked from client", {0x81, 0x05}, 2, 0, 1, EARLY(WS_FRAME_ERR_UNMASKED)},
    {"unmasked 64-bit from client", {0x82, 0x7f}, 2, 0, 1, EARLY(WS_FRAME_ERR_UNMASKED)},
    {"unmasked allowed from server", {0x81, 0x05}, 2, 0, 0, OK(1, 0, 1, 0, 5, 2)},
    /* check order: RSV, opcode, control, mask, length */
    {"order: RSV before opcode", {0xc3, 0x00}, 2, 0, 1, EARLY(WS_FRAME_ERR_RSV)},
    {"order: opcode before control", {0x0b, 0x7e}, 2, 0, 1, EARLY(WS_FRAME_ERR_OPCODE)},
    {"order: control before mask", {0x09, 0x00}, 2, 0, 1, EARLY(WS_FRAME_ERR_CONTROL)},
    {"order: mask before length", {0x82, 0x7e, 0x00, 0x01}, 4, 0, 1, EARLY(WS_FRAME_ERR_UNMASKED)},
    /* need more */
    {"0 bytes", {0}, 0, 0, 0, ERR(WS_FRAME_NEED_MORE)},
    {"1 byte", {0x81}, 1, 0, 0, ERR(WS_FRAME_NEED_MORE)},
    {"16-bit length cut", {0x82, 0x7e, 0x01}, 3, 0, 0, ERR(WS_FRAME_NEED_MORE)},
    {"64-bit length cut", {0x82, 0x7f, 0, 0, 0, 0, 0, 0, 1}, 9, 0, 0, ERR(WS_FRAME_NEED_MORE)},
    {"mask key cut",
     {0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3},
     13,
     0,
     1,
     ERR(WS_FRAME_NEED_MORE)},
    {"bad 16-bit length not yet complete",
     {0x82, 0xfe, 0x00, 0x05, 1, 2},
     6,
     0,
     1,
     ERR(WS_FRAME_NEED_MORE)},
};

START_TEST(test_hdr_rows)
{
	const struct hdr_row *r = &hdr_rows[_i];
	struct ws_frame_hdr h;
	enum ws_frame_status st;
	size_t k;

	memset(&h, 0xa5, sizeof(h));
	st = ws_frame_decode(r->b, r->n, r->rsv_allowed, r->require_mask, &h);
	ck_assert_msg(st == r->st, "%s: status %d (%s), want %d", r->name, st,
	              ws_frame_strerror(st), r->st);
	if (r->early)
		ck_assert_msg(ws_frame_decode(r->b, 2, r->rsv_allowed, r->require_mask, &h) ==
		                  r->st,
		              "%s: not reported from 2 bytes", r->name);
	if (st != WS_FRAME_OK)
		return;

	ck_assert_msg(h.fin == r->fin, "%s: fin", r->name);
	ck_assert_msg(h.rsv == r->rsv, "%s: rsv", r->name);
	ck_assert_msg(h.opcode == r->op, "%s: opcode", r->name);
	ck_assert_msg(h.masked == r->masked, "%s: masked", r->name);
	ck_assert_msg(h.len == r->len, "%s: len %llu", r->name, (unsigned long long)h.len);
	ck_assert_msg(h.hdr_len == r->hdr_len, "%s: hdr_len %zu", r->name, h.hdr_len);
	if (h.masked)
		ck_assert(memcmp(h.mask, r->b + h.hdr_len - 4, 4) == 0);
	for (k = 0; k < r->hdr_len; k++)
		ck_assert_msg(ws_frame_decode(r->b, k, r->rsv_allowed, r->require_mask, &h) ==
		                  WS_FRAME_NEED_MORE,
		              "%s: prefix %zu", r->name, k);
}
END_TEST

/* Every b0/b1 pair, client and server side: the verdict on two bytes follows the rules in order. */
START_TEST(test_hdr_first_two_bytes)
{
	struct ws_frame_hdr h;
	uint8_t b[2];
	unsigned b0, b1, op, len7, masked;
	enum ws_frame_status want, st;
	int req;

	for (req = 0; req < 2; req++)
		for (b0 = 0; b0 < 256; b0++)
			for (b1 = 0; b1 < 256; b1++) {
				b[0] = b0;
				b[1] = b1;
				op = b0 & 0xf;
				masked = b1 >> 7;
				len7 = b1 & 0x7f;
				if (b0 & 0x70)
					want = WS_FRAME_ERR_RSV;
				else if ((op >= 3 && op <= 7) || op >= 0xb)
					want = WS_FRAME_ERR_OPCODE;
				else if ((op & 8) && (!(b0 & 0x80) || len7 > 125))
					want = WS_FRAME_ERR_CONTROL;
				else if (req && !masked)
					want = WS_FRAME_ERR_UNMASKED;
				else if (masked || len7 >= 126)
					want = WS_FRAME_NEED_MORE;
				else
					want = WS_FRAME_OK;
				st = ws_frame_decode(b, 2, 0, req, &h);
				if (st != want)
					ck_abort_msg("req %d %02X %02X: %d want %d", req, b0, b1,
					             st, want);
			}
}
END_TEST

static void
roundtrip_one(int fin, unsigned rsv, unsigned op, uint64_t len, const uint8_t *key)
{
	uint8_t out[WS_FRAME_HDR_MAX + 2];
	struct ws_frame_hdr h;
	size_t n, want;

	memset(out, 0xa5, sizeof(out));
	n = ws_frame_encode(out, fin, rsv, op, len, key);
	want = 2 + (len < 126 ? 0 : len <= 0xffff ? 2 : 8) + (key != NULL ? 4 : 0);
	ck_assert_uint_eq(n, want);
	ck_assert_uint_eq(out[n], 0xa5); /* nothing written past the header */
	if (WS_OP_IS_CONTROL(op) && (!fin || len > WS_CONTROL_MAX))
		return; /* the decoder rightly refuses these */
	ck_assert_int_eq(ws_frame_decode(out, n, 7, key != NULL, &h), WS_FRAME_OK);
	ck_assert_uint_eq(h.fin, fin);
	ck_assert_uint_eq(h.rsv, rsv);
	ck_assert_uint_eq(h.opcode, op);
	ck_assert_uint_eq(h.masked, key != NULL);
	ck_assert(h.len == len);
	ck_assert_uint_eq(h.hdr_len, n);
	if (key != NULL)
		ck_assert(memcmp(h.mask, key, 4) == 0);
}

/* Encode then decode gives the same fields, always with the shortest length form. */
START_TEST(test_encode_roundtrip)
{
	static const uint64_t lens[] = {
	    0, 1, 125, 126, 127, 65535, 65536, UINT64_C(1) << 32, UINT64_C(0x7fffffffffffffff)};
	static const unsigned ops[] = {0, 1, 2, 8, 9, 10};
	static const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
	size_t li, oi;
	unsigned fin, rsv;

	for (li = 0; li < sizeof(lens) / sizeof(lens[0]); li++)
		for (oi = 0; oi < sizeof(ops) / sizeof(ops[0]); oi++)
			for (fin = 0; fin < 2; fin++)
				for (rsv = 0; rsv < 8; rsv++) {
					roundtrip_one(fin, rsv, ops[oi], lens[li], NULL);
					roundtrip_one(fin, rsv, ops[oi], lens[li], key);
				}
}
END_TEST

/* RFC 6455 5.7 examples, byte for byte. */
START_TEST(test_rfc_examples)
{
	static const uint8_t unmasked[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
	static const uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
	                                 0x7f, 0x9f, 0x4d, 0x51, 0x58};
	static const uint8_t len256[] = {0x82, 0x7e, 0x01, 0x00};
	static const uint8_t len64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
	uint8_t out[WS_FRAME_HDR_MAX], pl[5];
	struct ws_frame_hdr h;

	ck_assert_uint_eq(ws_frame_encode(out, 1, 0, WS_OP_TEXT, 5, NULL), 2);
	ck_assert(memcmp(out, unmasked, 2) == 0);
	ck_assert_uint_eq(ws_frame_encode(out, 1, 0, WS_OP_TEXT, 5, masked + 2), 6);
	ck_assert(memcmp(out, masked, 6) == 0);
	ck_assert_uint_eq(ws_frame_encode(out, 1, 0, WS_OP_BINARY, 256, NULL), 4);
	ck_assert(memcmp(out, len256, 4) == 0);
	ck_assert_uint_eq(ws_frame_encode(out, 1, 0, WS_OP_BINARY, 65536, NULL), 10);
	ck_assert(memcmp(out, len64k, 10) == 0);

	ck_assert_int_eq(ws_frame_decode(masked, sizeof(masked), 0, 1, &h), WS_FRAME_OK);
	memcpy(pl, masked + h.hdr_len, 5);
	ck_assert_uint_eq(ws_mask(pl, 5, h.mask, 0), 5);
	ck_assert(memcmp(pl, "Hello", 5) == 0);
}
END_TEST

static void
ref_mask(uint8_t *p, size_t n, const uint8_t key[4], uint64_t off)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] ^= key[(off + i) & 3];
}

/*
 * ws_mask against the byte-at-a-time definition for every length up to 70, every start
 * offset mod 8 and every buffer alignment; then chunked masking and the round trip.
 */
START_TEST(test_mask)
{
	static const uint8_t key[4] = {0x01, 0x23, 0x45, 0x67};
	uint8_t store[80 + 8], want[80], orig[80];
	uint8_t *p;
	size_t n, align, i, k;
	uint64_t off, ret;

	for (i = 0; i < sizeof(orig); i++)
		orig[i] = (uint8_t)(i * 37 + 11);

	for (align = 0; align < 8; align++)
		for (n = 0; n <= 70; n++)
			for (off = 0; off < 8; off++) {
				p = store + align;
				memcpy(p, orig, n);
				memcpy(want, orig, n);
				ref_mask(want, n, key, off);
				ret = ws_mask(p, n, key, off + UINT64_C(1000000000000));
				ck_assert(ret == off + UINT64_C(1000000000000) + n);
				if (memcmp(p, want, n) != 0)
					ck_abort_msg("align %zu n %zu off %llu", align, n,
					             (unsigned long long)off);
				/* Masking is an involution. */
				ws_mask(p, n, key, off);
				ck_assert(memcmp(p, orig, n) == 0);
			}

	/* Split at every point, as the parser does across reads. */
	for (k = 0; k <= 70; k++) {
		memcpy(store, orig, 70);
		memcpy(want, orig, 70);
		ref_mask(want, 70, key, 0);
		off = ws_mask(store, k, key, 0);
		off = ws_mask(store + k, 70 - k, key, off);
		ck_assert(off == 70);
		ck_assert_msg(memcmp(store, want, 70) == 0, "split %zu", k);
	}
	ck_assert(ws_mask(NULL, 0, key, 3) == 3);
}
END_TEST

static const struct close_row {
	unsigned code;
	int valid;
} close_rows[] = {
    {1000, 1}, {1001, 1}, {1002, 1}, {1003, 1},  {1007, 1},         {1008, 1}, {1009, 1}, {1010, 1},
    {1011, 1}, {1012, 1}, {1013, 1}, {1014, 1},  {3000, 1},         {3999, 1}, {4000, 1}, {4999, 1},
    {0, 0},    {999, 0},  {1004, 0}, {1005, 0},  {1006, 0},         {1015, 0}, {1016, 0}, {1100, 0},
    {2000, 0}, {2999, 0}, {5000, 0}, {65535, 0}, {65536 + 1000, 0},
};

START_TEST(test_close_codes)
{
	const struct close_row *r = &close_rows[_i];

	ck_assert_msg(ws_close_code_valid(r->code) == r->valid, "code %u", r->code);
}
END_TEST

/* The whole 16-bit range: exactly 12 registered codes plus 3000..4999. */
START_TEST(test_close_codes_all)
{
	unsigned c, n = 0;

	for (c = 0; c <= 0xffff; c++)
		n += ws_close_code_valid(c);
	ck_assert_uint_eq(n, 12 + 2000);
}
END_TEST

START_TEST(test_strerror)
{
	static const enum ws_frame_status all[] = {
	    WS_FRAME_OK,           WS_FRAME_NEED_MORE,   WS_FRAME_ERR_RSV,   WS_FRAME_ERR_OPCODE,
	    WS_FRAME_ERR_UNMASKED, WS_FRAME_ERR_CONTROL, WS_FRAME_ERR_LENGTH};
	size_t i, j;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		ck_assert_ptr_nonnull(ws_frame_strerror(all[i]));
		/* Used as a close reason, which must fit a control frame. */
		ck_assert_uint_le(strlen(ws_frame_strerror(all[i])), 123);
		for (j = 0; j < i; j++)
			ck_assert_str_ne(ws_frame_strerror(all[i]), ws_frame_strerror(all[j]));
	}
	ck_assert_ptr_nonnull(ws_frame_strerror((enum ws_frame_status) - 99));
}
END_TEST

static Suite *
ws_frame_suite(void)
{
	Suite *s = suite_create("ws_frame");
	TCase *tc;

	tc = tcase_create("decode");
	tcase_add_loop_test(tc, test_hdr_rows, 0, sizeof(hdr_rows) / sizeof(hdr_rows[0]));
	tcase_add_test(tc, test_hdr_first_two_bytes);
	suite_add_tcase(s, tc);

	tc = tcase_create("encode");
	tcase_add_test(tc, test_encode_roundtrip);
	tcase_add_test(tc, test_rfc_examples);
	suite_add_tcase(s, tc);

	tc = tcase_create("mask");
	tcase_add_test(tc, test_mask);
	suite_add_tcase(s, tc);

	tc = tcase_create("close");
	tcase_add_loop_test(tc, test_close_codes, 0, sizeof(close_rows) / sizeof(close_rows[0]));
	tcase_add_test(tc, test_close_codes_all);
	tcase_add_test(tc, test_strerror);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(ws_frame_suite());
}
