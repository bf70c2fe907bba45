/* admin_metrics.c - /metrics: the Prometheus rendering of every worker's counters (metrics.h),
 * summed on the main loop when scraped. Moved out of metrics.c, which every layer uses, because
 * it walks the whole process (gateway, workers, brokers). */
#include "admin.h"
#include "metrics.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "admission.h"
#include "broker.h"
#include "broker_redis.h"
#include "config.h"
#include "conn.h"
#include "gateway.h"
#include "heap.h"
#include "mailbox.h"
#include "upstream_health.h"
#include "worker.h"

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

/* One unlabelled sample with its HELP and TYPE lines. */
static void
metrics_scalar(struct evbuffer *out, const char *name, const char *type, const char *help,
               uint64_t v)
{
	metrics_head(out, name, type, help);
	evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)v);
}

/* The sum over workers of a counter at byte offset off in struct worker_stats. */
static uint64_t
metrics_sum(const struct gateway *gw, size_t off)
{
	uint64_t n = 0;

	for (size_t i = 0; i < gw->nworkers; i++)
		n += METRIC_GET(
		    *(const uint64_t *)(const void *)((const char *)&gw->workers[i]->stats + off));
	return n;
}
#define METRICS_SUM(gw, field) metrics_sum((gw), offsetof(struct worker_stats, field))

/* The sum over workers of a route_stats field for path (slots are per worker). */
static uint64_t
metrics_route_sum(const struct gateway *gw, const char *path, size_t field_off)
{
	uint64_t n = 0;

	for (size_t i = 0; i < gw->nworkers; i++) {
		const struct worker_stats *st = &gw->workers[i]->stats;
		size_t nr = __atomic_load_n(&st->nroutes, __ATOMIC_ACQUIRE);

		for (size_t j = 0; j < nr; j++)
			if (strcmp(st->routes[j].path, path) == 0)
				n += METRIC_GET(
				    *(const uint64_t *)(const void *)((const char *)&st->routes[j] +
				                                      field_off));
	}
	return n;
}

static int
metrics_path_seen(const struct gateway *gw, size_t wi, size_t ri)
{
	const char *path = gw->workers[wi]->stats.routes[ri].path;

	for (size_t i = 0; i <= wi; i++) {
		const struct worker_stats *st = &gw->workers[i]->stats;
		size_t nr = i < wi ? __atomic_load_n(&st->nroutes, __ATOMIC_ACQUIRE) : ri;

		for (size_t j = 0; j < nr; j++)
			if (strcmp(st->routes[j].path, path) == 0)
				return 1;
	}
	return 0;
}

/* One line per route path any worker has counted, summed over workers. */
static void
metrics_per_route(struct evbuffer *out, const struct gateway *gw, const char *name,
                  size_t field_off)
{
	for (size_t wi = 0; wi < gw->nworkers; wi++) {
		const struct worker_stats *st = &gw->workers[wi]->stats;
		size_t nr = __atomic_load_n(&st->nroutes, __ATOMIC_ACQUIRE);

		for (size_t ri = 0; ri < nr; ri++) {
			if (metrics_path_seen(gw, wi, ri))
				continue;
			evbuffer_add_printf(out, "%s{route=\"", name);
			metrics_label(out, st->routes[ri].path);
			evbuffer_add_printf(out, "\"} %llu\n",
			                    (unsigned long long)metrics_route_sum(
			                        gw, st->routes[ri].path, field_off));
		}
	}
}

/* Backends of the current snapshot's proxy routes that have been used (their health is
 * shared by every worker: upstream_health.h). */
static void
metrics_backends(struct evbuffer *out, const struct gateway *gw)
{
	const struct config *cfg = gw->cfg;
	struct upstream_health h;
	int any = 0;

	for (size_t r = 0; r < cfg->nroutes && !any; r++)
		any = cfg->routes[r].nbackends > 0 &&
		      upstream_health_read(cfg->routes[r].path, NULL, &h) == 0;
	if (!any)
		return; /* no proxy route used yet */
	for (int pass = 0; pass < 2; pass++) {
		const char *name = pass == 0 ? "wsgate_backend_up" : "wsgate_backend_sessions";

		if (pass == 0)
			metrics_head(out, name, "gauge",
			             "1 while a proxy backend is taken by the balancer, 0 while "
			             "marked down.");
		else
			metrics_head(out, name, "gauge", "Live proxy sessions per backend.");
		for (size_t r = 0; r < cfg->nroutes; r++) {
			const struct config_route *route = &cfg->routes[r];

			for (size_t b = 0; b < route->nbackends; b++) {
				if (upstream_health_read(route->path, route->backends[b].url, &h) <
				    0)
					continue;
				evbuffer_add_printf(out, "%s{route=\"", name);
				metrics_label(out, route->path);
				evbuffer_add(out, "\",backend=\"", 11);
				metrics_label(out, route->backends[b].url);
				evbuffer_add_printf(out, "\"} %zu\n",
				                    pass == 0 ? (size_t)(h.state == UPSTREAM_UP)
				                              : h.active);
			}
		}
	}
}

/* Returns the brokers' internal errors, for the one wsgate_internal_errors_total. */
static uint64_t
metrics_redis(struct evbuffer *out, const struct gateway *gw)
{
	struct broker_redis_stats sum, rs;
	int sub_up = 1, pub_up = 1;

	memset(&sum, 0, sizeof(sum));
	/* The process's broker (sub link, canary), then every worker's publisher (pub links). */
	broker_redis_stats(gw->redis, &rs);
	sub_up = rs.sub_up;
	for (size_t i = 0; i <= gw->nworkers; i++) {
		if (i > 0)
			broker_redis_stats(gw->workers[i - 1]->broker, &rs);
		sum.reconnects += rs.reconnects;
		sum.published += rs.published;
		sum.refused += rs.refused;
		sum.refused_redirects += rs.refused_redirects;
		sum.refused_unrouted += rs.refused_unrouted;
		sum.followed_moved += rs.followed_moved;
		sum.followed_ask += rs.followed_ask;
		sum.delivered += rs.delivered;
		sum.probes_lost += rs.probes_lost;
		sum.oversized += rs.oversized;
		sum.internal_errors += rs.internal_errors;
		sum.protocol_errors += rs.protocol_errors;
		sum.queue_bytes += rs.queue_bytes;
		pub_up &= rs.pub_up;
	}
	metrics_head(out, "wsgate_redis_link_up", "gauge",
	             "1 while the process's subscribe link is up; publish: every worker's link.");
	evbuffer_add_printf(out, "wsgate_redis_link_up{link=\"subscribe\"} %d\n", sub_up);
	evbuffer_add_printf(out, "wsgate_redis_link_up{link=\"publish\"} %d\n", pub_up);
	metrics_scalar(out, "wsgate_redis_reconnects_total", "counter", "Redis reconnect attempts.",
	               sum.reconnects);
	metrics_scalar(out, "wsgate_redis_published_total", "counter", "PUBLISHes Redis confirmed.",
	               sum.published);
	metrics_scalar(out, "wsgate_redis_delivered_total", "counter",
	               "Channel messages received from Redis.", sum.delivered);
	metrics_scalar(out, "wsgate_redis_probes_lost_total", "counter",
	               "Liveness canaries that did not come back in time.", sum.probes_lost);
	metrics_scalar(out, "wsgate_redis_oversized_total", "counter",
	               "Messages from Redis over [redis] max_message_size, dropped.",
	               sum.oversized);
	metrics_head(
	    out, "wsgate_redis_protocol_errors_total", "counter",
	    "Replies from Redis that Redis does not send (malformed, unexpected): link rebuilt.");
	evbuffer_add_printf(out, "wsgate_redis_protocol_errors_total %llu\n",
	                    (unsigned long long)sum.protocol_errors);
	metrics_scalar(out, "wsgate_redis_publish_queue_bytes", "gauge",
	               "Client publishes waiting for the Redis link.", sum.queue_bytes);
	/* refused counts every reason; the cluster's two are also counted apart */
	metrics_head(out, "wsgate_redis_publish_refused_total", "counter",
	             "Client publishes refused (the client was told): the publish queue was full; "
	             "cluster: no master known for the slot, or too many MOVED/ASK answers.");
	evbuffer_add_printf(
	    out, "wsgate_redis_publish_refused_total{reason=\"queue\"} %llu\n",
	    (unsigned long long)(sum.refused - sum.refused_redirects - sum.refused_unrouted));
	evbuffer_add_printf(out, "wsgate_redis_publish_refused_total{reason=\"no_master\"} %llu\n",
	                    (unsigned long long)sum.refused_unrouted);
	evbuffer_add_printf(out, "wsgate_redis_publish_refused_total{reason=\"redirects\"} %llu\n",
	                    (unsigned long long)sum.refused_redirects);
	metrics_head(out, "wsgate_redis_redirects_total", "counter",
	             "Cluster: publishes a master answered MOVED or ASK, sent again where the slot "
	             "went.");
	evbuffer_add_printf(out, "wsgate_redis_redirects_total{kind=\"moved\"} %llu\n",
	                    (unsigned long long)sum.followed_moved);
	evbuffer_add_printf(out, "wsgate_redis_redirects_total{kind=\"ask\"} %llu\n",
	                    (unsigned long long)sum.followed_ask);
	return sum.internal_errors;
}

/* A per-worker histogram over the loop-lag bounds: buckets at boff, the sum (us) at soff. */
/* One sample per worker of the uint64_t at offset off in its stats. */
static void
metrics_worker_scalar(struct evbuffer *out, const struct gateway *gw, const char *name,
                      const char *type, const char *help, size_t off)
{
	metrics_head(out, name, type, help);
	for (size_t i = 0; i < gw->nworkers; i++) {
		const uint8_t *st = (const uint8_t *)&gw->workers[i]->stats;

		evbuffer_add_printf(
		    out, "%s{worker=\"%zu\"} %llu\n", name, i,
		    (unsigned long long)METRIC_GET(*(const uint64_t *)(const void *)(st + off)));
	}
}

static void
metrics_worker_hist(struct evbuffer *out, const struct gateway *gw, const char *name,
                    const char *help, size_t boff, size_t soff)
{
	metrics_head(out, name, "histogram", help);
	for (size_t i = 0; i < gw->nworkers; i++) {
		const uint8_t *st = (const uint8_t *)&gw->workers[i]->stats;
		const uint64_t *b = (const uint64_t *)(const void *)(st + boff);
		uint64_t cum = 0;

		for (size_t k = 0; k <= METRICS_LAG_NBUCKETS; k++) {
			cum += METRIC_GET(b[k]);
			if (k < METRICS_LAG_NBUCKETS)
				evbuffer_add_printf(
				    out, "%s_bucket{worker=\"%zu\",le=\"%g\"} %llu\n", name, i,
				    metrics_lag_bounds_us[k] / 1e6, (unsigned long long)cum);
			else
				evbuffer_add_printf(out,
				                    "%s_bucket{worker=\"%zu\",le=\"+Inf\"} %llu\n",
				                    name, i, (unsigned long long)cum);
		}
		evbuffer_add_printf(
		    out,
		    "%s_sum{worker=\"%zu\"} %.6f\n%s_count{worker=\"%zu\"} "
		    "%llu\n",
		    name, i, METRIC_GET(*(const uint64_t *)(const void *)(st + soff)) / 1e6, name,
		    i, (unsigned long long)METRIC_GET(gw->workers[i]->stats.lag_count));
	}
}

static void
metrics_workers(struct evbuffer *out, const struct gateway *gw)
{
	uint64_t refused = 0, n;

	metrics_head(out, "wsgate_workers", "gauge", "Event-loop threads serving connections.");
	evbuffer_add_printf(out, "wsgate_workers %zu\n", gw->nworkers);
	metrics_head(out, "wsgate_worker_connections", "gauge",
	             "Connections (any state) by worker: how the kernel spread them.");
	for (size_t i = 0; i < gw->nworkers; i++) {
		evbuffer_add_printf(out, "wsgate_worker_connections{worker=\"%zu\"} %zu\n", i,
		                    METRIC_GET(gw->workers[i]->nconns));
		mailbox_counts(gw->workers[i]->mbox, NULL, &n);
		refused += n;
	}
	metrics_worker_hist(
	    out, gw, "wsgate_loop_lag_seconds",
	    "How late each worker's loop ran a timer due every 50 ms: how long one loop turn "
	    "kept that worker's clients waiting, for whatever reason.",
	    offsetof(struct worker_stats, lag_buckets), offsetof(struct worker_stats, lag_sum_us));
	metrics_worker_hist(
	    out, gw, "wsgate_loop_busy_seconds",
	    "The part of each loop lag the worker's own work explains (its CPU time beyond the "
	    "interval): a long turn of its own, not a machine short of CPU.",
	    offsetof(struct worker_stats, busy_buckets),
	    offsetof(struct worker_stats, busy_sum_us));
	metrics_worker_scalar(
	    out, gw, "wsgate_worker_scratch_bytes", "gauge",
	    "Bytes held by each worker's message scratch buffer (grows with the largest JSON "
	    "envelope built, given back within a second).",
	    offsetof(struct worker_stats, scratch_bytes));
	metrics_worker_scalar(out, gw, "wsgate_worker_heap_trims_total", "counter",
	                      "Times each worker gave free heap back to the kernel (malloc_trim) "
	                      "after a burst of new connections had passed.",
	                      offsetof(struct worker_stats, heap_trims));
	metrics_scalar(out, "wsgate_bus_refused_total", "counter",
	               "In-process hub messages a worker too far behind could not take.", refused);
	refused = 0;
	for (size_t i = 0; i < gw->nworkers; i++)
		refused += METRIC_GET(gw->workers[i]->stats.broadcasts_refused);
	metrics_head(
	    out, "wsgate_broadcasts_refused_total", "counter",
	    "Messages refused for every worker because one was too far behind (all or none).");
	evbuffer_add_printf(out, "wsgate_broadcasts_refused_total %llu\n",
	                    (unsigned long long)refused);
}

/* The admission budget (admission.h): what this instance admitted and refused. */
static void
metrics_admission(struct evbuffer *out, const struct gateway *gw)
{
	struct admission_stats st;

	admission_stats(gw->adm, &st);
	metrics_scalar(out, "wsgate_admission_admitted_total", "counter",
	               "New sessions the admission budget let through on this instance.",
	               st.admitted);
	metrics_scalar(out, "wsgate_admission_refused_total", "counter",
	               "New sessions refused with 503 + Retry-After by the admission budget.",
	               st.refused);
	metrics_scalar(out, "wsgate_admission_tokens", "gauge",
	               "Fleet tokens this instance holds (taken from Redis in batches).", st.pool);
	metrics_scalar(out, "wsgate_admission_instances", "gauge",
	               "Instances seen alive in the fleet's admission set.", st.live);
	metrics_head(
	    out, "wsgate_admission_redis_up", "gauge",
	    "1 while the admission budget is shared through Redis (else this instance's share).");
	evbuffer_add_printf(out, "wsgate_admission_redis_up %llu\n",
	                    (unsigned long long)st.redis_up);
	metrics_head(out, "wsgate_admission_retry_window_seconds", "gauge",
	             "Window retry hints are currently drawn from.");
	evbuffer_add_printf(out, "wsgate_admission_retry_window_seconds %.3f\n",
	                    (double)st.window_ms / 1000.0);
}

void
admin_metrics_render(const struct gateway *gw, struct evbuffer *out)
{
	const struct config *cfg = gw->cfg;
	uint64_t cum = 0, nconns = 0, upgraded_open = 0;
	uint64_t internal = METRICS_SUM(gw, internal_errors);

	metrics_head(out, "wsgate_up", "gauge", "1 while the process runs.");
	evbuffer_add_printf(out, "wsgate_up 1\n");
	metrics_head(out, "wsgate_ready", "gauge", "1 when /readyz would answer 200.");
	evbuffer_add_printf(out, "wsgate_ready %d\n", gateway_ready(gw));
	metrics_head(out, "wsgate_draining", "gauge", "1 while shutting down.");
	evbuffer_add_printf(out, "wsgate_draining %d\n", gateway_state(gw) != GW_RUNNING);
	metrics_scalar(out, "wsgate_heap_in_use_bytes", "gauge",
	               "Heap bytes allocated and not freed, all threads (a leak grows it; RSS also "
	               "holds the allocator's free pages).",
	               heap_in_use());
	metrics_workers(out, gw);
	metrics_admission(out, gw);

	metrics_head(out, "wsgate_connections_open", "gauge",
	             "Open WebSocket connections by route (plus handshakes in progress).");
	for (size_t i = 0; i < cfg->nroutes; i++) {
		uint64_t n =
		    metrics_route_sum(gw, cfg->routes[i].path, offsetof(struct route_stats, open));

		upgraded_open += n;
		evbuffer_add(out, "wsgate_connections_open{route=\"", 31);
		metrics_label(out, cfg->routes[i].path);
		evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)n);
	}
	/* Upgraded connections of routes a reload removed count with the handshakes: the rest. */
	nconns = gateway_nconns(gw);
	evbuffer_add_printf(
	    out, "wsgate_connections_open{route=\"\"} %llu\n",
	    (unsigned long long)(nconns > upgraded_open ? nconns - upgraded_open : 0));
	metrics_scalar(out, "wsgate_connections_accepted_total", "counter",
	               "TCP connections accepted.", METRICS_SUM(gw, accepted));

	metrics_head(out, "wsgate_handshakes_total", "counter",
	             "Handshakes by result; rejected ones by HTTP status.");
	evbuffer_add_printf(out,
	                    "wsgate_handshakes_total{result=\"accepted\",status=\"101\"} %llu\n",
	                    (unsigned long long)METRICS_SUM(gw, upgraded));
	for (size_t i = 0; i < METRICS_NSTATUS; i++) {
		uint64_t n =
		    metrics_sum(gw, offsetof(struct worker_stats, rejected) + i * sizeof(uint64_t));

		if (metrics_statuses[i] != 0)
			evbuffer_add_printf(
			    out,
			    "wsgate_handshakes_total{result=\"rejected\",status=\"%d\"} %llu\n",
			    metrics_statuses[i], (unsigned long long)n);
		else
			evbuffer_add_printf(
			    out,
			    "wsgate_handshakes_total{result=\"rejected\",status=\"other\"} %llu\n",
			    (unsigned long long)n);
	}

	metrics_head(out, "wsgate_messages_in_total", "counter", "Messages received from clients.");
	metrics_per_route(out, gw, "wsgate_messages_in_total",
	                  offsetof(struct route_stats, msgs_in));
	metrics_head(out, "wsgate_bytes_in_total", "counter",
	             "Payload bytes received from clients.");
	metrics_per_route(out, gw, "wsgate_bytes_in_total", offsetof(struct route_stats, bytes_in));
	metrics_head(out, "wsgate_messages_out_total", "counter", "Messages sent to clients.");
	metrics_per_route(out, gw, "wsgate_messages_out_total",
	                  offsetof(struct route_stats, msgs_out));
	metrics_head(out, "wsgate_bytes_out_total", "counter", "Bytes (frames) sent to clients.");
	metrics_per_route(out, gw, "wsgate_bytes_out_total",
	                  offsetof(struct route_stats, bytes_out));

	metrics_head(out, "wsgate_closes_total", "counter",
	             "Connections closed by the gateway, by reason.");
	evbuffer_add_printf(out, "wsgate_closes_total{reason=\"protocol_error\"} %llu\n",
	                    (unsigned long long)METRICS_SUM(gw, protocol_errors));
	evbuffer_add_printf(out, "wsgate_closes_total{reason=\"pong_timeout\"} %llu\n",
	                    (unsigned long long)METRICS_SUM(gw, pong_timeouts));
	evbuffer_add_printf(out, "wsgate_closes_total{reason=\"idle_timeout\"} %llu\n",
	                    (unsigned long long)METRICS_SUM(gw, idle_timeouts));
	evbuffer_add_printf(out, "wsgate_closes_total{reason=\"slow_consumer\"} %llu\n",
	                    (unsigned long long)METRICS_SUM(gw, slow_closed));
	metrics_head(out, "wsgate_dropped_messages_total", "counter",
	             "Messages dropped for slow consumers, by policy.");
	evbuffer_add_printf(out, "wsgate_dropped_messages_total{policy=\"drop_oldest\"} %llu\n",
	                    (unsigned long long)METRICS_SUM(gw, slow_dropped[0]));
	evbuffer_add_printf(out, "wsgate_dropped_messages_total{policy=\"drop_newest\"} %llu\n",
	                    (unsigned long long)METRICS_SUM(gw, slow_dropped[1]));
	metrics_scalar(out, "wsgate_publish_refused_total", "counter",
	               "Client publishes refused by the broker (the client got close 1013).",
	               METRICS_SUM(gw, publish_refused));
	metrics_head(
	    out, "wsgate_publish_denied_total", "counter",
	    "Client messages refused with close 1008: the route is read-only or server_only.");
	evbuffer_add_printf(out, "wsgate_publish_denied_total %llu\n",
	                    (unsigned long long)METRICS_SUM(gw, publish_denied));
	metrics_scalar(out, "wsgate_outbound_queue_bytes", "gauge",
	               "Bytes queued towards clients (each worker samples its own every second).",
	               METRICS_SUM(gw, queued));

	metrics_head(out, "wsgate_ping_rtt_seconds", "histogram", "Ping to pong round trip.");
	for (size_t i = 0; i <= METRICS_RTT_NBUCKETS; i++) {
		cum += metrics_sum(gw, offsetof(struct worker_stats, rtt_buckets) +
		                           i * sizeof(uint64_t));
		if (i < METRICS_RTT_NBUCKETS)
			evbuffer_add_printf(out, "wsgate_ping_rtt_seconds_bucket{le=\"%g\"} %llu\n",
			                    metrics_rtt_bounds_ms[i] / 1000.0,
			                    (unsigned long long)cum);
		else
			evbuffer_add_printf(out,
			                    "wsgate_ping_rtt_seconds_bucket{le=\"+Inf\"} %llu\n",
			                    (unsigned long long)cum);
	}
	evbuffer_add_printf(
	    out, "wsgate_ping_rtt_seconds_sum %.6f\nwsgate_ping_rtt_seconds_count %llu\n",
	    METRICS_SUM(gw, rtt_sum_us) / 1e6, (unsigned long long)METRICS_SUM(gw, rtt_count));

	metrics_backends(out, gw);
	if (cfg->redis.enabled)
		internal += metrics_redis(out, gw);
	metrics_head(
	    out, "wsgate_internal_errors_total", "counter",
	    "Broken invariants reached at run time and survived (a connection closed, or a Redis "
	    "link rebuilt).");
	evbuffer_add_printf(out, "wsgate_internal_errors_total %llu\n",
	                    (unsigned long long)internal);
}
