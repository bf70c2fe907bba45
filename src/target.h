/* target.h - what a route does with a session's messages: echo, pubsub, proxy.
 * Each kind is one ops table; conn.c calls it and knows nothing of the kinds. */
#ifndef WSGATE_TARGET_H
#define WSGATE_TARGET_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct conn;

struct target_ops {
	const char *name;
	/* After the 101 went out and the connection is OPEN. Returns 0, or -1 after having
	 * closed the connection itself. May be NULL. */
	int (*open)(struct conn *c);
	/* One complete message from the client (payload valid only during the call). */
	void (*message)(struct conn *c, unsigned opcode, const uint8_t *data, size_t len);
	/* The connection is going away (any state after open). Release per-connection state. */
	void (*close)(struct conn *c);
};

extern const struct target_ops target_echo_ops;

/* The ops of a route type, or NULL when the type is not built in. */
const struct target_ops *target_for(enum route_type type);

#endif
