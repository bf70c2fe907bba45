/* limit.h - admission limits at accept time (max_connections, max_connections_per_ip,
 * accept_rate_per_ip) kept in a fixed-size table of per-IP counters, and the token bucket
 * behind max_messages_per_second. Nothing here grows with the number of peers. */
#ifndef WSGATE_LIMIT_H
#define WSGATE_LIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

#define LIMIT_DEFAULT_SLOTS 131072 /* per-IP entries (32 bytes each), a power of two */
#define LIMIT_PROBE 16             /* slots looked at for one address */
#define LIMIT_WINDOW_MS 1000       /* accept_rate_per_ip counts per second */
#define LIMIT_MAX_REFUSING 1024    /* refusals still writing their reply; more are dropped */

enum limit_verdict {
	LIMIT_OK = 0, /* admitted */
	LIMIT_TOTAL,  /* max_connections reached: 503 */
	LIMIT_PER_IP, /* max_connections_per_ip reached: 503 */
	LIMIT_RATE,   /* accept_rate_per_ip exceeded: 429, Retry-After: 1 */
	LIMIT_DROP,   /* refused, and too many refusals in flight to answer: close at once */
};

enum limit_kind {
	LIMIT_T_NONE = 0, /* nothing to give back (the zero value of a new connection) */
	LIMIT_T_ADMITTED, /* counts in max_connections, and per IP when slot >= 0 */
	LIMIT_T_REFUSING, /* counts in the refusals being answered */
};

/* What a connection holds until limit_release(): zeroed means nothing. */
struct limit_ticket {
	int32_t slot;      /* per-IP entry, -1 when none (table full, limits off, not IP) */
	uint8_t kind;      /* enum limit_kind */
	uint8_t untracked; /* admitted without a per-IP entry because the table was full */
};

struct limit_table;

/* nslots 0 = LIMIT_DEFAULT_SLOTS (rounded up to a power of two); seed keys the address hash so
 * that peers cannot aim at one probe window. NULL on ENOMEM. */
struct limit_table *limit_new(size_t nslots, const uint8_t seed[16]);
void limit_free(struct limit_table *l);

/* Decides on a new connection from sa under cfg's limits at now_ms (monotonic) and fills t.
 * Anything but LIMIT_DROP must be given back with limit_release() when the connection goes. */
enum limit_verdict limit_admit(struct limit_table *l, const struct config *cfg,
                               const struct sockaddr *sa, uint64_t now_ms, struct limit_ticket *t);
void limit_release(struct limit_table *l, struct limit_ticket *t);

/* Admitted connections open now, and refusals still being answered. */
uint64_t limit_open(struct limit_table *l);
uint64_t limit_refusing(struct limit_table *l);

/* A token bucket of `rate` per second holding at most one second's worth; zeroed = full. */
struct limit_bucket {
	uint64_t milli; /* tokens in thousandths */
	uint64_t last_ms;
	uint8_t started;
};

/* Takes one token at now_ms: 1 when there was one, 0 when the rate is exceeded. */
int limit_bucket_take(struct limit_bucket *b, uint64_t rate, uint64_t now_ms);

#endif
