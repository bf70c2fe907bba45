/* metrics.c - per-worker counters and their Prometheus rendering. Counting is a plain increment
 * on the worker's own struct; the sums, gauges and per-route lines are built only when scraped. */
#include "metrics.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "broker.h"
#include "broker_redis.h"
#include "config.h"
#include "conn.h"
#include "gateway.h"
#include "upstream.h"
#include "worker.h"

const unsigned metrics_rtt_bounds_ms[METRICS_RTT_NBUCKETS] = {
	1, 2, 5, 10, 25, 50, 100, 250, 500, 1000,
};

const int metrics_statuses[METRICS_NSTATUS] = {
	400, 401, 403, 404, 405, 408, 426, 429, 431, 500, 502, 503, 505, 0,
};

void
metrics_reject(struct worker_stats *st, int status)
{
	size_t i;

	for (i = 0; i < METRICS_NSTATUS - 1; i++)
		if (metrics_statuses[i] == status)
			break;
	st->rejected[i]++;
}

void
metrics_rtt(struct worker_stats *st, uint64_t us)
{
	size_t i;

	for (i = 0; i < METRICS_RTT_NBUCKETS; i++)
		if (us <= (uint64_t)metrics_rtt_bounds_ms[i] * 1000)
			break;
	st->rtt_buckets[i]++;
	st->rtt_count++;
	st->rtt_sum_us += us;
}

struct route_stats *
metrics_route(struct worker_stats *st, const char *path)
{
	struct route_stats *r;

	for (size_t i = 0; i < st->nroutes; i++)
		if (strcmp(st->routes[i].path, path) == 0)
			return &st->routes[i];
	/* Connections keep pointers to their slot, so the array is allocated once and never
	 * moves; routes beyond its size (across many reloads) go uncounted. */
	if (st->routes == NULL && (st->routes = calloc(256, sizeof(*st->routes))) == NULL)
		return NULL;
	if (st->nroutes == 256)
		return NULL;
	r = &st->routes[st->nroutes];
	if ((r->path = strdup(path)) == NULL)
		return NULL;
	st->nroutes++;
	return r;
}

void
metrics_free(struct worker_stats *st)
{
	for (size_t i = 0; i < st->nroutes; i++)
		free(st->routes[i].path);
	free(st->routes);
	st->routes = NULL;
	st->nroutes = 0;
}

/* Label values are route paths from the config: escape \ " and newline all the same. */
static void
metrics_label(struct evbuffer *out, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			evbuffer_add_printf(out, "\\%c", *s);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

static void
metrics_head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One line per route of the current config, with a value from the worker's route stats. */
static void
metrics_per_route(struct evbuffer *out, const struct gateway *gw, const char *name,
    size_t field_off)
{
	const struct worker_stats *st = &gw->worker->stats;

	for (size_t i = 0; i < st->nroutes; i++) {
		const uint64_t *v = (const uint64_t *)(const void *)((const char *)&st->routes[i] +
		    field_off);
		evbuffer_add_printf(out, "%s{route=\"", name);
		metrics_label(out, st->routes[i].path);
		evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)*v);
	}
}

/* Proxy backends of the pools of the current snapshot (pools of an older one are retiring). */
static void
metrics_backends(struct evbuffer *out, const struct gateway *gw)
{
	const struct upstream_pool *p;

	metrics_head(out, "wsgate_backend_up", "gauge",
	    "1 while a proxy backend is taken by the balancer, 0 while marked down.");
	LIST_FOREACH(p, &gw->worker->upstreams->pools, entry) {
		if (p->cfg != gw->cfg)
			continue;
		for (size_t i = 0; i < p->nbackends; i++) {
			evbuffer_add(out, "wsgate_backend_up{route=\"", 25);
			metrics_label(out, p->route->path);
			evbuffer_add(out, "\",backend=\"", 11);
			metrics_label(out, p->backends[i].cfg->url);
			evbuffer_add_printf(out, "\"} %d\n", p->backends[i].state == UPSTREAM_UP);
		}
	}
	metrics_head(out, "wsgate_backend_sessions", "gauge", "Live proxy sessions per backend.");
	LIST_FOREACH(p, &gw->worker->upstreams->pools, entry) {
		if (p->cfg != gw->cfg)
			continue;
		for (size_t i = 0; i < p->nbackends; i++) {
			evbuffer_add(out, "wsgate_backend_sessions{route=\"", 31);
			metrics_label(out, p->route->path);
			evbuffer_add(out, "\",backend=\"", 11);
			metrics_label(out, p->backends[i].cfg->url);
			evbuffer_add_printf(out, "\"} %zu\n", p->backends[i].active);
		}
	}
}

void
metrics_render(const struct gateway *gw, struct evbuffer *out)
{
	const struct worker *w = gw->worker;
	const struct worker_stats *st = &w->stats;
	const struct config *cfg = gw->cfg;
	struct broker_redis_stats rs;
	const struct conn *c;
	uint64_t queued = 0, cum = 0;

	metrics_head(out, "wsgate_up", "gauge", "1 while the process runs.");
	evbuffer_add_printf(out, "wsgate_up 1\n");
	metrics_head(out, "wsgate_ready", "gauge", "1 when /readyz would answer 200.");
	evbuffer_add_printf(out, "wsgate_ready %d\n", gateway_ready(gw));
	metrics_head(out, "wsgate_draining", "gauge", "1 while shutting down.");
	evbuffer_add_printf(out, "wsgate_draining %d\n", gw->state != GW_RUNNING);

	metrics_head(out, "wsgate_connections_open", "gauge",
	    "Open WebSocket connections by route (plus handshakes in progress).");
	for (size_t i = 0; i < cfg->nroutes; i++) {
		uint64_t n = 0;
		LIST_FOREACH(c, &w->conns, entry)
			if (c->route != NULL && strcmp(c->route->path, cfg->routes[i].path) == 0)
				n++;
		evbuffer_add(out, "wsgate_connections_open{route=\"", 31);
		metrics_label(out, cfg->routes[i].path);
		evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)n);
	}
	{
		uint64_t hs = 0;
		LIST_FOREACH(c, &w->conns, entry) {
			if (c->route == NULL)
				hs++;
			queued += conn_output_len(c);
		}
		evbuffer_add_printf(out, "wsgate_connections_open{route=\"\"} %llu\n",
		    (unsigned long long)hs);
	}
	metrics_head(out, "wsgate_connections_accepted_total", "counter", "TCP connections accepted.");
	evbuffer_add_printf(out, "wsgate_connections_accepted_total %llu\n",
	    (unsigned long long)st->accepted);

	metrics_head(out, "wsgate_handshakes_total", "counter",
	    "Handshakes by result; rejected ones by HTTP status.");
	evbuffer_add_printf(out, "wsgate_handshakes_total{result=\"accepted\",status=\"101\"} %llu\n",
	    (unsigned long long)st->upgraded);
	for (size_t i = 0; i < METRICS_NSTATUS; i++) {
		if (metrics_statuses[i] != 0)
			evbuffer_add_printf(out,
			    "wsgate_handshakes_total{result=\"rejected\",status=\"%d\"} %llu\n",
			    metrics_statuses[i], (unsigned long long)st->rejected[i]);
		else
			evbuffer_add_printf(out,
			    "wsgate_handshakes_total{result=\"rejected\",status=\"other\"} %llu\n",
			    (unsigned long long)st->rejected[i]);
	}

	metrics_head(out, "wsgate_messages_in_total", "counter", "Messages received from clients.");
	metrics_per_route(out, gw, "wsgate_messages_in_total", offsetof(struct route_stats, msgs_in));
	metrics_head(out, "wsgate_bytes_in_total", "counter", "Payload bytes received from clients.");
	metrics_per_route(out, gw, "wsgate_bytes_in_total", offsetof(struct route_stats, bytes_in));
	metrics_head(out, "wsgate_messages_out_total", "counter", "Messages sent to clients.");
	metrics_per_route(out, gw, "wsgate_messages_out_total", offsetof(struct route_stats, msgs_out));
	metrics_head(out, "wsgate_bytes_out_total", "counter", "Bytes (frames) sent to clients.");
	metrics_per_route(out, gw, "wsgate_bytes_out_total", offsetof(struct route_stats, bytes_out));

	metrics_head(out, "wsgate_closes_total", "counter", "Connections closed by the gateway, by reason.");
	evbuffer_add_printf(out, "wsgate_closes_total{reason=\"protocol_error\"} %llu\n",
	    (unsigned long long)st->protocol_errors);
	evbuffer_add_printf(out, "wsgate_closes_total{reason=\"pong_timeout\"} %llu\n",
	    (unsigned long long)st->pong_timeouts);
	evbuffer_add_printf(out, "wsgate_closes_total{reason=\"idle_timeout\"} %llu\n",
	    (unsigned long long)st->idle_timeouts);
	evbuffer_add_printf(out, "wsgate_closes_total{reason=\"slow_consumer\"} %llu\n",
	    (unsigned long long)st->slow_closed);
	metrics_head(out, "wsgate_dropped_messages_total", "counter",
	    "Messages dropped for slow consumers, by policy.");
	evbuffer_add_printf(out, "wsgate_dropped_messages_total{policy=\"drop_oldest\"} %llu\n",
	    (unsigned long long)st->slow_dropped[0]);
	evbuffer_add_printf(out, "wsgate_dropped_messages_total{policy=\"drop_newest\"} %llu\n",
	    (unsigned long long)st->slow_dropped[1]);
	metrics_head(out, "wsgate_publish_refused_total", "counter",
	    "Client publishes refused by the broker (the client got close 1013).");
	evbuffer_add_printf(out, "wsgate_publish_refused_total %llu\n",
	    (unsigned long long)st->publish_refused);
	metrics_head(out, "wsgate_outbound_queue_bytes", "gauge", "Bytes queued towards clients.");
	evbuffer_add_printf(out, "wsgate_outbound_queue_bytes %llu\n", (unsigned long long)queued);

	metrics_head(out, "wsgate_ping_rtt_seconds", "histogram", "Ping to pong round trip.");
	for (size_t i = 0; i < METRICS_RTT_NBUCKETS; i++) {
		cum += st->rtt_buckets[i];
		evbuffer_add_printf(out, "wsgate_ping_rtt_seconds_bucket{le=\"%g\"} %llu\n",
		    metrics_rtt_bounds_ms[i] / 1000.0, (unsigned long long)cum);
	}
	cum += st->rtt_buckets[METRICS_RTT_NBUCKETS];
	evbuffer_add_printf(out, "wsgate_ping_rtt_seconds_bucket{le=\"+Inf\"} %llu\n",
	    (unsigned long long)cum);
	evbuffer_add_printf(out, "wsgate_ping_rtt_seconds_sum %.6f\nwsgate_ping_rtt_seconds_count %llu\n",
	    st->rtt_sum_us / 1e6, (unsigned long long)st->rtt_count);

	if (w->upstreams != NULL && !LIST_EMPTY(&w->upstreams->pools))
		metrics_backends(out, gw);
	if (cfg->redis.enabled && w->broker != NULL) {
		broker_redis_stats(w->broker, &rs);
		metrics_head(out, "wsgate_redis_link_up", "gauge", "1 while a Redis link is up.");
		evbuffer_add_printf(out, "wsgate_redis_link_up{link=\"subscribe\"} %d\n", rs.sub_up);
		evbuffer_add_printf(out, "wsgate_redis_link_up{link=\"publish\"} %d\n", rs.pub_up);
		metrics_head(out, "wsgate_redis_reconnects_total", "counter", "Redis reconnect attempts.");
		evbuffer_add_printf(out, "wsgate_redis_reconnects_total %llu\n",
		    (unsigned long long)rs.reconnects);
		metrics_head(out, "wsgate_redis_published_total", "counter", "PUBLISHes Redis confirmed.");
		evbuffer_add_printf(out, "wsgate_redis_published_total %llu\n",
		    (unsigned long long)rs.published);
		metrics_head(out, "wsgate_redis_delivered_total", "counter",
		    "Channel messages received from Redis.");
		evbuffer_add_printf(out, "wsgate_redis_delivered_total %llu\n",
		    (unsigned long long)rs.delivered);
		metrics_head(out, "wsgate_redis_probes_lost_total", "counter",
		    "Liveness canaries that did not come back in time.");
		evbuffer_add_printf(out, "wsgate_redis_probes_lost_total %llu\n",
		    (unsigned long long)rs.probes_lost);
		metrics_head(out, "wsgate_redis_publish_queue_bytes", "gauge",
		    "Client publishes waiting for the Redis link.");
		evbuffer_add_printf(out, "wsgate_redis_publish_queue_bytes %llu\n",
		    (unsigned long long)rs.queue_bytes);
	}
}
