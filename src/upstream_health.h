/* upstream_health.h - what the process knows about each proxy backend, shared by every
 * worker's pools: up or down (and until when), live sessions, the route's round-robin cursor
 * and when the next health probe is due. One balancer and one health view per process, however
 * many workers: a backend fails once, is logged down once, is probed once per interval. */
#ifndef WSGATE_UPSTREAM_HEALTH_H
#define WSGATE_UPSTREAM_HEALTH_H

#include <stddef.h>
#include <stdint.h>

enum upstream_backend_state {
	UPSTREAM_UP = 0, /* picked by the balancer */
	UPSTREAM_DOWN,   /* failed: skipped until down_until_ms, or until a probe succeeds */
};

/* Fields are read and written with upstream_health_lock() held. */
struct upstream_health {
	char *route;                       /* route path */
	char *url;                         /* backend URL; NULL for the route's own entry */
	enum upstream_backend_state state;
	uint64_t down_until_ms;            /* DOWN: tried again from then; UINT64_MAX: after a probe */
	size_t active;                     /* live proxy sessions (least_conn, metrics) */
	size_t rr;                         /* route entry: the next backend index to consider */
	uint64_t probe_due_ms;             /* the next probe, whichever worker runs it */
	struct upstream_health *next;
};

/* The entry of (route, url), made on first use (url NULL: the route's). Entries live until
 * upstream_health_free_all: a reload keeps what was learnt about a backend still configured
 * under the same route and URL. NULL on ENOMEM. */
struct upstream_health *upstream_health_get(const char *route, const char *url);
/* A copy of the entry of (route, url) as it is now; -1 when there is none (no pool ever made
 * for that route). */
int upstream_health_read(const char *route, const char *url, struct upstream_health *out);
void upstream_health_lock(void);
void upstream_health_unlock(void);
/* At exit, after every worker stopped. */
void upstream_health_free_all(void);

#endif
