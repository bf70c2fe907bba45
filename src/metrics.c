/* metrics.c - per-worker counters. Counting is a relaxed atomic store on the worker's own
 * struct (one writer each); the main loop sums every worker's figures only when scraped
 * (admin_metrics.c renders them). */
#include "metrics.h"

#include <stdlib.h>
#include <string.h>

const unsigned metrics_rtt_bounds_ms[METRICS_RTT_NBUCKETS] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000,
};

/* Down to a few milliseconds: a loop late by more than that delays every client on it. */
const unsigned metrics_lag_bounds_us[METRICS_LAG_NBUCKETS] = {
    1000, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000,
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
	METRIC_ADD(st->rejected[i], 1);
}

void
metrics_rtt(struct worker_stats *st, uint64_t us)
{
	size_t i;

	for (i = 0; i < METRICS_RTT_NBUCKETS; i++)
		if (us <= (uint64_t)metrics_rtt_bounds_ms[i] * 1000)
			break;
	METRIC_ADD(st->rtt_buckets[i], 1);
	METRIC_ADD(st->rtt_count, 1);
	METRIC_ADD(st->rtt_sum_us, us);
}

static size_t
metrics_lag_bucket(uint64_t us)
{
	size_t i;

	for (i = 0; i < METRICS_LAG_NBUCKETS; i++)
		if (us <= metrics_lag_bounds_us[i])
			break;
	return i;
}

void
metrics_lag(struct worker_stats *st, uint64_t lag_us, uint64_t busy_us)
{
	METRIC_ADD(st->lag_buckets[metrics_lag_bucket(lag_us)], 1);
	METRIC_ADD(st->busy_buckets[metrics_lag_bucket(busy_us)], 1);
	METRIC_ADD(st->lag_count, 1);
	METRIC_ADD(st->lag_sum_us, lag_us);
	METRIC_ADD(st->busy_sum_us, busy_us);
}

struct route_stats *
metrics_route(struct worker_stats *st, const char *path)
{
	struct route_stats *r;

	/* Only the owning worker adds slots, so it reads nroutes plainly. */
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
	/* The admin thread reads slots [0, nroutes): the slot is complete before it counts. */
	__atomic_store_n(&st->nroutes, st->nroutes + 1, __ATOMIC_RELEASE);
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
