/* listener.c - bound sockets handing accepted fds to conn_new() over the listener's transport
 * (plain or TLS), after the admission limits. On EMFILE/ENFILE the listener is disabled for a
 * moment rather than spinning on a ready socket it cannot accept. */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "conn.h"
#include "gateway.h"
#include "limit.h"
#include "log.h"
#include "security.h"
#include "service.h"
#include "transport.h"
#include "worker.h"

#define LISTENER_BACKLOG 4096
#define LISTENER_PAUSE_MS 100     /* accept pause after running out of descriptors */
#define LISTENER_DROP_LOG_MS 1000 /* unanswered refusals are logged at most this often */

struct listener {
	struct worker *w;
	struct evconnlistener *lev;
	struct event *resume;   /* re-enables accepting after an EMFILE pause */
	struct tls_server *tls; /* NULL for plain listeners; the gateway's, shared */
	uint64_t drops;         /* refusals closed unanswered since the last log line */
	uint64_t drop_log_ms;
	char name[80];
};

/* A refusal must be answered over the connection (for TLS after the handshake): accept it,
 * queue the status and let the connection flush and close like any HTTP reply. */
static void
listener_refuse(struct conn *c, enum limit_verdict v, const struct config *cfg)
{
	struct security *sec = c->w->gw->sec;
	char why[128];

	switch (v) {
	case LIMIT_TOTAL:
		security_count(sec, SEC_MAX_CONNECTIONS);
		snprintf(why, sizeof(why), "max_connections (%llu) reached",
		         (unsigned long long)cfg->max_connections);
		conn_http_reply(c, 503, NULL, why);
		break;
	case LIMIT_PER_IP:
		security_count(sec, SEC_MAX_PER_IP);
		snprintf(why, sizeof(why), "max_connections_per_ip (%llu) reached",
		         (unsigned long long)cfg->max_connections_per_ip);
		conn_http_reply(c, 503, NULL, why);
		break;
	case LIMIT_RATE:
		security_count(sec, SEC_ACCEPT_RATE);
		snprintf(why, sizeof(why), "accept_rate_per_ip (%llu/s) exceeded",
		         (unsigned long long)cfg->accept_rate_per_ip);
		conn_http_reply(c, 429, "Retry-After: 1\r\n", why);
		break;
	case LIMIT_OK:
	case LIMIT_DROP:
		break;
	}
}

static void
listener_dropped(struct listener *l)
{
	uint64_t now = conn_now_ms();

	security_count(l->w->gw->sec, SEC_REFUSAL_DROPPED);
	l->drops++;
	if (now - l->drop_log_ms >= LISTENER_DROP_LOG_MS) {
		log_warnx("listener %s: %llu connection(s) over the limits closed unanswered: %d "
		          "refusals already in flight",
		          l->name, (unsigned long long)l->drops, LIMIT_MAX_REFUSING);
		l->drops = 0;
		l->drop_log_ms = now;
	}
}

static void
listener_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
                void *arg)
{
	struct listener *l = arg;
	struct gateway *gw = l->w->gw;
	struct limit_ticket ticket;
	enum limit_verdict v;
	struct bufferevent *bev;
	struct conn *c;
	int one = 1;

	(void)lev;
	v = limit_admit(gw->limits, l->w->cfg, sa, conn_now_ms(), &ticket);
	if (v == LIMIT_DROP) {
		listener_dropped(l);
		close(fd);
		return;
	}
	if (ticket.untracked)
		security_count(gw->sec, SEC_PER_IP_UNTRACKED);
	/* Frames are written whole; Nagle would only add latency to small messages. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_warn("TCP_NODELAY");
	if ((bev = transport_server_new(l->w->base, fd, l->tls)) == NULL ||
	    (c = conn_new(l->w, bev, sa, (socklen_t)salen)) == NULL) {
		limit_release(gw->limits, &ticket);
		return;
	}
	/* Given back in conn_free, when the socket is closed. */
	c->limit = ticket;
	if (v != LIMIT_OK)
		listener_refuse(c, v, c->cfg);
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
	struct timeval tv = {0, LISTENER_PAUSE_MS * 1000};

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

static void
listener_format_name(char *buf, size_t n, const struct config_listen *cl)
{
	snprintf(buf, n, "%s%s%s:%s", strchr(cl->host, ':') ? "[" : "", cl->host,
	         strchr(cl->host, ':') ? "]" : "", cl->port);
}

static int
listener_resolve(const struct config_listen *cl, const char *name, struct addrinfo **res)
{
	struct addrinfo hints;
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if ((r = getaddrinfo(cl->host, cl->port, &hints, res)) != 0) {
		log_warnx("listen %s: %s", name, gai_strerror(r));
		return -1;
	}
	return 0;
}

int
listener_probe(const struct config_listen *cl)
{
	struct addrinfo *res = NULL;
	char name[80];
	int fd, one = 1, r = -1;

	listener_format_name(name, sizeof(name), cl);
	if (listener_resolve(cl, name, &res) < 0)
		return -1;
	/* Without SO_REUSEPORT this bind fails while any socket listens on the address,
	 * including another process's reuseport group. */
	if ((fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		log_warn("listen %s: socket", name);
	} else {
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
			log_warn("listen %s", name);
		else
			r = 0;
		close(fd);
	}
	freeaddrinfo(res);
	return r;
}

struct listener *
listener_new(struct worker *w, const struct config_listen *cl, int reuseport)
{
	struct addrinfo *res = NULL;
	struct listener *l;
	int inherited, fd = -1;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->w = w;
	if (cl->tls) {
		if (w->gw->tls == NULL) {
			log_warnx("listen %s:%s tls: no TLS certificates loaded", cl->host,
			          cl->port);
			free(l);
			return NULL;
		}
		l->tls = w->gw->tls;
	}
	listener_format_name(l->name, sizeof(l->name), cl);
	if ((inherited = service_listen_fd_match(cl)) >= 0) {
		/* Socket activation: the service manager bound the address and keeps its socket
		 * across our restarts. Every worker accepts on a duplicate of that one socket (one
		 * accept queue, woken together) instead of a SO_REUSEPORT socket each: the manager
		 * passes one socket per address, and the kernel would queue nothing for sockets we
		 * bound ourselves while we restart. */
		if ((fd = fcntl(inherited, F_DUPFD_CLOEXEC, 0)) < 0 ||
		    evutil_make_socket_nonblocking(fd) < 0) {
			log_warn("listen %s: inherited socket %d", l->name, inherited);
			if (fd >= 0)
				close(fd);
			free(l);
			return NULL;
		}
		/* Backlog 0: already listening, libevent leaves it alone. */
		l->lev = evconnlistener_new(w->base, listener_accept, l,
		                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
		if (l->lev == NULL)
			close(fd);
	} else {
		if (listener_resolve(cl, l->name, &res) < 0) {
			free(l);
			return NULL;
		}
		/* With several workers each has its own socket on the address and the kernel
		 * spreads new connections over them: no shared accept queue, no thundering herd. */
		l->lev = evconnlistener_new_bind(w->base, listener_accept, l,
		                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
		                                     LEV_OPT_REUSEABLE |
		                                     (reuseport ? LEV_OPT_REUSEABLE_PORT : 0),
		                                 LISTENER_BACKLOG, res->ai_addr,
		                                 (int)res->ai_addrlen);
		freeaddrinfo(res);
	}
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
	if (w->id == 0)
		log_info("listening on %s%s%s", l->name, l->tls != NULL ? " (TLS)" : "",
		         inherited >= 0 ? " (socket from the service manager)" : "");
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
