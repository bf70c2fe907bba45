/* conn.h - one client connection: its transport, explicit state, the RFC 6455 session and
 * the route's target. One owner (its worker), one teardown path: conn_close(c, reason). */
#ifndef WSGATE_CONN_H
#define WSGATE_CONN_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "clock.h"
#include "config.h"
#include "limit.h"
#include "timer_wheel.h"
#include "ws_endpoint.h"
#include "ws_outq.h"
#include "ws_parser.h"

/* Watermarks of queued output: above HIGH we stop reading the client (an echo client that never
 * reads cannot make us buffer without bound); targets are told when it falls under LOW. */
#define CONN_OUT_HIGH (1024 * 1024)
#define CONN_OUT_LOW (64 * 1024)

struct env;
struct conn_pending;
struct conn_pmd;
struct transport;
struct target_ops;
struct http_request;

enum conn_state {
	CONN_HANDSHAKE = 0, /* reading the HTTP upgrade request; timer = handshake_timeout */
	CONN_OPEN,          /* 101 sent; frames flow both ways; timer = heartbeat */
	CONN_CLOSING,       /* our close frame is queued; reading only for the peer's close; timer =
	                       close_timeout */
	CONN_FLUSHING, /* last bytes (close frame or HTTP reply) being written, input discarded,
	                  then FIN and wait for EOF; timer = close_timeout */
	CONN_CLOSED,   /* on the worker's dead list; freed on the next loop turn; no callbacks */
};

/* A peer's address kept in 20 bytes (an idle connection's memory, issue #12); "addr:port"
 * only when a log line or the trusted-proxy check asks (conn_peer_str). */
struct conn_peer {
	uint8_t family; /* AF_INET, AF_INET6; 0: another kind (a unix socket) */
	uint8_t addr[16];
	uint16_t port; /* host order */
};
#define CONN_PEER_STRLEN 56 /* "[" INET6_ADDRSTRLEN "]:" port */

struct conn {
	uint64_t id;          /* process-unique, for logs */
	struct env *env;      /* what the owner (a worker) provides */
	struct transport *tr; /* the socket, plain or TLS (transport.h) */
	enum conn_state state;
	unsigned paused_output : 1; /* our output is above the high watermark: not reading */
	unsigned paused_target : 1; /* the target asked us to stop reading (its peer is slow) */
	unsigned want_drained : 1;  /* call target->drained when output falls low */
	unsigned peer_closed : 1;   /* we received the peer's close frame */
	unsigned upgraded : 1;      /* a 101 was sent (logging: HTTP-only connections are quiet) */
	unsigned flush_marked : 1;  /* on this turn's end-of-turn write list (conn_flush.c) */
	unsigned flush_tls : 1;     /* TLS: its bufferevent writes, never conn_flush */
	/* permessage-deflate terms, kept in bits so an idle connection holds nothing more
	 * (conn_deflate.c; c->pmd exists only while a message is (de)compressed or the client's
	 * context is kept) */
	unsigned pmd_on : 1;        /* negotiated */
	unsigned pmd_cnt : 1;       /* client_no_context_takeover */
	unsigned pmd_budget : 1;    /* the client's kept context counts in compression_memory */
	unsigned pmd_say_sbits : 1; /* the 101 answers server_max_window_bits */
	unsigned pmd_say_cbits : 1; /* the 101 answers client_max_window_bits */
	unsigned pmd_sbits : 4;     /* window wsgate compresses with */
	unsigned pmd_cbits : 4;     /* window the client compresses with */
	unsigned pub_id_set : 1;    /* pub_id was drawn */
	const struct config *cfg;   /* snapshot this connection was accepted under */
	const struct config_route *route; /* NULL until the handshake matched one */
	const struct target_ops *target;
	struct route_stats *rstats; /* the route's counters (NULL before the upgrade) */
	void *tdata;                /* the target's per-connection state */
	struct ws_parser parser;
	uint8_t *msg; /* message being reassembled across chunks/fragments */
	size_t msg_len, msg_cap;
	struct timer_wheel_entry timer; /* one timer (env->wheel), its meaning set by the state */
	struct ws_outq outq;            /* data frames waiting behind control frames; progress */
	struct ws_liveness live;        /* the heartbeat's times: last message, next ping, drain */
	struct conn_pending
	    *pending;              /* handshake data kept while a target decides (TARGET_PENDING) */
	struct conn_pmd *pmd;      /* permessage-deflate work in progress (conn_deflate.c) */
	struct conn_peer peer;     /* the client's address, formatted by conn_peer_str */
	uint8_t pub_id[16];        /* random public id (conn_public_id), drawn on first use */
	struct limit_ticket limit; /* admission counted at accept, given back in conn_free */
	uint32_t hs_scanned;       /* handshake bytes already searched for the blank line (at most
	                              HTTP_MAX_HEADER) */
	struct limit_bucket msg_rate; /* the route's max_messages_per_second */
	LIST_ENTRY(conn) entry;       /* worker's live list, then its dead list */
};

/* Takes ownership of tr (an accepted transport, see transport.h). Returns NULL after freeing
 * it on failure. */
struct conn *conn_new(struct env *env, struct transport *tr, const struct sockaddr *sa,
                      socklen_t salen);

/* The only teardown: logs reason once, tells the target, stops all I/O and queues the free. */
void conn_close(struct conn *c, const char *reason);
/* Frees a CLOSED connection; called by the worker outside callbacks. */
void conn_free(struct conn *c);

/* Sends one unfragmented message or control frame. Returns 0, or -1 when not OPEN. */
int conn_send(struct conn *c, unsigned opcode, const uint8_t *data, size_t len);
/* Sends one frame of a possibly fragmented message (opcode WS_OP_CONT after the first). */
int conn_send_frame(struct conn *c, int fin, unsigned opcode, const uint8_t *data, size_t len);
/* Queues a complete frame by reference, not by copy (a broadcast framed once per worker for
 * every subscriber): release(frame, len, arg) runs on this worker's loop once the bytes are
 * written or dropped. A frame of at most CONN_SHARED_COPY_MAX bytes is copied instead and
 * released before this returns. Returns 0, or -1 when not OPEN or on ENOMEM (release is then
 * not called: the caller still owns its reference). */
#define CONN_SHARED_COPY_MAX 512
int conn_send_shared(struct conn *c, const uint8_t *frame, size_t len,
                     void (*release)(const void *frame, size_t len, void *arg), void *arg)
    __attribute__((warn_unused_result));
/* Bytes queued towards the client and not yet written. */
size_t conn_output_len(const struct conn *c);
/* Backpressure from the target: stop / restart reading from the client. */
void conn_pause_read(struct conn *c);
void conn_resume_read(struct conn *c);
/* Ask for one target->drained call when the output falls under the low watermark. */
void conn_want_drained(struct conn *c);
/* TARGET_PENDING finished: send the 101 (with protocol, or none, and extra header lines
 * "Name: value\r\n" when not NULL) and open the session. */
void conn_upgrade_finish(struct conn *c, const char *protocol, const char *extra);
/* The first of the route's subprotocols (its preference order) that the client offered, or
 * NULL; the string is the route's (it lives as long as the connection's snapshot). */
const char *conn_pick_protocol(const struct config_route *r, const struct http_request *req);
/* Starts the close handshake (OPEN -> CLOSING), or answers the peer's close. */
void conn_send_close(struct conn *c, unsigned code, const char *reason);

/* Queues an HTTP reply and flushes then closes (HANDSHAKE -> FLUSHING). */
/* A close the client should recover from (drain 1001, restart 1012, try again 1013): the
 * reason carries the retry hint, "retry=S.s". */
void conn_send_close_retry(struct conn *c, unsigned code);
void conn_http_reply(struct conn *c, int status, const char *extra_headers, const char *why);

/* "addr:port" ("[addr]:port" for IPv6, "unix" otherwise) into buf (CONN_PEER_STRLEN); returns
 * buf. conn_peer_ip: the address alone; returns -1 for a peer without one. */
const char *conn_peer_str(const struct conn *c, char *buf, size_t bufsz);
int conn_peer_ip(const struct conn *c, char *buf, size_t bufsz);

/* Connection-scoped logging: "[conn N] ...". */
void conn_log(const struct conn *c, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *conn_state_name(enum conn_state st);

/* "<instance>-<32 hex digits>": the connection's public id (its direct channel is
 * "wsgate:conn:<id>"), unique across instances and unguessable: 128 bits from RAND_bytes,
 * drawn on first use and kept for the connection's life. Returns buf, or NULL when the
 * random generator fails (the caller refuses the connection). */
const char *conn_public_id(struct conn *c, char *buf, size_t bufsz);

/* A broken invariant reached at run time (an impossible state, an illegal transition): logs
 * why, counts it in wsgate_internal_errors_total and closes this one connection. Aborts only in
 * a debug build (configure --enable-debug). */
void conn_internal_error(struct conn *c, const char *why);

/* Internal to conn*.c and heartbeat.c. An illegal transition is a conn_internal_error(): the
 * connection is then CLOSED, which callers check as after any call that may close. */
void conn_set_state(struct conn *c, enum conn_state st);
void conn_handshake_read(struct conn *c);
void conn_frames_read(struct conn *c);
void conn_read_update(struct conn *c);
void conn_timer_arm(struct conn *c, uint64_t ms);
/* The connection as its WebSocket endpoint (server role) sees it, for ws_endpoint_*(). */
void conn_endpoint(struct conn *c, struct ws_endpoint *ep);
/* Bytes of the output were taken by the transport (its write callback, or conn_flush.c's own
 * write): pump queued frames, wake a target waiting for "drained", resume
 * reading, or finish a flushing close. */
void conn_written(struct conn *c);

#endif
