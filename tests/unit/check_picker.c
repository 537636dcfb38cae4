/*
 * check_picker.c - the balancing policies (lib/picker.c) with stated
 * tolerances, XXH64 vectors, and lock-free picking from several threads
 * while the snapshot is replaced (run it under ASan/TSan).
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "hazard.h"
#include "picker.h"
#include "instance.h"

static rsv_instance *new_instance(const char *address, uint32_t weight)
{
    rsv_endpoint ep = {.weight = weight};
    snprintf(ep.address, sizeof(ep.address), "%s", address);
    rsv_instance *inst = rsv_instance_new(&ep, NULL);
    ck_assert_ptr_nonnull(inst);
    return inst;
}

typedef struct {
    rsv_instance *inst[16];
    size_t n;
} fleet;

static void fleet_make(fleet *f, size_t n, const uint32_t *weights)
{
    f->n = n;
    for (size_t i = 0; i < n; i++) {
        char addr[64];
        snprintf(addr, sizeof(addr), "10.0.0.%zu:9000", i + 1);
        f->inst[i] = new_instance(addr, weights ? weights[i] : 1);
    }
}

static void fleet_free(fleet *f)
{
    for (size_t i = 0; i < f->n; i++)
        rsv_instance_unref(f->inst[i]);
}

/* Picks and immediately "releases" (outstanding back down), as a caller
 * that reports done at once would. */
static rsv_instance *pick_release(rsv_picker *p, const char *key)
{
    rsv_instance *inst = rsv_picker_pick(p, key);
    if (inst) {
        atomic_fetch_sub(&inst->outstanding, 1);
        atomic_fetch_sub(&inst->refs, 1); /* never the last: the picker holds one */
    }
    return inst;
}

static size_t index_of(const fleet *f, const rsv_instance *inst)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->inst[i] == inst)
            return i;
    ck_abort_msg("picked an instance that is not in the fleet");
    return 0;
}

START_TEST(xxh64_vectors)
{
    ck_assert_uint_eq(rsv_xxh64("", 0, 0), 0xEF46DB3751D8E999ULL);
    ck_assert_uint_eq(rsv_xxh64("a", 1, 0), 0xD24EC4F1A98C6E5BULL);
    ck_assert_uint_eq(rsv_xxh64("abc", 3, 0), 0x44BC2CF5AD770999ULL);
    /* Longer than 32 bytes exercises the four-lane loop; same input twice
     * must hash the same, a one-byte change differently. */
    const char *long_text = "The quick brown fox jumps over the lazy dog, twice over.";
    uint64_t h = rsv_xxh64(long_text, strlen(long_text), 0);
    ck_assert_uint_eq(h, rsv_xxh64(long_text, strlen(long_text), 0));
    ck_assert_uint_ne(h, rsv_xxh64(long_text, strlen(long_text) - 1, 0));
}
END_TEST

START_TEST(round_robin_rotates_exactly)
{
    fleet f;
    fleet_make(&f, 3, NULL);
    rsv_picker *p = rsv_picker_new(RSV_POLICY_ROUND_ROBIN, 2, 0, f.inst, f.n);
    size_t first = index_of(&f, pick_release(p, NULL));
    for (size_t k = 1; k < 300; k++)
        ck_assert_uint_eq(index_of(&f, pick_release(p, NULL)), (first + k) % 3);
    rsv_picker_free(p);
    fleet_free(&f);
}
END_TEST

START_TEST(pick_first_and_max_outstanding)
{
    fleet f;
    fleet_make(&f, 3, NULL);
    rsv_picker *p = rsv_picker_new(RSV_POLICY_PICK_FIRST, 2, 2, f.inst, f.n);
    /* Holding picks: the first instance takes two, then the next one. */
    rsv_instance *a = rsv_picker_pick(p, NULL), *b = rsv_picker_pick(p, NULL);
    rsv_instance *c = rsv_picker_pick(p, NULL);
    ck_assert_ptr_eq(a, f.inst[0]);
    ck_assert_ptr_eq(b, f.inst[0]);
    ck_assert_ptr_eq(c, f.inst[1]);
    for (int i = 0; i < 3; i++)
        rsv_picker_pick(p, NULL);
    /* 3 instances x max 2: the seventh pick finds no room. */
    ck_assert_ptr_null(rsv_picker_pick(p, NULL));
    for (size_t i = 0; i < f.n; i++) {
        ck_assert_uint_eq(atomic_load(&f.inst[i]->outstanding), 2);
        atomic_store(&f.inst[i]->refs, 2); /* fleet + picker; drop the picks' refs */
    }
    rsv_picker_free(p);
    fleet_free(&f);
}
END_TEST

START_TEST(weighted_proportions_within_two_percent)
{
    static const uint32_t weights[] = {1, 2, 7, 10};
    fleet f;
    fleet_make(&f, 4, weights);
    rsv_picker *p = rsv_picker_new(RSV_POLICY_WEIGHTED_ROUND_ROBIN, 2, 0, f.inst, f.n);
    size_t counts[4] = {0}, n = 100000;
    for (size_t k = 0; k < n; k++)
        counts[index_of(&f, pick_release(p, NULL))]++;
    for (size_t i = 0; i < 4; i++) {
        double share = (double)counts[i] / (double)n, want = weights[i] / 20.0;
        ck_assert_msg(share > want - 0.02 && share < want + 0.02,
                      "weight %u: share %.4f, want %.4f +- 0.02", weights[i], share, want);
    }
    /* Smooth, not bursty: the heaviest never gets more than a few picks in
     * a row. */
    size_t run = 0, longest = 0;
    for (size_t k = 0; k < 1000; k++) {
        run = index_of(&f, pick_release(p, NULL)) == 3 ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    ck_assert_uint_le(longest, 4);
    rsv_picker_free(p);
    fleet_free(&f);
}
END_TEST

START_TEST(least_request_avoids_the_busy_instance)
{
    fleet f;
    fleet_make(&f, 2, NULL);
    atomic_store(&f.inst[0]->outstanding, 10);
    rsv_picker *p = rsv_picker_new(RSV_POLICY_LEAST_REQUEST, 2, 0, f.inst, f.n);
    size_t counts[2] = {0};
    for (size_t k = 0; k < 10000; k++)
        counts[index_of(&f, pick_release(p, NULL))]++;
    /* P2C over 2 instances picks the busy one only when both draws hit it:
     * about a quarter of the time. */
    ck_assert_uint_gt(counts[1], counts[0] * 2);
    ck_assert_uint_gt(counts[0], 1500);
    ck_assert_uint_lt(counts[0], 3500);
    rsv_picker_free(p);
    fleet_free(&f);
}
END_TEST

/* Picks `n` times, reporting `slow_ms` for instance `slow` and `fast_ms`
 * for the others as each done would; counts the picks of each. */
static void pick_report(rsv_picker *p, const fleet *f, size_t n, size_t slow, uint32_t fast_ms,
                        uint32_t slow_ms, size_t *counts)
{
    for (size_t k = 0; k < n; k++) {
        rsv_instance *inst = pick_release(p, NULL);
        size_t i = index_of(f, inst);
        counts[i]++;
        rsv_instance_latency_sample(inst, i == slow ? slow_ms : fast_ms, 10000);
    }
}

START_TEST(least_latency_gives_a_slow_instance_a_small_share)
{
    fleet f;
    fleet_make(&f, 3, NULL);
    rsv_picker *p = rsv_picker_new(RSV_POLICY_LEAST_LATENCY, 2, 0, f.inst, f.n);
    rsv_picker_set_latency_decay(p, 10000);
    size_t counts[3] = {0};
    pick_report(p, &f, 3000, 2, 10, 50, counts);
    /* Two distinct candidates of three: the slow one is only ever picked
     * before its first sample (round_robin would give it 1000). */
    ck_assert_msg(counts[2] <= 300, "slow instance: %zu of 3000", counts[2]);
    ck_assert_msg(counts[0] > 1200 && counts[1] > 1200, "fast ones: %zu, %zu", counts[0],
                  counts[1]);
    rsv_picker_free(p);
    fleet_free(&f);
}
END_TEST

START_TEST(least_latency_tries_an_unsampled_instance)
{
    fleet f;
    fleet_make(&f, 4, NULL);
    for (size_t i = 0; i < 3; i++)
        rsv_instance_latency_sample(f.inst[i], 10, 10000);
    rsv_picker *p = rsv_picker_new(RSV_POLICY_LEAST_LATENCY, 2, 0, f.inst, f.n);
    size_t counts[4] = {0};
    for (size_t k = 0; k < 1000; k++)
        counts[index_of(&f, pick_release(p, NULL))]++;
    /* Without a sample it counts as the cheapest: picked whenever it is
     * one of the two drawn, half of the time. */
    ck_assert_msg(counts[3] > 400 && counts[3] < 600, "unsampled instance: %zu of 1000", counts[3]);
    /* Its first figure, a slow one, ends that. */
    rsv_instance_latency_sample(f.inst[3], 50, 10000);
    memset(counts, 0, sizeof(counts));
    for (size_t k = 0; k < 1000; k++)
        counts[index_of(&f, pick_release(p, NULL))]++;
    ck_assert_msg(counts[3] == 0, "sampled slow instance: %zu of 1000", counts[3]);
    rsv_picker_free(p);
    fleet_free(&f);
}
END_TEST

START_TEST(least_latency_weighs_outstanding_picks)
{
    fleet f;
    fleet_make(&f, 2, NULL);
    rsv_instance_latency_sample(f.inst[0], 10, 10000);
    rsv_instance_latency_sample(f.inst[1], 10, 10000);
    atomic_store(&f.inst[0]->outstanding, 10);
    rsv_picker *p = rsv_picker_new(RSV_POLICY_LEAST_LATENCY, 2, 0, f.inst, f.n);
    size_t counts[2] = {0};
    for (size_t k = 0; k < 1000; k++)
        counts[index_of(&f, pick_release(p, NULL))]++;
    ck_assert_uint_eq(counts[1], 1000);
    /* Enough faster outweighs ten more outstanding: 2 x 11 < 50 x 1. */
    rsv_instance_latency_sample(f.inst[0], 2, 10);
    usleep(100 * 1000); /* 10 time constants: the 2 replaces the 10 */
    rsv_instance_latency_sample(f.inst[0], 2, 10);
    rsv_instance_latency_sample(f.inst[1], 50, 10);
    ck_assert_ptr_eq(pick_release(p, NULL), f.inst[0]);
    rsv_picker_free(p);
    fleet_free(&f);
}
END_TEST

START_TEST(latency_average_is_peak_sensitive_and_decays)
{
    fleet f;
    fleet_make(&f, 1, NULL);
    rsv_instance *inst = f.inst[0];
    /* Times are given, not slept through: the intervals are exact even on
     * a loaded machine. */
    uint64_t now = 1000000;
    ck_assert(rsv_instance_latency_estimate(inst, now, 10000) == 0.0);
    rsv_instance_latency_sample_at(inst, 10, 10000, now);
    ck_assert(fabs(rsv_instance_latency_estimate(inst, now, 10000) - 10) < 0.1);
    /* A peak replaces the average at once... */
    now += 1000;
    rsv_instance_latency_sample_at(inst, 50, 10000, now);
    ck_assert(fabs(rsv_instance_latency_estimate(inst, now, 10000) - 50) < 0.5);
    /* ...a low sample a millisecond later barely moves it... */
    now += 1000;
    rsv_instance_latency_sample_at(inst, 10, 10000, now);
    double e = rsv_instance_latency_estimate(inst, now, 10000);
    ck_assert_msg(e > 49, "%f", e);
    /* ...and one after many time constants replaces it. */
    now += 200 * 1000;
    rsv_instance_latency_sample_at(inst, 10, 20, now);
    e = rsv_instance_latency_estimate(inst, now, 20);
    ck_assert_msg(e > 9.9 && e < 10.5, "%f", e);
    /* Without samples it fades towards 0: to 1/e in decay_ms. */
    e = rsv_instance_latency_estimate(inst, now + 20 * 1000, 20);
    ck_assert_msg(fabs(e - 10 / M_E) < 0.1, "%f", e);
    fleet_free(&f);
}
END_TEST

START_TEST(least_latency_tries_a_slow_instance_again_after_a_while)
{
    fleet f;
    fleet_make(&f, 2, NULL);
    rsv_picker *p = rsv_picker_new(RSV_POLICY_LEAST_LATENCY, 2, 0, f.inst, f.n);
    rsv_picker_set_latency_decay(p, 20);
    rsv_instance_latency_sample(f.inst[0], 50, 20);
    rsv_instance_latency_sample(f.inst[1], 10, 20);
    ck_assert_ptr_eq(pick_release(p, NULL), f.inst[1]);
    /* The fast one keeps answering, the slow one is left alone: after
     * ln 5 time constants (32 ms) its average has faded below. */
    size_t slow = 0;
    for (int k = 0; k < 200 && slow == 0; k++) {
        usleep(1000);
        rsv_instance *inst = pick_release(p, NULL);
        if (inst == f.inst[0])
            slow++;
        else
            rsv_instance_latency_sample(inst, 10, 20);
    }
    ck_assert_uint_eq(slow, 1);
    rsv_picker_free(p);
    fleet_free(&f);
}
END_TEST

START_TEST(random_reaches_everyone)
{
    fleet f;
    fleet_make(&f, 5, NULL);
    rsv_picker *p = rsv_picker_new(RSV_POLICY_RANDOM, 2, 0, f.inst, f.n);
    size_t counts[5] = {0};
    for (size_t k = 0; k < 10000; k++)
        counts[index_of(&f, pick_release(p, NULL))]++;
    for (size_t i = 0; i < 5; i++)
        ck_assert_msg(counts[i] > 1600 && counts[i] < 2400, "instance %zu: %zu", i, counts[i]);
    rsv_picker_free(p);
    fleet_free(&f);
}
END_TEST

START_TEST(ring_hash_is_stable_and_moves_little)
{
    fleet f;
    fleet_make(&f, 10, NULL);
    rsv_picker *all = rsv_picker_new(RSV_POLICY_RING_HASH, 2, 0, f.inst, f.n);
    rsv_picker *again = rsv_picker_new(RSV_POLICY_RING_HASH, 2, 0, f.inst, f.n);
    /* One of ten leaves (index 3). */
    rsv_instance *rest[9];
    for (size_t i = 0, k = 0; i < 10; i++)
        if (i != 3)
            rest[k++] = f.inst[i];
    rsv_picker *fewer = rsv_picker_new(RSV_POLICY_RING_HASH, 2, 0, rest, 9);
    size_t moved = 0, keys = 10000, per[10] = {0};
    for (size_t k = 0; k < keys; k++) {
        char key[32];
        snprintf(key, sizeof(key), "user-%zu", k);
        rsv_instance *a = pick_release(all, key);
        ck_assert_ptr_eq(a, pick_release(all, key));   /* same key, same instance */
        ck_assert_ptr_eq(a, pick_release(again, key)); /* same set, same ring */
        rsv_instance *b = pick_release(fewer, key);
        per[index_of(&f, a)]++;
        if (a != b) {
            moved++;
            ck_assert_ptr_eq(a, f.inst[3]); /* only the leaver's keys move */
        }
    }
    ck_assert_msg(moved <= keys / 10 + keys / 50, "%zu of %zu keys moved", moved, keys);
    for (size_t i = 0; i < 10; i++)
        ck_assert_msg(per[i] > keys / 20, "instance %zu owns only %zu keys", i, per[i]);
    rsv_picker_free(all);
    rsv_picker_free(again);
    rsv_picker_free(fewer);
    fleet_free(&f);
}
END_TEST

START_TEST(empty_picker_reports_its_reason)
{
    rsv_picker *p = rsv_picker_new(RSV_POLICY_ROUND_ROBIN, 2, 0, NULL, 0);
    rsv_picker_set_reason(p, -506, "none ready for x: 2 CONNECTING");
    const char *why;
    ck_assert_ptr_null(rsv_picker_pick(p, NULL));
    ck_assert_int_eq(rsv_picker_reason(p, &why), -506);
    ck_assert_str_eq(why, "none ready for x: 2 CONNECTING");
    rsv_picker_free(p);
}
END_TEST

/* ---- four threads pick while the snapshot churns ---- */

typedef struct {
    _Atomic(void *) current;
    atomic_int stop;
    atomic_uint_fast64_t picks;
} churn_state;

static void *picker_thread(void *arg)
{
    churn_state *st = arg;
    while (!atomic_load(&st->stop)) {
        rsv_picker *p = rsv_hazard_protect(RESOLVER_HAZARD_PICKER, &st->current);
        rsv_instance *inst = rsv_picker_pick(p, "k");
        if (inst) {
            /* Touch what a caller touches: the address. */
            ck_assert_uint_gt(strlen(inst->endpoint.address), 0);
            rsv_instance_latency_sample(inst, (uint32_t)(atomic_load(&st->picks) % 7), 100);
            atomic_fetch_sub(&inst->outstanding, 1);
            atomic_fetch_sub(&inst->refs, 1);
            atomic_fetch_add(&st->picks, 1);
        }
        rsv_hazard_clear(RESOLVER_HAZARD_PICKER);
    }
    return NULL;
}

START_TEST(threads_pick_while_snapshots_churn)
{
    static const rsv_policy policies[] = {RSV_POLICY_ROUND_ROBIN,   RSV_POLICY_WEIGHTED_ROUND_ROBIN,
                                          RSV_POLICY_LEAST_REQUEST, RSV_POLICY_RING_HASH,
                                          RSV_POLICY_RANDOM,        RSV_POLICY_LEAST_LATENCY};
    rsv_hazard_domain *d = rsv_hazard_domain_new();
    churn_state st;
    atomic_init(&st.stop, 0);
    atomic_init(&st.picks, 0);
    atomic_init(&st.current, NULL);
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, picker_thread, &st), 0);
    /* The "engine": new instances and a new snapshot every round; the old
     * instances' last references go with the old snapshot. */
    for (int round = 0; round < 2000; round++) {
        fleet f;
        uint32_t weights[6] = {1, 2, 3, 4, 5, 6};
        fleet_make(&f, (size_t)(round % 6) + 1, weights);
        rsv_picker *p = rsv_picker_new(policies[(round / 6) % 6], 2, 0, f.inst, f.n);
        fleet_free(&f); /* the picker holds the only references now */
        rsv_hazard_retire(d, atomic_exchange(&st.current, p), rsv_picker_free);
    }
    atomic_store(&st.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    rsv_hazard_retire(d, atomic_exchange(&st.current, NULL), rsv_picker_free);
    rsv_hazard_domain_del(d);
    ck_assert_uint_gt(atomic_load(&st.picks), 0);
}
END_TEST

static Suite *picker_suite(void)
{
    Suite *s = suite_create("picker");
    TCase *tc = tcase_create("policies");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, xxh64_vectors);
    tcase_add_test(tc, round_robin_rotates_exactly);
    tcase_add_test(tc, pick_first_and_max_outstanding);
    tcase_add_test(tc, weighted_proportions_within_two_percent);
    tcase_add_test(tc, least_request_avoids_the_busy_instance);
    tcase_add_test(tc, least_latency_gives_a_slow_instance_a_small_share);
    tcase_add_test(tc, least_latency_tries_an_unsampled_instance);
    tcase_add_test(tc, least_latency_weighs_outstanding_picks);
    tcase_add_test(tc, latency_average_is_peak_sensitive_and_decays);
    tcase_add_test(tc, least_latency_tries_a_slow_instance_again_after_a_while);
    tcase_add_test(tc, random_reaches_everyone);
    tcase_add_test(tc, ring_hash_is_stable_and_moves_little);
    tcase_add_test(tc, empty_picker_reports_its_reason);
    tcase_add_test(tc, threads_pick_while_snapshots_churn);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(picker_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
