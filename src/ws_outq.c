/* ws_outq.c - control frames ahead of queued data frames, and progress of our output (how the
 * heartbeats of both sides of a proxy tell a slow peer from a dead one). See ws_outq.h. */
#include "ws_outq.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/sockios.h>

#include <event2/buffer.h>

#include "clock.h"
#include "ws_frame.h"

/* The output's bytes were taken by the transport. This runs on every change of the output, so
 * it only counts: the time of that progress is read when the heartbeat looks (ws_outq_seen),
 * except for the ping's own write, which starts its deadline. */
static void
ws_outq_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct ws_outq *q = arg;

	(void)buf;
	if (q->gauge != NULL) /* modulo 2^64: the sum of all queues' changes is what they hold */
		*q->gauge += info->n_added - info->n_deleted;
	if (info->n_added > 0 && q->added != NULL)
		q->added(q);
	if (info->n_deleted == 0)
		return;
	q->taken += info->n_deleted;
	if (q->ping_end != 0 && q->taken >= q->ping_end) {
		q->ping_end = 0;
		q->ping_written_ms = q->progress_ms = clock_now_ms();
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

/* The queue's bytes come and go (the output's are counted by ws_outq_out_cb). */
static void
ws_outq_pend_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct ws_outq *q = arg;

	(void)buf;
	if (q->gauge != NULL)
		*q->gauge += info->n_added - info->n_deleted;
}

int
ws_outq_attach(struct ws_outq *q, struct evbuffer *out, int fd, unsigned flags, uint64_t now_ms)
{
	ws_outq_detach(q);
	if ((q->cbe = evbuffer_add_cb(out, ws_outq_out_cb, q)) == NULL)
		return -1;
	if (q->gauge != NULL)
		*q->gauge += evbuffer_get_length(out);
	q->out = out;
	q->fd = fd;
	q->flags = (uint8_t)flags;
	q->progress_ms = now_ms;
	return 0;
}

void
ws_outq_set_fd(struct ws_outq *q, int fd)
{
	q->fd = fd;
}

void
ws_outq_detach(struct ws_outq *q)
{
	if (q->out != NULL && q->cbe != NULL) {
		evbuffer_remove_cb_entry(q->out, q->cbe);
		/* The output's bytes go with its transport. */
		if (q->gauge != NULL)
			*q->gauge -= evbuffer_get_length(q->out);
	}
	q->cbe = NULL;
	q->out = NULL;
	q->fd = -1;
}

void
ws_outq_free(struct ws_outq *q)
{
	ws_outq_detach(q);
	if (q->gauge != NULL && q->pend != NULL)
		*q->gauge -= evbuffer_get_length(q->pend);
	q->gauge = NULL;
	if (q->pend != NULL)
		evbuffer_free(q->pend);
	q->pend = NULL;
}

void
ws_outq_gauge(struct ws_outq *q, uint64_t *gauge)
{
	q->gauge = gauge;
	if (gauge != NULL)
		*gauge += ws_outq_len(q);
}

struct evbuffer *
ws_outq_data(struct ws_outq *q)
{
	struct evbuffer *out = q->out;

	if ((q->pend == NULL || evbuffer_get_length(q->pend) == 0) &&
	    evbuffer_get_length(out) < WS_OUTQ_LEVEL)
		return out;
	/* Without a queue (ENOMEM) nothing waits in it, so the output keeps the order. */
	if (q->pend == NULL) {
		if ((q->pend = evbuffer_new()) == NULL)
			return out;
		if (evbuffer_add_cb(q->pend, ws_outq_pend_cb, q) == NULL) {
			evbuffer_free(q->pend);
			q->pend = NULL;
			return out;
		}
	}
	return q->pend;
}

struct evbuffer *
ws_outq_control(struct ws_outq *q)
{
	return q->out;
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

	if (q->out == NULL || q->pend == NULL)
		return;
	out = q->out;
	while (evbuffer_get_length(q->pend) > 0 && evbuffer_get_length(out) < WS_OUTQ_LEVEL) {
		n = ws_outq_head_len(q->pend);
		if (evbuffer_remove_buffer(q->pend, out, n) < 0)
			break;
	}
}

size_t
ws_outq_write_now(struct ws_outq *q, size_t budget)
{
	struct evbuffer *out = q->out;
	int n;

	if (out == NULL)
		return 0;
	if (q->fd < 0)
		return evbuffer_get_length(out);
	if (budget > WS_OUTQ_TURN_BYTES)
		budget = WS_OUTQ_TURN_BYTES;
	/* WS_OUTQ_FRONT_FROZEN: a libevent socket bufferevent (a backend's) keeps the front of
	 * its output frozen (bufferevent_socket_new) so that only its own write callback drains
	 * it, thawing it around its write: a plain evbuffer_write fails (-1) without a syscall.
	 * Thawed here the same way. A client's plain transport does not freeze its output. */
	while (evbuffer_get_length(out) > 0 && budget > 0) {
		if (q->flags & WS_OUTQ_FRONT_FROZEN)
			evbuffer_unfreeze(out, 1);
		n = evbuffer_write_atmost(out, q->fd, (ev_ssize_t)budget);
		if (q->flags & WS_OUTQ_FRONT_FROZEN)
			evbuffer_freeze(out, 1);
		if (n <= 0 || evbuffer_get_length(out) > 0)
			break;
		budget -= (size_t)n; /* at most budget: write_atmost */
		ws_outq_pump(q);
	}
	return evbuffer_get_length(out);
}

size_t
ws_outq_len(const struct ws_outq *q)
{
	size_t n = q->pend != NULL ? evbuffer_get_length(q->pend) : 0;

	if (q->out != NULL)
		n += evbuffer_get_length(q->out);
	return n;
}

void
ws_outq_ping_queued(struct ws_outq *q, uint64_t now_ms)
{
	q->ping_end = q->taken + evbuffer_get_length(q->out);
	q->ping_written_ms = 0;
	if (q->ping_queued_ms == 0)
		q->ping_queued_ms = now_ms;
	q->kernel_unsent = WS_OUTQ_UNSENT_NONE; /* this ping's first look takes the baseline */
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

/* The socket's send queue going down is the peer reading too. Our output is written to the
 * kernel as soon as it takes it (conn_flush writes everything it takes in one go), so a slow
 * reader's last megabytes, and the ping behind them, sit in the socket's send queue, and drain
 * without a byte leaving the output: judged by the output alone, a reader taking 1 MB/s behind
 * 4 MB of send queue was cut as dead (test_slow_reading_live_client_kept_on_proxy). A dead peer
 * takes nothing: the queue stays. Asked only while a ping is out, at each look after the one
 * made as the ping is queued: a healthy peer's pong comes long before the first of them, so an
 * idle connection's ping cycle asks nothing (one system call fewer per cycle: issue #12). The
 * first look takes the baseline; the queue going down after it is progress. A slow reader's
 * queue goes down at every look, so it is seen from the second look on (half of pong_timeout
 * after the ping); one that read only in the first quarter and then stopped is cut at the
 * ping's deadline, as a dead one: never later than before. */
static void
ws_outq_kernel_seen(struct ws_outq *q, uint64_t now_ms)
{
	int fd = q->out != NULL ? q->fd : -1;
	int unsent;

	if (now_ms <= q->ping_queued_ms)
		return; /* the look as the ping is queued: nothing of it can be in the kernel yet */
	if (fd < 0 || ioctl(fd, SIOCOUTQ, &unsent) != 0 || unsent < 0)
		return;
	if (q->kernel_unsent != WS_OUTQ_UNSENT_NONE && (uint32_t)unsent < q->kernel_unsent)
		q->progress_ms = now_ms;
	q->kernel_unsent =
	    (uint32_t)unsent < WS_OUTQ_UNSENT_NONE ? (uint32_t)unsent : WS_OUTQ_UNSENT_NONE - 1;
}

uint64_t
ws_outq_dead_at(struct ws_outq *q, uint64_t now_ms, uint64_t pong_timeout_ms)
{
	uint64_t since;

	ws_outq_seen(q, now_ms);
	if (q->ping_queued_ms == 0)
		return UINT64_MAX;
	ws_outq_kernel_seen(q, now_ms);
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
