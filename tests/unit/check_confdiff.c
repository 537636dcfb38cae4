/* check_confdiff.c - what a reload changes, key by key (lib/confdiff.c). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "confdiff.h"

static char got[4096];

static void collect(void *arg, rsv_diff_kind kind, const char *key, const char *old_value,
                    const char *new_value)
{
    static const char *const kinds[] = {"added", "removed", "changed", "restart"};
    size_t n = strlen(got);
    snprintf(got + n, sizeof(got) - n, "%s %s %s %s\n", kinds[kind], key,
             old_value ? old_value : "-", new_value ? new_value : "-");
}

static resolver_config *load(const char *json)
{
    resolver_config *cfg = NULL;
    char err[256];
    ck_assert_msg(resolver_config_load_string(json, &cfg, err, sizeof(err)) == 0, "%s", err);
    return cfg;
}

/* The differences between two configurations, one line each. */
static int diff(const char *a, const char *b)
{
    got[0] = '\0';
    resolver_config *ca = load(a), *cb = load(b);
    int n = rsv_config_diff(ca, cb, collect, NULL);
    resolver_config_free(ca);
    resolver_config_free(cb);
    return n;
}

START_TEST(same_config_no_difference)
{
    const char *c = "{\"services\": [{\"name\": \"a\"}]}";
    ck_assert_int_eq(diff(c, c), 0);
    ck_assert_str_eq(got, "");
}
END_TEST

START_TEST(services_added_removed_and_changed)
{
    ck_assert_int_eq(diff("{\"services\": [{\"name\": \"a\"}, {\"name\": \"b\"}]}",
                          "{\"services\": [{\"name\": \"b\", \"policy\": \"random\", "
                          "\"backoff\": {\"initial_ms\": 50}}, {\"name\": \"c\"}]}"),
                     4);
    ck_assert_str_eq(got, "removed a - -\n"
                          "added c - c/\n"
                          "changed services[b].policy \"round_robin\" \"random\"\n"
                          "changed services[b].backoff.initial_ms 1000 50\n");
}
END_TEST

START_TEST(keys_read_at_start_need_a_restart)
{
    ck_assert_int_eq(
        diff("{\"etcd\": {\"endpoints\": [\"http://127.0.0.1:2379\"]}}",
             "{\"etcd\": {\"endpoints\": [\"http://127.0.0.1:2379\", \"http://127.0.0.2:2379\"]}, "
             "\"socket\": {\"path\": \"/tmp/x.sock\", \"admin_group\": \"root\"}, "
             "\"metrics\": {\"listen\": \"127.0.0.1:9100\"}, \"on_demand_services_max\": 3}"),
        5);
    ck_assert_str_eq(got, "restart etcd.endpoints [\"http://127.0.0.1:2379\"] "
                          "[\"http://127.0.0.1:2379\",\"http://127.0.0.2:2379\"]\n"
                          "restart socket.path \"/run/resolverd/resolverd.sock\" \"/tmp/x.sock\"\n"
                          "changed socket.admin_group \"\" \"root\"\n"
                          "restart metrics.listen \"\" \"127.0.0.1:9100\"\n"
                          "changed on_demand_services_max 256 3\n");
}
END_TEST

START_TEST(defaults_reach_services_that_inherit_them)
{
    ck_assert_int_eq(diff("{\"services\": [{\"name\": \"a\"}]}",
                          "{\"defaults\": {\"drain_timeout_ms\": 5}, \"services\": [{\"name\": "
                          "\"a\"}]}"),
                     2);
    ck_assert_str_eq(got, "changed defaults.drain_timeout_ms 30000 5\n"
                          "changed services[a].drain_timeout_ms 30000 5\n");
}
END_TEST

START_TEST(restart_keys_by_prefix)
{
    ck_assert(rsv_config_key_needs_restart("etcd.username"));
    ck_assert(rsv_config_key_needs_restart("zone"));
    ck_assert(!rsv_config_key_needs_restart("zones"));
    ck_assert(!rsv_config_key_needs_restart("socket.admin_group"));
    ck_assert(!rsv_config_key_needs_restart("services[etcd].policy"));
}
END_TEST

static Suite *confdiff_suite(void)
{
    Suite *s = suite_create("confdiff");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, same_config_no_difference);
    tcase_add_test(tc, services_added_removed_and_changed);
    tcase_add_test(tc, keys_read_at_start_need_a_restart);
    tcase_add_test(tc, defaults_reach_services_that_inherit_them);
    tcase_add_test(tc, restart_keys_by_prefix);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(confdiff_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
