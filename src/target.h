/* target.h - what a route does with a session's messages: echo, pubsub, proxy.
 * Each kind is one ops table; conn.c calls it and knows nothing of the kinds. */
#ifndef WSGATE_TARGET_H
#define WSGATE_TARGET_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct conn;
struct http_request;
struct route_match;
struct ws_event;

/* Results of target_ops.handshake besides an HTTP status (>= 400) to refuse with. */
/* TARGET_ACCEPT: send the 101 now. TARGET_PENDING: the target answers later, with
 * conn_upgrade_finish() or conn_http_reply(). */
#define TARGET_ACCEPT 0
#define TARGET_PENDING 1

struct target_ops {
	const char *name;
	/* Before the 101, with the request (valid only during the call: copy what must outlive
	 * it) and the matched route. May set c->tdata. NULL means TARGET_ACCEPT. */
	int (*handshake)(struct conn *c, const struct http_request *req,
	                 const struct route_match *m);
	/* The subprotocol of the 101 after handshake accepted, when the target chooses it (a
	 * string that lives as long as c->tdata). NULL: the route's first one the client offered.
	 */
	const char *(*protocol)(struct conn *c);
	/* After the 101 went out and the connection is OPEN. Returns 0, or -1 after having
	 * closed the connection itself. May be NULL. */
	int (*open)(struct conn *c);
	/* One complete message from the client (payload valid only during the call). */
	void (*message)(struct conn *c, unsigned opcode, const uint8_t *data, size_t len);
	/* When set, data arrives as it comes instead of as whole messages: ev->first/last mark
	 * message boundaries (a relay re-frames without buffering whole messages). */
	void (*chunk)(struct conn *c, const struct ws_event *ev);
	/* The client's output fell back under the low watermark after conn_output_high(). */
	void (*drained)(struct conn *c);
	/* The client's close frame arrived while OPEN (code 1005 when it had none; reason valid
	 * only during the call). Returns 0 and the core answers it at once, or 1 and the target
	 * answers later with conn_send_close() (a relay first closes its backend, so what the
	 * backend still sends reaches the client); nothing after the close is read. May be NULL. */
	int (*peer_close)(struct conn *c, unsigned code, const uint8_t *reason, size_t len);
	/* The connection is going away (any state after open). Release per-connection state. */
	void (*close)(struct conn *c);
};

extern const struct target_ops target_echo_ops;
extern const struct target_ops target_pubsub_ops;
extern const struct target_ops target_proxy_ops;

struct hub_frame;
/* The hub's delivery callback for pubsub connections (see hub.h). */
void target_pubsub_deliver(struct conn *c, struct hub_frame *f);

/* The hub's "channel live" callback for pubsub connections (hub_set_confirming): a handshake
 * waiting for its channels' subscriptions answers its 101 once all are live. */
void target_pubsub_live(struct conn *c);

/* The reason of a close a client should recover from (1001, 1012, 1013) on a pubsub
 * connection: reason plus " since=E:O" when it has one history channel (or reason, after a
 * {"type":"resume",...} message when it has several). buf holds the result. */
const char *target_pubsub_close_reason(struct conn *c, const char *reason, char *buf, size_t bufsz);

struct hub_sub;
enum history_gap;
/* The hub's gap callback (hub.h, hub_gap_fn). */
void target_pubsub_gap(struct conn *c, const struct hub_sub *s, const char *epoch, uint64_t from,
                       uint64_t to, enum history_gap reason);
/* A replay from Redis begins: live messages wait in the queue until it is over. */
void target_pubsub_replaying(struct conn *c);
/* It is over for s's channel: queued messages of epoch up to upto were replayed (dropped from
 * the queue); the queue moves again when no replay is left. */
void target_pubsub_replayed(struct conn *c, const char *epoch, uint64_t upto,
                            const struct hub_sub *s);

/* The ops of a route type, or NULL when the type is not built in. */
const struct target_ops *target_for(enum route_type type);

#endif
