/* broker_redis.h - counters of the Redis broker (broker_redis.c) for metrics and tests; the
 * broker itself is made by broker_redis_new() and used through struct broker_ops (broker.h). */
#ifndef WSGATE_BROKER_REDIS_H
#define WSGATE_BROKER_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "broker_redis_history.h"

struct history_store;

struct broker_redis_stats {
	uint64_t reconnects; /* retries scheduled, both links (each failed attempt counts) */
	uint64_t published;  /* PUBLISHes Redis answered (canaries not counted) */
	uint64_t queued;     /* publishes put in the FIFO because the pub link was unusable */
	uint64_t refused;    /* publishes refused: FIFO full (the client was told) */
	/* cluster mode: of refused, those after too many MOVED/ASK answers and those with no
	 * master known for their slot; publishes answered MOVED or ASK and sent again */
	uint64_t refused_redirects, refused_unrouted;
	uint64_t followed_moved, followed_ask;
	uint64_t delivered;       /* messages handed to hub_deliver() */
	uint64_t probes_lost;     /* canaries not back within probe_timeout (sub link rebuilt) */
	uint64_t unconfirmed;     /* PUBLISHes in flight when the pub link dropped: maybe lost */
	uint64_t publish_errors;  /* PUBLISHes Redis answered with an error */
	uint64_t oversized;       /* messages over [redis] max_message_size, dropped */
	uint64_t internal_errors; /* impossible states met (release build: link rebuilt) */
	uint64_t protocol_errors; /* replies Redis does not send (malformed, unexpected): link
	                           * rebuilt */
	uint64_t queue_bytes;     /* now: bytes (channel + data) waiting in the FIFO */
	uint64_t queue_len;       /* now: messages waiting in the FIFO */
	int sub_up;               /* now: the subscribe link is up (ready() may still say 0) */
	int pub_up;               /* now: the publish link is up */
};

/* Fills *out; all zero when b is not a Redis broker. */
void broker_redis_stats(struct broker *b, struct broker_redis_stats *out);

/* Channels listed in st publish through the history function (FCALL wsgate_publish). */
void broker_redis_set_history(struct broker *b, struct history_store *st);
/* Reads count messages of channel's history from offset from on, over b's pub link (see
 * broker_redis_history_fetch). NULL when it cannot be sent now. */
struct broker_redis_fetch *broker_redis_fetch(struct broker *b, const char *channel, size_t clen,
                                              uint64_t from, uint64_t count, const char *epoch,
                                              broker_redis_fetch_fn fn, void *arg);

#endif
