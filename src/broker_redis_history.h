/* broker_redis_history.h - channel history kept in Redis streams by a Redis 7 function library
 * wsgate loads itself: publishing with a position in one atomic step, and reading a range
 * back (for a reconnecting client's since=, and for an instance filling a gap). */
#ifndef WSGATE_BROKER_REDIS_HISTORY_H
#define WSGATE_BROKER_REDIS_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "history.h"
#include "redis_link.h"

/* Offsets skipped after a failover promoted a replica (the Lua library's FENCE): more than a
 * master can have published without replicating before Sentinel replaces it. */
#define BROKER_REDIS_HISTORY_FENCE_STR "1000000"
extern const char broker_redis_history_lua[];

struct broker_redis_history;
struct broker_redis_fetch;

/* A range reply (valid only during the callback): r NULL when the link went down first. */
typedef void (*broker_redis_fetch_fn)(void *arg, const redisReply *r);

struct broker_redis_history *broker_redis_history_new(void);
void broker_redis_history_free(struct broker_redis_history *h);
/* The pub link went down: every fetch in flight fails (fn(arg, NULL)). */
void broker_redis_history_link_down(struct broker_redis_history *h);
/* FUNCTION LOAD REPLACE of the library on l (a refusal is logged once). 0 or -1. */
int broker_redis_history_load(struct broker_redis_history *h, struct redis_link *l)
    __attribute__((warn_unused_result));
/* FCALL wsgate_publish 1 channel data cap ttl_ms [s] on l (sharded: a Redis Cluster master,
 * the function SPUBLISHes); fn gets the reply ("E:O" or an error). */
int broker_redis_history_publish(struct redis_link *l, const char *channel, size_t clen,
                                 const uint8_t *data, size_t len, size_t cap, uint64_t ttl_ms,
                                 int sharded, redis_link_reply_fn fn, void *arg)
    __attribute__((warn_unused_result));
/* FCALL_RO wsgate_range: at most count messages from offset from on (from the oldest kept
 * when epoch, the reader's, is not the channel's; NULL: no epoch check). NULL when it cannot be
 * sent (link not up, no memory); otherwise fn runs exactly once unless cancelled. */
struct broker_redis_fetch *broker_redis_history_fetch(struct broker_redis_history *h,
                                                      struct redis_link *l, const char *channel,
                                                      size_t clen, uint64_t from, uint64_t count,
                                                      const char *epoch, broker_redis_fetch_fn fn,
                                                      void *arg);
/* The owner is going away: fn will not be called. */
void broker_redis_history_cancel(struct broker_redis_fetch *f);

/* A parsed wsgate_range reply. */
struct broker_redis_range {
	char epoch[HISTORY_EPOCH_MAX + 1]; /* "" when the channel has no history yet */
	uint64_t first, last;              /* kept first..last (first > last: none kept) */
	size_t n;                          /* messages in the reply */
	const redisReply *r;
};
/* 0, or -1 when r is not what wsgate_range returns. */
int broker_redis_history_range_parse(const redisReply *r, struct broker_redis_range *out)
    __attribute__((warn_unused_result));
void broker_redis_history_range_get(const struct broker_redis_range *rg, size_t i, uint64_t *off,
                                    const uint8_t **data, size_t *len);

#endif
