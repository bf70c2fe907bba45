/* check_admission.c - unit tests for admission.c: the token bucket (refill, cap, a clock that
 * goes back), the ramp, batch sizes, the share when Redis is down, the return slots and their
 * jitter, and the close reason's format. */
#include <check.h>
#include <string.h>

#include "check_runner.h"
#include "admission.h"

START_TEST(bucket_refills_at_rate_and_caps_at_burst)
{
	struct admission_bucket b;

	admission_bucket_init(&b, 100, 10, 1000);
	ck_assert_uint_eq(admission_bucket_take(&b, 50, 1000), 10); /* starts full */
	ck_assert_uint_eq(admission_bucket_take(&b, 50, 1000), 0);
	ck_assert_uint_eq(admission_bucket_take(&b, 50, 1050), 5);   /* 50 ms at 100/s */
	ck_assert_uint_eq(admission_bucket_take(&b, 50, 61050), 10); /* a minute: burst only */
	ck_assert_uint_eq(admission_bucket_take(&b, 3, 62050), 3);   /* want caps it */
	ck_assert_uint_eq(admission_bucket_take(&b, 50, 62050), 7);
}
END_TEST

START_TEST(bucket_clock_back_refills_nothing)
{
	struct admission_bucket b;

	admission_bucket_init(&b, 100, 10, 5000);
	ck_assert_uint_eq(admission_bucket_take(&b, 10, 5000), 10);
	ck_assert_uint_eq(admission_bucket_take(&b, 10, 1000), 0);
	ck_assert_uint_eq(admission_bucket_take(&b, 10, 5020), 2);
}
END_TEST

START_TEST(bucket_one_second_admits_at_most_rate_plus_burst)
{
	struct admission_bucket b;
	uint64_t got = 0;

	admission_bucket_init(&b, 200, admission_burst(200), 0);
	for (uint64_t t = 0; t <= 1000; t += 7)
		got += admission_bucket_take(&b, 1000, t);
	ck_assert_uint_le(got, 200 + 20);
	ck_assert_uint_ge(got, 200);
}
END_TEST

START_TEST(ramp_is_linear_with_a_floor)
{
	ck_assert(admission_ramp_factor(0, 10000) == 0.05);
	ck_assert(admission_ramp_factor(5000, 10000) == 0.5);
	ck_assert(admission_ramp_factor(10000, 10000) == 1.0);
	ck_assert(admission_ramp_factor(123, 0) == 1.0);
}
END_TEST

START_TEST(batch_is_one_tick_worth)
{
	ck_assert_uint_eq(admission_batch(200, 1.0), 10); /* 200/s, 50 ms ticks */
	ck_assert_uint_eq(admission_batch(200, 0.5), 5);
	ck_assert_uint_eq(admission_batch(1, 1.0), 1);
	ck_assert_uint_eq(admission_batch(30, 1.0), 2); /* 1.5 rounds up */
}
END_TEST

START_TEST(share_divides_by_live_or_is_configured)
{
	ck_assert_uint_eq(admission_share(300, 0, 3), 100);
	ck_assert_uint_eq(admission_share(300, 0, 0), 300);
	ck_assert_uint_eq(admission_share(300, 40, 3), 40);
	ck_assert_uint_eq(admission_share(2, 0, 5), 1);
}
END_TEST

START_TEST(slots_queue_refused_clients_at_the_share)
{
	uint64_t next = 0, slot;

	/* 50 a second: one slot every 20 ms, from now on. */
	slot = admission_slot(1000, next, 50, 30000, &next);
	ck_assert_uint_eq(slot, 1000);
	ck_assert_uint_eq(next, 1020);
	slot = admission_slot(1000, next, 50, 30000, &next);
	ck_assert_uint_eq(slot, 1020);
	for (int i = 0; i < 98; i++)
		slot = admission_slot(1005, next, 50, 30000, &next);
	ck_assert_uint_eq(slot, 1000 + 99 * 20); /* the 100th refused returns ~2 s later */
	/* An idle queue: the next refusal's slot is now again (spare budget, short hint). */
	slot = admission_slot(9000, next, 50, 30000, &next);
	ck_assert_uint_eq(slot, 9000);
	/* Never further than max. */
	next = 100000;
	ck_assert_uint_eq(admission_slot(1000, next, 50, 5000, &next), 6000);
	/* Rates above 1000/s still advance. */
	admission_slot(0, 0, 5000, 5000, &next);
	ck_assert_uint_eq(next, 1);
}
END_TEST

START_TEST(jitter_spans_the_window)
{
	ck_assert_uint_eq(admission_jitter_ms(5000, 0), 100);
	ck_assert_uint_eq(admission_jitter_ms(5000, 0x80000000u), 2500);
	ck_assert_uint_le(admission_jitter_ms(5000, 0xffffffffu), 5000);
	ck_assert_uint_ge(admission_jitter_ms(5000, 0xffffffffu), 4999);
	ck_assert_uint_eq(admission_retry_after_s(100), 1);
	ck_assert_uint_eq(admission_retry_after_s(2001), 3);
}
END_TEST

START_TEST(retry_reason_format)
{
	char buf[24];

	ck_assert_uint_eq(admission_format_retry(buf, sizeof(buf), 3250), 9);
	ck_assert_str_eq(buf, "retry=3.2");
	admission_format_retry(buf, sizeof(buf), 100);
	ck_assert_str_eq(buf, "retry=0.1");
}
END_TEST

/* ---- the pools of a fleet against a fake Redis (issue #16) ----
 * Two instances share a budget of SIM_RATE a second. Each runs admission_fleet.c's tick: every
 * tick_ms it asks admission_want() tokens of the fake Redis, the C twin of the budget script,
 * reporting what its pool holds and what it admitted since its last ask; arrivals take tokens
 * from the pool. The clock is a fake one in milliseconds. */
#define SIM_RATE 300
#define SIM_N 2
#define SIM_MS 10000
#define SIM_FROM 2000 /* arrivals start after the pools filled */
#define SIM_LIVE 2500

struct fake_redis {
	uint64_t log_t[8192], log_n[8192]; /* the spends reported in the last second */
	size_t nlog;
	uint64_t held[SIM_N], held_t[SIM_N]; /* what each instance holds, when it said so */
};

/* The budget script's arithmetic (admission_fleet.c): the spends reported within the last
 * second, plus what every live instance holds, leave rate - that to grant. */
static uint64_t
fake_redis_take(struct fake_redis *r, int inst, uint64_t want, uint64_t have, uint64_t spent,
                uint64_t now)
{
	uint64_t used = have, got;
	size_t k = 0;

	for (size_t i = 0; i < r->nlog; i++)
		if (r->log_t[i] + 1000 > now) {
			r->log_t[k] = r->log_t[i];
			r->log_n[k++] = r->log_n[i];
		}
	r->nlog = k;
	if (spent > 0) {
		ck_assert_uint_lt(r->nlog, 8192);
		r->log_t[r->nlog] = now;
		r->log_n[r->nlog++] = spent;
	}
	for (size_t i = 0; i < r->nlog; i++)
		used += r->log_n[i];
	for (int j = 0; j < SIM_N; j++)
		if (j != inst && r->held_t[j] + SIM_LIVE >= now)
			used += r->held[j];
	got = used >= SIM_RATE ? 0 : SIM_RATE - used;
	if (got > want)
		got = want;
	r->held[inst] = have + got;
	r->held_t[inst] = now;
	return got;
}

struct sim {
	uint64_t admitted, refused, per[SIM_N];
	uint64_t max_second; /* most admissions in any window (t - 1000 ms, t] */
};

/* Instances tick every tick_ms (a loop late by as much ticks that seldom); every every_ms,
 * clump clients arrive at each instance in the same millisecond (a load generator, or
 * clients whose timers fire together after a stall). */
static void
sim_run(uint64_t tick_ms, uint64_t every_ms, uint64_t clump, struct sim *out)
{
	static uint16_t at[SIM_MS + 1]; /* admissions per millisecond, the whole fleet */
	static struct fake_redis r;
	uint64_t pool[SIM_N] = {0}, sent[SIM_N] = {0}, adm[SIM_N] = {0}, rep[SIM_N] = {0};
	uint64_t win = 0;

	memset(at, 0, sizeof(at));
	memset(&r, 0, sizeof(r));
	memset(out, 0, sizeof(*out));
	for (uint64_t t = 0; t <= SIM_MS; t++) {
		for (int i = 0; i < SIM_N; i++) {
			uint64_t want;

			if ((t + (uint64_t)i * tick_ms / SIM_N) % tick_ms != 0)
				continue; /* the instances tick out of phase */
			want = admission_want(SIM_RATE, 1.0, SIM_N, pool[i], t - sent[i]);
			if (want == 0 && t - sent[i] < 1000)
				continue;
			pool[i] += fake_redis_take(&r, i, want, pool[i], adm[i] - rep[i], t);
			rep[i] = adm[i];
			sent[i] = t;
		}
		if (t >= SIM_FROM && t % every_ms == 0)
			for (int i = 0; i < SIM_N; i++)
				for (uint64_t k = 0; k < clump; k++) {
					if (pool[i] == 0) {
						out->refused++;
						continue;
					}
					pool[i]--;
					adm[i]++;
					out->per[i]++;
					out->admitted++;
					at[t]++;
				}
		win += at[t];
		if (t >= 1000)
			win -= at[t - 1000];
		if (win > out->max_second)
			out->max_second = win;
	}
}

/* Never more than the budget in any second; nearly all of it admitted; each instance its part. */
static void
assert_whole_budget(const struct sim *s)
{
	uint64_t budget = SIM_RATE * (SIM_MS - SIM_FROM) / 1000;

	ck_assert_uint_le(s->max_second, SIM_RATE);
	ck_assert_msg(s->admitted >= budget * 85 / 100, "admitted %llu of a budget of %llu",
	              (unsigned long long)s->admitted, (unsigned long long)budget);
	for (int i = 0; i < SIM_N; i++)
		ck_assert_uint_ge(s->per[i], s->admitted * 2 / 5);
}

/* The defect of the 3,000-client run: clumped arrivals were refused while the second's budget
 * went unspent, as each pool held one 50 ms batch (1,230 of 2,400 here before the fix; 1,635
 * with late ticks). Demand is twice the budget, so the fleet must admit nearly the whole
 * budget, never more in any second, both instances getting their part. Not all of it: a token
 * counts from its grant until a second after its spend is reported (the next tick), which
 * keeps "never more" strict and costs ~12 % at these tick intervals. */
START_TEST(clumped_arrivals_get_the_whole_budget)
{
	struct sim s;

	/* 60 clients at each instance every 200 ms, ticks on time. */
	sim_run(50, 200, 60, &s);
	assert_whole_budget(&s);
}
END_TEST

/* The same when each instance's main loop ticks only every 150 ms (a loaded machine: the
 * loop lag of the 3,000-client run) and clients arrive steadily, 2 a millisecond. */
START_TEST(late_ticks_get_the_whole_budget)
{
	struct sim s;

	sim_run(150, 1, 1, &s);
	assert_whole_budget(&s);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("admission");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, bucket_refills_at_rate_and_caps_at_burst);
	tcase_add_test(tc, bucket_clock_back_refills_nothing);
	tcase_add_test(tc, bucket_one_second_admits_at_most_rate_plus_burst);
	tcase_add_test(tc, ramp_is_linear_with_a_floor);
	tcase_add_test(tc, batch_is_one_tick_worth);
	tcase_add_test(tc, share_divides_by_live_or_is_configured);
	tcase_add_test(tc, slots_queue_refused_clients_at_the_share);
	tcase_add_test(tc, jitter_spans_the_window);
	tcase_add_test(tc, retry_reason_format);
	tcase_add_test(tc, clumped_arrivals_get_the_whole_budget);
	tcase_add_test(tc, late_ticks_get_the_whole_budget);
	suite_add_tcase(s, tc);
	return check_runner_main(s);
}
