/*
 * engine_api - the embedded engine's public calls, through <resolver.h>
 * alone, against a real etcd and real HTTP/2 backends
 * (tests/integration/test_engine_api.sh starts them):
 *
 *   engine_api CONFIG ETCD_URL PORT1 PORT2 PID2 PORT3 DEAD_PORT SOCKET
 *
 * CONFIG lists the services api, other, slow, late and dead (each under
 * its name and "/").  The script has put, before the start, api/1 (native
 * JSON: PORT1, weight 3, zone z1, metadata {"v":"1"}), other/1 (PORT1) and
 * dead/1 (DEAD_PORT, where nothing listens).  PID2 is the backend on PORT2,
 * which this program kills.  SOCKET is a resolverd's, started on CONFIG:
 * the engine's introspection structs are compared with what `resolverctl
 * --json instances` and `status` show ($RESOLVERCTL).  This program puts
 * and deletes keys with etcdctl, as any registry would.
 *
 * The main thread drives the engine (it is "the engine thread"); waiting
 * picks run on threads of their own.  Prints `ok - ...` / `not ok - ...`
 * per check and `N passed, N failed` last; exits 0 when none failed.
 */
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "resolver.h"

static int passed, failed;
static resolver_engine *engine;
static const char *etcd_url, *sock_path;
static char addr1[64], addr2[64], addr3[64], addr_dead[64];
static pid_t pid2; /* the backend on addr2 */

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s - ", ok ? "ok" : "not ok");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    ok ? passed++ : failed++;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One turn of the host's loop: poll the engine's fd, then process. */
static void turn(int max_ms)
{
    struct pollfd p = {resolver_engine_fd(engine), POLLIN, 0};
    int t = resolver_engine_timeout(engine);
    poll(&p, 1, t < 0 || t > max_ms ? max_ms : t);
    resolver_engine_process(engine);
}

static void drive(uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    while (now_ms() < end)
        turn(10);
}

/* Drives the engine until pred() holds or ms pass; returns pred(). */
static int drive_until(int (*pred)(void), uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    while (!pred() && now_ms() < end)
        turn(10);
    return pred();
}

/* etcdctl put/del, as a registry would write; the engine does not run meanwhile. */
static int etcdctl(const char *verb, const char *key, const char *value)
{
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 1);
        setenv("ETCDCTL_API", "3", 1);
        execlp("etcdctl", "etcdctl", "--endpoints", etcd_url, "--dial-timeout", "2s", verb, key,
               value, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* ---- events ---- */

#define MAX_EVENTS 4096
typedef struct {
    resolver_event_type type;
    char service[32], address[64];
    resolver_state state;
    size_t outstanding;
} event_copy;
typedef struct {
    event_copy ev[MAX_EVENTS];
    size_t n;
} event_log;
static event_log log_one, log_all; /* the watch of "api", the watch of every service */

static void on_event(void *arg, const resolver_event *ev)
{
    event_log *l = arg;
    if (l->n == MAX_EVENTS)
        return;
    event_copy *c = &l->ev[l->n++];
    c->type = ev->type;
    snprintf(c->service, sizeof(c->service), "%s", ev->service);
    snprintf(c->address, sizeof(c->address), "%s", ev->address ? ev->address : "");
    c->state = ev->state;
    c->outstanding = ev->outstanding;
}

/* The index of the first event from `from` on that matches (address "" for
 * SERVICE_SYNCED, state RESOLVER_STATE_COUNT: any), or -1. */
static long find_event(const event_log *l, size_t from, resolver_event_type type,
                       const char *service, const char *address, resolver_state state)
{
    for (size_t i = from; i < l->n; i++) {
        const event_copy *c = &l->ev[i];
        if (c->type == type && strcmp(c->service, service) == 0 &&
            strcmp(c->address, address) == 0 &&
            (state == RESOLVER_STATE_COUNT || c->state == state))
            return (long)i;
    }
    return -1;
}

static size_t count_service(const event_log *l, const char *service)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        n += strcmp(l->ev[i].service, service) == 0;
    return n;
}

/* The wait of drive_until on an event, through globals (pred takes none). */
static const event_log *want_log;
static size_t want_from;
static resolver_event_type want_type;
static const char *want_service, *want_address;
static resolver_state want_state;
static int want_pred(void)
{
    return find_event(want_log, want_from, want_type, want_service, want_address, want_state) >= 0;
}
static int wait_event(const event_log *l, size_t from, resolver_event_type type,
                      const char *service, const char *address, resolver_state state, uint64_t ms)
{
    want_log = l;
    want_from = from;
    want_type = type;
    want_service = service;
    want_address = address;
    want_state = state;
    return drive_until(want_pred, ms);
}

/* The state of an instance as the introspection structs give it (-1: not listed). */
static int instance_state(const char *service, const char *address)
{
    resolver_instance_info *info;
    size_t n;
    int state = -1;
    if (resolver_engine_instances(engine, service, &info, &n) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(info[i].address, address) == 0)
            state = (int)info[i].state;
    resolver_instance_info_free(info, n);
    return state;
}

/* ---- comparing with resolverd ---- */

static json_t *resolverctl_json(const char *verb, const char *arg)
{
    const char *ctl = getenv("RESOLVERCTL");
    char cmd[1024];
    if (!ctl)
        return NULL;
    snprintf(cmd, sizeof(cmd), "'%s' -s '%s' --json %s %s 2>/dev/null", ctl, sock_path, verb,
             arg ? arg : "");
    FILE *f = popen(cmd, "r");
    if (!f)
        return NULL;
    json_error_t err;
    json_t *j = json_loadf(f, 0, &err);
    pclose(f);
    return j;
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "(none)";
}

static long long jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static char mismatch[512];

/* The engine's resolver_engine_instances of `service` against resolverd's
 * `instances --json`: address, state, weight, zone, keys, outstanding. */
static int instances_match(const char *service)
{
    resolver_instance_info *info;
    size_t n;
    mismatch[0] = '\0';
    if (resolver_engine_instances(engine, service, &info, &n) != 0) {
        snprintf(mismatch, sizeof(mismatch), "resolver_engine_instances failed");
        return 0;
    }
    json_t *rows = resolverctl_json("instances", service);
    int ok = json_is_array(rows) && json_array_size(rows) == n;
    if (!ok)
        snprintf(mismatch, sizeof(mismatch), "engine lists %zu, resolverd %zu", n,
                 json_is_array(rows) ? json_array_size(rows) : 0);
    for (size_t i = 0; ok && i < n; i++) {
        json_t *r = json_array_get(rows, i);
        const resolver_instance_info *x = &info[i];
        ok = strcmp(jstr(r, "address"), x->address) == 0 &&
             strcmp(jstr(r, "state"), resolver_state_name(x->state)) == 0 &&
             jint(r, "weight") == (long long)x->weight && strcmp(jstr(r, "zone"), x->zone) == 0 &&
             jint(r, "keys") == (long long)x->keys &&
             jint(r, "outstanding") == (long long)x->outstanding;
        json_t *md = json_object_get(r, "metadata");
        char *mtext = json_is_object(md) ? json_dumps(md, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (ok && !(x->metadata ? mtext && strcmp(mtext, x->metadata) == 0 : json_is_null(md))) {
            ok = 0;
            snprintf(mismatch, sizeof(mismatch), "%s: metadata %s, resolverd %s", x->address,
                     x->metadata ? x->metadata : "NULL", mtext ? mtext : "not an object");
        }
        free(mtext);
        if (!ok)
            snprintf(mismatch, sizeof(mismatch),
                     "engine %s %s w=%u zone=%s keys=%u out=%zu; resolverd %s %s w=%lld zone=%s "
                     "keys=%lld out=%lld",
                     x->address, resolver_state_name(x->state), x->weight, x->zone, x->keys,
                     x->outstanding, jstr(r, "address"), jstr(r, "state"), jint(r, "weight"),
                     jstr(r, "zone"), jint(r, "keys"), jint(r, "outstanding"));
    }
    json_decref(rows);
    resolver_instance_info_free(info, n);
    return ok;
}
static int api_instances_match(void)
{
    return instances_match("api");
}

/* resolver_engine_status against resolverd's `status --json`: the counts
 * both engines see alike (services, instances, ready, etcd endpoints). */
static int status_match(void)
{
    resolver_status *s;
    mismatch[0] = '\0';
    if (resolver_engine_status(engine, &s) != 0) {
        snprintf(mismatch, sizeof(mismatch), "resolver_engine_status failed");
        return 0;
    }
    json_t *j = resolverctl_json("status", NULL);
    int ok = json_is_object(j) && jint(j, "services") == (long long)s->services &&
             jint(j, "instances") == (long long)s->instances &&
             jint(j, "ready") == (long long)s->ready &&
             jint(j, "etcd_endpoints") == (long long)s->etcd_endpoints;
    if (!ok)
        snprintf(mismatch, sizeof(mismatch),
                 "engine services=%zu instances=%zu ready=%zu endpoints=%zu; resolverd "
                 "services=%lld instances=%lld ready=%lld endpoints=%lld",
                 s->services, s->instances, s->ready, s->etcd_endpoints, jint(j, "services"),
                 jint(j, "instances"), jint(j, "ready"), jint(j, "etcd_endpoints"));
    json_decref(j);
    resolver_status_free(s);
    return ok;
}

/* ---- waiting picks on another thread ---- */

typedef struct {
    const char *service;
    uint32_t timeout_ms;
    int rc;
    resolver_pick_result r;
    char address[64], why[256];
    uint64_t took_ms;
    atomic_int finished;
} waiter_job;

static void *wait_thread(void *arg)
{
    waiter_job *j = arg;
    uint64_t t0 = now_ms();
    j->rc = resolver_engine_pick_wait(engine, j->service, NULL, j->timeout_ms, &j->r, j->why,
                                      sizeof(j->why));
    j->took_ms = now_ms() - t0;
    if (j->rc == 0) {
        snprintf(j->address, sizeof(j->address), "%s", j->r.address);
        /* done from this thread too: any thread may end a pick */
        if (resolver_engine_done(engine, j->r.ticket, RESOLVER_OUTCOME_OK, 1) != 0)
            j->rc = -1;
    }
    atomic_store(&j->finished, 1);
    return NULL;
}

static waiter_job *cur_job;
static int job_finished(void)
{
    return atomic_load(&cur_job->finished);
}

/* ---- pick_async callbacks (engine thread) ---- */

typedef struct {
    int calls, rc;
    char address[64], why[256];
    uint64_t ticket;
} async_job;

static int in_async_call; /* the callback must not run from inside pick_async */
static int async_called_inside;

static void on_async(void *arg, int rc, const resolver_pick_result *r, const char *why)
{
    async_job *j = arg;
    if (in_async_call)
        async_called_inside = 1;
    j->calls++;
    j->rc = rc;
    snprintf(j->address, sizeof(j->address), "%s", r ? r->address : "");
    snprintf(j->why, sizeof(j->why), "%s", why ? why : "(null)");
    j->ticket = r ? r->ticket : 0;
}

static async_job *cur_async;
static int async_called(void)
{
    return cur_async->calls > 0;
}

/* ---- the scenario ---- */

static int api_p2_ready(void)
{
    return instance_state("api", addr2) == RESOLVER_STATE_READY;
}
static int api_p2_not_ready(void)
{
    int s = instance_state("api", addr2);
    return s >= 0 && s != RESOLVER_STATE_READY;
}
static int dead_failed(void)
{
    return instance_state("dead", addr_dead) == RESOLVER_STATE_TRANSIENT_FAILURE;
}

static void test_version(void)
{
    char want[64];
    snprintf(want, sizeof(want), "%d.%d.%d", RESOLVER_VERSION_MAJOR, RESOLVER_VERSION_MINOR,
             RESOLVER_VERSION_PATCH);
    check(strcmp(resolver_version(), want) == 0, "resolver_version() \"%s\" is the macros' \"%s\"",
          resolver_version(), want);
}

static char ready_why[128];
static int engine_ready(void)
{
    return resolver_engine_ready(engine, ready_why, sizeof(ready_why)) == 1;
}

static void test_first_listing(void)
{
    check(wait_event(&log_one, 0, RESOLVER_EVENT_INSTANCE_ADDED, "api", addr1, RESOLVER_STATE_COUNT,
                     10000),
          "watch(api): INSTANCE_ADDED %s", addr1);
    check(wait_event(&log_one, 0, RESOLVER_EVENT_SERVICE_SYNCED, "api", "", RESOLVER_STATE_COUNT,
                     10000),
          "watch(api): SERVICE_SYNCED api");
    check(wait_event(&log_one, 0, RESOLVER_EVENT_INSTANCE_STATE, "api", addr1, RESOLVER_STATE_READY,
                     10000),
          "watch(api): INSTANCE_STATE %s READY", addr1);
    long added =
        find_event(&log_one, 0, RESOLVER_EVENT_INSTANCE_ADDED, "api", addr1, RESOLVER_STATE_COUNT);
    long synced =
        find_event(&log_one, 0, RESOLVER_EVENT_SERVICE_SYNCED, "api", "", RESOLVER_STATE_COUNT);
    check(added >= 0 && synced > added, "the instance of the first listing comes before SYNCED");
    check(wait_event(&log_all, 0, RESOLVER_EVENT_INSTANCE_ADDED, "other", addr1,
                     RESOLVER_STATE_COUNT, 10000) &&
              wait_event(&log_all, 0, RESOLVER_EVENT_SERVICE_SYNCED, "other", "",
                         RESOLVER_STATE_COUNT, 10000) &&
              wait_event(&log_all, 0, RESOLVER_EVENT_INSTANCE_STATE, "api", addr1,
                         RESOLVER_STATE_READY, 10000),
          "watch(all): events of api and of other");
    check(count_service(&log_one, "other") == 0 && count_service(&log_one, "dead") == 0,
          "watch(api) gets no event of another service");
    check(wait_event(&log_all, 0, RESOLVER_EVENT_SERVICE_SYNCED, "slow", "", RESOLVER_STATE_COUNT,
                     10000),
          "watch(all): SERVICE_SYNCED for a service with no instance (slow)");
    check(drive_until(engine_ready, 10000) && strcmp(ready_why, "ready") == 0,
          "resolver_engine_ready: 1 once every service is listed, \"%s\"", ready_why);
}

static void test_pick_details(void)
{
    resolver_pick_result r;
    char why[256] = "untouched";
    int rc = resolver_engine_pick_ex(engine, "api", NULL, &r, why, sizeof(why));
    check(rc == 0, "pick_ex(api): %s", rc == 0 ? "0" : resolver_strerror(rc));
    if (rc != 0)
        return;
    check(strcmp(r.address, addr1) == 0 && strcmp(r.zone, "z1") == 0 && r.weight == 3 && r.tls == 0,
          "the pick carries the registry's details: %s zone=%s weight=%u tls=%d", r.address, r.zone,
          r.weight, r.tls);
    check(r.metadata && strcmp(r.metadata, "{\"v\":\"1\"}") == 0,
          "the pick carries its metadata: %s", r.metadata ? r.metadata : "(none)");
    check(resolver_engine_done(engine, r.ticket, (resolver_outcome)7, 1) == RESOLVER_ERR_INVALID,
          "done with an outcome the library does not know: RESOLVER_ERR_INVALID");
    check(resolver_engine_done(engine, r.ticket, RESOLVER_OUTCOME_OK, 5) == 0,
          "the ticket survives the invalid done: done OK answers 0");
    check(resolver_engine_done(engine, r.ticket, RESOLVER_OUTCOME_OK, 5) == RESOLVER_ERR_NOT_FOUND,
          "a second done: RESOLVER_ERR_NOT_FOUND");

    /* The reasons, with the states listed. */
    check(drive_until(dead_failed, 10000),
          "dead's instance (nothing listens) is TRANSIENT_FAILURE");
    rc = resolver_engine_pick_ex(engine, "dead", NULL, &r, why, sizeof(why));
    check(rc == RESOLVER_ERR_NONE_READY && strstr(why, "dead") &&
              strstr(why, "1 TRANSIENT_FAILURE"),
          "pick_ex(dead): NONE_READY, \"%s\"", why);
    rc = resolver_engine_pick_ex(engine, "slow", NULL, &r, why, sizeof(why));
    check(rc == RESOLVER_ERR_NO_INSTANCE && strstr(why, "slow"),
          "pick_ex(slow): NO_INSTANCE, \"%s\"", why);
    rc = resolver_engine_pick_ex(engine, "", NULL, &r, why, sizeof(why));
    check(rc == RESOLVER_ERR_INVALID && why[0], "pick_ex(\"\"): INVALID, \"%s\"", why);
}

static void test_introspection(void)
{
    resolver_service_info *svcs;
    size_t n;
    int rc = resolver_engine_services(engine, &svcs, &n);
    check(rc == 0 && n == 5, "resolver_engine_services: %zu services", n);
    int sorted = 1, api_ok = 0, dead_ok = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i > 0 && strcmp(svcs[i - 1].name, svcs[i].name) >= 0)
            sorted = 0;
        const resolver_service_info *s = &svcs[i];
        if (strcmp(s->name, "api") == 0)
            api_ok = strcmp(s->prefix, "api/") == 0 && strcmp(s->policy, "round_robin") == 0 &&
                     s->synced == 1 && s->revision > 0 && s->instances == 1 &&
                     s->states[RESOLVER_STATE_READY] == 1 && s->state == RESOLVER_STATE_READY &&
                     s->picks >= 1;
        if (strcmp(s->name, "dead") == 0)
            dead_ok = s->instances == 1 && s->states[RESOLVER_STATE_TRANSIENT_FAILURE] == 1 &&
                      s->state == RESOLVER_STATE_TRANSIENT_FAILURE && s->pick_failures >= 1;
    }
    check(sorted, "services sorted by name");
    check(api_ok, "api: prefix api/, round_robin, synced, 1 READY, its picks counted");
    check(dead_ok, "dead: 1 TRANSIENT_FAILURE, its failed pick counted");
    resolver_service_info_free(svcs, n);

    resolver_instance_info *info;
    check(resolver_engine_instances(engine, "nosuch", &info, &n) == RESOLVER_ERR_NOT_FOUND,
          "instances of an unknown service: RESOLVER_ERR_NOT_FOUND");
    resolver_pick_result held;
    rc = resolver_engine_pick(engine, "api", NULL, &held);
    rc = rc ? rc : resolver_engine_instances(engine, "api", &info, &n);
    check(rc == 0 && n == 1, "resolver_engine_instances(api): %zu", n);
    if (rc == 0 && n == 1) {
        const resolver_instance_info *x = &info[0];
        check(strcmp(x->address, addr1) == 0 && x->state == RESOLVER_STATE_READY &&
                  x->weight == 3 && strcmp(x->zone, "z1") == 0 && x->keys == 1 &&
                  x->outstanding == 1 && x->tls == 0 && x->picks >= 2 && x->connect_attempts >= 1 &&
                  !x->operator_drained && !x->ejected && x->metadata &&
                  strcmp(x->metadata, "{\"v\":\"1\"}") == 0,
              "instance: %s %s weight=%u zone=%s keys=%u outstanding=%zu picks=%llu metadata=%s",
              x->address, resolver_state_name(x->state), x->weight, x->zone, x->keys,
              x->outstanding, (unsigned long long)x->picks, x->metadata ? x->metadata : "NULL");
    }
    resolver_instance_info_free(info, n);
    resolver_engine_done(engine, held.ticket, RESOLVER_OUTCOME_OK, RESOLVER_LATENCY_UNKNOWN);

    /* The same as resolverd, which watches the same etcd and backends. */
    check(drive_until(api_instances_match, 10000), "instances(api) as `resolverctl instances` %s",
          mismatch);
    check(drive_until(status_match, 10000), "status as `resolverctl status` %s", mismatch);
}

static int meta_v2_listed(void)
{
    resolver_instance_info *info;
    size_t n;
    int ok = 0;
    if (resolver_engine_instances(engine, "api", &info, &n) != 0)
        return 0;
    ok = n == 1 && info[0].metadata && strcmp(info[0].metadata, "{\"v\":\"2\"}") == 0 &&
         info[0].weight == 4;
    resolver_instance_info_free(info, n);
    return ok;
}

/* The registry changes the instance's metadata while a pick of it is
 * held: the held pick's text stays as it was (ASan would see a freed one),
 * a new pick gets the new, on this thread and on another. */
static void *pick_on_thread(void *arg)
{
    resolver_pick_result r;
    char *out = arg;
    if (resolver_engine_pick(engine, "api", NULL, &r) == 0) {
        snprintf(out, 64, "%s", r.metadata ? r.metadata : "NULL");
        resolver_engine_done(engine, r.ticket, RESOLVER_OUTCOME_OK, 1);
    }
    return NULL;
}

static void test_metadata_change(void)
{
    resolver_pick_result held, r;
    int rc = resolver_engine_pick(engine, "api", NULL, &held);
    char value[256];
    snprintf(value, sizeof(value),
             "{\"address\": \"%s\", \"weight\": 4, \"zone\": \"z1\", \"metadata\": {\"v\": \"2\"}}",
             addr1);
    size_t from = log_one.n;
    check(rc == 0 && etcdctl("put", "api/1", value) == 0, "etcdctl put api/1 with metadata v 2");
    check(drive_until(meta_v2_listed, 10000), "instances(api): metadata {\"v\":\"2\"}, weight 4");
    check(find_event(&log_one, from, RESOLVER_EVENT_INSTANCE_STATE, "api", addr1,
                     RESOLVER_STATE_READY) >= 0,
          "watch(api): the change is an INSTANCE_STATE event (READY)");
    drive(100); /* the engine's reclamation runs meanwhile */
    check(rc == 0 && held.metadata && strcmp(held.metadata, "{\"v\":\"1\"}") == 0,
          "the held pick's metadata is still %s", rc == 0 && held.metadata ? held.metadata : "-");
    rc = resolver_engine_pick(engine, "api", NULL, &r);
    check(rc == 0 && r.metadata && strcmp(r.metadata, "{\"v\":\"2\"}") == 0 && r.weight == 4,
          "a new pick: metadata %s weight %u", rc == 0 && r.metadata ? r.metadata : "-",
          rc == 0 ? r.weight : 0);
    if (rc == 0)
        resolver_engine_done(engine, r.ticket, RESOLVER_OUTCOME_OK, 1);
    char other[64] = "";
    pthread_t t;
    pthread_create(&t, NULL, pick_on_thread, other);
    pthread_join(t, NULL);
    drive(20);
    check(strcmp(other, "{\"v\":\"2\"}") == 0, "a pick on another thread: metadata %s", other);
    resolver_engine_done(engine, held.ticket, RESOLVER_OUTCOME_OK, 1);
    check(drive_until(api_instances_match, 10000), "instances(api) as `resolverctl instances` %s",
          mismatch);
}

static void test_churn_events(void)
{
    size_t from_one = log_one.n, from_all = log_all.n;
    check(etcdctl("put", "api/2", addr2) == 0, "etcdctl put api/2 %s", addr2);
    check(wait_event(&log_one, from_one, RESOLVER_EVENT_INSTANCE_ADDED, "api", addr2,
                     RESOLVER_STATE_COUNT, 10000),
          "watch(api): INSTANCE_ADDED %s (a key put)", addr2);
    check(wait_event(&log_one, from_one, RESOLVER_EVENT_INSTANCE_STATE, "api", addr2,
                     RESOLVER_STATE_READY, 10000),
          "watch(api): INSTANCE_STATE %s READY", addr2);
    check(find_event(&log_all, from_all, RESOLVER_EVENT_INSTANCE_ADDED, "api", addr2,
                     RESOLVER_STATE_COUNT) >= 0,
          "watch(all) got it too");
    check(drive_until(api_p2_ready, 5000), "instances(api): %s READY", addr2);

    /* The backend goes: its state changes away from READY. */
    from_one = log_one.n;
    check(kill(pid2, SIGKILL) == 0, "backend on %s killed", addr2);
    int left = wait_event(&log_one, from_one, RESOLVER_EVENT_INSTANCE_STATE, "api", addr2,
                          RESOLVER_STATE_COUNT, 10000);
    long i = find_event(&log_one, from_one, RESOLVER_EVENT_INSTANCE_STATE, "api", addr2,
                        RESOLVER_STATE_COUNT);
    check(left && i >= 0 && log_one.ev[i].state != RESOLVER_STATE_READY,
          "watch(api): INSTANCE_STATE %s %s after its backend died", addr2,
          i >= 0 ? resolver_state_name(log_one.ev[i].state) : "-");
    check(drive_until(api_p2_not_ready, 5000), "instances(api): %s no longer READY", addr2);

    /* Its key is deleted: removed, then closed (no pick outstanding). */
    from_one = log_one.n;
    check(etcdctl("del", "api/2", NULL) == 0, "etcdctl del api/2");
    check(wait_event(&log_one, from_one, RESOLVER_EVENT_INSTANCE_REMOVED, "api", addr2,
                     RESOLVER_STATE_COUNT, 10000),
          "watch(api): INSTANCE_REMOVED %s (its key deleted)", addr2);
    check(wait_event(&log_one, from_one, RESOLVER_EVENT_INSTANCE_DRAINED, "api", addr2,
                     RESOLVER_STATE_COUNT, 10000),
          "watch(api): INSTANCE_DRAINED %s, its last event", addr2);
    long drained = find_event(&log_one, from_one, RESOLVER_EVENT_INSTANCE_DRAINED, "api", addr2,
                              RESOLVER_STATE_COUNT);
    int after = 0;
    for (size_t k = (size_t)drained + 1; drained >= 0 && k < log_one.n; k++)
        after += strcmp(log_one.ev[k].address, addr2) == 0;
    drive(300);
    for (size_t k = (size_t)drained + 1; drained >= 0 && k < log_one.n; k++)
        after += strcmp(log_one.ev[k].address, addr2) == 0;
    check(drained >= 0 && after == 0, "no event of %s after DRAINED", addr2);
    check(instance_state("api", addr2) == -1, "instances(api) no longer lists %s", addr2);
}

/* A removed instance with a pick outstanding drains: REMOVED (DRAINING,
 * outstanding 1), DRAINED once its pick is done. */
static void test_drain_on_remove(void)
{
    size_t from = log_one.n;
    check(etcdctl("put", "api/3", addr3) == 0, "etcdctl put api/3 %s", addr3);
    check(wait_event(&log_one, from, RESOLVER_EVENT_INSTANCE_STATE, "api", addr3,
                     RESOLVER_STATE_READY, 10000),
          "watch(api): %s READY", addr3);
    /* Pick until the round robin gives addr3. */
    resolver_pick_result r;
    int got = 0;
    for (int k = 0; k < 10 && !got; k++) {
        if (resolver_engine_pick(engine, "api", NULL, &r) != 0)
            continue;
        if (strcmp(r.address, addr3) == 0)
            got = 1;
        else
            resolver_engine_done(engine, r.ticket, RESOLVER_OUTCOME_OK, 1);
    }
    check(got, "a pick of %s held", addr3);
    from = log_one.n;
    check(etcdctl("del", "api/3", NULL) == 0, "etcdctl del api/3");
    int removed = wait_event(&log_one, from, RESOLVER_EVENT_INSTANCE_REMOVED, "api", addr3,
                             RESOLVER_STATE_COUNT, 10000);
    long i = find_event(&log_one, from, RESOLVER_EVENT_INSTANCE_REMOVED, "api", addr3,
                        RESOLVER_STATE_COUNT);
    check(removed && i >= 0 && log_one.ev[i].state == RESOLVER_STATE_DRAINING &&
              log_one.ev[i].outstanding == 1,
          "watch(api): INSTANCE_REMOVED %s DRAINING with 1 outstanding", addr3);
    drive(200);
    check(find_event(&log_one, from, RESOLVER_EVENT_INSTANCE_DRAINED, "api", addr3,
                     RESOLVER_STATE_COUNT) < 0,
          "not DRAINED while its pick is outstanding");
    if (got)
        resolver_engine_done(engine, r.ticket, RESOLVER_OUTCOME_OK, 1);
    check(wait_event(&log_one, from, RESOLVER_EVENT_INSTANCE_DRAINED, "api", addr3,
                     RESOLVER_STATE_COUNT, 5000),
          "watch(api): INSTANCE_DRAINED %s once its pick is done", addr3);
}

static void test_operator_drain(void)
{
    check(resolver_engine_drain(engine, "api", "127.0.0.1:1") == RESOLVER_ERR_NOT_FOUND,
          "drain of an unknown address: NOT_FOUND");
    check(resolver_engine_drain(engine, "nosuch", addr1) == RESOLVER_ERR_NOT_FOUND,
          "drain in an unknown service: NOT_FOUND");
    check(resolver_engine_undrain(engine, "api", addr1) == RESOLVER_ERR_INVALID,
          "undrain of an instance not drained: INVALID");
    resolver_pick_result held, r;
    int rc = resolver_engine_pick(engine, "api", NULL, &held);
    check(rc == 0, "a pick of api held across the drain");
    size_t from = log_one.n;
    check(resolver_engine_drain(engine, "api", addr1) == 0, "drain api %s: 0", addr1);
    drive(50);
    check(find_event(&log_one, from, RESOLVER_EVENT_INSTANCE_STATE, "api", addr1,
                     RESOLVER_STATE_DRAINING) >= 0 ||
              find_event(&log_one, from, RESOLVER_EVENT_INSTANCE_REMOVED, "api", addr1,
                         RESOLVER_STATE_DRAINING) >= 0,
          "watch(api): an event says %s is DRAINING", addr1);
    resolver_instance_info *info;
    size_t n;
    int ok = resolver_engine_instances(engine, "api", &info, &n) == 0 && n == 1 &&
             info[0].state == RESOLVER_STATE_DRAINING && info[0].operator_drained == 1;
    if (n)
        resolver_instance_info_free(info, n);
    check(ok, "instances(api): %s DRAINING, operator_drained", addr1);
    char why[256];
    rc = resolver_engine_pick_ex(engine, "api", NULL, &r, why, sizeof(why));
    check(rc == RESOLVER_ERR_NONE_READY && strstr(why, "DRAINING"),
          "pick while drained: NONE_READY, \"%s\"", why);
    check(resolver_engine_undrain(engine, "api", addr1) == 0, "undrain api %s: 0", addr1);
    /* The picker is republished at the end of the loop's iteration. */
    drive(50);
    rc = resolver_engine_pick_ex(engine, "api", NULL, &r, why, sizeof(why));
    check(rc == 0 && strcmp(r.address, addr1) == 0, "pick after undrain: %s",
          rc == 0 ? r.address : why);
    if (rc == 0)
        resolver_engine_done(engine, r.ticket, RESOLVER_OUTCOME_OK, 1);
    resolver_engine_done(engine, held.ticket, RESOLVER_OUTCOME_OK, 1);
    check(instance_state("api", addr1) == RESOLVER_STATE_READY, "%s READY again", addr1);
}

static void test_pick_wait(void)
{
    resolver_pick_result r;
    char why[256];
    check(resolver_engine_pick_wait(engine, "slow", NULL, 100, &r, why, sizeof(why)) ==
              RESOLVER_ERR_INVALID,
          "pick_wait on the engine thread: INVALID (\"%s\")", why);

    /* Until an instance becomes READY. */
    waiter_job job = {.service = "slow", .timeout_ms = 20000};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &job);
    cur_job = &job;
    drive(400);
    check(!atomic_load(&job.finished), "pick_wait(slow) still waits after 400 ms (no instance)");
    uint64_t t0 = now_ms();
    check(etcdctl("put", "slow/1", addr3) == 0, "etcdctl put slow/1 %s", addr3);
    check(drive_until(job_finished, 15000), "pick_wait(slow) returned");
    pthread_join(t, NULL);
    check(job.rc == 0 && strcmp(job.address, addr3) == 0 && job.took_ms >= 400,
          "pick_wait(slow): %s after %llu ms (%llu ms after the put began), done from its thread",
          job.rc == 0 ? job.address : job.why, (unsigned long long)job.took_ms,
          (unsigned long long)(now_ms() - t0));

    /* Until the deadline: the last failure and its reason. */
    waiter_job late = {.service = "dead", .timeout_ms = 800};
    pthread_create(&t, NULL, wait_thread, &late);
    cur_job = &late;
    check(drive_until(job_finished, 10000), "pick_wait(dead, 800 ms) returned");
    pthread_join(t, NULL);
    check(late.rc == RESOLVER_ERR_NONE_READY && late.took_ms >= 750 && late.took_ms < 5000 &&
              strstr(late.why, "TRANSIENT_FAILURE"),
          "pick_wait(dead): %s after %llu ms, \"%s\"", resolver_strerror(late.rc),
          (unsigned long long)late.took_ms, late.why);
}

static void test_pick_async(void)
{
    resolver_pick_result r;
    char why[256];
    resolver_pick_waiter *w = NULL;

    /* Answered at once: no callback. */
    async_job now = {0};
    int rc = resolver_engine_pick_async(engine, "api", NULL, 1000, on_async, &now, &r, why,
                                        sizeof(why), &w);
    check(rc == 0 && w == NULL && strcmp(r.address, addr1) == 0, "pick_async(api) answers at once");
    if (rc == 0)
        resolver_engine_done(engine, r.ticket, RESOLVER_OUTCOME_OK, 1);

    /* Waits for the instance. */
    async_job job = {0};
    in_async_call = 1;
    rc = resolver_engine_pick_async(engine, "late", NULL, 15000, on_async, &job, &r, why,
                                    sizeof(why), &w);
    in_async_call = 0;
    check(rc == RESOLVER_PICK_PENDING && w != NULL, "pick_async(late): RESOLVER_PICK_PENDING");
    drive(200);
    check(job.calls == 0, "no callback while late has no instance");
    check(etcdctl("put", "late/1", addr3) == 0, "etcdctl put late/1 %s", addr3);
    cur_async = &job;
    check(drive_until(async_called, 10000), "pick_async(late): the callback came");
    check(job.calls == 1 && job.rc == 0 && strcmp(job.address, addr3) == 0 && !async_called_inside,
          "pick_async(late): callback once, rc 0, %s", job.address);
    if (job.rc == 0)
        check(resolver_engine_done(engine, job.ticket, RESOLVER_OUTCOME_FAILED, 3) == 0,
              "done (FAILED) for the callback's ticket");

    /* Times out with the reason. */
    async_job dead = {0};
    rc = resolver_engine_pick_async(engine, "dead", NULL, 300, on_async, &dead, &r, why,
                                    sizeof(why), &w);
    cur_async = &dead;
    int called = rc == RESOLVER_PICK_PENDING && drive_until(async_called, 5000);
    check(called && dead.calls == 1 && dead.rc == RESOLVER_ERR_NONE_READY &&
              strstr(dead.why, "TRANSIENT_FAILURE"),
          "pick_async(dead, 300 ms): callback with %s, \"%s\"", resolver_strerror(dead.rc),
          dead.why);

    /* Cancelled: never called. */
    async_job gone = {0};
    rc = resolver_engine_pick_async(engine, "dead", NULL, 200, on_async, &gone, &r, why,
                                    sizeof(why), &w);
    resolver_pick_waiter_free(w);
    drive(500);
    check(rc == RESOLVER_PICK_PENDING && gone.calls == 0,
          "pick_async cancelled with resolver_pick_waiter_free: no callback");
}

static int extra_listed(void)
{
    return instance_state("extra", addr1) == RESOLVER_STATE_READY;
}

static void test_reload(const char *config_path)
{
    resolver_instance_info *info;
    size_t n;
    uint64_t attempts = 0;
    if (resolver_engine_instances(engine, "api", &info, &n) == 0 && n == 1)
        attempts = info[0].connect_attempts;
    resolver_instance_info_free(info, n);

    check(etcdctl("put", "extra/1", addr1) == 0, "etcdctl put extra/1 %s", addr1);
    resolver_config *cfg;
    char err[256];
    FILE *f = fopen(config_path, "r");
    char text[8192];
    size_t len = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
    if (f)
        fclose(f);
    text[len] = '\0';
    int rc = resolver_config_load_string(text, &cfg, err, sizeof(err));
    /* api under another policy, "other" gone, "extra" new. */
    rc = rc ? rc : resolver_config_set(cfg, "services[0].policy", "random", err, sizeof(err));
    rc = rc ? rc : resolver_config_remove_service(cfg, "other");
    rc = rc ? rc
            : resolver_config_add_service(cfg, "extra", "{\"prefix\": \"extra/\"}", err,
                                          sizeof(err));
    check(rc == 0, "a changed configuration built (%s)", rc ? err : "ok");
    if (rc)
        return;
    size_t from = log_all.n;
    rc = resolver_engine_reload(engine, cfg, err, sizeof(err));
    check(rc == 0, "resolver_engine_reload: %s", rc ? err : "0");
    check(drive_until(extra_listed, 10000), "extra's instance is READY after the reload");
    check(find_event(&log_all, from, RESOLVER_EVENT_SERVICE_SYNCED, "extra", "",
                     RESOLVER_STATE_COUNT) >= 0,
          "watch(all): SERVICE_SYNCED extra");
    resolver_service_info *svcs;
    rc = resolver_engine_services(engine, &svcs, &n);
    int api_random = 0, other = 0, extra = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        api_random |= strcmp(svcs[i].name, "api") == 0 && strcmp(svcs[i].policy, "random") == 0;
        other |= strcmp(svcs[i].name, "other") == 0;
        extra |= strcmp(svcs[i].name, "extra") == 0;
    }
    resolver_service_info_free(svcs, n);
    check(api_random && !other && extra, "services after the reload: api random, extra, no other");
    rc = resolver_engine_instances(engine, "api", &info, &n);
    check(rc == 0 && n == 1 && info[0].state == RESOLVER_STATE_READY &&
              info[0].connect_attempts == attempts,
          "api's instance kept its connection across the reload (connect attempts %llu -> %llu)",
          (unsigned long long)attempts,
          (unsigned long long)(rc == 0 && n ? info[0].connect_attempts : 0));
    resolver_instance_info_free(info, n);

    /* A bad configuration leaves the engine as it was. */
    rc = resolver_engine_reload(engine, NULL, err, sizeof(err));
    check(rc == RESOLVER_ERR_INVALID, "reload(NULL): INVALID");
}

static void test_shutdown(void)
{
    resolver_pick_result held, r;
    int rc = resolver_engine_pick(engine, "api", NULL, &held);
    resolver_engine_shutdown(engine);
    char why[128];
    check(resolver_engine_pick_ex(engine, "api", NULL, &r, why, sizeof(why)) == RESOLVER_ERR_CLOSED,
          "pick after shutdown: CLOSED (\"%s\")", why);
    check(resolver_engine_ready(engine, why, sizeof(why)) == 0,
          "not ready when shutting down (\"%s\")", why);
    drive(100);
    check(rc == 0 && !resolver_engine_drained(engine), "not drained while a pick is outstanding");
    if (rc == 0)
        resolver_engine_done(engine, held.ticket, RESOLVER_OUTCOME_OK, 1);
    uint64_t end = now_ms() + 5000;
    while (!resolver_engine_drained(engine) && now_ms() < end)
        turn(10);
    check(resolver_engine_drained(engine), "drained once the pick is done");
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: engine_api CONFIG ETCD_URL PORT1 PORT2 PID2 PORT3 DEAD_PORT "
                        "SOCKET\n");
        return 2;
    }
    etcd_url = argv[2];
    snprintf(addr1, sizeof(addr1), "127.0.0.1:%s", argv[3]);
    snprintf(addr2, sizeof(addr2), "127.0.0.1:%s", argv[4]);
    pid2 = (pid_t)atol(argv[5]);
    snprintf(addr3, sizeof(addr3), "127.0.0.1:%s", argv[6]);
    snprintf(addr_dead, sizeof(addr_dead), "127.0.0.1:%s", argv[7]);
    sock_path = argv[8];
    signal(SIGPIPE, SIG_IGN);

    resolver_config *cfg;
    char err[256];
    if (resolver_config_load_file(argv[1], &cfg, err, sizeof(err)) != 0 ||
        resolver_config_set_endpoints(cfg, etcd_url) != 0 ||
        resolver_engine_new(&engine, cfg) != 0) {
        fprintf(stderr, "engine_api: %s\n", err);
        return 2;
    }
    resolver_watch *w_one, *w_all;
    check(resolver_engine_watch(engine, "api", on_event, &log_one, &w_one) == 0 &&
              resolver_engine_watch(engine, NULL, on_event, &log_all, &w_all) == 0,
          "two watches registered before the engine first runs");

    test_version();
    test_first_listing();
    test_pick_details();
    test_introspection();
    test_metadata_change();
    test_churn_events();
    test_drain_on_remove();
    test_operator_drain();
    test_pick_wait();
    test_pick_async();
    test_reload(argv[1]);

    resolver_watch_free(w_one);
    size_t n = log_one.n, from = log_all.n;
    check(etcdctl("put", "api/9", addr3) == 0, "etcdctl put api/9 %s", addr3);
    check(wait_event(&log_all, from, RESOLVER_EVENT_INSTANCE_ADDED, "api", addr3,
                     RESOLVER_STATE_COUNT, 10000) &&
              log_one.n == n,
          "after resolver_watch_free only the other watch is called");
    test_shutdown();
    resolver_watch_free(w_all);
    resolver_engine_free(engine);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
