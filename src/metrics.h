/* metrics.h - counters kept by each worker (plain integers: a worker only touches its own);
 * admin_metrics.c sums and renders them at scrape time. */
#ifndef WSGATE_METRICS_H
#define WSGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Each counter has one writer, the worker owning it; the admin loop reads it from its own
 * thread. Relaxed atomic loads and stores (no read-modify-write, so no lock prefix) make that
 * well defined for the price of a plain increment. */
#define METRIC_ADD(x, n)                                                                           \
	__atomic_store_n(&(x), __atomic_load_n(&(x), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define METRIC_SUB(x, n)                                                                           \
	__atomic_store_n(&(x), __atomic_load_n(&(x), __ATOMIC_RELAXED) - (n), __ATOMIC_RELAXED)
#define METRIC_SET(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define METRIC_GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* Upper bounds of the ping round-trip histogram, in milliseconds (+Inf is implied). */
#define METRICS_RTT_NBUCKETS 10
extern const unsigned metrics_rtt_bounds_ms[METRICS_RTT_NBUCKETS];

/* Upper bounds of the event-loop lag histogram, in microseconds (+Inf is implied). */
#define METRICS_LAG_NBUCKETS 9
extern const unsigned metrics_lag_bounds_us[METRICS_LAG_NBUCKETS];

/* Counters of one route; looked up by path so they survive a config reload. */
struct route_stats {
	char *path;
	uint64_t open; /* gauge: upgraded connections of this route still open */
	uint64_t upgraded;
	uint64_t msgs_in, bytes_in;
	uint64_t msgs_out, bytes_out;
};

/* Handshake refusals by HTTP status, in a fixed table. */
#define METRICS_NSTATUS 14
extern const int metrics_statuses[METRICS_NSTATUS]; /* last slot: any other status */

struct worker_stats {
	uint64_t accepted;                  /* TCP connections accepted */
	uint64_t upgraded;                  /* 101 sent */
	uint64_t rejected[METRICS_NSTATUS]; /* HTTP refusals at the handshake, by status */
	uint64_t protocol_errors;           /* connections failed with 1002/1007/1009 */
	uint64_t pong_timeouts;
	uint64_t idle_timeouts;
	uint64_t
	    internal_errors; /* broken invariants reached at run time: one connection closed each */
	uint64_t slow_closed;        /* slow_consumer = close */
	uint64_t slow_dropped[2];    /* [0] drop_oldest, [1] drop_newest: messages */
	uint64_t publish_refused;    /* client publishes refused by the broker (1013) */
	uint64_t broadcasts_refused; /* messages refused for every worker (all or none) */
	uint64_t publish_denied;     /* client messages on read-only/server_only routes (1008) */
	uint64_t rtt_buckets[METRICS_RTT_NBUCKETS + 1];
	uint64_t rtt_count;
	uint64_t rtt_sum_us;
	uint64_t queued; /* gauge, sampled each second: bytes queued to clients */
	uint64_t lag_buckets[METRICS_LAG_NBUCKETS + 1]; /* loop lag: how late a timer ran */
	uint64_t lag_count;
	uint64_t lag_sum_us;
	uint64_t busy_buckets[METRICS_LAG_NBUCKETS +
	                      1]; /* the part of it the loop's own work explains */
	uint64_t busy_sum_us;
	uint64_t scratch_bytes;     /* gauge: the worker's scratch buffer capacity */
	uint64_t heap_trims;        /* malloc_trim calls after bursts of new connections */
	struct route_stats *routes; /* allocated once, never moves */
	size_t nroutes;             /* published with a release store after the slot */
};

void metrics_reject(struct worker_stats *st, int status);
void metrics_rtt(struct worker_stats *st, uint64_t us);
void metrics_lag(struct worker_stats *st, uint64_t lag_us, uint64_t busy_us);
/* The stats slot of a route path (created on first use); NULL only on ENOMEM. */
struct route_stats *metrics_route(struct worker_stats *st, const char *path);
void metrics_free(struct worker_stats *st);

#endif
