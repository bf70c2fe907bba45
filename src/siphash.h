/* siphash.h - SipHash-2-4 of a byte string under the process's random key: the hash of every
 * table keyed by names a client controls (hub channels, router), so nobody can pick names that
 * all land in one bucket. */
#ifndef WSGATE_SIPHASH_H
#define WSGATE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-2-4 of data[0..len) under key k0, k1 (for tests against the reference vectors). */
uint64_t siphash_keyed(uint64_t k0, uint64_t k1, const void *data, size_t len);
/* The same under the process's key, drawn from the OpenSSL RNG on first use (any thread). */
uint64_t siphash(const void *data, size_t len);

#endif
