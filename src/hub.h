/* hub.h - a worker's channel registry and fan-out: each channel counts its local subscribers
 * (one broker subscription per channel, however many clients), and each message is framed
 * once and the same bytes are queued to every subscriber, with a per-connection bound and the
 * route's slow-consumer policy. */
#ifndef WSGATE_HUB_H
#define WSGATE_HUB_H

#include <sys/queue.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct conn;
struct hub;
struct hub_channel;

/* One connection's membership of one channel. Lives in the subscriber's own state. */
struct hub_sub {
	struct hub_channel *ch;
	struct conn *c;
	TAILQ_ENTRY(hub_sub) entry;
};

/* A complete server frame (header + payload), shared by every subscriber it is queued to or
 * written to (conn_send_shared: the socket's buffer holds a reference, not a copy). The hub
 * reuses a frame nobody kept, so a steady stream of broadcasts allocates nothing. Reference
 * counted without atomics: a frame never leaves the worker that made it. */
struct hub_frame {
	uint32_t refs;
	uint32_t cap;      /* bytes allocated for data */
	size_t len;        /* bytes of data in use */
	size_t plen;       /* of which payload: the message's size, what max_queue is about */
	struct hub_frame *zvar; /* its permessage-deflate variants, a chain (conn_deflate.c) */
	uint32_t zkey;     /* a variant's parameters (level, window) */
	uint8_t data[];
};

void hub_frame_ref(struct hub_frame *f);
void hub_frame_unref(struct hub_frame *f);

/* Delivery sink, called for each subscriber with the frame in the opcode its route wants
 * (target_pubsub.c implements it: write now, queue, or apply the slow-consumer policy). To keep
 * the frame beyond the call, take a reference. */
typedef void (*hub_deliver_fn)(struct conn *c, struct hub_frame *f);

/* A subscriber's channel became live (hub_confirmed): target_pubsub.c answers a pending
 * handshake. The subscriber may close itself in the call. */
typedef void (*hub_live_fn)(struct conn *c);

struct hub *hub_new(hub_deliver_fn fn);
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
/* Removes a subscription made by hub_subscribe (no-op when s->ch is NULL). */
void hub_unsubscribe(struct hub *h, struct hub_sub *s);

/* A message arrived on channel: frame it once per opcode needed and give it to every local
 * subscriber. Each subscriber's route says text, binary or auto (text when valid UTF-8). */
void hub_deliver(struct hub *h, const char *channel, size_t clen, const uint8_t *data, size_t len);

/* Number of channels with at least one subscriber (for tests and metrics). */
size_t hub_nchannels(const struct hub *h);
/* Every channel name, for a broker resubscribing after a reconnect. */
void hub_foreach_channel(const struct hub *h, void (*fn)(void *arg, const char *name, size_t len),
    void *arg);

#endif
