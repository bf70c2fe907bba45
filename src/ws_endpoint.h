/* ws_endpoint.h - one WebSocket endpoint for the two roles wsgate plays: server towards clients
 * (conn.c, with heartbeat.c for its timer) and client towards proxy backends (upstream_conn.c).
 * This module is the only place that frames, parses, pings and closes: framing into the output
 * queue (masked in the client role), the frame read loop with its role rule on masks, ping and
 * pong, the close handshake, the heartbeat and liveness rules and the output watermarks. Each
 * side keeps its own state enum and owner, and hands the endpoint a view of itself (struct
 * ws_endpoint) whose ops say what differs between the roles: parameters, not copies. */
#ifndef WSGATE_WS_ENDPOINT_H
#define WSGATE_WS_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "ws_frame.h"

struct evbuffer;
struct ws_event;
struct ws_outq;
struct ws_parser;

enum ws_role {
	WS_ROLE_SERVER = 0, /* we do not mask; every frame of the peer must be masked */
	WS_ROLE_CLIENT,     /* we mask every frame; no frame of the peer may be (RFC 6455 5.1) */
};

/* Where a side is in its WebSocket session, as the shared rules see its own state enum. */
enum ws_ep_state {
	WS_EP_NONE = 0, /* no session (yet): handshake, lookup, connect, upgrade */
	WS_EP_OPEN,     /* frames flow both ways */
	WS_EP_CLOSING,  /* our close frame is queued; reading for the peer's close */
	WS_EP_FLUSHING, /* both closes (or a failure): only our output is still written */
	WS_EP_CLOSED,   /* torn down: no more callbacks */
};

/* The heartbeat's verdicts that end a session (ws_endpoint_tick). */
enum ws_hb_end {
	WS_HB_DRAIN, /* the drain time came: close 1001 with a retry hint */
	WS_HB_IDLE,  /* no message from the peer for idle_timeout */
	WS_HB_DEAD,  /* a ping out and no progress for pong_timeout: the peer is gone */
};

/* The times the heartbeat rules keep per endpoint. */
struct ws_liveness {
	uint64_t last_msg_ms;  /* last whole message or ping from the peer (idle_timeout) */
	uint64_t next_ping_ms; /* when our next ping is due */
	uint64_t drain_at_ms;  /* shutting down: close at this time (0: not set) */
};

struct ws_endpoint;

/* What differs between the roles, and what only the side can do. One const table per side. */
struct ws_endpoint_ops {
	enum ws_role role;
	size_t out_high; /* our output above this: reading stops (a peer that does not read) */
	size_t out_low;  /* back under this: drained waits end, reading resumes */
	/* After our close (CLOSING): pings are still answered, and so the output watermark still
	 * stops reading (client role); the server role answers pings only while OPEN. */
	unsigned answer_while_closing : 1;
	/* A protocol error after our close ends the session at once (client role: the side's
	 * closed hook tears it down) rather than flushing our output (server role). */
	unsigned error_ends_closing : 1;

	enum ws_ep_state (*state)(void *side);
	/* CLOSING or FLUSHING, through the side's own transition. */
	void (*set_state)(void *side, enum ws_ep_state st);
	/* The side's own reasons to read (its owner's pause, its output pause). */
	int (*reading)(void *side);
	/* Frames one frame (ws_endpoint_queue_frame with the role's mask, the side's counters). */
	void (*queue)(void *side, int fin, unsigned opcode, const uint8_t *data, size_t len);
	/* A data chunk (WS_EV_DATA); -1 stops reading. */
	int (*data)(void *side, const struct ws_event *ev);
	/* The peer's close frame or a protocol error (WS_EV_CLOSE, WS_EV_ERROR), before the close
	 * handshake acts: the side logs and counts; 1 when it answers a close itself (a target that
	 * closes with a code of its own), NULL: never. */
	int (*peer_close)(void *side, const struct ws_event *ev);
	/* Our close answering the peer's close or failing the session, while OPEN; the side may
	 * change the reason, then calls ws_endpoint_close(..., peer_closed 1). */
	void (*answer_close)(void *side, unsigned code, const char *reason, size_t rlen);
	/* After the close handshake acted on a close or an error (prev: the state before); NULL:
	 * nothing to tell. The client role tells its owner here. */
	void (*peer_closed)(void *side, const struct ws_event *ev, enum ws_ep_state prev);
	/* Our output passed out_high (OPEN, or CLOSING when answer_while_closing): stop reading. */
	void (*pause_output)(void *side);
	/* Our output fell under out_low: the side's drained wait (if any), then its output pause
	 * ends (if set). */
	void (*drained)(void *side);
	void (*resume_output)(void *side);
	/* FLUSHING and everything written: the server sends its FIN (it closes TCP first, RFC
	 * 6455 7.1.1); the client waits for the backend's. */
	void (*flushed)(void *side);
	/* The heartbeat: one timer of the side's, our pings, the verdicts that end the session. */
	void (*timer_arm)(void *side, uint64_t ms);
	void (*pinged)(void *side); /* a ping was due (server: the app message); NULL: nothing */
	void (*rtt)(void *side, uint64_t rtt_ms); /* a pong answered our ping; NULL: not kept */
	void (*expired)(void *side, enum ws_hb_end why);
};

/* One side as the endpoint sees it, made on the stack by the side for each call. */
struct ws_endpoint {
	const struct ws_endpoint_ops *ops;
	void *side;
	struct ws_parser *parser;
	struct ws_outq *outq;
	struct ws_liveness *live;
	uint64_t ping_interval_ms; /* 0: no pings */
	uint64_t pong_timeout_ms;  /* > 0 whenever ping_interval_ms is (config.c) */
	uint64_t idle_timeout_ms;  /* 0: none (always 0 in the client role) */
};

/* The frame parser for role, bounding messages by max_message. */
void ws_endpoint_parser_init(struct ws_parser *p, enum ws_role role, uint64_t max_message);

/* Queues one frame: pings and pongs on the control queue (they overtake queued data on a frame
 * boundary, ws_outq.h), everything else on the data queue in order. key: the mask, NULL in the
 * server role; the payload is masked while it is copied. Returns the header length, or 0 when
 * out of memory (nothing of the payload queued). */
size_t ws_endpoint_queue_frame(struct ws_outq *q, int fin, unsigned opcode, const uint8_t *data,
                               size_t len, const uint8_t *key);
/* The same with reserved bits (WS_RSV1: a permessage-deflate message's first frame). */
size_t ws_endpoint_queue_frame_rsv(struct ws_outq *q, int fin, unsigned rsv, unsigned opcode,
                                   const uint8_t *data, size_t len, const uint8_t *key);

/* A data frame whose payload is already masked with key (a client's frame relayed by the
 * proxy, ws_parser_pass_masked): the header carries key and the payload is added as it is, with
 * no masking pass and no fresh key. Returns the header length, or 0 when out of memory. */
size_t ws_endpoint_queue_masked(struct ws_outq *q, int fin, unsigned opcode, const uint8_t *data,
                                size_t len, const uint8_t key[4]);

/* The header of a whole (FIN) server-role frame built once and shared by many sessions (the
 * hub's broadcasts, their compressed variants: rsv WS_RSV1): the same framing as
 * ws_endpoint_queue_frame, written into out (WS_FRAME_HDR_MAX bytes). Returns its length.
 * Inline, so the hub needs none of the endpoint's session code (fuzz_redis links the hub alone). */
static inline size_t
ws_endpoint_shared_header(uint8_t *out, unsigned rsv, unsigned opcode, uint64_t plen)
{
	return ws_frame_encode(out, 1, rsv, opcode, plen, NULL);
}

/* A close frame's payload: the code (none for 1005) and the reason, cut to fit a control
 * frame. Returns its length. */
size_t ws_endpoint_close_payload(uint8_t out[WS_CONTROL_MAX], unsigned code, const char *reason,
                                 size_t rlen);

/* Feeds in to the parser chunk by chunk while OPEN or CLOSING and the side reads; answers pings,
 * takes pongs, runs the close handshake on the peer's close and on protocol errors (a frame
 * masked against the role's rule is one), hands data to ops->data, drains what was handled
 * (events point into the chunk until then), and stops reading when our own output passed
 * out_high: what we answer (pongs, our close) must not pile up behind a peer that does not
 * read. */
void ws_endpoint_read(const struct ws_endpoint *ep, struct evbuffer *in);

/* Fails the session (RFC 6455 7.1.7) for a reason found outside the read loop (a message that
 * cannot be reassembled or inflated): handled as a protocol error event of that code. */
void ws_endpoint_fail(const struct ws_endpoint *ep, unsigned code, const char *reason);

/* Our close frame: from OPEN to CLOSING, or to FLUSHING when the peer's close is in
 * (peer_closed); in CLOSING only once the peer's close is in (an answer). Returns 0 when it was
 * queued, -1 when the state allows none (nothing done). */
int ws_endpoint_close(const struct ws_endpoint *ep, unsigned code, const char *reason, size_t rlen,
                      int peer_closed);

/* The output moved (the transport's write callback): queued frames move in; in FLUSHING an
 * empty output is ops->flushed; under out_low the drained wait and the output pause end. */
void ws_endpoint_written(const struct ws_endpoint *ep);

/* The session opened: no ping out, the idle and ping clocks start, the timer is planned. */
void ws_endpoint_start(const struct ws_endpoint *ep, uint64_t now_ms);
/* The side's timer fired while OPEN: drain time, idle, liveness (dead only when a ping is out
 * and nothing moved for pong_timeout: no byte read, none of our output taken), then our ping
 * when due (one at a time: ours being written is not the peer's progress); then the timer is
 * planned for the nearest deadline. Nothing runs per message. */
void ws_endpoint_tick(const struct ws_endpoint *ep, uint64_t now_ms);
/* Plans the side's timer for the nearest of: next ping, liveness look, idle, drain. */
void ws_endpoint_schedule(const struct ws_endpoint *ep, uint64_t now_ms);

/* The 8-byte payload of our pings: the send time in ms, big-endian, so a pong tells its round
 * trip. */
void ws_endpoint_ping_payload(uint8_t out[8], uint64_t now_ms);

/* The round trip of a pong answering one of our pings: 1 and *rtt_ms, or 0 when the payload is
 * not a plausible send time of ours. */
int ws_endpoint_pong_rtt(const uint8_t *data, size_t len, uint64_t now_ms, uint64_t *rtt_ms);

#endif
