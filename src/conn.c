/* conn.c - a client connection's life: accept, state changes, frames in and out, the close
 * handshake and the one teardown path. The handshake itself is in conn_handshake.c. */
#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "admission.h"
#include "conn_deflate.h"
#include "heartbeat.h"
#include "http.h"
#include "log.h"
#include "security.h"
#include "target.h"
#include "worker.h"
#include "gateway.h"
#include "transport.h"
#include "metrics.h"
#include "ws_frame.h"

static const char *const conn_state_names[] = {
	"handshake", "open", "closing", "flushing", "closed",
};

const char *
conn_state_name(enum conn_state st)
{
	return conn_state_names[st];
}

uint64_t
conn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
conn_log(const struct conn *c, enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	struct log_ctx ctx = { c->id, c->peer, c->route ? c->route->path : NULL };

	va_start(ap, fmt);
	log_vctx(lvl, &ctx, fmt, ap);
	va_end(ap);
}

void
conn_timer_arm(struct conn *c, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };

	evtimer_add(&c->timer, &tv);
}

/* Every legal transition; anything else is a broken invariant. */
static int
conn_transition_ok(enum conn_state from, enum conn_state to)
{
	switch (from) {
	case CONN_HANDSHAKE:
		return to == CONN_OPEN || to == CONN_FLUSHING || to == CONN_CLOSED;
	case CONN_OPEN:
		return to == CONN_CLOSING || to == CONN_FLUSHING || to == CONN_CLOSED;
	case CONN_CLOSING:
		return to == CONN_FLUSHING || to == CONN_CLOSED;
	case CONN_FLUSHING:
		return to == CONN_CLOSED;
	case CONN_CLOSED:
		return 0;
	}
	return 0;
}

void
conn_internal_error(struct conn *c, const char *why)
{
	conn_log(c, LOG_LVL_ERROR, "internal error: %s", why);
	METRIC_ADD(c->w->stats.internal_errors, 1);
#ifdef WSGATE_DEBUG
	abort();
#endif
	conn_close(c, why);
}

void
conn_set_state(struct conn *c, enum conn_state st)
{
	char why[96];

	if (!conn_transition_ok(c->state, st)) {
		/* CLOSED is reachable from every other state, so this cannot recurse. */
		snprintf(why, sizeof(why), "illegal transition %s -> %s",
		    conn_state_name(c->state), conn_state_name(st));
		conn_internal_error(c, why);
		return;
	}
	conn_log(c, LOG_LVL_DEBUG, "%s -> %s", conn_state_name(c->state), conn_state_name(st));
	c->state = st;
	evtimer_del(&c->timer);
	switch (st) {
	case CONN_OPEN:
		heartbeat_start(c);
		break;
	case CONN_CLOSING:
		conn_timer_arm(c, c->cfg->close_timeout_ms);
		break;
	case CONN_FLUSHING:
		conn_timer_arm(c, c->cfg->close_timeout_ms);
		/* Input is only discarded from now on, and must be read to see the peer's EOF,
		 * whatever paused it before (a pending target, a full output). */
		c->paused_target = 0;
		c->paused_output = 0;
		bufferevent_enable(c->bev, EV_READ);
		/* The FIN goes when everything was written: now, or from conn_write_cb. */
		if (ws_outq_len(&c->outq) == 0)
			transport_finish(c->bev);
		break;
	default:
		break;
	}
}

void
conn_close(struct conn *c, const char *reason)
{
	if (c->state == CONN_CLOSED)
		return;
	/* Health checks and refused handshakes would drown the log at info. */
	conn_log(c, c->upgraded ? LOG_LVL_INFO : LOG_LVL_DEBUG, "closed (%s): %s",
	    conn_state_name(c->state), reason);
	if (c->target != NULL && c->target->close != NULL)
		c->target->close(c);
	c->target = NULL;
	conn_set_state(c, CONN_CLOSED);
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	worker_conn_dead(c->w, c);
}

void
conn_free(struct conn *c)
{
	evtimer_del(&c->timer);
	ws_outq_free(&c->outq); /* its callback off the output first */
	bufferevent_free(c->bev); /* closes the socket: BEV_OPT_CLOSE_ON_FREE */
	config_release(c->cfg);
	limit_release(c->w->gw->limits, &c->limit);
	free(c->pending);
	free(c->msg);
	conn_deflate_free(c);
	free(c);
}

/* Reading is on unless our output is backed up or the target asked for a pause. */
void
conn_read_update(struct conn *c)
{
	if (c->state == CONN_CLOSED)
		return;
	if (c->paused_output || c->paused_target) {
		bufferevent_disable(c->bev, EV_READ);
		return;
	}
	bufferevent_enable(c->bev, EV_READ);
	/* Input may have been left unparsed when we stopped. */
	if ((c->state == CONN_OPEN || c->state == CONN_CLOSING) &&
	    evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		conn_frames_read(c);
}

void
conn_pause_read(struct conn *c)
{
	c->paused_target = 1;
	conn_read_update(c);
}

void
conn_resume_read(struct conn *c)
{
	if (!c->paused_target)
		return;
	c->paused_target = 0;
	conn_read_update(c);
}

size_t
conn_output_len(const struct conn *c)
{
	return ws_outq_len(&c->outq);
}

void
conn_want_drained(struct conn *c)
{
	c->want_drained = 1;
}

/* The output fell to WS_OUTQ_LEVEL (its low watermark): queued data frames move in; then the
 * waits on "drained" and on our own backpressure end once everything queued is under
 * CONN_OUT_LOW. In FLUSHING this is where we send FIN and wait for the peer's EOF: closing with
 * unread input would make the kernel send RST and could destroy our last frame in flight. */
static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	size_t left;

	ws_outq_pump(&c->outq);
	left = ws_outq_len(&c->outq);
	if (c->state == CONN_FLUSHING) {
		if (left == 0)
			transport_finish(bev);
		return;
	}
	if (left > CONN_OUT_LOW)
		return;
	if (c->want_drained) {
		c->want_drained = 0;
		if (c->target != NULL && c->target->drained != NULL)
			c->target->drained(c);
		if (c->state == CONN_CLOSED)
			return;
	}
	if (c->paused_output) {
		c->paused_output = 0;
		conn_read_update(c);
	}
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	char why[128];

	(void)bev;
	if (what & BEV_EVENT_EOF) {
		conn_close(c, c->state == CONN_FLUSHING || c->state == CONN_CLOSING
		    ? "peer closed" : "peer closed TCP without a close frame");
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		snprintf(why, sizeof(why), "socket error: %s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		conn_close(c, why);
	}
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	ws_outq_rx(&c->outq, conn_now_ms());
	switch (c->state) {
	case CONN_HANDSHAKE:
		conn_handshake_read(c);
		break;
	case CONN_OPEN:
	case CONN_CLOSING:
		conn_frames_read(c);
		break;
	case CONN_FLUSHING:
		/* Nothing more is processed; keep the receive queue empty (see conn_write_cb). */
		evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
		break;
	case CONN_CLOSED:
		break;
	}
}

/* The target's pending decision is abandoned: it releases its state (a backend attempt is
 * dropped) and hears nothing more from this connection. */
static void
conn_target_cancel(struct conn *c)
{
	if (c->target != NULL && c->target->close != NULL)
		c->target->close(c);
	c->target = NULL;
	free(c->pending);
	c->pending = NULL;
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	switch (c->state) {
	case CONN_HANDSHAKE:
		conn_log(c, LOG_LVL_INFO, "handshake timeout");
		/* A target still deciding (a backend attempt under way) is cancelled first: the 408
		 * is then the one answer, and no late result of that attempt can answer again. */
		if (c->pending != NULL)
			conn_target_cancel(c);
		conn_http_reply(c, 408, NULL, "handshake timeout");
		break;
	case CONN_OPEN:
		heartbeat_fire(c);
		break;
	case CONN_CLOSING:
		conn_close(c, "no close frame from peer within close_timeout");
		break;
	case CONN_FLUSHING:
		conn_close(c, "peer did not finish closing within close_timeout");
		break;
	case CONN_CLOSED:
		break;
	}
}

static void
conn_format_peer(struct conn *c, const struct sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(c->peer, sizeof(c->peer), "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host, port);
	} else {
		snprintf(c->peer, sizeof(c->peer), "unix");
	}
}

struct conn *
conn_new(struct worker *w, struct bufferevent *bev, const struct sockaddr *sa, socklen_t salen)
{
	struct conn *c;

	(void)salen;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("conn_new");
		bufferevent_free(bev);
		return NULL;
	}
	c->bev = bev;
	METRIC_ADD(w->stats.accepted, 1);
	c->id = worker_next_conn_id(w);
	c->w = w;
	c->cfg = worker_config_hold(w);
	c->state = CONN_HANDSHAKE;
	conn_format_peer(c, sa);
	ws_parser_init(&c->parser, c->cfg->max_message_size, 1);
	evtimer_assign(&c->timer, w->base, conn_timer_cb, c);
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	if (ws_outq_attach(&c->outq, c->bev, conn_now_ms()) < 0) {
		log_warnx("conn_new: out of memory");
		config_release(c->cfg);
		bufferevent_free(bev);
		free(c);
		return NULL;
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	worker_conn_add(w, c);
	conn_timer_arm(c, c->cfg->handshake_timeout_ms);
	conn_log(c, LOG_LVL_DEBUG, "accepted from %s", c->peer);
	return c;
}

/* ---- sending ---- */

/* Pings and pongs go ahead of queued data frames, on a frame boundary (ws_outq.h); data frames
 * and the close frame, which ends the stream, keep their order. */
static void
conn_queue_frame_fin(struct conn *c, int fin, unsigned opcode, const uint8_t *data, size_t len)
{
	struct evbuffer *out = opcode == WS_OP_PING || opcode == WS_OP_PONG ?
	    ws_outq_control(&c->outq) : ws_outq_data(&c->outq);
	uint8_t hdr[WS_FRAME_HDR_MAX];
	size_t hlen;

	if (c->pmd_on && conn_deflate_send(c, fin, opcode, data, len))
		return; /* queued compressed */
	hlen = ws_frame_encode(hdr, fin, 0, opcode, len, NULL);
	evbuffer_add(out, hdr, hlen);
	if (len > 0)
		evbuffer_add(out, data, len);
	if (c->rstats != NULL) {
		METRIC_ADD(c->rstats->msgs_out, fin && !WS_OP_IS_CONTROL(opcode));
		METRIC_ADD(c->rstats->bytes_out, hlen + len);
	}
}

static void
conn_queue_frame(struct conn *c, unsigned opcode, const uint8_t *data, size_t len)
{
	conn_queue_frame_fin(c, 1, opcode, data, len);
}

int
conn_send(struct conn *c, unsigned opcode, const uint8_t *data, size_t len)
{
	if (c->state != CONN_OPEN)
		return -1;
	conn_queue_frame(c, opcode, data, len);
	return 0;
}

int
conn_send_frame(struct conn *c, int fin, unsigned opcode, const uint8_t *data, size_t len)
{
	if (c->state != CONN_OPEN)
		return -1;
	conn_queue_frame_fin(c, fin, opcode, data, len);
	return 0;
}

int
conn_send_shared(struct conn *c, const uint8_t *frame, size_t len,
    void (*release)(const void *frame, size_t len, void *arg), void *arg)
{
	if (c->state != CONN_OPEN)
		return -1;
	/* Through the data queue like every data frame, so pings still overtake it on a frame
	 * boundary; the queue moves the reference, not the bytes. */
	if (evbuffer_add_reference(ws_outq_data(&c->outq), frame, len, release, arg) < 0)
		return -1;
	if (c->rstats != NULL) {
		METRIC_ADD(c->rstats->msgs_out, 1);
		METRIC_ADD(c->rstats->bytes_out, len);
	}
	return 0;
}

void
conn_send_close(struct conn *c, unsigned code, const char *reason)
{
	uint8_t payload[WS_CONTROL_MAX];
	char rbuf[WS_CONTROL_MAX];
	size_t rlen, plen = 0;

	if (c->state != CONN_OPEN && c->state != CONN_CLOSING)
		return;
	if (c->state == CONN_CLOSING && !c->peer_closed)
		return; /* our close is already out; wait for theirs */
	/* A close the client should come back from tells it where to resume (CONTRACT.md). */
	if (c->state == CONN_OPEN && reason != NULL && (code == WS_CLOSE_GOING_AWAY ||
	    code == WS_CLOSE_RESTART || code == WS_CLOSE_TRY_AGAIN))
		reason = target_pubsub_close_reason(c, reason, rbuf, sizeof(rbuf));
	rlen = reason != NULL ? strlen(reason) : 0;
	if (code != WS_CLOSE_NO_STATUS) {
		if (rlen > WS_CONTROL_MAX - 2)
			rlen = WS_CONTROL_MAX - 2;
		payload[0] = (uint8_t)(code >> 8);
		payload[1] = (uint8_t)(code & 0xff);
		memcpy(payload + 2, reason, rlen);
		plen = 2 + rlen;
	}
	conn_queue_frame(c, WS_OP_CLOSE, payload, plen);
	conn_log(c, LOG_LVL_DEBUG, "sent close %u", code);
	/* Having both closes, only the flush and the TCP close remain. */
	conn_set_state(c, c->peer_closed ? CONN_FLUSHING : CONN_CLOSING);
}

void
conn_send_close_retry(struct conn *c, unsigned code)
{
	char reason[32];

	/* The contract's reason: key=value tokens, "retry=3.2" seconds, drawn with jitter from
	 * the window the fleet's admission budget needs for the returning clients. */
	(void)admission_format_retry(reason, sizeof(reason), admission_hint_ms(c->w->gw->adm));
	conn_send_close(c, code, reason);
}

void
conn_http_reply(struct conn *c, int status, const char *extra_headers, const char *why)
{
	char buf[1024];
	size_t n;

	/* A late answer (a timer or a backend result after the connection moved on) is dropped:
	 * the client was answered already, or is gone. */
	if (c->state != CONN_HANDSHAKE) {
		conn_log(c, LOG_LVL_DEBUG, "HTTP %d not sent (%s): %s", status,
		    conn_state_name(c->state), why);
		return;
	}
	if (status >= 400)
		metrics_reject(&c->w->stats, status);
	n = http_format_reply(buf, sizeof(buf), status, extra_headers, NULL);
	if (n > 0)
		evbuffer_add(bufferevent_get_output(c->bev), buf, n);
	conn_log(c, status >= 500 ? LOG_LVL_WARN : LOG_LVL_INFO, "HTTP %d: %s", status, why);
	evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
	conn_set_state(c, CONN_FLUSHING);
}

/* ---- receiving ---- */

/* Fails the connection (RFC 6455 7.1.7): our close frame, then no more processing. */
static void
conn_fail(struct conn *c, unsigned code, const char *reason)
{
	conn_log(c, LOG_LVL_INFO, "protocol error, closing with %u: %s", code, reason);
	METRIC_ADD(c->w->stats.protocol_errors, 1);
	if (c->state == CONN_OPEN) {
		c->peer_closed = 1; /* we will not wait for their close: the stream is unusable */
		conn_send_close(c, code, reason);
	} else if (c->state == CONN_CLOSING) {
		conn_set_state(c, CONN_FLUSHING);
	}
}

/* max_messages_per_second: one token per message reaching the target; without one the client
 * gets close 1008 and nothing more is delivered. */
static int
conn_message_allowed(struct conn *c)
{
	uint64_t rate = c->route != NULL ? c->route->max_messages_per_second : 0;

	if (rate == 0 || limit_bucket_take(&c->msg_rate, rate, conn_now_ms()))
		return 1;
	security_count(c->w->gw->sec, SEC_MESSAGE_RATE);
	conn_log(c, LOG_LVL_INFO, "more than %llu messages per second, closing with 1008",
	    (unsigned long long)rate);
	conn_send_close(c, WS_CLOSE_POLICY, "message rate exceeded");
	return 0;
}

static void
conn_deliver(struct conn *c, unsigned opcode, const uint8_t *data, size_t len)
{
	c->last_msg_ms = conn_now_ms(); /* idle_timeout: only whole messages count */
	if (c->rstats != NULL) {
		METRIC_ADD(c->rstats->msgs_in, 1);
		METRIC_ADD(c->rstats->bytes_in, len);
	}
	if (c->state == CONN_OPEN && c->target != NULL && c->target->message != NULL &&
	    conn_message_allowed(c))
		c->target->message(c, opcode, data, len);
}

/* A data chunk: deliver in place when it is a whole message, else reassemble. */
static int
conn_on_data(struct conn *c, const struct ws_event *ev)
{
	size_t need;
	uint8_t *p;

	if (ev->first && ev->last) {
		conn_deliver(c, ev->opcode, ev->data, ev->len);
		return 0;
	}
	if (ev->first)
		c->msg_len = 0;
	need = c->msg_len + ev->len;
	if (need > c->msg_cap) {
		size_t cap = c->msg_cap ? c->msg_cap : 4096;
		/* The parser already bounded the message by max_message_size. */
		if (ev->first && ev->frame_left + ev->len > cap)
			cap = ev->frame_left + ev->len;
		while (cap < need)
			cap *= 2;
		if ((p = realloc(c->msg, cap)) == NULL) {
			conn_fail(c, WS_CLOSE_INTERNAL, "out of memory");
			return -1;
		}
		c->msg = p;
		c->msg_cap = cap;
	}
	if (ev->len > 0)
		memcpy(c->msg + c->msg_len, ev->data, ev->len);
	c->msg_len += ev->len;
	if (ev->last) {
		conn_deliver(c, ev->opcode, c->msg, c->msg_len);
		/* Idle connections keep no buffers. */
		free(c->msg);
		c->msg = NULL;
		c->msg_len = c->msg_cap = 0;
	}
	return 0;
}

static int conn_on_event(struct conn *c, const struct ws_event *ev);

/* A chunk of a compressed message: inflated (conn_deflate.c), and the whole message handled
 * as if it had come in one plain frame. */
static int
conn_on_compressed(struct conn *c, const struct ws_event *ev)
{
	struct ws_event m;
	const char *why;
	uint16_t code;
	int r;

	if ((r = conn_deflate_rx(c, ev, &m, &code, &why)) < 0) {
		conn_fail(c, code, why);
		return -1;
	}
	if (r == 0)
		return 0;
	r = conn_on_event(c, &m);
	conn_deflate_rx_done(c);
	return r;
}

/* Handles one parser event; returns -1 when processing must stop. */
static int
conn_on_event(struct conn *c, const struct ws_event *ev)
{
	switch (ev->type) {
	case WS_EV_DATA:
		if (c->state != CONN_OPEN)
			return 0; /* after our close, data is ignored (RFC 6455 1.4) */
		if (ev->compressed)
			return conn_on_compressed(c, ev);
		if (c->target != NULL && c->target->chunk != NULL) {
			if (ev->first && !conn_message_allowed(c))
				return -1;
			if (ev->last)
				c->last_msg_ms = conn_now_ms();
			if (c->rstats != NULL) {
				METRIC_ADD(c->rstats->msgs_in, ev->last);
				METRIC_ADD(c->rstats->bytes_in, ev->len);
			}
			c->target->chunk(c, ev);
			return c->state == CONN_OPEN ? 0 : -1;
		}
		return conn_on_data(c, ev);
	case WS_EV_PING:
		/* A client's own ping is its keepalive: it counts for idle_timeout, a pong (only
		 * an answer to ours) does not. */
		c->last_msg_ms = conn_now_ms();
		if (c->state == CONN_OPEN)
			conn_queue_frame(c, WS_OP_PONG, ev->data, ev->len);
		return 0;
	case WS_EV_PONG:
		heartbeat_pong(c, ev->data, ev->len);
		return 0;
	case WS_EV_CLOSE:
		c->peer_closed = 1;
		conn_log(c, LOG_LVL_DEBUG, "peer sent close %u", ev->close_code);
		if (c->state == CONN_OPEN && c->target != NULL && c->target->peer_close != NULL &&
		    c->target->peer_close(c, ev->close_code, ev->data, ev->len))
			return -1; /* the target answers it (conn_send_close) */
		if (c->state == CONN_OPEN) {
			char reason[WS_CONTROL_MAX + 1];
			memcpy(reason, ev->data, ev->len);
			reason[ev->len] = '\0';
			conn_send_close(c, ev->close_code, reason);
		} else {
			conn_set_state(c, CONN_FLUSHING);
		}
		return -1;
	case WS_EV_ERROR:
		conn_fail(c, ev->close_code, ev->reason);
		return -1;
	case WS_EV_NONE:
		break;
	}
	return 0;
}

void
conn_frames_read(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_iovec v;
	struct ws_event ev;
	size_t off, used;
	int stop = 0;

	/* The peer's close came and the target has yet to answer it: nothing after it counts. */
	if (c->state == CONN_OPEN && c->peer_closed) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	while (!stop && !c->paused_output && !c->paused_target &&
	    (c->state == CONN_OPEN || c->state == CONN_CLOSING) &&
	    evbuffer_peek(in, -1, NULL, &v, 1) > 0) {
		uint8_t *base = v.iov_base;

		for (off = 0; off < v.iov_len && !stop;) {
			if (ws_parser_feed(&c->parser, base + off, v.iov_len - off, &used, &ev) ==
			    WS_EV_NONE) {
				off += used;
				break;
			}
			off += used;
			if (conn_on_event(c, &ev) < 0 || c->state == CONN_CLOSED)
				stop = 1;
		}
		/* Events point into this chunk: drain it only after they were handled. */
		if (c->state != CONN_CLOSED)
			evbuffer_drain(in, off);
		if (c->state == CONN_OPEN && ws_outq_len(&c->outq) > CONN_OUT_HIGH) {
			c->paused_output = 1;
			conn_read_update(c);
		}
	}
	if (c->state == CONN_FLUSHING)
		evbuffer_drain(in, evbuffer_get_length(in));
}
