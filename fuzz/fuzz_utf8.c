/* fuzz_utf8.c - libFuzzer target: utf8_feed in chunks against utf8_valid whole, a naive
 * reference decoder, and the fail-fast promise (REJECT exactly when no completion exists). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(c)                                                                                \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

/*
 * Decodes whole sequences the obvious way.  Returns 1 when valid; otherwise 0 and *bad is
 * the index of the first byte where no valid continuation exists (n when merely truncated).
 */
static int
fz_ref(const uint8_t *p, size_t n, size_t *bad)
{
	size_t i = 0, need, k;
	uint8_t lo, hi;

	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		/* Allowed range of the second byte, after RFC 3629's table. */
		lo = 0x80;
		hi = 0xbf;
		if (p[i] >= 0xc2 && p[i] <= 0xdf)
			need = 1;
		else if (p[i] >= 0xe0 && p[i] <= 0xef) {
			need = 2;
			if (p[i] == 0xe0)
				lo = 0xa0;
			else if (p[i] == 0xed)
				hi = 0x9f;
		} else if (p[i] >= 0xf0 && p[i] <= 0xf4) {
			need = 3;
			if (p[i] == 0xf0)
				lo = 0x90;
			else if (p[i] == 0xf4)
				hi = 0x8f;
		} else {
			*bad = i;
			return 0;
		}
		for (k = 1; k <= need; k++) {
			if (i + k == n) {
				*bad = n;
				return 0;
			}
			if (k == 1 ? (p[i + k] < lo || p[i + k] > hi)
			           : (p[i + k] < 0x80 || p[i + k] > 0xbf)) {
				*bad = i + k;
				return 0;
			}
		}
		i += need + 1;
	}
	return 1;
}

/* Byte 0 picks the chunk size (1..64), the rest is the text. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p;
	size_t n, chunk, i, k, bad;
	uint32_t st, whole;
	int valid;

	if (size < 1)
		return 0;
	chunk = (data[0] & 0x3f) + 1;
	p = data + 1;
	n = size - 1;
	bad = n; /* fz_ref sets it whenever it returns 0; gcc cannot tell */

	valid = utf8_valid(p, n);
	whole = utf8_feed(UTF8_ACCEPT, p, n);
	FZ_CHECK(valid == (whole == UTF8_ACCEPT));
	FZ_CHECK(valid == fz_ref(p, n, &bad));

	/* Chunked feeding ends where one feed does. */
	st = UTF8_ACCEPT;
	for (i = 0; i < n; i += k) {
		k = n - i < chunk ? n - i : chunk;
		st = utf8_feed(st, p + i, k);
	}
	FZ_CHECK(st == whole);

	/* Fail fast: not REJECT before the first bad byte, REJECT from it on. */
	if (!valid) {
		if (bad < n) {
			FZ_CHECK(utf8_feed(UTF8_ACCEPT, p, bad) != UTF8_REJECT);
			FZ_CHECK(utf8_feed(UTF8_ACCEPT, p, bad + 1) == UTF8_REJECT);
			FZ_CHECK(whole == UTF8_REJECT);
		} else
			FZ_CHECK(whole != UTF8_REJECT && whole != UTF8_ACCEPT);
	}
	return 0;
}
