/* hub.h - a worker's channel registry and fan-out: each channel counts its local subscribers
 * (one broker subscription per channel, however many clients), and each message is framed
 * once and the same bytes are queued to every subscriber, with a per-connection bound and the
 * route's slow-consumer policy. */
#ifndef WSGATE_HUB_H
#define WSGATE_HUB_H

#include <sys/queue.h>
#include <stddef.h>
#include <stdint.h>

#include "history.h"

struct broker;
struct conn;
struct hub;
struct hub_channel;

/* One connection's membership of one channel. Lives in the subscriber's own state. */
struct hub_sub {
	struct hub_channel *ch;
	struct conn *c;
	uint64_t skip_to;    /* positioned messages up to this offset were replayed: not again */
	uint32_t skip_epoch; /* of the epoch hub_epoch_tag() names (a new one resets skip_to) */
	unsigned meta : 1; /* raw route, client negotiated wsgate.meta: positions as text frames */
	TAILQ_ENTRY(hub_sub) entry;
};

/* A complete server frame (header + payload), shared by every subscriber it is queued to or
 * written to (conn_send_shared: the socket's buffer holds a reference, not a copy). The hub
 * reuses a frame nobody kept, so a steady stream of broadcasts allocates nothing. The count is
 * atomic: a large message is framed once on the loop that received it and the same frame is
 * handed to every worker (hub_deliver_frame), so references are taken and dropped on several
 * threads. */
struct hub_frame {
	uint32_t refs;
	uint32_t cap;           /* bytes allocated for data */
	size_t len;             /* bytes of data in use */
	size_t plen;            /* of which payload: the message's size, what max_queue is about */
	struct history_pos pos; /* the message's position; off 0: none (no history) */
	const struct hub_channel *ch; /* its channel (identity only, while delivering) */
	uint8_t notice;   /* a gap notice, not a message: never dropped by a slow-consumer policy */
	uint32_t raw_off; /* the message's own bytes at data + raw_off (conflate_key reads them): */
	uint32_t raw_len; /* inside the frame, or after len for the JSON object (not sent) */
	struct hub_frame *zvar; /* its permessage-deflate variants, a chain (conn_deflate.c) */
	uint32_t zkey;          /* a variant's parameters (level, window) */
	uint8_t data[];
};

void hub_frame_ref(struct hub_frame *f);
void hub_frame_unref(struct hub_frame *f);
/* A frame (one reference, the caller's) for a payload of plen bytes that arrives in pieces:
 * the caller writes them at *payload, then hub_frame_seal() writes the header. So a large
 * message is copied once, a slice per loop turn, straight into the frame every subscriber
 * shares. NULL on ENOMEM or when plen cannot be framed. */
struct hub_frame *hub_frame_new(size_t plen, uint8_t **payload);
void hub_frame_seal(struct hub_frame *f, unsigned opcode);

/* Delivery sink, called for each subscriber with the frame in the opcode its route wants
 * (target_pubsub.c implements it: write now, queue, or apply the slow-consumer policy). To keep
 * the frame beyond the call, take a reference. */
typedef void (*hub_deliver_fn)(struct conn *c, struct hub_frame *f);

/* A subscriber's channel became live (hub_confirmed): target_pubsub.c answers a pending
 * handshake. The subscriber may close itself in the call. */
typedef void (*hub_live_fn)(struct conn *c);

/* Positions from..to of epoch on s's channel will never reach s (the instance did not get them,
 * or the epoch changed): target_pubsub.c tells the client, before the next message. */
typedef void (*hub_gap_fn)(struct conn *c, const struct hub_sub *s, const char *epoch,
                           uint64_t from, uint64_t to, enum history_gap reason);

struct hub *hub_new(hub_deliver_fn fn);
void hub_set_gap(struct hub *h, hub_gap_fn fn);
/* With a broker that confirms subscriptions (Redis): a new channel is not live until
 * hub_confirmed() names it, and fn is then called for each of its subscribers. Without (the
 * default), a channel is live as soon as it exists. */
void hub_set_confirming(struct hub *h, hub_live_fn fn);
void hub_set_broker(struct hub *h, struct broker *b);
struct broker *hub_broker(struct hub *h);
/* Frees the registry; every subscription must be gone. */
void hub_free(struct hub *h);

/* Adds c to channel name[0..len). The first subscriber subscribes the broker. -1 on failure. */
int hub_subscribe(struct hub *h, struct hub_sub *s, struct conn *c, const char *name, size_t len)
    __attribute__((warn_unused_result));
/* 1 when s's channel is live: a message published from now on reaches s. */
int hub_sub_live(const struct hub_sub *s);
/* The process is subscribed to channel name[0..len) (the broker's SUBSCRIBE confirmed), for
 * the incarnation gen (hub_creating_gen() when it was made; 0: whichever exists). A channel
 * no longer there, or made again since, is left alone. */
void hub_confirmed(struct hub *h, const char *name, size_t len, uint64_t gen);
/* Inside the broker's subscribe call for a new channel: that channel's incarnation, else 0. */
uint64_t hub_creating_gen(const struct hub *h);
/* A short tag of an epoch, for hub_sub.skip_epoch. */
uint32_t hub_epoch_tag(const char *epoch);
/* Removes a subscription made by hub_subscribe (no-op when s->ch is NULL). */
void hub_unsubscribe(struct hub *h, struct hub_sub *s);

/* A message arrived on channel: frame it once per opcode needed and give it to every local
 * subscriber. Each subscriber's route says text, binary or auto (text when valid UTF-8).
 * A message with a position (history.h's wire prefix) is framed without the prefix, with its
 * position in the frame, as a JSON message object for envelope = json routes, and skipped for
 * a subscriber that was replayed up to it already. */
void hub_deliver(struct hub *h, const char *channel, size_t clen, const uint8_t *data, size_t len);

/* The same for a message already framed (hub_frame_new/seal): f's opcode is text when is_text
 * (the payload is valid UTF-8), else binary. Subscribers whose route wants that opcode share f
 * itself; only the rare other kind (a binary route beside text ones) costs a copy. The caller
 * keeps its reference. */
void hub_deliver_frame(struct hub *h, const char *channel, size_t clen, struct hub_frame *f,
                       int is_text);
/* One frame of data (positioned by pos, or not when pos is NULL) for subscriber s of c, as
 * hub_deliver would frame it for c's route; a replay uses it. NULL when out of memory. The
 * caller holds the one reference. */
struct hub_frame *hub_frame_for(const struct conn *c, const struct hub_sub *s,
                                const struct history_pos *pos, const uint8_t *data, size_t len);

/* A text frame of data on its own (a notice), one reference held by the caller. */
struct hub_frame *hub_frame_text(const uint8_t *data, size_t len);

/* Number of channels with at least one subscriber (for tests and metrics). */
size_t hub_nchannels(const struct hub *h);
/* Every channel name, for a broker resubscribing after a reconnect. */
void hub_foreach_channel(const struct hub *h, void (*fn)(void *arg, const char *name, size_t len),
                         void *arg);

#endif
