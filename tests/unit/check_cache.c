/* check_cache.c - the cache file's writer thread (lib/cache.c): the newest
 * text submitted wins, what waits is written at del, failures are logged;
 * run-time registrations go into the file and come back as they were, and a
 * bad entry is skipped, not fatal. */
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

static rsv_registration_config back[4];
static size_t n_back;

static void on_registration(void *arg, const rsv_registration_config *r)
{
    (void)arg;
    ck_assert_uint_lt(n_back, 4);
    ck_assert_int_eq(rsv_registration_copy(&back[n_back++], r), 0);
}

START_TEST(registrations_round_trip)
{
    char path[128], err[256], why[256];
    snprintf(path, sizeof(path), "%s/cache.json", dir);
    rsv_registration_config a, b;
    rsv_registration_default(&a);
    rsv_registration_default(&b);
    ck_assert_int_eq(rsv_registration_build(&a, "rt.svc", "127.0.0.1:9001", "native", 3000, 3, "z1",
                                            "{\"env\":\"prod\"}", NULL, why, sizeof(why)),
                     0);
    ck_assert_int_eq(rsv_registration_build(&b, "gz.svc", "127.0.0.1:9002", NULL, 0, 0, NULL, NULL,
                                            "custom/key", why, sizeof(why)),
                     0);
    b.health_check = strdup("");
    json_t *regs = json_array(), *services = json_object();
    json_array_append_new(regs, rsv_cache_registration_json(&a));
    json_array_append_new(regs, rsv_cache_registration_json(&b));
    /* An entry a hand edit broke: skipped, the others still read. */
    json_array_append_new(regs, json_pack("{s:s, s:s}", "service", "bad svc", "address", "x"));
    char *text = rsv_cache_encode(services, regs);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(rsv_cache_write_text(path, text, err, sizeof(err)), 0);
    free(text);
    size_t skipped = 99;
    n_back = 0;
    ck_assert_int_eq(
        rsv_cache_read_registrations(path, on_registration, NULL, &skipped, err, sizeof(err)), 0);
    ck_assert_uint_eq(skipped, 1);
    ck_assert_uint_eq(n_back, 2);
    ck_assert_str_eq(back[0].service, "rt.svc");
    ck_assert_str_eq(back[0].address, "127.0.0.1:9001");
    ck_assert_int_eq(back[0].format, a.format);
    ck_assert_uint_eq(back[0].ttl_ms, 3000);
    ck_assert_uint_eq(back[0].weight, 3);
    ck_assert_str_eq(back[0].zone, "z1");
    ck_assert_str_eq(back[0].metadata, "{\"env\":\"prod\"}");
    ck_assert_ptr_null(back[0].health_check);
    ck_assert_str_eq(back[1].key, "custom/key");
    ck_assert_int_eq(back[1].format, b.format);
    ck_assert_uint_eq(back[1].ttl_ms, 10000);
    ck_assert_str_eq(back[1].health_check, "");
    /* The services reader takes the same file (no service in it). */
    ck_assert_int_eq(rsv_cache_read(path, NULL, NULL, &skipped, err, sizeof(err)), 0);
    for (size_t i = 0; i < n_back; i++)
        rsv_registration_clear(&back[i]);
    rsv_registration_clear(&a);
    rsv_registration_clear(&b);
    json_decref(regs);
    json_decref(services);
}
END_TEST

START_TEST(no_registrations_key_when_none)
{
    json_t *services = json_object(), *regs = json_array();
    char *text = rsv_cache_encode(services, regs);
    ck_assert_str_eq(text, "{\"services\":{},\"version\":1}");
    free(text);
    text = rsv_cache_encode(services, NULL);
    ck_assert_str_eq(text, "{\"services\":{},\"version\":1}");
    free(text);
    json_decref(services);
    json_decref(regs);
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
    tcase_add_test(tc, registrations_round_trip);
    tcase_add_test(tc, no_registrations_key_when_none);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
