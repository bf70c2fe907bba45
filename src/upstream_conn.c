/* upstream_conn.c - one connection to a backend, the backend half of a proxy session or a
 * health probe: look up, connect, TLS, send the upgrade and check the 101 (all within
 * connect_timeout), then relay frames (masked towards the backend, unmasked from it), run its
 * own ping/pong and close handshake. One teardown, upstream_conn_close(); freed next turn. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "conn.h"
#include "http.h"
#include "http_response.h"
#include "log.h"
#include "metrics.h"
#include "upstream.h"
#include "upstream_req.h"
#include "ws_frame.h"

/* A lookup outlives the connection when it is cancelled: the callback then only frees this. */
struct upstream_dns {
	struct upstream_conn *u; /* NULL once the connection stopped waiting */
	struct evdns_getaddrinfo_request *req;
};

static const char *const upstream_conn_state_names[] = {
    "resolving", "connecting", "upgrading", "open", "closing", "flushing", "closed",
};

static void upstream_conn_connect(struct upstream_conn *u);
static void upstream_conn_read_cb(struct bufferevent *bev, void *arg);
static void upstream_conn_read_raw(struct upstream_conn *u);

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

static int
upstream_conn_is_ws(const struct upstream_conn *u)
{
	return u->backend->cfg->scheme != BACKEND_TCP;
}

static void
upstream_conn_timer_arm(struct upstream_conn *u, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

	evtimer_add(&u->timer, &tv);
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

static void upstream_conn_fail(struct upstream_conn *u, const char *why);
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
static void
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
		if (upstream_conn_is_ws(u) && u->cfg->ping_interval_ms > 0) {
			u->next_ping_ms = now + u->cfg->ping_interval_ms;
			upstream_conn_timer_arm(u, u->cfg->ping_interval_ms);
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
	if (u->dns != NULL) {
		/* The callback still comes (with EVUTIL_EAI_CANCEL) and frees the ticket. */
		u->dns->u = NULL;
		evdns_getaddrinfo_cancel(u->dns->req);
		u->dns = NULL;
	}
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
	ws_outq_free(&u->outq); /* its callback off the output first */
	if (u->bev != NULL)
		bufferevent_free(u->bev); /* closes the socket (and frees the SSL) */
	if (u->ai != NULL)
		evutil_freeaddrinfo(u->ai);
	free(u->request);
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
static void
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

/* One masked frame (RFC 6455 5.3: every frame from a client, with a fresh key). The payload
 * is masked while it is copied into the output buffer. */
static void
upstream_conn_queue_frame(struct upstream_conn *u, int fin, unsigned opcode, const uint8_t *data,
                          size_t len)
{
	/* Pings and pongs ahead of queued data, on a frame boundary (ws_outq.h). */
	struct evbuffer *out = opcode == WS_OP_PING || opcode == WS_OP_PONG
	                           ? ws_outq_control(&u->outq)
	                           : ws_outq_data(&u->outq);
	struct evbuffer_iovec v[2];
	uint8_t hdr[WS_FRAME_HDR_MAX], key[4];
	uint64_t off = 0;
	size_t hlen, done = 0;
	int n;

	upstream_registry_mask(u->reg, key);
	hlen = ws_frame_encode(hdr, fin, 0, opcode, len, key);
	evbuffer_add(out, hdr, hlen);
	if (len == 0)
		return;
	if ((n = evbuffer_reserve_space(out, (ev_ssize_t)len, v, 2)) <= 0) {
		upstream_conn_close(u, "out of memory");
		return;
	}
	for (int i = 0; i < n && done < len; i++) {
		size_t k = len - done < v[i].iov_len ? len - done : v[i].iov_len;

		memcpy(v[i].iov_base, data + done, k);
		off = ws_mask(v[i].iov_base, k, key, off);
		v[i].iov_len = k;
		done += k;
	}
	evbuffer_commit_space(out, v, n);
}

int
upstream_conn_send(struct upstream_conn *u, unsigned opcode, int fin, const uint8_t *p, size_t n)
{
	if (u->state != UPC_OPEN)
		return -1;
	if (!upstream_conn_is_ws(u))
		return n > 0 ? evbuffer_add(bufferevent_get_output(u->bev), p, n) : 0;
	upstream_conn_queue_frame(u, fin, opcode, p, n);
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

static void
upstream_conn_queue_close(struct upstream_conn *u, unsigned code, const char *reason, size_t rlen)
{
	uint8_t payload[WS_CONTROL_MAX];
	size_t plen = 0;

	if (code != WS_CLOSE_NO_STATUS) {
		if (rlen > WS_CONTROL_MAX - 2)
			rlen = WS_CONTROL_MAX - 2;
		payload[0] = (uint8_t)(code >> 8);
		payload[1] = (uint8_t)(code & 0xff);
		if (rlen > 0)
			memcpy(payload + 2, reason, rlen);
		plen = 2 + rlen;
	}
	upstream_conn_queue_frame(u, 1, WS_OP_CLOSE, payload, plen);
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
	upstream_conn_queue_close(u, code, reason, rlen);
	if (u->state == UPC_OPEN)
		upstream_conn_set_state(u, UPC_CLOSING);
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

/* ---- the upgrade ---- */

static int
upstream_conn_make_key(char key[25])
{
	unsigned char raw[16];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw)); /* 24 chars and a NUL */
	return 0;
}

/* The 101 (or not) in the input: checked strictly before anything is relayed. */
static void
upstream_conn_read_upgrade(struct upstream_conn *u)
{
	struct evbuffer *in = bufferevent_get_input(u->bev);
	size_t len = evbuffer_get_length(in), n;
	const struct http_str *offered = u->req != NULL ? u->req->protocols : NULL;
	size_t noffered = u->req != NULL ? u->req->nprotocols : 0;
	struct http_response resp;
	struct http_str proto;
	const char *p, *why;
	char buf[160], protocol[HTTP_MAX_HEADER], pass[2048];
	const struct upstream_conn_ops *ops;
	int checked;

	n = len < HTTP_RESPONSE_MAX_HEADER ? len : HTTP_RESPONSE_MAX_HEADER;
	if ((p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n)) == NULL)
		return;
	switch (http_response_parse(p, n, &resp)) {
	case HTTP_RESPONSE_NEED_MORE:
		return;
	case HTTP_RESPONSE_TOO_LARGE:
		upstream_conn_fail(u, "upgrade response head larger than 8 KiB");
		return;
	case HTTP_RESPONSE_BAD:
		upstream_conn_fail(u, "malformed upgrade response");
		return;
	case HTTP_RESPONSE_OK:
		break;
	}
	checked = http_response_check_upgrade(&resp, u->accept, offered, noffered, &proto, &why);
	/* What the client must see with the answer it will get (a bad 101 becomes a 502). */
	if ((checked == 0 || resp.status != 101) && u->ops != NULL && u->ops->headers != NULL) {
		(void)http_response_passthrough(&resp, pass, sizeof(pass));
		u->ops->headers(u->arg, resp.status, pass);
	}
	if (checked < 0) {
		if (resp.status != 101) {
			u->status = resp.status;
			snprintf(buf, sizeof(buf), "refused the upgrade: HTTP %d %.*s", resp.status,
			         (int)(resp.reason.n < 60 ? resp.reason.n : 60), resp.reason.p);
		} else {
			snprintf(buf, sizeof(buf), "bad upgrade response: %s", why);
		}
		upstream_conn_fail(u, buf);
		return;
	}
	/* The fields point into the input, which is drained next. */
	memcpy(protocol, proto.p != NULL ? proto.p : "", proto.n);
	protocol[proto.n] = '\0';
	evbuffer_drain(in, resp.header_len);
	upstream_conn_set_state(u, UPC_OPEN);
	u->req = NULL;
	upstream_conn_log(u, LOG_LVL_DEBUG, "upgraded%s%s", proto.n ? ", subprotocol " : "",
	                  protocol);
	ops = u->ops;
	if (ops != NULL && ops->ready != NULL)
		ops->ready(u->arg, proto.n > 0 ? protocol : NULL);
}

/* Connected (after TLS for wss): send the upgrade, or for tcp the session is open. */
static void
upstream_conn_connected(struct upstream_conn *u)
{
	int one = 1;

	setsockopt(bufferevent_getfd(u->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!upstream_conn_is_ws(u)) {
		upstream_conn_set_state(u, UPC_OPEN);
		if (u->ops != NULL && u->ops->ready != NULL)
			u->ops->ready(u->arg, NULL);
		/* A backend that speaks first (a banner) may have been read before this connect
		 * event was dispatched, while we were not OPEN yet: relay it now, in order. */
		if (u->state == UPC_OPEN && evbuffer_get_length(bufferevent_get_input(u->bev)) > 0)
			upstream_conn_read_raw(u);
		return;
	}
	evbuffer_add(bufferevent_get_output(u->bev), u->request, u->request_len);
	free(u->request);
	u->request = NULL;
	upstream_conn_set_state(u, UPC_UPGRADING);
}

/* ---- relaying ---- */

/* One event from the backend's frames. Returns -1 when reading must stop. */
static int
upstream_conn_on_event(struct upstream_conn *u, const struct ws_event *ev)
{
	char reason[WS_CONTROL_MAX + 1];

	/* RFC 6455 5.1: a client fails the connection on a masked frame from the server. */
	if (ev->type != WS_EV_ERROR && u->parser.fh.masked) {
		struct ws_event bad = {.type = WS_EV_ERROR,
		                       .close_code = WS_CLOSE_PROTOCOL,
		                       .reason = "masked frame from the server"};
		return upstream_conn_on_event(u, &bad);
	}
	switch (ev->type) {
	case WS_EV_DATA:
		/* While CLOSING, what the backend sent before its close still goes to an owner
		 * that waits for that close (a client whose close we passed on). */
		if (u->ops == NULL || u->ops->data == NULL)
			return 0;
		if (u->ops->data(u->arg, ev->opcode, ev->first, ev->last, ev->data, ev->len)) {
			upstream_conn_pause(u);
			return -1;
		}
		return 0;
	case WS_EV_PING:
		if (u->state == UPC_OPEN || u->state == UPC_CLOSING)
			upstream_conn_queue_frame(u, 1, WS_OP_PONG, ev->data, ev->len);
		return 0;
	case WS_EV_PONG:
		ws_outq_pong(&u->outq);
		return 0;
	case WS_EV_CLOSE:
		upstream_conn_log(u, LOG_LVL_DEBUG, "backend sent close %u", ev->close_code);
		if (u->state == UPC_OPEN) {
			/* Answer with the same code, then pass it on to the client. */
			memcpy(reason, ev->data, ev->len);
			reason[ev->len] = '\0';
			upstream_conn_queue_close(u, ev->close_code, reason, ev->len);
			upstream_conn_flush(u);
			upstream_conn_gone(u, ev->close_code, reason, ev->len);
		} else if (u->state == UPC_CLOSING) {
			memcpy(reason, ev->data, ev->len);
			reason[ev->len] = '\0';
			upstream_conn_flush(u);
			upstream_conn_gone(u, ev->close_code, reason, ev->len);
		}
		return -1;
	case WS_EV_ERROR:
		upstream_conn_log(u, LOG_LVL_INFO, "protocol error, closing with %u: %s",
		                  ev->close_code, ev->reason);
		if (u->state == UPC_OPEN) {
			upstream_conn_queue_close(u, ev->close_code, ev->reason,
			                          strlen(ev->reason));
			upstream_conn_flush(u);
			upstream_conn_gone(u, WS_CLOSE_ABNORMAL, "backend protocol error", 22);
		} else {
			upstream_conn_gone(u, WS_CLOSE_ABNORMAL, "backend protocol error", 22);
			upstream_conn_close(u, ev->reason);
		}
		return -1;
	case WS_EV_NONE:
		break;
	}
	return 0;
}

static void
upstream_conn_read_frames(struct upstream_conn *u)
{
	struct evbuffer *in = bufferevent_get_input(u->bev);
	struct evbuffer_iovec v;
	struct ws_event ev;
	size_t off, used;
	int stop = 0;

	while (!stop && upstream_conn_reading(u) &&
	       (u->state == UPC_OPEN || u->state == UPC_CLOSING) &&
	       evbuffer_peek(in, -1, NULL, &v, 1) > 0) {
		uint8_t *base = v.iov_base;

		for (off = 0; off < v.iov_len && !stop;) {
			enum ws_ev_type t =
			    ws_parser_feed(&u->parser, base + off, v.iov_len - off, &used, &ev);

			off += used;
			if (t == WS_EV_NONE)
				break;
			if (upstream_conn_on_event(u, &ev) < 0)
				stop = 1;
		}
		/* Events point into this chunk: drained only after they were handled. */
		evbuffer_drain(in, off);
		/* What we answer (pongs, our close) must not pile up behind a backend that does
		 * not read: stop reading it, as the client side does (conn.c). */
		if ((u->state == UPC_OPEN || u->state == UPC_CLOSING) &&
		    ws_outq_len(&u->outq) > UPSTREAM_OUT_HIGH) {
			u->paused_output = 1;
			bufferevent_disable(u->bev, EV_READ);
		}
	}
	if (u->state == UPC_FLUSHING || u->state == UPC_CLOSED)
		evbuffer_drain(in, evbuffer_get_length(in));
}

/* tcp: each read goes to the client as one binary message. */
static void
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

static void
upstream_conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct upstream_conn *u = arg;

	(void)bev;
	ws_outq_rx(&u->outq, conn_now_ms());
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
}

static void
upstream_conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct upstream_conn *u = arg;
	size_t left;

	(void)bev;
	ws_outq_pump(&u->outq);
	left = ws_outq_len(&u->outq);
	if (u->state == UPC_FLUSHING) {
		if (!upstream_conn_is_ws(u) && left == 0)
			upstream_conn_close(u, "tcp session done");
		return;
	}
	if (left > UPSTREAM_OUT_LOW)
		return;
	if (u->want_drained && u->state == UPC_OPEN) {
		u->want_drained = 0;
		if (u->ops != NULL && u->ops->drained != NULL)
			u->ops->drained(u->arg);
		if (u->state == UPC_CLOSED)
			return;
	}
	if (u->paused_output) {
		u->paused_output = 0;
		upstream_conn_read_again(u);
	}
}

static void
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
upstream_conn_heartbeat(struct upstream_conn *u)
{
	const struct config *cfg = u->cfg;
	uint64_t now = conn_now_ms(), due;
	uint8_t payload[8];

	/* Dead only when a ping is out and nothing moved for pong_timeout (ws_outq.h). */
	if (cfg->pong_timeout_ms > 0 &&
	    now >= ws_outq_dead_at(&u->outq, now, cfg->pong_timeout_ms)) {
		upstream_conn_log(u, LOG_LVL_INFO, "no pong within pong_timeout");
		upstream_conn_gone(u, WS_CLOSE_ABNORMAL, "no pong from the backend", 24);
		upstream_conn_close(u, "no pong from the backend");
		return;
	}
	if (now >= u->next_ping_ms) {
		for (int i = 0; i < 8; i++)
			payload[i] = (uint8_t)(now >> (56 - 8 * i));
		/* One ping at a time: ours being written is not the backend's progress. */
		if (!ws_outq_ping_outstanding(&u->outq)) {
			upstream_conn_queue_frame(u, 1, WS_OP_PING, payload, sizeof(payload));
			ws_outq_ping_queued(&u->outq, now);
		}
		u->next_ping_ms = now + cfg->ping_interval_ms;
	}
	due = u->next_ping_ms;
	if (cfg->pong_timeout_ms > 0 && ws_outq_next_look(&u->outq, now, cfg->pong_timeout_ms) < due)
		due = ws_outq_next_look(&u->outq, now, cfg->pong_timeout_ms);
	upstream_conn_timer_arm(u, due > now ? due - now : 0);
}

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
	case UPC_OPEN:
		upstream_conn_heartbeat(u);
		break;
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

/* ---- connecting ---- */

/* Connects to u->ai_next, a fresh bufferevent per address. */
static void
upstream_conn_connect(struct upstream_conn *u)
{
	struct upstream_pool *pool = u->backend->pool;
	struct evutil_addrinfo *ai = u->ai_next;
	struct ssl_ctx_st *tls;
	const char *why = NULL;

	if (ai == NULL) {
		upstream_conn_fail(u, "no address to connect to");
		return;
	}
	u->ai_next = ai->ai_next;
	if (u->backend->cfg->scheme == BACKEND_WSS) {
		if ((tls = upstream_pool_tls(pool, &why)) == NULL) {
			upstream_conn_fail(u, why);
			return;
		}
		u->bev = upstream_tls_bev_new(u->reg->base, tls, u->backend->cfg->host);
	} else {
		u->bev = bufferevent_socket_new(u->reg->base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	if (u->bev == NULL) {
		upstream_conn_fail(u, "cannot make a bufferevent");
		return;
	}
	bufferevent_setcb(u->bev, upstream_conn_read_cb, upstream_conn_write_cb,
	                  upstream_conn_event_cb, u);
	if (ws_outq_attach(&u->outq, u->bev, conn_now_ms()) < 0) {
		upstream_conn_fail(u, "out of memory");
		return;
	}
	/* Fewer, larger reads: the default 16 KiB costs throughput on a busy relay. */
	bufferevent_set_max_single_read(u->bev, 65536);
	bufferevent_set_max_single_write(u->bev, 65536);
	if (u->state == UPC_RESOLVING)
		upstream_conn_set_state(u, UPC_CONNECTING);
	/* An immediate refusal is reported through the event callback on the next turn. */
	if (bufferevent_socket_connect(u->bev, ai->ai_addr, (int)ai->ai_addrlen) < 0) {
		upstream_conn_fail(u, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return;
	}
	bufferevent_enable(u->bev, EV_READ | EV_WRITE);
}

static void
upstream_conn_resolved(struct upstream_conn *u, int err, struct evutil_addrinfo *ai)
{
	char why[160];

	if (err != 0 || ai == NULL) {
		snprintf(why, sizeof(why), "cannot resolve %.64s: %s", u->backend->cfg->host,
		         evutil_gai_strerror(err));
		upstream_conn_fail(u, why);
		return;
	}
	u->ai = u->ai_next = ai;
	upstream_conn_connect(u);
}

static void
upstream_conn_dns_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct upstream_dns *d = arg;
	struct upstream_conn *u = d->u;

	free(d);
	if (u == NULL) {
		/* The connection went away meanwhile (EVUTIL_EAI_CANCEL, or an answer too late). */
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		return;
	}
	u->dns = NULL;
	if (u->in_start) {
		/* Answered inside evdns_getaddrinfo (an address or /etc/hosts): the caller goes on.
		 */
		u->ai = ai;
		u->dns_err = err != 0 ? err : (ai == NULL ? EVUTIL_EAI_FAIL : 0);
		return;
	}
	upstream_conn_resolved(u, err, ai);
}

/* Starts the lookup; numeric hosts are answered at once without the resolver. */
static void
upstream_conn_resolve(struct upstream_conn *u)
{
	const struct config_backend *cb = u->backend->cfg;
	struct evutil_addrinfo hints, *ai = NULL;
	struct evdns_base *dns;
	struct upstream_dns *d;
	struct evdns_getaddrinfo_request *r;
	int err;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
	if (evutil_getaddrinfo(cb->host, cb->port, &hints, &ai) == 0) {
		upstream_conn_resolved(u, 0, ai);
		return;
	}
	hints.ai_flags = EVUTIL_AI_NUMERICSERV | EVUTIL_AI_ADDRCONFIG;
	if ((dns = upstream_registry_dns(u->reg)) == NULL || (d = calloc(1, sizeof(*d))) == NULL) {
		upstream_conn_fail(u, "cannot start a DNS lookup");
		return;
	}
	d->u = u;
	u->dns = d;
	u->in_start = 1;
	u->dns_err = -1;
	r = evdns_getaddrinfo(dns, cb->host, cb->port, &hints, upstream_conn_dns_cb, d);
	u->in_start = 0;
	if (r != NULL) {
		d->req = r; /* answered later, through upstream_conn_dns_cb */
		return;
	}
	/* Answered (or failed) inside the call: d is already freed. */
	u->dns = NULL;
	err = u->dns_err;
	ai = u->ai;
	u->ai = NULL;
	upstream_conn_resolved(u, err == -1 ? EVUTIL_EAI_FAIL : err, ai);
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
	LIST_INSERT_HEAD(&reg->live, u, entry);
	b->pool->nconns++; /* the pool, and the snapshot it holds, outlive u */
	if (req != NULL) {
		upstream_backend_session(b, 1);
		u->counted = 1;
	}
	/* Frames from a server are unmasked; a message may be as large as a client's. */
	ws_parser_init(&u->parser, cfg->max_message_size, 0);
	if (cb->scheme != BACKEND_TCP) {
		if (upstream_conn_make_key(key) < 0) {
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
