/* hash.h - SipHash-2-4 for tables and spreads keyed by names or addresses a peer controls: with a
 * per-process random key nobody outside can pick inputs that collide. Bottom layer: libc and
 * OpenSSL's RAND_bytes only. */
#ifndef WSGATE_HASH_H
#define WSGATE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Draws the process's key now (at startup, before any peer is served); the first
 * hash_siphash() does it otherwise. Exits (fatalx) when the system has no randomness. */
void hash_init(void);

/* SipHash-2-4 of p[0..n) under the process's key, drawn from RAND_bytes on first use (any
 * thread). Stable for the life of the process, different in every process. */
uint64_t hash_siphash(const void *p, size_t n);

/* The same under an explicit 16-byte key (little-endian k0, k1), e.g. the reference vectors. */
uint64_t hash_siphash_key(const uint8_t key[16], const void *p, size_t n);

#endif
