/* conn.h - one client connection: its bufferevent, explicit state, the RFC 6455 session and
 * the route's target. One owner (its worker), one teardown path: conn_close(c, reason). */
#ifndef WSGATE_CONN_H
#define WSGATE_CONN_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "config.h"
#include "ws_parser.h"

struct worker;
struct bufferevent;
struct target_ops;
struct http_request;

enum conn_state {
	CONN_HANDSHAKE = 0, /* reading the HTTP upgrade request; timer = handshake_timeout */
	CONN_OPEN,          /* 101 sent; frames flow both ways; timer = heartbeat */
	CONN_CLOSING,       /* our close frame is queued; reading only for the peer's close; timer = close_timeout */
	CONN_FLUSHING,      /* last bytes (close frame or HTTP reply) being written, input discarded, then FIN and wait for EOF; timer = close_timeout */
	CONN_CLOSED,        /* on the worker's dead list; freed on the next loop turn; no callbacks */
};

struct conn {
	uint64_t id;                      /* process-unique, for logs */
	struct worker *w;                 /* owner */
	struct bufferevent *bev;
	enum conn_state state;
	const struct config *cfg;         /* snapshot this connection was accepted under */
	const struct config_route *route; /* NULL until the handshake matched one */
	const struct target_ops *target;
	void *tdata;                      /* the target's per-connection state */
	struct ws_parser parser;
	uint8_t *msg;                     /* message being reassembled across chunks/fragments */
	size_t msg_len, msg_cap;
	size_t hs_scanned;                /* handshake bytes already searched for the blank line */
	struct event timer;               /* one timer, its meaning set by the state */
	uint64_t last_rx_ms;              /* last bytes from the client (idle_timeout) */
	uint64_t ping_sent_ms;            /* outstanding ping, 0 when none */
	uint64_t next_ping_ms;
	unsigned read_paused : 1;         /* output above the high watermark: not reading */
	unsigned peer_closed : 1;         /* we received the peer's close frame */
	char peer[56];                    /* "addr:port" for logs */
	LIST_ENTRY(conn) entry;           /* worker's live list, then its dead list */
};

/* Takes ownership of fd (already accepted). Returns NULL after closing fd on failure. */
struct conn *conn_new(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen);

/* The only teardown: logs reason once, tells the target, stops all I/O and queues the free. */
void conn_close(struct conn *c, const char *reason);
/* Frees a CLOSED connection; called by the worker outside callbacks. */
void conn_free(struct conn *c);

/* Sends one unfragmented message or control frame. Returns 0, or -1 when not OPEN. */
int conn_send(struct conn *c, unsigned opcode, const uint8_t *data, size_t len);
/* Starts the close handshake (OPEN -> CLOSING), or answers the peer's close. */
void conn_send_close(struct conn *c, unsigned code, const char *reason);

/* Queues an HTTP reply and flushes then closes (HANDSHAKE -> FLUSHING). */
void conn_http_reply(struct conn *c, int status, const char *extra_headers, const char *why);

/* Connection-scoped logging: "[conn N] ...". */
void conn_log(const struct conn *c, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *conn_state_name(enum conn_state st);

/* Internal to conn*.c and heartbeat.c. */
void conn_set_state(struct conn *c, enum conn_state st);
void conn_handshake_read(struct conn *c);
void conn_frames_read(struct conn *c);
uint64_t conn_now_ms(void);
void conn_timer_arm(struct conn *c, uint64_t ms);

#endif
