/* pubsub_history.h - a pubsub connection's side of channel history: since= at the handshake,
 * the replay at open (gap notice first, then the missed messages, then live without
 * duplicate), the newest position the client was given per channel, dropped positions told to
 * the client, and where a closed client should resume. */
#ifndef WSGATE_PUBSUB_HISTORY_H
#define WSGATE_PUBSUB_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "history.h"

struct conn;
struct http_request;
struct hub_sub;
struct hub_frame;
struct broker_redis_fetch;

/* Per channel of a connection (parallel to its subscriptions). */
struct ps_hist {
	struct history_pos since; /* from since= when has_since */
	struct history_pos last;  /* newest position handed to the socket (off 0: none) */
	struct history_pos drop;  /* dropped, not reported yet: drop.off..drop_to (off 0: none) */
	uint64_t drop_to;
	struct conn *c;                   /* owner, for a Redis range reply */
	struct hub_sub *sub;              /* the channel's subscription */
	const char *channel;              /* its full name (the connection's copy) */
	struct broker_redis_fetch *fetch; /* a Redis range read in flight (since=), or NULL */
	uint64_t replayed;                /* messages replayed so far */
	unsigned paged : 1;               /* the first page of the Redis replay came */
	unsigned drop_at_head : 1; /* the drops are older than everything queued (drop_oldest) */
	unsigned has_since : 1;
	unsigned history : 1; /* a template channel of a route with history_size */
};

/* At the handshake, for the template channels channels[0..n): with an in-process history,
 * gives them one with the route's bounds; parses since= into h. 0, or an HTTP status. */
int pubsub_history_handshake(struct conn *c, const struct http_request *req, char **channels,
                             size_t n, struct ps_hist *h) __attribute__((warn_unused_result));
/* The subprotocol a 101 must name when the client offered a "wsgate.since." token and none
 * of the route's subprotocols (a browser fails a handshake that names none of those it
 * offered): a copy of that token (the caller frees it); NULL when there is none (or ENOMEM). */
char *pubsub_history_protocol(const struct http_request *req);
/* 1 when c may be sent notices (gap, resume): a JSON route, or a raw route whose client passed
 * since= or negotiated the meta subprotocol. */
int pubsub_history_notices(const struct conn *c, int meta, const struct ps_hist *h, size_t n);
/* Right after the 101: replays each channel with since (in-process history), its gap notice
 * first, and marks the subscription so live delivery resumes after the replay. */
void pubsub_history_open(struct conn *c, struct hub_sub *subs, char **channels, size_t n,
                         struct ps_hist *h);
/* The connection closes: Redis reads in flight are forgotten. */
void pubsub_history_close(struct ps_hist *h, size_t n);
/* A text notice {"type":"gap",...} for channel (full name) now. */
void pubsub_history_send_gap(struct conn *c, const char *channel, const char *epoch, uint64_t from,
                             uint64_t to, enum history_gap reason);
/* The close reason (code 1001/1012/1013) of a connection a client should resume from, into
 * buf: "since=E:O" appended when it has one history channel; with several, a
 * {"type":"resume",...} message is sent first. Returns buf, or reason when nothing to add. */
const char *pubsub_history_close_reason(struct conn *c, char **channels, size_t n,
                                        const struct ps_hist *h, const char *reason, char *buf,
                                        size_t bufsz);

#endif
