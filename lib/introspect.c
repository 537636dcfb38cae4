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

/* ---- readiness ---- */

int resolver_engine_ready(resolver_engine *e, char *why, size_t whylen)
{
    char buf[256];
    if (!why || !whylen) {
        why = buf;
        whylen = sizeof(buf);
    }
    if (!e) {
        snprintf(why, whylen, "no engine");
        return 0;
    }
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
/* ---- the public structs (resolver.h) ---- */

_Static_assert(RESOLVER_LATENCY_BUCKETS == RSV_HISTOGRAM_BUCKETS,
               "the public histogram is the service's");

int resolver_engine_registration_list(resolver_engine *e, const char *service, const char *address,
                                      resolver_registration_info **out, size_t *n)
{
    if (!e || !out || !n)
        return RESOLVER_ERR_INVALID;
    return rsv_registrar_list(e->registrar, service, address, out, n);
}

static char *dup_or_empty(const char *s, int *nomem)
{
    char *d = strdup(s ? s : "");
    if (!d)
        *nomem = 1;
    return d;
}

void resolver_service_info_free(resolver_service_info *info, size_t n)
{
    if (!info)
        return;
    for (size_t i = 0; i < n; i++) {
        free(info[i].name);
        free(info[i].prefix);
        free(info[i].policy);
    }
    free(info);
}

int resolver_engine_services(resolver_engine *e, resolver_service_info **out, size_t *n)
{
    if (!e || !out || !n)
        return RESOLVER_ERR_INVALID;
    *out = NULL;
    *n = 0;
    size_t count;
    rsv_service **all = rsv_engine_sorted_services(e, &count);
    resolver_service_info *info = all ? calloc(count + 1, sizeof(*info)) : NULL;
    if (!info) {
        free(all);
        return RESOLVER_ERR_NOMEM;
    }
    int nomem = 0;
    for (size_t i = 0; i < count; i++) {
        const rsv_service *svc = all[i];
        resolver_service_info *s = &info[i];
        size_t counts[5];
        rsv_service_state_counts(svc, counts);
        s->name = dup_or_empty(rsv_service_name(svc), &nomem);
        s->prefix = dup_or_empty(rsv_service_prefix(svc), &nomem);
        s->policy = dup_or_empty(rsv_policy_name(rsv_service_options_get(svc)->policy), &nomem);
        s->state = (resolver_state)rsv_service_state(svc);
        s->synced = rsv_service_synced(svc);
        s->revision = rsv_service_revision(svc);
        s->instances = rsv_service_instance_count(svc);
        for (int st = RSV_STATE_IDLE; st <= RSV_STATE_TRANSIENT_FAILURE; st++)
            s->states[st] = counts[st];
        s->states[RESOLVER_STATE_DRAINING] = counts[RSV_STATE_SHUTDOWN];
        s->states[RESOLVER_STATE_STALE] = rsv_service_stale_count(svc);
        const rsv_service_counters *c = rsv_service_counters_get(svc);
        s->picks = atomic_load(&c->picks);
        s->pick_failures = atomic_load(&c->pick_failures);
        s->decode_errors = c->decode_errors;
        s->ejections = c->ejections;
        s->self_preservation_events = c->self_preservation_events;
        const rsv_discovery *d = rsv_service_discovery(svc);
        s->watch_resumes = d ? rsv_discovery_reconnects(d) : 0;
        s->watch_silence_resets = d ? rsv_discovery_silent_streams(d) : 0;
        s->watch_resyncs = d ? rsv_discovery_resyncs(d) : 0;
        for (size_t b = 0; b < RESOLVER_LATENCY_BUCKETS; b++) {
            s->latency_bounds_us[b] = rsv_histogram_bounds_us[b];
            s->latency_le[b] = rsv_histogram_cumulative(&c->latency, b);
        }
        s->latency_count = c->latency.count;
        s->latency_sum_ms = c->latency.sum_ms;
    }
    free(all);
    if (nomem) {
        resolver_service_info_free(info, count);
        return RESOLVER_ERR_NOMEM;
    }
    *out = info;
    *n = count;
    return 0;
}

void resolver_instance_info_free(resolver_instance_info *info, size_t n)
{
    if (!info)
        return;
    for (size_t i = 0; i < n; i++) {
        free(info[i].address);
        free(info[i].zone);
        free(info[i].metadata);
        free(info[i].last_error);
        free(info[i].health);
    }
    free(info);
}

int resolver_engine_instances(resolver_engine *e, const char *service, resolver_instance_info **out,
                              size_t *n)
{
    if (!e || !service || !out || !n)
        return RESOLVER_ERR_INVALID;
    *out = NULL;
    *n = 0;
    rsv_service *svc = rsv_strmap_get(&e->services, service);
    if (!svc)
        return RESOLVER_ERR_NOT_FOUND;
    uint64_t now = rsv_loop_update_time(e->loop);
    size_t count;
    rsv_instance **all = rsv_service_instances_sorted(svc, &count);
    resolver_instance_info *info = all ? calloc(count + 1, sizeof(*info)) : NULL;
    if (!info) {
        free(all);
        return RESOLVER_ERR_NOMEM;
    }
    int nomem = 0;
    for (size_t i = 0; i < count; i++) {
        const rsv_instance *inst = all[i];
        resolver_instance_info *r = &info[i];
        const rsv_subchannel_stats *st = inst->sc ? rsv_subchannel_stats_get(inst->sc) : NULL;
        r->address = dup_or_empty(inst->endpoint.address, &nomem);
        r->zone = dup_or_empty(inst->endpoint.zone, &nomem);
        r->state = rsv_instance_public_state(inst);
        r->weight = inst->endpoint.weight;
        r->tls = inst->endpoint.tls;
        const rsv_metadata *meta = atomic_load(&inst->endpoint.metadata);
        if (meta && !(r->metadata = strdup(meta->text)))
            nomem = 1;
        r->keys = inst->n_keys;
        r->outstanding = atomic_load(&inst->outstanding);
        r->picks = atomic_load(&inst->picks);
        r->failures = inst->failures;
        r->operator_drained = inst->operator_drained;
        r->ejected = inst->ejected;
        r->times_ejected = inst->times_ejected;
        r->since_change_s = (double)(now - inst->last_change_ms) / 1000.0;
        r->rtt_ms = st && st->rtt_last_us >= 0 ? (double)st->rtt_last_us / 1000.0 : -1.0;
        r->reconnects = st ? st->reconnects : 0;
        r->connect_attempts = st ? st->connect_attempts : 0;
        r->last_error = dup_or_empty(st ? st->last_error : "", &nomem);
        r->health = dup_or_empty(st ? st->health : "", &nomem);
        r->stale = inst->stale;
        r->connected = st != NULL;
    }
    free(all);
    if (nomem) {
        resolver_instance_info_free(info, count);
        return RESOLVER_ERR_NOMEM;
    }
    *out = info;
    *n = count;
    return 0;
}

void resolver_status_free(resolver_status *status)
{
    if (!status)
        return;
    free(status->etcd_endpoint);
    free(status);
}

int resolver_engine_status(resolver_engine *e, resolver_status **out)
{
    if (!e || !out)
        return RESOLVER_ERR_INVALID;
    *out = NULL;
    resolver_status *s = calloc(1, sizeof(*s));
    if (!s || !(s->etcd_endpoint = strdup(rsv_etcd_endpoint(e->etcd)))) {
        free(s);
        return RESOLVER_ERR_NOMEM;
    }
    uint64_t now = rsv_loop_update_time(e->loop);
    uint64_t heard = rsv_etcd_last_heard(e->etcd);
    size_t counts[5];
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, NULL, &value);) {
        if (!rsv_service_synced(value) && rsv_service_instance_count(value) > 0)
            s->stale_services++;
        rsv_service_state_counts(value, counts);
        s->instances += rsv_service_instance_count(value);
        s->ready += counts[RSV_STATE_READY];
    }
    s->etcd_endpoints = e->cfg->etcd.n_endpoints;
    s->etcd_last_heard_s = heard ? (double)(now - heard) / 1000.0 : -1.0;
    s->etcd_failovers = rsv_etcd_failovers(e->etcd);
    s->etcd_cluster_changes = rsv_etcd_cluster_changes(e->etcd);
    rsv_etcd_conns c;
    rsv_etcd_conns_get(e->etcd, &c);
    s->etcd_connections = c.connections;
    s->etcd_streams = c.streams;
    s->etcd_watch_streams = c.watch_streams;
    s->etcd_http2 = c.http2;
    s->revision = rsv_engine_revision(e);
    s->uptime_s = (double)(now - e->started_ms) / 1000.0;
    s->services = e->services.len;
    s->on_demand_services = e->n_on_demand;
    s->tickets_outstanding = e->tickets.len;
    s->tickets_leaked = e->tickets_leaked;
    s->picks = atomic_load(&e->picks);
    s->pick_failures = atomic_load(&e->pick_failures);
    s->cache_writes = e->cache_writer ? rsv_cache_writer_writes(e->cache_writer) : 0;
    const rsv_dns_stats *d = rsv_dns_stats_get(e->dns);
    s->dns_queries = d->queries;
    s->dns_cache_hits = d->cache_hits;
    s->dns_joined = d->joined;
    s->dns_failures = d->failures;
    s->etcd_authentications = rsv_etcd_authentications(e->etcd);
    *out = s;
    return 0;
}
