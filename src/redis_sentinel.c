/* redis_sentinel.c - where the Redis links connect (see redis_sentinel.h).
 *
 * With sentinels, an endpoint owns two links of its own to the sentinels, each moving to the
 * next sentinel in the list on every attempt: "sentinel-q" asks SENTINEL
 * get-master-addr-by-name whenever an attached link lost its node, "sentinel-w" stays
 * subscribed to +switch-master (a subscribed connection cannot ask, hence two). An attached
 * link connects only to the address last answered, checks ROLE says master before its owner's
 * handshake (redis_link.c), and on any failure forgets the address and makes the endpoint ask
 * again. A switch closes the links still on the old master and sends the waiting ones to the
 * new one at once. Everything runs on the endpoint's event loop; one endpoint per loop (the
 * process broker's, each worker's publisher), since links never cross threads. */
#include "redis_sentinel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config_value.h"
#include "log.h"
#include "redis_link.h"
#include "upstream.h"

#define REDIS_SENTINEL_MAX_USERS 4
#define REDIS_SENTINEL_MAX_REPLY (64u << 10)

struct redis_endpoint {
	struct event_base *base;
	SSL_CTX *tls;   /* NULL: plain TCP */
	char *tls_name; /* tls_server_name, or NULL */
	char *password; /* for ROLE's AUTH, or NULL */
	char *host;     /* single Redis mode */
	int port;

	/* Sentinel mode (nsent > 0) */
	char *name;            /* master_name */
	char *s_user, *s_pass; /* sentinel_username, sentinel_password: AUTH on the sentinels */
	char (*hosts)[256];
	int *ports;
	size_t nsent, next;
	char master[256]; /* the master last answered, when known */
	int master_port;
	int known;
	int asking;             /* an ask is owed: sent when sentinel-q is up */
	int in_flight;          /* sent, unanswered */
	struct redis_link q, w; /* ask; watch +switch-master */
	struct redis_link *users[REDIS_SENTINEL_MAX_USERS];
	size_t nusers;
	int freeing;
};

/* ---- pure ---- */

static int
redis_sentinel_is_str(const redisReply *r)
{
	return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* A decimal port 1..65535 in s[0..n). */
static int
redis_sentinel_port(const char *s, size_t n, int *port)
{
	int v = 0;

	if (n == 0 || n > 5)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*port = v;
	return 0;
}

int
redis_sentinel_master_reply(const redisReply *r, char *host, size_t hostsz, int *port,
                            const char **why)
{
	if (r->type == REDIS_REPLY_NIL)
		return 0;
	if (r->type == REDIS_REPLY_ERROR) {
		*why = "the sentinel answered with an error";
		return -1;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    !redis_sentinel_is_str(r->element[0]) || !redis_sentinel_is_str(r->element[1])) {
		*why = "not an [ip, port] array";
		return -1;
	}
	if (r->element[0]->len == 0 || r->element[0]->len >= hostsz ||
	    memchr(r->element[0]->str, '\0', r->element[0]->len) != NULL) {
		*why = "a bad host";
		return -1;
	}
	if (redis_sentinel_port(r->element[1]->str, r->element[1]->len, port) < 0) {
		*why = "a bad port";
		return -1;
	}
	memcpy(host, r->element[0]->str, r->element[0]->len);
	host[r->element[0]->len] = '\0';
	return 1;
}

int
redis_sentinel_switch(const char *msg, size_t n, const char *name, char *host, size_t hostsz,
                      int *port)
{
	const char *f[5];
	size_t fl[5], nf = 0, i = 0;

	/* Five space-separated fields, nothing else. */
	while (i < n && nf < 5) {
		size_t s = i;

		while (i < n && msg[i] != ' ')
			i++;
		if (i == s)
			return -1;
		f[nf] = msg + s;
		fl[nf++] = i - s;
		if (i < n)
			i++;
	}
	if (nf != 5 || i != n || msg[n - 1] == ' ')
		return -1;
	if (fl[3] >= hostsz || redis_sentinel_port(f[4], fl[4], port) < 0)
		return -1;
	if (fl[0] != strlen(name) || memcmp(f[0], name, fl[0]) != 0)
		return 0;
	memcpy(host, f[3], fl[3]);
	host[fl[3]] = '\0';
	return 1;
}

int
redis_sentinel_parse_list(const char *s, char (*hosts)[256], int *ports, size_t max,
                          const char **why)
{
	const char *p = s, *e;
	size_t n = 0;

	while (*p != '\0') {
		size_t len;

		e = strchr(p, ',');
		e = e != NULL ? e : p + strlen(p);
		while (p < e && config_value_is_space((unsigned char)*p))
			p++;
		len = (size_t)(e - p);
		while (len > 0 && config_value_is_space((unsigned char)p[len - 1]))
			len--;
		if (n == max) {
			*why = "too many sentinels";
			return -1;
		}
		if (config_parse_hostport(p, len, hosts[n], 256, &ports[n], why) < 0)
			return -1;
		n++;
		p = *e != '\0' ? e + 1 : e;
	}
	if (n == 0) {
		*why = "no sentinel";
		return -1;
	}
	return (int)n;
}

/* ---- asking and following ---- */

static void redis_sentinel_ask(struct redis_endpoint *ep);

/* The master is host:port: links elsewhere go, waiting links come. */
static void
redis_sentinel_set_master(struct redis_endpoint *ep, const char *host, int port, const char *src)
{
	int moved = !ep->known || strcmp(ep->master, host) != 0 || ep->master_port != port;
	char reason[320];

	if (moved)
		log_info("redis sentinel: master %s is %s:%d (%s)", ep->name, host, port, src);
	snprintf(ep->master, sizeof(ep->master), "%s", host);
	ep->master_port = port;
	ep->known = 1;
	snprintf(reason, sizeof(reason), "sentinel: master %s moved to %s:%d", ep->name, host,
	         port);
	for (size_t i = 0; i < ep->nusers; i++) {
		struct redis_link *l = ep->users[i];

		if (l->state != REDIS_LINK_DOWN &&
		    (strcmp(l->host, host) != 0 || l->port != port)) {
			redis_link_close(l, reason); /* forgets: known again below */
			ep->known = 1;
		}
		/* A new address is tried at once; the one that just failed after its backoff. */
		redis_link_kick(l, strcmp(l->host, host) != 0 || l->port != port);
	}
}

static void
redis_sentinel_on_master(struct redis_link *l, const redisReply *r, void *arg)
{
	struct redis_endpoint *ep = arg;
	char host[256], reason[320];
	const char *why = "";
	int port, rc;

	if (ep->freeing)
		return;
	ep->in_flight = 0;
	rc = redis_sentinel_master_reply(r, host, sizeof(host), &port, &why);
	if (rc == 1) {
		char src[300];

		snprintf(src, sizeof(src), "asked %s:%d", l->host, l->port);
		redis_sentinel_set_master(ep, host, port, src);
		return;
	}
	/* Another sentinel may know better: the next attempt goes to the next one. */
	ep->asking = 1;
	if (rc == 0) {
		snprintf(reason, sizeof(reason), "sentinel does not know master %s", ep->name);
		redis_link_close(l, reason);
	} else if (r->type == REDIS_REPLY_ERROR) {
		snprintf(reason, sizeof(reason), "sentinel refused: %.*s", (int)r->len, r->str);
		redis_link_close(l, reason);
	} else {
		snprintf(reason, sizeof(reason), "get-master-addr-by-name: %s", why);
		redis_link_fail(l, reason);
	}
}

static void
redis_sentinel_ask(struct redis_endpoint *ep)
{
	const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", ep->name};
	size_t lens[3] = {8, 23, strlen(ep->name)};

	ep->asking = 1;
	if (ep->in_flight || ep->q.state != REDIS_LINK_UP)
		return; /* sent when sentinel-q is up, or answered soon */
	if (redis_link_command(&ep->q, 3, argv, lens, redis_sentinel_on_master, ep) != 0) {
		redis_link_close(&ep->q, "SENTINEL could not be queued");
		return;
	}
	ep->asking = 0;
	ep->in_flight = 1;
}

/* ---- the two sentinel links' hooks ---- */

static void
redis_sentinel_q_up(struct redis_link *l)
{
	struct redis_endpoint *ep = l->owner;

	if (redis_link_up(l) < 0)
		return;
	if (ep->asking)
		redis_sentinel_ask(ep);
}

/* The sentinel's answer to AUTH: +OK, or the link starts over on the next sentinel. sentinel-q
 * goes up with it; sentinel-w's SUBSCRIBE was pipelined behind it. */
static void
redis_sentinel_on_auth(struct redis_link *l, const redisReply *r, void *arg)
{
	struct redis_endpoint *ep = l->owner;
	char reason[256];

	(void)arg;
	if (ep->freeing || l->state != REDIS_LINK_HANDSHAKE)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(reason, sizeof(reason), "sentinel AUTH refused: %.*s",
		         (int)(r->len < 200 ? r->len : 200), r->str);
		redis_link_close(l, reason);
	} else if (r->type != REDIS_REPLY_STATUS) {
		redis_link_fail(l, "sentinel AUTH answered with neither a status nor an error");
	} else if (l == &ep->q) {
		redis_sentinel_q_up(l);
	}
}

/* AUTH [username] password when the sentinels ask for one (requirepass in sentinel.conf). */
static int
redis_sentinel_auth(struct redis_endpoint *ep, struct redis_link *l)
{
	const char *argv[3] = {"AUTH"};
	size_t lens[3] = {4};
	int n = 1;

	if (ep->s_user != NULL)
		argv[n] = ep->s_user, lens[n++] = strlen(ep->s_user);
	argv[n] = ep->s_pass, lens[n++] = strlen(ep->s_pass);
	return redis_link_command(l, n, argv, lens, redis_sentinel_on_auth, NULL);
}

static void
redis_sentinel_q_connected(struct redis_link *l)
{
	struct redis_endpoint *ep = l->owner;

	if (ep->freeing)
		return;
	if (ep->s_pass == NULL)
		redis_sentinel_q_up(l);
	else if (redis_sentinel_auth(ep, l) != 0)
		redis_link_close(l, "AUTH could not be queued");
}

static void
redis_sentinel_w_connected(struct redis_link *l)
{
	struct redis_endpoint *ep = l->owner;
	const char *argv[2] = {"SUBSCRIBE", "+switch-master"};
	size_t lens[2] = {9, 14};

	if (ep->freeing)
		return;
	if ((ep->s_pass != NULL && redis_sentinel_auth(ep, l) != 0) ||
	    redis_link_command(l, 2, argv, lens, NULL, NULL) != 0)
		redis_link_close(l, "SUBSCRIBE could not be queued");
}

/* sentinel-w: the subscription's confirmation, then +switch-master messages. */
static int
redis_sentinel_w_push(struct redis_link *l, const redisReply *r, char *why, size_t n)
{
	struct redis_endpoint *ep = l->owner;
	const redisReply *k;
	char host[256];
	int port;

	if (ep->freeing)
		return 0;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    !redis_sentinel_is_str(k = r->element[0])) {
		snprintf(why, n, "sentinel push that is not a 3-item array");
		return -1;
	}
	if (k->len == 9 && memcmp(k->str, "subscribe", 9) == 0) {
		if (l->state == REDIS_LINK_HANDSHAKE && redis_link_up(l) == 0) {
			/* A switch may have happened while we were not listening. */
			log_info("redis sentinel: following +switch-master on %s:%d", l->host,
			         l->port);
			redis_sentinel_ask(ep);
		}
		return 0;
	}
	if (k->len != 7 || memcmp(k->str, "message", 7) != 0 ||
	    !redis_sentinel_is_str(r->element[2])) {
		snprintf(why, n, "unexpected push on the +switch-master subscription");
		return -1;
	}
	switch (redis_sentinel_switch(r->element[2]->str, r->element[2]->len, ep->name, host,
	                              sizeof(host), &port)) {
	case 1:
		redis_sentinel_set_master(ep, host, port, "+switch-master");
		return 0;
	case 0:
		return 0; /* another master's */
	default:
		snprintf(why, n, "malformed +switch-master message");
		return -1;
	}
}

static void
redis_sentinel_down(struct redis_link *l, enum redis_link_state was, char *extra, size_t n)
{
	struct redis_endpoint *ep = l->owner;

	(void)was, (void)extra, (void)n;
	if (l == &ep->q && ep->in_flight) {
		ep->in_flight = 0;
		ep->asking = 1; /* unanswered: ask the next one */
	}
}

static void
redis_sentinel_oversized(struct redis_link *l, uint64_t len)
{
	(void)len;
	redis_link_close(l, "a sentinel reply larger than 64 KiB");
}

static const struct redis_link_ops redis_sentinel_q_ops = {
    .connected = redis_sentinel_q_connected,
    .push = NULL,
    .down = redis_sentinel_down,
    .oversized = redis_sentinel_oversized,
};

static const struct redis_link_ops redis_sentinel_w_ops = {
    .connected = redis_sentinel_w_connected,
    .push = redis_sentinel_w_push,
    .down = redis_sentinel_down,
    .oversized = redis_sentinel_oversized,
};

/* ---- locators ---- */

/* sentinel-q and sentinel-w: each attempt goes to the next sentinel in the list. */
static int
redis_sentinel_locate_sentinel(void *arg, struct redis_link *l, const char **host, int *port)
{
	struct redis_endpoint *ep = arg;
	size_t i = ep->next++ % ep->nsent;

	(void)l;
	*host = ep->hosts[i];
	*port = ep->ports[i];
	return 0;
}

static const struct redis_link_locator redis_sentinel_rotate = {
    .locate = redis_sentinel_locate_sentinel,
    .lost = NULL,
};

/* An attached link: the master last answered, or wait for an answer. */
static int
redis_sentinel_locate_master(void *arg, struct redis_link *l, const char **host, int *port)
{
	struct redis_endpoint *ep = arg;

	(void)l;
	if (!ep->known) {
		redis_sentinel_ask(ep);
		return -1;
	}
	*host = ep->master;
	*port = ep->master_port;
	return 0;
}

/* Any failure of a link to the master: the address is forgotten and asked again. */
static void
redis_sentinel_lost(void *arg, struct redis_link *l, const char *why)
{
	struct redis_endpoint *ep = arg;

	(void)l, (void)why;
	if (ep->freeing)
		return;
	ep->known = 0;
	redis_sentinel_ask(ep);
}

static const struct redis_link_locator redis_sentinel_master = {
    .locate = redis_sentinel_locate_master,
    .lost = redis_sentinel_lost,
};

/* Single Redis: the configured address every time. */
static int
redis_sentinel_locate_single(void *arg, struct redis_link *l, const char **host, int *port)
{
	struct redis_endpoint *ep = arg;

	(void)l;
	*host = ep->host;
	*port = ep->port;
	return 0;
}

static const struct redis_link_locator redis_sentinel_single = {
    .locate = redis_sentinel_locate_single,
    .lost = NULL,
};

/* ---- the endpoint ---- */

static SSL_CTX *
redis_endpoint_tls(const struct config_redis *rc, char *err, size_t errsz)
{
	SSL_CTX *ctx = upstream_tls_ctx_new(rc->ca_file, err, errsz);
	unsigned long e;

	if (ctx == NULL || rc->cert == NULL)
		return ctx;
	/* Redis' default tls-auth-clients asks every client for a certificate. */
	if (SSL_CTX_use_certificate_chain_file(ctx, rc->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, rc->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		e = ERR_peek_last_error();
		snprintf(err, errsz, "[redis] cert %s / key %s: %s", rc->cert, rc->key,
		         e ? ERR_reason_error_string(e) : "unknown error");
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static void
redis_endpoint_link_tls(struct redis_endpoint *ep, struct redis_link *l)
{
	l->tls = ep->tls;
	l->tls_name = ep->tls_name;
}

struct redis_endpoint *
redis_endpoint_new(struct event_base *base, struct evdns_base **dnsp, const struct config_redis *rc,
                   char *err, size_t errsz)
{
	struct redis_endpoint *ep = calloc(1, sizeof(*ep));
	const char *why = NULL;
	int n;

	if (ep == NULL) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	ep->base = base;
	ep->port = atoi(rc->port);
	if ((ep->host = strdup(rc->host)) == NULL ||
	    (rc->password != NULL && (ep->password = strdup(rc->password)) == NULL) ||
	    (rc->tls_server_name != NULL && (ep->tls_name = strdup(rc->tls_server_name)) == NULL))
		goto oom;
	if (rc->tls && (ep->tls = redis_endpoint_tls(rc, err, errsz)) == NULL)
		goto fail;
	if (rc->sentinels == NULL)
		return ep;
	if ((ep->name = strdup(rc->master_name != NULL ? rc->master_name : "")) == NULL ||
	    (rc->sentinel_password != NULL &&
	     (ep->s_pass = strdup(rc->sentinel_password)) == NULL) ||
	    (rc->sentinel_username != NULL &&
	     (ep->s_user = strdup(rc->sentinel_username)) == NULL) ||
	    (ep->hosts = calloc(REDIS_MAX_SENTINELS, sizeof(*ep->hosts))) == NULL ||
	    (ep->ports = calloc(REDIS_MAX_SENTINELS, sizeof(*ep->ports))) == NULL)
		goto oom;
	if ((n = redis_sentinel_parse_list(rc->sentinels, ep->hosts, ep->ports, REDIS_MAX_SENTINELS,
	                                   &why)) < 0) {
		snprintf(err, errsz, "[redis] sentinels: %s", why);
		goto fail;
	}
	ep->nsent = (size_t)n;
	if (redis_link_init(&ep->q, "sentinel-q", 0, &redis_sentinel_q_ops, ep, base, dnsp, "", 0,
	                    rc->connect_timeout_ms, rc->reconnect_max_ms,
	                    REDIS_SENTINEL_MAX_REPLY) < 0 ||
	    redis_link_init(&ep->w, "sentinel-w", 0, &redis_sentinel_w_ops, ep, base, dnsp, "", 0,
	                    rc->connect_timeout_ms, rc->reconnect_max_ms,
	                    REDIS_SENTINEL_MAX_REPLY) < 0)
		goto oom;
	/* sentinel-w goes UP on its subscription's confirmation, never through SYNCING. */
	redis_link_locate(&ep->q, &redis_sentinel_rotate, ep);
	redis_link_locate(&ep->w, &redis_sentinel_rotate, ep);
	redis_endpoint_link_tls(ep, &ep->q);
	redis_endpoint_link_tls(ep, &ep->w);
	/* The two start on different sentinels: one down costs one of them, not both. */
	ep->asking = 1;
	redis_link_connect(&ep->q);
	redis_link_connect(&ep->w);
	return ep;
oom:
	snprintf(err, errsz, "out of memory");
fail:
	redis_endpoint_free(ep);
	return NULL;
}

void
redis_endpoint_attach(struct redis_endpoint *ep, struct redis_link *l)
{
	redis_endpoint_link_tls(ep, l);
	if (ep->nsent == 0) {
		redis_link_locate(l, &redis_sentinel_single, ep);
		return;
	}
	if (ep->nusers == REDIS_SENTINEL_MAX_USERS) {
		redis_link_internal_error(l, "too many links on one endpoint");
		return;
	}
	ep->users[ep->nusers++] = l;
	l->verify_role = 1;
	l->password = ep->password;
	redis_link_locate(l, &redis_sentinel_master, ep);
}

void
redis_endpoint_free(struct redis_endpoint *ep)
{
	if (ep == NULL)
		return;
	ep->freeing = 1;
	if (ep->nsent > 0) {
		redis_link_free(&ep->q);
		redis_link_free(&ep->w);
	}
	if (ep->tls != NULL)
		SSL_CTX_free(ep->tls);
	free(ep->host);
	free(ep->password);
	free(ep->tls_name);
	free(ep->name);
	free(ep->s_user);
	free(ep->s_pass);
	free(ep->hosts);
	free(ep->ports);
	free(ep);
}

int
redis_endpoint_check_tls(const struct config_redis *rc, char *err, size_t errsz)
{
	SSL_CTX *ctx;

	if (!rc->enabled || !rc->tls)
		return 0;
	if ((ctx = redis_endpoint_tls(rc, err, errsz)) == NULL)
		return -1;
	SSL_CTX_free(ctx);
	return 0;
}

const char *
redis_endpoint_describe(const struct redis_endpoint *ep, char *buf, size_t n)
{
	if (ep->nsent > 0)
		snprintf(buf, n, "master '%s' of %zu sentinel(s)%s", ep->name, ep->nsent,
		         ep->tls != NULL ? ", TLS" : "");
	else
		snprintf(buf, n, "%s:%d%s", ep->host, ep->port, ep->tls != NULL ? " (TLS)" : "");
	return buf;
}
