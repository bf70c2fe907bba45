/* transport.c - plain and TLS client transports behind one small interface (transport.h):
 * two implementations of the same table, chosen once per connection. The TLS one (certificates,
 * SNI, reload, close_notify) lives in tls.c. */
#include "transport.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "log.h"
#include "tls.h"

struct transport_ops {
	const char *name;
	struct bufferevent *(*server_new)(struct event_base *base, int fd, struct tls_server *tls);
	void (*finish)(struct bufferevent *bev);
};

static struct bufferevent *
transport_plain_new(struct event_base *base, int fd, struct tls_server *tls)
{
	struct bufferevent *bev;

	(void)tls;
	bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		close(fd);
	return bev;
}

static void
transport_plain_finish(struct bufferevent *bev)
{
	shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static const struct transport_ops transport_plain = {
    "plain",
    transport_plain_new,
    transport_plain_finish,
};

static const struct transport_ops transport_tls = {
    "tls",
    tls_bufferevent_new,
    tls_finish,
};

struct bufferevent *
transport_server_new(struct event_base *base, int fd, struct tls_server *tls)
{
	const struct transport_ops *ops = tls != NULL ? &transport_tls : &transport_plain;

	return ops->server_new(base, fd, tls);
}

void
transport_finish(struct bufferevent *bev)
{
	const struct transport_ops *ops = transport_is_tls(bev) ? &transport_tls : &transport_plain;

	ops->finish(bev);
}

int
transport_is_tls(struct bufferevent *bev)
{
	return tls_bufferevent_is_tls(bev);
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
	 * output at the front: conn_flush.c): thawed for this read as its read callback does. */
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
