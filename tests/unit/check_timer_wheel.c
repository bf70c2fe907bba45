/* check_timer_wheel.c - the per-loop timer wheel (timer_wheel.c) on a real event loop: timers
 * fire never early and at most a tick (plus the clock's resolution) late, 1,000 timers due in
 * the same tick fire in one wakeup, re-arming and cancelling from inside a callback, far
 * deadlines (a later round of the wheel), and an idle wheel wakes nobody. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "check_runner.h"
#include "clock.h"
#include "timer_wheel.h"

#define NT 1000

struct tt {
	struct timer_wheel_entry e; /* first: the callback gets the struct back */
	uint64_t fired_ms;          /* when it fired; 0: not yet */
	int fires;
	uint64_t rearm_ms; /* > 0: arm again for this long from the callback */
	struct tt *cancel; /* cancel this one from the callback */
};

static struct event_base *base;
static struct timer_wheel *w;
static struct tt t[NT];

static void
tt_cb(struct timer_wheel_entry *e)
{
	struct tt *x = (struct tt *)(void *)e;

	x->fired_ms = clock_now_ms();
	x->fires++;
	if (x->cancel != NULL)
		timer_wheel_cancel(w, &x->cancel->e);
	if (x->rearm_ms > 0) {
		uint64_t ms = x->rearm_ms;

		x->rearm_ms = 0;
		timer_wheel_arm(w, e, ms, tt_cb);
	}
}

static void
setup(void)
{
	memset(t, 0, sizeof(t));
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	w = timer_wheel_new(base);
	ck_assert_ptr_nonnull(w);
}

static void
teardown(void)
{
	for (int i = 0; i < NT; i++)
		timer_wheel_cancel(w, &t[i].e);
	timer_wheel_free(w);
	event_base_free(base);
}

/* Runs the loop until cond holds or limit_ms passed. */
#define RUN_UNTIL(cond, limit_ms)                                                                  \
	do {                                                                                       \
		uint64_t end_ = clock_now_ms() + (limit_ms);                                       \
		while (!(cond) && clock_now_ms() < end_)                                           \
			event_base_loop(base, EVLOOP_ONCE);                                        \
	} while (0)

/* How late a timer may be: a tick, the coarse clock's resolution and a loaded machine's
 * scheduling (generous: what is checked exactly is "never early"). */
#define LATE_MS (TIMER_WHEEL_TICK_MS + 200)

START_TEST(fires_never_early_and_about_on_time)
{
	uint64_t t0 = clock_now_ms();

	timer_wheel_arm(w, &t[0].e, 50, tt_cb);
	timer_wheel_arm(w, &t[1].e, 120, tt_cb);
	ck_assert(timer_wheel_armed(&t[0].e));
	ck_assert_uint_eq(timer_wheel_count(w), 2);
	RUN_UNTIL(t[1].fires > 0, 5000);
	ck_assert_int_eq(t[0].fires, 1);
	ck_assert_int_eq(t[1].fires, 1);
	ck_assert_uint_ge(t[0].fired_ms, t0 + 50);
	ck_assert_uint_le(t[0].fired_ms, t0 + 50 + LATE_MS);
	ck_assert_uint_ge(t[1].fired_ms, t0 + 120);
	ck_assert(!timer_wheel_armed(&t[0].e));
	ck_assert_uint_eq(timer_wheel_count(w), 0);
}
END_TEST

/* The point of the wheel: a thousand deadlines in one tick are one wakeup, not a thousand. */
START_TEST(a_thousand_due_together_fire_in_one_wakeup)
{
	uint64_t t0 = clock_now_ms(), w0;
	int all;

	/* Arm them all for the same tick (the tick after the next, so none is run before the
	 * last is armed even on a slow machine). */
	uint64_t at = (t0 / TIMER_WHEEL_TICK_MS + 3) * TIMER_WHEEL_TICK_MS;

	for (int i = 0; i < NT; i++)
		timer_wheel_arm(w, &t[i].e, at - clock_now_ms(), tt_cb);
	w0 = timer_wheel_wakeups(w);
	RUN_UNTIL(t[NT - 1].fires > 0, 5000);
	all = 1;
	for (int i = 0; i < NT; i++)
		if (t[i].fires != 1 || t[i].fired_ms < at - TIMER_WHEEL_TICK_MS)
			all = 0;
	ck_assert(all);
	/* One wakeup, or two when the clock's tick fell between the arms. */
	ck_assert_uint_le(timer_wheel_wakeups(w) - w0, 2);
}
END_TEST

/* Deadlines spread over 1 s: each fires once, in order of its deadline, never early. */
START_TEST(spread_deadlines_each_fire_once)
{
	uint64_t t0 = clock_now_ms();
	int ok = 1;

	for (int i = 0; i < NT; i++)
		timer_wheel_arm(w, &t[i].e, (uint64_t)i, tt_cb);
	RUN_UNTIL(timer_wheel_count(w) == 0, 10000);
	for (int i = 0; i < NT; i++)
		if (t[i].fires != 1 || t[i].fired_ms < t0 + (uint64_t)i)
			ok = 0;
	ck_assert(ok);
	/* Far fewer wakeups than timers: one per tick at most, plus the clock's rounding. */
	ck_assert_uint_le(timer_wheel_wakeups(w), 2 * (1000 / TIMER_WHEEL_TICK_MS) + 10);
}
END_TEST

START_TEST(rearm_and_cancel_from_a_callback)
{
	t[0].rearm_ms = 30;  /* fires twice */
	t[0].cancel = &t[1]; /* and cancels the other on its first fire */
	timer_wheel_arm(w, &t[0].e, 10, tt_cb);
	timer_wheel_arm(w, &t[1].e, 60, tt_cb);
	RUN_UNTIL(t[0].fires == 2, 5000);
	ck_assert_int_eq(t[0].fires, 2);
	ck_assert_int_eq(t[1].fires, 0);
	ck_assert(!timer_wheel_armed(&t[1].e));
	/* Re-arming a timer replaces its deadline; cancelling an unarmed one does nothing. */
	timer_wheel_arm(w, &t[2].e, 10000, tt_cb);
	timer_wheel_arm(w, &t[2].e, 20, tt_cb);
	timer_wheel_cancel(w, &t[3].e);
	ck_assert_uint_eq(timer_wheel_count(w), 1);
	RUN_UNTIL(t[2].fires > 0, 5000);
	ck_assert_int_eq(t[2].fires, 1);
}
END_TEST

/* A deadline beyond one turn of the wheel waits for its round instead of firing a turn early;
 * expire() fires it now. */
START_TEST(far_deadline_waits_for_its_round)
{
	uint64_t turn = (uint64_t)TIMER_WHEEL_SLOTS * TIMER_WHEEL_TICK_MS;

	/* Due one turn plus 40 ms from now: its slot comes round in 40 ms, and must not fire. */
	timer_wheel_arm(w, &t[0].e, turn + 40, tt_cb);
	timer_wheel_arm(w, &t[1].e, 100, tt_cb);
	RUN_UNTIL(t[1].fires > 0, 5000);
	ck_assert_int_eq(t[1].fires, 1);
	ck_assert_int_eq(t[0].fires, 0);
	ck_assert(timer_wheel_armed(&t[0].e));
	timer_wheel_expire(w, &t[0].e);
	ck_assert_int_eq(t[0].fires, 1);
	ck_assert(!timer_wheel_armed(&t[0].e));
}
END_TEST

/* With nothing armed the wheel's libevent timer is off: the loop has nothing to wait for. */
START_TEST(empty_wheel_sleeps)
{
	timer_wheel_arm(w, &t[0].e, 10, tt_cb);
	RUN_UNTIL(t[0].fires > 0, 5000);
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1); /* 1: no events pending */
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("timer_wheel");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, fires_never_early_and_about_on_time);
	tcase_add_test(tc, a_thousand_due_together_fire_in_one_wakeup);
	tcase_add_test(tc, spread_deadlines_each_fire_once);
	tcase_add_test(tc, rearm_and_cancel_from_a_callback);
	tcase_add_test(tc, far_deadline_waits_for_its_round);
	tcase_add_test(tc, empty_wheel_sleeps);
	suite_add_tcase(s, tc);
	return check_runner_main(s);
}
