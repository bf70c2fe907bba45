/* check_admission.c - unit tests for admission.c: the token bucket (refill, cap, a clock that
 * goes back), the ramp, batch sizes, the share when Redis is down, the return slots and their
 * jitter, and the close reason's format. */
#include <check.h>
#include <string.h>

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

int
main(void)
{
	Suite *s = suite_create("admission");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, bucket_refills_at_rate_and_caps_at_burst);
	tcase_add_test(tc, bucket_clock_back_refills_nothing);
	tcase_add_test(tc, bucket_one_second_admits_at_most_rate_plus_burst);
	tcase_add_test(tc, ramp_is_linear_with_a_floor);
	tcase_add_test(tc, batch_is_one_tick_worth);
	tcase_add_test(tc, share_divides_by_live_or_is_configured);
	tcase_add_test(tc, slots_queue_refused_clients_at_the_share);
	tcase_add_test(tc, jitter_spans_the_window);
	tcase_add_test(tc, retry_reason_format);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
