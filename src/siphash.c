/* siphash.c - SipHash-2-4 (Aumasson and Bernstein) over arbitrary bytes, keyed once per process
 * with random bits, for hash tables whose keys come from clients. */
#include "siphash.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#define SIPHASH_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static uint64_t siphash_k0, siphash_k1;
static pthread_once_t siphash_once = PTHREAD_ONCE_INIT;

static uint64_t
siphash_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void
siphash_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = SIPHASH_ROTL(v[1], 13);
	v[1] ^= v[0];
	v[0] = SIPHASH_ROTL(v[0], 32);
	v[2] += v[3];
	v[3] = SIPHASH_ROTL(v[3], 16);
	v[3] ^= v[2];
	v[0] += v[3];
	v[3] = SIPHASH_ROTL(v[3], 21);
	v[3] ^= v[0];
	v[2] += v[1];
	v[1] = SIPHASH_ROTL(v[1], 17);
	v[1] ^= v[2];
	v[2] = SIPHASH_ROTL(v[2], 32);
}

static void
siphash_word(uint64_t v[4], uint64_t m)
{
	v[3] ^= m;
	siphash_round(v);
	siphash_round(v);
	v[0] ^= m;
}

uint64_t
siphash_keyed(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t v[4] = {
	    k0 ^ 0x736f6d6570736575ull,
	    k1 ^ 0x646f72616e646f6dull,
	    k0 ^ 0x6c7967656e657261ull,
	    k1 ^ 0x7465646279746573ull,
	};
	uint64_t last = (uint64_t)len << 56;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8)
		siphash_word(v, siphash_le64(p + i));
	/* The tail bytes, little-endian, under the length byte. */
	for (size_t j = 0; i + j < len; j++)
		last |= (uint64_t)p[i + j] << (8 * j);
	siphash_word(v, last);
	v[2] ^= 0xff;
	for (int r = 0; r < 4; r++)
		siphash_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static void
siphash_init(void)
{
	uint64_t k[2];

	/* Without the RNG, a weaker key is still better than a fixed one. */
	if (RAND_bytes((unsigned char *)k, sizeof(k)) != 1) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&ts;
		k[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)siphash_init;
	}
	siphash_k0 = k[0];
	siphash_k1 = k[1];
}

uint64_t
siphash(const void *data, size_t len)
{
	pthread_once(&siphash_once, siphash_init);
	return siphash_keyed(siphash_k0, siphash_k1, data, len);
}
