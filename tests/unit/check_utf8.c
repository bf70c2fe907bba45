/* check_utf8.c - unit tests for utf8.c: Autobahn-style valid/invalid rows, fail-fast position,
 * chunked feeding, the ASCII fast path, and exhaustive checks against a naive decoder. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "utf8.h"

#define B(s) (const uint8_t *)(s), sizeof(s) - 1

/*
 * One row per rule.  bad_at is the index of the byte after which the state must be
 * UTF8_REJECT (and not before); -1 when the input never becomes invalid as a prefix.
 */
static const struct utf8_row {
	const char *name;
	const uint8_t *s;
	size_t n;
	int valid;
	int bad_at;
} utf8_rows[] = {
    {"empty", B(""), 1, -1},
    {"ascii", B("Hello, world! 0123456789 ~\x7f"), 1, -1},
    {"nul byte", B("a\0b"), 1, -1},
    {"U+0080 first 2-byte", B("\xc2\x80"), 1, -1},
    {"U+07FF last 2-byte", B("\xdf\xbf"), 1, -1},
    {"U+0800 first 3-byte", B("\xe0\xa0\x80"), 1, -1},
    {"U+D7FF before surrogates", B("\xed\x9f\xbf"), 1, -1},
    {"U+E000 after surrogates", B("\xee\x80\x80"), 1, -1},
    {"U+FFFF last 3-byte", B("\xef\xbf\xbf"), 1, -1},
    {"U+10000 first 4-byte", B("\xf0\x90\x80\x80"), 1, -1},
    {"U+10FFFF last code point", B("\xf4\x8f\xbf\xbf"), 1, -1},
    {"kosme", B("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), 1, -1},
    {"mixed long ascii then 4-byte", B("abcdefghijklmnop\xf0\x9f\x98\x80qrstuvwx"), 1, -1},
    {"overlong C0 80", B("\xc0\x80"), 0, 0},
    {"overlong C1 BF", B("\xc1\xbf"), 0, 0},
    {"overlong E0 80 80", B("\xe0\x80\x80"), 0, 1},
    {"overlong E0 9F BF", B("\xe0\x9f\xbf"), 0, 1},
    {"overlong F0 80 80 80", B("\xf0\x80\x80\x80"), 0, 1},
    {"overlong F0 8F BF BF", B("\xf0\x8f\xbf\xbf"), 0, 1},
    {"surrogate ED A0 80", B("\xed\xa0\x80"), 0, 1},
    {"surrogate ED BF BF", B("\xed\xbf\xbf"), 0, 1},
    {"surrogate pair", B("\xed\xa0\x80\xed\xb0\x80"), 0, 1},
    {"above U+10FFFF F4 90 80 80", B("\xf4\x90\x80\x80"), 0, 1},
    {"F5 lead", B("\xf5\x80\x80\x80"), 0, 0},
    {"stray continuation 80", B("\x80"), 0, 0},
    {"stray continuation BF after ascii", B("abc\xbf"), 0, 3},
    {"continuation after complete 2-byte", B("\xc2\x80\x80"), 0, 2},
    {"truncated 2-byte at end", B("\xc2"), 0, -1},
    {"truncated 3-byte at end", B("\xe2\x82"), 0, -1},
    {"truncated 4-byte at end", B("\xf0\x9f\x98"), 0, -1},
    {"truncated 2-byte then ascii",
     B("\xc2"
       "a"),
     0, 1},
    {"truncated 4-byte then ascii",
     B("\xf0\x9f\x98"
       "a"),
     0, 3},
    {"FE byte", B("\xfe"), 0, 0},
    {"FF byte", B("\xff"), 0, 0},
    {"FE FF BOM-like", B("a\xfe\xff"), 0, 1},
    {"kosme then surrogate",
     B("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
       "edited"),
     0, 12},
    {"bad after 8-byte ascii run", B("01234567\x80"), 0, 8},
    {"bad inside 8-byte ascii run",
     B("0123\xff"
       "567890123"),
     0, 4},
};

START_TEST(test_utf8_rows)
{
	const struct utf8_row *r = &utf8_rows[_i];
	uint32_t st = UTF8_ACCEPT;
	size_t i;

	ck_assert_msg(utf8_valid(r->s, r->n) == r->valid, "%s: utf8_valid", r->name);
	ck_assert_msg((utf8_feed(UTF8_ACCEPT, r->s, r->n) == UTF8_ACCEPT) == r->valid,
	              "%s: utf8_feed whole", r->name);

	/* Fail fast: REJECT right after the first bad byte, never before. */
	for (i = 0; i < r->n; i++) {
		st = utf8_feed(st, r->s + i, 1);
		if (r->bad_at >= 0 && i >= (size_t)r->bad_at)
			ck_assert_msg(st == UTF8_REJECT, "%s: not rejected at byte %zu", r->name,
			              i);
		else
			ck_assert_msg(st != UTF8_REJECT, "%s: rejected early at byte %zu", r->name,
			              i);
	}
	if (!r->valid && r->bad_at < 0)
		ck_assert_msg(st != UTF8_ACCEPT, "%s: truncated input accepted", r->name);
}
END_TEST

/* Any split into two feeds ends in the same state as one feed. */
START_TEST(test_utf8_rows_split)
{
	const struct utf8_row *r = &utf8_rows[_i];
	uint32_t whole, st;
	size_t k;

	whole = utf8_feed(UTF8_ACCEPT, r->s, r->n);
	for (k = 0; k <= r->n; k++) {
		st = utf8_feed(UTF8_ACCEPT, r->s, k);
		st = utf8_feed(st, r->s + k, r->n - k);
		ck_assert_msg(st == whole, "%s: split at %zu", r->name, k);
	}
}
END_TEST

/* REJECT is sticky, whatever follows. */
START_TEST(test_utf8_reject_sticky)
{
	ck_assert_uint_eq(utf8_feed(UTF8_REJECT, B("abc")), UTF8_REJECT);
	ck_assert_uint_eq(utf8_feed(UTF8_REJECT, B("abcdefghijklmnop")), UTF8_REJECT);
	ck_assert_uint_eq(utf8_feed(UTF8_REJECT, NULL, 0), UTF8_REJECT);
	/* A state utf8_feed never returns is not used as a table index. */
	ck_assert_uint_eq(utf8_feed(1000, B("a")), UTF8_REJECT);
}
END_TEST

/*
 * The 8-byte ASCII skip: a bad byte at every position and buffer alignment of a long ASCII run
 * is still found, and found fail-fast.
 */
START_TEST(test_utf8_fast_path)
{
	uint8_t store[64 + 8];
	uint8_t *p;
	size_t align, n, bad, i;
	uint32_t st;

	for (align = 0; align < 8; align++) {
		p = store + align;
		for (n = 0; n <= 64; n++) {
			memset(p, 'a', n);
			ck_assert(utf8_valid(p, n));
			for (bad = 0; bad < n; bad++) {
				memset(p, 'a', n);
				p[bad] = 0x80;
				ck_assert_msg(!utf8_valid(p, n), "align %zu n %zu bad %zu", align,
				              n, bad);
				ck_assert_uint_eq(utf8_feed(UTF8_ACCEPT, p, bad + 1), UTF8_REJECT);
				ck_assert_uint_ne(utf8_feed(UTF8_ACCEPT, p, bad), UTF8_REJECT);
			}
			/* A multi-byte char inside a run: the skip resumes after it. */
			if (n >= 2) {
				memset(p, 'a', n);
				p[n / 2 - 1] = 0xc3;
				p[n / 2] = 0xa9;
				ck_assert(utf8_valid(p, n));
				st = UTF8_ACCEPT;
				for (i = 0; i < n; i += 3)
					st = utf8_feed(st, p + i, n - i < 3 ? n - i : 3);
				ck_assert_uint_eq(st, UTF8_ACCEPT);
			}
		}
	}
}
END_TEST

static size_t
utf8_encode_cp(uint32_t cp, uint8_t *out)
{
	if (cp < 0x80) {
		out[0] = cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = 0xc0 | cp >> 6;
		out[1] = 0x80 | (cp & 0x3f);
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = 0xe0 | cp >> 12;
		out[1] = 0x80 | (cp >> 6 & 0x3f);
		out[2] = 0x80 | (cp & 0x3f);
		return 3;
	}
	out[0] = 0xf0 | cp >> 18;
	out[1] = 0x80 | (cp >> 12 & 0x3f);
	out[2] = 0x80 | (cp >> 6 & 0x3f);
	out[3] = 0x80 | (cp & 0x3f);
	return 4;
}

/* Every code point, encoded the plain way: valid unless a surrogate. */
START_TEST(test_utf8_every_code_point)
{
	uint8_t b[4];
	uint32_t cp;
	size_t n;
	int want;

	for (cp = 0; cp <= 0x10ffff; cp++) {
		n = utf8_encode_cp(cp, b);
		want = cp < 0xd800 || cp > 0xdfff;
		if (utf8_valid(b, n) != want)
			ck_abort_msg("U+%04X: utf8_valid != %d", (unsigned)cp, want);
	}
}
END_TEST

/* The naive way: decode whole sequences and check the code point. */
static int
ref_valid(const uint8_t *p, size_t n)
{
	size_t i = 0, need, k;
	uint32_t cp, min;

	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if (p[i] >= 0xc0 && p[i] <= 0xdf) {
			need = 1;
			cp = p[i] & 0x1f;
			min = 0x80;
		} else if (p[i] >= 0xe0 && p[i] <= 0xef) {
			need = 2;
			cp = p[i] & 0x0f;
			min = 0x800;
		} else if (p[i] >= 0xf0 && p[i] <= 0xf7) {
			need = 3;
			cp = p[i] & 0x07;
			min = 0x10000;
		} else
			return 0;
		if (n - i - 1 < need)
			return 0;
		for (k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

/*
 * A prefix can still become valid iff some completion of at most three bytes makes it so;
 * only the byte right after a lead has a narrowed range, later ones take any 80..BF.
 */
static int
ref_extendable(const uint8_t *p, size_t n)
{
	uint8_t b[8];
	unsigned c;
	size_t k;

	if (ref_valid(p, n))
		return 1;
	memcpy(b, p, n);
	for (c = 0x80; c <= 0xbf; c++)
		for (k = 1; k <= 3; k++) {
			b[n] = c;
			memset(b + n + 1, 0x80, k - 1);
			if (ref_valid(b, n + k))
				return 1;
		}
	return 0;
}

/* All 1- and 2-byte strings: validity and "REJECT iff no valid completion" match the reference. */
START_TEST(test_utf8_exhaustive_2)
{
	uint8_t b[2];
	unsigned x, y;
	uint32_t st;

	for (x = 0; x < 256; x++) {
		b[0] = x;
		st = utf8_feed(UTF8_ACCEPT, b, 1);
		ck_assert_int_eq(st == UTF8_ACCEPT, ref_valid(b, 1));
		ck_assert_msg((st != UTF8_REJECT) == ref_extendable(b, 1), "%02X", x);
		for (y = 0; y < 256; y++) {
			b[1] = y;
			st = utf8_feed(UTF8_ACCEPT, b, 2);
			if ((st == UTF8_ACCEPT) != ref_valid(b, 2) ||
			    (st != UTF8_REJECT) != ref_extendable(b, 2))
				ck_abort_msg("%02X %02X: state %u", x, y, (unsigned)st);
		}
	}
}
END_TEST

/* All 3-byte strings: validity; for 4-byte leads, the fail-fast property at the third byte. */
START_TEST(test_utf8_exhaustive_3)
{
	uint8_t b[3];
	unsigned x, y, z;
	uint32_t st;

	for (x = 0; x < 256; x++) {
		b[0] = x;
		for (y = 0; y < 256; y++) {
			b[1] = y;
			for (z = 0; z < 256; z++) {
				b[2] = z;
				st = utf8_feed(UTF8_ACCEPT, b, 3);
				if ((st == UTF8_ACCEPT) != ref_valid(b, 3))
					ck_abort_msg("%02X %02X %02X", x, y, z);
				if (x >= 0xf0 && x <= 0xf4 && y >= 0x80 && y <= 0xbf &&
				    (st != UTF8_REJECT) != ref_extendable(b, 3))
					ck_abort_msg("fail-fast %02X %02X %02X", x, y, z);
			}
		}
	}
}
END_TEST

static Suite *
utf8_suite(void)
{
	Suite *s = suite_create("utf8");
	TCase *tc;
	int nrows = sizeof(utf8_rows) / sizeof(utf8_rows[0]);

	tc = tcase_create("rows");
	tcase_add_loop_test(tc, test_utf8_rows, 0, nrows);
	tcase_add_loop_test(tc, test_utf8_rows_split, 0, nrows);
	tcase_add_test(tc, test_utf8_reject_sticky);
	tcase_add_test(tc, test_utf8_fast_path);
	suite_add_tcase(s, tc);

	/* Exhaustive loops take a few seconds under the sanitizers. */
	tc = tcase_create("exhaustive");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_utf8_every_code_point);
	tcase_add_test(tc, test_utf8_exhaustive_2);
	tcase_add_test(tc, test_utf8_exhaustive_3);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(utf8_suite());
}
