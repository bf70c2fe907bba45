/* listener.c - bound sockets handing accepted fds to conn_new(). On EMFILE/ENFILE the
 * listener is disabled for a moment rather than spinning on a ready socket it cannot accept. */
#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "conn.h"
#include "transport.h"
#include "log.h"
#include "worker.h"

#define LISTENER_BACKLOG 4096
#define LISTENER_PAUSE_MS 100 /* accept pause after running out of descriptors */

struct listener {
	struct worker *w;
	struct evconnlistener *lev;
	struct event *resume;  /* re-enables accepting after an EMFILE pause */
	struct tls_server *tls; /* NULL for plain listeners */
	char name[80];
};

static void
listener_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	struct listener *l = arg;
	struct bufferevent *bev;
	int one = 1;

	(void)lev;
	/* Frames are written whole; Nagle would only add latency to small messages. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_warn("TCP_NODELAY");
	if ((bev = transport_server_new(l->w->base, fd, l->tls)) == NULL)
		return;
	conn_new(l->w, bev, sa, (socklen_t)salen);
}

static void
listener_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(l->lev);
}

static void
listener_error(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 0, LISTENER_PAUSE_MS * 1000 };

	(void)lev;
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		log_warnx("listener %s: accept: %s; pausing %d ms", l->name, strerror(err),
		    LISTENER_PAUSE_MS);
		evconnlistener_disable(l->lev);
		evtimer_add(l->resume, &tv);
		return;
	}
	log_warnx("listener %s: accept: %s", l->name, strerror(err));
}

struct listener *
listener_new(struct worker *w, const struct config_listen *cl)
{
	struct addrinfo hints, *res = NULL;
	struct listener *l;
	int r;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->w = w;
	snprintf(l->name, sizeof(l->name), "%s%s%s:%s", strchr(cl->host, ':') ? "[" : "",
	    cl->host, strchr(cl->host, ':') ? "]" : "", cl->port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if ((r = getaddrinfo(cl->host, cl->port, &hints, &res)) != 0) {
		log_warnx("listen %s: %s", l->name, gai_strerror(r));
		free(l);
		return NULL;
	}
	l->lev = evconnlistener_new_bind(w->base, listener_accept, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, LISTENER_BACKLOG,
	    res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (l->lev == NULL) {
		log_warn("listen %s", l->name);
		free(l);
		return NULL;
	}
	evconnlistener_set_error_cb(l->lev, listener_error);
	if ((l->resume = evtimer_new(w->base, listener_resume, l)) == NULL) {
		evconnlistener_free(l->lev);
		free(l);
		return NULL;
	}
	log_info("listening on %s", l->name);
	return l;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	evconnlistener_free(l->lev);
	event_free(l->resume);
	free(l);
}
