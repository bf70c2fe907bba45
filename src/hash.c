/* hash.c - SipHash-2-4 (Aumasson and Bernstein), byte by byte so any alignment reads, and the
 * per-process key behind hash_siphash(). */
#include "hash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "log.h"

#define HASH_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static pthread_once_t hash_once = PTHREAD_ONCE_INIT;
static uint8_t hash_key[16];

static uint64_t
hash_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void
hash_sipround(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = HASH_ROTL(v[1], 13);
	v[1] ^= v[0];
	v[0] = HASH_ROTL(v[0], 32);
	v[2] += v[3];
	v[3] = HASH_ROTL(v[3], 16);
	v[3] ^= v[2];
	v[0] += v[3];
	v[3] = HASH_ROTL(v[3], 21);
	v[3] ^= v[0];
	v[2] += v[1];
	v[1] = HASH_ROTL(v[1], 17);
	v[1] ^= v[2];
	v[2] = HASH_ROTL(v[2], 32);
}

static void
hash_compress(uint64_t v[4], uint64_t m)
{
	v[3] ^= m;
	hash_sipround(v);
	hash_sipround(v);
	v[0] ^= m;
}

uint64_t
hash_siphash_key(const uint8_t key[16], const void *data, size_t n)
{
	const uint8_t *p = data;
	uint64_t k0 = hash_le64(key), k1 = hash_le64(key + 8);
	uint64_t v[4] = {
	    k0 ^ 0x736f6d6570736575ull,
	    k1 ^ 0x646f72616e646f6dull,
	    k0 ^ 0x6c7967656e657261ull,
	    k1 ^ 0x7465646279746573ull,
	};
	uint64_t last = (uint64_t)(n & 0xff) << 56;
	size_t i, whole = n - n % 8;

	for (i = 0; i < whole; i += 8)
		hash_compress(v, hash_le64(p + i));
	/* The 0-7 bytes left, then the length's low byte in the top byte of the last word. */
	for (size_t j = 0; i + j < n; j++)
		last |= (uint64_t)p[i + j] << (8 * j);
	hash_compress(v, last);
	v[2] ^= 0xff;
	for (int r = 0; r < 4; r++)
		hash_sipround(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static void
hash_key_init(void)
{
	/* Without an unpredictable key the hash would still spread, but could be aimed. */
	if (RAND_bytes(hash_key, sizeof(hash_key)) != 1)
		fatalx("RAND_bytes failed: no key for SipHash");
}

void
hash_init(void)
{
	pthread_once(&hash_once, hash_key_init);
}

uint64_t
hash_siphash(const void *p, size_t n)
{
	pthread_once(&hash_once, hash_key_init);
	return hash_siphash_key(hash_key, p, n);
}
