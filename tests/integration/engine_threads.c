/*
 * engine_threads - the embedded engine on a thread of its own, four threads
 * picking and reporting done through the public API while the test script
 * churns the service's instances in a real etcd.  Run under ASan/UBSan (the
 * sanitizer build runs it too) and TSan (contrib/run-tests.sh): any race on
 * reclaimed memory, or on state a reload rewrites, shows there.
 *
 *   engine_threads ETCD_URL SERVICE SECONDS [RELOAD_MS]
 * With RELOAD_MS, the engine thread reloads every RELOAD_MS a configuration
 * that lists SERVICE (prefix SERVICE/) with other options each time
 * (ticket_timeout_ms, max_outstanding, policy), while the threads pick
 * (issue 11 item 17).  Prints "picks=N failures=N reloads=N
 * reload_errors=N" and exits 0 when it picked at least once (and reloaded
 * without error, when asked to).
 *
 *   engine_threads --inbox ETCD_URL SECONDS
 * Picks of services that are not discovered yet (issue 11 item 14): two
 * threads pick a new name while the engine thread is busy, then a name that
 * on_demand_services_max (1, reached) refuses while it runs.  Prints the RSS
 * growth and the log lines of each phase; exits 0 when both stay bounded.
 *
 *   engine_threads --done-on-loop ETCD_URL SERVICE SECONDS
 * A thread picks, the thread driving the engine reports the pick done
 * before the engine has seen the pick's ticket (issue 11 item 15).  Exits
 * 0 when every such done found its ticket and released it.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "engine.h"
#include "loop.h"
#include "resolver.h"

static resolver_engine *engine;
static const char *service;
static atomic_int stop_picking;
static atomic_long picks, failures;

static void *engine_thread(void *arg)
{
    resolver_engine_run(engine);
    return NULL;
}

static void *picker_thread(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    char key[32];
    while (!atomic_load(&stop_picking)) {
        resolver_pick_result r;
        snprintf(key, sizeof(key), "k%u", rand_r(&seed) % 100);
        if (resolver_engine_pick(engine, service, key, &r) == 0) {
            atomic_fetch_add(&picks, 1);
            resolver_engine_done(engine, r.ticket, rand_r(&seed) % 50 == 0, 1);
        } else {
            atomic_fetch_add(&failures, 1);
            usleep(1000);
        }
    }
    return NULL;
}

/* ---- reloads while threads pick ---- */

static const char *etcd_url;
static uint64_t reload_ms;
static long reloads, reload_errors; /* the engine thread's; read after the join */

/* Engine thread: a reload with options that differ from the last ones. */
static void on_reload_timer(rsv_loop *loop, rsv_timer *t, void *arg)
{
    static const char *const policies[] = {"round_robin", "least_request", "random"};
    char json[1024], err[256];
    snprintf(json, sizeof(json),
             "{\"etcd\": {\"endpoints\": [\"%s\"]}, \"services\": [{\"name\": \"%s\", "
             "\"prefix\": \"%s/\", \"ticket_timeout_ms\": %ld, \"max_outstanding\": %ld, "
             "\"policy\": \"%s\"}]}",
             etcd_url, service, service, 30000 + reloads % 7 * 1000, 1000 + reloads % 5,
             policies[reloads % 3]);
    resolver_config *cfg;
    if (resolver_config_load_string(json, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "engine_threads: %s\n", err);
        reload_errors++;
    } else if (resolver_engine_reload(engine, cfg, NULL, 0) != 0) {
        reload_errors++;
    } else {
        reloads++;
    }
    rsv_timer_start(t, reload_ms);
}

/* ---- --inbox ---- */

/* Growth past this stops a phase early: the old unbounded inbox would take
 * the machine's memory otherwise. */
#define RSS_GUARD_KIB (512 * 1024)

static atomic_long log_lines;
static atomic_long rss_base_kib;
static atomic_int guard_hit;

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void count_log(resolver_log_level level, const char *line, void *arg)
{
    (void)arg;
    if (atomic_fetch_add(&log_lines, 1) < 5)
        fprintf(stderr, "log %d: %s\n", (int)level, line);
}

typedef struct {
    const char *name;
    atomic_long answers, limit, no_instance;
} unknown_pick;

static void *unknown_picker(void *arg)
{
    unknown_pick *u = arg;
    for (long n = 1; !atomic_load(&stop_picking); n++) {
        resolver_pick_result r;
        int rc = resolver_engine_pick(engine, u->name, NULL, &r);
        atomic_fetch_add(&u->answers, 1);
        if (rc == RESOLVER_ERR_LIMIT)
            atomic_fetch_add(&u->limit, 1);
        else if (rc == RESOLVER_ERR_NO_INSTANCE)
            atomic_fetch_add(&u->no_instance, 1);
        if (n % 4096 == 0 && rss_kib() - atomic_load(&rss_base_kib) > RSS_GUARD_KIB) {
            atomic_store(&guard_hit, 1);
            atomic_store(&stop_picking, 1);
        }
    }
    return NULL;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Drives the engine on this thread for ms milliseconds. */
static void drive(uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    while (now_ms() < end && !atomic_load(&stop_picking)) {
        struct pollfd p = {resolver_engine_fd(engine), POLLIN, 0};
        int t = resolver_engine_timeout(engine);
        poll(&p, 1, t < 0 || t > 10 ? 10 : t);
        resolver_engine_process(engine);
    }
}

/* Two threads pick `name` for ms milliseconds; the calling thread drives
 * the engine meanwhile, or not (busy).  Returns the RSS growth in KiB. */
static long unknown_phase(const char *label, const char *name, uint64_t ms, int busy)
{
    unknown_pick u = {.name = name};
    pthread_t t[2];
    long lines0 = atomic_load(&log_lines);
    atomic_store(&stop_picking, 0);
    atomic_store(&rss_base_kib, rss_kib());
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, unknown_picker, &u);
    if (busy) {
        uint64_t end = now_ms() + ms;
        while (now_ms() < end && !atomic_load(&stop_picking))
            usleep(10000);
    } else {
        drive(ms);
    }
    atomic_store(&stop_picking, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    long growth = rss_kib() - atomic_load(&rss_base_kib);
    printf("%s: picks=%ld limit=%ld no_instance=%ld rss_growth_kib=%ld log_lines=%ld%s\n", label,
           atomic_load(&u.answers), atomic_load(&u.limit), atomic_load(&u.no_instance), growth,
           atomic_load(&log_lines) - lines0,
           atomic_load(&guard_hit) ? " (stopped: RSS guard)" : "");
    fflush(stdout);
    if (strcmp(label, "refused") == 0 && atomic_load(&u.limit) == 0)
        return RSS_GUARD_KIB; /* the cap must answer LIMIT */
    return growth;
}

static int inbox_main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: engine_threads --inbox ETCD_URL SECONDS\n");
        return 2;
    }
    uint64_t ms = (uint64_t)atoi(argv[2]) * 1000 / 2;
    resolver_config *cfg;
    if (resolver_config_load_string("{\"on_demand_services_max\": 1}", &cfg, NULL, 0) != 0 ||
        resolver_config_set_endpoints(cfg, argv[1]) != 0 || resolver_engine_new(&engine, cfg) != 0)
        return 2;
    resolver_log_set_handler(count_log, NULL);
    resolver_engine_process(engine); /* this thread drives the engine */
    /* 1: a new name picked while the engine thread does not get to run:
     * one discover request, not one per pick. */
    long g1 = unknown_phase("busy", "fresh.svc", ms, 1);
    long lines1 = atomic_load(&log_lines);
    drive(200); /* fresh.svc is discovered: the cap (1) is reached */
    /* 2: another name, refused by the cap, while the engine runs. */
    long g2 = unknown_phase("refused", "other.svc", ms, 0);
    long lines2 = atomic_load(&log_lines) - lines1;
    resolver_engine_free(engine);
    resolver_log_set_handler(NULL, NULL);
    int ok = g1 < 32 * 1024 && g2 < 32 * 1024 && lines2 <= 5 && !atomic_load(&guard_hit);
    printf("inbox %s\n", ok ? "bounded" : "UNBOUNDED");
    return ok ? 0 : 1;
}

/* ---- --done-on-loop ---- */

static pthread_mutex_t box_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t box_cond = PTHREAD_COND_INITIALIZER;
static int box_want;         /* the engine thread asks for a pick */
static int box_full, box_rc; /* the picker answers */
static uint64_t box_ticket;

static void *lockstep_picker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&box_lock);
    while (!atomic_load(&stop_picking)) {
        if (!box_want) {
            pthread_cond_wait(&box_cond, &box_lock);
            continue;
        }
        box_want = 0;
        resolver_pick_result r;
        box_rc = resolver_engine_pick(engine, service, NULL, &r);
        box_ticket = box_rc == 0 ? r.ticket : 0;
        box_full = 1;
        pthread_cond_broadcast(&box_cond);
    }
    pthread_mutex_unlock(&box_lock);
    return NULL;
}

/* Asks the picker thread for one pick and waits for it. */
static int lockstep_pick(uint64_t *ticket)
{
    pthread_mutex_lock(&box_lock);
    box_want = 1;
    pthread_cond_broadcast(&box_cond);
    while (!box_full)
        pthread_cond_wait(&box_cond, &box_lock);
    box_full = 0;
    *ticket = box_ticket;
    int rc = box_rc;
    pthread_mutex_unlock(&box_lock);
    return rc;
}

static int done_on_loop_main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: engine_threads --done-on-loop ETCD_URL SERVICE SECONDS\n");
        return 2;
    }
    service = argv[2];
    resolver_config *cfg;
    if (resolver_config_new_default(&cfg) != 0 ||
        resolver_config_set_endpoints(cfg, argv[1]) != 0 || resolver_engine_new(&engine, cfg) != 0)
        return 2;
    resolver_engine_process(engine); /* this thread drives the engine */
    pthread_t t;
    pthread_create(&t, NULL, lockstep_picker, NULL);
    uint64_t end = now_ms() + (uint64_t)atoi(argv[3]) * 1000;
    long n_picks = 0, not_found = 0, released_twice = 0;
    while (now_ms() < end && n_picks < 200) {
        uint64_t ticket;
        if (lockstep_pick(&ticket) != 0) {
            drive(20); /* not discovered or connected yet */
            continue;
        }
        n_picks++;
        /* The engine has not run since the pick: its ticket is in the inbox. */
        if (resolver_engine_done(engine, ticket, 0, 1) != 0)
            not_found++;
        else if (resolver_engine_done(engine, ticket, 0, 1) == 0)
            released_twice++; /* the first done did not release it */
        drive(1);
    }
    atomic_store(&stop_picking, 1);
    pthread_mutex_lock(&box_lock);
    pthread_cond_broadcast(&box_cond);
    pthread_mutex_unlock(&box_lock);
    pthread_join(t, NULL);
    resolver_engine_free(engine);
    printf("done-on-loop: picks=%ld not_found=%ld released_twice=%ld\n", n_picks, not_found,
           released_twice);
    return n_picks > 0 && not_found == 0 && released_twice == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--inbox") == 0)
        return inbox_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "--done-on-loop") == 0)
        return done_on_loop_main(argc - 1, argv + 1);
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: engine_threads ETCD_URL SERVICE SECONDS [RELOAD_MS]\n");
        return 2;
    }
    etcd_url = argv[1];
    service = argv[2];
    reload_ms = argc == 5 ? strtoull(argv[4], NULL, 10) : 0;
    resolver_config *cfg;
    if (resolver_config_new_default(&cfg) != 0 || resolver_config_set_endpoints(cfg, argv[1]) != 0)
        return 2;
    if (resolver_engine_new(&engine, cfg) != 0)
        return 2;
    /* Made before the engine thread starts, so that it is the engine
     * thread's from then on (loop.h rule 1). */
    rsv_timer *reload_timer = NULL;
    if (reload_ms > 0) {
        reload_timer = rsv_timer_new(rsv_engine_loop(engine), on_reload_timer, NULL);
        if (!reload_timer)
            return 2;
        rsv_timer_start(reload_timer, reload_ms);
    }
    pthread_t loop, pickers[4];
    pthread_create(&loop, NULL, engine_thread, NULL);
    for (uintptr_t i = 0; i < 4; i++)
        pthread_create(&pickers[i], NULL, picker_thread, (void *)(i + 1));
    sleep((unsigned)atoi(argv[3]));
    atomic_store(&stop_picking, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(pickers[i], NULL);
    resolver_engine_stop(engine);
    pthread_join(loop, NULL);
    rsv_timer_del(reload_timer);
    resolver_engine_free(engine);
    printf("picks=%ld failures=%ld reloads=%ld reload_errors=%ld\n", atomic_load(&picks),
           atomic_load(&failures), reloads, reload_errors);
    return atomic_load(&picks) > 0 && (reload_ms == 0 || (reloads > 0 && reload_errors == 0)) ? 0
                                                                                              : 1;
}
