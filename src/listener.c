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

#include <sys/queue.h>

#include <event2/event.h>
#include <event2/listener.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "conn.h"
#include "cidr.h"
#include "limit.h"
#include "log.h"
#include "proxy_proto.h"
#include "security.h"
#include "service.h"
#include "transport.h"
#include "worker.h"

#define LISTENER_BACKLOG 4096
#define LISTENER_PAUSE_MS 100     /* accept pause after running out of descriptors */
#define LISTENER_DROP_LOG_MS 1000 /* unanswered refusals are logged at most this often */

/* A connection on a proxy_protocol listener whose PROXY header is still being read. */
struct listener_pp {
	struct listener *l;
	int fd;
	struct event *ev;             /* EV_READ with handshake_timeout */
	struct sockaddr_storage peer; /* the trusted proxy */
	socklen_t peerlen;
	size_t len; /* header bytes already consumed into buf */
	uint8_t buf[PROXY_PROTO_MAX];
	LIST_ENTRY(listener_pp) entry;
};

struct listener {
	struct worker *w;
	struct evconnlistener *lev;
	struct event *resume;         /* re-enables accepting after an EMFILE pause */
	struct tls_server *tls;       /* NULL for plain listeners; the gateway's, shared */
	int proxy_protocol;           /* a PROXY header from a trusted peer comes first */
	LIST_HEAD(, listener_pp) pps; /* headers being read */
	uint64_t drops;               /* refusals closed unanswered since the last log line */
	uint64_t drop_log_ms;
	char name[80];
};

/* A refusal must be answered over the connection (for TLS after the handshake): accept it,
 * queue the status and let the connection flush and close like any HTTP reply. */
static void
listener_refuse(struct conn *c, enum limit_verdict v, const struct config *cfg)
{
	struct security *sec = c->env->sec;
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

	security_count(l->w->env.sec, SEC_REFUSAL_DROPPED);
	l->drops++;
	if (now - l->drop_log_ms >= LISTENER_DROP_LOG_MS) {
		log_warnx("listener %s: %llu connection(s) over the limits closed unanswered: %d "
		          "refusals already in flight",
		          l->name, (unsigned long long)l->drops, LIMIT_MAX_REFUSING);
		l->drops = 0;
		l->drop_log_ms = now;
	}
}

/* 1 when sa is in trusted_proxies. */
static int
listener_is_trusted(const struct config *cfg, const struct sockaddr *sa)
{
	if (cfg->ntrusted_proxies == 0)
		return 0;
	if (sa->sa_family == AF_INET)
		return cidr_match(cfg->trusted_proxies, cfg->ntrusted_proxies, 4,
		                  (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
	if (sa->sa_family == AF_INET6)
		return cidr_match(cfg->trusted_proxies, cfg->ntrusted_proxies, 6,
		                  (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return 0;
}

/* Admission limits, then the connection, for a client at sa: the socket's peer, or (named)
 * the address a PROXY header gave. Takes ownership of fd. */
static void
listener_admit(struct listener *l, evutil_socket_t fd, const struct sockaddr *sa, socklen_t salen,
               int named)
{
	const struct sockaddr unspec = {.sa_family = AF_UNSPEC};
	const struct worker_owner *gw = l->w->owner;
	struct limit_ticket ticket;
	enum limit_verdict v;
	struct transport *tr;
	struct conn *c;
	int one = 1;

	/* A trusted proxy's address is many clients: it is not counted per IP here; the client
	 * it names in X-Forwarded-For is, at the handshake (conn_handshake.c). */
	v = limit_admit(gw->limits, l->w->cfg,
	                listener_is_trusted(l->w->cfg, sa) && !named ? &unspec : sa, conn_now_ms(),
	                &ticket);
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
	if ((tr = transport_server_new(l->w->base, fd, l->tls)) == NULL ||
	    (c = conn_new(&l->w->env, tr, sa, salen)) == NULL) {
		limit_release(gw->limits, &ticket);
		return;
	}
	/* Given back in conn_free, when the socket is closed. */
	c->limit = ticket;
	if (v != LIMIT_OK)
		listener_refuse(c, v, c->cfg);
}

/* ---- the PROXY protocol stage ---- */

static void
listener_pp_free(struct listener_pp *pp, const char *why)
{
	if (why != NULL) {
		security_count(pp->l->w->env.sec, SEC_PROXY_HEADER);
		log_info("listener %s: connection closed: %s", pp->l->name, why);
	}
	LIST_REMOVE(pp, entry);
	event_free(pp->ev);
	if (pp->fd >= 0)
		close(pp->fd);
	free(pp);
}

/* The address a header named, as a socket address; 0, or -1 for a LOCAL/UNKNOWN header. */
static int
listener_pp_addr(const struct proxy_proto_result *r, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (r->family == 4) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, r->src, 4);
		in->sin_port = htons(r->src_port);
		*len = sizeof(*in);
		return 0;
	}
	if (r->family == 6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, r->src, 16);
		in6->sin6_port = htons(r->src_port);
		*len = sizeof(*in6);
		return 0;
	}
	return -1;
}

/*
 * Reads the header without taking a byte of what follows it (TLS or HTTP, which belong to the
 * transport): bytes are peeked, and taken only when they are known to be header bytes - all
 * of them while the parser wants more, exactly the rest of the header once it is complete.
 */
static void
listener_pp_read(evutil_socket_t fd, short what, void *arg)
{
	struct listener_pp *pp = arg;
	struct proxy_proto_result r;
	struct sockaddr_storage ss;
	socklen_t sslen;
	ssize_t n;
	size_t take;

	if (what & EV_TIMEOUT) {
		listener_pp_free(pp, "no complete PROXY header within handshake_timeout");
		return;
	}
	n = recv(fd, pp->buf + pp->len, sizeof(pp->buf) - pp->len, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		listener_pp_free(pp, n == 0 ? "EOF before the PROXY header" : strerror(errno));
		return;
	}
	switch (proxy_proto_parse(pp->buf, pp->len + (size_t)n, &r)) {
	case PROXY_PROTO_NEED_MORE:
		take = (size_t)n;
		break;
	case PROXY_PROTO_OK:
		take = r.len - pp->len;
		break;
	case PROXY_PROTO_BAD:
	default:
		listener_pp_free(pp, "malformed PROXY header");
		return;
	}
	if (recv(fd, pp->buf + pp->len, take, 0) != (ssize_t)take) {
		listener_pp_free(pp, "short read of a peeked PROXY header");
		return;
	}
	pp->len += take;
	if (pp->len < r.len || r.len == 0) {
		if (pp->len == sizeof(pp->buf))
			listener_pp_free(pp, "PROXY header too long");
		return;
	}
	/* LOCAL (the balancer's own check) keeps the socket's addresses. */
	if (listener_pp_addr(&r, &ss, &sslen) < 0) {
		memcpy(&ss, &pp->peer, sizeof(ss));
		sslen = pp->peerlen;
	}
	pp->fd = -1; /* ownership moves on */
	listener_admit(pp->l, fd, (struct sockaddr *)&ss, sslen, r.family != 0);
	listener_pp_free(pp, NULL);
}

static void
listener_pp_start(struct listener *l, evutil_socket_t fd, const struct sockaddr *sa,
                  socklen_t salen)
{
	const struct config *cfg = l->w->cfg;
	uint64_t ms = cfg->handshake_timeout_ms;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	struct listener_pp *pp;

	/* Only a trusted balancer may say who the client is. */
	if (!listener_is_trusted(cfg, sa)) {
		security_count(l->w->env.sec, SEC_PROXY_HEADER);
		log_info("listener %s: connection from a peer not in trusted_proxies closed",
		         l->name);
		close(fd);
		return;
	}
	if ((pp = calloc(1, sizeof(*pp))) == NULL ||
	    (pp->ev = event_new(l->w->base, fd, EV_READ | EV_PERSIST, listener_pp_read, pp)) ==
	        NULL) {
		log_warn("listener %s: PROXY stage", l->name);
		free(pp);
		close(fd);
		return;
	}
	pp->l = l;
	pp->fd = fd;
	memcpy(&pp->peer, sa, salen < (socklen_t)sizeof(pp->peer) ? salen : sizeof(pp->peer));
	pp->peerlen = salen;
	LIST_INSERT_HEAD(&l->pps, pp, entry);
	event_add(pp->ev, &tv);
}

static void
listener_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
                void *arg)
{
	struct listener *l = arg;

	(void)lev;
	if (l->proxy_protocol)
		listener_pp_start(l, fd, sa, (socklen_t)salen);
	else
		listener_admit(l, fd, sa, (socklen_t)salen, 0);
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
	l->proxy_protocol = cl->proxy_protocol;
	LIST_INIT(&l->pps);
	if (cl->tls) {
		if (w->owner->tls == NULL) {
			log_warnx("listen %s:%s tls: no TLS certificates loaded", cl->host,
			          cl->port);
			free(l);
			return NULL;
		}
		l->tls = w->owner->tls;
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
		l->lev = evconnlistener_new_bind(
		    w->base, listener_accept, l,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE |
		        (reuseport ? LEV_OPT_REUSEABLE_PORT : 0),
		    LISTENER_BACKLOG, res->ai_addr, (int)res->ai_addrlen);
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
		log_info("listening on %s%s%s%s", l->name, l->tls != NULL ? " (TLS)" : "",
		         l->proxy_protocol ? " (PROXY protocol)" : "",
		         inherited >= 0 ? " (socket from the service manager)" : "");
	return l;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	while (!LIST_EMPTY(&l->pps))
		listener_pp_free(LIST_FIRST(&l->pps), NULL);
	evconnlistener_free(l->lev);
	event_free(l->resume);
	free(l);
}
