/* upstream_conn.c - one connection to a backend, the backend half of a proxy session or a
 * health probe: look up, connect, TLS, send the upgrade and check the 101 (all within
 * connect_timeout), then relay frames (masked towards the backend, unmasked from it), run its
 * own ping/pong and close handshake. One teardown, upstream_conn_close(); freed next turn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>

#include "clock.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "upstream.h"
#include "transport.h"
#include "upstream_req.h"
#include "ws_endpoint.h"
#include "ws_frame.h"

static const char *const upstream_conn_state_names[] = {
    "resolving", "connecting", "upgrading", "open", "closing", "flushing", "closed",
};

static void upstream_conn_endpoint(struct upstream_conn *u, struct ws_endpoint *ep);

const char *
upstream_conn_state_name(enum upstream_conn_state st)
{
	return upstream_conn_state_names[st];
}

static void upstream_conn_log(const struct upstream_conn *u, enum log_level lvl, const char *fmt,
                              ...) __attribute__((format(printf, 3, 4)));

static void
upstream_conn_log(const struct upstream_conn *u, enum log_level lvl, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!log_enabled(lvl))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_msg(lvl, u->id, "%s %s: %s", u->id ? "backend" : "probe", u->backend->cfg->url, msg);
}

static void
upstream_conn_timer_arm(struct upstream_conn *u, uint64_t ms)
{
	clock_timer_arm(&u->timer, ms);
}

static int
upstream_conn_transition_ok(enum upstream_conn_state from, enum upstream_conn_state to)
{
	if (to == UPC_CLOSED)
		return from != UPC_CLOSED;
	switch (from) {
	case UPC_RESOLVING:
		return to == UPC_CONNECTING;
	case UPC_CONNECTING:
		return to == UPC_UPGRADING || to == UPC_OPEN;
	case UPC_UPGRADING:
		return to == UPC_OPEN;
	case UPC_OPEN:
		return to == UPC_CLOSING || to == UPC_FLUSHING;
	case UPC_CLOSING:
		return to == UPC_FLUSHING;
	default:
		return 0;
	}
}

static void upstream_conn_gone(struct upstream_conn *u, unsigned code, const char *reason,
                               size_t rlen);

/* A broken invariant reached at run time: this one connection ends (its owner told as for any
 * failure), logged and counted; only a debug build aborts. */
static void
upstream_conn_internal_error(struct upstream_conn *u, const char *why)
{
	upstream_conn_log(u, LOG_LVL_ERROR, "internal error: %s", why);
	if (u->reg->internal_errors != NULL)
		METRIC_ADD(*u->reg->internal_errors, 1);
#ifdef WSGATE_DEBUG
	abort();
#endif
	if (u->state < UPC_OPEN) {
		upstream_conn_fail(u, why);
	} else {
		upstream_conn_gone(u, WS_CLOSE_ABNORMAL, "internal error", 14);
		upstream_conn_close(u, why);
	}
}

/* The one place the state changes; the timer's meaning follows it. An illegal transition
 * closes the connection (CLOSED is legal from every other state: no recursion). */
void
upstream_conn_set_state(struct upstream_conn *u, enum upstream_conn_state st)
{
	uint64_t now = conn_now_ms();
	char why[96];

	if (!upstream_conn_transition_ok(u->state, st)) {
		snprintf(why, sizeof(why), "illegal transition %s -> %s",
		         upstream_conn_state_name(u->state), upstream_conn_state_name(st));
		upstream_conn_internal_error(u, why);
		return;
	}
	upstream_conn_log(u, LOG_LVL_DEBUG, "%s -> %s", upstream_conn_state_name(u->state),
	                  upstream_conn_state_name(st));
	u->state = st;
	switch (st) {
	case UPC_OPEN:
		evtimer_del(&u->timer);
		if (upstream_conn_is_ws(u)) {
			struct ws_endpoint ep;

			upstream_conn_endpoint(u, &ep);
			ws_endpoint_start(&ep, now);
		}
		break;
	case UPC_CLOSING:
	case UPC_FLUSHING:
		evtimer_del(&u->timer);
		upstream_conn_timer_arm(u, u->cfg->close_timeout_ms);
		break;
	case UPC_CLOSED:
		evtimer_del(&u->timer);
		break;
	default:
		break; /* the connect deadline set at the start keeps running */
	}
}

void
upstream_conn_close(struct upstream_conn *u, const char *reason)
{
	if (u->state == UPC_CLOSED)
		return;
	upstream_conn_log(u, LOG_LVL_DEBUG, "closed (%s): %s", upstream_conn_state_name(u->state),
	                  reason);
	upstream_conn_set_state(u, UPC_CLOSED);
	upstream_dns_cancel(u);
	event_del(&u->flush_ev);
	u->flush_marked = 0;
	if (u->bev != NULL) {
		bufferevent_disable(u->bev, EV_READ | EV_WRITE);
		bufferevent_setcb(u->bev, NULL, NULL, NULL, NULL);
	}
	if (u->counted) {
		upstream_backend_session(u->backend, -1);
		u->counted = 0;
	}
	u->ops = NULL;
	LIST_REMOVE(u, entry);
	LIST_INSERT_HEAD(&u->reg->dead, u, entry);
	event_active(u->reg->reaper, 0, 0);
}

void
upstream_conn_free(struct upstream_conn *u)
{
	u->backend->pool->nconns--;
	evtimer_del(&u->timer);
	event_del(&u->flush_ev);
	ws_outq_free(&u->outq); /* its callback off the output first */
	if (u->bev != NULL)
		bufferevent_free(u->bev); /* closes the socket (and frees the SSL) */
	if (u->ai != NULL)
		evutil_freeaddrinfo(u->ai);
	free(u->request);
	ws_parser_free(&u->parser);
	free(u);
}

void
upstream_conn_detach(struct upstream_conn *u)
{
	/* A session whose client has gone is no longer active (least_conn), even while its
	 * backend connection finishes closing. */
	if (u->counted) {
		upstream_backend_session(u->backend, -1);
		u->counted = 0;
	}
	u->ops = NULL;
	u->arg = NULL;
	u->req = NULL;
}

/* Before OPEN: close, then tell the owner (who may start another attempt at once). */
void
upstream_conn_fail(struct upstream_conn *u, const char *why)
{
	const struct upstream_conn_ops *ops = u->ops;
	void *arg = u->arg;

	if (why != u->why)
		snprintf(u->why, sizeof(u->why), "%s", why);
	upstream_conn_log(u, LOG_LVL_INFO, "%s", u->why);
	upstream_conn_close(u, u->why);
	if (ops != NULL && ops->failed != NULL)
		ops->failed(arg, u->status, u->why);
}

/* After OPEN, the backend ended: the owner is detached first, then told (before any
 * upstream_conn_close, which forgets the owner). */
static void
upstream_conn_gone(struct upstream_conn *u, unsigned code, const char *reason, size_t rlen)
{
	const struct upstream_conn_ops *ops = u->ops;
	void *arg = u->arg;

	upstream_conn_detach(u);
	if (ops != NULL && ops->gone != NULL)
		ops->gone(arg, code, reason, rlen);
}

/* In OPEN the backend's stream ended: without a close frame (ws: it vanished), or as a TCP
 * service ends a session (tcp: a normal end unless it was an error). */
static void
upstream_conn_ended(struct upstream_conn *u, int error, const char *why)
{
	upstream_conn_log(u, LOG_LVL_INFO, "%s: %s",
	                  error || upstream_conn_is_ws(u) ? "vanished" : "closed", why);
	if (upstream_conn_is_ws(u) || error)
		upstream_conn_gone(u, WS_CLOSE_ABNORMAL, why, strlen(why));
	else
		upstream_conn_gone(u, WS_CLOSE_NORMAL, "backend closed", 14);
	upstream_conn_close(u, why);
}

/* ---- sending ---- */

/*
 * The end-of-turn write, as conn_flush.c does for clients: a bufferevent arms its write event
 * for every frame added and disarms it after the write, two epoll_ctl calls per batch (the
 * largest removable cost in the proxy's profile, bench/results/proxy-vs-nginx.md). Here the
 * frames a loop turn queued (a whole batch read from the client) are written by one writev
 * from a callback queued behind the turn's others; when the kernel takes everything, the write
 * event added and deleted in the same turn folds to nothing in the epoll changelist. What the
 * kernel refuses stays with the bufferevent's write event, as before. TLS (wss) backends keep
 * bufferevent_openssl's own writes.
 */
static void
upstream_conn_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_conn *u = arg;
	size_t before;

	(void)fd;
	(void)what;
	u->flush_marked = 0;
	if (u->state < UPC_OPEN || u->state == UPC_CLOSED || u->bev == NULL)
		return;
	before = ws_outq_len(&u->outq);
	/* An output the kernel took whole needs no write event (deleted in the turn it was
	 * added, it costs no syscall). */
	if (ws_outq_write_now(&u->outq, WS_OUTQ_TURN_BYTES) == 0)
		event_del(&u->bev->ev_write);
	/* The write callback's work (watermarks, drained, FLUSHING's end), which the
	 * bufferevent does not run for a write it did not make. */
	if (ws_outq_len(&u->outq) < before)
		upstream_conn_write_cb(u->bev, u);
}

/* Frames were queued: written once at the end of this loop turn (plain TCP only). */
static void
upstream_conn_mark(struct upstream_conn *u)
{
	if (u->flush_marked || u->backend->cfg->scheme == BACKEND_WSS)
		return;
	u->flush_marked = 1;
	event_active(&u->flush_ev, EV_WRITE, 0);
}

/* One masked frame (RFC 6455 5.3: every frame from a client, with a fresh key). The payload
 * is masked while it is copied into the output buffer. */
static void
upstream_conn_queue_frame(struct upstream_conn *u, int fin, unsigned opcode, const uint8_t *data,
                          size_t len)
{
	uint8_t key[4];

	upstream_registry_mask(u->reg, key);
	if (ws_endpoint_queue_frame(&u->outq, fin, opcode, data, len, key) == 0) {
		upstream_conn_close(u, "out of memory");
		return;
	}
	upstream_conn_mark(u);
}

int
upstream_conn_send(struct upstream_conn *u, unsigned opcode, int fin, const uint8_t *p, size_t n)
{
	if (u->state != UPC_OPEN)
		return -1;
	if (!upstream_conn_is_ws(u)) {
		if (n == 0)
			return 0;
		if (evbuffer_add(bufferevent_get_output(u->bev), p, n) < 0)
			return -1;
		upstream_conn_mark(u);
		return 0;
	}
	upstream_conn_queue_frame(u, fin, opcode, p, n);
	return 0;
}

int
upstream_conn_send_masked(struct upstream_conn *u, unsigned opcode, int fin, const uint8_t *p,
                          size_t n, const uint8_t key[4])
{
	if (u->state != UPC_OPEN || !upstream_conn_is_ws(u))
		return -1;
	if (ws_endpoint_queue_masked(&u->outq, fin, opcode, p, n, key) == 0) {
		upstream_conn_close(u, "out of memory");
		return -1;
	}
	upstream_conn_mark(u);
	return 0;
}

size_t
upstream_conn_output_len(const struct upstream_conn *u)
{
	return ws_outq_len(&u->outq);
}

void
upstream_conn_want_drained(struct upstream_conn *u)
{
	u->want_drained = 1;
}

/* Our close frame (the endpoint's close handshake): OPEN -> CLOSING, or FLUSHING when it
 * answers the backend's close (peer_closed). */
static void
upstream_conn_queue_close(struct upstream_conn *u, unsigned code, const char *reason, size_t rlen,
                          int peer_closed)
{
	struct ws_endpoint ep;

	upstream_conn_endpoint(u, &ep);
	if (ws_endpoint_close(&ep, code, reason, rlen, peer_closed) == 0)
		upstream_conn_log(u, LOG_LVL_DEBUG, "sent close %u", code);
}

/* Nothing more to send: wait for the output to drain (write callback), then for the backend's
 * EOF; a server closes TCP first after the close handshake (RFC 6455 7.1.1). */
static void
upstream_conn_flush(struct upstream_conn *u)
{
	upstream_conn_set_state(u, UPC_FLUSHING);
	u->want_drained = 0;
	if (!upstream_conn_is_ws(u) && upstream_conn_output_len(u) == 0)
		upstream_conn_close(u, "tcp session done");
}

void
upstream_conn_send_close(struct upstream_conn *u, unsigned code, const char *reason, size_t rlen)
{
	switch (u->state) {
	case UPC_RESOLVING:
	case UPC_CONNECTING:
	case UPC_UPGRADING:
		upstream_conn_close(u, "given up before the upgrade finished");
		return;
	case UPC_OPEN:
		break;
	default:
		return; /* already closing */
	}
	if (!upstream_conn_is_ws(u)) {
		upstream_conn_flush(u);
		return;
	}
	/* Reads go on (even if the owner had paused them): the backend's close must be seen. Only
	 * our own backed-up output still stops them (close_timeout bounds that wait). */
	u->paused = 0;
	if (!u->paused_output)
		bufferevent_enable(u->bev, EV_READ);
	upstream_conn_queue_close(u, code, reason, rlen, 0);
}

/* Reading is on unless the owner paused it or our own output is backed up. */
static int
upstream_conn_reading(const struct upstream_conn *u)
{
	return !u->paused && !u->paused_output;
}

/* The last reason to stop reading went away: read again, input left first, then an EOF that
 * waited behind it. */
static void
upstream_conn_read_again(struct upstream_conn *u)
{
	if (!upstream_conn_reading(u) || u->state == UPC_CLOSED)
		return;
	if (!u->eof)
		bufferevent_enable(u->bev, EV_READ);
	/* Input may have been left unparsed when we stopped. */
	if (evbuffer_get_length(bufferevent_get_input(u->bev)) > 0)
		upstream_conn_read_cb(u->bev, u);
	if (!u->eof || !upstream_conn_reading(u))
		return;
	/* The EOF held back behind that input takes effect now. */
	switch (u->state) {
	case UPC_OPEN:
		upstream_conn_ended(u, 0, "connection closed");
		break;
	case UPC_CLOSING:
		upstream_conn_gone(u, WS_CLOSE_ABNORMAL, "connection closed", 17);
		upstream_conn_close(u, "backend closed");
		break;
	case UPC_FLUSHING:
		upstream_conn_close(u, "backend closed");
		break;
	default:
		break;
	}
}

void
upstream_conn_resume_read(struct upstream_conn *u)
{
	if (!u->paused || u->state == UPC_CLOSED)
		return;
	u->paused = 0;
	upstream_conn_read_again(u);
}

static void
upstream_conn_pause(struct upstream_conn *u)
{
	u->paused = 1;
	bufferevent_disable(u->bev, EV_READ);
}

/* ---- the upgrade (its answer is read by upstream_upgrade.c) ---- */

void
upstream_conn_opened(struct upstream_conn *u, const char *protocol)
{
	const struct upstream_conn_ops *ops = u->ops;

	upstream_conn_set_state(u, UPC_OPEN);
	u->req = NULL;
	upstream_conn_log(u, LOG_LVL_DEBUG, "upgraded%s%s", protocol ? ", subprotocol " : "",
	                  protocol ? protocol : "");
	if (u->state == UPC_OPEN && ops != NULL && ops->ready != NULL)
		ops->ready(u->arg, protocol);
}

/* ---- the client role of the WebSocket endpoint (ws_endpoint.h) ---- */

static enum ws_ep_state
upstream_ep_state(void *arg)
{
	switch (((struct upstream_conn *)arg)->state) {
	case UPC_OPEN:
		return WS_EP_OPEN;
	case UPC_CLOSING:
		return WS_EP_CLOSING;
	case UPC_FLUSHING:
		return WS_EP_FLUSHING;
	case UPC_CLOSED:
		return WS_EP_CLOSED;
	default:
		return WS_EP_NONE;
	}
}

static void
upstream_ep_set_state(void *arg, enum ws_ep_state st)
{
	if (st == WS_EP_CLOSING)
		upstream_conn_set_state(arg, UPC_CLOSING);
	else
		upstream_conn_flush(arg);
}

static int
upstream_ep_reading(void *arg)
{
	return upstream_conn_reading(arg);
}

static void
upstream_ep_queue(void *arg, int fin, unsigned opcode, const uint8_t *data, size_t len)
{
	upstream_conn_queue_frame(arg, fin, opcode, data, len);
}

/* A data chunk from the backend. While CLOSING, what the backend sent before its close still
 * goes to an owner that waits for that close (a client whose close we passed on). */
static int
upstream_ep_data(void *arg, const struct ws_event *ev)
{
	struct upstream_conn *u = arg;

	if (u->ops == NULL || u->ops->data == NULL)
		return 0;
	if (u->ops->data(u->arg, ev->opcode, ev->first, ev->last, ev->data, ev->len)) {
		upstream_conn_pause(u);
		return -1;
	}
	return 0;
}

static int
upstream_ep_peer_close(void *arg, const struct ws_event *ev)
{
	struct upstream_conn *u = arg;

	if (ev->type == WS_EV_CLOSE)
		upstream_conn_log(u, LOG_LVL_DEBUG, "backend sent close %u", ev->close_code);
	else
		upstream_conn_log(u, LOG_LVL_INFO, "protocol error, closing with %u: %s",
		                  ev->close_code, ev->reason);
	return 0;
}

/* Answer the backend's close with the same code (or fail it), then flush. */
static void
upstream_ep_answer_close(void *arg, unsigned code, const char *reason, size_t rlen)
{
	upstream_conn_queue_close(arg, code, reason, rlen, 1);
}

/* The owner hears how the backend's side ended; a protocol error after our close ends the
 * connection at once (error_ends_closing). */
static void
upstream_ep_peer_closed(void *arg, const struct ws_event *ev, enum ws_ep_state prev)
{
	struct upstream_conn *u = arg;
	char reason[WS_CONTROL_MAX + 1];

	if (ev->type == WS_EV_CLOSE) {
		memcpy(reason, ev->data, ev->len);
		reason[ev->len] = '\0';
		upstream_conn_gone(u, ev->close_code, reason, ev->len);
		return;
	}
	upstream_conn_gone(u, WS_CLOSE_ABNORMAL, "backend protocol error", 22);
	if (prev == WS_EP_CLOSING)
		upstream_conn_close(u, ev->reason);
}

/* What we answer (pongs, our close) must not pile up behind a backend that does not read. */
static void
upstream_ep_pause_output(void *arg)
{
	struct upstream_conn *u = arg;

	u->paused_output = 1;
	bufferevent_disable(u->bev, EV_READ);
}

static void
upstream_ep_drained(void *arg)
{
	struct upstream_conn *u = arg;

	if (!u->want_drained || u->state != UPC_OPEN)
		return;
	u->want_drained = 0;
	if (u->ops != NULL && u->ops->drained != NULL)
		u->ops->drained(u->arg);
}

static void
upstream_ep_resume_output(void *arg)
{
	struct upstream_conn *u = arg;

	if (!u->paused_output)
		return;
	u->paused_output = 0;
	upstream_conn_read_again(u);
}

/* A server closes TCP first after the close handshake (RFC 6455 7.1.1): a ws backend's EOF is
 * awaited; a tcp session is done once its output is written. */
static void
upstream_ep_flushed(void *arg)
{
	struct upstream_conn *u = arg;

	if (!upstream_conn_is_ws(u))
		upstream_conn_close(u, "tcp session done");
}

static void
upstream_ep_timer_arm(void *arg, uint64_t ms)
{
	upstream_conn_timer_arm(arg, ms);
}

/* Dead: a ping out and nothing moved for pong_timeout (ws_outq.h). */
static void
upstream_ep_expired(void *arg, enum ws_hb_end why)
{
	struct upstream_conn *u = arg;

	(void)why; /* only WS_HB_DEAD: the client role has no idle or drain time */
	upstream_conn_log(u, LOG_LVL_INFO, "no pong within pong_timeout");
	upstream_conn_gone(u, WS_CLOSE_ABNORMAL, "no pong from the backend", 24);
	upstream_conn_close(u, "no pong from the backend");
}

static const struct ws_endpoint_ops upstream_ep_ops = {
    .role = WS_ROLE_CLIENT,
    .out_high = UPSTREAM_OUT_HIGH,
    .out_low = UPSTREAM_OUT_LOW,
    .answer_while_closing = 1,
    .error_ends_closing = 1,
    .state = upstream_ep_state,
    .set_state = upstream_ep_set_state,
    .reading = upstream_ep_reading,
    .queue = upstream_ep_queue,
    .data = upstream_ep_data,
    .peer_close = upstream_ep_peer_close,
    .answer_close = upstream_ep_answer_close,
    .peer_closed = upstream_ep_peer_closed,
    .pause_output = upstream_ep_pause_output,
    .drained = upstream_ep_drained,
    .resume_output = upstream_ep_resume_output,
    .flushed = upstream_ep_flushed,
    .timer_arm = upstream_ep_timer_arm,
    .pinged = NULL,
    .rtt = NULL,
    .expired = upstream_ep_expired,
};

static void
upstream_conn_endpoint(struct upstream_conn *u, struct ws_endpoint *ep)
{
	ep->ops = &upstream_ep_ops;
	ep->side = u;
	ep->parser = &u->parser;
	ep->outq = &u->outq;
	ep->live = &u->live;
	ep->ping_interval_ms = u->cfg->ping_interval_ms;
	ep->pong_timeout_ms = u->cfg->pong_timeout_ms;
	ep->idle_timeout_ms = 0;
}

static void
upstream_conn_read_frames(struct upstream_conn *u)
{
	struct evbuffer *in = bufferevent_get_input(u->bev);
	struct ws_endpoint ep;

	upstream_conn_endpoint(u, &ep);
	ws_endpoint_read(&ep, in);
	if (u->state == UPC_FLUSHING || u->state == UPC_CLOSED)
		evbuffer_drain(in, evbuffer_get_length(in));
}

/* tcp: each read goes to the client as one binary message. */
void
upstream_conn_read_raw(struct upstream_conn *u)
{
	struct evbuffer *in = bufferevent_get_input(u->bev);
	size_t n;
	uint8_t *p;

	while (!u->paused && u->state == UPC_OPEN && (n = evbuffer_get_length(in)) > 0) {
		if (n > 65536)
			n = 65536;
		if ((p = evbuffer_pullup(in, (ev_ssize_t)n)) == NULL) {
			upstream_conn_close(u, "out of memory");
			return;
		}
		if (u->ops == NULL || u->ops->data == NULL) {
			evbuffer_drain(in, n);
			continue;
		}
		if (u->ops->data(u->arg, WS_OP_BINARY, 1, 1, p, n))
			upstream_conn_pause(u);
		evbuffer_drain(in, n);
	}
	if (u->state != UPC_OPEN)
		evbuffer_drain(in, evbuffer_get_length(in));
}

void
upstream_conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct upstream_conn *u = arg;

	ws_outq_rx(&u->outq, conn_now_ms());
	/* A large message came 4096 bytes a read: the rest in one more read (plain TCP). */
	if ((u->state == UPC_OPEN || u->state == UPC_CLOSING) &&
	    u->backend->cfg->scheme != BACKEND_WSS &&
	    transport_read_was_cut(evbuffer_get_length(bufferevent_get_input(bev)), u->in_left))
		(void)transport_read_more(bev);
	if (u->state == UPC_UPGRADING) {
		upstream_conn_read_upgrade(u);
		if (u->state != UPC_OPEN)
			return;
	}
	switch (u->state) {
	case UPC_OPEN:
	case UPC_CLOSING:
		if (upstream_conn_is_ws(u))
			upstream_conn_read_frames(u);
		else
			upstream_conn_read_raw(u);
		break;
	case UPC_FLUSHING:
		evbuffer_drain(bufferevent_get_input(bev),
		               evbuffer_get_length(bufferevent_get_input(bev)));
		break;
	default:
		break;
	}
	if (u->bev == bev)
		u->in_left = evbuffer_get_length(bufferevent_get_input(bev));
}

void
upstream_conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct ws_endpoint ep;

	(void)bev;
	upstream_conn_endpoint(arg, &ep);
	ws_endpoint_written(&ep);
}

void
upstream_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct upstream_conn *u = arg;
	char why[256];
	int err = EVUTIL_SOCKET_ERROR();

	if (what & BEV_EVENT_CONNECTED) {
		upstream_conn_connected(u);
		return;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if ((what & BEV_EVENT_EOF) && (u->state == UPC_OPEN || u->state == UPC_CLOSING) &&
	    evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
		/* What came before the EOF (a close frame, maybe) goes first: relayed now when we
		 * are reading, else once reading resumes (see resume_read). */
		if (upstream_conn_reading(u))
			upstream_conn_read_cb(bev, u);
		if (u->state != UPC_OPEN && u->state != UPC_CLOSING)
			return;
		if (evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
			u->eof = 1;
			return;
		}
	}
	if ((what & BEV_EVENT_ERROR) && u->backend->cfg->scheme == BACKEND_WSS &&
	    upstream_tls_error(bev, why, sizeof(why)))
		; /* a certificate or TLS protocol failure */
	else if ((what & BEV_EVENT_ERROR) && err != 0)
		snprintf(why, sizeof(why), "%s", evutil_socket_error_to_string(err));
	else
		snprintf(why, sizeof(why), "connection closed");

	switch (u->state) {
	case UPC_CONNECTING:
		/* Another address of the same host may answer. */
		if (u->ai_next != NULL && u->backend->cfg->scheme != BACKEND_WSS) {
			upstream_conn_log(u, LOG_LVL_DEBUG, "%s; trying the next address", why);
			ws_outq_detach(&u->outq);
			bufferevent_free(u->bev); /* libevent allows this inside its callback */
			u->bev = NULL;
			upstream_conn_connect(u);
			return;
		}
		upstream_conn_fail(u, why);
		break;
	case UPC_UPGRADING:
		upstream_conn_fail(u, (what & BEV_EVENT_EOF) ? "closed during the upgrade" : why);
		break;
	case UPC_OPEN:
		upstream_conn_ended(u, (what & BEV_EVENT_ERROR) != 0, why);
		break;
	default:
		/* CLOSING: an owner waiting for the backend's close frame gets none. */
		upstream_conn_gone(u, WS_CLOSE_ABNORMAL, why, strlen(why));
		upstream_conn_close(u, (what & BEV_EVENT_EOF) ? "backend closed" : why);
		break;
	}
}

/* ---- the timer ---- */

static void
upstream_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_conn *u = arg;
	char why[96];

	(void)fd;
	(void)what;
	switch (u->state) {
	case UPC_RESOLVING:
	case UPC_CONNECTING:
	case UPC_UPGRADING:
		snprintf(why, sizeof(why), "timed out after %llu ms while %s",
		         (unsigned long long)upstream_connect_timeout_ms(u->backend->pool->route),
		         upstream_conn_state_name(u->state));
		upstream_conn_fail(u, why);
		break;
	case UPC_OPEN: {
		struct ws_endpoint ep;

		upstream_conn_endpoint(u, &ep);
		ws_endpoint_tick(&ep, conn_now_ms());
		break;
	}
	case UPC_CLOSING:
		upstream_conn_gone(u, WS_CLOSE_ABNORMAL, "no close frame from the backend", 31);
		upstream_conn_close(u, "no close frame from the backend within close_timeout");
		break;
	case UPC_FLUSHING:
		upstream_conn_close(u, "backend did not close TCP within close_timeout");
		break;
	case UPC_CLOSED:
		break;
	}
}

struct upstream_conn *
upstream_conn_new(struct upstream_backend *b, uint64_t id, const struct upstream_req *req,
                  const struct upstream_conn_ops *ops, void *arg, const char **why)
{
	const struct config *cfg = b->pool->cfg;
	struct upstream_registry *reg = b->pool->reg;
	const struct config_backend *cb = b->cfg;
	struct upstream_conn *u;
	char key[25], *target;

	if ((u = calloc(1, sizeof(*u))) == NULL) {
		*why = "out of memory";
		return NULL;
	}
	u->id = id;
	u->reg = reg;
	u->backend = b;
	u->cfg = cfg;
	u->state = UPC_RESOLVING;
	u->req = req;
	evtimer_assign(&u->timer, reg->base, upstream_conn_timer_cb, u);
	event_assign(&u->flush_ev, reg->base, -1, 0, upstream_conn_flush_cb, u);
	LIST_INSERT_HEAD(&reg->live, u, entry);
	b->pool->nconns++; /* the pool, and the snapshot it holds, outlive u */
	if (req != NULL) {
		upstream_backend_session(b, 1);
		u->counted = 1;
	}
	/* Frames from a server are unmasked; a message may be as large as a client's. */
	ws_endpoint_parser_init(&u->parser, WS_ROLE_CLIENT, cfg->max_message_size);
	if (cb->scheme != BACKEND_TCP) {
		if (http_ws_client_key(key) < 0) {
			*why = "RAND_bytes failed";
			upstream_conn_close(u, *why);
			return NULL;
		}
		http_ws_accept(key, 24, u->accept);
		target = upstream_req_target(cb->path, req != NULL ? req->query : NULL);
		if (target != NULL)
			u->request = upstream_req_format(
			    target, cb->host, cb->port, cb->scheme == BACKEND_WSS ? "443" : "80",
			    key, req != NULL ? req->headers : NULL, &u->request_len);
		free(target);
		if (u->request == NULL) {
			*why = "out of memory";
			upstream_conn_close(u, *why);
			return NULL;
		}
	}
	/* One deadline for lookup, connect, TLS and the 101 together. */
	upstream_conn_timer_arm(u, upstream_connect_timeout_ms(b->pool->route));
	/* Even a failure found right now reaches the owner through ops->failed only from the
	 * event loop: until we return, the owner is told through NULL and *why. */
	u->ops = NULL;
	upstream_conn_resolve(u);
	if (u->state == UPC_CLOSED) {
		/* u is on the dead list until the next loop turn: the text outlives this call. */
		*why = u->why[0] != '\0' ? u->why : "cannot connect";
		return NULL;
	}
	u->ops = ops;
	u->arg = arg;
	return u;
}
