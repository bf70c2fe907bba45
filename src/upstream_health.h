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
	char *route; /* route path */
	char *url;   /* backend URL; NULL for the route's own entry */
	enum upstream_backend_state state;
	uint64_t down_until_ms; /* DOWN: tried again from then; UINT64_MAX: after a probe */
	size_t active;          /* live proxy sessions (least_conn, metrics) */
	size_t rr;              /* route entry: the next backend index to consider */
	uint64_t probe_due_ms;  /* the next probe, whichever worker runs it */
	uint64_t fails;         /* consecutive failures; a success resets it */
	struct upstream_health *next;
};

/* What one more failure of a backend did (upstream_health_fail). */
enum upstream_fail_verdict {
	UPSTREAM_FAIL_COUNTED = 0, /* fewer than max_fails in a row: still up */
	UPSTREAM_FAIL_DOWN,        /* this failure marked it down */
	UPSTREAM_FAIL_STILL_DOWN,  /* it was down already (a retry after fail_timeout failed) */
};

/* Pure, called with the lock held. Counts a connect, TLS or timeout failure of h at now: the
 * max_fails-th in a row (nginx's convention, so one client's bad luck or a client that makes
 * its own attempts fail cannot take the backend from the others) marks it down until
 * now + fail_timeout_ms; later ones while the count stands renew that. max_fails 0: never. */
enum upstream_fail_verdict upstream_health_fail(struct upstream_health *h, uint64_t max_fails,
                                                uint64_t now, uint64_t fail_timeout_ms);
/* Pure, lock held: a success (upgrade accepted, probe passed) resets the count and marks h
 * up. 1 when it was down. */
int upstream_health_succeed(struct upstream_health *h);

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
