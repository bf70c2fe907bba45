/* redis_adapter.c - hiredis' libevent adapter, ours: the same read and write events, plus a
 * bound on what one reply may make hiredis buffer and up to 1 MiB read per loop turn. A bulk
 * string announced larger than the bound is never buffered: hiredis gets a nil in its place
 * and the bulk's bytes are discarded from the socket as they come (1 MiB per turn). */
#include "redis_adapter.h"

#include <sys/ioctl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/sds.h>

#define REDIS_REPLY_SLACK (64u << 10) /* a reply's framing and channel name beyond its payload */
#define REDIS_SKIP_TURN (1u << 20)    /* bytes of an oversized reply discarded per loop turn */
#define REDIS_READS_PER_TURN 64       /* hiredis reads of 16 KiB per read event: 1 MiB */

struct redis_ev {
	redisAsyncContext *ac;
	const struct redis_adapter_hooks *h;
	void *arg; /* the owner's, for the hooks; outlives the context */
	struct event *rev, *wev;
	uint64_t skip; /* bytes of an oversized bulk still to discard from the socket */
};

static void
redis_ev_add_read(void *arg)
{
	event_add(((struct redis_ev *)arg)->rev, NULL);
}

static void
redis_ev_del_read(void *arg)
{
	event_del(((struct redis_ev *)arg)->rev);
}

static void
redis_ev_add_write(void *arg)
{
	event_add(((struct redis_ev *)arg)->wev, NULL);
}

static void
redis_ev_del_write(void *arg)
{
	event_del(((struct redis_ev *)arg)->wev);
}

static void
redis_ev_cleanup(void *arg)
{
	struct redis_ev *e = arg;

	event_free(e->rev);
	event_free(e->wev);
	free(e);
}

/* After hiredis read: what it holds unparsed is one incomplete reply item starting at pos (it
 * parses each complete one at once); hiredis may already have taken the item's type byte ('$'),
 * leaving the current task typed as a string. When that item is a bulk string announcing more
 * than max_message_size, it is never buffered: hiredis gets a nil in its place (the message
 * callback ignores a nil payload) and the bulk's bytes are discarded from the socket as they
 * come. Anything else that large is not something Redis sends us: the link is rebuilt. */
static void
redis_ev_bound_reader(struct redis_ev *e)
{
	redisReader *r = e->ac->c.reader;
	size_t pending = r->len - r->pos, i, start;
	const char *p = r->buf + r->pos;
	uint64_t m = 0, total;
	int typed = r->ridx >= 0 && r->rstack[r->ridx].type == REDIS_REPLY_STRING;

	if (pending == 0)
		return;
	e->h->progress(e->arg); /* a reply on its way: the link moves */
	if (p[0] == '$' || typed) {
		start = p[0] == '$' && !typed ? 1 : 0;
		for (i = start; i < pending && i < start + 20 && p[i] >= '0' && p[i] <= '9'; i++)
			m = m * 10 + (uint64_t)(p[i] - '0');
		if (i > start && i + 1 < pending && p[i] == '\r' && p[i + 1] == '\n' &&
		    m > e->h->max_reply) {
			total = (i + 2) + m + 2; /* header, payload, CRLF */
			sdsIncrLen(r->buf, -(int)pending);
			r->len = r->pos;
			if (redisReaderFeed(r, start ? "$-1\r\n" : "-1\r\n", start ? 5 : 4) !=
			    REDIS_OK) {
				e->h->failed(e->arg, "cannot skip an oversized message");
				return;
			}
			e->skip = total - pending;
			e->h->oversized(e->arg, m);
			return;
		}
		/* A large message that is allowed: room for all of it at once. sds would grow
		 * by 1 MiB per step, copying the whole buffer each time (quadratic). */
		total = (i + 2) + m + 2;
		if (i > start && i + 1 < pending && p[i] == '\r' && total > REDIS_REPLY_SLACK &&
		    sdsavail(r->buf) < total - pending) {
			sds grown = sdsMakeRoomFor(r->buf, total - pending);

			if (grown != NULL)
				r->buf = grown;
		}
	}
	if (pending > e->h->max_reply + REDIS_REPLY_SLACK)
		e->h->failed(e->arg, "a reply larger than max_message_size");
}

/* Discards up to REDIS_SKIP_TURN bytes of an oversized reply, then lets the loop go on.
 * Returns 1 while bytes remain, 0 when done, -1 when the link went down. */
static int
redis_ev_skip(struct redis_ev *e, evutil_socket_t fd)
{
	char buf[16384];
	size_t done = 0;
	ssize_t n;

	while (e->skip > 0 && done < REDIS_SKIP_TURN) {
		n = read(fd, buf, e->skip < sizeof(buf) ? (size_t)e->skip : sizeof(buf));
		if (n > 0) {
			e->skip -= (uint64_t)n;
			done += (size_t)n;
			e->h->progress(e->arg);
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		} else {
			e->h->failed(e->arg, n == 0 ? "connection closed" : strerror(errno));
			return -1;
		}
	}
	if (e->skip == 0)
		return 0;
	event_add(e->rev, NULL);
	return 1;
}

static void
redis_ev_read(evutil_socket_t fd, short what, void *arg)
{
	struct redis_ev *e = arg;
	const struct redis_adapter_hooks *h = e->h;
	void *owner = e->arg;
	redisAsyncContext *ac = e->ac;
	int avail;

	(void)what;
	if (e->skip > 0 && h->current(owner, ac) && redis_ev_skip(e, fd) != 0)
		return;
	/* hiredis reads 16 KiB per call. A large message (and the canary queued behind it on
	 * the same socket) would take one loop turn per 16 KiB: read on while bytes wait, up to
	 * REDIS_READS_PER_TURN calls, checking the bound after each. */
	for (int n = 0; n < REDIS_READS_PER_TURN; n++) {
		redisAsyncHandleRead(ac);
		/* hiredis may have freed ac (and e) meanwhile: only the owner's current context
		 * is sure to be alive (the hooks and owner outlive every context). */
		if (!h->current(owner, ac))
			return;
		redis_ev_bound_reader(e);
		if (!h->current(owner, ac) || e->skip > 0 || !(ac->c.flags & REDIS_CONNECTED))
			return;
		if (ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0)
			return;
	}
}

static void
redis_ev_write(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	redisAsyncHandleWrite(((struct redis_ev *)arg)->ac);
}

int
redis_adapter_attach(redisAsyncContext *ac, struct event_base *base,
                     const struct redis_adapter_hooks *h, void *arg)
{
	struct redis_ev *e;

	if (ac->ev.data != NULL || (e = calloc(1, sizeof(*e))) == NULL)
		return -1;
	e->ac = ac;
	e->h = h;
	e->arg = arg;
	e->rev = event_new(base, ac->c.fd, EV_READ, redis_ev_read, e);
	e->wev = event_new(base, ac->c.fd, EV_WRITE, redis_ev_write, e);
	if (e->rev == NULL || e->wev == NULL) {
		if (e->rev != NULL)
			event_free(e->rev);
		if (e->wev != NULL)
			event_free(e->wev);
		free(e);
		return -1;
	}
	ac->ev.addRead = redis_ev_add_read;
	ac->ev.delRead = redis_ev_del_read;
	ac->ev.addWrite = redis_ev_add_write;
	ac->ev.delWrite = redis_ev_del_write;
	ac->ev.cleanup = redis_ev_cleanup;
	ac->ev.data = e;
	event_add(e->rev, NULL);
	event_add(e->wev, NULL);
	return 0;
}

/* ---- connecting: resolve without blocking, then hiredis to the address ---- */
