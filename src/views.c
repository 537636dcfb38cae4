/* views.c - see views.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include "views.h"

static json_t *service_json(const resolver_service_info *s)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:I, "
                          "s:I, s:I}",
                          "name", s->name, "prefix", s->prefix, "policy", s->policy, "state",
                          resolver_state_name(s->state), "synced", s->synced, "revision",
                          (json_int_t)s->revision, "instances", (json_int_t)s->instances, "states",
                          "IDLE", (json_int_t)s->states[RESOLVER_STATE_IDLE], "CONNECTING",
                          (json_int_t)s->states[RESOLVER_STATE_CONNECTING], "READY",
                          (json_int_t)s->states[RESOLVER_STATE_READY], "TRANSIENT_FAILURE",
                          (json_int_t)s->states[RESOLVER_STATE_TRANSIENT_FAILURE], "DRAINING",
                          (json_int_t)s->states[RESOLVER_STATE_DRAINING], "picks",
                          (json_int_t)s->picks, "pick_failures", (json_int_t)s->pick_failures,
                          "decode_errors", (json_int_t)s->decode_errors);
    if (o) /* READY instances self-preservation keeps (counted READY in "states") */
        json_object_set_new(o, "stale", json_integer((json_int_t)s->states[RESOLVER_STATE_STALE]));
    return o;
}

json_t *rsv_view_services(resolver_engine *e)
{
    resolver_service_info *info;
    size_t n;
    if (resolver_engine_services(e, &info, &n) != 0)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, service_json(&info[i]));
    resolver_service_info_free(info, n);
    return arr;
}

static json_t *instance_json(const resolver_instance_info *i)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:f}", "address", i->address, "state",
                          resolver_state_name(i->state), "weight", (json_int_t)i->weight,
                          "outstanding", (json_int_t)i->outstanding, "picks", (json_int_t)i->picks,
                          "failures", (json_int_t)i->failures, "since_change_s", i->since_change_s);
    if (!o)
        return NULL;
    json_object_set_new(o, "zone", json_string(i->zone));
    json_object_set_new(o, "metadata",
                        i->metadata ? json_loads(i->metadata, 0, NULL) : json_null());
    json_object_set_new(o, "keys", json_integer(i->keys));
    json_object_set_new(o, "operator_drained", json_boolean(i->operator_drained));
    json_object_set_new(o, "ejected", json_boolean(i->ejected));
    json_object_set_new(o, "stale", json_boolean(i->stale));
    json_object_set_new(o, "times_ejected", json_integer(i->times_ejected));
    if (i->connected) {
        json_object_set_new(o, "reconnects", json_integer((json_int_t)i->reconnects));
        json_object_set_new(o, "connect_attempts", json_integer((json_int_t)i->connect_attempts));
        json_object_set_new(o, "rtt_ms", i->rtt_ms >= 0 ? json_real(i->rtt_ms) : json_null());
        json_object_set_new(o, "last_error", json_string(i->last_error));
        json_object_set_new(o, "health", json_string(i->health)); /* subchannel health check */
    }
    return o;
}

json_t *rsv_view_instances(resolver_engine *e, const char *service, int *rc)
{
    resolver_instance_info *info;
    size_t n;
    *rc = resolver_engine_instances(e, service, &info, &n);
    if (*rc != 0)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, instance_json(&info[i]));
    resolver_instance_info_free(info, n);
    if (!arr)
        *rc = RESOLVER_ERR_NOMEM;
    return arr;
}

json_t *rsv_view_status(resolver_engine *e)
{
    resolver_status *s;
    if (resolver_engine_status(e, &s) != 0)
        return NULL;
    json_t *o = json_pack("{s:s, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                          "etcd_endpoint", s->etcd_endpoint, "revision", (json_int_t)s->revision,
                          "uptime_s", s->uptime_s, "services", (json_int_t)s->services, "instances",
                          (json_int_t)s->instances, "ready", (json_int_t)s->ready,
                          "tickets_outstanding", (json_int_t)s->tickets_outstanding,
                          "tickets_leaked", (json_int_t)s->tickets_leaked, "picks",
                          (json_int_t)s->picks, "pick_failures", (json_int_t)s->pick_failures,
                          "on_demand_services", (json_int_t)s->on_demand_services);
    if (o) {
        json_object_set_new(o, "etcd_last_heard_s",
                            s->etcd_last_heard_s >= 0 ? json_real(s->etcd_last_heard_s)
                                                      : json_null());
        json_object_set_new(o, "stale_services", json_integer((json_int_t)s->stale_services));
        json_object_set_new(o, "cache_writes", json_integer((json_int_t)s->cache_writes));
        json_object_set_new(o, "etcd_failovers", json_integer((json_int_t)s->etcd_failovers));
        json_object_set_new(o, "etcd_cluster_changes",
                            json_integer((json_int_t)s->etcd_cluster_changes));
        json_object_set_new(o, "etcd_endpoints", json_integer((json_int_t)s->etcd_endpoints));
        json_object_set_new(o, "etcd_connections", json_integer((json_int_t)s->etcd_connections));
        json_object_set_new(o, "etcd_streams", json_integer((json_int_t)s->etcd_streams));
        json_object_set_new(o, "etcd_watch_streams",
                            json_integer((json_int_t)s->etcd_watch_streams));
        json_object_set_new(o, "etcd_http2", json_boolean(s->etcd_http2));
        json_object_set_new(o, "dns",
                            json_pack("{s:I, s:I, s:I, s:I}", "queries", (json_int_t)s->dns_queries,
                                      "cache_hits", (json_int_t)s->dns_cache_hits, "joined",
                                      (json_int_t)s->dns_joined, "failures",
                                      (json_int_t)s->dns_failures));
    }
    resolver_status_free(s);
    return o;
}

json_t *rsv_view_registration(const resolver_registration_info *r)
{
    char lease[32];
    snprintf(lease, sizeof(lease), "%" PRId64, r->lease);
    json_t *left = r->ttl_left_ms >= 0 ? json_integer((json_int_t)r->ttl_left_ms) : json_null();
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:s,s:I}", "service", r->service, "address",
                     r->address, "format", r->format, "key", r->key, "lease_id", lease,
                     "ttl_left_ms", left, "state", r->state, "origin",
                     r->from_config ? "config" : "runtime", "registered_count",
                     (json_int_t)r->registered_count);
}

json_t *rsv_view_registrations(resolver_engine *e, const char *service, const char *address)
{
    resolver_registration_info *info;
    size_t n;
    if (resolver_engine_registration_list(e, service, address, &info, &n) != 0)
        return NULL;
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        json_array_append_new(list, rsv_view_registration(&info[i]));
    resolver_registration_info_free(info, n);
    return list;
}
