/* check_log.c - levelled logging and the per-cause rate limiter (lib/log.c). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "log.h"

static char last[2048];
static int lines;

static void capture(resolver_log_level level, const char *line, void *arg)
{
    (void)level;
    (void)arg;
    snprintf(last, sizeof(last), "%s", line);
    lines++;
}

static void setup(void)
{
    lines = 0;
    last[0] = '\0';
    resolver_log_set_level(RESOLVER_LOG_INFO);
    resolver_log_set_handler(capture, NULL);
}

START_TEST(newlines_cannot_forge_lines)
{
    rsv_log(RESOLVER_LOG_WARN, "value %s", "a\nerror forged\r");
    ck_assert_int_eq(lines, 1);
    ck_assert_str_eq(last, "value a error forged ");
}
END_TEST

START_TEST(limited_one_line_per_window_then_count)
{
    rsv_log_limit lim = {0};
    for (int i = 0; i < 500; i++)
        LOG_WARN_LIMITED(&lim, "ticket %d leaked", i);
    ck_assert_int_eq(lines, 1);
    ck_assert_str_eq(last, "ticket 0 leaked");
    /* The window passes (as if 10 s went by): the next line carries the count. */
    lim.next_ms = 0;
    ck_assert_int_eq(LOG_WARN_LIMITED(&lim, "ticket %d leaked", 500), 1);
    ck_assert_int_eq(lines, 2);
    ck_assert_str_eq(last, "ticket 500 leaked (499 more like this since the last one)");
    lim.next_ms = 0;
    LOG_WARN_LIMITED(&lim, "quiet");
    ck_assert_str_eq(last, "quiet");
}
END_TEST

START_TEST(limited_separate_causes_do_not_share)
{
    rsv_log_limit a = {0}, b = {0};
    LOG_WARN_LIMITED(&a, "a");
    LOG_WARN_LIMITED(&b, "b");
    LOG_WARN_LIMITED(&a, "a again");
    ck_assert_int_eq(lines, 2);
    ck_assert_str_eq(last, "b");
}
END_TEST

START_TEST(limited_disabled_level_counts_nothing)
{
    rsv_log_limit lim = {0};
    resolver_log_set_level(RESOLVER_LOG_ERROR);
    ck_assert_int_eq(LOG_WARN_LIMITED(&lim, "off"), 0);
    ck_assert_int_eq(lines, 0);
    resolver_log_set_level(RESOLVER_LOG_INFO);
    ck_assert_int_eq(LOG_WARN_LIMITED(&lim, "on"), 1);
    ck_assert_str_eq(last, "on");
}
END_TEST

/* Points stderr at a fresh temporary file and returns it; with `journal`,
 * JOURNAL_STREAM names that file as systemd names the journal's stream. */
static FILE *stderr_to_file(int journal)
{
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(dup2(fileno(f), STDERR_FILENO), 0);
    struct stat st;
    ck_assert_int_eq(fstat(STDERR_FILENO, &st), 0);
    char js[64];
    snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    if (journal)
        setenv("JOURNAL_STREAM", js, 1);
    else
        setenv("JOURNAL_STREAM", "1:2", 1); /* another stream: stderr is not the journal */
    resolver_log_set_handler(NULL, NULL);
    resolver_log_set_level(RESOLVER_LOG_DEBUG);
    return f;
}

static void read_back(FILE *f, char *buf, size_t n)
{
    fflush(stderr);
    rewind(f);
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = '\0';
}

START_TEST(journal_stream_gets_priority_prefix_and_no_timestamp)
{
    FILE *f = stderr_to_file(1);
    LOG_ERROR("e %d", 1);
    LOG_WARN("w");
    LOG_INFO("i");
    LOG_DEBUG("d");
    char buf[512];
    read_back(f, buf, sizeof(buf));
    ck_assert_str_eq(buf, "<3>error e 1\n<4>warn  w\n<6>info  i\n<7>debug d\n");
}
END_TEST

START_TEST(other_stream_keeps_timestamps)
{
    FILE *f = stderr_to_file(0);
    LOG_WARN("w");
    char buf[512];
    read_back(f, buf, sizeof(buf));
    /* 2026-01-02T03:04:05.678Z warn  w */
    ck_assert_msg(strlen(buf) == 33 && buf[0] != '<' && buf[23] == 'Z' &&
                      strcmp(buf + 24, " warn  w\n") == 0,
                  "got \"%s\"", buf);
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, newlines_cannot_forge_lines);
    tcase_add_test(tc, limited_one_line_per_window_then_count);
    tcase_add_test(tc, limited_separate_causes_do_not_share);
    tcase_add_test(tc, limited_disabled_level_counts_nothing);
    tcase_add_test(tc, journal_stream_gets_priority_prefix_and_no_timestamp);
    tcase_add_test(tc, other_stream_keeps_timestamps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(log_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
