/* broker.h - how a worker's hub reaches other hubs: the in-process broker (one instance) or
 * Redis pub/sub (every instance). The hub calls subscribe when a channel gets its first local
 * subscriber and unsubscribe when the last leaves; messages of a subscribed channel reach the
 * hub through hub_deliver(). Channel names are complete (channel_prefix included). */
#ifndef WSGATE_BROKER_H
#define WSGATE_BROKER_H

#include <stddef.h>
#include <stdint.h>

struct broker;
struct hub;
struct hub_frame;
struct event_base;
struct config;
struct env;

struct broker_ops {
	const char *name;
	/* First local subscriber of channel: subscribe (now, or as soon as the link is up, and
	 * again after every reconnect). Returns 0, or -1 when the channel cannot be tracked. */
	int (*subscribe)(struct broker *b, const char *channel, size_t len);
	/* Last local subscriber left. */
	void (*unsubscribe)(struct broker *b, const char *channel, size_t len);
	/* Publishes data on channel. Returns 0 when sent or queued for sending, -1 when it is
	 * refused (e.g. the link is down and the bounded queue is full): the caller tells the
	 * client. The data is copied if it must outlive the call. */
	int (*publish)(struct broker *b, const char *channel, size_t clen, const uint8_t *data,
	               size_t len);
	/* 1 while messages published anywhere reach this instance (for /readyz). */
	int (*ready)(struct broker *b);
	/* Stops timers, disconnects; called once at shutdown after every connection closed. */
	void (*free)(struct broker *b);
};

struct broker {
	const struct broker_ops *ops;
	struct hub *hub; /* where incoming messages go */
};

/* Where a broker delivers and what it resubscribes after a reconnect: the process's router
 * (router.h) for the Redis broker. */
struct broker_sink {
	void (*deliver)(void *arg, const char *channel, size_t clen, const uint8_t *data,
	                size_t len);
	void (*foreach_channel)(void *arg, void (*fn)(void *fnarg, const char *name, size_t len),
	                        void *fnarg);
	size_t (*nchannels)(void *arg);
	/* Redis confirmed a SUBSCRIBE of channel (may be NULL). */
	void (*confirmed)(void *arg, const char *channel, size_t len);
	/* The same for a large message the broker framed as it streamed in (hub_deliver_frame;
	 * the sink takes references to keep it). May be NULL: such messages are then buffered
	 * whole and go through deliver. */
	void (*deliver_frame)(void *arg, const char *channel, size_t clen, struct hub_frame *f,
	                      int is_text);
};

/* The in-process broker: publish delivers to hub directly and to every other worker's through
 * self's bus (all or none). self may be NULL (a lone hub, for tests). */
struct broker *broker_local_new(struct hub *hub, struct env *self);

/* The process's Redis broker (its own connections on worker 0's base): separate subscribe and
 * publish connections, reconnect with exponential backoff and jitter, resubscribe, and a
 * liveness canary (on <prefix>wsgate:probe:<instance_id>). Messages go to sink; on_sub_up runs
 * each time the sub link is (re)synchronised. One SUBSCRIBE per channel for the process. */
struct broker *broker_redis_new(const struct broker_sink *sink, void *sink_arg,
                                struct event_base *base, const struct config *cfg,
                                const char *instance_id, void (*on_sub_up)(void *arg), void *arg);
/* A worker's Redis broker: its own publish connection and bounded publish queue (so a refusal
 * is known at once and the client told); publishes wait while owner's sub link is down;
 * subscribe/unsubscribe are handed to relay (which forwards them to the owner's router). */
struct broker *broker_redis_new_publisher(
    struct hub *hub, struct event_base *base, const struct config *cfg, struct broker *owner,
    void (*relay)(void *arg, int on, const char *channel, size_t len), void *relay_arg);
/* The owner's sub link is up again: send what the publisher queued (its own loop). */
void broker_redis_kick(struct broker *b);

#endif
