/* ws_outq.h - the sending side of one WebSocket endpoint, shared by the client side (conn.c) and
 * the backend side (upstream_conn.c): control frames ahead of queued data, and liveness by
 * progress.
 *
 * Data frames wait in a queue of their own and move into the transport's output a whole frame
 * at a time, only while that output holds less than WS_OUTQ_LEVEL bytes. Everything in the
 * output is therefore whole frames, so a control frame (ping, pong) appended there lands on a
 * frame boundary and overtakes the queued data. The close frame is the last frame of a stream
 * and goes through the data queue, after what was sent before it.
 *
 * Progress: a callback on the output counts the bytes the kernel (or TLS) takes; a peer is dead
 * only when a ping is outstanding and nothing moved (no byte taken, no byte read) for the pong
 * timeout. The ping counts as sent once its last byte was taken, not when it was queued. */
#ifndef WSGATE_WS_OUTQ_H
#define WSGATE_WS_OUTQ_H

#include <stddef.h>
#include <stdint.h>

/* Data frames move into the output while it holds less than this: a control frame waits behind
 * at most this much plus one frame. */
#define WS_OUTQ_LEVEL (64 * 1024)

/* What the end-of-turn writers (ws_outq_write_now, conn_flush.c's batched sends) give the
 * kernel for one connection in one loop turn; the rest goes under the transport's write event
 * on the turns after. Without a bound one turn copied into every subscriber's socket all its
 * buffers took (on loopback, the receiver's too: megabytes each), so a large message handed to
 * 20 subscribers held its loop 50-115 ms (test_pubsub_slicing, 1 run in 6 under ASan). A
 * proxied window of 16 messages of 16 KiB still goes in one turn. */
#define WS_OUTQ_TURN_BYTES (256 * 1024 + 1024)

struct evbuffer;
struct evbuffer_cb_entry;

#define WS_OUTQ_UNSENT_NONE UINT32_MAX

/* ws_outq_attach's flags: the output's front is frozen by its owner between the owner's own
 * writes (a libevent socket bufferevent's): thawed around ws_outq_write_now's writes. */
#define WS_OUTQ_FRONT_FROZEN 1u

struct ws_outq {
	struct evbuffer *out;          /* the transport's output we feed; NULL when none (yet) */
	struct evbuffer_cb_entry *cbe; /* our progress callback on out */
	struct evbuffer *pend; /* whole data frames not yet in the output; made on first use */
	/* Bytes were added to the output: the owner's writer hears of it (NULL: none needed, the
	 * transport arms its own writes). */
	void (*added)(struct ws_outq *q);
	uint64_t taken;      /* bytes of the output taken by the transport, ever */
	uint64_t taken_seen; /* `taken` when progress_ms was last brought up to date */
	uint64_t ping_end;   /* `taken` once the outstanding ping is written; 0: written or none */
	uint64_t ping_queued_ms;  /* the outstanding ping was queued then; 0: none outstanding */
	uint64_t ping_written_ms; /* its last byte was taken then; 0: not yet */
	uint64_t progress_ms;     /* last byte taken from our output or read from the peer */
	uint64_t *gauge;          /* NULL, or a total this queue's bytes count in (ws_outq_gauge) */
	int32_t fd;               /* the socket under the output (SIOCOUTQ, writes); -1: none */
	uint32_t kernel_unsent;   /* the socket's send queue (SIOCOUTQ) at the last look while
	                             this ping is out; WS_OUTQ_UNSENT_NONE: no look yet */
	uint8_t flags;            /* WS_OUTQ_FRONT_FROZEN */
};

/* Starts feeding out, the output of a transport over socket fd (-1: not yet, see
 * ws_outq_set_fd; a first one, or the next address's after a failed connect): registers the
 * progress callback. now_ms starts the progress clock. The owner sets its transport's write low
 * mark to WS_OUTQ_LEVEL and calls ws_outq_pump from its write callback. Returns 0 or -1
 * (ENOMEM). */
int ws_outq_attach(struct ws_outq *q, struct evbuffer *out, int fd, unsigned flags, uint64_t now_ms)
    __attribute__((warn_unused_result));
/* The socket under the output once it exists (a backend's, made by its connect). */
void ws_outq_set_fd(struct ws_outq *q, int fd);
/* Before the output is freed: removes the callback. The queue stays (see ws_outq_free). */
void ws_outq_detach(struct ws_outq *q);
void ws_outq_free(struct ws_outq *q);
/* Keeps *gauge up to date with what this queue holds (output and queue) from now until it is
 * freed or detached, as the bytes come and go: the worker's wsgate_outbound_queue_bytes without
 * a walk of every connection each second (issue #12: idle CPU). */
void ws_outq_gauge(struct ws_outq *q, uint64_t *gauge);

/* Writes the output to the socket now, as much as the kernel takes up to budget bytes (at most
 * WS_OUTQ_TURN_BYTES a turn), the queue refilling the output while it does. Returns what the
 * output still holds; the owner leaves that (or an error) to its transport's write event, and
 * an output the kernel took whole needs none. The end-of-turn writers of both sides
 * (conn_flush.c, upstream_conn.c). */
size_t ws_outq_write_now(struct ws_outq *q, size_t budget);

/* Where the next whole data frame (or the close frame) goes: the output itself when nothing
 * waits and it is under the level, else the queue. */
struct evbuffer *ws_outq_data(struct ws_outq *q);
/* Where a control frame (ping, pong) goes: the output, ahead of the queue. */
struct evbuffer *ws_outq_control(struct ws_outq *q);
/* Moves whole frames from the queue while the output is under the level; call from the
 * transport's write callback (its low mark is WS_OUTQ_LEVEL). */
void ws_outq_pump(struct ws_outq *q);
/* Bytes not yet taken: output and queue. */
size_t ws_outq_len(const struct ws_outq *q);

/* A ping was just appended to ws_outq_control(q). */
void ws_outq_ping_queued(struct ws_outq *q, uint64_t now_ms);
/* The peer answered: no ping outstanding. */
void ws_outq_pong(struct ws_outq *q);
/* Bytes came from the peer: it moved. */
void ws_outq_rx(struct ws_outq *q, uint64_t now_ms);
/* 1 while a ping is queued or written and not yet answered. */
int ws_outq_ping_outstanding(const struct ws_outq *q);
/* When the peer counts as dead if nothing moves before (output taken since the last call counts
 * as moved at now_ms): UINT64_MAX when no ping is out. */
uint64_t ws_outq_dead_at(struct ws_outq *q, uint64_t now_ms, uint64_t pong_timeout_ms);
/* When the heartbeat should look next for the peer's liveness: the dead line, or sooner (a
 * quarter of pong_timeout) while a ping is out, to date progress closely; UINT64_MAX: none. */
uint64_t ws_outq_next_look(struct ws_outq *q, uint64_t now_ms, uint64_t pong_timeout_ms);

#endif
