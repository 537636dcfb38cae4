/*
 * introspect.c - what the engine shows of itself: services, instances,
 * status, counters and readiness.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine_internal.h"

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
json_t *rsv_engine_registrations_json(resolver_engine *e)
{
    return rsv_registrar_json(e->registrar);
}
