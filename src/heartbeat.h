/* heartbeat.h - the server role's heartbeat: ping/pong, liveness, idle and drain rules are the
 * endpoint's (ws_endpoint_tick); this is what they do to a client connection, all driven by
 * the connection's one timer. */
#ifndef WSGATE_HEARTBEAT_H
#define WSGATE_HEARTBEAT_H

#include <stddef.h>
#include <stdint.h>

#include "ws_endpoint.h"

struct conn;

/* The connection just became OPEN: plan the first deadline. */
void heartbeat_start(struct conn *c);
/* The timer fired while OPEN. */
void heartbeat_fire(struct conn *c);
/* The gateway is draining: close this connection with 1001 at at_ms (now or later). */
void heartbeat_drain_at(struct conn *c, uint64_t at_ms);

/* The server role's heartbeat hooks (struct ws_endpoint_ops, conn.c's table). */
void heartbeat_expired(void *conn, enum ws_hb_end why);
void heartbeat_pinged(void *conn);
void heartbeat_rtt(void *conn, uint64_t rtt_ms);

#endif
