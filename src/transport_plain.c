/* transport_plain.c - plain TCP as a transport of our own (transport.h says why): one event on
 * the socket, registered for reading while the owner reads and for writing only while output
 * waits for the kernel; one recv per readable event, no FIONREAD; the input exists only while
 * bytes wait in it. */
#include "transport_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "log.h"

/* A TLS transport is only the head (struct transport): the rest is plain TCP's. */
struct transport_plain {
	struct transport t;   /* first: a struct transport * with bev NULL points here */
	struct evbuffer *in;  /* NULL while nothing waits (reads borrow the thread's spare) */
	struct evbuffer *out; /* the output */
	uint32_t write_low;   /* the write callback's low mark */
	uint8_t enabled;      /* EV_READ | EV_WRITE as the owner wants them */
	uint8_t armed;        /* what ev is registered for (0: not added) */
	uint8_t write_wait;   /* the output waits for the socket to be writable */
	struct event ev;      /* the socket */
};

static struct transport_plain *
transport_plain_of(struct transport *t)
{
	return (struct transport_plain *)(void *)t;
}

static const struct transport_plain *
transport_plain_of_const(const struct transport *t)
{
	return (const struct transport_plain *)(const void *)t;
}

static void transport_plain_update(struct transport_plain *p);

/* What a thread's reads share: the buffer a recv lands in, and an empty input lent to the
 * transport being read (most reads are drained whole by their callback, and then the input goes
 * back here instead of being freed and made again). */
struct transport_tl {
	uint8_t *buf; /* TRANSPORT_READ_MAX bytes */
	struct evbuffer *spare;
};

static __thread struct transport_tl transport_tl;
/* Freed when the thread (a worker) exits, through this key's destructor. */
static pthread_key_t transport_key;
static pthread_once_t transport_once = PTHREAD_ONCE_INIT;
static int transport_key_ok;

static void
transport_tl_free(void *arg)
{
	struct transport_tl *tl = arg;

	free(tl->buf);
	tl->buf = NULL;
	if (tl->spare != NULL)
		evbuffer_free(tl->spare);
	tl->spare = NULL;
}

static void
transport_key_make(void)
{
	transport_key_ok = pthread_key_create(&transport_key, transport_tl_free) == 0;
}

/* The thread's shared state, its buffer made on first use; NULL on ENOMEM. */
static struct transport_tl *
transport_tl_get(void)
{
	struct transport_tl *tl = &transport_tl;

	if (tl->buf != NULL)
		return tl;
	pthread_once(&transport_once, transport_key_make);
	if (!transport_key_ok || (tl->buf = malloc(TRANSPORT_READ_MAX)) == NULL)
		return NULL;
	(void)pthread_setspecific(transport_key, tl);
	return tl;
}

struct evbuffer *
transport_plain_input(struct transport *t)
{
	struct transport_plain *p = transport_plain_of(t);
	struct transport_tl *tl = &transport_tl;

	if (p->in != NULL)
		return p->in;
	if (tl->spare != NULL) {
		p->in = tl->spare;
		tl->spare = NULL;
	} else {
		p->in = evbuffer_new();
	}
	return p->in;
}

size_t
transport_plain_input_len(const struct transport *t)
{
	const struct transport_plain *p = transport_plain_of_const(t);

	return p->in != NULL ? evbuffer_get_length(p->in) : 0;
}

/* After the read callback: an input it drained goes back to the thread (an idle connection
 * holds none). */
static void
transport_plain_input_settle(struct transport_plain *p)
{
	struct transport_tl *tl = &transport_tl;

	if (p->in == NULL || evbuffer_get_length(p->in) > 0)
		return;
	if (tl->spare == NULL && tl->buf != NULL)
		tl->spare = p->in;
	else
		evbuffer_free(p->in);
	p->in = NULL;
}

/* The socket failed or ended: no more reading or writing, then the owner hears of it. */
static void
transport_plain_fail(struct transport_plain *p, short what)
{
	int err = errno; /* the owner words the error from it */

	p->enabled = 0;
	transport_plain_update(p);
	errno = err;
	if (p->t.cbs != NULL && p->t.cbs->event != NULL)
		p->t.cbs->event(&p->t, what, p->t.arg);
}

static void
transport_plain_read(struct transport_plain *p)
{
	struct transport_tl *tl = transport_tl_get();
	struct evbuffer *in;
	ssize_t n;

	if (tl == NULL)
		return; /* ENOMEM: the event stays, tried again on the next turn */
	n = recv(event_get_fd(&p->ev), tl->buf, TRANSPORT_READ_MAX, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		transport_plain_fail(p, TRANSPORT_ERROR);
		return;
	}
	if (n == 0) {
		transport_plain_fail(p, TRANSPORT_EOF);
		return;
	}
	if ((in = transport_plain_input(&p->t)) == NULL ||
	    evbuffer_add(in, tl->buf, (size_t)n) < 0) {
		/* The bytes are gone: the stream cannot go on. */
		errno = ENOMEM;
		transport_plain_fail(p, TRANSPORT_ERROR);
		return;
	}
	if (p->t.cbs != NULL && p->t.cbs->read != NULL)
		p->t.cbs->read(&p->t, p->t.arg);
	transport_plain_input_settle(p);
}

static void
transport_plain_write(struct transport_plain *p)
{
	int n;

	if (evbuffer_get_length(p->out) == 0) {
		p->write_wait = 0;
		transport_plain_update(p);
		return;
	}
	n = evbuffer_write_atmost(p->out, event_get_fd(&p->ev), TRANSPORT_WRITE_MAX);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		transport_plain_fail(p, TRANSPORT_ERROR);
		return;
	}
	if (evbuffer_get_length(p->out) == 0) {
		p->write_wait = 0;
		transport_plain_update(p);
	}
	if (n > 0 && evbuffer_get_length(p->out) <= p->write_low && p->t.cbs != NULL &&
	    p->t.cbs->write != NULL)
		p->t.cbs->write(&p->t, p->t.arg);
}

static void
transport_plain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct transport_plain *p = arg;

	(void)fd;
	/* Each part checks what is still wanted: a callback of the first may have closed. */
	if ((what & EV_WRITE) && (p->enabled & EV_WRITE) && p->write_wait)
		transport_plain_write(p);
	if ((what & EV_READ) && (p->enabled & EV_READ))
		transport_plain_read(p);
}

static void
transport_plain_update(struct transport_plain *p)
{
	short want = (short)(p->enabled & EV_READ);

	if ((p->enabled & EV_WRITE) && p->write_wait)
		want |= EV_WRITE;
	if (want == p->armed)
		return;
	/* An added event's kinds cannot change: deleted, assigned again, added. Through libevent's
	 * changelist a change and its undoing in one loop turn cost no system call. */
	if (p->armed != 0)
		event_del(&p->ev);
	p->armed = 0;
	if (want == 0)
		return;
	event_assign(&p->ev, event_get_base(&p->ev), event_get_fd(&p->ev), want | EV_PERSIST,
	             transport_plain_cb, p);
	if (event_add(&p->ev, NULL) < 0) {
		log_warnx("transport: event_add failed");
		return;
	}
	p->armed = (uint8_t)want;
}

struct transport *
transport_plain_new(struct event_base *base, int fd)
{
	struct transport_plain *p;

	if ((p = calloc(1, sizeof(*p))) == NULL || (p->out = evbuffer_new()) == NULL) {
		free(p);
		close(fd);
		return NULL;
	}
	event_assign(&p->ev, base, fd, 0, transport_plain_cb, p);
	return &p->t;
}

void
transport_plain_free(struct transport *t)
{
	struct transport_plain *p = transport_plain_of(t);

	if (p->armed != 0)
		event_del(&p->ev);
	close(event_get_fd(&p->ev));
	if (p->in != NULL)
		evbuffer_free(p->in);
	evbuffer_free(p->out);
	free(p);
}

void
transport_plain_enable(struct transport *t, short what, int on)
{
	struct transport_plain *p = transport_plain_of(t);
	uint8_t bits = (uint8_t)(what & (EV_READ | EV_WRITE));

	p->enabled = on ? (uint8_t)(p->enabled | bits) : (uint8_t)(p->enabled & ~bits);
	transport_plain_update(p);
}

struct evbuffer *
transport_plain_output(struct transport *t)
{
	return transport_plain_of(t)->out;
}

int
transport_plain_fd(const struct transport *t)
{
	return event_get_fd(&transport_plain_of_const(t)->ev);
}

void
transport_plain_set_write_low(struct transport *t, size_t low)
{
	transport_plain_of(t)->write_low = low < UINT32_MAX ? (uint32_t)low : UINT32_MAX;
}

void
transport_plain_write_soon(struct transport *t)
{
	struct transport_plain *p = transport_plain_of(t);

	if (p->write_wait || evbuffer_get_length(p->out) == 0)
		return;
	p->write_wait = 1;
	transport_plain_update(p);
}

void
transport_plain_written(struct transport *t)
{
	struct transport_plain *p = transport_plain_of(t);
	uint8_t wait = evbuffer_get_length(p->out) > 0;

	if (wait == p->write_wait)
		return;
	p->write_wait = wait;
	transport_plain_update(p);
}

int
transport_plain_write_pending(const struct transport *t)
{
	return (transport_plain_of_const(t)->armed & EV_WRITE) != 0;
}

void
transport_plain_finish(struct transport *t)
{
	shutdown(transport_plain_fd(t), SHUT_WR);
}
