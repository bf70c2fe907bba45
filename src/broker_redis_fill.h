/* broker_redis_fill.h - no gap between instances: the process's sub link remembers the last
 * position it delivered per channel; a positioned message that is not the next one (a jump, a
 * new epoch) or a sub link that came back has the missing range read from Redis and delivered
 * in order before anything newer, which waits meanwhile. Readiness waits for it. */
#ifndef WSGATE_BROKER_REDIS_FILL_H
#define WSGATE_BROKER_REDIS_FILL_H

#include <stddef.h>
#include <stdint.h>

struct broker_redis_fill;
struct broker_redis_history;
struct redis_link;

typedef void (*broker_redis_fill_deliver_fn)(void *arg, const char *channel, size_t clen,
                                             const uint8_t *msg, size_t len);

/* Deliveries go to fn; range reads to h over link l (the owner's pub link). */
struct broker_redis_fill *broker_redis_fill_new(broker_redis_fill_deliver_fn fn, void *arg,
                                                struct broker_redis_history *h,
                                                struct redis_link *l);
void broker_redis_fill_free(struct broker_redis_fill *f);
/* A message from the sub link (wire-prefixed when positioned): delivered now, held behind a
 * range read in flight, or dropped as already delivered. */
void broker_redis_fill_incoming(struct broker_redis_fill *f, const char *channel, size_t clen,
                                const uint8_t *msg, size_t len);
/* all: the sub link is synchronised again: every channel with a known position is read from
 * it on, before the live messages that arrive meanwhile (a channel whose read cannot be sent
 * yet stays stale, and readiness red). !all: the pub link is up: the stale ones are read. */
void broker_redis_fill_resync(struct broker_redis_fill *f, int all);
/* The process no longer receives channel. */
void broker_redis_fill_forget(struct broker_redis_fill *f, const char *channel, size_t clen);
/* The sub link confirmed a subscription of channel: nothing before it is owed (forgotten),
 * unless its position was carried from another master (kept: a jump is read back). */
void broker_redis_fill_confirmed(struct broker_redis_fill *f, const char *channel, size_t clen);
/* Cluster: channel is subscribed again on to's master after its slot moved from from's: to
 * starts from the last position from delivered, so that what was published on the new master
 * before the subscription (ASK-redirected history publishes) is read back, not reported
 * lost. Nothing when to already knows the channel. */
void broker_redis_fill_carry(struct broker_redis_fill *to, struct broker_redis_fill *from,
                             const char *channel, size_t clen);
/* Channels being filled now (any thread: /readyz is red while it is not 0). */
uint64_t broker_redis_fill_pending(const struct broker_redis_fill *f);

#endif
