/* ws_endpoint.c - one WebSocket endpoint, two roles: the server role (conn.c, heartbeat.c) and
 * the client role (upstream_conn.c) differ only by their ops (see ws_endpoint.h). */
#include "ws_endpoint.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "clock.h"
#include "ws_outq.h"
#include "ws_parser.h"

void
ws_endpoint_parser_init(struct ws_parser *p, enum ws_role role, uint64_t max_message)
{
	ws_parser_init(p, max_message, role == WS_ROLE_SERVER);
}

size_t
ws_endpoint_queue_frame(struct ws_outq *q, int fin, unsigned opcode, const uint8_t *data,
                        size_t len, const uint8_t *key)
{
	return ws_endpoint_queue_frame_rsv(q, fin, 0, opcode, data, len, key);
}

size_t
ws_endpoint_queue_frame_rsv(struct ws_outq *q, int fin, unsigned rsv, unsigned opcode,
                            const uint8_t *data, size_t len, const uint8_t *key)
{
	struct evbuffer *out =
	    opcode == WS_OP_PING || opcode == WS_OP_PONG ? ws_outq_control(q) : ws_outq_data(q);
	struct evbuffer_iovec v[2];
	uint8_t hdr[WS_FRAME_HDR_MAX];
	uint64_t off = 0;
	size_t hlen, done = 0;
	int n;

	hlen = ws_frame_encode(hdr, fin, rsv, opcode, len, key);
	evbuffer_add(out, hdr, hlen);
	if (len == 0)
		return hlen;
	if (key == NULL)
		return evbuffer_add(out, data, len) == 0 ? hlen : 0;
	/* Masked while copied into the output buffer: one pass over the payload. */
	if ((n = evbuffer_reserve_space(out, (ev_ssize_t)len, v, 2)) <= 0)
		return 0;
	for (int i = 0; i < n && done < len; i++) {
		size_t k = len - done < v[i].iov_len ? len - done : v[i].iov_len;

		memcpy(v[i].iov_base, data + done, k);
		off = ws_mask(v[i].iov_base, k, key, off);
		v[i].iov_len = k;
		done += k;
	}
	evbuffer_commit_space(out, v, n);
	return hlen;
}

size_t
ws_endpoint_queue_masked(struct ws_outq *q, int fin, unsigned opcode, const uint8_t *data,
                         size_t len, const uint8_t key[4])
{
	struct evbuffer *out = ws_outq_data(q);
	uint8_t hdr[WS_FRAME_HDR_MAX];
	size_t hlen = ws_frame_encode(hdr, fin, 0, opcode, len, key);

	if (evbuffer_add(out, hdr, hlen) < 0 || (len > 0 && evbuffer_add(out, data, len) < 0))
		return 0;
	return hlen;
}

size_t
ws_endpoint_close_payload(uint8_t out[WS_CONTROL_MAX], unsigned code, const char *reason,
                          size_t rlen)
{
	if (code == WS_CLOSE_NO_STATUS)
		return 0;
	if (rlen > WS_CONTROL_MAX - 2)
		rlen = WS_CONTROL_MAX - 2;
	out[0] = (uint8_t)(code >> 8);
	out[1] = (uint8_t)(code & 0xff);
	if (rlen > 0)
		memcpy(out + 2, reason, rlen);
	return 2 + rlen;
}

/* A ping is answered with its payload; it is also the peer's keepalive (idle_timeout), which a
 * pong, only an answer to ours, is not. */
static void
ws_endpoint_on_ping(const struct ws_endpoint *ep, const struct ws_event *ev)
{
	enum ws_ep_state st = ep->ops->state(ep->side);

	ep->live->last_msg_ms = clock_now_ms();
	if (st == WS_EP_OPEN || (st == WS_EP_CLOSING && ep->ops->answer_while_closing))
		ep->ops->queue(ep->side, 1, WS_OP_PONG, ev->data, ev->len);
}

static void
ws_endpoint_on_pong(const struct ws_endpoint *ep, const struct ws_event *ev)
{
	uint64_t rtt;

	if (!ws_outq_ping_outstanding(ep->outq))
		return; /* unsolicited pong: a unidirectional heartbeat, nothing to do */
	uint64_t now = clock_now_ms();

	if (ep->ops->rtt != NULL && ws_endpoint_pong_rtt(ev->data, ev->len, now, &rtt))
		ep->ops->rtt(ep->side, rtt);
	ws_outq_pong(ep->outq);
	/* The timer was planned for a look at liveness while the ping was out: plan it for the
	 * next ping instead, so an answered ping costs one timer firing per interval, not two. */
	if (ep->ops->state(ep->side) == WS_EP_OPEN)
		ws_endpoint_schedule(ep, now);
}

/* The peer's close frame, or a protocol error (RFC 6455 7.1.7: we fail the session with our
 * close and process nothing more). Reading stops either way. */
static int
ws_endpoint_on_close(const struct ws_endpoint *ep, const struct ws_event *ev)
{
	const struct ws_endpoint_ops *ops = ep->ops;
	enum ws_ep_state prev = ops->state(ep->side);
	char reason[WS_CONTROL_MAX + 1];
	size_t rlen;

	if (ops->peer_close != NULL && ops->peer_close(ep->side, ev))
		return -1; /* the side answers it (with ws_endpoint_close) */
	if (ev->type == WS_EV_CLOSE) {
		rlen = ev->len;
		memcpy(reason, ev->data, rlen);
		reason[rlen] = '\0';
	} else {
		snprintf(reason, sizeof(reason), "%s", ev->reason);
		rlen = strlen(reason);
	}
	if (prev == WS_EP_OPEN)
		ops->answer_close(ep->side, ev->close_code, reason, rlen);
	else if (prev == WS_EP_CLOSING && (ev->type == WS_EV_CLOSE || !ops->error_ends_closing))
		ops->set_state(ep->side, WS_EP_FLUSHING);
	if (ops->peer_closed != NULL && ops->state(ep->side) != WS_EP_CLOSED)
		ops->peer_closed(ep->side, ev, prev);
	return -1;
}

void
ws_endpoint_fail(const struct ws_endpoint *ep, unsigned code, const char *reason)
{
	struct ws_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = WS_EV_ERROR;
	ev.close_code = (uint16_t)code;
	ev.reason = reason;
	(void)ws_endpoint_on_close(ep, &ev);
}

static int
ws_endpoint_on_event(const struct ws_endpoint *ep, const struct ws_event *ev)
{
	switch (ev->type) {
	case WS_EV_DATA:
		return ep->ops->data(ep->side, ev);
	case WS_EV_PING:
		ws_endpoint_on_ping(ep, ev);
		return 0;
	case WS_EV_PONG:
		ws_endpoint_on_pong(ep, ev);
		return 0;
	case WS_EV_CLOSE:
	case WS_EV_ERROR:
		return ws_endpoint_on_close(ep, ev);
	case WS_EV_NONE:
		break;
	}
	return 0;
}

static int
ws_endpoint_reading(const struct ws_endpoint *ep)
{
	enum ws_ep_state st = ep->ops->state(ep->side);

	return (st == WS_EP_OPEN || st == WS_EP_CLOSING) && ep->ops->reading(ep->side);
}

/* What we answer (pongs, our close) must not pile up behind a peer that does not read. */
static void
ws_endpoint_check_high(const struct ws_endpoint *ep)
{
	enum ws_ep_state st;

	if (ws_outq_len(ep->outq) <= ep->ops->out_high)
		return;
	st = ep->ops->state(ep->side);
	if (st == WS_EP_OPEN || (st == WS_EP_CLOSING && ep->ops->answer_while_closing))
		ep->ops->pause_output(ep->side);
}

void
ws_endpoint_read(const struct ws_endpoint *ep, struct evbuffer *in)
{
	struct evbuffer_iovec v;
	struct ws_event ev;
	size_t off, used;
	int stop = 0;

	while (!stop && ws_endpoint_reading(ep) && evbuffer_peek(in, -1, NULL, &v, 1) > 0) {
		uint8_t *base = v.iov_base;

		for (off = 0; off < v.iov_len && !stop;) {
			enum ws_ev_type t =
			    ws_parser_feed(ep->parser, base + off, v.iov_len - off, &used, &ev);

			off += used;
			if (t == WS_EV_NONE)
				break;
			/* RFC 6455 5.1: a client fails the connection on a masked frame from the
			 * server (the parser enforces the server role's rule itself). */
			if (ep->ops->role == WS_ROLE_CLIENT && t != WS_EV_ERROR &&
			    ep->parser->fh.masked) {
				memset(&ev, 0, sizeof(ev));
				ev.type = WS_EV_ERROR;
				ev.close_code = WS_CLOSE_PROTOCOL;
				ev.reason = "masked frame from the server";
			}
			if (ws_endpoint_on_event(ep, &ev) < 0 ||
			    ep->ops->state(ep->side) == WS_EP_CLOSED)
				stop = 1;
		}
		/* Events point into this chunk: drained only after they were handled; once closed
		 * the input is no longer ours to drain. */
		if (ep->ops->state(ep->side) != WS_EP_CLOSED)
			evbuffer_drain(in, off);
		ws_endpoint_check_high(ep);
	}
}

int
ws_endpoint_close(const struct ws_endpoint *ep, unsigned code, const char *reason, size_t rlen,
                  int peer_closed)
{
	enum ws_ep_state st = ep->ops->state(ep->side);
	uint8_t payload[WS_CONTROL_MAX];
	size_t plen;

	if (st != WS_EP_OPEN && st != WS_EP_CLOSING)
		return -1;
	if (st == WS_EP_CLOSING && !peer_closed)
		return -1; /* our close is already out; wait for theirs */
	plen = ws_endpoint_close_payload(payload, code, reason, rlen);
	ep->ops->queue(ep->side, 1, WS_OP_CLOSE, payload, plen);
	if (ep->ops->state(ep->side) == WS_EP_CLOSED)
		return 0; /* queueing failed and closed the side */
	/* Having both closes, only the flush and the TCP close remain. */
	ep->ops->set_state(ep->side, peer_closed ? WS_EP_FLUSHING : WS_EP_CLOSING);
	return 0;
}

void
ws_endpoint_written(const struct ws_endpoint *ep)
{
	const struct ws_endpoint_ops *ops = ep->ops;
	size_t left;

	ws_outq_pump(ep->outq);
	left = ws_outq_len(ep->outq);
	if (ops->state(ep->side) == WS_EP_FLUSHING) {
		if (left == 0)
			ops->flushed(ep->side);
		return;
	}
	if (left > ops->out_low)
		return;
	ops->drained(ep->side);
	if (ops->state(ep->side) == WS_EP_CLOSED)
		return;
	ops->resume_output(ep->side);
}

/* ---- the heartbeat ---- */

#define WS_HB_NEVER UINT64_MAX

static uint64_t
ws_hb_min(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

void
ws_endpoint_schedule(const struct ws_endpoint *ep, uint64_t now)
{
	const struct ws_liveness *l = ep->live;
	uint64_t due = WS_HB_NEVER;

	if (ep->ping_interval_ms > 0)
		due = ws_hb_min(due, l->next_ping_ms);
	due = ws_hb_min(due, ws_outq_next_look(ep->outq, now, ep->pong_timeout_ms));
	if (ep->idle_timeout_ms > 0)
		due = ws_hb_min(due, l->last_msg_ms + ep->idle_timeout_ms);
	if (l->drain_at_ms != 0)
		due = ws_hb_min(due, l->drain_at_ms);
	if (due == WS_HB_NEVER)
		return;
	ep->ops->timer_arm(ep->side, due > now ? due - now : 0);
}

void
ws_endpoint_start(const struct ws_endpoint *ep, uint64_t now)
{
	ws_outq_pong(ep->outq);
	ep->live->last_msg_ms = now;
	ep->live->next_ping_ms = now + ep->ping_interval_ms;
	ws_endpoint_schedule(ep, now);
}

void
ws_endpoint_tick(const struct ws_endpoint *ep, uint64_t now)
{
	const struct ws_endpoint_ops *ops = ep->ops;
	struct ws_liveness *l = ep->live;
	uint8_t payload[8];

	if (l->drain_at_ms != 0 && now >= l->drain_at_ms) {
		ops->expired(ep->side, WS_HB_DRAIN);
		return;
	}
	if (ep->idle_timeout_ms > 0 && now - l->last_msg_ms >= ep->idle_timeout_ms) {
		ops->expired(ep->side, WS_HB_IDLE);
		return;
	}
	/* A close frame would not be answered by a peer that is not reading or not there. */
	if (now >= ws_outq_dead_at(ep->outq, now, ep->pong_timeout_ms)) {
		ops->expired(ep->side, WS_HB_DEAD);
		return;
	}
	if (ep->ping_interval_ms > 0 && now >= l->next_ping_ms) {
		/* The payload carries the send time, so a pong tells its round trip. One ping at
		 * a time: our own pings being written must not count as the peer's progress. */
		if (!ws_outq_ping_outstanding(ep->outq)) {
			ws_endpoint_ping_payload(payload, now);
			ops->queue(ep->side, 1, WS_OP_PING, payload, sizeof(payload));
			if (ops->state(ep->side) == WS_EP_CLOSED)
				return;
			ws_outq_ping_queued(ep->outq, now);
		}
		if (ops->pinged != NULL)
			ops->pinged(ep->side);
		if (ops->state(ep->side) != WS_EP_OPEN)
			return;
		l->next_ping_ms = now + ep->ping_interval_ms;
	}
	ws_endpoint_schedule(ep, now);
}

void
ws_endpoint_ping_payload(uint8_t out[8], uint64_t now_ms)
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(now_ms >> (56 - 8 * i));
}

int
ws_endpoint_pong_rtt(const uint8_t *data, size_t len, uint64_t now_ms, uint64_t *rtt_ms)
{
	uint64_t sent = 0;

	if (len != 8)
		return 0;
	for (int i = 0; i < 8; i++)
		sent = (sent << 8) | data[i];
	/* Only our own pings carry a send time not in the future. */
	if (sent > now_ms || now_ms - sent >= 3600 * 1000)
		return 0;
	*rtt_ms = now_ms - sent;
	return 1;
}
