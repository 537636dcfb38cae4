/*
 * engine.c - the engine: services by name, tickets, the public embedded API.
 *
 * Threading: the engine's state belongs to the thread that drives the loop
 * (resolver_engine_run or resolver_engine_process).  resolver_engine_pick
 * and resolver_engine_done may be called from any thread:
 *  - a pick finds its service in `directory`, an immutable name -> service
 *    table republished when services come and go, and picks from the
 *    service's immutable picker; both are read under hazard pointers, so a
 *    pick takes no lock and never waits for the engine;
 *  - what a pick or done must change in engine state (a ticket to track, a
 *    ticket to release, a service to discover) is pushed on a lock-free
 *    stack and applied by the loop thread, which the push wakes up.
 *  - a pick of a service nobody discovered yet posts at most one discover
 *    request per name at a time (`discovering`, a small table of name
 *    hashes), and while on_demand_services_max is reached such a pick is
 *    refused on its own thread (`on_demand_full`) without posting anything:
 *    however fast threads pick unknown names, the inbox holds a bounded
 *    number of discover requests and the log a line per 10 s.
 * On the loop thread itself (the daemon) the same calls apply directly; a
 * done there first looks in the inbox for a ticket another thread took.
 * The cache file is encoded on the loop and written by a thread of its own
 * (cache.h), at most once per CACHE_WRITE_INTERVAL_MS, and flushed at
 * shutdown (before the drain) and in resolver_engine_del.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cache.h"
#include "confdiff.h"
#include "dns.h"
#include "hazard.h"
#include "engine.h"
#include "etcd.h"
#include "log.h"
#include "proto.h"
#include "registrar.h"
#include "strmap.h"
#include "u64map.h"

typedef struct timeout_queue timeout_queue;

struct rsv_ticket {
    uint64_t id;
    resolver_engine *engine;
    rsv_instance *instance;      /* holds a reference */
    struct timeout_queue *queue; /* expiry order, see ticket_track */
    rsv_ticket *q_prev, *q_next;
    uint64_t deadline;
    rsv_ticket_owner *owner;
    rsv_ticket *owner_prev, *owner_next;
    uint64_t timeout_ms;
    long uid, pid;  /* who picked it (owner's at the pick); -1: in-process, no peer */
    char service[]; /* its service's name, for the leaked-ticket warning */
};

/* Work a foreign thread hands to the loop thread. */
typedef struct engine_msg {
    enum { MSG_TICKET, MSG_DONE, MSG_DISCOVER } type;
    struct engine_msg *next;
    rsv_ticket *ticket; /* MSG_TICKET */
    uint64_t id;        /* MSG_DONE; MSG_DISCOVER: its slot in `discovering` */
    int failed;
    uint32_t latency_ms;
    char name[]; /* MSG_DISCOVER */
} engine_msg;

typedef struct {
    char *name; /* a copy: readers may outlive the service's own string */
    rsv_service *svc;
} dir_entry;

typedef struct {
    size_t n;
    dir_entry *entries; /* sorted by name */
    char *names;        /* one allocation for every name */
} directory;

/* Discover requests in flight, as hashes of their names: a name is posted
 * only when none of its DISCOVER_PROBES slots holds its hash already (a
 * race with a slot being freed may post it once more, never more than
 * DISCOVER_PROBES times), and never more than DISCOVER_SLOTS requests wait
 * at once.  A hash collision only delays a name until the request holding
 * the slot has been applied. */
#define DISCOVER_SLOTS 64
#define DISCOVER_PROBES 8

struct resolver_engine {
    resolver_config *cfg;
    rsv_hazard_domain *hazard;
    _Atomic(void *) directory;       /* directory, read by any thread */
    _Atomic(engine_msg *) inbox;     /* pushed by any thread */
    engine_msg *taken, **taken_tail; /* loop thread: off the inbox, not applied yet */
    atomic_uint_fast64_t discovering[DISCOVER_SLOTS];
    atomic_int on_demand_full;      /* 1: picks of unknown names are refused at once */
    atomic_uint on_demand_max_seen; /* the cap it was reached at, for the message */
    atomic_uint_fast64_t ticket_seq;
    pthread_t loop_thread;
    atomic_int loop_thread_known;
    rsv_loop *loop;
    rsv_etcd *etcd;
    rsv_dns *dns;             /* instance host names */
    rsv_registrar *registrar; /* local instances published in etcd */
    rsv_strmap services;      /* name -> rsv_service */
    size_t n_on_demand;
    rsv_u64map tickets;    /* id -> rsv_ticket */
    timeout_queue *queues; /* one per distinct ticket_timeout_ms */
    uint64_t started_ms;
    uint64_t tickets_leaked, tickets_released, done_unknown;
    atomic_uint_fast64_t picks, pick_failures;
    rsv_engine_change_cb listener;
    void *listener_arg;
    rsv_engine_picker_cb picker_hook;
    void *picker_hook_arg;
    uint64_t accept_backoffs[RSV_LISTENER_COUNT];
    atomic_int shutting_down;
    rsv_timer *housekeeping;        /* cache writes, idle on-demand services */
    rsv_cache_writer *cache_writer; /* started at the first write */
    int cache_dirty;                /* a change not yet handed to the writer */
    uint64_t cache_next_ms;         /* no write before this (loop time) */
    uint64_t last_idle_sweep_ms;
    size_t cache_loaded;
};

/* An on-demand service nobody picked for this long is dropped (its watch
 * and its connections are not free). */
#define ON_DEMAND_IDLE_MS (10 * 60 * 1000)
#define HOUSEKEEPING_MS 250
/* The cache file is written at most this often: under churn every change
 * would otherwise cost a write and an fsync.  At a stop it is written at
 * once (flush_cache). */
#define CACHE_WRITE_INTERVAL_MS 2000

/* ---- services ---- */

static const char *change_event(rsv_change what)
{
    switch (what) {
    case RSV_CHANGE_ADDED:
        return "added";
    case RSV_CHANGE_REMOVED:
        return "removed";
    case RSV_CHANGE_STATE:
        return "state";
    case RSV_CHANGE_CLOSED:
        return "closed";
    case RSV_CHANGE_PICKER:
        break;
    }
    return "?";
}

static void on_service_change(void *arg, rsv_service *svc, const rsv_instance *inst,
                              rsv_change what)
{
    resolver_engine *e = arg;
    if (what == RSV_CHANGE_PICKER) {
        if (e->picker_hook)
            e->picker_hook(e->picker_hook_arg, rsv_service_name(svc));
        return;
    }
    if (e->listener)
        e->listener(e->listener_arg, rsv_service_name(svc), inst, change_event(what));
}

/* ---- the directory: services by name for picking threads ---- */

static void directory_free(void *arg);

static void directory_free_retire(resolver_engine *e, void *old)
{
    rsv_hazard_retire(e->hazard, old, directory_free);
}

static void directory_free(void *arg)
{
    directory *d = arg;
    if (!d)
        return;
    free(d->entries);
    free(d->names);
    free(d);
}

static int by_entry_name(const void *a, const void *b)
{
    return strcmp(((const dir_entry *)a)->name, ((const dir_entry *)b)->name);
}

/* Publishes the services of the map, but `skip` (a service about to be
 * removed; NULL: none).  0, or RESOLVER_ERR_NOMEM with the old directory
 * still published: a caller must then not free a service the old one
 * names, nor count on a new one being visible. */
static int publish_directory(resolver_engine *e, const char *skip)
{
    directory *d = calloc(1, sizeof(*d));
    size_t bytes = 0;
    const char *name;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, &name, NULL);)
        bytes += strlen(name) + 1;
    if (d) {
        d->entries = calloc(e->services.len + 1, sizeof(dir_entry));
        d->names = malloc(bytes + 1);
    }
    if (!d || !d->entries || !d->names) {
        directory_free(d);
        static rsv_log_limit lim;
        LOG_ERROR_LIMITED(&lim, "out of memory publishing the service directory");
        return RESOLVER_ERR_NOMEM;
    }
    char *w = d->names;
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, &name, &value);) {
        if (skip && strcmp(name, skip) == 0)
            continue;
        size_t len = strlen(name) + 1;
        memcpy(w, name, len);
        d->entries[d->n].name = w;
        d->entries[d->n].svc = value;
        d->n++;
        w += len;
    }
    qsort(d->entries, d->n, sizeof(dir_entry), by_entry_name);
    directory_free_retire(e, atomic_exchange(&e->directory, d));
    return 0;
}

/* Any thread: the service called `name`, protected in the SERVICE hazard
 * slot (clear it when done), or NULL. */
static rsv_service *lookup_service(resolver_engine *e, const char *name)
{
    for (;;) {
        directory *d = rsv_hazard_protect(RESOLVER_HAZARD_DIRECTORY, &e->directory);
        if (!d)
            return NULL;
        dir_entry key = {(char *)name, NULL};
        dir_entry *hit = bsearch(&key, d->entries, d->n, sizeof(dir_entry), by_entry_name);
        rsv_service *svc = hit ? hit->svc : NULL;
        if (svc && rsv_hazard_set(RESOLVER_HAZARD_SERVICE, svc) != 0)
            svc = NULL;
        /* Still the current directory: svc was not retired before we
         * published our hazard (it is retired only after a directory
         * without it is published). */
        int current = atomic_load(&e->directory) == d;
        rsv_hazard_clear(RESOLVER_HAZARD_DIRECTORY);
        if (current)
            return svc;
        rsv_hazard_clear(RESOLVER_HAZARD_SERVICE);
    }
}

static void service_free_retired(void *svc)
{
    rsv_service_free(svc);
}

/* Loop thread: removes a service; its memory goes when no picking thread
 * can hold it any more.  RESOLVER_ERR_NOMEM: nothing changed (a directory
 * without it could not be published, and the one picking threads read
 * still names it: freeing it would leave them a dangling pointer). */
static int remove_service(resolver_engine *e, const char *name)
{
    rsv_service *svc = rsv_strmap_get(&e->services, name);
    if (!svc)
        return 0;
    if (publish_directory(e, name) != 0)
        return RESOLVER_ERR_NOMEM;
    rsv_strmap_remove(&e->services, name);
    rsv_service_stop(svc);
    rsv_hazard_retire(e->hazard, svc, service_free_retired);
    return 0;
}

/* The one gate for service names into the engine (picks from any thread,
 * on-demand discovery, the cache file; the configuration loader uses the
 * same rsv_service_name_valid).  Names end up in metric labels, JSON
 * and log lines.  0, or RESOLVER_ERR_INVALID with the name shown escaped
 * as the protocol escapes it (it may hold a newline). */
static int check_service_name(const char *name, char *why, size_t whylen)
{
    if (rsv_service_name_valid(name))
        return 0;
    char shown[300];
    rsv_proto_escape(name ? name : "", shown, sizeof(shown));
    snprintf(why, whylen,
             "invalid service name \"%s\": 1..%d bytes of letters, digits, %s and "
             "non-ASCII UTF-8",
             shown, RSV_SERVICE_NAME_MAX, RSV_SERVICE_NAME_PUNCT);
    return RESOLVER_ERR_INVALID;
}

static rsv_service *add_service(resolver_engine *e, const char *name, const char *prefix,
                                const rsv_service_options *opts)
{
    char why[512];
    if (check_service_name(name, why, sizeof(why)) != 0) {
        LOG_WARN("%s; not added", why);
        return NULL;
    }
    rsv_service *svc = rsv_service_new(e->loop, e->etcd, e->dns, e->hazard, e->cfg->zone, name,
                                       prefix, opts, on_service_change, e);
    if (!svc)
        return NULL;
    if (rsv_strmap_put(&e->services, name, svc, NULL) != 0) {
        rsv_service_del(svc);
        return NULL;
    }
    if (publish_directory(e, NULL) != 0) {
        /* Never published: no picking thread can hold it. */
        rsv_strmap_remove(&e->services, name);
        rsv_service_del(svc);
        return NULL;
    }
    LOG_INFO("service %s: watching etcd prefix \"%s\" (policy %s)", name, prefix,
             rsv_policy_name(opts->policy));
    return svc;
}

static int add_configured_services(resolver_engine *e)
{
    for (size_t i = 0; i < e->cfg->n_services; i++) {
        const rsv_service_config *sc = &e->cfg->services[i];
        if (!add_service(e, sc->name, sc->prefix, &sc->options))
            return RESOLVER_ERR_NOMEM;
    }
    return 0;
}

/* The answer to a pick of a service that cannot be discovered. */
static int on_demand_refused(const char *name, unsigned max, char *why, size_t whylen)
{
    snprintf(why, whylen, "service %s is not configured and on_demand_services_max (%u) is reached",
             name, max);
    return RESOLVER_ERR_LIMIT;
}

/* Loop thread: tells picking threads whether an unknown name can still be
 * discovered.  Called where a discovery is refused and by housekeeping, so
 * a service dropped or a raised cap (reload) opens the way again within a
 * housekeeping period wherever n_on_demand changed. */
static void note_on_demand_room(resolver_engine *e)
{
    atomic_store(&e->on_demand_max_seen, e->cfg->on_demand_services_max);
    atomic_store(&e->on_demand_full, e->n_on_demand >= e->cfg->on_demand_services_max);
}

/* A service not in the configuration: go-zero's convention, prefix NAME/. */
static rsv_service *find_or_discover(resolver_engine *e, const char *name, char *why, size_t whylen,
                                     int *err)
{
    rsv_service *svc = rsv_strmap_get(&e->services, name);
    if (svc)
        return svc;
    if (e->n_on_demand >= e->cfg->on_demand_services_max) {
        note_on_demand_room(e);
        *err = on_demand_refused(name, e->cfg->on_demand_services_max, why, whylen);
        return NULL;
    }
    size_t len = strlen(name);
    char *prefix = malloc(len + 2);
    if (!prefix) {
        *err = RESOLVER_ERR_NOMEM;
        return NULL;
    }
    memcpy(prefix, name, len);
    memcpy(prefix + len, "/", 2);
    svc = add_service(e, name, prefix, &e->cfg->defaults);
    free(prefix);
    if (!svc) {
        *err = RESOLVER_ERR_NOMEM;
        return NULL;
    }
    e->n_on_demand++;
    return svc;
}

/* ---- cache_file and housekeeping ---- */

static void on_cache_entry(void *arg, const char *name, const char *prefix, const char *key,
                           const rsv_endpoint *ep)
{
    resolver_engine *e = arg;
    rsv_service *svc = rsv_strmap_get(&e->services, name);
    if (!svc) {
        if (e->n_on_demand >= e->cfg->on_demand_services_max)
            return;
        svc = add_service(e, name, prefix, &e->cfg->defaults);
        if (!svc)
            return;
        e->n_on_demand++;
    }
    if (strcmp(rsv_service_prefix(svc), prefix) != 0)
        return; /* the configuration changed the prefix: the cache is moot */
    rsv_service_preload(svc, key, ep);
    e->cache_loaded++;
}

static void load_cache(resolver_engine *e)
{
    char err[512];
    size_t skipped = 0;
    if (rsv_cache_read(e->cfg->cache_file, on_cache_entry, e, &skipped, err, sizeof(err)) != 0)
        LOG_WARN("%s; starting without it", err);
    else if (e->cache_loaded || skipped)
        LOG_INFO("cache_file %s: %zu instances loaded (stale until etcd confirms), %zu skipped",
                 e->cfg->cache_file, e->cache_loaded, skipped);
}

static int cache_enabled(const resolver_engine *e)
{
    return e->cfg->cache_file && *e->cfg->cache_file;
}

/* Hands the current state to the writer thread: encoded here (services are
 * the loop's), written there. */
static void submit_cache(resolver_engine *e)
{
    static rsv_log_limit nomem_log;
    json_t *all = json_object();
    const char *name;
    void *value;
    for (size_t pos = 0; all && rsv_strmap_next(&e->services, &pos, &name, &value);)
        if (rsv_service_synced(value))
            json_object_set_new(all, name, rsv_service_cache_json(value));
    char *text = all ? rsv_cache_encode(all) : NULL;
    json_decref(all);
    if (!e->cache_writer)
        e->cache_writer = rsv_cache_writer_new();
    if (!text || !e->cache_writer) {
        free(text); /* dirty stays: the next housekeeping tries again */
        LOG_WARN_LIMITED(&nomem_log, "cache_file %s: out of memory (or no writer thread)",
                         e->cfg->cache_file);
        return;
    }
    if (rsv_cache_writer_submit(e->cache_writer, e->cfg->cache_file, text) != 0)
        return;
    e->cache_dirty = 0;
}

static void collect_cache_changes(resolver_engine *e)
{
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, NULL, &value);)
        e->cache_dirty |= rsv_service_take_changed(value);
}

/* Housekeeping: at most one write per CACHE_WRITE_INTERVAL_MS, the last
 * one with everything that changed in between. */
static void write_cache_if_changed(resolver_engine *e)
{
    collect_cache_changes(e);
    uint64_t now = rsv_loop_now(e->loop);
    if (!e->cache_dirty || !cache_enabled(e) || now < e->cache_next_ms)
        return;
    submit_cache(e);
    e->cache_next_ms = now + CACHE_WRITE_INTERVAL_MS;
}

/* A stop: what changed since the last write goes out now, interval or not. */
static void flush_cache(resolver_engine *e)
{
    collect_cache_changes(e);
    if (e->cache_dirty && cache_enabled(e))
        submit_cache(e);
}

static void drop_idle_services(resolver_engine *e)
{
    uint64_t now = rsv_loop_now(e->loop);
    size_t n = 0;
    char **idle = calloc(e->services.len + 1, sizeof(char *));
    const char *name;
    void *value;
    for (size_t pos = 0; idle && rsv_strmap_next(&e->services, &pos, &name, &value);)
        if (!rsv_config_find_service(e->cfg, name) &&
            rsv_service_idle_ms(value, now) >= ON_DEMAND_IDLE_MS)
            idle[n++] = strdup(name);
    for (size_t i = 0; i < n; i++) {
        if (idle[i]) {
            LOG_INFO("service %s: no pick for %d s; no longer watched", idle[i],
                     ON_DEMAND_IDLE_MS / 1000);
            if (remove_service(e, idle[i]) == 0)
                e->n_on_demand--;
        }
        free(idle[i]);
    }
    free(idle);
}

static void on_housekeeping(rsv_loop *loop, rsv_timer *t, void *arg)
{
    resolver_engine *e = arg;
    note_on_demand_room(e);
    write_cache_if_changed(e);
    if (rsv_loop_now(loop) - e->last_idle_sweep_ms >= 10000) {
        e->last_idle_sweep_ms = rsv_loop_now(loop);
        drop_idle_services(e);
    }
    rsv_timer_start(t, HOUSEKEEPING_MS);
}

/* ---- tickets ---- */

/* Tickets expire in the order they were taken when they share a timeout,
 * so each distinct ticket_timeout_ms gets a FIFO queue with one timer for
 * its head: O(1) per ticket instead of a heap entry each. */
struct timeout_queue {
    resolver_engine *engine;
    uint64_t timeout_ms;
    rsv_ticket *head, *tail;
    rsv_timer *timer;
    struct timeout_queue *next;
};

static void queue_arm(timeout_queue *q)
{
    if (!q->head) {
        rsv_timer_stop(q->timer);
        return;
    }
    uint64_t now = rsv_loop_now(q->engine->loop);
    rsv_timer_start(q->timer, q->head->deadline > now ? q->head->deadline - now : 0);
}

static void queue_unlink(rsv_ticket *t)
{
    timeout_queue *q = t->queue;
    int was_head = q->head == t;
    if (t->q_prev)
        t->q_prev->q_next = t->q_next;
    else
        q->head = t->q_next;
    if (t->q_next)
        t->q_next->q_prev = t->q_prev;
    else
        q->tail = t->q_prev;
    t->queue = NULL;
    if (was_head)
        queue_arm(q);
}

static void ticket_free(resolver_engine *e, rsv_ticket *t, int failed)
{
    rsv_u64map_remove(&e->tickets, t->id);
    if (t->owner) {
        if (t->owner_prev)
            t->owner_prev->owner_next = t->owner_next;
        else
            t->owner->head = t->owner_next;
        if (t->owner_next)
            t->owner_next->owner_prev = t->owner_prev;
        t->owner->count--;
    }
    if (t->queue)
        queue_unlink(t);
    rsv_instance_release(t->instance, failed);
    free(t);
}

/* One limiter for all: a leaking client leaks many, and 500 leaks must not
 * be 500 lines; the line that gets through names one of them. */
static void log_leak(const rsv_ticket *t)
{
    static rsv_log_limit lim;
    char who[64] = "in-process (no peer)";
    if (t->pid >= 0)
        snprintf(who, sizeof(who), "uid %ld pid %ld", t->uid, t->pid);
    LOG_WARN_LIMITED(&lim,
                     "service %s: ticket %" PRIu64 " (instance %s) picked by %s was not reported "
                     "done within %" PRIu64 " ms; released as leaked",
                     t->service, t->id, t->instance->endpoint.address, who, t->timeout_ms);
}

static void on_queue_timer(rsv_loop *loop, rsv_timer *timer, void *arg)
{
    timeout_queue *q = arg;
    resolver_engine *e = q->engine;
    uint64_t now = rsv_loop_now(loop);
    while (q->head && q->head->deadline <= now) {
        rsv_ticket *t = q->head;
        e->tickets_leaked++;
        log_leak(t);
        ticket_free(e, t, 0); /* re-arms the queue */
    }
    queue_arm(q);
}

static timeout_queue *queue_for(resolver_engine *e, uint64_t timeout_ms)
{
    for (timeout_queue *q = e->queues; q; q = q->next)
        if (q->timeout_ms == timeout_ms)
            return q;
    timeout_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->engine = e;
    q->timeout_ms = timeout_ms;
    q->timer = rsv_timer_new(e->loop, on_queue_timer, q);
    if (!q->timer) {
        free(q);
        return NULL;
    }
    q->next = e->queues;
    e->queues = q;
    return q;
}

/* Loop thread: starts tracking a ticket made by ticket_alloc. */
static void ticket_track(resolver_engine *e, rsv_ticket *t)
{
    timeout_queue *q = queue_for(e, t->timeout_ms);
    if (!q || rsv_u64map_put(&e->tickets, t->id, t) != 0) {
        /* Cannot track it: release at once rather than leak the pick. */
        static rsv_log_limit lim;
        LOG_ERROR_LIMITED(&lim, "out of memory tracking ticket %" PRIu64 "; released", t->id);
        rsv_instance_release(t->instance, 0);
        free(t);
        return;
    }
    t->deadline = rsv_loop_now(e->loop) + t->timeout_ms;
    t->queue = q;
    t->q_prev = q->tail;
    if (q->tail)
        q->tail->q_next = t;
    else
        q->head = t;
    q->tail = t;
    if (q->head == t)
        queue_arm(q);
    rsv_ticket_owner *owner = t->owner;
    if (owner) {
        t->owner_next = owner->head;
        if (owner->head)
            owner->head->owner_prev = t;
        owner->head = t;
        owner->count++;
    }
}

/* Any thread: a ticket for a pick, numbered from an atomic counter. */
static rsv_ticket *ticket_alloc(resolver_engine *e, const char *service, rsv_instance *inst,
                                uint64_t timeout_ms, rsv_ticket_owner *owner)
{
    size_t len = strlen(service);
    rsv_ticket *t = calloc(1, sizeof(*t) + len + 1);
    if (!t)
        return NULL;
    t->id = atomic_fetch_add(&e->ticket_seq, 1) + 1;
    t->engine = e;
    t->instance = inst;
    t->owner = owner;
    t->timeout_ms = timeout_ms;
    t->uid = owner ? owner->uid : -1;
    t->pid = owner ? owner->pid : -1;
    memcpy(t->service, service, len + 1);
    return t;
}

void rsv_engine_release_owner(resolver_engine *e, rsv_ticket_owner *owner)
{
    while (owner->head)
        ticket_free(e, owner->head, 0);
}

int rsv_engine_ticket_owner(resolver_engine *e, uint64_t id, rsv_ticket_owner **owner)
{
    rsv_ticket *t = rsv_u64map_get(&e->tickets, id);
    if (!t)
        return RESOLVER_ERR_NOT_FOUND;
    *owner = t->owner;
    return 0;
}

/* Every ticket once, along the timeout queues (each tracked ticket is on
 * exactly one): taking "any" ticket from the map again and again rescanned
 * it from slot 0 each time, quadratic (200k tickets took 29 s). */
static void free_all_tickets(resolver_engine *e)
{
    rsv_u64map_clear(&e->tickets);
    for (timeout_queue *q = e->queues; q; q = q->next) {
        while (q->head) {
            rsv_ticket *t = q->head;
            q->head = t->q_next;
            t->queue = NULL; /* no queue unlink, no timer re-arm per ticket */
            t->owner = NULL; /* owners may already be gone */
            ticket_free(e, t, 0);
        }
        q->tail = NULL;
        rsv_timer_stop(q->timer);
    }
}

/* ---- picking ---- */

static int service_is_fresh(resolver_engine *e, rsv_service *svc)
{
    if (!rsv_service_synced(svc))
        return 1;
    rsv_state s = rsv_service_state(svc);
    return rsv_service_instance_count(svc) > 0 &&
           (s == RSV_STATE_CONNECTING || s == RSV_STATE_IDLE);
}

static int on_loop_thread(resolver_engine *e)
{
    return atomic_load(&e->loop_thread_known) && pthread_equal(e->loop_thread, pthread_self());
}

static void mark_loop_thread(resolver_engine *e)
{
    if (!atomic_load(&e->loop_thread_known)) {
        e->loop_thread = pthread_self();
        atomic_store(&e->loop_thread_known, 1);
    }
}

/* Any thread: hands work to the loop thread (Treiber stack + wakeup).
 * Only the message that finds the stack empty wakes the loop: the others
 * ride on that wakeup, which has not been acted on yet (the loop reads the
 * eventfd before it takes the whole stack, so a push after the take finds
 * it empty and wakes again).  One write(2) per burst, not per pick. */
static void post(resolver_engine *e, engine_msg *m)
{
    engine_msg *head = atomic_load(&e->inbox);
    do {
        m->next = head;
    } while (!atomic_compare_exchange_weak(&e->inbox, &head, m));
    if (!head)
        rsv_loop_wakeup(e->loop);
}

static uint64_t name_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h ? h : 1; /* 0 marks a free slot */
}

/* Any thread: asks the loop thread to discover `name`, unless a request for
 * it is in flight already.  0 when one is in flight (now or before), -1 when
 * none could be posted (every slot of its hash taken by other names, or no
 * memory): the caller's next pick tries again. */
static int post_discover(resolver_engine *e, const char *name)
{
    uint64_t h = name_hash(name);
    size_t slot = SIZE_MAX;
    for (size_t i = 0; i < DISCOVER_PROBES && slot == SIZE_MAX; i++) {
        size_t at = (size_t)((h + i) % DISCOVER_SLOTS);
        uint_fast64_t cur = atomic_load(&e->discovering[at]);
        if (cur == h)
            return 0;
        if (cur == 0 && atomic_compare_exchange_strong(&e->discovering[at], &cur, h))
            slot = at;
        else if (cur == h) /* another thread claimed it for this name first */
            return 0;
    }
    if (slot == SIZE_MAX)
        return -1;
    size_t len = strlen(name) + 1;
    engine_msg *m = calloc(1, sizeof(*m) + len);
    if (!m) {
        atomic_store(&e->discovering[slot], 0);
        return -1;
    }
    m->type = MSG_DISCOVER;
    m->id = slot;
    memcpy(m->name, name, len);
    post(e, m);
    return 0;
}

/* Off the loop thread: the answer to a pick of a service the directory does
 * not hold (its name already checked).  Allocates nothing unless it posts the name's one discover
 * request. */
static int pick_unknown(resolver_engine *e, const char *service, char *why, size_t whylen)
{
    static rsv_log_limit refused_log;
    if (atomic_load(&e->on_demand_full)) {
        int rc = on_demand_refused(service, atomic_load(&e->on_demand_max_seen), why, whylen);
        LOG_WARN_LIMITED(&refused_log, "%s", why);
        return rc;
    }
    if (post_discover(e, service) != 0) {
        snprintf(why, whylen, "service %s: not known yet; too many services being discovered",
                 service);
        return RESOLVER_ERR_NO_INSTANCE;
    }
    snprintf(why, whylen, "service %s: discovery started; no instances known yet", service);
    return RESOLVER_ERR_NO_INSTANCE;
}

/* The pick itself: `svc` is protected or loop-owned.  0 or an error. */
static int pick_from(resolver_engine *e, rsv_service *svc, const char *key, rsv_ticket_owner *owner,
                     resolver_pick_result *out, char *why, size_t whylen, int on_loop)
{
    rsv_instance *inst;
    uint64_t ticket_timeout_ms;
    int rc = rsv_service_pick(svc, key, &inst, &ticket_timeout_ms, why, whylen);
    if (rc != 0)
        return rc;
    rsv_ticket *t = ticket_alloc(e, rsv_service_name(svc), inst, ticket_timeout_ms, owner);
    if (!t) {
        /* Undo by hand: release (outlier, drain) is the loop's business. */
        atomic_fetch_sub(&inst->outstanding, 1);
        if (on_loop)
            rsv_instance_unref(inst);
        snprintf(why, whylen, "out of memory");
        return RESOLVER_ERR_NOMEM;
    }
    /* A copy, not snprintf: this is every pick's path. */
    size_t len = strnlen(inst->endpoint.address, sizeof(out->address) - 1);
    memcpy(out->address, inst->endpoint.address, len);
    out->address[len] = '\0';
    out->ticket = t->id;
    if (on_loop) {
        ticket_track(e, t);
    } else {
        engine_msg *m = calloc(1, sizeof(*m));
        if (!m) {
            /* Memory is gone; the ticket is lost to the engine but the pick
             * stands (the instance reference leaks: better than a crash). */
            free(t);
            return 0;
        }
        m->type = MSG_TICKET;
        m->ticket = t;
        post(e, m);
    }
    return 0;
}

int rsv_engine_pick_owned(resolver_engine *e, const char *service, const char *key,
                          rsv_ticket_owner *owner, resolver_pick_result *out, char *why,
                          size_t whylen, int *fresh)
{
    int err = 0;
    if (fresh)
        *fresh = 0;
    if (!service || !*service || !out) {
        snprintf(why, whylen, "a service name is required");
        return RESOLVER_ERR_INVALID;
    }
    if (check_service_name(service, why, whylen) != 0)
        return RESOLVER_ERR_INVALID;
    if (atomic_load(&e->shutting_down)) {
        snprintf(why, whylen, "the engine is shutting down");
        return RESOLVER_ERR_CLOSED;
    }
    if (!on_loop_thread(e)) {
        rsv_service *svc = lookup_service(e, service);
        if (!svc)
            return pick_unknown(e, service, why, whylen);
        int rc = pick_from(e, svc, key, owner, out, why, whylen, 0);
        if (rc)
            rsv_service_count_failure(svc);
        rsv_hazard_clear(RESOLVER_HAZARD_SERVICE);
        atomic_fetch_add(rc ? &e->pick_failures : &e->picks, 1);
        return rc;
    }
    rsv_service *svc = find_or_discover(e, service, why, whylen, &err);
    if (!svc)
        return err;
    int rc = pick_from(e, svc, key, owner, out, why, whylen, 1);
    if (rc != 0) {
        /* A caller that may retry (fresh != NULL) and will, is not failing
         * yet: count only answers that reach the client, once each (the
         * engine's and the service's counters alike). */
        if (fresh)
            *fresh = service_is_fresh(e, svc);
        if (!fresh || !*fresh) {
            atomic_fetch_add(&e->pick_failures, 1);
            rsv_service_count_failure(svc);
        }
        return rc;
    }
    atomic_fetch_add(&e->picks, 1);
    return 0;
}

int resolver_engine_pick(resolver_engine *e, const char *service, const char *key,
                         resolver_pick_result *out)
{
    char why[256];
    if (!e)
        return RESOLVER_ERR_INVALID;
    return rsv_engine_pick_owned(e, service, key, NULL, out, why, sizeof(why), NULL);
}

static int done_on_loop(resolver_engine *e, uint64_t ticket, int failed, uint32_t latency_ms)
{
    rsv_ticket *t = rsv_u64map_get(&e->tickets, ticket);
    if (!t)
        return RESOLVER_ERR_NOT_FOUND;
    e->tickets_released++;
    if (latency_ms != RESOLVER_LATENCY_UNKNOWN)
        rsv_instance_observe_latency(t->instance, latency_ms);
    ticket_free(e, t, failed);
    return 0;
}

static void take_inbox(resolver_engine *e, int track_tickets);

int resolver_engine_done(resolver_engine *e, uint64_t ticket, int failed, uint32_t latency_ms)
{
    if (!e)
        return RESOLVER_ERR_INVALID;
    if (on_loop_thread(e)) {
        int rc = done_on_loop(e, ticket, failed, latency_ms);
        if (rc == RESOLVER_ERR_NOT_FOUND && ticket != 0 && ticket <= atomic_load(&e->ticket_seq)) {
            /* Issued, but perhaps picked on another thread and still in
             * the inbox: track what is there, then look again. */
            take_inbox(e, 1);
            rc = done_on_loop(e, ticket, failed, latency_ms);
        }
        return rc;
    }
    /* From another thread the ticket table cannot be consulted without a
     * lock: a ticket never issued is refused here, one already released is
     * counted by the loop thread. */
    if (ticket == 0 || ticket > atomic_load(&e->ticket_seq))
        return RESOLVER_ERR_NOT_FOUND;
    engine_msg *m = calloc(1, sizeof(*m));
    if (!m)
        return RESOLVER_ERR_NOMEM;
    m->type = MSG_DONE;
    m->id = ticket;
    m->failed = failed;
    m->latency_ms = latency_ms;
    post(e, m);
    return 0;
}

/* Loop thread: moves what other threads posted to the `taken` list, in the
 * order posted.  With track_tickets, tickets are tracked on the way (and
 * only they: tracking calls back into nothing, so it is safe from inside
 * any callback, such as a done called by a listener); the rest waits for
 * drain_inbox, which a wakeup then guarantees. */
static void take_inbox(resolver_engine *e, int track_tickets)
{
    engine_msg *m = atomic_exchange(&e->inbox, NULL), *ordered = NULL;
    while (m) { /* the stack is newest first: reverse it */
        engine_msg *next = m->next;
        m->next = ordered;
        ordered = m;
        m = next;
    }
    int left = 0;
    while ((m = ordered)) {
        ordered = m->next;
        if (track_tickets && m->type == MSG_TICKET) {
            ticket_track(e, m->ticket);
            free(m);
            continue;
        }
        m->next = NULL;
        *e->taken_tail = m;
        e->taken_tail = &m->next;
        left = 1;
    }
    if (track_tickets && left)
        rsv_loop_wakeup(e->loop);
}

static void apply_msg(resolver_engine *e, engine_msg *m)
{
    static rsv_log_limit discover_log;
    char why[256];
    int err;
    switch (m->type) {
    case MSG_TICKET:
        ticket_track(e, m->ticket);
        break;
    case MSG_DONE:
        if (done_on_loop(e, m->id, m->failed, m->latency_ms) != 0)
            e->done_unknown++;
        break;
    case MSG_DISCOVER:
        if (!find_or_discover(e, m->name, why, sizeof(why), &err))
            LOG_WARN_LIMITED(&discover_log, "%s", why);
        /* After the directory names it: a pick that then misses it again
         * posts anew, and finds it done. */
        atomic_store(&e->discovering[m->id], 0);
        break;
    }
}

/* Loop thread: applies what other threads posted, in the order posted. */
static void drain_inbox(rsv_loop *loop, void *arg)
{
    resolver_engine *e = arg;
    (void)loop;
    take_inbox(e, 0);
    engine_msg *m;
    /* One at a time off the head: a callback inside apply_msg may append. */
    while ((m = e->taken)) {
        e->taken = m->next;
        if (!e->taken)
            e->taken_tail = &e->taken;
        apply_msg(e, m);
        free(m);
    }
}

/* ---- registrations (registrar.h) ---- */

/* Where a registration of `service` goes (its configured prefix, else
 * SERVICE/) and the connection options of its health check (the service's,
 * else the defaults). */
static int add_registration(resolver_engine *e, const resolver_config *cfg,
                            const rsv_registration_config *r, int from_config)
{
    char buf[RSV_SERVICE_NAME_MAX + 2];
    const rsv_service_config *sc = rsv_config_find_service(cfg, r->service);
    if (!sc)
        snprintf(buf, sizeof(buf), "%s/", r->service);
    return rsv_registrar_add(e->registrar, r, sc ? sc->prefix : buf,
                             sc ? &sc->options : &cfg->defaults, from_config);
}

static int add_configured_registrations(resolver_engine *e, const resolver_config *cfg)
{
    for (size_t i = 0; i < cfg->n_registrations; i++) {
        int rc = add_registration(e, cfg, &cfg->registrations[i], 1);
        if (rc && rc != RESOLVER_ERR_CLOSED)
            return rc;
    }
    return 0;
}

int resolver_engine_register(resolver_engine *e, const resolver_registration *reg, char *err,
                             size_t errlen)
{
    char why[256];
    rsv_registration_config spec;
    rsv_registration_default(&spec); /* owns nothing until built */
    if (!e || !reg) {
        snprintf(err ? err : why, err ? errlen : sizeof(why), "no registration");
        return RESOLVER_ERR_INVALID;
    }
    int rc =
        rsv_registration_build(&spec, reg->service, reg->address, reg->format, reg->ttl_ms,
                               reg->weight, reg->zone, reg->metadata, reg->key, why, sizeof(why));
    if (rc == 0 && reg->health_check && !(spec.health_check = strdup(reg->health_check)))
        rc = RESOLVER_ERR_NOMEM;
    if (rc == 0)
        rc = add_registration(e, e->cfg, &spec, 0);
    if (rc != RESOLVER_ERR_INVALID)
        snprintf(why, sizeof(why), "%s", resolver_strerror(rc));
    rsv_registration_clear(&spec);
    if (rc && err && errlen)
        snprintf(err, errlen, "%s", why);
    return rc;
}

int resolver_engine_deregister(resolver_engine *e, const char *service, const char *address)
{
    rsv_endpoint ep;
    if (!e || !service || !address)
        return RESOLVER_ERR_INVALID;
    /* The canonical form, as registered. */
    if (rsv_address_parse(address, strlen(address), &ep, NULL, 0) == 0)
        address = ep.address;
    return rsv_registrar_remove(e->registrar, service, address);
}

void resolver_engine_deregister_all(resolver_engine *e)
{
    rsv_registrar_leave_all(e->registrar);
}

size_t resolver_engine_registrations(resolver_engine *e)
{
    return rsv_registrar_count(e->registrar);
}

json_t *rsv_engine_registrations_json(resolver_engine *e)
{
    return rsv_registrar_json(e->registrar);
}

/* ---- lifecycle ---- */

static rsv_dns_options dns_options(const resolver_config *cfg)
{
    rsv_dns_options o = {(const char *const *)cfg->dns.servers, cfg->dns.n_servers, 0, 0};
    return o;
}

int resolver_engine_new(resolver_engine **out, resolver_config *cfg)
{
    if (!out || !cfg) {
        resolver_config_free(cfg);
        return RESOLVER_ERR_INVALID;
    }
    resolver_engine *e = calloc(1, sizeof(*e));
    if (!e) {
        resolver_config_free(cfg);
        return RESOLVER_ERR_NOMEM;
    }
    e->cfg = cfg;
    e->taken_tail = &e->taken;
    e->loop = rsv_loop_new();
    e->hazard = rsv_hazard_domain_new();
    if (!e->loop || !e->hazard)
        goto fail;
    rsv_loop_set_wakeup(e->loop, drain_inbox, e);
    e->etcd = rsv_etcd_new(e->loop, cfg);
    if (!e->etcd)
        goto fail;
    rsv_dns_options dns_opts = dns_options(cfg);
    if (!(e->dns = rsv_dns_new(e->loop, &dns_opts)))
        goto fail;
    e->started_ms = e->last_idle_sweep_ms = rsv_loop_now(e->loop);
    if (!(e->registrar = rsv_registrar_new(e->loop, e->etcd, e->dns, cfg->deregister_grace_ms)) ||
        add_configured_registrations(e, cfg) != 0)
        goto fail;
    if (add_configured_services(e) != 0)
        goto fail;
    if (publish_directory(e, NULL) != 0) /* no service configured: an empty one */
        goto fail;
    if (cfg->cache_file && *cfg->cache_file)
        load_cache(e);
    note_on_demand_room(e);
    e->housekeeping = rsv_timer_new(e->loop, on_housekeeping, e);
    if (!e->housekeeping)
        goto fail;
    rsv_timer_start(e->housekeeping, HOUSEKEEPING_MS);
    *out = e;
    return 0;
fail:
    resolver_engine_del(e);
    return RESOLVER_ERR_NOMEM;
}

void resolver_engine_del(resolver_engine *e)
{
    if (!e)
        return;
    /* Work other threads posted last: tickets to track, so that they are
     * released below like the others. */
    if (e->loop)
        drain_inbox(e->loop, e);
    /* A stop without rsv_engine_shutdown (the embedded engine): the
     * last state is written before the services go. */
    if (e->cfg && !atomic_load(&e->shutting_down))
        flush_cache(e);
    rsv_cache_writer_del(e->cache_writer); /* waits for the last write */
    /* Tickets first: they hold instance references. */
    free_all_tickets(e);
    void *value;
    while (e->queues) {
        timeout_queue *q = e->queues;
        e->queues = q->next;
        rsv_timer_del(q->timer);
        free(q);
    }
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, NULL, &value);)
        rsv_service_free(value);
    rsv_strmap_clear(&e->services);
    directory_free(atomic_exchange(&e->directory, NULL));
    /* Retired pickers, services and directories; pickers release instances,
     * whose timers live on the loop: before the loop goes. */
    rsv_hazard_domain_del(e->hazard);
    rsv_timer_del(e->housekeeping);
    rsv_registrar_del(e->registrar); /* rule 2: keys expire with their leases */
    rsv_etcd_del(e->etcd);
    rsv_dns_del(e->dns); /* after the subchannels, which the hazard domain freed */
    rsv_loop_del(e->loop);
    resolver_config_free(e->cfg);
    free(e);
}

int resolver_engine_fd(resolver_engine *e)
{
    return rsv_loop_fd(e->loop);
}

int resolver_engine_timeout(resolver_engine *e)
{
    return rsv_loop_timeout(e->loop);
}

int resolver_engine_process(resolver_engine *e)
{
    mark_loop_thread(e);
    return rsv_loop_run_once(e->loop, 0);
}

int resolver_engine_run(resolver_engine *e)
{
    mark_loop_thread(e);
    return rsv_loop_run(e->loop);
}

void resolver_engine_stop(resolver_engine *e)
{
    rsv_loop_stop(e->loop);
}

void rsv_engine_shutdown(resolver_engine *e)
{
    if (atomic_exchange(&e->shutting_down, 1))
        return;
    /* Before the drain: the cache keeps the last listing, not the drain. */
    flush_cache(e);
    /* Every instance drains as if it had left etcd: no new picks, closed
     * once its outstanding picks are done or drain_timeout_ms passes. */
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, NULL, &value);)
        rsv_service_drain_all(value);
}

int rsv_engine_drained(resolver_engine *e)
{
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, NULL, &value);)
        if (rsv_service_instance_count(value) > 0)
            return 0;
    return 1;
}

uint64_t rsv_engine_max_drain_ms(const resolver_engine *e)
{
    uint64_t max = e->cfg->defaults.drain_timeout_ms;
    for (size_t i = 0; i < e->cfg->n_services; i++)
        if (e->cfg->services[i].options.drain_timeout_ms > max)
            max = e->cfg->services[i].options.drain_timeout_ms;
    return max;
}

rsv_loop *rsv_engine_loop(resolver_engine *e)
{
    return e->loop;
}

const resolver_config *rsv_engine_config(const resolver_engine *e)
{
    return e->cfg;
}

void rsv_engine_set_listener(resolver_engine *e, rsv_engine_change_cb cb, void *arg)
{
    e->listener = cb;
    e->listener_arg = arg;
}

const char *rsv_listener_name(rsv_listener which)
{
    return which == RSV_LISTENER_METRICS ? "metrics" : "socket";
}

void rsv_engine_count_accept_backoff(resolver_engine *e, rsv_listener which)
{
    if (which < RSV_LISTENER_COUNT)
        e->accept_backoffs[which]++;
}

void rsv_engine_set_picker_hook(resolver_engine *e, rsv_engine_picker_cb cb, void *arg)
{
    e->picker_hook = cb;
    e->picker_hook_arg = arg;
}

int rsv_engine_drain(resolver_engine *e, const char *service, const char *address, int drain)
{
    rsv_service *svc = rsv_strmap_get(&e->services, service);
    if (!svc)
        return RESOLVER_ERR_NOT_FOUND;
    return rsv_service_drain(svc, address, drain);
}

/* ---- reload ---- */

static int service_in_config(const resolver_config *cfg, const char *name)
{
    return rsv_config_find_service(cfg, name) != NULL;
}

/* One line per difference a reload brings; keys only a restart applies are
 * warnings (the daemon keeps running with the old value). */
static void log_reload_change(void *arg, rsv_diff_kind kind, const char *key, const char *old_value,
                              const char *new_value)
{
    switch (kind) {
    case RSV_DIFF_SERVICE_ADDED:
        LOG_INFO("reload: service %s added (prefix %s)", key, new_value ? new_value : "?");
        break;
    case RSV_DIFF_SERVICE_REMOVED:
        LOG_INFO("reload: service %s removed", key);
        break;
    case RSV_DIFF_CHANGED:
        LOG_INFO("reload: %s: %s -> %s", key, old_value ? old_value : "(none)",
                 new_value ? new_value : "(none)");
        break;
    case RSV_DIFF_NEEDS_RESTART:
        LOG_WARN("reload: %s: %s -> %s needs a restart; %s stays in effect until then", key,
                 old_value ? old_value : "(none)", new_value ? new_value : "(none)",
                 old_value ? old_value : "(none)");
        break;
    }
}

int rsv_engine_reload(resolver_engine *e, resolver_config *cfg)
{
    int changes = rsv_config_diff(e->cfg, cfg, log_reload_change, NULL);
    /* Services the old config listed and the new one does not are dropped;
     * on-demand services stay (they were asked for by clients). */
    size_t n = 0;
    char **gone = calloc(e->services.len + 1, sizeof(char *));
    if (!gone) {
        resolver_config_free(cfg);
        return RESOLVER_ERR_NOMEM;
    }
    const char *name;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, &name, NULL);)
        if (service_in_config(e->cfg, name) && !service_in_config(cfg, name))
            gone[n++] = strdup(name);
    for (size_t i = 0; i < n; i++) {
        if (gone[i])
            remove_service(e, gone[i]); /* logged by log_reload_change */
        free(gone[i]);
    }
    free(gone);
    for (size_t i = 0; i < cfg->n_services; i++) {
        const rsv_service_config *sc = &cfg->services[i];
        rsv_service *svc = rsv_strmap_get(&e->services, sc->name);
        /* An on-demand service the new configuration lists is no longer on
         * demand, whether it stays or is replaced for another prefix. */
        if (svc && !service_in_config(e->cfg, sc->name) && e->n_on_demand > 0)
            e->n_on_demand--;
        if (svc && strcmp(rsv_service_prefix(svc), sc->prefix) != 0 &&
            remove_service(e, sc->name) == 0)
            svc = NULL; /* out of memory: it stays, with its old prefix */
        if (svc) {
            rsv_service_set_options(svc, &sc->options);
        } else {
            add_service(e, sc->name, sc->prefix, &sc->options);
        }
    }
    /* New servers apply at once; without servers of its own a reload
     * re-reads /etc/resolv.conf. */
    int dns_changed = !rsv_config_dns_equal(e->cfg, cfg);
    if (dns_changed || cfg->dns.n_servers == 0) {
        rsv_dns_options dns_opts = dns_options(cfg);
        if (rsv_dns_configure(e->dns, &dns_opts) != 0)
            LOG_WARN("dns: cannot apply the new servers; keeping the old ones");
        else if (dns_changed)
            LOG_INFO("dns: %zu servers configured%s", cfg->dns.n_servers,
                     cfg->dns.n_servers ? "" : " (the system's, from /etc/resolv.conf)");
    }
    rsv_registrar_forget_config(e->registrar, cfg);
    rsv_registrar_set_grace(e->registrar, cfg->deregister_grace_ms);
    if (add_configured_registrations(e, cfg) != 0)
        LOG_WARN("register: out of memory applying the reloaded registrations");
    resolver_config_free(e->cfg);
    e->cfg = cfg;
    if (changes == 0)
        LOG_INFO("configuration reloaded: no change");
    else
        LOG_INFO("configuration reloaded: %zu service%s configured%s", cfg->n_services,
                 cfg->n_services == 1 ? "" : "s",
                 changes < 0 ? " (changes not listed: out of memory)" : "");
    return 0;
}

/* ---- introspection ---- */

static int by_name(const void *a, const void *b)
{
    return strcmp(rsv_service_name(*(rsv_service *const *)a),
                  rsv_service_name(*(rsv_service *const *)b));
}

rsv_service **rsv_engine_sorted_services(resolver_engine *e, size_t *n)
{
    rsv_service **all = calloc(e->services.len + 1, sizeof(*all));
    *n = 0;
    if (!all)
        return NULL;
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, NULL, &value);)
        all[(*n)++] = value;
    qsort(all, *n, sizeof(*all), by_name);
    return all;
}

json_t *rsv_engine_services_json(resolver_engine *e)
{
    size_t n;
    rsv_service **all = rsv_engine_sorted_services(e, &n);
    json_t *arr = json_array();
    for (size_t i = 0; all && arr && i < n; i++)
        json_array_append_new(arr, rsv_service_to_json(all[i]));
    free(all);
    return arr;
}

json_t *rsv_engine_instances_json(resolver_engine *e, const char *service)
{
    rsv_service *svc = rsv_strmap_get(&e->services, service);
    if (!svc)
        return NULL;
    return rsv_service_instances_json(svc, rsv_loop_now(e->loop));
}

int64_t rsv_engine_revision(resolver_engine *e)
{
    int64_t rev = 0;
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, NULL, &value);) {
        int64_t r = rsv_service_revision(value);
        if (r > rev)
            rev = r;
    }
    return rev;
}

static json_int_t cache_writes(resolver_engine *e)
{
    return e->cache_writer ? (json_int_t)rsv_cache_writer_writes(e->cache_writer) : 0;
}

/* The host-name resolver's counters (lib/dns.h), STATUS's "dns". */
static json_t *dns_status_json(const resolver_engine *e)
{
    const rsv_dns_stats *d = rsv_dns_stats_get(e->dns);
    return json_pack("{s:I, s:I, s:I, s:I}", "queries", (json_int_t)d->queries, "cache_hits",
                     (json_int_t)d->cache_hits, "joined", (json_int_t)d->joined, "failures",
                     (json_int_t)d->failures);
}

json_t *rsv_engine_status_json(resolver_engine *e)
{
    uint64_t now = rsv_loop_update_time(e->loop);
    uint64_t heard = rsv_etcd_last_heard(e->etcd);
    size_t instances = 0, ready = 0, stale = 0, counts[5];
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, NULL, &value);) {
        if (!rsv_service_synced(value) && rsv_service_instance_count(value) > 0)
            stale++; /* serving what the cache said, not yet confirmed by etcd */
        rsv_service_state_counts(value, counts);
        instances += rsv_service_instance_count(value);
        ready += counts[RSV_STATE_READY];
    }
    json_t *o = json_pack(
        "{s:s, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "etcd_endpoint",
        rsv_etcd_endpoint(e->etcd), "revision", (json_int_t)rsv_engine_revision(e), "uptime_s",
        (double)(now - e->started_ms) / 1000.0, "services", (json_int_t)e->services.len,
        "instances", (json_int_t)instances, "ready", (json_int_t)ready, "tickets_outstanding",
        (json_int_t)e->tickets.len, "tickets_leaked", (json_int_t)e->tickets_leaked, "picks",
        (json_int_t)atomic_load(&e->picks), "pick_failures",
        (json_int_t)atomic_load(&e->pick_failures), "on_demand_services",
        (json_int_t)e->n_on_demand);
    if (o) {
        json_object_set_new(o, "etcd_last_heard_s",
                            heard ? json_real((double)(now - heard) / 1000.0) : json_null());
        json_object_set_new(o, "stale_services", json_integer((json_int_t)stale));
        json_object_set_new(o, "cache_writes", json_integer(cache_writes(e)));
        json_object_set_new(o, "etcd_failovers",
                            json_integer((json_int_t)rsv_etcd_failovers(e->etcd)));
        json_object_set_new(o, "etcd_cluster_changes",
                            json_integer((json_int_t)rsv_etcd_cluster_changes(e->etcd)));
        json_object_set_new(o, "etcd_endpoints",
                            json_integer((json_int_t)e->cfg->etcd.n_endpoints));
        json_object_set_new(o, "dns", dns_status_json(e));
    }
    return o;
}

rsv_etcd *rsv_engine_etcd(resolver_engine *e)
{
    return e->etcd;
}

void rsv_engine_counters_get(resolver_engine *e, rsv_engine_counters *out)
{
    out->tickets_outstanding = e->tickets.len;
    out->tickets_leaked = e->tickets_leaked;
    for (int l = 0; l < RSV_LISTENER_COUNT; l++)
        out->accept_backoffs[l] = e->accept_backoffs[l];
}

/* ---- readiness ---- */

int rsv_engine_ready(resolver_engine *e, char *why, size_t whylen)
{
    if (atomic_load(&e->shutting_down)) {
        snprintf(why, whylen, "shutting down");
        return 0;
    }
    uint64_t now = rsv_loop_update_time(e->loop);
    uint64_t heard = rsv_etcd_last_heard(e->etcd);
    if (e->services.len > 0 && (!heard || now - heard > RSV_READY_ETCD_MS)) {
        if (heard)
            snprintf(why, whylen, "etcd not heard from for %.1f s (endpoint %s)",
                     (double)(now - heard) / 1000.0, rsv_etcd_endpoint(e->etcd));
        else
            snprintf(why, whylen, "etcd never answered (endpoint %s)", rsv_etcd_endpoint(e->etcd));
        return 0;
    }
    for (size_t i = 0; i < e->cfg->n_services; i++) {
        const char *name = e->cfg->services[i].name;
        rsv_service *svc = rsv_strmap_get(&e->services, name);
        if (svc && rsv_service_synced(svc))
            continue;
        const rsv_discovery *d = svc ? rsv_service_discovery(svc) : NULL;
        const char *err = d ? rsv_discovery_last_error(d) : "";
        snprintf(why, whylen, "service %s: no listing from etcd yet%s%s", name, *err ? ": " : "",
                 err);
        return 0;
    }
    snprintf(why, whylen, "ready");
    return 1;
}
