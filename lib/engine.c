/*
 * engine.c - the engine's lifecycle (new, free, run, process, shutdown),
 * the cache file and housekeeping, registrations, and what each message of
 * the inbox means (inbox.c is only the queue).  The other parts are listed
 * in engine_internal.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine_internal.h"
#include "log.h"

#define HOUSEKEEPING_MS 250
/* The cache file is written at most this often: under churn every change
 * would otherwise cost a write and an fsync.  At a stop it is written at
 * once (rsv_engine_flush_cache). */
#define CACHE_WRITE_INTERVAL_MS 2000

/* ---- cache_file and housekeeping ---- */

static void on_cache_entry(void *arg, const char *name, const char *prefix, const char *key,
                           const rsv_endpoint *ep)
{
    resolver_engine *e = arg;
    rsv_service *svc = rsv_strmap_get(&e->services, name);
    if (!svc) {
        if (e->n_on_demand >= e->cfg->on_demand_services_max)
            return;
        svc = rsv_directory_add(e, name, prefix, &e->cfg->defaults);
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
    json_t *regs = json_array();
    const char *id;
    json_t *reg;
    json_object_foreach(e->runtime_regs, id, reg)
    {
        if (regs && json_array_append(regs, reg) != 0) {
            json_decref(regs);
            regs = NULL;
        }
    }
    char *text = all && regs ? rsv_cache_encode(all, regs) : NULL;
    json_decref(all);
    json_decref(regs);
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
void rsv_engine_flush_cache(resolver_engine *e)
{
    collect_cache_changes(e);
    if (e->cache_dirty && cache_enabled(e))
        submit_cache(e);
}

static void on_housekeeping(rsv_loop *loop, rsv_timer *t, void *arg)
{
    resolver_engine *e = arg;
    rsv_note_on_demand_room(e);
    write_cache_if_changed(e);
    if (rsv_loop_now(loop) - e->last_idle_sweep_ms >= 10000) {
        e->last_idle_sweep_ms = rsv_loop_now(loop);
        rsv_drop_idle_services(e);
    }
    rsv_timer_start(t, HOUSEKEEPING_MS);
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

int rsv_engine_add_registrations(resolver_engine *e, const resolver_config *cfg)
{
    for (size_t i = 0; i < cfg->n_registrations; i++) {
        int rc = add_registration(e, cfg, &cfg->registrations[i], 1);
        if (rc && rc != RESOLVER_ERR_CLOSED)
            return rc;
    }
    return 0;
}

/* Keeps (or with r NULL forgets) a run-time registration for the
 * cache_file, so that the next start registers it again. */
static void remember_registration(resolver_engine *e, const char *service, const char *address,
                                  const rsv_registration_config *r)
{
    static rsv_log_limit nomem_log;
    char id[2 * RSV_SERVICE_NAME_MAX + 64];
    snprintf(id, sizeof(id), "%s\n%s", service, address);
    if (!r) {
        if (e->runtime_regs && json_object_del(e->runtime_regs, id) == 0)
            e->cache_dirty = 1;
        return;
    }
    json_t *v = rsv_cache_registration_json(r);
    if (!e->runtime_regs)
        e->runtime_regs = json_object();
    if (!v || !e->runtime_regs || json_object_set_new(e->runtime_regs, id, v) != 0) {
        LOG_WARN_LIMITED(&nomem_log, "registration %s %s: out of memory; not kept in cache_file",
                         service, address);
        return;
    }
    e->cache_dirty = 1;
}

/* The run-time registrations the cache_file kept, but those the
 * configuration lists itself (its own entry wins). */
static void on_cache_registration(void *arg, const rsv_registration_config *r)
{
    resolver_engine *e = arg;
    for (size_t i = 0; i < e->cfg->n_registrations; i++)
        if (strcmp(e->cfg->registrations[i].service, r->service) == 0 &&
            strcmp(e->cfg->registrations[i].address, r->address) == 0)
            return;
    if (add_registration(e, e->cfg, r, 0) != 0)
        return;
    remember_registration(e, r->service, r->address, r);
    e->regs_restored++;
}

static void restore_registrations(resolver_engine *e)
{
    char err[512];
    size_t skipped = 0;
    if (rsv_cache_read_registrations(e->cfg->cache_file, on_cache_registration, e, &skipped, err,
                                     sizeof(err)) != 0)
        return; /* load_cache said so */
    if (e->regs_restored || skipped)
        LOG_INFO("cache_file %s: %zu run-time registrations restored, %zu skipped",
                 e->cfg->cache_file, e->regs_restored, skipped);
    e->cache_dirty = 0; /* the file says just that */
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
    if (rc == 0)
        remember_registration(e, spec.service, spec.address, &spec);
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
    int rc = rsv_registrar_remove(e->registrar, service, address);
    if (rc == 0)
        remember_registration(e, service, address, NULL);
    return rc;
}

void resolver_engine_deregister_all(resolver_engine *e)
{
    rsv_registrar_leave_all(e->registrar);
}

size_t resolver_engine_registrations(resolver_engine *e)
{
    return rsv_registrar_count(e->registrar);
}

/* ---- lifecycle ---- */

rsv_dns_options rsv_engine_dns_options(const resolver_config *cfg)
{
    rsv_dns_options o = {(const char *const *)cfg->dns.servers, cfg->dns.n_servers, 0, 0};
    return o;
}

/* ---- the inbox's messages ---- */

/* Loop thread: applies one message another thread posted (inbox.c hands
 * them over in the order posted and frees them after). */
static void apply_msg(resolver_engine *e, rsv_engine_msg *m)
{
    switch (m->type) {
    case RSV_MSG_TICKET:
        rsv_ticket_track(e, m->ticket);
        break;
    case RSV_MSG_DONE:
        if (rsv_done_on_loop(e, m->id, m->failed, m->latency_ms) != 0)
            e->done_unknown++;
        break;
    case RSV_MSG_DISCOVER:
        rsv_discover_apply(e, m->name, (size_t)m->id);
        break;
    }
}

/* The loop's wakeup callback: a post woke it. */
static void on_wakeup(rsv_loop *loop, void *arg)
{
    (void)loop;
    rsv_inbox_drain(arg, apply_msg);
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
    if (!e->loop || !e->hazard || rsv_engine_watch_init(e) != 0)
        goto fail;
    rsv_loop_set_wakeup(e->loop, on_wakeup, e);
    e->etcd = rsv_etcd_new(e->loop, cfg);
    if (!e->etcd)
        goto fail;
    rsv_dns_options dns_opts = rsv_engine_dns_options(cfg);
    if (!(e->dns = rsv_dns_new(e->loop, &dns_opts)))
        goto fail;
    e->started_ms = e->last_idle_sweep_ms = rsv_loop_now(e->loop);
    if (!(e->registrar = rsv_registrar_new(e->loop, e->etcd, e->dns, cfg->deregister_grace_ms)) ||
        rsv_engine_add_registrations(e, cfg) != 0)
        goto fail;
    if (rsv_directory_add_configured(e) != 0)
        goto fail;
    if (rsv_directory_publish(e, NULL) != 0) /* no service configured: an empty one */
        goto fail;
    if (cfg->cache_file && *cfg->cache_file) {
        load_cache(e);
        restore_registrations(e);
    }
    rsv_note_on_demand_room(e);
    e->housekeeping = rsv_timer_new(e->loop, on_housekeeping, e);
    if (!e->housekeeping)
        goto fail;
    rsv_timer_start(e->housekeeping, HOUSEKEEPING_MS);
    *out = e;
    return 0;
fail:
    resolver_engine_free(e);
    return RESOLVER_ERR_NOMEM;
}

void resolver_engine_free(resolver_engine *e)
{
    if (!e)
        return;
    /* Watches and waiting picks end without a callback (their timers are
     * the loop's, freed below). */
    rsv_engine_watch_fini(e);
    /* Work other threads posted last: tickets to track, so that they are
     * released below like the others. */
    if (e->loop)
        rsv_inbox_drain(e, apply_msg);
    /* A stop without resolver_engine_shutdown (the embedded engine): the
     * last state is written before the services go. */
    if (e->cfg && !atomic_load(&e->shutting_down))
        rsv_engine_flush_cache(e);
    rsv_cache_writer_del(e->cache_writer); /* waits for the last write */
    /* Tickets first: they hold instance references. */
    rsv_tickets_free_all(e);
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, NULL, &value);)
        rsv_service_free(value);
    rsv_strmap_clear(&e->services);
    rsv_directory_free(atomic_exchange(&e->directory, NULL));
    /* Retired pickers, services and directories; pickers release instances,
     * whose timers live on the loop: before the loop goes. */
    rsv_hazard_domain_del(e->hazard);
    rsv_timer_del(e->housekeeping);
    rsv_registrar_del(e->registrar); /* rule 2: keys expire with their leases */
    rsv_etcd_del(e->etcd);
    rsv_dns_del(e->dns); /* after the subchannels, which the hazard domain freed */
    rsv_loop_del(e->loop);
    resolver_config_free(e->cfg);
    json_decref(e->runtime_regs);
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
    rsv_mark_loop_thread(e);
    return rsv_loop_run_once(e->loop, 0);
}

int resolver_engine_run(resolver_engine *e)
{
    rsv_mark_loop_thread(e);
    return rsv_loop_run(e->loop);
}

void resolver_engine_stop(resolver_engine *e)
{
    rsv_loop_stop(e->loop);
}

void resolver_engine_shutdown(resolver_engine *e)
{
    if (!e || atomic_exchange(&e->shutting_down, 1))
        return;
    /* Waiting picks answer RESOLVER_ERR_CLOSED now, not at their deadline. */
    rsv_engine_wake_waiters(e);
    /* Before the drain: the cache keeps the last listing, not the drain. */
    rsv_engine_flush_cache(e);
    /* Every instance drains as if it had left etcd: no new picks, closed
     * once its outstanding picks are done or drain_timeout_ms passes. */
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, NULL, &value);)
        rsv_service_drain_all(value);
}

int resolver_engine_drained(resolver_engine *e)
{
    if (!e)
        return 1;
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, NULL, &value);)
        if (rsv_service_instance_count(value) > 0)
            return 0;
    return 1;
}

uint64_t resolver_engine_max_drain_ms(const resolver_engine *e)
{
    if (!e)
        return 0;
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

resolver_loop *resolver_engine_loop(resolver_engine *e)
{
    return e ? e->loop : NULL;
}

const resolver_config *resolver_engine_config(const resolver_engine *e)
{
    return e ? e->cfg : NULL;
}

static int drain(resolver_engine *e, const char *service, const char *address, int drain)
{
    if (!e || !service || !address)
        return RESOLVER_ERR_INVALID;
    rsv_service *svc = rsv_strmap_get(&e->services, service);
    if (!svc)
        return RESOLVER_ERR_NOT_FOUND;
    return rsv_service_drain(svc, address, drain);
}

int resolver_engine_drain(resolver_engine *e, const char *service, const char *address)
{
    return drain(e, service, address, 1);
}

int resolver_engine_undrain(resolver_engine *e, const char *service, const char *address)
{
    return drain(e, service, address, 0);
}
