/* check_metrics.c - the pieces of the /metrics exposition that take bytes
 * or numbers in: /proc/PID/stat parsing (lib/procinfo.c) and the latency
 * histogram's buckets (lib/histogram.c). */
#include <check.h>
#include <stdlib.h>
#include <unistd.h>
#include "histogram.h"
#include "procinfo.h"

/* proc(5): pid (comm) state ppid pgrp session tty tpgid flags minflt
 * cminflt majflt cmajflt utime stime cutime cstime priority nice threads
 * itrealvalue starttime vsize rss ... */
static const char stat_line[] =
    "4242 (a) (b) c) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 50 0 0 20 0 1 0 123400 "
    "19984384 2564 18446744073709551615 1 1 0 0 0 0 0 4096 17987 0 0 0 17 1 0 0 0 0 0\n";

START_TEST(stat_fields_after_a_name_with_parentheses_and_spaces)
{
    rsv_procinfo p = {0};
    ck_assert_int_eq(rsv_procinfo_parse_stat(stat_line, 100, 4096, 1700000000.0, &p), 0);
    ck_assert_double_eq_tol(p.cpu_seconds, 3.0, 1e-9);           /* (250 + 50) / 100 */
    ck_assert_double_eq_tol(p.start_time_s, 1700001234.0, 1e-6); /* btime + 123400 / 100 */
    ck_assert_double_eq(p.virtual_bytes, 19984384.0);
    ck_assert_double_eq(p.resident_bytes, 2564.0 * 4096);
}
END_TEST

START_TEST(stat_truncated_or_garbage_is_refused)
{
    rsv_procinfo p = {.cpu_seconds = -1};
    ck_assert_int_eq(rsv_procinfo_parse_stat("4242 (a) S 1 2 3", 100, 4096, 0, &p), -1);
    ck_assert_int_eq(rsv_procinfo_parse_stat("no parenthesis", 100, 4096, 0, &p), -1);
    ck_assert_int_eq(rsv_procinfo_parse_stat(NULL, 100, 4096, 0, &p), -1);
    ck_assert_double_eq(p.cpu_seconds, -1);
}
END_TEST

START_TEST(own_process_figures_are_plausible)
{
    rsv_procinfo p;
    rsv_procinfo_read(&p);
    ck_assert(p.resident_bytes > 0);
    ck_assert(p.virtual_bytes >= p.resident_bytes);
    ck_assert(p.open_fds >= 3); /* stdin, stdout, stderr at least */
    ck_assert(p.start_time_s > 1e9);
    ck_assert(p.cpu_seconds >= 0);
}
END_TEST

START_TEST(histogram_bounds_are_inclusive)
{
    rsv_histogram h = {0};
    rsv_histogram_observe(&h, 0);     /* le 0.001 */
    rsv_histogram_observe(&h, 1);     /* le 0.001: bounds are inclusive */
    rsv_histogram_observe(&h, 2);     /* le 0.0025 */
    rsv_histogram_observe(&h, 3);     /* le 0.005 */
    rsv_histogram_observe(&h, 10000); /* le 10 */
    rsv_histogram_observe(&h, 10001); /* +Inf only */
    ck_assert_uint_eq(rsv_histogram_cumulative(&h, 0), 2);
    ck_assert_uint_eq(rsv_histogram_cumulative(&h, 1), 3);
    ck_assert_uint_eq(rsv_histogram_cumulative(&h, 2), 4);
    ck_assert_uint_eq(rsv_histogram_cumulative(&h, RSV_HISTOGRAM_BUCKETS - 1), 5);
    ck_assert_uint_eq(h.count, 6);
    ck_assert_uint_eq(h.sum_ms, 20007);
}
END_TEST

START_TEST(histogram_takes_the_largest_latency)
{
    rsv_histogram h = {0};
    rsv_histogram_observe(&h, UINT32_MAX - 1);
    ck_assert_uint_eq(rsv_histogram_cumulative(&h, RSV_HISTOGRAM_BUCKETS - 1), 0);
    ck_assert_uint_eq(h.count, 1);
    ck_assert_uint_eq(h.sum_ms, UINT32_MAX - 1);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, stat_fields_after_a_name_with_parentheses_and_spaces);
    tcase_add_test(tc, stat_truncated_or_garbage_is_refused);
    tcase_add_test(tc, own_process_figures_are_plausible);
    tcase_add_test(tc, histogram_bounds_are_inclusive);
    tcase_add_test(tc, histogram_takes_the_largest_latency);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
