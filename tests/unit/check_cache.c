/* check_cache.c - the cache file's writer thread (lib/cache.c): the newest
 * text submitted wins, what waits is written at del, failures are logged. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cache.h"
#include "log.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/check_cache.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/cache.json", dir);
    unlink(path);
    rmdir(dir);
}

static char *slurp(const char *path)
{
    static char buf[256];
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

START_TEST(newest_text_is_on_disk_after_del)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/cache.json", dir);
    rsv_cache_writer *w = rsv_cache_writer_new();
    ck_assert_ptr_nonnull(w);
    for (int i = 0; i < 100; i++) {
        char text[32];
        snprintf(text, sizeof(text), "state %d", i);
        ck_assert_int_eq(rsv_cache_writer_submit(w, path, strdup(text)), 0);
    }
    /* 100 submissions in a burst: most replaced before the thread got them */
    unsigned long long writes = rsv_cache_writer_writes(w);
    rsv_cache_writer_del(w);
    ck_assert_uint_lt(writes, 100);
    ck_assert_str_eq(slurp(path), "state 99");
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    ck_assert_int_ne(access(tmp, F_OK), 0);
}
END_TEST

static int warnings;
static char last[512];

static void capture(resolver_log_level level, const char *line, void *arg)
{
    (void)arg;
    if (level == RESOLVER_LOG_WARN) {
        warnings++;
        snprintf(last, sizeof(last), "%s", line);
    }
}

START_TEST(failed_write_is_logged)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/missing/cache.json", dir);
    resolver_log_set_handler(capture, NULL);
    rsv_cache_writer *w = rsv_cache_writer_new();
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(rsv_cache_writer_submit(w, path, strdup("x")), 0);
    rsv_cache_writer_del(w);
    resolver_log_set_handler(NULL, NULL);
    ck_assert_int_eq(warnings, 1);
    ck_assert_msg(strstr(last, "missing/cache.json") && strstr(last, "No such file"), "%s", last);
}
END_TEST

START_TEST(del_without_submit)
{
    rsv_cache_writer *w = rsv_cache_writer_new();
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(rsv_cache_writer_writes(w), 0);
    rsv_cache_writer_del(w);
    rsv_cache_writer_del(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("writer");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, newest_text_is_on_disk_after_del);
    tcase_add_test(tc, failed_write_is_logged);
    tcase_add_test(tc, del_without_submit);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
