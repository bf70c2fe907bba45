/* transport.c - the client transport's interface (transport.h): plain TCP is transport_plain.c,
 * TLS a bufferevent_openssl made by tls.c (certificates, SNI, reload, close_notify) whose
 * callbacks are passed on here. */
#include "transport_int.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include <event2/event.h>

#include "tls.h"

_Static_assert(TRANSPORT_EOF == BEV_EVENT_EOF && TRANSPORT_ERROR == BEV_EVENT_ERROR,
               "transport events are libevent's");

static void
transport_tls_read(struct bufferevent *bev, void *arg)
{
	struct transport *t = arg;

	(void)bev;
	if (t->cbs != NULL && t->cbs->read != NULL)
		t->cbs->read(t, t->arg);
}

static void
transport_tls_write(struct bufferevent *bev, void *arg)
{
	struct transport *t = arg;

	(void)bev;
	if (t->cbs != NULL && t->cbs->write != NULL)
		t->cbs->write(t, t->arg);
}

static void
transport_tls_event(struct bufferevent *bev, short what, void *arg)
{
	struct transport *t = arg;

	(void)bev;
	if (t->cbs != NULL && t->cbs->event != NULL)
		t->cbs->event(t, what & (TRANSPORT_EOF | TRANSPORT_ERROR), t->arg);
}

struct transport *
transport_server_new(struct event_base *base, int fd, struct tls_server *tls)
{
	struct transport *t;
	struct bufferevent *bev;

	if (tls == NULL)
		return transport_plain_new(base, fd);
	if ((bev = tls_bufferevent_new(base, fd, tls)) == NULL)
		return NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	t->bev = bev;
	bufferevent_setcb(bev, transport_tls_read, transport_tls_write, transport_tls_event, t);
	return t;
}

void
transport_free(struct transport *t)
{
	if (t == NULL)
		return;
	if (t->bev == NULL) {
		transport_plain_free(t);
		return;
	}
	bufferevent_free(t->bev); /* closes the socket: BEV_OPT_CLOSE_ON_FREE */
	free(t);
}

void
transport_setcb(struct transport *t, const struct transport_cbs *cbs, void *arg)
{
	t->cbs = cbs;
	t->arg = arg;
}

void
transport_enable(struct transport *t, short what)
{
	if (t->bev != NULL)
		bufferevent_enable(t->bev, what);
	else
		transport_plain_enable(t, what, 1);
}

void
transport_disable(struct transport *t, short what)
{
	if (t->bev != NULL)
		bufferevent_disable(t->bev, what);
	else
		transport_plain_enable(t, what, 0);
}

struct evbuffer *
transport_input(struct transport *t)
{
	return t->bev != NULL ? bufferevent_get_input(t->bev) : transport_plain_input(t);
}

size_t
transport_input_len(const struct transport *t)
{
	if (t->bev != NULL)
		return evbuffer_get_length(bufferevent_get_input(t->bev));
	return transport_plain_input_len(t);
}

struct evbuffer *
transport_output(struct transport *t)
{
	return t->bev != NULL ? bufferevent_get_output(t->bev) : transport_plain_output(t);
}

int
transport_fd(const struct transport *t)
{
	return t->bev != NULL ? bufferevent_getfd(t->bev) : transport_plain_fd(t);
}

void
transport_set_write_low(struct transport *t, size_t low)
{
	if (t->bev != NULL)
		bufferevent_setwatermark(t->bev, EV_WRITE, low, 0);
	else
		transport_plain_set_write_low(t, low);
}

void
transport_write_soon(struct transport *t)
{
	if (t->bev == NULL)
		transport_plain_write_soon(t);
}

void
transport_written(struct transport *t)
{
	if (t->bev == NULL)
		transport_plain_written(t);
}

int
transport_write_pending(const struct transport *t)
{
	if (t->bev != NULL)
		return evbuffer_get_length(bufferevent_get_output(t->bev)) > 0;
	return transport_plain_write_pending(t);
}

void
transport_finish(struct transport *t)
{
	if (t->bev != NULL)
		tls_finish(t->bev);
	else
		transport_plain_finish(t);
}

int
transport_is_tls(const struct transport *t)
{
	return t->bev != NULL;
}

/* libevent's own reads: EVBUFFER_MAX_READ in buffer.c (2.1). */
#define TRANSPORT_LIBEVENT_READ 4096

int
transport_read_was_cut(size_t len, size_t left)
{
	return len >= left && len - left >= TRANSPORT_LIBEVENT_READ;
}

size_t
transport_read_more(struct bufferevent *bev)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[2];
	evutil_socket_t fd = bufferevent_getfd(bev);
	ssize_t r;
	size_t left;
	int n;

	if (fd < 0)
		return 0;
	/* A socket bufferevent keeps its input frozen at the end between its own reads (as its
	 * output at the front: ws_outq.c): thawed for this read as its read callback does. */
	evbuffer_unfreeze(in, 0);
	if ((n = evbuffer_reserve_space(in, TRANSPORT_READ_MORE, v, 2)) <= 0) {
		evbuffer_freeze(in, 0);
		return 0;
	}
	/* struct evbuffer_iovec has struct iovec's layout on Unix (event2/buffer.h). */
	r = readv(fd, (struct iovec *)v, n);
	left = r > 0 ? (size_t)r : 0;
	for (int i = 0; i < n; i++) {
		if (v[i].iov_len > left)
			v[i].iov_len = left;
		left -= v[i].iov_len;
	}
	(void)evbuffer_commit_space(in, v, n);
	evbuffer_freeze(in, 0);
	return r > 0 ? (size_t)r : 0;
}
