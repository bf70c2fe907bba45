/* transport.c - plain and TLS client transports behind one small interface (transport.h):
 * two implementations of the same table, chosen once per connection. The TLS one (certificates,
 * SNI, reload, close_notify) lives in tls.c. */
#include "transport.h"

#include <sys/socket.h>
#include <unistd.h>

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
