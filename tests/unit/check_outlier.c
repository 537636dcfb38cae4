/* check_outlier.c - outlier detection's decisions alone (lib/outlier.c):
 * counts in, decisions out, no service, no timers. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "outlier.h"

static rsv_service_options opts;

static void setup(void)
{
    rsv_service_options_default(&opts);
    opts.outlier.consecutive_failures = 5;
    opts.outlier.failure_percent = 85;
    opts.outlier.min_requests = 50;
    opts.outlier.max_ejection_percent = 10;
    opts.outlier.base_ejection_ms = 30000;
    opts.outlier.max_ejection_ms = 300000;
}

static void teardown(void)
{
    rsv_service_options_clear(&opts);
}

/* An instance of a service of `total`, none ejected. */
static rsv_outlier_counts counts(size_t total)
{
    rsv_outlier_counts c;
    memset(&c, 0, sizeof(c));
    c.service_total = total;
    return c;
}

START_TEST(consecutive_failures_eject_at_the_threshold)
{
    rsv_outlier_counts c = counts(100);
    c.consecutive_failures = 4;
    ck_assert_int_eq(rsv_outlier_after_call(&opts, &c).action, RSV_OUTLIER_NONE);
    c.consecutive_failures = 5;
    rsv_outlier_decision d = rsv_outlier_after_call(&opts, &c);
    ck_assert_int_eq(d.action, RSV_OUTLIER_EJECT);
    ck_assert_uint_eq(d.ms, 30000);
    ck_assert_uint_eq(d.times_ejected, 1);
    ck_assert_str_eq(d.why, "5 consecutive failures");
    /* A rule off never trips. */
    opts.outlier.consecutive_failures = 0;
    c.consecutive_failures = 1000;
    ck_assert_int_eq(rsv_outlier_after_call(&opts, &c).action, RSV_OUTLIER_NONE);
}
END_TEST

START_TEST(ejection_grows_with_times_ejected_up_to_the_max)
{
    rsv_outlier_counts c = counts(100);
    c.consecutive_failures = 5;
    c.times_ejected = 2;
    rsv_outlier_decision d = rsv_outlier_after_call(&opts, &c);
    ck_assert_int_eq(d.action, RSV_OUTLIER_EJECT);
    ck_assert_uint_eq(d.times_ejected, 3);
    ck_assert_uint_eq(d.ms, 90000);
    c.times_ejected = 20;
    d = rsv_outlier_after_call(&opts, &c);
    ck_assert_uint_eq(d.ms, 300000);
    ck_assert_uint_eq(d.times_ejected, 21);
}
END_TEST

START_TEST(an_ejected_instance_is_not_ejected_again)
{
    rsv_outlier_counts c = counts(100);
    c.consecutive_failures = 50;
    c.ejected = 1;
    ck_assert_int_eq(rsv_outlier_after_call(&opts, &c).action, RSV_OUTLIER_NONE);
    c.interval_requests = c.interval_failures = 100;
    ck_assert_int_eq(rsv_outlier_after_interval(&opts, &c).action, RSV_OUTLIER_NONE);
}
END_TEST

START_TEST(max_ejection_percent_caps_but_one_may_always_go)
{
    rsv_outlier_counts c = counts(30); /* 10 % of 30: 3 */
    c.consecutive_failures = 5;
    c.service_ejected = 2;
    ck_assert_int_eq(rsv_outlier_after_call(&opts, &c).action, RSV_OUTLIER_EJECT);
    c.service_ejected = 3;
    rsv_outlier_decision d = rsv_outlier_after_call(&opts, &c);
    ck_assert_int_eq(d.action, RSV_OUTLIER_HELD);
    ck_assert_uint_eq(d.max_ejected, 3);
    ck_assert_str_eq(d.why, "5 consecutive failures");
    /* 10 % of 2 rounds to 0: one is still allowed, not two. */
    c = counts(2);
    c.consecutive_failures = 5;
    ck_assert_int_eq(rsv_outlier_after_call(&opts, &c).action, RSV_OUTLIER_EJECT);
    c.service_ejected = 1;
    ck_assert_int_eq(rsv_outlier_after_call(&opts, &c).action, RSV_OUTLIER_HELD);
    /* 0 % turns ejection off. */
    opts.outlier.max_ejection_percent = 0;
    c.service_ejected = 0;
    ck_assert_int_eq(rsv_outlier_after_call(&opts, &c).action, RSV_OUTLIER_NONE);
}
END_TEST

START_TEST(failure_percent_per_interval)
{
    rsv_outlier_counts c = counts(100);
    /* Under min_requests: no verdict, however bad. */
    c.interval_requests = c.interval_failures = 49;
    ck_assert_int_eq(rsv_outlier_after_interval(&opts, &c).action, RSV_OUTLIER_NONE);
    /* 84 % of 100 stays, 85 % goes. */
    c.interval_requests = 100;
    c.interval_failures = 84;
    ck_assert_int_eq(rsv_outlier_after_interval(&opts, &c).action, RSV_OUTLIER_NONE);
    c.interval_failures = 85;
    rsv_outlier_decision d = rsv_outlier_after_interval(&opts, &c);
    ck_assert_int_eq(d.action, RSV_OUTLIER_EJECT);
    ck_assert_uint_eq(d.ms, 30000);
    ck_assert_str_eq(d.why, "85 of 100 calls failed in the last interval");
    opts.outlier.failure_percent = 0;
    c.interval_failures = 100;
    ck_assert_int_eq(rsv_outlier_after_interval(&opts, &c).action, RSV_OUTLIER_NONE);
}
END_TEST

START_TEST(a_healthy_interval_forgives_one_ejection)
{
    rsv_outlier_counts c = counts(100);
    c.times_ejected = 3;
    c.interval_requests = 10;
    rsv_outlier_decision d = rsv_outlier_after_interval(&opts, &c);
    ck_assert_int_eq(d.action, RSV_OUTLIER_FORGIVE);
    ck_assert_uint_eq(d.times_ejected, 2);
    /* No forgiveness with a failure in the interval, while ejected, or
     * with nothing to forgive. */
    c.interval_failures = 1;
    ck_assert_int_eq(rsv_outlier_after_interval(&opts, &c).action, RSV_OUTLIER_NONE);
    c.interval_failures = 0;
    c.ejected = 1;
    ck_assert_int_eq(rsv_outlier_after_interval(&opts, &c).action, RSV_OUTLIER_NONE);
    c.ejected = 0;
    c.times_ejected = 0;
    ck_assert_int_eq(rsv_outlier_after_interval(&opts, &c).action, RSV_OUTLIER_NONE);
}
END_TEST

START_TEST(ejection_is_over_at_its_end)
{
    ck_assert(!rsv_outlier_ejection_over(999, 1000));
    ck_assert(rsv_outlier_ejection_over(1000, 1000));
    ck_assert(rsv_outlier_ejection_over(5000, 1000));
}
END_TEST

static Suite *outlier_suite(void)
{
    Suite *s = suite_create("outlier");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, consecutive_failures_eject_at_the_threshold);
    tcase_add_test(tc, ejection_grows_with_times_ejected_up_to_the_max);
    tcase_add_test(tc, an_ejected_instance_is_not_ejected_again);
    tcase_add_test(tc, max_ejection_percent_caps_but_one_may_always_go);
    tcase_add_test(tc, failure_percent_per_interval);
    tcase_add_test(tc, a_healthy_interval_forgives_one_ejection);
    tcase_add_test(tc, ejection_is_over_at_its_end);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(outlier_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
