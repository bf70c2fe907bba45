/* transport.c - plain and TLS client transports behind one small interface (transport.h).
 * The TLS side (certificates, SNI, reload) lives in tls.c; here is only the choice. */
#include "transport.h"

#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>

#include "log.h"

struct bufferevent *
transport_server_new(struct event_base *base, int fd, struct tls_server *tls)
{
	struct bufferevent *bev;

	if (tls != NULL) {
		/* TLS is added by tls.c (issue: TLS termination); refuse rather than speak plain. */
		log_warnx("TLS listener without TLS support built in");
		close(fd);
		return NULL;
	}
	bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		close(fd);
	return bev;
}

void
transport_finish(struct bufferevent *bev)
{
	shutdown(bufferevent_getfd(bev), SHUT_WR);
}

int
transport_is_tls(struct bufferevent *bev)
{
	return bufferevent_openssl_get_ssl(bev) != NULL;
}
