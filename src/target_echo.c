/* target_echo.c - the echo route: every message goes back with its type, for diagnostics and
 * conformance runs; and target_for(), the table of built-in route kinds. */
#include "target.h"
#include "conn.h"

static void
echo_message(struct conn *c, unsigned opcode, const uint8_t *data, size_t len)
{
	(void)conn_send(c, opcode, data, len);
}

const struct target_ops target_echo_ops = {
    .name = "echo",
    .open = NULL,
    .message = echo_message,
    .close = NULL,
};

const struct target_ops *
target_for(enum route_type type)
{
	switch (type) {
	case ROUTE_ECHO:
		return &target_echo_ops;
	case ROUTE_PUBSUB:
		return &target_pubsub_ops;
	case ROUTE_PROXY:
		return &target_proxy_ops;
	default:
		return NULL;
	}
}
