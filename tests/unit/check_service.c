/*
 * check_service.c - a service (lib/service.c) without etcd: created with no
 * etcd, it is fed through rsv_service_discovery_callbacks exactly as
 * discovery feeds it (a snapshot, puts and deletes, the bounds of one watch
 * message), and its subchannels (protocol tcp: READY once connected)
 * connect to listening sockets of this process on 127.0.0.1, which the
 * kernel completes without an accept.  What is under test is the
 * service's own bookkeeping: reconcile, drain, self-preservation's STALE
 * instances and their revival, outlier ejection.
 */
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "service.h"

#define N_LISTENERS 4

static struct {
    rsv_loop *loop;
    rsv_hazard_domain *hazard;
    rsv_service_options opts;
    rsv_service *svc;
    const rsv_discovery_callbacks *cb;
    int fds[N_LISTENERS];
    char addr[N_LISTENERS][32]; /* "127.0.0.1:port" of each listener */
    char events[4096];          /* "added A;removed A;closed A;" (A: listener index) */
    int pickers;                /* RSV_CHANGE_PICKER notifications */
} f;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int listener_index(const char *address)
{
    for (int i = 0; i < N_LISTENERS; i++)
        if (strcmp(f.addr[i], address) == 0)
            return i;
    return -1;
}

static void on_change(void *arg, rsv_service *svc, const rsv_instance *inst, rsv_change what)
{
    static const char *const names[] = {"added", "removed", "state", "closed", "picker"};
    if (what == RSV_CHANGE_PICKER) {
        f.pickers++;
        return;
    }
    if (what == RSV_CHANGE_STATE)
        return;
    size_t n = strlen(f.events);
    snprintf(f.events + n, sizeof(f.events) - n, "%s %c;", names[what],
             'A' + listener_index(inst->endpoint.address));
}

static void setup(void)
{
    memset(&f, 0, sizeof(f));
    f.loop = rsv_loop_new();
    f.hazard = rsv_hazard_domain_new();
    ck_assert(f.loop && f.hazard);
    for (int i = 0; i < N_LISTENERS; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        f.fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(f.fds[i], 0);
        ck_assert_int_eq(bind(f.fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(f.fds[i], 64), 0);
        ck_assert_int_eq(getsockname(f.fds[i], (struct sockaddr *)&sa, &len), 0);
        snprintf(f.addr[i], sizeof(f.addr[i]), "127.0.0.1:%u", ntohs(sa.sin_port));
    }
    rsv_service_options_default(&f.opts);
    f.opts.protocol = RSV_PROTOCOL_TCP;
    f.opts.policy = RSV_POLICY_ROUND_ROBIN;
    f.opts.self_preservation_percent = 0; /* on where it is under test */
    f.cb = rsv_service_discovery_callbacks();
}

static void start(void)
{
    f.svc =
        rsv_service_new(f.loop, NULL, NULL, f.hazard, "", "svc", "svc/", &f.opts, on_change, NULL);
    ck_assert_ptr_nonnull(f.svc);
}

static void teardown(void)
{
    rsv_service_free(f.svc);
    rsv_hazard_domain_del(f.hazard); /* retired pickers release their instances */
    rsv_loop_del(f.loop);
    rsv_service_options_clear(&f.opts);
    for (int i = 0; i < N_LISTENERS; i++)
        close(f.fds[i]);
}

/* ---- feeding the service as discovery would ---- */

static rsv_kv kv(const char *key, const char *value)
{
    rsv_kv k;
    memset(&k, 0, sizeof(k));
    k.type = value ? RSV_KV_PUT : RSV_KV_DELETE;
    k.key = (char *)key;
    k.key_len = strlen(key);
    k.value = (char *)(value ? value : "");
    k.value_len = strlen(k.value);
    return k;
}

static void put(const char *key, int listener)
{
    rsv_kv k = kv(key, f.addr[listener]);
    f.cb->on_put(f.svc, &k);
}

static void del(const char *key)
{
    rsv_kv k = kv(key, NULL);
    f.cb->on_delete(f.svc, &k);
}

static void batch(int begin)
{
    f.cb->on_batch(f.svc, begin);
}

/* A snapshot of keys "svc/<key>" naming listeners: keys[i] -> listeners[i]. */
static void snapshot(const char *const *keys, const int *listeners, size_t n)
{
    rsv_kv kvs[8];
    for (size_t i = 0; i < n; i++)
        kvs[i] = kv(keys[i], f.addr[listeners[i]]);
    f.cb->on_snapshot(f.svc, kvs, n, 1);
}

/* ---- looking at it ---- */

static rsv_instance *instance(int listener)
{
    size_t n;
    rsv_instance **all = rsv_service_instances_sorted(f.svc, &n), *found = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i]->endpoint.address, f.addr[listener]) == 0)
            found = all[i];
    free(all);
    return found;
}

static size_t ready_count(void)
{
    size_t counts[5];
    rsv_service_state_counts(f.svc, counts);
    return counts[RSV_STATE_READY];
}

/* Runs the loop until `ready` instances are READY and the picker that
 * lists them is published (the iteration's end: loop.h rule 6). */
static void run_until_ready(size_t ready)
{
    uint64_t deadline = mono_ms() + 5000;
    while (ready_count() != ready && mono_ms() < deadline)
        rsv_loop_run_once(f.loop, 10);
    ck_assert_uint_eq(ready_count(), ready);
    rsv_loop_run_once(f.loop, 0);
}

static int run_until_event(const char *event, uint64_t ms)
{
    uint64_t deadline = mono_ms() + ms;
    while (!strstr(f.events, event) && mono_ms() < deadline)
        rsv_loop_run_once(f.loop, 10);
    return strstr(f.events, event) != NULL;
}

/* A pick; NULL when it failed. */
static rsv_instance *pick(void)
{
    rsv_instance *inst = NULL;
    uint64_t timeout_ms;
    char why[256];
    return rsv_service_pick(f.svc, NULL, &inst, &timeout_ms, why, sizeof(why)) == 0 ? inst : NULL;
}

/* Picks until the pick is of `listener` (the others released as successes);
 * NULL after 100 tries. */
static rsv_instance *pick_of(int listener)
{
    for (int i = 0; i < 100; i++) {
        rsv_instance *inst = pick();
        if (!inst)
            return NULL;
        if (listener_index(inst->endpoint.address) == listener)
            return inst;
        rsv_instance_release(inst, 0);
    }
    return NULL;
}

/* How many of `n` picks (each released at once) were of `listener`. */
static int picks_of(int listener, int n)
{
    int hits = 0;
    for (int i = 0; i < n; i++) {
        rsv_instance *inst = pick();
        ck_assert_ptr_nonnull(inst);
        hits += listener_index(inst->endpoint.address) == listener;
        rsv_instance_release(inst, 0);
    }
    return hits;
}

/* ---- reconcile ---- */

START_TEST(snapshot_replaces_the_set)
{
    start();
    ck_assert(!rsv_service_synced(f.svc));
    ck_assert_ptr_null(pick()); /* not listed yet */
    static const char *const keys1[] = {"svc/1", "svc/2"};
    snapshot(keys1, (const int[]){0, 1}, 2);
    ck_assert(rsv_service_synced(f.svc));
    run_until_ready(2);
    ck_assert_int_gt(picks_of(0, 10), 0);
    rsv_instance *b = instance(1);
    int pickers = f.pickers;
    /* The next listing has B and C: A goes, B stays the same instance. */
    static const char *const keys2[] = {"svc/2", "svc/3"};
    snapshot(keys2, (const int[]){1, 2}, 2);
    /* Its changes publish one picker, at the end of the iteration. */
    ck_assert_int_eq(f.pickers, pickers);
    rsv_loop_run_once(f.loop, 0);
    ck_assert_int_eq(f.pickers, pickers + 1);
    ck_assert_str_eq(f.events, "added A;added B;added C;removed A;closed A;");
    ck_assert_ptr_eq(instance(1), b);
    ck_assert_ptr_null(instance(0));
    run_until_ready(2);
    ck_assert_int_eq(picks_of(0, 20), 0);
    ck_assert_int_gt(picks_of(2, 20), 0);
}
END_TEST

START_TEST(delete_and_put_in_one_batch_keeps_the_instance)
{
    start();
    static const char *const keys[] = {"svc/old"};
    snapshot(keys, (const int[]){0}, 1);
    run_until_ready(1);
    rsv_instance *a = instance(0);
    int pickers = f.pickers;
    /* One watch message: the old lease's key goes, a new one names A. */
    batch(1);
    del("svc/old");
    put("svc/new", 0);
    batch(0);
    ck_assert_ptr_eq(instance(0), a);
    ck_assert_uint_eq(a->n_keys, 1);
    ck_assert_str_eq(f.events, "added A;");
    ck_assert_str_eq(rsv_instance_state_name(a), "READY");
    /* Nothing a pick depends on changed: no new picker. */
    rsv_loop_run_once(f.loop, 0);
    ck_assert_int_eq(f.pickers, pickers);
    ck_assert_int_eq(picks_of(0, 5), 5);
    /* The same outside a batch: the instance goes. */
    del("svc/new");
    ck_assert_str_eq(f.events, "added A;removed A;closed A;");
    rsv_loop_run_once(f.loop, 0);
    ck_assert_ptr_null(pick());
}
END_TEST

/* ---- drain ---- */

START_TEST(removed_instance_drains_until_its_picks_are_released)
{
    f.opts.drain_timeout_ms = 60000;
    start();
    static const char *const keys[] = {"svc/1", "svc/2"};
    snapshot(keys, (const int[]){0, 1}, 2);
    run_until_ready(2);
    rsv_instance *held = pick_of(0);
    ck_assert_ptr_nonnull(held);
    del("svc/1");
    ck_assert_str_eq(f.events, "added A;added B;removed A;");
    ck_assert_str_eq(rsv_instance_state_name(held), "DRAINING");
    ck_assert_uint_eq(rsv_service_instance_count(f.svc), 2);
    rsv_loop_run_once(f.loop, 0);
    ck_assert_int_eq(picks_of(0, 20), 0); /* no new picks */
    rsv_instance_release(held, 0);        /* the last one: closed now */
    ck_assert_str_eq(f.events, "added A;added B;removed A;closed A;");
    ck_assert_uint_eq(rsv_service_instance_count(f.svc), 1);
}
END_TEST

START_TEST(drain_ends_at_drain_timeout)
{
    f.opts.drain_timeout_ms = 150;
    start();
    static const char *const keys[] = {"svc/1", "svc/2"};
    snapshot(keys, (const int[]){0, 1}, 2);
    run_until_ready(2);
    rsv_instance *held = pick_of(0);
    ck_assert_ptr_nonnull(held);
    uint64_t t0 = mono_ms();
    del("svc/1");
    ck_assert(run_until_event("closed A;", 5000));
    ck_assert_uint_ge(mono_ms() - t0, 140);
    ck_assert_uint_eq(rsv_service_instance_count(f.svc), 1);
    /* The pick outlives its instance's removal; releasing it is safe. */
    ck_assert_ptr_null(held->service);
    rsv_instance_release(held, 1);
}
END_TEST

/* ---- self-preservation and revival ---- */

START_TEST(mass_deletion_keeps_ready_instances_stale_until_listed_again)
{
    f.opts.self_preservation_percent = 50;
    start();
    static const char *const keys[] = {"svc/1", "svc/2", "svc/3", "svc/4"};
    snapshot(keys, (const int[]){0, 1, 2, 3}, 4);
    run_until_ready(4);
    /* Three of four leases expire in one message: 1 of 4 would be left,
     * below 50 %, so the three stay, STALE and pickable. */
    batch(1);
    del("svc/1");
    del("svc/2");
    del("svc/3");
    batch(0);
    ck_assert_uint_eq(rsv_service_stale_count(f.svc), 3);
    ck_assert_uint_eq(rsv_service_instance_count(f.svc), 4);
    ck_assert_str_eq(rsv_instance_state_name(instance(0)), "STALE");
    ck_assert_uint_eq(instance(0)->n_keys, 0);
    ck_assert_ptr_null(strstr(f.events, "removed"));
    rsv_loop_run_once(f.loop, 0);
    ck_assert_int_gt(picks_of(0, 20), 0);
    /* A key names A again: an ordinary instance, the same one. */
    rsv_instance *a = instance(0);
    put("svc/1b", 0);
    ck_assert_ptr_eq(instance(0), a);
    ck_assert_uint_eq(a->n_keys, 1);
    ck_assert_str_eq(rsv_instance_state_name(a), "READY");
    ck_assert_uint_eq(rsv_service_stale_count(f.svc), 2);
    ck_assert_uint_eq(rsv_service_counters_get(f.svc)->self_preservation_events, 1);
}
END_TEST

START_TEST(one_deletion_of_many_is_no_storm)
{
    f.opts.self_preservation_percent = 50;
    start();
    static const char *const keys[] = {"svc/1", "svc/2", "svc/3", "svc/4"};
    snapshot(keys, (const int[]){0, 1, 2, 3}, 4);
    run_until_ready(4);
    del("svc/1"); /* 3 of 4 stay: a rolling deploy, not a storm */
    ck_assert_uint_eq(rsv_service_stale_count(f.svc), 0);
    ck_assert_ptr_nonnull(strstr(f.events, "removed A;closed A;"));
}
END_TEST

/* ---- outlier ejection ---- */

START_TEST(consecutive_failures_eject_and_the_instance_returns)
{
    f.opts.outlier.consecutive_failures = 3;
    f.opts.outlier.base_ejection_ms = 300;
    f.opts.outlier.max_ejection_ms = 300;
    f.opts.outlier.max_ejection_percent = 50;
    start();
    static const char *const keys[] = {"svc/1", "svc/2"};
    snapshot(keys, (const int[]){0, 1}, 2);
    run_until_ready(2);
    rsv_instance *a = instance(0);
    for (int i = 0; i < 3; i++) {
        rsv_instance *inst = pick_of(0);
        ck_assert_ptr_nonnull(inst);
        ck_assert(!a->ejected);
        rsv_instance_release(inst, 1);
    }
    uint64_t t0 = mono_ms();
    ck_assert(a->ejected);
    ck_assert_uint_eq(a->times_ejected, 1);
    ck_assert_uint_eq(rsv_service_counters_get(f.svc)->ejections, 1);
    rsv_loop_run_once(f.loop, 0);
    ck_assert_int_eq(picks_of(0, 20), 0);
    /* max_ejection_percent: B may not go too, however it fails. */
    for (int i = 0; i < 5; i++) {
        rsv_instance *inst = pick_of(1);
        ck_assert_ptr_nonnull(inst);
        rsv_instance_release(inst, 1);
    }
    ck_assert(!instance(1)->ejected);
    /* Back after base_ejection_ms. */
    while (a->ejected && mono_ms() < t0 + 5000)
        rsv_loop_run_once(f.loop, 10);
    ck_assert(!a->ejected);
    ck_assert_uint_ge(mono_ms() - t0, 250);
    ck_assert_int_gt(picks_of(0, 20), 0);
}
END_TEST

static Suite *service_suite(void)
{
    Suite *s = suite_create("service");
    TCase *tc = tcase_create("fed");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, snapshot_replaces_the_set);
    tcase_add_test(tc, delete_and_put_in_one_batch_keeps_the_instance);
    tcase_add_test(tc, removed_instance_drains_until_its_picks_are_released);
    tcase_add_test(tc, drain_ends_at_drain_timeout);
    tcase_add_test(tc, mass_deletion_keeps_ready_instances_stale_until_listed_again);
    tcase_add_test(tc, one_deletion_of_many_is_no_storm);
    tcase_add_test(tc, consecutive_failures_eject_and_the_instance_returns);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(service_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
