/* conn_flush.c - the end-of-turn writer for plain-TCP connections (conn_flush.h).
 *
 * Arming a write event when bytes are added and disarming it once the output is empty costs,
 * with the epoll changelist, an EPOLL_CTL_MOD before the next epoll_wait, a writable event, the
 * writev, and another EPOLL_CTL_MOD on the turn after — three syscalls and a loop pass per
 * delivery, where a bare server makes one write. Here every byte added to a connection's output
 * marks it (ws_outq's hook), and the turn's marked connections are written by one callback
 * queued behind every other callback of the turn: one send per connection, however many frames
 * the turn queued for it (a broadcast burst coalesces). Only what the kernel refuses waits
 * under the transport's write event (transport_written). */
#include "conn_flush.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#ifdef HAVE_LIBURING
#include <liburing.h>
#endif

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "conn.h"
#include "env.h"
#include "transport.h"
#include "ws_outq.h"

#ifdef HAVE_LIBURING
/* A turn's writes go to the kernel CONN_FLUSH_RING at a time in one io_uring_enter, each a
 * sendmsg of the first CONN_FLUSH_IOV pieces of a connection's output with MSG_DONTWAIT: the
 * kernel does each inline and posts its result (a full socket answers -EAGAIN instead of
 * being polled), so every completion is there when the enter returns. */
#define CONN_FLUSH_RING 256
#define CONN_FLUSH_IOV 8

struct conn_flush_ring {
	struct io_uring ring;
	struct msghdr msg[CONN_FLUSH_RING];
	struct iovec iov[CONN_FLUSH_RING][CONN_FLUSH_IOV];
	size_t len[CONN_FLUSH_RING]; /* bytes each send was given */
};
#endif

/* One list per loop (a worker is a thread with one loop). */
struct conn_flush_list {
	struct event ev;         /* activated once per turn that marked a connection */
	struct event_base *base; /* ev's loop; another loop on this thread re-assigns ev */
	struct conn **v;         /* marked connections, in marking order */
	size_t n, cap;
#ifdef HAVE_LIBURING
	struct conn_flush_ring *ring; /* NULL: not tried yet, or refused (ring_off) */
	int ring_off;                 /* the kernel refused io_uring: writev from now on */
#endif
};

static __thread struct conn_flush_list conn_flush_tl;
/* The list's array is freed when its thread (a worker) exits, through this key's destructor. */
static pthread_key_t conn_flush_key;
static pthread_once_t conn_flush_once = PTHREAD_ONCE_INIT;
static int conn_flush_key_ok;

/* The thread's list goes with its thread (the key's value is the list itself). */
static void
conn_flush_list_free(void *arg)
{
	struct conn_flush_list *l = arg;

	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
#ifdef HAVE_LIBURING
	if (l->ring != NULL) {
		io_uring_queue_exit(&l->ring->ring);
		free(l->ring);
		l->ring = NULL;
	}
#endif
}

static void
conn_flush_key_make(void)
{
	conn_flush_key_ok = pthread_key_create(&conn_flush_key, conn_flush_list_free) == 0;
}

/* After c's output was written (before: what the queue held until then; out_before: what the
 * output held). The endpoint hears of the write as the transport's write callback would have
 * told it (output taken down to its low mark, WS_OUTQ_LEVEL): without that, an output written
 * here never said "drained", so a proxy paused for a slow reader never resumed reading its
 * backend (test_slow_reading_live_client_kept_on_proxy, 1 run in 2). Then whatever the output
 * holds (refused by the kernel, an error, or frames the endpoint just moved in) waits under the
 * transport's write event; an output the kernel took whole needs none. c is still marked here,
 * so frames moved in now wait for that event instead of being written again in this turn: one
 * connection's share of a turn stays WS_OUTQ_TURN_BYTES. */
static void
conn_flush_after(struct conn *c, size_t before, size_t out_before)
{
	size_t left = evbuffer_get_length(transport_output(c->tr));

	if (ws_outq_len(&c->outq) < before || (left < out_before && left <= WS_OUTQ_LEVEL))
		conn_written(c);
	if (c->state != CONN_CLOSED)
		transport_written(c->tr);
}

/* One writev of c's output (more while the queue refills it and the kernel keeps taking). */
static void
conn_flush_write(struct conn *c)
{
	struct evbuffer *out = transport_output(c->tr);
	int fd = transport_fd(c->tr);
	size_t before = ws_outq_len(&c->outq), out_before = evbuffer_get_length(out);

	if (c->state == CONN_CLOSED || out_before == 0 || fd < 0)
		return;
	ws_outq_write_now(&c->outq, WS_OUTQ_TURN_BYTES);
	conn_flush_after(c, before, out_before);
}

#ifdef HAVE_LIBURING
/* The thread's ring, set up on first use; NULL where the kernel refuses io_uring. */
static struct conn_flush_ring *
conn_flush_ring(struct conn_flush_list *l)
{
	if (l->ring != NULL || l->ring_off)
		return l->ring;
	if ((l->ring = calloc(1, sizeof(*l->ring))) == NULL)
		return NULL; /* tried again next turn */
	if (io_uring_queue_init(CONN_FLUSH_RING, &l->ring->ring, 0) < 0) {
		free(l->ring);
		l->ring = NULL;
		l->ring_off = 1;
	}
	return l->ring;
}

/* c's send took res bytes of the len it was given (or failed: res < 0). What it took leaves the
 * output, as evbuffer_write would have drained it; an output then empty takes the queue's next
 * frames, and when the kernel took everything it was given, what is there now goes by writev,
 * up to the turn's share (WS_OUTQ_TURN_BYTES). */
static void
conn_flush_sent(struct conn *c, int res, size_t len)
{
	struct evbuffer *out = transport_output(c->tr);
	size_t before = ws_outq_len(&c->outq), out_before = evbuffer_get_length(out);

	if (res > 0) {
		evbuffer_drain(out, (size_t)res);
		if (evbuffer_get_length(out) == 0)
			ws_outq_pump(&c->outq);
		if ((size_t)res == len && evbuffer_get_length(out) > 0 && len < WS_OUTQ_TURN_BYTES)
			ws_outq_write_now(&c->outq, WS_OUTQ_TURN_BYTES - len);
	}
	conn_flush_after(c, before, out_before);
	c->flush_marked = 0;
}

/* Sends for the marked connections from l->v[i] on, at most CONN_FLUSH_RING, in one
 * io_uring_enter; then their results. Returns the index after the last one taken, or i when
 * the ring failed (those connections then go by writev: nothing was sent for them). */
static size_t
conn_flush_batch(struct conn_flush_list *l, struct conn_flush_ring *r, size_t i)
{
	size_t j, k = 0, done = 0;
	struct io_uring_cqe *cqe;

	for (j = i; j < l->n && k < CONN_FLUSH_RING; j++) {
		struct conn *c = l->v[j];
		struct evbuffer *out;
		struct io_uring_sqe *sqe;
		evutil_socket_t fd;
		int n;

		if (c == NULL)
			continue;
		out = transport_output(c->tr);
		fd = transport_fd(c->tr);
		if (c->state == CONN_CLOSED || evbuffer_get_length(out) == 0 || fd < 0) {
			c->flush_marked = 0;
			continue;
		}
		if ((sqe = io_uring_get_sqe(&r->ring)) == NULL)
			break;
		n = evbuffer_peek(out, -1, NULL, r->iov[k], CONN_FLUSH_IOV);
		if (n > CONN_FLUSH_IOV)
			n = CONN_FLUSH_IOV;
		r->len[k] = 0;
		for (int m = 0; m < n; m++) {
			size_t room = WS_OUTQ_TURN_BYTES - r->len[k];

			if (r->iov[k][m].iov_len >= room) { /* the turn's share ends here */
				r->iov[k][m].iov_len = room;
				n = m + 1;
			}
			r->len[k] += r->iov[k][m].iov_len;
		}
		memset(&r->msg[k], 0, sizeof(r->msg[k]));
		r->msg[k].msg_iov = r->iov[k];
		r->msg[k].msg_iovlen = (size_t)n;
		io_uring_prep_sendmsg(sqe, fd, &r->msg[k], MSG_DONTWAIT | MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, ((uint64_t)j << 16) | k);
		k++;
	}
	if (k == 0)
		return j;
	if (io_uring_submit_and_wait(&r->ring, (unsigned)k) < 0 &&
	    io_uring_cq_ready(&r->ring) == 0) {
		/* Nothing went (the SQEs stay queued: drop the ring rather than send them later).
		 */
		io_uring_queue_exit(&r->ring);
		free(r);
		l->ring = NULL;
		l->ring_off = 1;
		return i;
	}
	/* Inline sends complete during the enter; a result still missing is waited for. */
	while (done < k) {
		int rc = io_uring_wait_cqe(&r->ring, &cqe);

		if (rc == -EINTR)
			continue;
		if (rc < 0) {
			/* Cannot happen with inline sends; a late result must never be taken for
			 * another batch's: the ring goes, the rest waits for the write events. */
			io_uring_queue_exit(&r->ring);
			free(r);
			l->ring = NULL;
			l->ring_off = 1;
			return j;
		}
		uint64_t d = io_uring_cqe_get_data64(cqe);
		size_t at = (size_t)(d >> 16), slot = (size_t)(d & 0xffff);
		int res = cqe->res;

		io_uring_cqe_seen(&r->ring, cqe);
		done++;
		/* A connection freed by an earlier result's callbacks is NULL here (forget). */
		if (l->v[at] != NULL)
			conn_flush_sent(l->v[at], res, r->len[slot]);
	}
	return j;
}
#endif

static void
conn_flush_run(evutil_socket_t fd, short what, void *arg)
{
	struct conn_flush_list *l = arg;

	(void)fd;
	(void)what;
	/* A connection marked while this runs (a drained callback sends more) lands past i and
	 * is written in this same pass. */
	size_t i = 0;
#ifdef HAVE_LIBURING
	struct conn_flush_ring *r;

	/* Entries before i were handled and are never touched again (their connection may be
	 * gone: forget clears only entries still marked). */
	while (i < l->n && (r = conn_flush_ring(l)) != NULL) {
		size_t next = conn_flush_batch(l, r, i);

		if (next == i)
			break; /* the ring failed: these go by writev */
		i = next;
	}
#endif
	for (; i < l->n; i++) {
		struct conn *c = l->v[i];

		if (c == NULL)
			continue; /* freed since it was marked */
		conn_flush_write(c);
		c->flush_marked = 0;
	}
	l->n = 0;
}

void
conn_flush_mark(struct conn *c)
{
	struct conn_flush_list *l = &conn_flush_tl;

	if (c->flush_marked || c->flush_tls || c->state == CONN_CLOSED)
		return;
	if (l->base != c->env->base) {
		if (l->base != NULL && l->n > 0) {
			/* A second loop on one thread (not done): its write events write. */
			transport_write_soon(c->tr);
			return;
		}
		event_assign(&l->ev, c->env->base, -1, 0, conn_flush_run, l);
		l->base = c->env->base;
		l->n = 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct conn **v;

		pthread_once(&conn_flush_once, conn_flush_key_make);
		if (!conn_flush_key_ok || (v = realloc(l->v, cap * sizeof(*v))) == NULL) {
			transport_write_soon(c->tr); /* its write event writes it */
			return;
		}
		l->v = v;
		l->cap = cap;
		(void)pthread_setspecific(conn_flush_key, l);
	}
	if (l->n == 0)
		event_active(&l->ev, EV_WRITE, 0);
	l->v[l->n++] = c;
	c->flush_marked = 1;
}

void
conn_flush_forget(struct conn *c)
{
	struct conn_flush_list *l = &conn_flush_tl;

	if (!c->flush_marked)
		return;
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] == c)
			l->v[i] = NULL;
	c->flush_marked = 0;
}
