/* timer_wheel.c - a hashed timing wheel on one libevent timer (timer_wheel.h). Deadlines are
 * clock_now_ms() times, the clock the connections compute them with; the libevent timer is
 * armed a clock resolution late so that the coarse clock has reached the tick when it fires. */
#include "timer_wheel.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "clock.h"

LIST_HEAD(timer_wheel_slot, timer_wheel_entry);

struct timer_wheel {
	struct event *ev;     /* the one libevent timer */
	uint64_t cur;         /* next tick to run: ticks before it have fired */
	uint64_t armed_tick;  /* the tick ev is armed for (valid while armed) */
	uint64_t res_ms;      /* the coarse clock's resolution, rounded up */
	uint64_t wakeups;     /* ev's callbacks */
	size_t count;         /* timers armed */
	unsigned armed : 1;   /* ev is pending */
	unsigned running : 1; /* inside ev's callback: it arms ev itself when done */
	uint64_t used[TIMER_WHEEL_SLOTS / 64]; /* slots that may hold timers (cleared lazily) */
	struct timer_wheel_slot slot[TIMER_WHEEL_SLOTS];
};

/* The first tick at whose start t is due: it fires when that tick runs, never before. */
static uint64_t
timer_wheel_tick_of(uint64_t due_ms)
{
	return (due_ms + TIMER_WHEEL_TICK_MS - 1) / TIMER_WHEEL_TICK_MS;
}

/* The nearest tick from cur whose slot may hold a timer; UINT64_MAX when none. */
static uint64_t
timer_wheel_next(const struct timer_wheel *w)
{
	size_t start = (size_t)(w->cur % TIMER_WHEEL_SLOTS);

	for (size_t d = 0; d < TIMER_WHEEL_SLOTS;) {
		size_t s = (start + d) % TIMER_WHEEL_SLOTS;
		uint64_t word = w->used[s / 64] >> (s % 64);

		if (word == 0) { /* the rest of this word is empty */
			d += 64 - s % 64;
			continue;
		}
		d += (size_t)__builtin_ctzll(word);
		if (d >= TIMER_WHEEL_SLOTS)
			break;
		return w->cur + d;
	}
	return UINT64_MAX;
}

/* Arms the libevent timer for tick (or sooner when already armed for earlier). */
static void
timer_wheel_plan(struct timer_wheel *w, uint64_t tick)
{
	uint64_t now = clock_now_ms(), at = tick * TIMER_WHEEL_TICK_MS;
	uint64_t ms = (at > now ? at - now : 0) + w->res_ms;

	if (w->running || (w->armed && w->armed_tick <= tick))
		return;
	w->armed = 1;
	w->armed_tick = tick;
	clock_timer_arm(w->ev, ms);
}

static void
timer_wheel_insert(struct timer_wheel *w, struct timer_wheel_entry *t)
{
	uint64_t tick = timer_wheel_tick_of(t->due_ms);
	size_t s;

	if (tick < w->cur)
		tick = w->cur;
	s = (size_t)(tick % TIMER_WHEEL_SLOTS);
	LIST_INSERT_HEAD(&w->slot[s], t, link);
	w->used[s / 64] |= UINT64_C(1) << (s % 64);
	timer_wheel_plan(w, tick);
}

void
timer_wheel_arm(struct timer_wheel *w, struct timer_wheel_entry *t, uint64_t ms,
                void (*cb)(struct timer_wheel_entry *t))
{
	uint64_t now = clock_now_ms();

	timer_wheel_cancel(w, t);
	t->cb = cb;
	t->due_ms = now + (ms > 0 ? ms : 0);
	if (t->due_ms == 0)
		t->due_ms = 1; /* 0 means unarmed */
	w->count++;
	timer_wheel_insert(w, t);
}

void
timer_wheel_cancel(struct timer_wheel *w, struct timer_wheel_entry *t)
{
	if (t->due_ms == 0)
		return;
	LIST_REMOVE(t, link);
	t->due_ms = 0;
	w->count--;
}

int
timer_wheel_armed(const struct timer_wheel_entry *t)
{
	return t->due_ms != 0;
}

void
timer_wheel_expire(struct timer_wheel *w, struct timer_wheel_entry *t)
{
	if (t->due_ms == 0)
		return;
	timer_wheel_cancel(w, t);
	t->cb(t);
}

size_t
timer_wheel_count(const struct timer_wheel *w)
{
	return w->count;
}

uint64_t
timer_wheel_wakeups(const struct timer_wheel *w)
{
	return w->wakeups;
}

/* Runs every tick up to now; each slot's timers that are due fire, the others (a later round)
 * stay. A callback may arm any timer again, itself included: one armed for now lands in the
 * next tick, so no slot is run twice. */
static void
timer_wheel_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timer_wheel *w = arg;
	uint64_t now = clock_now_ms(), now_tick = now / TIMER_WHEEL_TICK_MS, next;

	(void)fd;
	(void)what;
	w->armed = 0;
	w->running = 1;
	w->wakeups++;
	/* A loop stalled for more than a turn of the wheel: each slot is run once. */
	if (now_tick >= w->cur + TIMER_WHEEL_SLOTS)
		w->cur = now_tick - TIMER_WHEEL_SLOTS + 1;
	while (w->cur <= now_tick) {
		uint64_t k = w->cur++;
		size_t s = (size_t)(k % TIMER_WHEEL_SLOTS);
		struct timer_wheel_slot run;
		struct timer_wheel_entry *t;

		if (!(w->used[s / 64] & (UINT64_C(1) << (s % 64))))
			continue;
		w->used[s / 64] &= ~(UINT64_C(1) << (s % 64));
		LIST_INIT(&run);
		while ((t = LIST_FIRST(&w->slot[s])) != NULL) {
			LIST_REMOVE(t, link);
			LIST_INSERT_HEAD(&run, t, link);
		}
		while ((t = LIST_FIRST(&run)) != NULL) {
			LIST_REMOVE(t, link);
			if (timer_wheel_tick_of(t->due_ms) > k) { /* a later round */
				LIST_INSERT_HEAD(&w->slot[s], t, link);
				w->used[s / 64] |= UINT64_C(1) << (s % 64);
				continue;
			}
			t->due_ms = 0;
			w->count--;
			t->cb(t); /* may arm or cancel any timer, and free t's owner */
		}
	}
	w->running = 0;
	if (w->count > 0 && (next = timer_wheel_next(w)) != UINT64_MAX)
		timer_wheel_plan(w, next);
}

struct timer_wheel *
timer_wheel_new(struct event_base *base)
{
	struct timer_wheel *w;
	struct timespec res;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	if ((w->ev = evtimer_new(base, timer_wheel_cb, w)) == NULL) {
		free(w);
		return NULL;
	}
	for (size_t i = 0; i < TIMER_WHEEL_SLOTS; i++)
		LIST_INIT(&w->slot[i]);
	w->res_ms = 1;
	if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0)
		w->res_ms =
		    (uint64_t)res.tv_sec * 1000 + ((uint64_t)res.tv_nsec + 999999) / 1000000;
	w->cur = clock_now_ms() / TIMER_WHEEL_TICK_MS;
	return w;
}

void
timer_wheel_free(struct timer_wheel *w)
{
	if (w == NULL)
		return;
	event_free(w->ev);
	free(w);
}
