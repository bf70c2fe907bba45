/* timer_wheel.h - many coarse timers on one libevent timer: a per-loop hashed wheel for the
 * connections' deadlines (handshake, heartbeat, close), so 15,000 idle connections cost one
 * libevent timer and one wakeup per tick instead of a heap entry and a callback each.
 *
 * A timer fires in [due, due + tick): never early, at most one tick late. Everything due in one
 * tick fires in one libevent callback, so what the callbacks queue (pings) is written in that
 * same loop turn (conn_flush.c). Arming and cancelling are O(1); an entry is 32 bytes where a
 * struct event is 128. */
#ifndef WSGATE_TIMER_WHEEL_H
#define WSGATE_TIMER_WHEEL_H

#include <sys/queue.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct timer_wheel;

/* Slots of the wheel and the length of one tick: a deadline further than
 * TIMER_WHEEL_SLOTS * TIMER_WHEEL_TICK_MS (41 s) waits in its slot for its round. */
#define TIMER_WHEEL_SLOTS 4096
#define TIMER_WHEEL_TICK_MS 10

/* One timer, embedded in its owner (who gets itself back with container_of-style arithmetic
 * in cb). Zeroed memory is an unarmed timer. */
struct timer_wheel_entry {
	LIST_ENTRY(timer_wheel_entry) link; /* in its slot while armed */
	uint64_t due_ms;                    /* clock_now_ms() time; 0: not armed */
	void (*cb)(struct timer_wheel_entry *t);
};

/* The wheel of one loop. Returns NULL on ENOMEM. */
struct timer_wheel *timer_wheel_new(struct event_base *base);
/* Every timer must have been cancelled (their owners are freed first). */
void timer_wheel_free(struct timer_wheel *w);

/* Arms t to call cb in ms milliseconds (re-arming replaces its previous deadline). */
void timer_wheel_arm(struct timer_wheel *w, struct timer_wheel_entry *t, uint64_t ms,
                     void (*cb)(struct timer_wheel_entry *t));
/* Disarms t (nothing when it is not armed). */
void timer_wheel_cancel(struct timer_wheel *w, struct timer_wheel_entry *t);
/* 1 while t is armed. */
int timer_wheel_armed(const struct timer_wheel_entry *t);
/* Fires t now, as if its deadline had come (tests: "the timer fires"). Nothing when unarmed. */
void timer_wheel_expire(struct timer_wheel *w, struct timer_wheel_entry *t);
/* Timers armed. */
size_t timer_wheel_count(const struct timer_wheel *w);
/* Libevent callbacks of the wheel so far (each runs every timer due by then). */
uint64_t timer_wheel_wakeups(const struct timer_wheel *w);

#endif
