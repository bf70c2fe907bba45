/* heartbeat.h - ping/pong, idle and app-message timers of an open connection, all driven by
 * the connection's one timer: the next deadline is recomputed only when it fires. */
#ifndef WSGATE_HEARTBEAT_H
#define WSGATE_HEARTBEAT_H

#include <stddef.h>
#include <stdint.h>

struct conn;

/* The connection just became OPEN: plan the first deadline. */
void heartbeat_start(struct conn *c);
/* The timer fired while OPEN. */
void heartbeat_fire(struct conn *c);
/* The gateway is draining: close this connection with 1001 at at_ms (now or later). */
void heartbeat_drain_at(struct conn *c, uint64_t at_ms);
/* A pong arrived. */
void heartbeat_pong(struct conn *c, const uint8_t *data, size_t len);

#endif
