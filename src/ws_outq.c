/* ws_outq.c - control frames ahead of queued data frames, and progress of our output (how the
 * heartbeats of both sides of a proxy tell a slow peer from a dead one). See ws_outq.h. */
#include "ws_outq.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "conn.h"
#include "ws_frame.h"

/* The output's bytes were taken by the transport. This runs on every change of the output, so
 * it only counts: the time of that progress is read when the heartbeat looks (ws_outq_seen),
 * except for the ping's own write, which starts its deadline. */
static void
ws_outq_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct ws_outq *q = arg;

	(void)buf;
	if (info->n_deleted == 0)
		return;
	q->taken += info->n_deleted;
	if (q->ping_end != 0 && q->taken >= q->ping_end) {
		q->ping_end = 0;
		q->ping_written_ms = q->progress_ms = conn_now_ms();
		q->taken_seen = q->taken;
	}
}

/* Output taken since the last look counts as progress now: while a ping is out the heartbeat
 * looks every quarter of pong_timeout (ws_outq_next_look), so that is how late it can be. */
static void
ws_outq_seen(struct ws_outq *q, uint64_t now_ms)
{
	if (q->taken != q->taken_seen) {
		q->taken_seen = q->taken;
		q->progress_ms = now_ms;
	}
}

int
ws_outq_attach(struct ws_outq *q, struct bufferevent *bev, uint64_t now_ms)
{
	struct evbuffer *out = bufferevent_get_output(bev);

	ws_outq_detach(q);
	if ((q->cbe = evbuffer_add_cb(out, ws_outq_out_cb, q)) == NULL)
		return -1;
	q->bev = bev;
	q->progress_ms = now_ms;
	/* The write callback runs whenever the output falls to the level: time to pump. */
	bufferevent_setwatermark(bev, EV_WRITE, WS_OUTQ_LEVEL, 0);
	return 0;
}

void
ws_outq_detach(struct ws_outq *q)
{
	if (q->bev != NULL && q->cbe != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(q->bev), q->cbe);
	q->cbe = NULL;
	q->bev = NULL;
}

void
ws_outq_free(struct ws_outq *q)
{
	ws_outq_detach(q);
	if (q->pend != NULL)
		evbuffer_free(q->pend);
	q->pend = NULL;
}

struct evbuffer *
ws_outq_data(struct ws_outq *q)
{
	struct evbuffer *out = bufferevent_get_output(q->bev);

	if ((q->pend == NULL || evbuffer_get_length(q->pend) == 0) &&
	    evbuffer_get_length(out) < WS_OUTQ_LEVEL)
		return out;
	/* Without a queue (ENOMEM) nothing waits in it, so the output keeps the order. */
	if (q->pend == NULL && (q->pend = evbuffer_new()) == NULL)
		return out;
	return q->pend;
}

struct evbuffer *
ws_outq_control(struct ws_outq *q)
{
	return bufferevent_get_output(q->bev);
}

/* The length of the whole frame at the head of the queue (our own encoding: always valid). */
static size_t
ws_outq_head_len(struct evbuffer *pend)
{
	uint8_t hdr[WS_FRAME_HDR_MAX];
	struct ws_frame_hdr h;
	ev_ssize_t n;

	n = evbuffer_copyout(pend, hdr, sizeof(hdr));
	if (n <= 0 || ws_frame_decode(hdr, (size_t)n, 7, 0, &h) != WS_FRAME_OK)
		return evbuffer_get_length(pend); /* cannot happen: move it all, in order */
	return h.hdr_len + (size_t)h.len;
}

void
ws_outq_pump(struct ws_outq *q)
{
	struct evbuffer *out;
	size_t n;

	if (q->bev == NULL || q->pend == NULL)
		return;
	out = bufferevent_get_output(q->bev);
	while (evbuffer_get_length(q->pend) > 0 && evbuffer_get_length(out) < WS_OUTQ_LEVEL) {
		n = ws_outq_head_len(q->pend);
		if (evbuffer_remove_buffer(q->pend, out, n) < 0)
			break;
	}
}

size_t
ws_outq_len(const struct ws_outq *q)
{
	size_t n = q->pend != NULL ? evbuffer_get_length(q->pend) : 0;

	if (q->bev != NULL)
		n += evbuffer_get_length(bufferevent_get_output(q->bev));
	return n;
}

void
ws_outq_ping_queued(struct ws_outq *q, uint64_t now_ms)
{
	q->ping_end = q->taken + evbuffer_get_length(bufferevent_get_output(q->bev));
	q->ping_written_ms = 0;
	if (q->ping_queued_ms == 0)
		q->ping_queued_ms = now_ms;
}

void
ws_outq_pong(struct ws_outq *q)
{
	q->ping_queued_ms = 0;
	q->ping_written_ms = 0;
	q->ping_end = 0;
}

void
ws_outq_rx(struct ws_outq *q, uint64_t now_ms)
{
	q->progress_ms = now_ms;
}

int
ws_outq_ping_outstanding(const struct ws_outq *q)
{
	return q->ping_queued_ms != 0;
}

uint64_t
ws_outq_dead_at(struct ws_outq *q, uint64_t now_ms, uint64_t pong_timeout_ms)
{
	uint64_t since;

	ws_outq_seen(q, now_ms);
	if (q->ping_queued_ms == 0)
		return UINT64_MAX;
	since = q->progress_ms > q->ping_queued_ms ? q->progress_ms : q->ping_queued_ms;
	return since + pong_timeout_ms;
}

uint64_t
ws_outq_next_look(struct ws_outq *q, uint64_t now_ms, uint64_t pong_timeout_ms)
{
	uint64_t dead = ws_outq_dead_at(q, now_ms, pong_timeout_ms);
	uint64_t step = pong_timeout_ms / 4 > 0 ? pong_timeout_ms / 4 : 1;

	if (dead == UINT64_MAX)
		return dead;
	return dead < now_ms + step ? dead : now_ms + step;
}
