/* redis_reader.h - the RESP reader every Redis link uses: hiredis' own (hiredis is a codec
 * here, see redis_link.c), with a bound on the element count of an array reply.
 *
 * hiredis 0.14 allocates an array's element vector as soon as it reads the count: a peer
 * announcing "*999999992" made it calloc 8 GB (fuzz_redis_cluster found it), and an array that
 * long fed slowly would grow our memory with every element. No reply we ask for comes near
 * REDIS_READER_MAX_ELEMENTS (a history page of 512 messages is 1,027 elements; CLUSTER SLOTS
 * has at most 16,384 ranges): a longer array fails the reader with an error, as bad RESP does,
 * and the link is rebuilt. */
#ifndef WSGATE_REDIS_READER_H
#define WSGATE_REDIS_READER_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#define REDIS_READER_MAX_ELEMENTS 65536

/* A reader like redisReaderCreate()'s, with the bound; NULL when out of memory. Free it with
 * redisReaderFree. */
redisReader *redis_reader_new(void);

/* Why r failed, into buf: its own errstr, or for an array refused by the bound its length
 * (hiredis says "Out of memory" for both). Call it right after the failed read, on the thread
 * that read. Returns buf. */
const char *redis_reader_error(const redisReader *r, char *buf, size_t len);

#endif
