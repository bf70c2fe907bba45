/* conn_handshake.c - the HTTP stage of a connection: read the request head (bounded), answer
 * /healthz, match a route, check the upgrade, pick a subprotocol and send 101 or a precise
 * 4xx. Bytes after the head (frames sent without waiting for the 101) are kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>

#include "admission.h"
#include "conn.h"
#include "conn_deflate.h"
#include "env.h"
#include "http.h"
#include "limit.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "security.h"
#include "target.h"
#include "transport.h"
#include "upstream_req.h"

const char *
conn_pick_protocol(const struct config_route *r, const struct http_request *req)
{
	for (size_t i = 0; i < r->nsubprotocols; i++)
		for (size_t j = 0; j < req->nprotocols; j++)
			if (http_str_eq(req->protocols[j], r->subprotocols[i]))
				return r->subprotocols[i];
	return NULL;
}

/* Plain HTTP endpoints served on the WebSocket listeners. Returns 1 when answered. */
static int
conn_builtin_endpoint(struct conn *c, const struct http_request *req)
{
	char buf[256];
	size_t n;
	int status;
	const char *body;

	if (http_str_eq(req->path, "/healthz")) {
		status = 200;
		body = "ok\n";
	} else if (http_str_eq(req->path, "/readyz")) {
		enum env_readiness ready = c->env->readiness(c->env->arg);
		status = ready == ENV_READY ? 200 : 503;
		body = ready == ENV_READY         ? "ready\n"
		       : ready == ENV_BROKER_DOWN ? "broker link down\n"
		                                  : "draining\n";
	} else {
		return 0;
	}
	if (!http_str_eq(req->method, "GET") && !http_str_eq(req->method, "HEAD")) {
		conn_http_reply(c, 405, "Allow: GET, HEAD\r\n", "method not allowed");
		return 1;
	}
	n = http_format_reply(buf, sizeof(buf), status, NULL, body);
	if (http_str_eq(req->method, "HEAD") && n > strlen(body))
		n -= strlen(body);
	evbuffer_add(transport_output(c->tr), buf, n);
	conn_log(c, LOG_LVL_DEBUG, "HTTP %d %.*s", status, (int)req->path.n, req->path.p);
	conn_set_state(c, CONN_FLUSHING);
	return 1;
}

/* What a TARGET_PENDING handshake needs to send its 101 later. */
struct conn_pending {
	char accept[29];
	size_t header_len;
};

static void
conn_send_101(struct conn *c, const char *accept, size_t header_len, const char *proto,
              const char *extra)
{
	struct evbuffer *out = transport_output(c->tr);
	char buf[512];
	size_t n;

	n = http_format_101(buf, sizeof(buf), accept, proto, proto ? strlen(proto) : 0);
	if (n == 0) {
		conn_http_reply(c, 500, NULL, "101 reply does not fit");
		return;
	}
	/* The head ends in the blank line's CRLF: the extra lines go before it. */
	evbuffer_add(out, buf, n - 2);
	if (extra != NULL)
		evbuffer_add(out, extra, strlen(extra));
	conn_deflate_101(c, out);
	evbuffer_add(out, "\r\n", 2);
	evbuffer_drain(transport_input(c->tr), header_len);
	c->upgraded = 1;
	METRIC_ADD(c->env->stats->upgraded, 1);
	if ((c->rstats = metrics_route(c->env->stats, c->route->path)) != NULL) {
		METRIC_ADD(c->rstats->upgraded, 1);
		METRIC_ADD(c->rstats->open, 1); /* until worker_conn_dead */
	}
	conn_log(c, LOG_LVL_INFO, "upgraded (%s%s%s)", c->target->name,
	         proto ? ", subprotocol " : "", proto ? proto : "");
	conn_set_state(c, CONN_OPEN);
	if (c->state != CONN_OPEN)
		return;
	if (c->target->open != NULL && c->target->open(c) < 0)
		return;
	/* Frames that arrived with the request, or while the target decided. */
	c->paused_target = 0;
	conn_read_update(c);
}

void
conn_upgrade_finish(struct conn *c, const char *protocol, const char *extra)
{
	struct conn_pending *p = c->pending;

	if (c->state != CONN_HANDSHAKE || p == NULL)
		return;
	c->pending = NULL;
	conn_send_101(c, p->accept, p->header_len, protocol, extra);
	free(p);
}

/* Behind a trusted proxy the client is who its X-Forwarded-For says (upstream_req_client_ip):
 * logged, and counted again for the per-IP limits under that address. 0 to go on, or -1
 * when the client's address is over a limit (answered here). */
static int
conn_client_behind_proxy(struct conn *c, const struct http_request *req)
{
	const struct config *cfg = c->cfg;
	char peer[INET6_ADDRSTRLEN], ip[INET6_ADDRSTRLEN];
	struct sockaddr_storage ss;
	struct limit_ticket t;
	enum limit_verdict v;

	if (cfg->ntrusted_proxies == 0 || conn_peer_ip(c, peer, sizeof(peer)) < 0 ||
	    upstream_req_client_ip(req->method.p, req->header_len, peer, cfg->trusted_proxies,
	                           cfg->ntrusted_proxies, ip, sizeof(ip)) < 0 ||
	    strcmp(ip, peer) == 0)
		return 0;
	conn_log(c, LOG_LVL_INFO, "client %s via trusted proxy %s", ip, peer);
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else
		return 0;
	/* The balancer's address was counted at accept: the client's is counted instead. */
	limit_release(c->env->limits, &c->limit);
	v = limit_admit(c->env->limits, cfg, (struct sockaddr *)&ss, conn_now_ms(), &t);
	if (v == LIMIT_DROP) {
		conn_close(c, "over the limits, too many refusals in flight");
		return -1;
	}
	c->limit = t;
	if (v == LIMIT_OK)
		return 0;
	if (v == LIMIT_RATE)
		conn_http_reply(c, 429, "Retry-After: 1\r\n", "accept_rate_per_ip exceeded");
	else
		conn_http_reply(c, 503, NULL,
		                v == LIMIT_PER_IP ? "max_connections_per_ip reached"
		                                  : "max_connections reached");
	return -1;
}

/* The fleet's admission budget (admission.h), before the token is verified and before the
 * target connects a backend or subscribes: a refused session costs the request's parse only
 * (and the TLS handshake on a tls listener, which must finish for the 503 to be read). 0 to go
 * on, or -1 when answered 503 with a jittered Retry-After and Wsgate-Retry. */
static int
conn_admit(struct conn *c, const struct config_route *r)
{
	char hdr[96], hint[24];
	uint64_t retry_ms;

	if (admission_admit(c->env->adm, r->path, &retry_ms) == 0)
		return 0;
	/* Retry-After is whole seconds (rounded up: "not before"); the slot itself, to a tenth,
	 * in the close reason's format for clients that know it: rounded up, the herd's returns
	 * came a second later than the budget's pace on average. */
	(void)admission_format_retry(hint, sizeof(hint), retry_ms);
	snprintf(hdr, sizeof(hdr), "Retry-After: %llu\r\nWsgate-Retry: %s\r\n",
	         (unsigned long long)admission_retry_after_s(retry_ms), hint);
	conn_http_reply(c, 503, hdr, "admission budget exceeded");
	return -1;
}

static void
conn_upgrade(struct conn *c, const struct http_request *req, const struct route_match *m)
{
	const struct target_ops *t = target_for(m->route->type);
	struct security_auth
	    auth; /* the verified token, for {jwt.NAME} in the target's templates */
	struct route_match am;
	const char *hdrs, *why;
	char accept[29];
	int r;

	if (t == NULL) {
		conn_http_reply(c, 500, NULL, "route type not built in");
		return;
	}
	/* The process is shutting down but this worker has not heard yet (its drain waits in its
	 * mailbox behind this turn): an upgrade now would be closed with 1001 a moment later. */
	if (*c->env->draining || c->env->readiness(c->env->arg) == ENV_DRAINING) {
		conn_http_reply(c, 503, "Retry-After: 1\r\n", "shutting down");
		return;
	}
	if (conn_client_behind_proxy(c, req) < 0)
		return;
	if (conn_admit(c, m->route) < 0)
		return;
	/* Origin and token before the target sees anything: 403 / 401 with WWW-Authenticate. */
	r = security_check_handshake(c->env->sec, m->route, req, (int64_t)time(NULL), &auth, &hdrs,
	                             &why);
	if (r != 0) {
		conn_http_reply(c, r, hdrs, why);
		return;
	}
	am = *m;
	security_apply_claims(&auth, &am);
	m = &am;
	http_ws_accept(req->key.p, req->key.n, accept);
	/* From here the target is told when the connection goes, whatever the outcome. */
	c->route = m->route;
	if (conn_deflate_negotiate(c, req) < 0) {
		conn_http_reply(c, 400, NULL, "malformed Sec-WebSocket-Extensions");
		return;
	}
	c->target = t;
	r = t->handshake != NULL ? t->handshake(c, req, m) : TARGET_ACCEPT;
	if (c->state != CONN_HANDSHAKE)
		return; /* the target already answered */
	if (r == TARGET_PENDING) {
		if ((c->pending = calloc(1, sizeof(*c->pending))) == NULL) {
			conn_http_reply(c, 500, NULL, "out of memory");
			return;
		}
		memcpy(c->pending->accept, accept, sizeof(accept));
		c->pending->header_len = req->header_len;
		/* Nothing more is read from the client until the target decides. */
		c->paused_target = 1;
		conn_read_update(c);
		return;
	}
	if (r != TARGET_ACCEPT) {
		conn_http_reply(c, r >= 400 && r <= 599 ? r : 500, NULL, "refused by the route");
		return;
	}
	conn_send_101(c, accept, req->header_len,
	              t->protocol != NULL ? t->protocol(c) : conn_pick_protocol(m->route, req),
	              NULL);
}

void
conn_handshake_read(struct conn *c)
{
	struct evbuffer *in = transport_input(c->tr);
	size_t len = evbuffer_get_length(in), n, from;
	struct http_request req;
	struct route_match m;
	const char *why = NULL;
	const char *p, *end;
	int status;

	/* A target is deciding on the request already taken (TARGET_PENDING): bytes behind it (a
	 * second request pipelined, early frames) wait for the 101 and are never a new handshake,
	 * which would start a second session over the first. */
	if (c->pending != NULL)
		return;
	n = len < HTTP_MAX_HEADER ? len : HTTP_MAX_HEADER;
	if ((p = (const char *)evbuffer_pullup(in, (ssize_t)n)) == NULL)
		return;
	/* A slow sender must not make us rescan the whole head on every byte. */
	from = c->hs_scanned > 3 ? c->hs_scanned - 3 : 0;
	/* Only the head's bytes: frames sent right behind it may hold any byte. */
	end = memmem(p + from, n - from, "\r\n\r\n", 4);
	if (http_bad_line_ending(p, from, end != NULL ? (size_t)(end - p) + 4 : n)) {
		/* Bare LF or CR: 400 now, not a 408 after handshake_timeout. */
		conn_http_reply(c, 400, NULL, "line endings must be CRLF");
		return;
	}
	if (end == NULL && len < HTTP_MAX_HEADER) {
		c->hs_scanned = (uint32_t)n;
		return;
	}
	switch (http_parse_request(p, n, &req)) {
	case HTTP_PARSE_OK:
		break;
	case HTTP_PARSE_NEED_MORE:
		c->hs_scanned = (uint32_t)n;
		return;
	case HTTP_PARSE_TOO_LARGE:
		conn_http_reply(c, 431, NULL, "request head larger than 8 KiB");
		return;
	case HTTP_PARSE_VERSION:
		conn_http_reply(c, 505, NULL, "HTTP version not supported");
		return;
	case HTTP_PARSE_BAD:
	default:
		conn_http_reply(c, 400, NULL, "malformed request");
		return;
	}
	if (conn_builtin_endpoint(c, &req))
		return;
	switch (route_match(c->cfg, req.path.p, req.path.n, req.query.p, req.query.n, &m)) {
	case ROUTE_OK:
		break;
	case ROUTE_BAD_PARAM:
		conn_http_reply(c, 400, NULL, "bad characters in a path parameter");
		return;
	case ROUTE_NOT_FOUND:
	default:
		conn_http_reply(c, 404, NULL, "no route");
		return;
	}
	if ((status = http_check_upgrade(&req, &why)) != 0) {
		if (status == 426)
			conn_http_reply(c, 426,
			                "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n", why);
		else if (status == 405)
			conn_http_reply(c, 405, "Allow: GET\r\n", why);
		else
			conn_http_reply(c, status, NULL, why);
		return;
	}
	conn_upgrade(c, &req, &m);
}
