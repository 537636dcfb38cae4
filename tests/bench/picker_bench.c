/*
 * picker_bench - the in-process pick (issue 5): nanoseconds per pick over
 * 1,000 READY instances for each balancing policy, with 1 thread and with 2
 * threads picking from the same picker at once, beside a baseline loop
 * measured in the same run.
 *
 *   picker_bench [--ms MS] [--runs R] [--engine ETCD_URL PREFIX]
 *
 * What one "pick" costs here, as a user's call would:
 *  - picker figures (<policy>_1t_ns, <policy>_2t_ns): rsv_picker_pick()
 *    on a picker built by rsv_picker_new() over 1,000 instances made
 *    with the library's internals (as tests/unit/check_picker.c does), plus
 *    the matching release: atomic outstanding-- and refs-- on the instance
 *    (what rsv_instance_release does for a successful call, without the
 *    outlier accounting that runs on the engine thread).  No hazard pointer,
 *    no ticket: that is the public path below.
 *  - baseline (baseline_1t_ns, baseline_2t_ns): atomic_fetch_add on one
 *    shared counter and a read of array[counter % 1000] (1,000 pointers; the
 *    modulo by a run-time count, as the pickers do).
 *  - public API (api_<policy>_1t_ns, api_<policy>_2t_ns; only with
 *    --engine): resolver_engine_pick() + resolver_engine_done() from
 *    threads other than the engine's, on an engine whose six services (one
 *    per policy) list 1,000 instances under PREFIX in etcd, all READY (the
 *    script starts tests/bench/h2sink for them).  The pick includes the
 *    service lookup, hazard pointers, the ticket and the message to the
 *    engine thread, and done its message; the engine thread's own work
 *    (tracking and releasing the tickets) runs on the main thread beside
 *    the picking threads and is not counted in the figure.
 *
 * Timing: CLOCK_MONOTONIC; every measurement picks for MS milliseconds
 * (default 500) in batches of 1,024, checking the clock between batches.
 * With T threads each thread times itself from a common start: its elapsed
 * time / its picks is its ns per pick, and the figure is the mean over the
 * threads ("ns per pick per thread"; = wall time * threads / picks).  Each
 * figure is the best (lowest) of R runs (default 3), the runs interleaved
 * with the other figures so that background load spreads over all of them.
 * Results go to a volatile sink so that nothing is optimized away.
 *
 * Output: one "key value" per line; what_* lines carry text.  Exit 1 when a
 * pick that must succeed failed.
 */
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <jansson.h>
#include "engine.h"
#include "picker.h"
#include "resolver.h"
#include "instance.h"

#define N_INSTANCES 1000
#define N_KEYS 4096 /* a power of two */
#define BATCH 1024
#define MAX_THREADS 2

typedef struct {
    const char *name;
    rsv_policy policy;
} policy_def;

static const policy_def policies[] = {
    {"pick_first", RSV_POLICY_PICK_FIRST},
    {"round_robin", RSV_POLICY_ROUND_ROBIN},
    {"random", RSV_POLICY_RANDOM},
    {"weighted_round_robin", RSV_POLICY_WEIGHTED_ROUND_ROBIN},
    {"least_request", RSV_POLICY_LEAST_REQUEST},
    {"ring_hash", RSV_POLICY_RING_HASH},
};
#define N_POLICIES (sizeof(policies) / sizeof(policies[0]))

/* One thing to measure: `run` does `iters` picks on behalf of a worker. */
typedef struct workload workload;
typedef struct worker worker;
struct workload {
    char name[64];
    void (*run)(worker *w, size_t iters);
    rsv_picker *picker;                            /* picker workloads */
    resolver_engine *engine;                       /* api workloads */
    char service[64];                              /* api workloads */
    const char *const *keys;                       /* ring_hash: N_KEYS keys, else NULL */
    void *const *array;                            /* baseline */
    size_t array_len;                              /* baseline */
    _Alignas(128) atomic_uint_fast64_t counter;    /* baseline: a cache line of its own */
    _Alignas(128) double best_ns[MAX_THREADS + 1]; /* by thread count; 0: not measured */
    uint64_t errors;
};

struct worker {
    _Alignas(128) workload *wl;
    unsigned id;
    size_t key_pos;
    uint64_t picks, errors;
    double ns_per_pick;
    void *volatile sink;
    uint64_t volatile sink_u64;
    pthread_t thread;
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---- the workloads ---- */

static void run_baseline(worker *w, size_t iters)
{
    workload *wl = w->wl;
    void *const *array = wl->array;
    size_t n = wl->array_len;
    for (size_t i = 0; i < iters; i++) {
        uint64_t seq = atomic_fetch_add(&wl->counter, 1);
        w->sink = array[seq % n];
    }
}

static void run_picker(worker *w, size_t iters)
{
    rsv_picker *p = w->wl->picker;
    const char *const *keys = w->wl->keys;
    size_t k = w->key_pos;
    for (size_t i = 0; i < iters; i++) {
        const char *key = keys ? keys[k++ & (N_KEYS - 1)] : NULL;
        rsv_instance *inst = rsv_picker_pick(p, key);
        if (!inst) {
            w->errors++;
            continue;
        }
        /* The release of a successful call: the picker's own reference
         * keeps refs above zero, so this is never the last one. */
        atomic_fetch_sub(&inst->outstanding, 1);
        atomic_fetch_sub(&inst->refs, 1);
        w->sink = inst;
    }
    w->key_pos = k;
}

static void run_api(worker *w, size_t iters)
{
    resolver_engine *e = w->wl->engine;
    const char *service = w->wl->service;
    const char *const *keys = w->wl->keys;
    size_t k = w->key_pos;
    for (size_t i = 0; i < iters; i++) {
        const char *key = keys ? keys[k++ & (N_KEYS - 1)] : NULL;
        resolver_pick_result r;
        if (resolver_engine_pick(e, service, key, &r) != 0) {
            w->errors++;
            continue;
        }
        if (resolver_engine_done(e, r.ticket, 0, 0) != 0)
            w->errors++;
        w->sink_u64 = r.ticket;
    }
    w->key_pos = k;
}

/* ---- running T threads at once ---- */

static atomic_int started, go, finished;
static double run_ns; /* each measurement's length */

static void *worker_main(void *arg)
{
    worker *w = arg;
    atomic_fetch_add(&started, 1);
    while (!atomic_load(&go))
        ;
    uint64_t n = 0;
    double t0 = now_ns(), t1;
    do {
        w->wl->run(w, BATCH);
        n += BATCH;
        t1 = now_ns();
    } while (t1 - t0 < run_ns);
    w->picks = n;
    w->ns_per_pick = (t1 - t0) / (double)n;
    atomic_fetch_add(&finished, 1);
    return NULL;
}

static void drive_engine(resolver_engine *e, int max_ms);

/* One measurement: T threads on `wl`; the mean over the threads of ns per
 * pick.  `engine` (may be NULL) is driven by this thread meanwhile. */
static double measure(workload *wl, unsigned threads, resolver_engine *engine)
{
    static worker workers[MAX_THREADS];
    atomic_store(&started, 0);
    atomic_store(&go, 0);
    atomic_store(&finished, 0);
    for (unsigned t = 0; t < threads; t++) {
        worker *w = &workers[t];
        w->wl = wl;
        w->id = t;
        w->key_pos = (size_t)t * (N_KEYS / MAX_THREADS);
        w->picks = w->errors = 0;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            fprintf(stderr, "picker_bench: pthread_create failed\n");
            exit(1);
        }
    }
    while (atomic_load(&started) < (int)threads)
        ;
    atomic_store(&go, 1);
    while (atomic_load(&finished) < (int)threads) {
        if (engine)
            drive_engine(engine, 5);
        else {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    double sum = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        sum += workers[t].ns_per_pick;
        wl->errors += workers[t].errors;
    }
    return sum / threads;
}

static void record(workload *wl, unsigned threads, double ns)
{
    if (wl->best_ns[threads] == 0 || ns < wl->best_ns[threads])
        wl->best_ns[threads] = ns;
}

/* ---- the fleet ---- */

static rsv_instance *new_instance(unsigned i)
{
    char address[64];
    snprintf(address, sizeof(address), "10.%u.%u.%u:8080", 1 + i / 62500, (i / 250) % 250,
             1 + i % 250);
    /* Weights varied: weighted_round_robin, ring_hash. */
    rsv_endpoint ep = {.weight = 1 + i % 10};
    snprintf(ep.address, sizeof(ep.address), "%s", address);
    rsv_instance *inst = rsv_instance_new(&ep, NULL);
    if (!inst) {
        perror("calloc");
        exit(1);
    }
    return inst;
}

/* ---- the engine (--engine) ---- */

static void drive_engine(resolver_engine *e, int max_ms)
{
    struct pollfd pfd = {.fd = resolver_engine_fd(e), .events = POLLIN};
    int timeout = resolver_engine_timeout(e);
    if (timeout < 0 || timeout > max_ms)
        timeout = max_ms;
    poll(&pfd, 1, timeout);
    resolver_engine_process(e);
}

/* READY instances of the service with the fewest (this thread drives the
 * engine, so it may look at its state). */
static long min_ready(resolver_engine *e)
{
    json_t *all = rsv_engine_services_json(e);
    long min = -1;
    size_t i;
    json_t *svc;
    json_array_foreach(all, i, svc)
    {
        long ready =
            (long)json_integer_value(json_object_get(json_object_get(svc, "states"), "READY"));
        if (min < 0 || ready < min)
            min = ready;
    }
    json_decref(all);
    return min < 0 ? 0 : min;
}

static resolver_engine *engine_start(const char *url, const char *prefix)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    json_t *services = json_array();
    for (size_t i = 0; i < N_POLICIES; i++) {
        char name[64];
        snprintf(name, sizeof(name), "pb.%s", policies[i].name);
        json_t *svc = json_pack("{s:s, s:s, s:s}", "name", name, "prefix", prefix, "policy",
                                policies[i].name);
        if (policies[i].policy == RSV_POLICY_LEAST_REQUEST)
            json_object_set_new(svc, "choice_count", json_integer(2));
        json_array_append_new(services, svc);
    }
    /* Keepalive PINGs every hour: the engine idles while the other figures
     * are taken. */
    json_t *doc = json_pack("{s:{s:[s]}, s:{s:s, s:i}, s:o}", "etcd", "endpoints", url, "defaults",
                            "format", "native", "keepalive_time_ms", 3600000, "services", services);
    char *text = json_dumps(doc, 0);
    json_decref(doc);
    resolver_config *cfg;
    char err[512];
    if (!text || resolver_config_load_string(text, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "picker_bench: configuration: %s\n", text ? err : "out of memory");
        free(text);
        return NULL;
    }
    free(text);
    resolver_engine *e;
    if (resolver_engine_new(&e, cfg) != 0) {
        fprintf(stderr, "picker_bench: resolver_engine_new failed\n");
        return NULL;
    }
    /* Every service READY on every instance, within 120 s. */
    double deadline = now_ns() + 120e9;
    long ready = 0;
    while ((ready = min_ready(e)) < N_INSTANCES && now_ns() < deadline)
        for (int k = 0; k < 20; k++)
            drive_engine(e, 5);
    printf("api_ready_instances %ld\n", ready);
    if (ready < N_INSTANCES) {
        fprintf(stderr, "picker_bench: only %ld of %d instances READY after 120 s\n", ready,
                N_INSTANCES);
        resolver_engine_free(e);
        return NULL;
    }
    return e;
}

int main(int argc, char **argv)
{
    long ms = 500, runs = 3;
    const char *etcd_url = NULL, *prefix = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ms") == 0 && i + 1 < argc)
            ms = atol(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atol(argv[++i]);
        else if (strcmp(argv[i], "--engine") == 0 && i + 2 < argc) {
            etcd_url = argv[++i];
            prefix = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: picker_bench [--ms MS] [--runs R] [--engine ETCD_URL PREFIX]\n");
            return 2;
        }
    }
    if (ms < 1 || runs < 1) {
        fprintf(stderr, "picker_bench: --ms and --runs must be positive\n");
        return 2;
    }
    run_ns = (double)ms * 1e6;
    resolver_log_set_level(RESOLVER_LOG_ERROR);

    rsv_instance **fleet = malloc(N_INSTANCES * sizeof(*fleet));
    void **array = malloc(N_INSTANCES * sizeof(*array));
    static char key_text[N_KEYS][24];
    static const char *keys[N_KEYS];
    if (!fleet || !array) {
        perror("malloc");
        return 1;
    }
    for (unsigned i = 0; i < N_INSTANCES; i++) {
        fleet[i] = new_instance(i);
        array[i] = fleet[i];
    }
    for (unsigned i = 0; i < N_KEYS; i++) {
        /* Session-id-like keys, spread over the ring. */
        snprintf(key_text[i], sizeof(key_text[i]), "user-%016" PRIx64,
                 rsv_xxh64(&i, sizeof(i), 42));
        keys[i] = key_text[i];
    }

    /* Workloads: the baseline, the six pickers, then (--engine) the six
     * services through the public API. */
    size_t n_wl = 1 + N_POLICIES + (etcd_url ? N_POLICIES : 0);
    workload *wls = aligned_alloc(_Alignof(workload), n_wl * sizeof(workload));
    if (!wls) {
        perror("aligned_alloc");
        return 1;
    }
    memset(wls, 0, n_wl * sizeof(workload));
    snprintf(wls[0].name, sizeof(wls[0].name), "baseline");
    wls[0].run = run_baseline;
    wls[0].array = array;
    wls[0].array_len = N_INSTANCES;
    atomic_init(&wls[0].counter, 0);
    for (size_t i = 0; i < N_POLICIES; i++) {
        workload *wl = &wls[1 + i];
        snprintf(wl->name, sizeof(wl->name), "%s", policies[i].name);
        wl->run = run_picker;
        wl->picker = rsv_picker_new(policies[i].policy, 2, 0, fleet, N_INSTANCES);
        if (!wl->picker) {
            fprintf(stderr, "picker_bench: resolver_picker_new failed\n");
            return 1;
        }
        wl->keys = policies[i].policy == RSV_POLICY_RING_HASH ? keys : NULL;
    }
    resolver_engine *engine = NULL;
    if (etcd_url) {
        engine = engine_start(etcd_url, prefix);
        if (!engine)
            n_wl = 1 + N_POLICIES; /* the picker figures still stand */
        for (size_t i = 0; engine && i < N_POLICIES; i++) {
            workload *wl = &wls[1 + N_POLICIES + i];
            snprintf(wl->name, sizeof(wl->name), "api_%s", policies[i].name);
            snprintf(wl->service, sizeof(wl->service), "pb.%s", policies[i].name);
            wl->run = run_api;
            wl->engine = engine;
            wl->keys = policies[i].policy == RSV_POLICY_RING_HASH ? keys : NULL;
        }
    }

    printf("instances %d\n", N_INSTANCES);
    printf("ms_per_run %ld\n", ms);
    printf("runs %ld\n", runs);
    printf("what_pick resolver_picker_pick + release (atomic outstanding-- and refs--)\n");
    printf("what_baseline atomic_fetch_add on a shared counter + read of array[counter %% 1000] "
           "(1,000 pointers)\n");
    printf("what_threads ns per pick per thread: each thread's elapsed time / its picks, mean "
           "over the threads, best of %ld runs of %ld ms\n",
           runs, ms);
    if (etcd_url)
        printf("what_api %s\n",
               engine ? "resolver_engine_pick + resolver_engine_done from "
                        "non-engine threads (the engine driven by the main thread meanwhile)"
                      : "not measured: the engine's instances did not all "
                        "become READY");
    fflush(stdout);

    for (long r = 0; r < runs; r++)
        for (size_t i = 0; i < n_wl; i++)
            for (unsigned t = 1; t <= MAX_THREADS; t++) {
                workload *wl = &wls[i];
                /* The engine is driven during every measurement (idle
                 * but for the API ones: keepalive is an hour, see
                 * engine_start), so that it never falls behind. */
                record(wl, t, measure(wl, t, engine));
            }

    int rc = 0;
    for (size_t i = 0; i < n_wl; i++) {
        workload *wl = &wls[i];
        for (unsigned t = 1; t <= MAX_THREADS; t++)
            printf("%s_%ut_ns %.1f\n", wl->name, t, wl->best_ns[t]);
        if (wl->errors) {
            printf("%s_errors %" PRIu64 "\n", wl->name, wl->errors);
            rc = 1;
        }
    }

    if (engine) {
        /* Let the engine apply the last dones before it goes. */
        for (int k = 0; k < 50; k++)
            drive_engine(engine, 2);
        resolver_engine_free(engine);
    }
    for (size_t i = 0; i < N_POLICIES; i++)
        rsv_picker_free(wls[1 + i].picker);
    for (unsigned i = 0; i < N_INSTANCES; i++)
        rsv_instance_unref(fleet[i]);
    free(fleet);
    free(array);
    free(wls);
    return rc;
}
