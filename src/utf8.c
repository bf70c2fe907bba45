/* utf8.c - pure incremental UTF-8 validation with a byte-class DFA (after Bjoern Hoehrmann).
 * Every state after a byte is either a valid prefix or UTF8_REJECT, so errors show at once. */
#include <stdint.h>
#include <string.h>

#include "utf8.h"

/*
 * Byte classes.  Bytes that open a sequence whose second byte has a narrowed range (E0, ED,
 * F0, F4) get a class of their own, and continuation bytes are split at 0x90 and 0xA0 so those
 * narrowed ranges can be told apart.  That is what lets overlongs, surrogates and code points
 * above U+10FFFF fail at the second byte instead of at the end of the sequence.
 *
 *   0  00..7F  ASCII             6  E1..EC EE..EF  3-byte lead
 *   1  80..8F  continuation      7  ED             3-byte lead, 2nd byte 80..9F (no surrogates)
 *   2  90..9F  continuation      8  F0             4-byte lead, 2nd byte 90..BF (no overlongs)
 *   3  A0..BF  continuation      9  F1..F3         4-byte lead
 *   4  C2..DF  2-byte lead      10  F4             4-byte lead, 2nd byte 80..8F (<= U+10FFFF)
 *   5  E0      3-byte lead,     11  C0 C1 F5..FF   never valid (overlong 2-byte, out of range)
 *              2nd byte A0..BF (no overlongs)
 */
static const uint8_t utf8_class[256] = {
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 00 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 10 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 20 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 30 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 40 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 50 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 60 */
    0,  0,  0, 0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 70 */
    1,  1,  1, 1, 1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  /* 80 */
    2,  2,  2, 2, 2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 90 */
    3,  3,  3, 3, 3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  /* A0 */
    3,  3,  3, 3, 3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  /* B0 */
    11, 11, 4, 4, 4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* C0 */
    4,  4,  4, 4, 4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* D0 */
    5,  6,  6, 6, 6,  6,  6,  6,  6,  6,  6,  6,  6,  7,  6,  6,  /* E0 */
    8,  9,  9, 9, 10, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, /* F0 */
};

/*
 * States: 0 UTF8_ACCEPT, 1 UTF8_REJECT, and what the next byte must be:
 *   2  one more continuation            6  three more (after F1..F3)
 *   3  two more continuations           7  90..BF, then two more (after F0)
 *   4  A0..BF, then one more (after E0) 8  80..8F, then two more (after F4)
 *   5  80..9F, then one more (after ED)
 */
#define UTF8_NSTATES 9
#define UTF8_NCLASSES 12

static const uint8_t utf8_next[UTF8_NSTATES][UTF8_NCLASSES] = {
    /*        asc 80 90 A0 C2 E0 E1 ED F0 F1 F4 bad */
    /* 0 */ {0, 1, 1, 1, 2, 4, 3, 5, 7, 6, 8, 1},
    /* 1 */ {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 2 */ {1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 3 */ {1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 4 */ {1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 5 */ {1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 6 */ {1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 7 */ {1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    /* 8 */ {1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
};

#define UTF8_HIGH_BITS UINT64_C(0x8080808080808080)

uint32_t
utf8_feed(uint32_t state, const uint8_t *p, size_t n)
{
	size_t i = 0;
	uint64_t w;

	/* A caller-made state we never produce is treated as an error, not indexed. */
	if (state >= UTF8_NSTATES)
		return UTF8_REJECT;

	while (i < n) {
		if (state == UTF8_REJECT)
			return UTF8_REJECT;
		/*
		 * Text is mostly ASCII: between code points, skip 8 bytes with no high bit at a
		 * time.  memcpy instead of a cast, so neither alignment nor aliasing matters.
		 */
		if (state == UTF8_ACCEPT) {
			while (n - i >= sizeof(w)) {
				memcpy(&w, p + i, sizeof(w));
				if ((w & UTF8_HIGH_BITS) != 0)
					break;
				i += sizeof(w);
			}
			if (i == n)
				break;
		}
		state = utf8_next[state][utf8_class[p[i]]];
		i++;
	}
	return state;
}

int
utf8_valid(const uint8_t *p, size_t n)
{
	return utf8_feed(UTF8_ACCEPT, p, n) == UTF8_ACCEPT;
}
