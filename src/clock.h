/* clock.h - monotonic time for timers, liveness and rate limits: a leaf every layer may use
 * (it used to be conn_now_ms() in conn.c, which pulled the connection layer into every user). */
#ifndef WSGATE_CLOCK_H
#define WSGATE_CLOCK_H
#include <stdint.h>

struct event;

/* Milliseconds of CLOCK_MONOTONIC_COARSE (a few ms of resolution; never jumps back). */
uint64_t clock_now_ms(void);

/* Milliseconds of CLOCK_MONOTONIC, exact to the ms rather than to the coarse clock's tick: the
 * Redis link's deadlines and canary (redis_link_now_ms) use it, as they did before. */
uint64_t clock_fine_ms(void);

/* Arms timer ev to fire in ms milliseconds (re-arming replaces the previous deadline): the
 * one place that turns milliseconds into libevent's timeval. Returns event_add's result. */
int clock_timer_arm(struct event *ev, uint64_t ms);

/* The old name, for code written before the move (branches merged later); new code calls
 * clock_now_ms(). */
static inline uint64_t
conn_now_ms(void)
{
	return clock_now_ms();
}
#endif
