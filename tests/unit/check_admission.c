/* check_admission.c - unit tests for admission.c: the token bucket (refill, cap, a clock that
 * goes back), the ramp, batch sizes, the share when Redis is down, the retry window and its
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
	ck_assert_uint_eq(admission_bucket_take(&b, 50, 1050), 5); /* 50 ms at 100/s */
	ck_assert_uint_eq(admission_bucket_take(&b, 50, 61050), 10); /* a minute: burst only */
	ck_assert_uint_eq(admission_bucket_take(&b, 3, 62050), 3);  /* want caps it */
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

START_TEST(window_grows_with_refusals_and_shrinks_when_spare)
{
	ck_assert_uint_eq(admission_window_ms(0, 100, 0, 30000), 1000);
	ck_assert_uint_eq(admission_window_ms(500, 100, 0, 30000), 5000);
	ck_assert_uint_eq(admission_window_ms(500, 100, 1, 30000), 1000);
	ck_assert_uint_eq(admission_window_ms(100000, 100, 0, 30000), 30000);
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
	tcase_add_test(tc, window_grows_with_refusals_and_shrinks_when_spare);
	tcase_add_test(tc, jitter_spans_the_window);
	tcase_add_test(tc, retry_reason_format);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
