/* broker.h - how a worker's hub reaches other hubs: the in-process broker (one instance) or
 * Redis pub/sub (every instance). The hub calls subscribe when a channel gets its first local
 * subscriber and unsubscribe when the last leaves; the broker calls hub_deliver() for each
 * message of a subscribed channel. Channel names are complete (channel_prefix included). */
#ifndef WSGATE_BROKER_H
#define WSGATE_BROKER_H

#include <stddef.h>
#include <stdint.h>

struct broker;
struct hub;
struct event_base;
struct config;
struct worker;

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
	struct hub *hub;  /* where incoming messages go */
};

/* The in-process broker: publish delivers to self's hub directly and to every other worker's
 * through its mailbox. self may be NULL (a lone hub, for tests). */
struct broker *broker_local_new(struct hub *hub, struct worker *self);

/* The Redis broker (hiredis async on base): separate subscribe and publish connections,
 * reconnect with exponential backoff and jitter, resubscribe, a bounded publish queue while
 * down, and a liveness canary. Each worker has its own: instance_id and worker name its canary
 * channel. */
struct broker *broker_redis_new(struct hub *hub, struct event_base *base,
    const struct config *cfg, const char *instance_id, int worker);

#endif
