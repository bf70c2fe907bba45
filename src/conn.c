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
#include <openssl/rand.h>

#include "admission.h"
#include "conn_deflate.h"
#include "conn_flush.h"
#include "heartbeat.h"
#include "http.h"
#include "log.h"
#include "security.h"
#include "target.h"
#include "env.h"
#include "transport.h"
#include "metrics.h"
#include "ws_endpoint.h"
#include "ws_frame.h"

static const char *const conn_state_names[] = {
    "handshake", "open", "closing", "flushing", "closed",
};

const char *
conn_state_name(enum conn_state st)
{
	return conn_state_names[st];
}

void
conn_log(const struct conn *c, enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	char peer[CONN_PEER_STRLEN];

	if (!log_enabled(lvl))
		return; /* the address is formatted only for a line that is written */
	struct log_ctx ctx = {c->id, conn_peer_str(c, peer, sizeof(peer)),
	                      c->route ? c->route->path : NULL};

	va_start(ap, fmt);
	log_vctx(lvl, &ctx, fmt, ap);
	va_end(ap);
}

static void conn_timer_cb(struct timer_wheel_entry *t);

void
conn_timer_arm(struct conn *c, uint64_t ms)
{
	timer_wheel_arm(c->env->wheel, &c->timer, ms, conn_timer_cb);
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
	METRIC_ADD(c->env->stats->internal_errors, 1);
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
		snprintf(why, sizeof(why), "illegal transition %s -> %s", conn_state_name(c->state),
		         conn_state_name(st));
		conn_internal_error(c, why);
		return;
	}
	conn_log(c, LOG_LVL_DEBUG, "%s -> %s", conn_state_name(c->state), conn_state_name(st));
	c->state = st;
	timer_wheel_cancel(c->env->wheel, &c->timer);
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
		transport_enable(c->tr, EV_READ);
		/* The FIN goes when everything was written: now, or from conn_write_cb. */
		if (ws_outq_len(&c->outq) == 0)
			transport_finish(c->tr);
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
	transport_disable(c->tr, EV_READ | EV_WRITE);
	transport_setcb(c->tr, NULL, NULL);
	c->env->conn_dead(c->env->arg, c);
}

void
conn_free(struct conn *c)
{
	timer_wheel_cancel(c->env->wheel, &c->timer);
	conn_flush_forget(c);
	ws_outq_free(&c->outq); /* its callback off the output first */
	transport_free(c->tr);  /* closes the socket */
	config_release(c->cfg);
	limit_release(c->env->limits, &c->limit);
	free(c->pending);
	free(c->msg);
	ws_parser_free(&c->parser);
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
		transport_disable(c->tr, EV_READ);
		return;
	}
	transport_enable(c->tr, EV_READ);
	/* Input may have been left unparsed when we stopped. */
	if ((c->state == CONN_OPEN || c->state == CONN_CLOSING) && transport_input_len(c->tr) > 0)
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
void
conn_written(struct conn *c)
{
	struct ws_endpoint ep;

	conn_endpoint(c, &ep);
	ws_endpoint_written(&ep);
}

static void
conn_write_cb(struct transport *t, void *arg)
{
	(void)t;
	conn_written(arg);
}

static void
conn_event_cb(struct transport *t, short what, void *arg)
{
	struct conn *c = arg;
	char why[128];

	(void)t;
	if (what & TRANSPORT_EOF) {
		conn_close(c, c->state == CONN_FLUSHING || c->state == CONN_CLOSING
		                  ? "peer closed"
		                  : "peer closed TCP without a close frame");
		return;
	}
	if (what & TRANSPORT_ERROR) {
		snprintf(why, sizeof(why), "socket error: %s",
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		conn_close(c, why);
	}
}

static void
conn_read_cb(struct transport *t, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in;

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
		in = transport_input(t);
		evbuffer_drain(in, evbuffer_get_length(in));
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

/* The wheel hands back the entry: the connection is the struct around it. */
static void
conn_timer_cb(struct timer_wheel_entry *t)
{
	struct conn *c = (struct conn *)(void *)((char *)t - offsetof(struct conn, timer));

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
conn_keep_peer(struct conn *c, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		c->peer.family = AF_INET;
		memcpy(c->peer.addr, &in->sin_addr, 4);
		c->peer.port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		c->peer.family = AF_INET6;
		memcpy(c->peer.addr, &in6->sin6_addr, 16);
		c->peer.port = ntohs(in6->sin6_port);
	}
}

int
conn_peer_ip(const struct conn *c, char *buf, size_t bufsz)
{
	if (c->peer.family == 0 ||
	    inet_ntop(c->peer.family, c->peer.addr, buf, (socklen_t)bufsz) == NULL)
		return -1;
	return 0;
}

const char *
conn_peer_str(const struct conn *c, char *buf, size_t bufsz)
{
	char host[INET6_ADDRSTRLEN];

	if (conn_peer_ip(c, host, sizeof(host)) < 0)
		snprintf(buf, bufsz, c->peer.family == 0 ? "unix" : "?");
	else if (c->peer.family == AF_INET6)
		snprintf(buf, bufsz, "[%s]:%u", host, (unsigned)c->peer.port);
	else
		snprintf(buf, bufsz, "%s:%u", host, (unsigned)c->peer.port);
	return buf;
}

/* Bytes were added to the output (ws_outq's hook): written at the end of this loop turn. */
static void
conn_outq_added(struct ws_outq *q)
{
	conn_flush_mark((struct conn *)(void *)((char *)q - offsetof(struct conn, outq)));
}

static const struct transport_cbs conn_transport_cbs = {
    .read = conn_read_cb,
    .write = conn_write_cb,
    .event = conn_event_cb,
};

struct conn *
conn_new(struct env *env, struct transport *tr, const struct sockaddr *sa, socklen_t salen)
{
	struct conn *c;

	(void)salen;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("conn_new");
		transport_free(tr);
		return NULL;
	}
	c->tr = tr;
	c->flush_tls = transport_is_tls(tr) != 0;
	METRIC_ADD(env->stats->accepted, 1);
	c->id = env->next_conn_id(env->arg);
	c->env = env;
	c->cfg = env->config_hold(env->arg);
	c->state = CONN_HANDSHAKE;
	conn_keep_peer(c, sa);
	ws_endpoint_parser_init(&c->parser, WS_ROLE_SERVER, c->cfg->max_message_size);
	transport_setcb(tr, &conn_transport_cbs, c);
	if (ws_outq_attach(&c->outq, transport_output(tr), transport_fd(tr),
	                   c->flush_tls ? WS_OUTQ_FRONT_FROZEN : 0, conn_now_ms()) < 0) {
		log_warnx("conn_new: out of memory");
		config_release(c->cfg);
		transport_free(tr);
		free(c);
		return NULL;
	}
	/* The write callback runs whenever the output falls to the level: time to pump. */
	transport_set_write_low(tr, WS_OUTQ_LEVEL);
	/* Plain: every byte added is written at the end of its turn (conn_flush.c); a TLS
	 * session's bufferevent writes its own. */
	if (!c->flush_tls)
		c->outq.added = conn_outq_added;
	ws_outq_gauge(&c->outq, env->out_queued);
	transport_enable(tr, EV_READ | EV_WRITE);
	env->conn_add(env->arg, c);
	conn_timer_arm(c, c->cfg->handshake_timeout_ms);
	if (log_enabled(LOG_LVL_DEBUG)) {
		char peer[CONN_PEER_STRLEN];
		conn_log(c, LOG_LVL_DEBUG, "accepted from %s",
		         conn_peer_str(c, peer, sizeof(peer)));
	}
	return c;
}

/* ---- sending ---- */

/* Pings and pongs go ahead of queued data frames, on a frame boundary (ws_outq.h); data frames
 * and the close frame, which ends the stream, keep their order. */
static void
conn_queue_frame_fin(struct conn *c, int fin, unsigned opcode, const uint8_t *data, size_t len)
{
	size_t hlen;

	conn_flush_mark(c); /* written at the end of this loop turn */
	if (c->pmd_on && conn_deflate_send(c, fin, opcode, data, len))
		return; /* queued compressed */
	hlen = ws_endpoint_queue_frame(&c->outq, fin, opcode, data, len, NULL);
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
	 * boundary; the queue moves the reference, not the bytes. A small frame is copied
	 * instead, next to the frames before it: a reference costs a chain (an allocation and
	 * an iovec of its own) per frame and subscriber, more than copying its bytes. */
	if (len <= CONN_SHARED_COPY_MAX) {
		if (evbuffer_add(ws_outq_data(&c->outq), frame, len) < 0)
			return -1;
		release(frame, len, arg);
	} else if (evbuffer_add_reference(ws_outq_data(&c->outq), frame, len, release, arg) < 0)
		return -1;
	conn_flush_mark(c); /* written at the end of this loop turn, with the turn's other frames */
	if (c->rstats != NULL) {
		METRIC_ADD(c->rstats->msgs_out, 1);
		METRIC_ADD(c->rstats->bytes_out, len);
	}
	return 0;
}

void
conn_send_close(struct conn *c, unsigned code, const char *reason)
{
	char rbuf[WS_CONTROL_MAX];
	struct ws_endpoint ep;

	/* A close the client should come back from tells it where to resume (CONTRACT.md). */
	if (c->state == CONN_OPEN && reason != NULL &&
	    (code == WS_CLOSE_GOING_AWAY || code == WS_CLOSE_RESTART || code == WS_CLOSE_TRY_AGAIN))
		reason = target_pubsub_close_reason(c, reason, rbuf, sizeof(rbuf));
	conn_endpoint(c, &ep);
	if (ws_endpoint_close(&ep, code, reason, reason != NULL ? strlen(reason) : 0,
	                      c->peer_closed) == 0)
		conn_log(c, LOG_LVL_DEBUG, "sent close %u", code);
}

void
conn_send_close_retry(struct conn *c, unsigned code)
{
	char reason[32];

	/* The contract's reason: key=value tokens, "retry=3.2" seconds, drawn with jitter from
	 * the window the fleet's admission budget needs for the returning clients. */
	(void)admission_format_retry(reason, sizeof(reason), admission_hint_ms(c->env->adm));
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
		metrics_reject(c->env->stats, status);
	n = http_format_reply(buf, sizeof(buf), status, extra_headers, NULL);
	if (n > 0)
		evbuffer_add(transport_output(c->tr), buf, n);
	conn_log(c, status >= 500 ? LOG_LVL_WARN : LOG_LVL_INFO, "HTTP %d: %s", status, why);
	if (transport_input_len(c->tr) > 0)
		evbuffer_drain(transport_input(c->tr), transport_input_len(c->tr));
	conn_set_state(c, CONN_FLUSHING);
}

/* ---- receiving ---- */

/* Fails the connection (RFC 6455 7.1.7): our close frame, then no more processing. */
static void
conn_fail(struct conn *c, unsigned code, const char *reason)
{
	struct ws_endpoint ep;

	conn_endpoint(c, &ep);
	ws_endpoint_fail(&ep, code, reason);
}

/* max_messages_per_second: one token per message reaching the target; without one the client
 * gets close 1008 and nothing more is delivered. */
static int
conn_message_allowed(struct conn *c)
{
	uint64_t rate = c->route != NULL ? c->route->max_messages_per_second : 0;

	if (rate == 0 || limit_bucket_take(&c->msg_rate, rate, conn_now_ms()))
		return 1;
	security_count(c->env->sec, SEC_MESSAGE_RATE);
	conn_log(c, LOG_LVL_INFO, "more than %llu messages per second, closing with 1008",
	         (unsigned long long)rate);
	conn_send_close(c, WS_CLOSE_POLICY, "message rate exceeded");
	return 0;
}

static void
conn_deliver(struct conn *c, unsigned opcode, const uint8_t *data, size_t len)
{
	c->live.last_msg_ms = conn_now_ms(); /* idle_timeout: only whole messages count */
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

/* A data chunk from the endpoint's read loop; returns -1 when processing must stop. */
static int
conn_on_event(struct conn *c, const struct ws_event *ev)
{
	if (c->state != CONN_OPEN)
		return 0; /* after our close, data is ignored (RFC 6455 1.4) */
	if (ev->compressed)
		return conn_on_compressed(c, ev);
	if (c->target != NULL && c->target->chunk != NULL) {
		if (ev->first && !conn_message_allowed(c))
			return -1;
		if (ev->last)
			c->live.last_msg_ms = conn_now_ms();
		if (c->rstats != NULL) {
			METRIC_ADD(c->rstats->msgs_in, ev->last);
			METRIC_ADD(c->rstats->bytes_in, ev->len);
		}
		c->target->chunk(c, ev);
		return c->state == CONN_OPEN ? 0 : -1;
	}
	return conn_on_data(c, ev);
}

/* ---- the server role of the WebSocket endpoint (ws_endpoint.h) ---- */

static enum ws_ep_state
conn_ep_state(void *arg)
{
	static const enum ws_ep_state map[] = {
	    [CONN_HANDSHAKE] = WS_EP_NONE,  [CONN_OPEN] = WS_EP_OPEN,
	    [CONN_CLOSING] = WS_EP_CLOSING, [CONN_FLUSHING] = WS_EP_FLUSHING,
	    [CONN_CLOSED] = WS_EP_CLOSED,
	};

	return map[((struct conn *)arg)->state];
}

static void
conn_ep_set_state(void *arg, enum ws_ep_state st)
{
	conn_set_state(arg, st == WS_EP_CLOSING ? CONN_CLOSING : CONN_FLUSHING);
}

static int
conn_ep_reading(void *arg)
{
	struct conn *c = arg;

	return !c->paused_output && !c->paused_target;
}

static void
conn_ep_queue(void *arg, int fin, unsigned opcode, const uint8_t *data, size_t len)
{
	conn_queue_frame_fin(arg, fin, opcode, data, len);
}

static int
conn_ep_data(void *arg, const struct ws_event *ev)
{
	return conn_on_event(arg, ev);
}

static int
conn_ep_peer_close(void *arg, const struct ws_event *ev)
{
	struct conn *c = arg;

	if (ev->type == WS_EV_ERROR) {
		conn_log(c, LOG_LVL_INFO, "protocol error, closing with %u: %s", ev->close_code,
		         ev->reason);
		METRIC_ADD(c->env->stats->protocol_errors, 1);
		if (c->state == CONN_OPEN)
			c->peer_closed =
			    1; /* we will not wait for their close: the stream is unusable */
		return 0;
	}
	c->peer_closed = 1;
	conn_log(c, LOG_LVL_DEBUG, "peer sent close %u", ev->close_code);
	/* The target may answer with a code of its own (conn_send_close). */
	return c->state == CONN_OPEN && c->target != NULL && c->target->peer_close != NULL &&
	       c->target->peer_close(c, ev->close_code, ev->data, ev->len);
}

static void
conn_ep_answer_close(void *arg, unsigned code, const char *reason, size_t rlen)
{
	(void)rlen;
	conn_send_close(arg, code, reason);
}

static void
conn_ep_pause_output(void *arg)
{
	struct conn *c = arg;

	c->paused_output = 1;
	conn_read_update(c);
}

static void
conn_ep_drained(void *arg)
{
	struct conn *c = arg;

	if (!c->want_drained)
		return;
	c->want_drained = 0;
	if (c->target != NULL && c->target->drained != NULL)
		c->target->drained(c);
}

static void
conn_ep_resume_output(void *arg)
{
	struct conn *c = arg;

	if (!c->paused_output)
		return;
	c->paused_output = 0;
	conn_read_update(c);
}

/* In FLUSHING this is where we send FIN and wait for the peer's EOF: closing with unread input
 * would make the kernel send RST and could destroy our last frame in flight. */
static void
conn_ep_flushed(void *arg)
{
	transport_finish(((struct conn *)arg)->tr);
}

static void
conn_ep_timer_arm(void *arg, uint64_t ms)
{
	conn_timer_arm(arg, ms);
}

static const struct ws_endpoint_ops conn_ep_ops = {
    .role = WS_ROLE_SERVER,
    .out_high = CONN_OUT_HIGH,
    .out_low = CONN_OUT_LOW,
    .answer_while_closing = 0,
    .error_ends_closing = 0,
    .state = conn_ep_state,
    .set_state = conn_ep_set_state,
    .reading = conn_ep_reading,
    .queue = conn_ep_queue,
    .data = conn_ep_data,
    .peer_close = conn_ep_peer_close,
    .answer_close = conn_ep_answer_close,
    .peer_closed = NULL,
    .pause_output = conn_ep_pause_output,
    .drained = conn_ep_drained,
    .resume_output = conn_ep_resume_output,
    .flushed = conn_ep_flushed,
    .timer_arm = conn_ep_timer_arm,
    .pinged = heartbeat_pinged,
    .rtt = heartbeat_rtt,
    .expired = heartbeat_expired,
};

void
conn_endpoint(struct conn *c, struct ws_endpoint *ep)
{
	ep->ops = &conn_ep_ops;
	ep->side = c;
	ep->parser = &c->parser;
	ep->outq = &c->outq;
	ep->live = &c->live;
	ep->ping_interval_ms = c->cfg->ping_interval_ms;
	ep->pong_timeout_ms = c->cfg->pong_timeout_ms;
	ep->idle_timeout_ms = c->cfg->idle_timeout_ms;
}

void
conn_frames_read(struct conn *c)
{
	struct evbuffer *in = transport_input(c->tr);
	struct ws_endpoint ep;

	/* The peer's close came and the target has yet to answer it: nothing after it counts. */
	if (c->state == CONN_OPEN && c->peer_closed) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	conn_endpoint(c, &ep);
	ws_endpoint_read(&ep, in);
	if (c->state == CONN_FLUSHING)
		evbuffer_drain(in, evbuffer_get_length(in));
}

const char *
conn_public_id(struct conn *c, char *buf, size_t bufsz)
{
	static const char hex[] = "0123456789abcdef";
	char x[2 * sizeof(c->pub_id) + 1];

	/* Not derived from c->id: a sequential id lets anyone who saw one guess the others
	 * and read their direct channels. Kept as 16 bytes, spelt out when asked. */
	if (!c->pub_id_set) {
		if (RAND_bytes(c->pub_id, sizeof(c->pub_id)) != 1)
			return NULL;
		c->pub_id_set = 1;
	}
	for (size_t i = 0; i < sizeof(c->pub_id); i++) {
		x[2 * i] = hex[c->pub_id[i] >> 4];
		x[2 * i + 1] = hex[c->pub_id[i] & 15];
	}
	x[2 * sizeof(c->pub_id)] = '\0';
	snprintf(buf, bufsz, "%s-%s", c->env->instance_id, x);
	return buf;
}
