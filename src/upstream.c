/* upstream.c - a worker's backend registry: one pool per proxy route, made on first use; the
 * balancer (round_robin, least_conn, ip_hash); passive health (a failure marks a backend down
 * for fail_timeout) and active probes every health_check; the deferred free of connections. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/rand.h>

#include "clock.h"
#include "config.h"
#include "hash.h"
#include "log.h"
#include "upstream.h"
#include "ws_frame.h"

/* Used when the route leaves connect_timeout at 0: a backend must not hold a client forever. */
#define UPSTREAM_DEFAULT_CONNECT_MS 3000

static void upstream_probe_start(struct upstream_backend *b);

/* ---- registry ---- */

static void upstream_pool_free(struct upstream_pool *p);

/* 1 when a reload has replaced the snapshot the pool's route belongs to. */
static int
upstream_pool_stale(const struct upstream_pool *p)
{
	return p->reg->current != NULL && p->cfg != *p->reg->current;
}

/* Frees dead connections, then the pools a reload left behind once nothing uses them. Runs
 * as its own event, so nothing freed here is on the stack. */
static void
upstream_registry_reap(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_registry *reg = arg;
	struct upstream_conn *u;
	struct upstream_pool *p, *next;

	(void)fd;
	(void)what;
	while ((u = LIST_FIRST(&reg->dead)) != NULL) {
		LIST_REMOVE(u, entry);
		upstream_conn_free(u);
	}
	for (p = LIST_FIRST(&reg->pools); p != NULL; p = next) {
		next = LIST_NEXT(p, entry);
		if (upstream_pool_stale(p) && p->nconns == 0) {
			log_debug("route %s: backend pool of a replaced configuration retired",
			          p->route->path);
			LIST_REMOVE(p, entry);
			upstream_pool_free(p);
		}
	}
}

struct upstream_registry *
upstream_registry_new(struct event_base *base, const struct config *const *current)
{
	struct upstream_registry *reg;

	if ((reg = calloc(1, sizeof(*reg))) == NULL)
		return NULL;
	reg->base = base;
	reg->current = current;
	LIST_INIT(&reg->pools);
	LIST_INIT(&reg->live);
	LIST_INIT(&reg->dead);
	reg->mask_off = sizeof(reg->masks); /* empty: filled on first use */
	if ((reg->reaper = event_new(base, -1, 0, upstream_registry_reap, reg)) == NULL) {
		free(reg);
		return NULL;
	}
	return reg;
}

static void
upstream_pool_free(struct upstream_pool *p)
{
	for (size_t i = 0; i < p->nbackends; i++)
		evtimer_del(&p->backends[i].probe_timer);
	free(p->backends);
	if (p->tls != NULL)
		upstream_tls_ctx_free(p->tls);
	free(p->tls_error);
	/* The route and its backends live in the snapshot: let it go last. */
	if (p->reg->current != NULL)
		config_release(p->cfg);
	free(p);
}

void
upstream_registry_free(struct upstream_registry *reg)
{
	struct upstream_conn *u;
	struct upstream_pool *p;

	if (reg == NULL)
		return;
	/* Connections first: they point at their backends, which the pools own. */
	while ((u = LIST_FIRST(&reg->live)) != NULL) {
		upstream_conn_detach(u);
		upstream_conn_close(u, "gateway stopped");
	}
	upstream_registry_reap(-1, 0, reg);
	while ((p = LIST_FIRST(&reg->pools)) != NULL) {
		LIST_REMOVE(p, entry);
		upstream_pool_free(p);
	}
	if (reg->dns != NULL)
		evdns_base_free(reg->dns, 1);
	event_free(reg->reaper);
	free(reg);
}

struct evdns_base *
upstream_registry_dns(struct upstream_registry *reg)
{
	if (reg->dns == NULL) {
		/* resolv.conf and /etc/hosts; no resolver traffic while nothing is asked. */
		reg->dns = evdns_base_new(reg->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
		                                         EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (reg->dns == NULL)
			log_warnx("cannot start the DNS resolver for backends");
		else /* see redis_link.c: case-randomized queries fail on container resolvers */
			(void)evdns_base_set_option(reg->dns, "randomize-case:", "0");
	}
	return reg->dns;
}

void
upstream_registry_mask(struct upstream_registry *reg, uint8_t key[4])
{
	if (reg->mask_off + 4 > sizeof(reg->masks)) {
		if (RAND_bytes(reg->masks, sizeof(reg->masks)) != 1)
			fatalx("RAND_bytes failed: no unpredictable masking keys");
		reg->mask_off = 0;
	}
	memcpy(key, reg->masks + reg->mask_off, 4);
	reg->mask_off += 4;
}

/* ---- pools ---- */

static void
upstream_probe_timer(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_backend *b = arg;

	(void)fd;
	(void)what;
	if (upstream_pool_stale(b->pool)) {
		/* A reload made a new pool for this route: this one only waits to be retired. */
		evtimer_del(&b->probe_timer);
		event_active(b->pool->reg->reaper, 0, 0);
		return;
	}
	upstream_probe_start(b);
}

struct upstream_pool *
upstream_pool_get(struct upstream_registry *reg, const struct config_route *route,
                  const struct config *cfg)
{
	struct upstream_pool *p;
	struct timeval tv;

	for (p = LIST_FIRST(&reg->pools); p != NULL; p = LIST_NEXT(p, entry)) {
		if (p->route == route)
			return p;
		if (upstream_pool_stale(p) && p->nconns == 0)
			event_active(reg->reaper, 0, 0); /* retire it on the next turn */
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	if (route->nbackends > 0 &&
	    (p->backends = calloc(route->nbackends, sizeof(*p->backends))) == NULL) {
		free(p);
		return NULL;
	}
	p->reg = reg;
	p->route = route;
	p->cfg = cfg;
	p->nbackends = route->nbackends;
	/* What is known of the route's backends is shared with the other workers' pools and
	 * with this route's pools of earlier snapshots (same path, same URL). */
	if ((p->shared = upstream_health_get(route->path, NULL)) == NULL) {
		free(p->backends);
		free(p);
		return NULL;
	}
	for (size_t i = 0; i < p->nbackends; i++)
		if ((p->backends[i].h = upstream_health_get(route->path, route->backends[i].url)) ==
		    NULL) {
			free(p->backends);
			free(p);
			return NULL;
		}
	for (size_t i = 0; i < p->nbackends; i++) {
		struct upstream_backend *b = &p->backends[i];

		b->pool = p;
		b->cfg = &route->backends[i];
		b->index = i;
		event_assign(&b->probe_timer, reg->base, -1, EV_PERSIST, upstream_probe_timer, b);
		if (route->health_check_ms > 0) {
			tv.tv_sec = (time_t)(route->health_check_ms / 1000);
			tv.tv_usec = (suseconds_t)((route->health_check_ms % 1000) * 1000);
			evtimer_add(&b->probe_timer, &tv);
		}
	}
	/* A pool may be made for a connection accepted just before a reload: it holds the
	 * snapshot its route lives in. */
	if (reg->current != NULL)
		(void)config_hold(cfg);
	LIST_INSERT_HEAD(&reg->pools, p, entry);
	/* A first verdict now rather than one period from now. */
	if (route->health_check_ms > 0)
		for (size_t i = 0; i < p->nbackends; i++)
			upstream_probe_start(&p->backends[i]);
	return p;
}

struct ssl_ctx_st *
upstream_pool_tls(struct upstream_pool *p, const char **why)
{
	char err[512];

	if (p->tls == NULL && p->tls_error == NULL) {
		p->tls = upstream_tls_ctx_new(p->route->ca_file, err, sizeof(err));
		if (p->tls == NULL) {
			log_warnx("route %s: %s", p->route->path, err);
			p->tls_error = strdup(err);
		}
	}
	*why = p->tls_error != NULL ? p->tls_error : "cannot make a TLS context";
	return p->tls;
}

int
upstream_backend_eligible(const struct upstream_backend *b, uint64_t now_ms)
{
	return b->h->state == UPSTREAM_UP || now_ms >= b->h->down_until_ms;
}

void
upstream_backend_session(struct upstream_backend *b, int delta)
{
	upstream_health_lock();
	b->h->active += (size_t)(ssize_t)delta;
	upstream_health_unlock();
}

/* A stable spread of client addresses over the backends (for the life of the process): seeded
 * SipHash, so nobody can choose addresses that all land on one backend. */
static uint64_t
upstream_hash(const char *s)
{
	return hash_siphash(s, strlen(s));
}

struct upstream_backend *
upstream_pool_pick(struct upstream_pool *p, const char *client_ip, const unsigned char *tried,
                   int *all_down)
{
	uint64_t now = clock_now_ms();
	struct upstream_backend *best = NULL, *b;
	size_t start, n = p->nbackends;

	*all_down = n > 0;
	if (n == 0)
		return NULL;
	/* One balancer for the process: every worker's pick sees the same states, sessions and
	 * cursor. */
	upstream_health_lock();
	for (size_t i = 0; i < n; i++)
		if (upstream_backend_eligible(&p->backends[i], now))
			*all_down = 0;
	switch (p->route->balance) {
	case BALANCE_IP_HASH:
		/* The same client lands on the same backend while that one is up; when it is not,
		 * the next one in the list takes over, so the others keep their clients. */
		start = client_ip != NULL ? upstream_hash(client_ip) % n : 0;
		break;
	case BALANCE_LEAST_CONN:
	case BALANCE_ROUND_ROBIN:
	default:
		start = p->shared->rr % n;
		break;
	}
	for (size_t i = 0; i < n; i++) {
		b = &p->backends[(start + i) % n];
		if (tried[b->index] || !upstream_backend_eligible(b, now))
			continue;
		if (p->route->balance != BALANCE_LEAST_CONN) {
			best = b;
			break;
		}
		/* Ties go to the first after the cursor, so equal loads still rotate. */
		if (best == NULL || b->h->active < best->h->active)
			best = b;
	}
	if (best != NULL && p->route->balance != BALANCE_IP_HASH)
		p->shared->rr = best->index + 1;
	upstream_health_unlock();
	return best;
}

/* ---- health ---- */

static void
upstream_backend_mark_down(struct upstream_backend *b, const char *why, uint64_t until,
                           const char *retry)
{
	int was;

	upstream_health_lock();
	b->h->down_until_ms = until;
	was = b->h->state;
	b->h->state = UPSTREAM_DOWN;
	upstream_health_unlock();
	/* Only the worker that made the change logs it. */
	if (was == UPSTREAM_DOWN)
		log_debug("backend %s still down: %s", b->cfg->url, why);
	else
		log_warnx("backend %s down: %s; %s", b->cfg->url, why, retry);
}

void
upstream_backend_failed(struct upstream_backend *b, const char *why)
{
	const struct config_route *r = b->pool->route;
	uint64_t ms = r->fail_timeout_ms, fails;
	enum upstream_fail_verdict v;
	char retry[64];

	if (ms == 0) {
		/* fail_timeout = 0: failures are never remembered. */
		log_warnx("backend %s failed: %s", b->cfg->url, why);
		return;
	}
	upstream_health_lock();
	v = upstream_health_fail(b->h, r->max_fails, clock_now_ms(), ms);
	fails = b->h->fails;
	upstream_health_unlock();
	if (ms % 1000 == 0)
		snprintf(retry, sizeof(retry), "retry after %llus",
		         (unsigned long long)(ms / 1000));
	else
		snprintf(retry, sizeof(retry), "retry after %llums", (unsigned long long)ms);
	/* Only the worker whose failure changed the state says so at warn level. */
	switch (v) {
	case UPSTREAM_FAIL_COUNTED:
		log_info("backend %s failed (%llu in a row, down at max_fails %llu): %s",
		         b->cfg->url, (unsigned long long)fails, (unsigned long long)r->max_fails,
		         why);
		break;
	case UPSTREAM_FAIL_DOWN:
		log_warnx("backend %s down after %llu failure(s) in a row: %s; %s", b->cfg->url,
		          (unsigned long long)fails, why, retry);
		break;
	case UPSTREAM_FAIL_STILL_DOWN:
		log_debug("backend %s still down: %s", b->cfg->url, why);
		break;
	}
}

void
upstream_backend_ok(struct upstream_backend *b)
{
	int was;

	upstream_health_lock();
	was = upstream_health_succeed(b->h);
	upstream_health_unlock();
	if (was)
		log_info("backend %s up", b->cfg->url);
}

/* A probe reached the backend (and, for ws/wss, was upgraded): it is up. */
static void
upstream_probe_ready(void *arg, const char *protocol)
{
	struct upstream_backend *b = arg;
	struct upstream_conn *u = b->probe;

	(void)protocol;
	b->probe = NULL;
	upstream_conn_detach(u);
	upstream_backend_ok(b);
	if (b->cfg->scheme == BACKEND_TCP)
		upstream_conn_close(u, "health check done");
	else
		upstream_conn_send_close(u, WS_CLOSE_NORMAL, "health check", 12);
}

static void
upstream_probe_failed(void *arg, int status, const char *why)
{
	struct upstream_backend *b = arg;
	char retry[96];

	(void)status; /* a probe has no client to blame: any refusal means down */
	b->probe = NULL;
	snprintf(retry, sizeof(retry), "health check every %llums",
	         (unsigned long long)b->pool->route->health_check_ms);
	/* Down until a probe says otherwise. */
	upstream_backend_mark_down(b, why, UINT64_MAX, retry);
}

static const struct upstream_conn_ops upstream_probe_ops = {
    .ready = upstream_probe_ready,
    .failed = upstream_probe_failed,
};

/* 1 when this worker runs the backend's next probe: every worker's pool has a timer, but
 * one probe per health_check period is enough for the process. */
static int
upstream_probe_claim(struct upstream_backend *b)
{
	uint64_t now = clock_now_ms(), every = b->pool->route->health_check_ms;
	int mine;

	upstream_health_lock();
	mine = now >= b->h->probe_due_ms;
	if (mine) /* a tenth of slack: this worker's own next tick claims again */
		b->h->probe_due_ms = now + every - every / 10;
	upstream_health_unlock();
	return mine;
}

static void
upstream_probe_start(struct upstream_backend *b)
{
	const char *why = NULL;

	if (b->probe != NULL)
		return; /* the last one has not finished: connect_timeout > health_check */
	if (!upstream_probe_claim(b))
		return; /* another worker probed it lately */
	b->probe = upstream_conn_new(b, 0, NULL, &upstream_probe_ops, b, &why);
	if (b->probe == NULL)
		upstream_probe_failed(b, 0, why);
}

uint64_t
upstream_connect_timeout_ms(const struct config_route *r)
{
	return r->connect_timeout_ms > 0 ? r->connect_timeout_ms : UPSTREAM_DEFAULT_CONNECT_MS;
}
