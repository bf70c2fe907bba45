/* target_proxy.c - the proxy route. At the handshake a backend is picked and upgraded (trying
 * up to `retries` more when one fails) and the client gets its 101 only once a backend has
 * accepted, or a 502/503. Then the two halves relay frame by frame with watermarks both ways,
 * each hop runs its own heartbeat, and close codes pass through. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "env.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "target.h"
#include "transport.h"
#include "upstream.h"
#include "upstream_req.h"
#include "ws_frame.h"
#include "ws_parser.h"

/* A session's client-facing side; c->tdata. The backend half (up) lives in the worker's
 * registry and may outlive this to finish its close handshake. Freed in proxy_close: the core
 * never closes a connection from inside the calls this file makes (conn_send_*,
 * conn_upgrade_finish, conn_http_reply, conn_pause/resume_read), so no function here is on the
 * stack when that happens. */
struct proxy_session {
	struct conn *c;
	struct upstream_pool *pool;
	struct upstream_backend *backend; /* of the current attempt, then of the open session */
	struct upstream_conn *up;         /* NULL between attempts and once the backend is gone */
	struct upstream_req req;          /* what must outlive the handshake hook */
	char ip[INET6_ADDRSTRLEN];        /* the client's address, "" when unknown */
	char peer_ip[INET6_ADDRSTRLEN];   /* the hop we saw (a trusted proxy speaks for ip) */
	unsigned attempts;                /* backends tried */
	unsigned client_paused : 1;       /* not reading the client: the backend's queue is full */
	unsigned client_closed : 1;       /* the client's close went to the backend; we answer it
	                                     once the backend has answered */
	unsigned close_code;   /* client_closed: its code, used if the backend has none */
	int pass_status;       /* the last backend answer's status, 0 when none */
	char *pass;            /* its header lines the client gets (http_response_passthrough) */
	unsigned char tried[]; /* per backend index */
};

static const struct upstream_conn_ops proxy_up_ops;

static struct upstream_registry *
proxy_registry(struct env *env)
{
	if (*env->upstreams == NULL &&
	    (*env->upstreams = upstream_registry_new(env->base, env->cfg)) != NULL)
		(*env->upstreams)->internal_errors = &env->stats->internal_errors;
	return *env->upstreams;
}

/* Starts attempts until one is under way (TARGET_PENDING) or none is left: then the status
 * to answer, 503 when every backend is marked down and none could be tried, else 502. */
static int
proxy_attempt(struct proxy_session *s)
{
	const struct config_route *r = s->c->route;
	struct upstream_backend *b;
	const char *why = NULL;
	int all_down = 0;

	while (s->attempts <= r->retries) {
		b = upstream_pool_pick(s->pool, s->ip[0] ? s->ip : NULL, s->tried, &all_down);
		if (b == NULL)
			break;
		s->tried[b->index] = 1;
		s->attempts++;
		s->backend = b;
		conn_log(s->c, LOG_LVL_DEBUG, "proxy: trying backend %s (attempt %u)", b->cfg->url,
		         s->attempts);
		/* What an earlier backend answered is not this one's to pass on. */
		free(s->pass);
		s->pass = NULL;
		s->pass_status = 0;
		s->up = upstream_conn_new(b, s->c->id, &s->req, &proxy_up_ops, s, &why);
		if (s->up != NULL)
			return TARGET_PENDING;
		upstream_backend_failed(b, why);
	}
	return s->attempts == 0 && all_down ? 503 : 502;
}

/* An HTTP answer instead of the 101. The core stopped reading the client while we decided
 * (TARGET_PENDING); FLUSHING must read again to see the client's EOF. */
static void
proxy_reply(struct proxy_session *s, int status, const char *why)
{
	/* The backend's own WWW-Authenticate / Retry-After go with its own status only, and
	 * only when they fit the reply conn_http_reply builds (1 KiB): better none than no reply.
	 */
	int pass = status == s->pass_status && s->pass != NULL && strlen(s->pass) <= 640;

	if (status == s->pass_status && s->pass != NULL && !pass)
		conn_log(s->c, LOG_LVL_INFO, "proxy: backend header lines too long to pass on");
	conn_http_reply(s->c, status, pass ? s->pass : NULL, why);
	conn_resume_read(s->c);
}

static void
proxy_refuse(struct proxy_session *s, int status)
{
	/* The last backend tried said 503 (with its Retry-After): the client hears the same. */
	if (status == 502 && s->pass_status == 503) {
		proxy_reply(s, 503, "the backend is unavailable");
		return;
	}
	proxy_reply(s, status,
	            status == 503 ? "every backend is marked down"
	                          : "no backend accepted the upgrade");
}

/* ---- backend events ---- */

static void
proxy_up_ready(void *arg, const char *protocol)
{
	struct proxy_session *s = arg;
	const struct config_route *r = s->c->route;

	upstream_backend_ok(s->backend);
	if (s->c->state != CONN_HANDSHAKE) {
		/* The client was answered meanwhile (the handshake timer cancels the attempt, so
		 * this is a second line of defence): the backend session is not wanted. */
		upstream_conn_detach(s->up);
		upstream_conn_send_close(s->up, WS_CLOSE_GOING_AWAY, "client gone", 11);
		s->up = NULL;
		return;
	}
	/* tcp backends choose nothing: the route's subprotocols apply as on any route. */
	if (s->backend->cfg->scheme == BACKEND_TCP && protocol == NULL)
		for (size_t i = 0; i < r->nsubprotocols && protocol == NULL; i++)
			for (size_t j = 0; j < s->req.nprotocols; j++)
				if (http_str_eq(s->req.protocols[j], r->subprotocols[i])) {
					protocol = r->subprotocols[i];
					break;
				}
	/* A client's frames are masked, as frames towards a server must be: they go on to a
	 * ws/wss backend as they came, header and payload, with no unmasking and remasking
	 * (proxy_chunk). Every check stays: the parser still reads each header (opcodes,
	 * fragmentation order, max_message_size, which it judges on the announced length before
	 * any payload), unmasks and checks control frames (close codes, their UTF-8 reason),
	 * and checks text messages' UTF-8 on a read-only unmasked copy, so the backend never
	 * gets what the client may not send. Not for a tcp backend (it gets the bytes
	 * unmasked), nor with permessage-deflate towards the client (messages are inflated). */
	if (s->backend->cfg->scheme != BACKEND_TCP && !s->c->pmd_on)
		ws_parser_pass_masked(&s->c->parser, 1);
	conn_log(s->c, LOG_LVL_DEBUG, "proxy: backend %s accepted", s->backend->cfg->url);
	conn_upgrade_finish(s->c, protocol, s->pass_status == 101 ? s->pass : NULL);
}

static void
proxy_up_headers(void *arg, int status, const char *lines)
{
	struct proxy_session *s = arg;

	free(s->pass);
	s->pass = lines[0] != '\0' ? strdup(lines) : NULL; /* ENOMEM: the lines are lost, no more */
	s->pass_status = status;
}

static void
proxy_up_failed(void *arg, int status, const char *why)
{
	struct proxy_session *s = arg;
	int st;

	s->up = NULL;
	if (s->c->state != CONN_HANDSHAKE)
		return; /* the client was answered meanwhile: no second answer, no new attempt */
	if ((status >= 400 && status <= 499) ||
	    (status >= 500 && status <= 599 && !s->c->route->fail_on_5xx)) {
		/* The application refused this client (auth, origin, path), or failed on this
		 * one request: the backend answered, so it is up, and one client's request must
		 * not take it from the others (fail_on_5xx = yes counts a 5xx and tries another).
		 * The client learns the status. */
		conn_log(s->c, LOG_LVL_INFO, "proxy: backend %s %s", s->backend->cfg->url, why);
		proxy_reply(s, status, "refused by the backend");
		return;
	}
	upstream_backend_failed(s->backend, why);
	if ((st = proxy_attempt(s)) != TARGET_PENDING)
		proxy_refuse(s, st);
}

/* A chunk of a backend message goes to the client as one frame. */
static int
proxy_up_data(void *arg, unsigned opcode, int first, int last, const uint8_t *p, size_t n)
{
	struct proxy_session *s = arg;
	struct conn *c = s->c;

	if (conn_send_frame(c, last, first ? opcode : WS_OP_CONT, p, n) < 0)
		return 0; /* the client is closing: nothing more goes to it */
	if (conn_output_len(c) > CONN_OUT_HIGH) {
		/* The client reads slower than the backend writes: stop reading the backend. */
		conn_want_drained(c);
		return 1;
	}
	return 0;
}

static void
proxy_up_gone(void *arg, unsigned code, const char *reason, size_t rlen)
{
	struct proxy_session *s = arg;
	struct conn *c = s->c;
	char text[WS_CONTROL_MAX + 1];

	s->up = NULL;
	if (s->client_closed) {
		/* The backend answered the client's close (or never will): now the client. */
		if (code == WS_CLOSE_ABNORMAL) {
			conn_send_close(c, s->close_code, "");
			return;
		}
		if (rlen > WS_CONTROL_MAX - 2)
			rlen = WS_CONTROL_MAX - 2;
		memcpy(text, reason, rlen);
		text[rlen] = '\0';
		conn_send_close(c, code, text);
		return;
	}
	if (code == WS_CLOSE_ABNORMAL) {
		/* Vanished or broke the protocol: 1006 is never sent on the wire. */
		conn_log(c, LOG_LVL_INFO, "proxy: backend %s gone: %.*s", s->backend->cfg->url,
		         (int)rlen, reason);
		if (*c->env->draining)
			conn_send_close_retry(c, WS_CLOSE_RESTART);
		else
			conn_send_close(c, WS_CLOSE_INTERNAL, "backend gone");
	} else {
		if (rlen > WS_CONTROL_MAX - 2)
			rlen = WS_CONTROL_MAX - 2;
		memcpy(text, reason, rlen);
		text[rlen] = '\0';
		conn_send_close(c, code, text);
	}
	/* The client's answer to our close must be read even if its reads were paused. */
	if (s->client_paused) {
		s->client_paused = 0;
		conn_resume_read(c);
	}
}

static void
proxy_up_drained(void *arg)
{
	struct proxy_session *s = arg;

	if (s->client_paused) {
		s->client_paused = 0;
		conn_resume_read(s->c);
	}
}

static const struct upstream_conn_ops proxy_up_ops = {
    .ready = proxy_up_ready,
    .failed = proxy_up_failed,
    .data = proxy_up_data,
    .gone = proxy_up_gone,
    .drained = proxy_up_drained,
    .headers = proxy_up_headers,
};

/* ---- client events ---- */

static int
proxy_handshake(struct conn *c, const struct http_request *req, const struct route_match *m)
{
	const struct config_route *r = m->route;
	struct upstream_req_client cl = {0};
	struct upstream_registry *reg;
	struct proxy_session *s;
	int st;

	if (r->nbackends == 0) {
		conn_http_reply(c, 500, NULL, "proxy route without backends");
		return 500;
	}
	if ((reg = proxy_registry(c->env)) == NULL ||
	    (s = calloc(1, sizeof(*s) + r->nbackends)) == NULL) {
		conn_http_reply(c, 500, NULL, "out of memory");
		return 500;
	}
	s->c = c;
	/* The hop we saw, then the client it speaks for when it is a trusted proxy. */
	if (conn_peer_ip(c, s->peer_ip, sizeof(s->peer_ip)) < 0)
		s->peer_ip[0] = '\0';
	if (s->peer_ip[0] == '\0' ||
	    upstream_req_client_ip(req->method.p, req->header_len, s->peer_ip,
	                           c->cfg->trusted_proxies, c->cfg->ntrusted_proxies, s->ip,
	                           sizeof(s->ip)) < 0)
		snprintf(s->ip, sizeof(s->ip), "%s", s->peer_ip);
	cl.ip = s->ip[0] ? s->ip : NULL;
	cl.peer_ip = s->peer_ip[0] ? s->peer_ip : NULL;
	cl.peer_trusted =
	    s->peer_ip[0] && cidr_match_text(c->cfg->trusted_proxies, c->cfg->ntrusted_proxies,
	                                     s->peer_ip, strlen(s->peer_ip));
	cl.tls = transport_is_tls(c->tr);
	cl.forward = r->forward_headers;
	/* The request lives only during this call: what the backend needs is copied. */
	if ((s->pool = upstream_pool_get(reg, r, c->cfg)) == NULL ||
	    upstream_req_copy(req, &cl, &s->req) < 0) {
		free(s);
		conn_http_reply(c, 500, NULL, "out of memory");
		return 500;
	}
	c->tdata = s;
	if ((st = proxy_attempt(s)) != TARGET_PENDING)
		proxy_refuse(s, st);
	return st;
}

/* Client data, as it comes: each chunk one frame to the backend, the message's opcode first
 * and WS_OP_CONT after, FIN on its last chunk. */
static void
proxy_chunk(struct conn *c, const struct ws_event *ev)
{
	struct proxy_session *s = c->tdata;
	unsigned op;
	int r;

	if (s == NULL || s->up == NULL || s->client_closed)
		return;
	if (s->backend->cfg->scheme == BACKEND_TCP && ev->opcode == WS_OP_TEXT) {
		/* A TCP stream carries bytes: text has no meaning there (as in websockify). */
		conn_send_close(c, WS_CLOSE_UNSUPPORTED,
		                "text messages not supported by this backend");
		upstream_conn_detach(s->up);
		upstream_conn_send_close(s->up, WS_CLOSE_NORMAL, NULL, 0);
		s->up = NULL;
		return;
	}
	op = ev->first ? ev->opcode : WS_OP_CONT;
	r = ev->masked ? upstream_conn_send_masked(s->up, op, ev->last, ev->data, ev->len, ev->mask)
	               : upstream_conn_send(s->up, op, ev->last, ev->data, ev->len);
	if (r < 0)
		return;
	if (!s->client_paused && upstream_conn_output_len(s->up) > UPSTREAM_OUT_HIGH) {
		/* The backend reads slower than the client writes: stop reading the client. */
		s->client_paused = 1;
		conn_pause_read(c);
		upstream_conn_want_drained(s->up);
	}
}

/* The client drained what the backend sent: read the backend again. */
static void
proxy_drained(struct conn *c)
{
	struct proxy_session *s = c->tdata;

	if (s != NULL && s->up != NULL)
		upstream_conn_resume_read(s->up);
}

/* The client's close goes to the backend with the same code and reason; the client is
 * answered once the backend has answered (proxy_up_gone), so whatever the backend sent
 * before its close still reaches the client, as through a plain TCP relay. */
static int
proxy_peer_close(struct conn *c, unsigned code, const uint8_t *reason, size_t len)
{
	struct proxy_session *s = c->tdata;

	if (s == NULL || s->up == NULL)
		return 0;
	if (s->backend->cfg->scheme == BACKEND_TCP) {
		upstream_conn_detach(s->up);
		upstream_conn_send_close(s->up, code, (const char *)reason, len);
		s->up = NULL;
		return 0;
	}
	s->client_closed = 1;
	s->close_code = code;
	upstream_conn_send_close(s->up, code, (const char *)reason, len);
	return 1;
}

static void
proxy_close(struct conn *c)
{
	struct proxy_session *s = c->tdata;

	if (s == NULL)
		return;
	if (s->up != NULL) {
		/* Before the 101 this drops the attempt; after, the backend hears we left. */
		upstream_conn_detach(s->up);
		upstream_conn_send_close(s->up, WS_CLOSE_GOING_AWAY, "client gone", 11);
	}
	upstream_req_free(&s->req);
	free(s->pass);
	free(s);
	c->tdata = NULL;
}

const struct target_ops target_proxy_ops = {
    .name = "proxy",
    .handshake = proxy_handshake,
    .chunk = proxy_chunk,
    .drained = proxy_drained,
    .peer_close = proxy_peer_close,
    .close = proxy_close,
};
