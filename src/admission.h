/* admission.h - the fleet-wide admission budget for new WebSocket sessions (issue #16): a
 * sliding window of a second in Redis shared by every instance (what was spent plus what the
 * pools hold never exceeds the rate), taken in batches into a local pool the workers draw from; the
 * instance's share of the budget when Redis is down; a ramp after start; and the jittered retry
 * hints of closes and 503s. The arithmetic is pure (admission.c, unit tested); the Redis side and
 * the pools are admission_fleet.c. */
#ifndef WSGATE_ADMISSION_H
#define WSGATE_ADMISSION_H

#include <stddef.h>
#include <stdint.h>

#define ADMISSION_TICK_MS 50 /* how often the pools are topped up */
#define ADMISSION_LIVE_MS                                                                          \
	2500 /* an instance that has not asked for this long is gone (each asks every second) */
#define ADMISSION_HOLD_MS                                                                          \
	250 /* a pool holds up to this much of its instance's share: clumps admitted at once */
#define ADMISSION_MIN_WINDOW_MS 1000 /* the retry window when the fleet has budget to spare */

/* ---- pure arithmetic ---- */

/* A token bucket: rate tokens a second, at most burst: an instance's share while Redis is
 * down. */
struct admission_bucket {
	double tokens;
	double rate;  /* per second */
	double burst; /* capacity */
	uint64_t ts_ms;
};

void admission_bucket_init(struct admission_bucket *b, double rate, double burst, uint64_t now_ms);
/* Refills for the time since the last call, then takes up to want whole tokens: how many. */
uint64_t admission_bucket_take(struct admission_bucket *b, uint64_t want, uint64_t now_ms);
/* The bucket's capacity for a budget of rate a second: a tenth of a second's worth (at least
 * one batch), so any one second admits at most rate + burst (1.1 x rate). */
double admission_burst(uint64_t rate);
/* Fraction of its intake an instance may take ms_since_ready after start or after Redis came
 * back: linear from 1/20 up to 1 over ramp_ms (0: no ramp). */
double admission_ramp_factor(uint64_t ms_since_ready, uint64_t ramp_ms);
/* Tokens asked for per tick at a rate a second scaled by factor: at least 1. */
uint64_t admission_batch(uint64_t rate, double factor);
/* The most one instance's pool holds: ADMISSION_HOLD_MS of its share of rate (scaled by the
 * ramp's factor), at least one batch. Clumped arrivals up to that are admitted at once; the
 * fleet's script counts what every pool holds, so holding never admits beyond the budget. */
uint64_t admission_hold(uint64_t rate, double f, uint64_t live);
/* Tokens one pool asks the fleet for at a tick: what rate x f gives in elapsed_ms since its
 * last ask (one tick at least, a second at most), up to the hold; have is in hand. */
uint64_t admission_want(uint64_t rate, double f, uint64_t live, uint64_t have, uint64_t elapsed_ms);
/* Rate a second this instance may admit alone (Redis down): the configured share, else the
 * budget divided by the instances seen alive (at least 1 instance, at least 1 a second). */
uint64_t admission_share(uint64_t rate, uint64_t configured_share, uint64_t live);
/* The virtual queue of refused clients: the slot (absolute ms) given to one refused at now
 * when the next free slot is next, at share returns a second; no slot further than max_ms
 * away. *after is the next free slot after this one. */
uint64_t admission_slot(uint64_t now, uint64_t next, uint64_t share, uint64_t max_ms,
                        uint64_t *after);
/* A retry delay drawn with full jitter from the window: rnd uniform in [0, 2^32). At least
 * 100 ms so a client never hammers. */
uint64_t admission_jitter_ms(uint64_t window_ms, uint32_t rnd);
/* Seconds for Retry-After: the delay rounded up, at least 1. */
uint64_t admission_retry_after_s(uint64_t ms);
/* The close reason carrying the hint, "retry=3.2" (contract: space-separated key=value
 * tokens). Returns the length written (buf of at least 24 bytes). */
size_t admission_format_retry(char *buf, size_t n, uint64_t ms);

/* ---- the process's admission state (admission_fleet.c) ---- */

struct admission;
struct event_base;
struct config;

/* NULL when no route and no [gateway] admission_rate asks for a budget (admission off), or on
 * out of memory (logged; *failed set). Runs on the main loop base. */
struct admission *admission_new(struct event_base *base, const struct config *cfg,
                                const char *instance_id, int *failed);
void admission_free(struct admission *a);
/* From any worker thread, before the route's auth and target work: 0 admitted, or -1 over
 * budget with *retry_ms the jittered hint for the refusal. route_path NULL: fleet only. */
int admission_admit(struct admission *a, const char *route_path, uint64_t *retry_ms);
/* A retry hint for a close the gateway initiates (drain, restart, try again later): drawn from
 * the current window; works with a NULL a (admission off: the minimum window). */
uint64_t admission_hint_ms(struct admission *a);
/* Draining: this instance admits nobody from now on, so it leaves the fleet's budget at once
 * (its pools emptied, its entries in the live set and what it held removed from Redis):
 * the others divide the budget, and pace the clients they refuse, by the instances still
 * there, not for the drain window plus ADMISSION_LIVE_MS more. Main loop; idempotent. */
void admission_leave(struct admission *a);

/* 1 when the admission keys of two snapshots differ (a reload: they need a restart). */
int admission_config_differs(const struct config *a, const struct config *b);

struct admission_stats {
	uint64_t admitted, refused, pool, live, redis_up, window_ms;
};
void admission_stats(const struct admission *a, struct admission_stats *out);

#endif
