/*
 * engine.c - the engine: services by name, tickets, the public embedded API.
 *
 * Threading: everything here runs on the thread that drives the loop
 * (resolver_engine_run or resolver_engine_process); resolver.h says so.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cache.h"
#include "engine.h"
#include "etcd.h"
#include "log.h"
#include "strmap.h"

struct resolver_ticket {
    uint64_t id;
    resolver_engine *engine;
    resolver_instance *instance; /* holds a reference */
    resolver_timer *timer;       /* ticket_timeout_ms */
    resolver_ticket_owner *owner;
    resolver_ticket *owner_prev, *owner_next;
};

struct resolver_engine {
    resolver_config *cfg;
    resolver_loop *loop;
    resolver_etcd *etcd;
    resolver_strmap services; /* name -> resolver_service */
    size_t n_on_demand;
    resolver_strmap tickets; /* decimal id -> resolver_ticket */
    uint64_t next_ticket;
    uint64_t started_ms;
    uint64_t tickets_leaked, tickets_released, picks, pick_failures;
    resolver_engine_change_cb listener;
    void *listener_arg;
    int shutting_down;
    resolver_timer *housekeeping; /* cache writes, idle on-demand services */
    uint64_t last_idle_sweep_ms;
    size_t cache_loaded;
};

/* An on-demand service nobody picked for this long is dropped (its watch
 * and its connections are not free). */
#define ON_DEMAND_IDLE_MS (10 * 60 * 1000)
#define HOUSEKEEPING_MS 250

/* ---- services ---- */

static const char *change_event(resolver_change what)
{
    switch (what) {
    case RESOLVER_CHANGE_ADDED: return "added";
    case RESOLVER_CHANGE_REMOVED: return "removed";
    case RESOLVER_CHANGE_STATE: return "state";
    case RESOLVER_CHANGE_CLOSED: return "closed";
    }
    return "?";
}

static void on_service_change(void *arg, resolver_service *svc, const resolver_instance *inst,
                              resolver_change what)
{
    resolver_engine *e = arg;
    if (e->listener)
        e->listener(e->listener_arg, resolver_service_name(svc), inst, change_event(what));
}

static resolver_service *add_service(resolver_engine *e, const char *name, const char *prefix,
                                     const resolver_service_options *opts)
{
    resolver_service *svc =
        resolver_service_new(e->loop, e->etcd, name, prefix, opts, on_service_change, e);
    if (!svc)
        return NULL;
    if (resolver_strmap_put(&e->services, name, svc, NULL) != 0) {
        resolver_service_del(svc);
        return NULL;
    }
    LOG_INFO("service %s: watching etcd prefix \"%s\" (policy %s)", name, prefix,
             resolver_policy_name(opts->policy));
    return svc;
}

static int add_configured_services(resolver_engine *e)
{
    for (size_t i = 0; i < e->cfg->n_services; i++) {
        const resolver_service_config *sc = &e->cfg->services[i];
        if (!add_service(e, sc->name, sc->prefix, &sc->options))
            return RESOLVER_ERR_NOMEM;
    }
    return 0;
}

/* A service not in the configuration: go-zero's convention, prefix NAME/. */
static resolver_service *find_or_discover(resolver_engine *e, const char *name, char *why,
                                          size_t whylen, int *err)
{
    resolver_service *svc = resolver_strmap_get(&e->services, name);
    if (svc)
        return svc;
    if (e->n_on_demand >= e->cfg->on_demand_services_max) {
        snprintf(why, whylen, "service %s is not configured and on_demand_services_max (%u) is "
                              "reached", name, e->cfg->on_demand_services_max);
        *err = RESOLVER_ERR_LIMIT;
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
                           const resolver_endpoint *ep)
{
    resolver_engine *e = arg;
    resolver_service *svc = resolver_strmap_get(&e->services, name);
    if (!svc) {
        if (e->n_on_demand >= e->cfg->on_demand_services_max)
            return;
        svc = add_service(e, name, prefix, &e->cfg->defaults);
        if (!svc)
            return;
        e->n_on_demand++;
    }
    if (strcmp(resolver_service_prefix(svc), prefix) != 0)
        return; /* the configuration changed the prefix: the cache is moot */
    resolver_service_preload(svc, key, ep);
    e->cache_loaded++;
}

static void load_cache(resolver_engine *e)
{
    char err[512];
    size_t skipped = 0;
    if (resolver_cache_read(e->cfg->cache_file, on_cache_entry, e, &skipped, err, sizeof(err)) != 0)
        LOG_WARN("%s; starting without it", err);
    else if (e->cache_loaded || skipped)
        LOG_INFO("cache_file %s: %zu instances loaded (stale until etcd confirms), %zu skipped",
                 e->cfg->cache_file, e->cache_loaded, skipped);
}

static void write_cache_if_changed(resolver_engine *e)
{
    int changed = 0;
    void *value;
    for (size_t pos = 0; resolver_strmap_next(&e->services, &pos, NULL, &value);)
        changed |= resolver_service_take_changed(value);
    if (!changed || !e->cfg->cache_file || !*e->cfg->cache_file)
        return;
    json_t *all = json_object();
    const char *name;
    for (size_t pos = 0; all && resolver_strmap_next(&e->services, &pos, &name, &value);)
        if (resolver_service_synced(value))
            json_object_set_new(all, name, resolver_service_cache_json(value));
    char err[512];
    if (!all || resolver_cache_write(e->cfg->cache_file, all, err, sizeof(err)) != 0)
        LOG_WARN("%s", all ? err : "cache_file: out of memory");
    json_decref(all);
}

static void drop_idle_services(resolver_engine *e)
{
    uint64_t now = resolver_loop_now(e->loop);
    size_t n = 0;
    char **idle = calloc(e->services.len + 1, sizeof(char *));
    const char *name;
    void *value;
    for (size_t pos = 0; idle && resolver_strmap_next(&e->services, &pos, &name, &value);)
        if (!resolver_config_find_service(e->cfg, name) &&
            now - resolver_service_last_pick(value) >= ON_DEMAND_IDLE_MS)
            idle[n++] = strdup(name);
    for (size_t i = 0; i < n; i++) {
        if (idle[i]) {
            LOG_INFO("service %s: no pick for %d s; no longer watched", idle[i],
                     ON_DEMAND_IDLE_MS / 1000);
            resolver_service_del(resolver_strmap_remove(&e->services, idle[i]));
            e->n_on_demand--;
        }
        free(idle[i]);
    }
    free(idle);
}

static void on_housekeeping(resolver_loop *loop, resolver_timer *t, void *arg)
{
    resolver_engine *e = arg;
    write_cache_if_changed(e);
    if (resolver_loop_now(loop) - e->last_idle_sweep_ms >= 10000) {
        e->last_idle_sweep_ms = resolver_loop_now(loop);
        drop_idle_services(e);
    }
    resolver_timer_start(t, HOUSEKEEPING_MS);
}

/* ---- tickets ---- */

static void ticket_free(resolver_engine *e, resolver_ticket *t, int failed)
{
    char key[24];
    snprintf(key, sizeof(key), "%" PRIu64, t->id);
    resolver_strmap_remove(&e->tickets, key);
    if (t->owner) {
        if (t->owner_prev)
            t->owner_prev->owner_next = t->owner_next;
        else
            t->owner->head = t->owner_next;
        if (t->owner_next)
            t->owner_next->owner_prev = t->owner_prev;
        t->owner->count--;
    }
    resolver_timer_del(t->timer);
    resolver_instance_release(t->instance, failed);
    free(t);
}

static void on_ticket_timeout(resolver_loop *loop, resolver_timer *timer, void *arg)
{
    resolver_ticket *t = arg;
    resolver_engine *e = t->engine;
    e->tickets_leaked++;
    LOG_WARN("ticket %" PRIu64 " for %s was never reported done; released as leaked", t->id,
             t->instance->endpoint.address);
    ticket_free(e, t, 0);
}

static int ticket_new(resolver_engine *e, resolver_instance *inst, uint64_t timeout_ms,
                      resolver_ticket_owner *owner, uint64_t *id)
{
    resolver_ticket *t = calloc(1, sizeof(*t));
    if (!t)
        return RESOLVER_ERR_NOMEM;
    t->id = ++e->next_ticket;
    t->engine = e;
    t->instance = inst;
    t->timer = resolver_timer_new(e->loop, on_ticket_timeout, t);
    char key[24];
    snprintf(key, sizeof(key), "%" PRIu64, t->id);
    if (!t->timer || resolver_strmap_put(&e->tickets, key, t, NULL) != 0) {
        resolver_timer_del(t->timer);
        free(t);
        return RESOLVER_ERR_NOMEM;
    }
    resolver_timer_start(t->timer, timeout_ms);
    if (owner) {
        t->owner = owner;
        t->owner_next = owner->head;
        if (owner->head)
            owner->head->owner_prev = t;
        owner->head = t;
        owner->count++;
    }
    *id = t->id;
    return 0;
}

void resolver_engine_release_owner(resolver_engine *e, resolver_ticket_owner *owner)
{
    while (owner->head)
        ticket_free(e, owner->head, 0);
}

/* ---- picking ---- */

static int service_is_fresh(resolver_engine *e, resolver_service *svc)
{
    if (!resolver_service_synced(svc))
        return 1;
    resolver_state s = resolver_service_state(svc);
    return resolver_service_instance_count(svc) > 0 &&
           (s == RESOLVER_STATE_CONNECTING || s == RESOLVER_STATE_IDLE);
}

int resolver_engine_pick_owned(resolver_engine *e, const char *service, const char *key,
                               resolver_ticket_owner *owner, resolver_pick_result *out, char *why,
                               size_t whylen, int *fresh)
{
    int err = 0;
    if (fresh)
        *fresh = 0;
    if (!service || !*service || !out) {
        snprintf(why, whylen, "a service name is required");
        return RESOLVER_ERR_INVALID;
    }
    if (e->shutting_down) {
        snprintf(why, whylen, "the engine is shutting down");
        return RESOLVER_ERR_CLOSED;
    }
    resolver_service *svc = find_or_discover(e, service, why, whylen, &err);
    if (!svc)
        return err;
    resolver_instance *inst;
    int rc = resolver_service_pick(svc, key, &inst, why, whylen);
    if (rc != 0) {
        /* A caller that may retry (fresh != NULL) and will, is not failing
         * yet: count only answers that reach the client. */
        if (fresh)
            *fresh = service_is_fresh(e, svc);
        if (!fresh || !*fresh)
            e->pick_failures++;
        return rc;
    }
    rc = ticket_new(e, inst, resolver_service_options_get(svc)->ticket_timeout_ms, owner,
                    &out->ticket);
    if (rc != 0) {
        resolver_instance_release(inst, 0);
        snprintf(why, whylen, "out of memory");
        return rc;
    }
    e->picks++;
    snprintf(out->address, sizeof(out->address), "%s", inst->endpoint.address);
    return 0;
}

int resolver_engine_pick(resolver_engine *e, const char *service, const char *key,
                         resolver_pick_result *out)
{
    char why[256];
    if (!e)
        return RESOLVER_ERR_INVALID;
    return resolver_engine_pick_owned(e, service, key, NULL, out, why, sizeof(why), NULL);
}

int resolver_engine_done(resolver_engine *e, uint64_t ticket, int failed, uint32_t latency_ms)
{
    (void)latency_ms; /* feeds outlier detection and least_request later */
    if (!e)
        return RESOLVER_ERR_INVALID;
    char key[24];
    snprintf(key, sizeof(key), "%" PRIu64, ticket);
    resolver_ticket *t = resolver_strmap_get(&e->tickets, key);
    if (!t)
        return RESOLVER_ERR_NOT_FOUND;
    e->tickets_released++;
    ticket_free(e, t, failed);
    return 0;
}

/* ---- lifecycle ---- */

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
    e->loop = resolver_loop_new();
    if (!e->loop)
        goto fail;
    e->etcd = resolver_etcd_new(e->loop, cfg);
    if (!e->etcd)
        goto fail;
    e->started_ms = e->last_idle_sweep_ms = resolver_loop_now(e->loop);
    if (add_configured_services(e) != 0)
        goto fail;
    if (cfg->cache_file && *cfg->cache_file)
        load_cache(e);
    e->housekeeping = resolver_timer_new(e->loop, on_housekeeping, e);
    if (!e->housekeeping)
        goto fail;
    resolver_timer_start(e->housekeeping, HOUSEKEEPING_MS);
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
    /* Tickets first: they hold instance references. */
    void *value;
    for (size_t pos = 0; resolver_strmap_next(&e->tickets, &pos, NULL, &value);) {
        resolver_ticket *t = value;
        t->owner = NULL; /* owners may already be gone */
    }
    while (e->tickets.len > 0) {
        size_t pos = 0;
        resolver_strmap_next(&e->tickets, &pos, NULL, &value);
        ticket_free(e, value, 0);
    }
    resolver_strmap_clear(&e->tickets);
    for (size_t pos = 0; resolver_strmap_next(&e->services, &pos, NULL, &value);)
        resolver_service_del(value);
    resolver_strmap_clear(&e->services);
    resolver_timer_del(e->housekeeping);
    resolver_etcd_del(e->etcd);
    resolver_loop_del(e->loop);
    resolver_config_free(e->cfg);
    free(e);
}

int resolver_engine_fd(resolver_engine *e)
{
    return resolver_loop_fd(e->loop);
}

int resolver_engine_timeout(resolver_engine *e)
{
    return resolver_loop_timeout(e->loop);
}

int resolver_engine_process(resolver_engine *e)
{
    return resolver_loop_run_once(e->loop, 0);
}

int resolver_engine_run(resolver_engine *e)
{
    return resolver_loop_run(e->loop);
}

void resolver_engine_stop(resolver_engine *e)
{
    resolver_loop_stop(e->loop);
}

void resolver_engine_shutdown(resolver_engine *e)
{
    e->shutting_down = 1;
}

resolver_loop *resolver_engine_loop(resolver_engine *e)
{
    return e->loop;
}

const resolver_config *resolver_engine_config(const resolver_engine *e)
{
    return e->cfg;
}

void resolver_engine_set_listener(resolver_engine *e, resolver_engine_change_cb cb, void *arg)
{
    e->listener = cb;
    e->listener_arg = arg;
}

int resolver_engine_drain(resolver_engine *e, const char *service, const char *address, int drain)
{
    resolver_service *svc = resolver_strmap_get(&e->services, service);
    if (!svc)
        return RESOLVER_ERR_NOT_FOUND;
    return resolver_service_drain(svc, address, drain);
}

/* ---- reload ---- */

static int service_in_config(const resolver_config *cfg, const char *name)
{
    return resolver_config_find_service(cfg, name) != NULL;
}

int resolver_engine_reload(resolver_engine *e, resolver_config *cfg)
{
    /* Services the old config listed and the new one does not are dropped;
     * on-demand services stay (they were asked for by clients). */
    size_t n = 0;
    char **gone = calloc(e->services.len + 1, sizeof(char *));
    if (!gone) {
        resolver_config_free(cfg);
        return RESOLVER_ERR_NOMEM;
    }
    const char *name;
    for (size_t pos = 0; resolver_strmap_next(&e->services, &pos, &name, NULL);)
        if (service_in_config(e->cfg, name) && !service_in_config(cfg, name))
            gone[n++] = strdup(name);
    for (size_t i = 0; i < n; i++) {
        if (gone[i]) {
            LOG_INFO("service %s: removed from the configuration", gone[i]);
            resolver_service_del(resolver_strmap_remove(&e->services, gone[i]));
        }
        free(gone[i]);
    }
    free(gone);
    for (size_t i = 0; i < cfg->n_services; i++) {
        const resolver_service_config *sc = &cfg->services[i];
        resolver_service *svc = resolver_strmap_get(&e->services, sc->name);
        if (svc && strcmp(resolver_service_prefix(svc), sc->prefix) != 0) {
            resolver_service_del(resolver_strmap_remove(&e->services, sc->name));
            svc = NULL;
        }
        if (svc) {
            if (!service_in_config(e->cfg, sc->name) && e->n_on_demand > 0)
                e->n_on_demand--; /* now configured */
            resolver_service_set_options(svc, &sc->options);
        } else {
            add_service(e, sc->name, sc->prefix, &sc->options);
        }
    }
    resolver_config_free(e->cfg);
    e->cfg = cfg;
    LOG_INFO("configuration reloaded: %zu services configured", cfg->n_services);
    return 0;
}

/* ---- introspection ---- */

static int by_name(const void *a, const void *b)
{
    return strcmp(resolver_service_name(*(resolver_service *const *)a),
                  resolver_service_name(*(resolver_service *const *)b));
}

/* The services sorted by name; free the array (not the services). */
static resolver_service **sorted_services(resolver_engine *e, size_t *n)
{
    resolver_service **all = calloc(e->services.len + 1, sizeof(*all));
    *n = 0;
    if (!all)
        return NULL;
    void *value;
    for (size_t pos = 0; resolver_strmap_next(&e->services, &pos, NULL, &value);)
        all[(*n)++] = value;
    qsort(all, *n, sizeof(*all), by_name);
    return all;
}

json_t *resolver_engine_services_json(resolver_engine *e)
{
    size_t n;
    resolver_service **all = sorted_services(e, &n);
    json_t *arr = json_array();
    for (size_t i = 0; all && arr && i < n; i++)
        json_array_append_new(arr, resolver_service_to_json(all[i]));
    free(all);
    return arr;
}

json_t *resolver_engine_instances_json(resolver_engine *e, const char *service)
{
    resolver_service *svc = resolver_strmap_get(&e->services, service);
    if (!svc)
        return NULL;
    return resolver_service_instances_json(svc, resolver_loop_now(e->loop));
}

static int64_t max_revision(resolver_engine *e)
{
    int64_t rev = 0;
    void *value;
    for (size_t pos = 0; resolver_strmap_next(&e->services, &pos, NULL, &value);) {
        int64_t r = resolver_service_revision(value);
        if (r > rev)
            rev = r;
    }
    return rev;
}

json_t *resolver_engine_status_json(resolver_engine *e)
{
    uint64_t now = resolver_loop_update_time(e->loop);
    uint64_t heard = resolver_etcd_last_heard(e->etcd);
    size_t instances = 0, ready = 0, stale = 0, counts[5];
    void *value;
    for (size_t pos = 0; resolver_strmap_next(&e->services, &pos, NULL, &value);) {
        if (!resolver_service_synced(value) && resolver_service_instance_count(value) > 0)
            stale++; /* serving what the cache said, not yet confirmed by etcd */
        resolver_service_state_counts(value, counts);
        instances += resolver_service_instance_count(value);
        ready += counts[RESOLVER_STATE_READY];
    }
    json_t *o = json_pack("{s:s, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                          "etcd_endpoint", resolver_etcd_endpoint(e->etcd), "revision",
                          (json_int_t)max_revision(e), "uptime_s",
                          (double)(now - e->started_ms) / 1000.0, "services",
                          (json_int_t)e->services.len, "instances", (json_int_t)instances,
                          "ready", (json_int_t)ready, "tickets_outstanding",
                          (json_int_t)e->tickets.len, "tickets_leaked",
                          (json_int_t)e->tickets_leaked, "picks", (json_int_t)e->picks,
                          "pick_failures", (json_int_t)e->pick_failures, "on_demand_services",
                          (json_int_t)e->n_on_demand);
    if (o) {
        json_object_set_new(o, "etcd_last_heard_s",
                            heard ? json_real((double)(now - heard) / 1000.0) : json_null());
        json_object_set_new(o, "stale_services", json_integer((json_int_t)stale));
        json_object_set_new(o, "etcd_failovers",
                            json_integer((json_int_t)resolver_etcd_failovers(e->etcd)));
        json_object_set_new(o, "etcd_endpoints",
                            json_integer((json_int_t)e->cfg->etcd.n_endpoints));
    }
    return o;
}

/* ---- metrics ---- */

typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} text_buf;

static void text_append(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_append(text_buf *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->cap - t->len;
        int n = t->buf ? vsnprintf(t->buf + t->len, room, fmt, ap) : -1;
        va_end(ap);
        if (n >= 0 && (size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (n >= 0 && cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = 1;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

char *resolver_engine_metrics_text(resolver_engine *e)
{
    text_buf t = {0};
    uint64_t now = resolver_loop_update_time(e->loop);
    uint64_t heard = resolver_etcd_last_heard(e->etcd);
    static const char *const states[5] = {"IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE",
                                          "DRAINING"};
    size_t n;
    resolver_service **all = sorted_services(e, &n);
    text_append(&t, "# TYPE resolver_picks_total counter\n");
    for (size_t i = 0; all && i < n; i++)
        text_append(&t, "resolver_picks_total{service=\"%s\"} %" PRIu64 "\n",
                    resolver_service_name(all[i]), resolver_service_counters_get(all[i])->picks);
    text_append(&t, "# TYPE resolver_pick_failures_total counter\n");
    for (size_t i = 0; all && i < n; i++)
        text_append(&t, "resolver_pick_failures_total{service=\"%s\"} %" PRIu64 "\n",
                    resolver_service_name(all[i]),
                    resolver_service_counters_get(all[i])->pick_failures);
    text_append(&t, "# TYPE resolver_instances gauge\n");
    for (size_t i = 0; all && i < n; i++) {
        size_t counts[5];
        resolver_service_state_counts(all[i], counts);
        for (int s = 0; s < 5; s++)
            text_append(&t, "resolver_instances{service=\"%s\",state=\"%s\"} %zu\n",
                        resolver_service_name(all[i]), states[s], counts[s]);
    }
    text_append(&t, "# TYPE resolver_decode_errors_total counter\n");
    for (size_t i = 0; all && i < n; i++)
        text_append(&t, "resolver_decode_errors_total{service=\"%s\"} %" PRIu64 "\n",
                    resolver_service_name(all[i]),
                    resolver_service_counters_get(all[i])->decode_errors);
    free(all);
    text_append(&t, "# TYPE resolver_tickets_outstanding gauge\nresolver_tickets_outstanding %zu\n",
                e->tickets.len);
    text_append(&t,
                "# TYPE resolver_tickets_leaked_total counter\nresolver_tickets_leaked_total "
                "%" PRIu64 "\n",
                e->tickets_leaked);
    text_append(&t, "# TYPE resolver_etcd_revision gauge\nresolver_etcd_revision %" PRId64 "\n",
                max_revision(e));
    text_append(&t,
                "# TYPE resolver_etcd_last_heard_seconds gauge\n"
                "resolver_etcd_last_heard_seconds %.3f\n",
                heard ? (double)(now - heard) / 1000.0 : -1.0);
    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    return t.buf;
}
