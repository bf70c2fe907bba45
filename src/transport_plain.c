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

#include "log.h"

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
	struct transport_tl *tl = &transport_tl;

	if (t->in != NULL)
		return t->in;
	if (tl->spare != NULL) {
		t->in = tl->spare;
		tl->spare = NULL;
	} else {
		t->in = evbuffer_new();
	}
	return t->in;
}

/* After the read callback: an input it drained goes back to the thread (an idle connection
 * holds none). */
static void
transport_plain_input_settle(struct transport *t)
{
	struct transport_tl *tl = &transport_tl;

	if (t->in == NULL || evbuffer_get_length(t->in) > 0)
		return;
	if (tl->spare == NULL && tl->buf != NULL)
		tl->spare = t->in;
	else
		evbuffer_free(t->in);
	t->in = NULL;
}

/* The socket failed or ended: no more reading or writing, then the owner hears of it. */
static void
transport_plain_fail(struct transport *t, short what)
{
	int err = errno; /* the owner words the error from it */

	t->enabled = 0;
	transport_plain_update(t);
	errno = err;
	if (t->cbs != NULL && t->cbs->event != NULL)
		t->cbs->event(t, what, t->arg);
}

static void
transport_plain_read(struct transport *t)
{
	struct transport_tl *tl = transport_tl_get();
	struct evbuffer *in;
	ssize_t n;

	if (tl == NULL)
		return; /* ENOMEM: the event stays, tried again on the next turn */
	n = recv(event_get_fd(&t->ev), tl->buf, TRANSPORT_READ_MAX, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		transport_plain_fail(t, TRANSPORT_ERROR);
		return;
	}
	if (n == 0) {
		transport_plain_fail(t, TRANSPORT_EOF);
		return;
	}
	if ((in = transport_plain_input(t)) == NULL || evbuffer_add(in, tl->buf, (size_t)n) < 0) {
		/* The bytes are gone: the stream cannot go on. */
		errno = ENOMEM;
		transport_plain_fail(t, TRANSPORT_ERROR);
		return;
	}
	if (t->cbs != NULL && t->cbs->read != NULL)
		t->cbs->read(t, t->arg);
	transport_plain_input_settle(t);
}

static void
transport_plain_write(struct transport *t)
{
	int n;

	if (evbuffer_get_length(t->out) == 0) {
		t->write_wait = 0;
		transport_plain_update(t);
		return;
	}
	n = evbuffer_write_atmost(t->out, event_get_fd(&t->ev), TRANSPORT_WRITE_MAX);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		transport_plain_fail(t, TRANSPORT_ERROR);
		return;
	}
	if (evbuffer_get_length(t->out) == 0) {
		t->write_wait = 0;
		transport_plain_update(t);
	}
	if (n > 0 && evbuffer_get_length(t->out) <= t->write_low && t->cbs != NULL &&
	    t->cbs->write != NULL)
		t->cbs->write(t, t->arg);
}

static void
transport_plain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct transport *t = arg;

	(void)fd;
	/* Each part checks what is still wanted: a callback of the first may have closed. */
	if ((what & EV_WRITE) && (t->enabled & EV_WRITE) && t->write_wait)
		transport_plain_write(t);
	if ((what & EV_READ) && (t->enabled & EV_READ))
		transport_plain_read(t);
}

void
transport_plain_update(struct transport *t)
{
	short want = (short)(t->enabled & EV_READ);

	if ((t->enabled & EV_WRITE) && t->write_wait)
		want |= EV_WRITE;
	if (want == t->armed)
		return;
	/* An added event's kinds cannot change: deleted, assigned again, added. Through libevent's
	 * changelist a change and its undoing in one loop turn cost no system call. */
	if (t->armed != 0)
		event_del(&t->ev);
	t->armed = 0;
	if (want == 0)
		return;
	event_assign(&t->ev, event_get_base(&t->ev), event_get_fd(&t->ev), want | EV_PERSIST,
	             transport_plain_cb, t);
	if (event_add(&t->ev, NULL) < 0) {
		log_warnx("transport: event_add failed");
		return;
	}
	t->armed = (uint8_t)want;
}

struct transport *
transport_plain_new(struct event_base *base, int fd)
{
	struct transport *t;

	if ((t = calloc(1, sizeof(*t))) == NULL || (t->out = evbuffer_new()) == NULL) {
		free(t);
		close(fd);
		return NULL;
	}
	event_assign(&t->ev, base, fd, 0, transport_plain_cb, t);
	return t;
}

void
transport_plain_free(struct transport *t)
{
	if (t->armed != 0)
		event_del(&t->ev);
	close(event_get_fd(&t->ev));
	if (t->in != NULL)
		evbuffer_free(t->in);
	evbuffer_free(t->out);
	free(t);
}
