/* admin.c - the admin listener: a request head (bounded like the WebSocket handshake), one
 * answer, close. Health and readiness mirror the gateway's state; /metrics renders the
 * counters at scrape time; /status is a page that polls /metrics and shows it to a person.
 * As hard as the public listeners: a deadline for the whole request (admin_timeout), a cap on
 * open connections (admin_max_connections), and accepting paused while descriptors run out. */
#include "admin.h"

#include <sys/queue.h>
#include <sys/socket.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "gateway.h"
#include "http.h"
#include "log.h"
#include "metrics.h"

#define ADMIN_PAUSE_MS 100 /* accept pause after running out of descriptors */

/* The answer to a connection over admin_max_connections: written once without waiting (it
 * fits any socket buffer), then closed; nothing is read. */
static const char admin_busy[] =
    "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    "Content-Length: 30\r\n\r\nadmin_max_connections reached\n";

/* One request in flight; kept on a list so shutdown frees the ones still open. */
struct admin_conn {
	struct admin *a;
	struct bufferevent *bev;
	struct event *deadline; /* admin_timeout from accept: the whole request, not per read */
	LIST_ENTRY(admin_conn) entry;
};

struct admin {
	struct gateway *gw;
	struct evconnlistener **ls;
	size_t nls;
	LIST_HEAD(, admin_conn) conns;
	size_t nconns;
	struct event *resume; /* re-enables accepting after an EMFILE pause */
	int paused;           /* accepting is off until resume fires or a connection closes */
	int starved; /* out of descriptors since the last accept that worked: logged once */
	uint64_t starved_pauses; /* pauses of the current starvation, logged when it ends */
	uint64_t busy;           /* refusals over the cap since the last log line */
	time_t busy_log;
};

static void
admin_accepting(struct admin *a, int on)
{
	for (size_t i = 0; i < a->nls; i++) {
		if (on)
			evconnlistener_enable(a->ls[i]);
		else
			evconnlistener_disable(a->ls[i]);
	}
}

/* A descriptor came back: accepting may work again, without waiting for the timer. */
static void
admin_resume_now(struct admin *a)
{
	if (!a->paused)
		return;
	a->paused = 0;
	evtimer_del(a->resume);
	admin_accepting(a, 1);
}

/* libevent lets a bufferevent be freed from its own callback (it is reference counted). */
static void
admin_conn_free(struct admin_conn *ac)
{
	struct admin *a = ac->a;

	LIST_REMOVE(ac, entry);
	a->nconns--;
	if (ac->deadline != NULL)
		event_free(ac->deadline);
	bufferevent_free(ac->bev);
	free(ac);
	admin_resume_now(a);
}

/* admin_timeout passed since accept: a client sending or reading one byte at a time is cut
 * like one that sends nothing. */
static void
admin_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin_conn *ac = arg;

	(void)fd;
	(void)what;
	log_debug("admin: request not done within admin_timeout; closed");
	admin_conn_free(ac);
}

static void
admin_write_cb(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		admin_conn_free(arg);
}

static void
admin_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	admin_conn_free(arg);
}

static void
admin_reply(struct admin_conn *ac, int status, const char *ctype, struct evbuffer *body,
            int head_only)
{
	struct bufferevent *bev = ac->bev;
	struct evbuffer *out = bufferevent_get_output(bev);
	size_t len = body ? evbuffer_get_length(body) : 0;

	evbuffer_add_printf(out,
	                    "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: %s\r\n"
	                    "Cache-Control: no-store\r\nContent-Length: %zu\r\n\r\n",
	                    status, http_reason(status), ctype, len);
	if (body != NULL && !head_only)
		evbuffer_add_buffer(out, body);
	/* Nothing more is read; the write callback frees once all is out. */
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, admin_write_cb, admin_event_cb, ac);
}

static void
admin_serve(struct admin_conn *ac, const struct http_request *req)
{
	struct admin *a = ac->a;
	struct evbuffer *body = evbuffer_new();
	int head = http_str_eq(req->method, "HEAD");

	if (body == NULL) {
		admin_conn_free(ac);
		return;
	}
	if (!http_str_eq(req->method, "GET") && !head) {
		evbuffer_add_printf(body, "method not allowed\n");
		admin_reply(ac, 405, "text/plain", body, 0);
	} else if (http_str_eq(req->path, "/healthz")) {
		evbuffer_add_printf(body, "ok\n");
		admin_reply(ac, 200, "text/plain", body, head);
	} else if (http_str_eq(req->path, "/readyz")) {
		int ready = gateway_ready(a->gw);
		evbuffer_add_printf(body, "%s\n",
		                    ready                                ? "ready"
		                    : gateway_state(a->gw) != GW_RUNNING ? "draining"
		                                                         : "broker link down");
		admin_reply(ac, ready ? 200 : 503, "text/plain", body, head);
	} else if (http_str_eq(req->path, "/metrics")) {
		admin_metrics_render(a->gw, body);
		admin_reply(ac, 200, "text/plain; version=0.0.4", body, head);
	} else if (http_str_eq(req->path, "/status") || http_str_eq(req->path, "/")) {
		evbuffer_add(body, admin_status_html, strlen(admin_status_html));
		admin_reply(ac, 200, "text/html; charset=utf-8", body, head);
	} else {
		evbuffer_add_printf(body, "not found\n");
		admin_reply(ac, 404, "text/plain", body, head);
	}
	evbuffer_free(body);
}

static void
admin_read_cb(struct bufferevent *bev, void *arg)
{
	struct admin_conn *ac = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in), n = len < HTTP_MAX_HEADER ? len : HTTP_MAX_HEADER;
	struct http_request req;
	const char *p = (const char *)evbuffer_pullup(in, (ssize_t)n);

	switch (http_parse_request(p, n, &req)) {
	case HTTP_PARSE_NEED_MORE:
		return;
	case HTTP_PARSE_OK:
		admin_serve(ac, &req);
		return;
	case HTTP_PARSE_TOO_LARGE:
		admin_reply(ac, 431, "text/plain", NULL, 0);
		return;
	default:
		admin_reply(ac, 400, "text/plain", NULL, 0);
		return;
	}
}

static void
admin_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
             void *arg)
{
	struct admin *a = arg;
	const struct config *cfg = a->gw->cfg;
	struct admin_conn *ac;
	struct timeval tv;
	time_t now;

	(void)l;
	(void)sa;
	(void)salen;
	if (a->starved) {
		log_info("admin: accepting again (out of descriptors for %llu pause(s) of %d ms)",
		         (unsigned long long)a->starved_pauses, ADMIN_PAUSE_MS);
		a->starved = 0;
		a->starved_pauses = 0;
	}
	if (a->nconns >= cfg->admin_max_connections) {
		/* Best effort, never waits: the socket buffer of a new connection is empty. */
		(void)send(fd, admin_busy, sizeof(admin_busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		evutil_closesocket(fd);
		a->busy++;
		if ((now = time(NULL)) != a->busy_log) {
			log_warnx("admin: %llu connection(s) refused: admin_max_connections (%llu) "
			          "open",
			          (unsigned long long)a->busy,
			          (unsigned long long)cfg->admin_max_connections);
			a->busy = 0;
			a->busy_log = now;
		}
		return;
	}
	if ((ac = calloc(1, sizeof(*ac))) == NULL) {
		evutil_closesocket(fd);
		return;
	}
	ac->a = a;
	if ((ac->bev = bufferevent_socket_new(a->gw->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		evutil_closesocket(fd);
		free(ac);
		return;
	}
	LIST_INSERT_HEAD(&a->conns, ac, entry);
	a->nconns++;
	if ((ac->deadline = evtimer_new(a->gw->base, admin_deadline_cb, ac)) == NULL) {
		admin_conn_free(ac);
		return;
	}
	tv.tv_sec = (time_t)(cfg->admin_timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)((cfg->admin_timeout_ms % 1000) * 1000);
	evtimer_add(ac->deadline, &tv);
	bufferevent_setcb(ac->bev, admin_read_cb, NULL, admin_event_cb, ac);
	bufferevent_enable(ac->bev, EV_READ | EV_WRITE);
}

static void
admin_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;

	(void)fd;
	(void)what;
	a->paused = 0;
	admin_accepting(a, 1);
}

/* Without this callback libevent logs the error and leaves the listener armed: with the
 * process at its descriptor limit the ready socket is accepted in a loop (one connection to
 * admin_listen made 337,512 log lines in 5 s). Pause instead, and log once per starvation. */
static void
admin_accept_error(struct evconnlistener *l, void *arg)
{
	struct admin *a = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = {0, ADMIN_PAUSE_MS * 1000};

	(void)l;
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		if (!a->starved)
			log_warnx("admin: accept: %s; pausing %d ms at a time until a descriptor "
			          "is free",
			          strerror(err), ADMIN_PAUSE_MS);
		a->starved = 1;
		a->starved_pauses++;
		a->paused = 1;
		admin_accepting(a, 0);
		evtimer_add(a->resume, &tv);
		return;
	}
	log_warnx("admin: accept: %s", strerror(err));
}

struct admin *
admin_new(struct gateway *gw)
{
	const struct config *cfg = gw->cfg;
	struct admin *a;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return NULL;
	a->gw = gw;
	LIST_INIT(&a->conns);
	if (cfg->nadmin_listens == 0)
		return a;
	if ((a->resume = evtimer_new(gw->base, admin_resume_cb, a)) == NULL ||
	    (a->ls = calloc(cfg->nadmin_listens, sizeof(*a->ls))) == NULL) {
		admin_free(a);
		return NULL;
	}
	for (size_t i = 0; i < cfg->nadmin_listens; i++) {
		const struct config_listen *cl = &cfg->admin_listens[i];
		struct addrinfo hints, *res = NULL;
		int r;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		if ((r = getaddrinfo(cl->host, cl->port, &hints, &res)) != 0) {
			log_warnx("admin_listen %s:%s: %s", cl->host, cl->port, gai_strerror(r));
			admin_free(a);
			return NULL;
		}
		a->ls[i] = evconnlistener_new_bind(gw->base, admin_accept, a,
		                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
		                                       LEV_OPT_REUSEABLE,
		                                   128, res->ai_addr, (int)res->ai_addrlen);
		freeaddrinfo(res);
		if (a->ls[i] == NULL) {
			log_warn("admin_listen %s:%s", cl->host, cl->port);
			admin_free(a);
			return NULL;
		}
		a->nls++;
		evconnlistener_set_error_cb(a->ls[i], admin_accept_error);
		log_info("admin listening on %s:%s (/healthz /readyz /metrics /status)", cl->host,
		         cl->port);
	}
	return a;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->nls; i++)
		evconnlistener_free(a->ls[i]);
	a->nls = 0; /* admin_conn_free must not re-enable what is gone */
	a->paused = 0;
	while (!LIST_EMPTY(&a->conns))
		admin_conn_free(LIST_FIRST(&a->conns));
	if (a->resume != NULL)
		event_free(a->resume);
	free(a->ls);
	free(a);
}
