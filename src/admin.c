/* admin.c - the admin listener: a request head (bounded like the WebSocket handshake), one
 * answer, close. Health and readiness mirror the gateway's state; /metrics renders the
 * counters at scrape time; /status is a page that polls /metrics and shows it to a person. */
#include "admin.h"

#include <sys/queue.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "gateway.h"
#include "http.h"
#include "log.h"
#include "metrics.h"

#define ADMIN_TIMEOUT_S 10

/* One request in flight; kept on a list so shutdown frees the ones still open. */
struct admin_conn {
	struct admin *a;
	struct bufferevent *bev;
	LIST_ENTRY(admin_conn) entry;
};

struct admin {
	struct gateway *gw;
	struct evconnlistener **ls;
	size_t nls;
	LIST_HEAD(, admin_conn) conns;
};

/* libevent lets a bufferevent be freed from its own callback (it is reference counted). */
static void
admin_conn_free(struct admin_conn *ac)
{
	LIST_REMOVE(ac, entry);
	bufferevent_free(ac->bev);
	free(ac);
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
		evbuffer_add_printf(body, "%s\n", ready ? "ready" :
		    gateway_state(a->gw) != GW_RUNNING ? "draining" : "broker link down");
		admin_reply(ac, ready ? 200 : 503, "text/plain", body, head);
	} else if (http_str_eq(req->path, "/metrics")) {
		metrics_render(a->gw, body);
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
	struct admin_conn *ac;
	struct timeval tv = { ADMIN_TIMEOUT_S, 0 };

	(void)l;
	(void)sa;
	(void)salen;
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
	bufferevent_setcb(ac->bev, admin_read_cb, NULL, admin_event_cb, ac);
	bufferevent_set_timeouts(ac->bev, &tv, &tv);
	bufferevent_enable(ac->bev, EV_READ | EV_WRITE);
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
	if ((a->ls = calloc(cfg->nadmin_listens, sizeof(*a->ls))) == NULL) {
		free(a);
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
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 128,
		    res->ai_addr, (int)res->ai_addrlen);
		freeaddrinfo(res);
		if (a->ls[i] == NULL) {
			log_warn("admin_listen %s:%s", cl->host, cl->port);
			admin_free(a);
			return NULL;
		}
		a->nls++;
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
	while (!LIST_EMPTY(&a->conns))
		admin_conn_free(LIST_FIRST(&a->conns));
	free(a->ls);
	free(a);
}
