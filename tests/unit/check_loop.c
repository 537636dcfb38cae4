/*
 * check_loop.c - unit tests for lib/loop.c.
 *
 * The rules under test are the numbered ones in lib/loop.h; each test names
 * the rule it exercises.  Tests that wait on real time use short deadlines
 * (tens of ms) and generous upper bounds, so they stay fast but do not flake
 * on a loaded machine or under valgrind.
 */
/* pipe2 and dup3 (O_CLOEXEC/O_NONBLOCK in one call) are GNU extensions. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "loop.h"
#include "resolver.h"

/* ---- helpers ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* An ordered record of which callbacks ran. */
#define LOG_MAX 32768
static int log_buf[LOG_MAX];
static size_t log_len;

static void log_reset(void)
{
    log_len = 0;
}

static void log_push(int v)
{
    ck_assert_uint_lt(log_len, LOG_MAX);
    log_buf[log_len++] = v;
}

static void log_expect(const int *want, size_t n)
{
    ck_assert_uint_eq(log_len, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(log_buf[i] == want[i], "log[%zu] = %d, expected %d", i, log_buf[i], want[i]);
}

/* Iterates until *done is non-zero or max_ms pass; returns *done. */
static int run_until(rsv_loop *loop, const int *done, unsigned max_ms)
{
    uint64_t end = mono_ms() + max_ms;
    while (!*done && mono_ms() < end)
        ck_assert_int_eq(rsv_loop_run_once(loop, 10), 0);
    return *done;
}

static int run_until_log(rsv_loop *loop, size_t n, unsigned max_ms)
{
    uint64_t end = mono_ms() + max_ms;
    while (log_len < n && mono_ms() < end)
        ck_assert_int_eq(rsv_loop_run_once(loop, 10), 0);
    return log_len >= n;
}

static rsv_loop *new_loop(void)
{
    rsv_loop *loop = rsv_loop_new();
    ck_assert_ptr_nonnull(loop);
    log_reset();
    return loop;
}

static void make_pipe(int p[2])
{
    ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

static void write_byte(int fd)
{
    ck_assert_int_eq(write(fd, "x", 1), 1);
}

/* Reads whatever is there; returns the byte count (0 when empty). */
static ssize_t drain_fd(int fd)
{
    char buf[4096];
    ssize_t total = 0, n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        total += n;
    return total;
}

/* Whether `fd` is readable right now, by poll(2). */
static int poll_readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    ck_assert_int_ge(n, 0);
    return n == 1 && (p.revents & POLLIN);
}

/* ---- timers ---- */

typedef struct rec {
    int id;
    rsv_loop *loop;
    rsv_timer *t;
    uint64_t due;      /* the loop's now at start + ms */
    struct rec *other; /* a peer the callback acts on */
    int action;        /* what the callback does, per test */
    int calls;
    uint64_t fired_now; /* rsv_loop_now() seen by the callback */
} rec;

static void rec_start(rec *r, uint64_t ms)
{
    r->due = rsv_loop_now(r->loop) + ms;
    rsv_timer_start(r->t, ms);
}

static void rec_init(rec *r, rsv_loop *loop, int id, rsv_timer_cb cb)
{
    memset(r, 0, sizeof(*r));
    r->id = id;
    r->loop = loop;
    r->t = rsv_timer_new(loop, cb, r);
    ck_assert_ptr_nonnull(r->t);
}

static void rec_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rec *r = arg;
    ck_assert_ptr_eq(t, r->t);
    ck_assert_ptr_eq(loop, r->loop);
    ck_assert(!rsv_timer_active(t)); /* disarmed before its callback */
    ck_assert_uint_ge(rsv_loop_now(loop), r->due);
    r->calls++;
    r->fired_now = rsv_loop_now(loop);
    log_push(r->id);
}

/* Rule 4: deadline order. */
START_TEST(timer_deadline_order)
{
    rsv_loop *loop = new_loop();
    static const uint64_t ms[] = {30, 10, 20, 0, 5};
    rec r[5];
    for (int i = 0; i < 5; i++) {
        rec_init(&r[i], loop, i, rec_cb);
        rec_start(&r[i], ms[i]);
        ck_assert(rsv_timer_active(r[i].t));
    }
    ck_assert(run_until_log(loop, 5, 2000));
    static const int want[] = {3, 4, 1, 2, 0};
    log_expect(want, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert(!rsv_timer_active(r[i].t));
        rsv_timer_del(r[i].t);
    }
    ck_assert_int_eq(rsv_loop_timeout(loop), -1);
    rsv_loop_del(loop);
}
END_TEST

/* Rule 4: equal deadlines fire in start order, whatever the allocation
 * order; a restart moves a timer behind the others with its deadline. */
START_TEST(timer_ties_start_order)
{
    rsv_loop *loop = new_loop();
    rec r[8];
    for (int i = 0; i < 8; i++)
        rec_init(&r[i], loop, i, rec_cb);
    static const int order[] = {5, 2, 7, 0, 3, 6, 1, 4};
    for (int i = 0; i < 8; i++)
        rec_start(&r[order[i]], 5);
    rec_start(&r[2], 5); /* restart: now last among the 5 ms timers */
    ck_assert(run_until_log(loop, 8, 2000));
    static const int want[] = {5, 7, 0, 3, 6, 1, 4, 2};
    log_expect(want, 8);
    /* Timers due in one phase see one "now" (rule 5). */
    for (int i = 1; i < 8; i++)
        ck_assert_uint_eq(r[i].fired_now, r[0].fired_now);
    for (int i = 0; i < 8; i++)
        rsv_timer_del(r[i].t);
    rsv_loop_del(loop);
}
END_TEST

START_TEST(timer_active_stop_del)
{
    rsv_loop *loop = new_loop();
    rec r;
    rec_init(&r, loop, 1, rec_cb);
    ck_assert(!rsv_timer_active(r.t));
    rsv_timer_stop(r.t); /* stopping an idle timer is a no-op */
    rec_start(&r, 0);
    ck_assert(rsv_timer_active(r.t));
    ck_assert_int_eq(rsv_loop_timeout(loop), 0);
    rsv_timer_stop(r.t);
    ck_assert(!rsv_timer_active(r.t));
    ck_assert_int_eq(rsv_loop_timeout(loop), -1);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 0);
    /* Restart after stop works and fires once. */
    rec_start(&r, 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert(!rsv_timer_active(NULL));
    rsv_timer_del(NULL);
    rec_start(&r, 1000);
    rsv_timer_del(r.t); /* del of an armed timer disarms it */
    ck_assert_int_eq(rsv_loop_timeout(loop), -1);
    rsv_loop_del(loop);
}
END_TEST

enum {
    ACT_NONE,
    ACT_STOP_OTHER,
    ACT_DEL_OTHER,
    ACT_DEL_SELF,
    ACT_RESTART0_SELF,
    ACT_RESTART_OTHER_LATER,
    ACT_START_OTHER0,
    ACT_STOP_SELF
};

static int in_start; /* set while a callback is inside rsv_timer_start */

static void act_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rec *r = arg;
    ck_assert_msg(!in_start, "timer %d fired inside resolver_timer_start", r->id);
    r->calls++;
    log_push(r->id);
    switch (r->action) {
    case ACT_STOP_OTHER:
        rsv_timer_stop(r->other->t);
        break;
    case ACT_DEL_OTHER:
        rsv_timer_del(r->other->t);
        r->other->t = NULL;
        break;
    case ACT_DEL_SELF:
        rsv_timer_del(t);
        r->t = NULL;
        break;
    case ACT_RESTART0_SELF:
        in_start = 1;
        rsv_timer_start(t, 0);
        in_start = 0;
        ck_assert(rsv_timer_active(t));
        break;
    case ACT_RESTART_OTHER_LATER:
        rsv_timer_start(r->other->t, 60000);
        break;
    case ACT_START_OTHER0:
        in_start = 1;
        rsv_timer_start(r->other->t, 0);
        in_start = 0;
        break;
    case ACT_STOP_SELF:
        rsv_timer_stop(t); /* already disarmed: a no-op */
        ck_assert(!rsv_timer_active(t));
        break;
    default:
        break;
    }
}

/* Rule 2: a timer due in the same phase, stopped by an earlier callback,
 * does not fire. */
START_TEST(timer_stop_other_same_phase)
{
    rsv_loop *loop = new_loop();
    rec a, b;
    rec_init(&a, loop, 1, act_cb);
    rec_init(&b, loop, 2, act_cb);
    a.action = ACT_STOP_OTHER;
    a.other = &b;
    b.action = ACT_STOP_OTHER;
    b.other = &a;
    rec_start(&a, 0);
    rec_start(&b, 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    static const int want[] = {1};
    log_expect(want, 1);
    ck_assert(!rsv_timer_active(b.t));
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    log_expect(want, 1);
    rsv_timer_del(a.t);
    rsv_timer_del(b.t);
    rsv_loop_del(loop);
}
END_TEST

/* Rule 2: a timer due in the same phase, freed by an earlier callback, is
 * neither called nor touched (ASan/valgrind would see a use after free). */
START_TEST(timer_del_other_same_phase)
{
    rsv_loop *loop = new_loop();
    rec r[6];
    for (int i = 0; i < 6; i++)
        rec_init(&r[i], loop, i, act_cb);
    /* 0 deletes 3 (due, in the middle of the heap), 1 deletes 5 (the last
     * heap slot), 2 deletes itself; 4 must still run. */
    r[0].action = ACT_DEL_OTHER;
    r[0].other = &r[3];
    r[1].action = ACT_DEL_OTHER;
    r[1].other = &r[5];
    r[2].action = ACT_DEL_SELF;
    for (int i = 0; i < 6; i++)
        rec_start(&r[i], 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    static const int want[] = {0, 1, 2, 4};
    log_expect(want, 4);
    ck_assert_ptr_null(r[2].t);
    ck_assert_ptr_null(r[3].t);
    ck_assert_ptr_null(r[5].t);
    ck_assert_int_eq(rsv_loop_timeout(loop), -1);
    rsv_timer_del(r[0].t);
    rsv_timer_del(r[1].t);
    rsv_timer_del(r[4].t);
    rsv_loop_del(loop);
}
END_TEST

/* Rule 4: a timer restarting itself for 0 ms fires once per phase, not in a
 * busy loop inside one phase, and other due timers still get their turn. */
START_TEST(timer_restart_self_zero)
{
    rsv_loop *loop = new_loop();
    rec a, b;
    rec_init(&a, loop, 1, act_cb);
    rec_init(&b, loop, 2, act_cb);
    a.action = ACT_RESTART0_SELF;
    rec_start(&a, 0);
    rec_start(&b, 0);
    uint64_t t0 = mono_ms();
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    static const int want1[] = {1, 2};
    log_expect(want1, 2);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(rsv_loop_timeout(loop), 0);
        /* A huge wait: the due timer must make it return at once. */
        ck_assert_int_eq(rsv_loop_run_once(loop, 5000), 0);
        ck_assert_int_eq(a.calls, 2 + i);
    }
    ck_assert_int_eq(b.calls, 1);
    ck_assert_uint_lt(mono_ms() - t0, 2000);
    rsv_timer_del(a.t);
    rsv_timer_del(b.t);
    rsv_loop_del(loop);
}
END_TEST

/* Rule 4: a timer started for 0 ms from a timer callback runs in the next
 * phase, never inside rsv_timer_start. */
START_TEST(timer_start_zero_from_callback)
{
    rsv_loop *loop = new_loop();
    rec a, c;
    rec_init(&a, loop, 1, act_cb);
    rec_init(&c, loop, 3, act_cb);
    a.action = ACT_START_OTHER0;
    a.other = &c;
    rec_start(&a, 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    static const int want1[] = {1};
    log_expect(want1, 1);
    ck_assert(rsv_timer_active(c.t));
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    static const int want2[] = {1, 3};
    log_expect(want2, 2);
    rsv_timer_del(a.t);
    rsv_timer_del(c.t);
    rsv_loop_del(loop);
}
END_TEST

/* A due timer pushed into the future by an earlier callback does not fire. */
START_TEST(timer_restart_other_later)
{
    rsv_loop *loop = new_loop();
    rec a, b, s;
    rec_init(&a, loop, 1, act_cb);
    rec_init(&b, loop, 2, act_cb);
    rec_init(&s, loop, 3, act_cb);
    a.action = ACT_RESTART_OTHER_LATER;
    a.other = &b;
    s.action = ACT_STOP_SELF;
    rec_start(&a, 0);
    rec_start(&b, 0);
    rec_start(&s, 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    static const int want[] = {1, 3};
    log_expect(want, 2);
    ck_assert(rsv_timer_active(b.t));
    int left = rsv_loop_timeout(loop);
    ck_assert_int_gt(left, 50000);
    ck_assert_int_le(left, 60000);
    rsv_timer_del(a.t);
    rsv_timer_del(b.t);
    rsv_timer_del(s.t);
    rsv_loop_del(loop);
}
END_TEST

/* A timer started with a huge delay must not wrap around and fire now. */
START_TEST(timer_huge_delay)
{
    rsv_loop *loop = new_loop();
    rec a;
    rec_init(&a, loop, 1, act_cb);
    rsv_timer_start(a.t, UINT64_MAX);
    ck_assert_int_gt(rsv_loop_timeout(loop), 1000000);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(a.calls, 0);
    rsv_timer_start(a.t, UINT64_MAX - 1000);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(a.calls, 0);
    ck_assert(rsv_timer_active(a.t));
    rsv_timer_del(a.t);
    rsv_loop_del(loop);
}
END_TEST

START_TEST(timeout_values)
{
    rsv_loop *loop = new_loop();
    ck_assert_int_eq(rsv_loop_timeout(loop), -1);
    rec a, b;
    rec_init(&a, loop, 1, rec_cb);
    rec_init(&b, loop, 2, rec_cb);
    rsv_loop_update_time(loop);
    rec_start(&a, 10000);
    int left = rsv_loop_timeout(loop);
    ck_assert_int_gt(left, 9000);
    ck_assert_int_le(left, 10000);
    rec_start(&b, 0);
    ck_assert_int_eq(rsv_loop_timeout(loop), 0);
    rsv_timer_stop(b.t);
    ck_assert_int_gt(rsv_loop_timeout(loop), 9000);
    /* The value counts down with the clock. */
    rsv_timer_start(a.t, 40);
    sleep_ms(60);
    ck_assert_int_eq(rsv_loop_timeout(loop), 0);
    rsv_timer_stop(a.t);
    ck_assert_int_eq(rsv_loop_timeout(loop), -1);
    rsv_timer_del(a.t);
    rsv_timer_del(b.t);
    rsv_loop_del(loop);
}
END_TEST

/* Rule 5: now is read once per iteration; update_time re-reads it. */
START_TEST(loop_now_and_update_time)
{
    rsv_loop *loop = new_loop();
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    uint64_t n0 = rsv_loop_now(loop);
    sleep_ms(30);
    ck_assert_uint_eq(rsv_loop_now(loop), n0);
    uint64_t n1 = rsv_loop_update_time(loop);
    ck_assert_uint_ge(n1, n0 + 25);
    ck_assert_uint_eq(rsv_loop_now(loop), n1);
    ck_assert_int_eq(rsv_loop_run_once(loop, 20), 0);
    ck_assert_uint_ge(rsv_loop_now(loop), n1 + 15);
    rsv_loop_del(loop);
}
END_TEST

/* ---- heap stress against a sorted reference ---- */

#define STRESS_N 10000

static uint64_t rng_state;

static uint32_t rng(void)
{
    /* xorshift64*: reproducible across libcs, unlike rand(). */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ULL) >> 32);
}

typedef struct {
    rsv_timer *t;
    uint64_t ms;
    uint64_t seq; /* the test's own start counter */
    int removed;  /* stopped or deleted before firing */
    int fired;
} stress_ent;

static stress_ent *stress;
static int *stress_ref; /* indices sorted by (ms, seq) */
static size_t stress_ref_pos, stress_fired;
static int stress_in_cb_removals;

static int stress_cmp(const void *pa, const void *pb)
{
    const stress_ent *a = &stress[*(const int *)pa], *b = &stress[*(const int *)pb];
    if (a->ms != b->ms)
        return a->ms < b->ms ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void stress_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    int idx = (int)(intptr_t)arg;
    stress_ent *e = &stress[idx];
    ck_assert_ptr_eq(e->t, t);
    ck_assert(!e->removed && !e->fired);
    /* The next expected timer is the first one in the reference that is
     * neither fired nor removed. */
    while (stress_ref_pos < STRESS_N &&
           (stress[stress_ref[stress_ref_pos]].removed || stress[stress_ref[stress_ref_pos]].fired))
        stress_ref_pos++;
    ck_assert_uint_lt(stress_ref_pos, STRESS_N);
    ck_assert_msg(stress_ref[stress_ref_pos] == idx,
                  "fired timer %d (ms %llu), expected %d (ms %llu) after %zu firings", idx,
                  (unsigned long long)e->ms, stress_ref[stress_ref_pos],
                  (unsigned long long)stress[stress_ref[stress_ref_pos]].ms, stress_fired);
    e->fired = 1;
    stress_fired++;
    /* Now and then stop or free another pending timer from inside the
     * callback: removal at arbitrary heap positions during a phase. */
    if (rng() % 8 == 0) {
        int victim = (int)(rng() % STRESS_N);
        stress_ent *v = &stress[victim];
        if (!v->fired && !v->removed) {
            ck_assert(rsv_timer_active(v->t));
            if (rng() % 2) {
                rsv_timer_stop(v->t);
                ck_assert(!rsv_timer_active(v->t));
            } else {
                rsv_timer_del(v->t);
                v->t = NULL;
            }
            v->removed = 1;
            stress_in_cb_removals++;
        }
    }
    (void)loop;
}

START_TEST(timer_heap_stress)
{
    const char *seed = getenv("LOOP_SEED");
    rng_state = seed ? strtoull(seed, NULL, 0) : 0x9e3779b97f4a7c15ULL;
    if (rng_state == 0)
        rng_state = 1;
    rsv_loop *loop = new_loop();
    stress = calloc(STRESS_N, sizeof(*stress));
    stress_ref = calloc(STRESS_N, sizeof(*stress_ref));
    ck_assert_ptr_nonnull(stress);
    ck_assert_ptr_nonnull(stress_ref);
    stress_ref_pos = stress_fired = 0;
    stress_in_cb_removals = 0;
    uint64_t seq = 0;
    /* All starts happen before the first iteration, so they share the
     * loop's now and the deadline order is the (ms, seq) order. */
    for (int i = 0; i < STRESS_N; i++) {
        stress[i].t = rsv_timer_new(loop, stress_cb, (void *)(intptr_t)i);
        ck_assert_ptr_nonnull(stress[i].t);
        stress[i].ms = rng() % 40;
        stress[i].seq = seq++;
        rsv_timer_start(stress[i].t, stress[i].ms);
    }
    /* Churn: restarts (new deadline, new seq) and stops at random heap
     * positions, so heap_remove's up and down paths both run. */
    for (int i = 0; i < STRESS_N; i++) {
        int j = (int)(rng() % STRESS_N);
        switch (rng() % 5) {
        case 0:
            rsv_timer_stop(stress[j].t);
            stress[j].removed = 1;
            break;
        case 1:
            stress[j].ms = rng() % 40;
            stress[j].seq = seq++;
            rsv_timer_start(stress[j].t, stress[j].ms);
            stress[j].removed = 0;
            break;
        default:
            break;
        }
    }
    size_t expect_active = 0;
    for (int i = 0; i < STRESS_N; i++) {
        stress_ref[i] = i;
        ck_assert_int_eq(rsv_timer_active(stress[i].t), !stress[i].removed);
        expect_active += !stress[i].removed;
    }
    qsort(stress_ref, STRESS_N, sizeof(*stress_ref), stress_cmp);
    uint64_t end = mono_ms() + 20000;
    while (rsv_loop_timeout(loop) != -1 && mono_ms() < end)
        ck_assert_int_eq(rsv_loop_run_once(loop, 100), 0);
    ck_assert_int_eq(rsv_loop_timeout(loop), -1);
    ck_assert_uint_eq(stress_fired + (size_t)stress_in_cb_removals, expect_active);
    ck_assert_int_gt(stress_in_cb_removals, 0);
    for (int i = 0; i < STRESS_N; i++) {
        ck_assert(!rsv_timer_active(stress[i].t));
        rsv_timer_del(stress[i].t);
    }
    free(stress);
    free(stress_ref);
    rsv_loop_del(loop);
}
END_TEST

/* ---- fd watchers ---- */

typedef struct io_rec {
    int id;
    int fd;
    int calls;
    unsigned events;   /* last events seen */
    unsigned all;      /* union of all events seen */
    int drain;         /* read the fd in the callback */
    int unwatch;       /* unwatch the fd in the callback */
    rsv_timer *start0; /* started for 0 ms from the callback */
} io_rec;

static void io_cb(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    io_rec *r = arg;
    ck_assert_int_eq(fd, r->fd);
    ck_assert_uint_ne(events, 0);
    r->calls++;
    r->events = events;
    r->all |= events;
    log_push(r->id);
    if (r->drain && (events & RSV_LOOP_READ))
        drain_fd(fd);
    if (r->unwatch)
        rsv_loop_unwatch(loop, fd);
    if (r->start0)
        rsv_timer_start(r->start0, 0);
}

START_TEST(io_pipe_read)
{
    rsv_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    io_rec r = {.id = 1, .fd = p[0], .drain = 1};
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_READ, io_cb, &r), 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 0);
    write_byte(p[1]);
    ck_assert(run_until(loop, &r.calls, 2000));
    ck_assert_uint_eq(r.events, RSV_LOOP_READ);
    /* Drained: level-triggered, so no further call. */
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 1);
    /* Not drained: level-triggered, called every iteration. */
    r.drain = 0;
    write_byte(p[1]);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r.calls, 3);
    rsv_loop_unwatch(loop, p[0]);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 3);
    close(p[0]);
    close(p[1]);
    rsv_loop_del(loop);
}
END_TEST

START_TEST(io_pipe_write)
{
    rsv_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    io_rec r = {.id = 1, .fd = p[1]};
    ck_assert_int_eq(rsv_loop_watch(loop, p[1], RSV_LOOP_WRITE, io_cb, &r), 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_uint_eq(r.events, RSV_LOOP_WRITE);
    /* Fill the pipe: no longer writable, so no call. */
    char buf[4096];
    memset(buf, 'x', sizeof(buf));
    while (write(p[1], buf, sizeof(buf)) > 0) {
    }
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 1);
    /* Drain it: writable again. */
    drain_fd(p[0]);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r.calls, 2);
    close(p[0]);
    rsv_loop_unwatch(loop, p[1]);
    close(p[1]);
    rsv_loop_del(loop);
}
END_TEST

/* Both directions on a socketpair, and a watch changed from READ|WRITE to
 * READ only (EPOLL_CTL_MOD path). */
START_TEST(io_socketpair_rw)
{
    rsv_loop *loop = new_loop();
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    io_rec a = {.id = 1, .fd = sv[0]}, b = {.id = 2, .fd = sv[1], .drain = 1};
    ck_assert_int_eq(rsv_loop_watch(loop, sv[0], RSV_LOOP_READ | RSV_LOOP_WRITE, io_cb, &a), 0);
    ck_assert_int_eq(rsv_loop_watch(loop, sv[1], RSV_LOOP_READ, io_cb, &b), 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_uint_eq(a.events, RSV_LOOP_WRITE);
    ck_assert_int_eq(b.calls, 0);
    ck_assert_int_eq(write(sv[0], "ping", 4), 4);
    ck_assert_int_eq(rsv_loop_watch(loop, sv[0], RSV_LOOP_READ, io_cb, &a), 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_uint_eq(b.events, RSV_LOOP_READ);
    ck_assert_int_eq(write(sv[1], "pong", 4), 4);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(a.calls, 2);
    ck_assert_uint_eq(a.events, RSV_LOOP_READ);
    char buf[8];
    ck_assert_int_eq(read(sv[0], buf, sizeof(buf)), 4);
    ck_assert_int_eq(memcmp(buf, "pong", 4), 0);
    ck_assert_int_eq(b.calls, 1);
    rsv_loop_unwatch(loop, sv[0]);
    rsv_loop_unwatch(loop, sv[1]);
    close(sv[0]);
    close(sv[1]);
    rsv_loop_del(loop);
}
END_TEST

/* A second watch of the same fd replaces the first; events == 0 (or only
 * the ERROR bit) unwatches. */
START_TEST(io_watch_replace)
{
    rsv_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    io_rec r1 = {.id = 1, .fd = p[0]}, r2 = {.id = 2, .fd = p[0]};
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_READ, io_cb, &r1), 0);
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_READ, io_cb, &r2), 0);
    write_byte(p[1]);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r1.calls, 0);
    ck_assert_int_eq(r2.calls, 1);
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], 0, io_cb, &r1), 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r1.calls + r2.calls, 1);
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_ERROR, io_cb, &r1), 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r1.calls + r2.calls, 1);
    /* And watching again after an unwatch works. */
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_READ, io_cb, &r1), 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r1.calls, 1);
    rsv_loop_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    rsv_loop_del(loop);
}
END_TEST

START_TEST(io_watch_errors)
{
    rsv_loop *loop = new_loop();
    io_rec r = {.id = 1};
    int p[2];
    make_pipe(p);
    ck_assert_int_eq(rsv_loop_watch(loop, -1, RSV_LOOP_READ, io_cb, &r), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(rsv_loop_watch(loop, 1 << 24, RSV_LOOP_READ, io_cb, &r), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_READ, NULL, &r), RESOLVER_ERR_INVALID);
    /* epoll refuses regular files (EPERM) and closed fds (EBADF). */
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(rsv_loop_watch(loop, fileno(f), RSV_LOOP_READ, io_cb, &r), RESOLVER_ERR_IO);
    fclose(f);
    int closed = dup(p[0]);
    close(closed);
    ck_assert_int_eq(rsv_loop_watch(loop, closed, RSV_LOOP_READ, io_cb, &r), RESOLVER_ERR_IO);
    /* Unwatching what is not watched is harmless. */
    rsv_loop_unwatch(loop, p[0]);
    rsv_loop_unwatch(loop, -1);
    rsv_loop_unwatch(loop, 1 << 23);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 0);
    close(p[0]);
    close(p[1]);
    rsv_loop_del(loop);
}
END_TEST

/* Rule 2: a callback unwatching itself and closing its fd gets no further
 * call; a loop freed with fds still watched leaks nothing. */
START_TEST(io_unwatch_self_and_del_with_watchers)
{
    rsv_loop *loop = new_loop();
    int p[2], q[2];
    make_pipe(p);
    make_pipe(q);
    io_rec r = {.id = 1, .fd = p[0], .unwatch = 1};
    io_rec s = {.id = 2, .fd = q[0]};
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_READ, io_cb, &r), 0);
    ck_assert_int_eq(rsv_loop_watch(loop, q[0], RSV_LOOP_READ, io_cb, &s), 0);
    write_byte(p[1]);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 1);
    rsv_loop_del(loop); /* q[0] still watched */
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
}
END_TEST

/* Two fds ready in one iteration; whichever callback runs first acts on the
 * other one according to `mode`. */
enum { PAIR_UNWATCH, PAIR_REWATCH, PAIR_REUSE, PAIR_REUSE_NO_UNWATCH };

typedef struct {
    rsv_loop *loop;
    int mode;
    int rfd[2], wfd[2];
    int calls[2];
    int first;      /* index of the first callback, -1 before */
    int new_w;      /* write end of the pipe that took over the other fd */
    io_rec new_rec; /* watcher of the reused fd number */
} pair_ctx;

static void pair_cb(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    pair_ctx *c = arg;
    int idx = fd == c->rfd[0] ? 0 : 1;
    ck_assert_int_eq(fd, c->rfd[idx]);
    c->calls[idx]++;
    log_push(idx);
    drain_fd(fd);
    if (c->first >= 0)
        return;
    c->first = idx;
    int other = c->rfd[1 - idx];
    switch (c->mode) {
    case PAIR_UNWATCH:
        rsv_loop_unwatch(loop, other);
        break;
    case PAIR_REWATCH:
        /* Same file, new watch: the stale event of the old watch is dropped
         * in this iteration (it is still readable, so it comes next). */
        rsv_loop_unwatch(loop, other);
        ck_assert_int_eq(rsv_loop_watch(loop, other, RSV_LOOP_READ, pair_cb, c), 0);
        break;
    case PAIR_REUSE:
    case PAIR_REUSE_NO_UNWATCH: {
        if (c->mode == PAIR_REUSE)
            rsv_loop_unwatch(loop, other);
        ck_assert_int_eq(close(other), 0);
        int q[2];
        make_pipe(q);
        /* Put the new, empty pipe's read end on the old fd number (pipe2
         * may already have picked it: it is the lowest free one). */
        if (q[0] != other) {
            ck_assert_int_eq(dup3(q[0], other, O_CLOEXEC), other);
            close(q[0]);
        }
        c->new_w = q[1];
        c->new_rec.id = 100;
        c->new_rec.fd = other;
        c->new_rec.drain = 1;
        ck_assert_int_eq(rsv_loop_watch(loop, other, RSV_LOOP_READ, io_cb, &c->new_rec), 0);
        break;
    }
    default:
        break;
    }
}

static void pair_setup(pair_ctx *c, rsv_loop *loop, int mode)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->mode = mode;
    c->first = -1;
    c->new_w = -1;
    for (int i = 0; i < 2; i++) {
        int p[2];
        make_pipe(p);
        c->rfd[i] = p[0];
        c->wfd[i] = p[1];
        ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_READ, pair_cb, c), 0);
    }
    /* Both readable before the iteration starts: one epoll_wait reports
     * both. */
    write_byte(c->wfd[0]);
    write_byte(c->wfd[1]);
}

static void pair_teardown(pair_ctx *c)
{
    for (int i = 0; i < 2; i++) {
        rsv_loop_unwatch(c->loop, c->rfd[i]);
        close(c->rfd[i]);
        close(c->wfd[i]);
    }
    if (c->new_w >= 0)
        close(c->new_w);
}

/* Rule 2: unwatching an fd whose event is already pending in this iteration
 * suppresses that event. */
START_TEST(io_unwatch_other_same_iteration)
{
    rsv_loop *loop = new_loop();
    pair_ctx c;
    pair_setup(&c, loop, PAIR_UNWATCH);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_ge(c.first, 0);
    ck_assert_int_eq(c.calls[c.first], 1);
    ck_assert_int_eq(c.calls[1 - c.first], 0);
    /* The other one stays unwatched, though still readable. */
    ck_assert(poll_readable(c.rfd[1 - c.first], 0));
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(c.calls[1 - c.first], 0);
    pair_teardown(&c);
    rsv_loop_del(loop);
}
END_TEST

START_TEST(io_rewatch_other_same_iteration)
{
    rsv_loop *loop = new_loop();
    pair_ctx c;
    pair_setup(&c, loop, PAIR_REWATCH);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_ge(c.first, 0);
    ck_assert_int_eq(c.calls[1 - c.first], 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(c.calls[1 - c.first], 1);
    ck_assert_int_eq(c.calls[c.first], 1);
    pair_teardown(&c);
    rsv_loop_del(loop);
}
END_TEST

static void check_reuse(int mode)
{
    rsv_loop *loop = new_loop();
    pair_ctx c;
    pair_setup(&c, loop, mode);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_ge(c.first, 0);
    int other = 1 - c.first;
    /* The old fd's pending READ must reach neither the old callback nor the
     * new watcher of the same fd number (the new pipe is empty). */
    ck_assert_int_eq(c.calls[other], 0);
    ck_assert_msg(c.new_rec.calls == 0, "stale event delivered to the new watcher (events %u)",
                  c.new_rec.events);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(c.new_rec.calls, 0);
    /* The new watcher works. */
    write_byte(c.new_w);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(c.new_rec.calls, 1);
    ck_assert_uint_eq(c.new_rec.events, RSV_LOOP_READ);
    ck_assert_int_eq(c.calls[other], 0);
    pair_teardown(&c);
    rsv_loop_del(loop);
}

/* Rule 3: unwatch + close + reuse of the fd number inside one iteration. */
START_TEST(io_reuse_fd_same_iteration)
{
    check_reuse(PAIR_REUSE);
}
END_TEST

/* Rule 3 also where the caller closed the fd without unwatching it first
 * (the kernel forgets it; the loop re-adds it on the next watch). */
START_TEST(io_reuse_fd_without_unwatch)
{
    check_reuse(PAIR_REUSE_NO_UNWATCH);
}
END_TEST

/* ERROR is reported on hang-ups, whether or not it was asked for. */
START_TEST(io_error_on_hangup)
{
    rsv_loop *loop = new_loop();
    int p[2];
    /* Pipe, writer gone: READ watcher sees HUP. */
    make_pipe(p);
    io_rec r = {.id = 1, .fd = p[0]};
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_READ, io_cb, &r), 0);
    close(p[1]);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert(r.events & RSV_LOOP_ERROR);
    rsv_loop_unwatch(loop, p[0]);
    close(p[0]);

    /* Pipe, reader gone: WRITE watcher sees ERR. */
    make_pipe(p);
    io_rec w = {.id = 2, .fd = p[1]};
    ck_assert_int_eq(rsv_loop_watch(loop, p[1], RSV_LOOP_WRITE, io_cb, &w), 0);
    close(p[0]);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(w.calls, 1);
    ck_assert(w.events & RSV_LOOP_ERROR);
    rsv_loop_unwatch(loop, p[1]);
    close(p[1]);

    /* Socketpair, peer closed: READ watcher sees READ (EOF) and ERROR; a
     * WRITE-only watcher sees ERROR too. */
    int sv[2], sw[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sw), 0);
    io_rec s = {.id = 3, .fd = sv[0]}, t = {.id = 4, .fd = sw[0]};
    ck_assert_int_eq(rsv_loop_watch(loop, sv[0], RSV_LOOP_READ, io_cb, &s), 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(s.calls, 0);
    close(sv[1]);
    close(sw[1]);
    ck_assert_int_eq(rsv_loop_watch(loop, sw[0], RSV_LOOP_WRITE, io_cb, &t), 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_uint_eq(s.events, RSV_LOOP_READ | RSV_LOOP_ERROR);
    char c;
    ck_assert_int_eq(read(sv[0], &c, 1), 0); /* EOF */
    ck_assert_int_eq(t.calls, 1);
    ck_assert(t.events & RSV_LOOP_ERROR);
    rsv_loop_unwatch(loop, sv[0]);
    rsv_loop_unwatch(loop, sw[0]);
    close(sv[0]);
    close(sw[0]);
    rsv_loop_del(loop);
}
END_TEST

/* A timer started for 0 ms from an fd callback fires in the same iteration,
 * after the callback returns (rule 4). */
START_TEST(io_starts_timer_zero)
{
    rsv_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    rec t;
    rec_init(&t, loop, 7, rec_cb);
    io_rec r = {.id = 1, .fd = p[0], .drain = 1, .start0 = t.t};
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_READ, io_cb, &r), 0);
    write_byte(p[1]);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    static const int want[] = {1, 7};
    log_expect(want, 2);
    rsv_timer_del(t.t);
    rsv_loop_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    rsv_loop_del(loop);
}
END_TEST

/* More ready fds than one epoll_wait returns (256): all are served, each
 * once, over a few iterations. */
#define MANY 300
START_TEST(io_many_fds)
{
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 2 * MANY + 32) {
        fprintf(stderr, "io_many_fds: RLIMIT_NOFILE too low, skipped\n");
        return;
    }
    rsv_loop *loop = new_loop();
    static int p[MANY][2];
    static io_rec r[MANY];
    for (int i = 0; i < MANY; i++) {
        make_pipe(p[i]);
        r[i] = (io_rec){.id = i, .fd = p[i][0], .drain = 1};
        ck_assert_int_eq(rsv_loop_watch(loop, p[i][0], RSV_LOOP_READ, io_cb, &r[i]), 0);
        write_byte(p[i][1]);
    }
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_uint_eq(log_len, 256);
    ck_assert(run_until_log(loop, MANY, 2000));
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_uint_eq(log_len, MANY);
    for (int i = 0; i < MANY; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        rsv_loop_unwatch(loop, p[i][0]);
        close(p[i][0]);
        close(p[i][1]);
    }
    rsv_loop_del(loop);
}
END_TEST

/* A callback watching a high fd (the watcher table grows and moves) while
 * other events of the same iteration are pending. */
typedef struct {
    int fds[2];
    int high;
    int calls[2];
    int grown;
    io_rec high_rec;
} grow_ctx;

static void grow_cb(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    grow_ctx *g = arg;
    int idx = fd == g->fds[0] ? 0 : 1;
    g->calls[idx]++;
    drain_fd(fd);
    if (!g->grown) {
        g->grown = 1;
        ck_assert_int_eq(rsv_loop_watch(loop, g->high, RSV_LOOP_READ, io_cb, &g->high_rec), 0);
    }
}

START_TEST(io_grow_inside_callback)
{
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    int high = 1000;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur <= 1010)
        high = (int)rl.rlim_cur - 10;
    rsv_loop *loop = new_loop();
    grow_ctx g;
    memset(&g, 0, sizeof(g));
    int p[2], q[2], h[2];
    make_pipe(p);
    make_pipe(q);
    make_pipe(h);
    ck_assert_int_eq(dup3(h[0], high, O_CLOEXEC), high);
    close(h[0]);
    g.fds[0] = p[0];
    g.fds[1] = q[0];
    g.high = high;
    g.high_rec = (io_rec){.id = 9, .fd = high, .drain = 1};
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_READ, grow_cb, &g), 0);
    ck_assert_int_eq(rsv_loop_watch(loop, q[0], RSV_LOOP_READ, grow_cb, &g), 0);
    write_byte(p[1]);
    write_byte(q[1]);
    write_byte(h[1]);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(g.calls[0], 1);
    ck_assert_int_eq(g.calls[1], 1);
    ck_assert_int_eq(rsv_loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(g.high_rec.calls, 1);
    rsv_loop_unwatch(loop, high);
    rsv_loop_del(loop);
    close(high);
    close(h[1]);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
}
END_TEST

/* ---- stop, wakeup, host integration ---- */

static void safety_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    *(int *)arg = 1;
    rsv_loop_stop(loop);
}

typedef struct {
    rsv_loop *loop;
    unsigned delay_ms;
    int wakeup; /* 1: rsv_loop_wakeup, 0: rsv_loop_stop */
} thread_arg;

static void *poke_thread(void *p)
{
    thread_arg *a = p;
    sleep_ms(a->delay_ms);
    if (a->wakeup)
        rsv_loop_wakeup(a->loop);
    else
        rsv_loop_stop(a->loop);
    return NULL;
}

START_TEST(stop_from_thread)
{
    rsv_loop *loop = new_loop();
    int safety_fired = 0;
    rsv_timer *safety = rsv_timer_new(loop, safety_cb, &safety_fired);
    rsv_timer_start(safety, 5000);
    /* A stop that lands before rsv_loop_run starts (the thread is
     * joined first) is not lost; then one that lands while it blocks. */
    for (int joined_first = 1; joined_first >= 0; joined_first--) {
        thread_arg a = {.loop = loop, .delay_ms = joined_first ? 0 : 50, .wakeup = 0};
        pthread_t th;
        uint64_t t0 = mono_ms();
        ck_assert_int_eq(pthread_create(&th, NULL, poke_thread, &a), 0);
        if (joined_first)
            ck_assert_int_eq(pthread_join(th, NULL), 0);
        ck_assert_int_eq(rsv_loop_run(loop), 0);
        if (!joined_first)
            ck_assert_int_eq(pthread_join(th, NULL), 0);
        ck_assert_int_eq(safety_fired, 0);
        ck_assert_uint_lt(mono_ms() - t0, 3000);
    }
    rsv_timer_del(safety);
    rsv_loop_del(loop);
}
END_TEST

static rsv_loop *signal_loop;
static volatile sig_atomic_t signal_hits;

static void stop_handler(int sig)
{
    (void)sig;
    signal_hits++;
    rsv_loop_stop(signal_loop);
}

static void wakeup_handler(int sig)
{
    (void)sig;
    signal_hits++;
    rsv_loop_wakeup(signal_loop);
}

static void set_handler(int sig, void (*fn)(int), struct sigaction *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* epoll_wait gets EINTR regardless; the flag must hold */
    ck_assert_int_eq(sigaction(sig, &sa, old), 0);
}

START_TEST(stop_from_signal_handler)
{
    rsv_loop *loop = new_loop();
    signal_loop = loop;
    signal_hits = 0;
    int safety_fired = 0;
    rsv_timer *safety = rsv_timer_new(loop, safety_cb, &safety_fired);
    rsv_timer_start(safety, 5000);
    struct sigaction old;
    set_handler(SIGALRM, stop_handler, &old);
    struct itimerval it = {.it_value = {.tv_sec = 0, .tv_usec = 50000}};
    ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
    ck_assert_int_eq(rsv_loop_run(loop), 0);
    ck_assert_int_eq(signal_hits, 1);
    ck_assert_int_eq(safety_fired, 0);
    /* A signal that arrives before rsv_loop_run (say, SIGTERM during
     * start-up) is not lost either. */
    ck_assert_int_eq(raise(SIGALRM), 0);
    ck_assert_int_eq(signal_hits, 2);
    ck_assert_int_eq(rsv_loop_run(loop), 0);
    ck_assert_int_eq(safety_fired, 0);
    memset(&it, 0, sizeof(it));
    setitimer(ITIMER_REAL, &it, NULL);
    sigaction(SIGALRM, &old, NULL);
    rsv_timer_del(safety);
    rsv_loop_del(loop);
}
END_TEST

/* Stop from a callback returns after the current iteration (the other due
 * timer of the phase still runs); the next run starts afresh. */
typedef struct {
    int calls;
    int stop;
} stop_rec;

static void stop_timer_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    stop_rec *s = arg;
    s->calls++;
    if (s->stop)
        rsv_loop_stop(loop);
}

START_TEST(stop_from_callback)
{
    rsv_loop *loop = new_loop();
    stop_rec a = {.stop = 1}, b = {0}, c = {.stop = 1};
    rsv_timer *ta = rsv_timer_new(loop, stop_timer_cb, &a);
    rsv_timer *tb = rsv_timer_new(loop, stop_timer_cb, &b);
    rsv_timer *tc = rsv_timer_new(loop, stop_timer_cb, &c);
    rsv_timer_start(ta, 0);
    rsv_timer_start(tb, 0);
    ck_assert_int_eq(rsv_loop_run(loop), 0);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(b.calls, 1);
    /* The stop was consumed: this run lasts until tc stops it. */
    rsv_timer_start(tc, 30);
    uint64_t t0 = mono_ms();
    ck_assert_int_eq(rsv_loop_run(loop), 0);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_uint_ge(mono_ms() - t0, 20);
    rsv_timer_del(ta);
    rsv_timer_del(tb);
    rsv_timer_del(tc);
    rsv_loop_del(loop);
}
END_TEST

static int wakeup_calls;
static pthread_t wakeup_expected_thread;

static void wakeup_cb(rsv_loop *loop, void *arg)
{
    ck_assert_ptr_eq(arg, &wakeup_calls);
    ck_assert(pthread_equal(pthread_self(), wakeup_expected_thread));
    wakeup_calls++;
}

START_TEST(wakeup_calls_callback)
{
    rsv_loop *loop = new_loop();
    wakeup_calls = 0;
    wakeup_expected_thread = pthread_self();
    /* Without a callback a wakeup only wakes. */
    rsv_loop_wakeup(loop);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    rsv_loop_set_wakeup(loop, wakeup_cb, &wakeup_calls);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(wakeup_calls, 0);

    /* From another thread, while the loop is blocked. */
    thread_arg a = {.loop = loop, .delay_ms = 50, .wakeup = 1};
    pthread_t th;
    uint64_t t0 = mono_ms();
    ck_assert_int_eq(pthread_create(&th, NULL, poke_thread, &a), 0);
    ck_assert_int_eq(rsv_loop_run_once(loop, 5000), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(wakeup_calls, 1);
    ck_assert_uint_lt(mono_ms() - t0, 3000);

    /* Wakeups coalesce until the loop runs. */
    rsv_loop_wakeup(loop);
    rsv_loop_wakeup(loop);
    rsv_loop_wakeup(loop);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(wakeup_calls, 2);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(wakeup_calls, 2);

    /* From a signal handler. */
    struct sigaction old;
    signal_loop = loop;
    signal_hits = 0;
    set_handler(SIGUSR1, wakeup_handler, &old);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    ck_assert_int_eq(signal_hits, 1);
    ck_assert_int_eq(rsv_loop_run_once(loop, 5000), 0);
    ck_assert_int_eq(wakeup_calls, 3);
    sigaction(SIGUSR1, &old, NULL);
    rsv_loop_del(loop);
}
END_TEST

/* A host loop polls rsv_loop_fd() with rsv_loop_timeout() and calls
 * run_once(loop, 0) when it fires. */
START_TEST(loop_fd_pollable)
{
    rsv_loop *loop = new_loop();
    int efd = rsv_loop_fd(loop);
    ck_assert_int_ge(efd, 0);
    ck_assert(!poll_readable(efd, 0));

    int p[2];
    make_pipe(p);
    io_rec r = {.id = 1, .fd = p[0], .drain = 1};
    ck_assert_int_eq(rsv_loop_watch(loop, p[0], RSV_LOOP_READ, io_cb, &r), 0);
    ck_assert(!poll_readable(efd, 0));
    write_byte(p[1]);
    ck_assert(poll_readable(efd, 1000));
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert(!poll_readable(efd, 0));

    /* A wakeup makes it readable too. */
    rsv_loop_wakeup(loop);
    ck_assert(poll_readable(efd, 1000));
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert(!poll_readable(efd, 0));

    /* Timers: the host sleeps for rsv_loop_timeout(). */
    rec t;
    rec_init(&t, loop, 5, rec_cb);
    rec_start(&t, 30);
    uint64_t t0 = mono_ms();
    for (int i = 0; i < 100 && t.calls == 0; i++) {
        int timeout = rsv_loop_timeout(loop);
        ck_assert_int_ge(timeout, 0);
        ck_assert_int_le(timeout, 30);
        ck_assert(!poll_readable(efd, timeout));
        ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    }
    ck_assert_int_eq(t.calls, 1);
    ck_assert_uint_ge(mono_ms() - t0, 25);
    ck_assert_int_eq(rsv_loop_timeout(loop), -1);
    rsv_timer_del(t.t);
    rsv_loop_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    rsv_loop_del(loop);
}
END_TEST

START_TEST(loop_new_del)
{
    for (int i = 0; i < 100; i++) {
        rsv_loop *loop = rsv_loop_new();
        ck_assert_ptr_nonnull(loop);
        rsv_loop_del(loop);
    }
    rsv_loop_del(NULL);
}
END_TEST

/* ---- before-sleep hooks (rule 6) ---- */

typedef struct {
    char order[64];        /* one letter per call, in call order */
    rsv_sleep_hook *rearm; /* armed again from its own call, once */
    rsv_sleep_hook *arm_other, *del_other;
    int rearmed;
} hook_log;

static hook_log hlog;

static void hook_note(char c)
{
    size_t n = strlen(hlog.order);
    if (n + 1 < sizeof(hlog.order)) {
        hlog.order[n] = c;
        hlog.order[n + 1] = '\0';
    }
}

static void hook_cb(rsv_loop *loop, rsv_sleep_hook *hook, void *arg)
{
    hook_note(*(const char *)arg);
    if (hook == hlog.rearm && !hlog.rearmed) {
        hlog.rearmed = 1;
        rsv_sleep_hook_arm(hook);
    }
    if (hlog.arm_other) {
        rsv_sleep_hook_arm(hlog.arm_other);
        hlog.arm_other = NULL;
    }
    if (hlog.del_other) {
        rsv_sleep_hook_del(hlog.del_other);
        hlog.del_other = NULL;
    }
}

static void hook_timer_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    hook_note('t');
    rsv_sleep_hook_arm(arg); /* a change made by a timer: its hook runs after it */
}

/* Rule 6: armed twice, called once, after the iteration's timers; the
 * iteration does not wait while a hook is armed. */
START_TEST(hook_once_per_iteration_after_timers)
{
    memset(&hlog, 0, sizeof(hlog));
    rsv_loop *loop = rsv_loop_new();
    static const char a = 'a', b = 'b';
    rsv_sleep_hook *ha = rsv_sleep_hook_new(loop, hook_cb, (void *)&a);
    rsv_sleep_hook *hb = rsv_sleep_hook_new(loop, hook_cb, (void *)&b);
    ck_assert_int_eq(rsv_loop_timeout(loop), -1);
    rsv_sleep_hook_arm(hb);
    rsv_sleep_hook_arm(ha);
    rsv_sleep_hook_arm(hb);
    ck_assert(rsv_sleep_hook_armed(ha) && rsv_sleep_hook_armed(hb));
    ck_assert_int_eq(rsv_loop_timeout(loop), 0);
    rsv_timer *t = rsv_timer_new(loop, hook_timer_cb, ha);
    rsv_timer_start(t, 0);
    uint64_t t0 = mono_ms();
    ck_assert_int_eq(rsv_loop_run_once(loop, 5000), 0); /* must not wait 5 s */
    ck_assert_uint_lt(mono_ms() - t0, 2000);
    /* The timer first; then the hooks in the order armed; `a`, armed again
     * by the timer while armed, only once. */
    ck_assert_str_eq(hlog.order, "tba");
    ck_assert(!rsv_sleep_hook_armed(ha) && !rsv_sleep_hook_armed(hb));
    ck_assert_int_eq(rsv_loop_timeout(loop), -1);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_str_eq(hlog.order, "tba"); /* nothing armed, nothing run */
    rsv_timer_del(t);
    rsv_sleep_hook_del(ha);
    rsv_sleep_hook_del(hb);
    rsv_loop_del(loop);
}
END_TEST

/* Rule 6: a hook armed during the phase (its own included) runs in the next
 * iteration's, which does not wait; one freed during the phase is not
 * called. */
START_TEST(hook_armed_or_freed_inside_the_phase)
{
    memset(&hlog, 0, sizeof(hlog));
    rsv_loop *loop = rsv_loop_new();
    static const char a = 'a', b = 'b', c = 'c';
    rsv_sleep_hook *ha = rsv_sleep_hook_new(loop, hook_cb, (void *)&a);
    rsv_sleep_hook *hb = rsv_sleep_hook_new(loop, hook_cb, (void *)&b);
    rsv_sleep_hook *hc = rsv_sleep_hook_new(loop, hook_cb, (void *)&c);
    hlog.rearm = ha;
    hlog.arm_other = hb;
    hlog.del_other = hc;
    rsv_sleep_hook_arm(ha);
    rsv_sleep_hook_arm(hc);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_str_eq(hlog.order, "a"); /* c freed by a before its turn */
    ck_assert(rsv_sleep_hook_armed(ha) && rsv_sleep_hook_armed(hb));
    ck_assert_int_eq(rsv_loop_timeout(loop), 0);
    uint64_t t0 = mono_ms();
    ck_assert_int_eq(rsv_loop_run_once(loop, 5000), 0);
    ck_assert_uint_lt(mono_ms() - t0, 2000);
    ck_assert_str_eq(hlog.order, "aab");
    /* Disarmed before its phase: not called; freed while armed: gone. */
    rsv_sleep_hook_arm(ha);
    rsv_sleep_hook_disarm(ha);
    rsv_sleep_hook_arm(hb);
    rsv_sleep_hook_del(hb);
    ck_assert_int_eq(rsv_loop_timeout(loop), -1);
    ck_assert_int_eq(rsv_loop_run_once(loop, 0), 0);
    ck_assert_str_eq(hlog.order, "aab");
    rsv_sleep_hook_del(ha);
    rsv_sleep_hook_del(NULL);
    /* A loop freed with a hook still armed leaves it disarmed. */
    rsv_sleep_hook *hd = rsv_sleep_hook_new(loop, hook_cb, (void *)&a);
    rsv_sleep_hook_arm(hd);
    rsv_loop_del(loop);
    ck_assert(!rsv_sleep_hook_armed(hd));
    rsv_sleep_hook_del(hd);
}
END_TEST

static Suite *loop_suite(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("timers");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, timer_deadline_order);
    tcase_add_test(tc, timer_ties_start_order);
    tcase_add_test(tc, timer_active_stop_del);
    tcase_add_test(tc, timer_stop_other_same_phase);
    tcase_add_test(tc, timer_del_other_same_phase);
    tcase_add_test(tc, timer_restart_self_zero);
    tcase_add_test(tc, timer_start_zero_from_callback);
    tcase_add_test(tc, timer_restart_other_later);
    tcase_add_test(tc, timer_huge_delay);
    tcase_add_test(tc, timeout_values);
    tcase_add_test(tc, loop_now_and_update_time);
    tcase_add_test(tc, timer_heap_stress);
    suite_add_tcase(s, tc);

    tc = tcase_create("io");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, io_pipe_read);
    tcase_add_test(tc, io_pipe_write);
    tcase_add_test(tc, io_socketpair_rw);
    tcase_add_test(tc, io_watch_replace);
    tcase_add_test(tc, io_watch_errors);
    tcase_add_test(tc, io_unwatch_self_and_del_with_watchers);
    tcase_add_test(tc, io_unwatch_other_same_iteration);
    tcase_add_test(tc, io_rewatch_other_same_iteration);
    tcase_add_test(tc, io_reuse_fd_same_iteration);
    tcase_add_test(tc, io_reuse_fd_without_unwatch);
    tcase_add_test(tc, io_error_on_hangup);
    tcase_add_test(tc, io_starts_timer_zero);
    tcase_add_test(tc, io_many_fds);
    tcase_add_test(tc, io_grow_inside_callback);
    suite_add_tcase(s, tc);

    tc = tcase_create("control");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, stop_from_thread);
    tcase_add_test(tc, stop_from_signal_handler);
    tcase_add_test(tc, stop_from_callback);
    tcase_add_test(tc, wakeup_calls_callback);
    tcase_add_test(tc, loop_fd_pollable);
    tcase_add_test(tc, loop_new_del);
    suite_add_tcase(s, tc);

    tc = tcase_create("hooks");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, hook_once_per_iteration_after_timers);
    tcase_add_test(tc, hook_armed_or_freed_inside_the_phase);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(loop_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
