/* service_view.c - a service seen from outside: counts, introspection
 * JSON and the cache file's JSON (see service.h). */
#include <stdlib.h>
#include <string.h>
#include "service_priv.h"

size_t rsv_service_instance_count(const rsv_service *svc)
{
    return svc->instances.len;
}

rsv_state rsv_service_state(const rsv_service *svc)
{
    size_t counts[5];
    rsv_service_state_counts(svc, counts);
    if (counts[RSV_STATE_READY])
        return RSV_STATE_READY;
    if (counts[RSV_STATE_CONNECTING])
        return RSV_STATE_CONNECTING;
    if (counts[RSV_STATE_IDLE])
        return RSV_STATE_IDLE;
    return RSV_STATE_TRANSIENT_FAILURE;
}

size_t rsv_service_stale_count(const rsv_service *svc)
{
    return svc->n_stale;
}

json_t *rsv_service_cache_json(const rsv_service *svc)
{
    json_t *kvs = json_array();
    const char *key;
    void *value;
    for (size_t pos = 0; kvs && rsv_strmap_next(&svc->keys, &pos, &key, &value);) {
        const rsv_instance *inst = rsv_strmap_get(&svc->instances, value);
        if (!inst)
            continue;
        json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:b}", "key", key, "address",
                              inst->endpoint.address, "weight", (json_int_t)inst->endpoint.weight,
                              "zone", inst->endpoint.zone, "tls", inst->endpoint.tls);
        const rsv_metadata *meta = atomic_load(&inst->endpoint.metadata);
        if (o && meta)
            json_object_set_new(o, "metadata", json_loads(meta->text, 0, NULL));
        if (o) /* NULL for a key that is not UTF-8: it is just not cached */
            json_array_append_new(kvs, o);
    }
    return json_pack("{s:s, s:I, s:o}", "prefix", svc->prefix, "revision",
                     (json_int_t)rsv_service_revision(svc), "kvs", kvs);
}

const char *rsv_instance_state_name(const rsv_instance *inst)
{
    if (inst->draining)
        return rsv_shown_name(RSV_SHOWN_DRAINING);
    if (!inst->sc)
        return rsv_state_name(RSV_STATE_SHUTDOWN);
    if (inst->stale)
        return rsv_shown_name(RSV_SHOWN_STALE);
    return rsv_state_name(rsv_subchannel_state(inst->sc));
}

rsv_instance **rsv_service_instances_sorted(const rsv_service *svc, size_t *n)
{
    rsv_instance **all = rsv_service_collect(svc, n);
    if (all)
        qsort(all, *n, sizeof(*all), rsv_instance_by_address);
    return all;
}

json_t *rsv_service_to_json(const rsv_service *svc)
{
    size_t counts[5];
    rsv_service_state_counts(svc, counts);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:I, "
        "s:I, s:I}",
        "name", svc->name, "prefix", svc->prefix, "policy", rsv_policy_name(svc->opts.policy),
        "state", rsv_state_name(rsv_service_state(svc)), "synced", rsv_service_synced(svc),
        "revision", (json_int_t)rsv_service_revision(svc), "instances",
        (json_int_t)svc->instances.len, "states", "IDLE", (json_int_t)counts[RSV_STATE_IDLE],
        "CONNECTING", (json_int_t)counts[RSV_STATE_CONNECTING], "READY",
        (json_int_t)counts[RSV_STATE_READY], "TRANSIENT_FAILURE",
        (json_int_t)counts[RSV_STATE_TRANSIENT_FAILURE], "DRAINING",
        (json_int_t)counts[RSV_STATE_SHUTDOWN], "picks",
        (json_int_t)atomic_load(&svc->counters.picks), "pick_failures",
        (json_int_t)atomic_load(&svc->counters.pick_failures), "decode_errors",
        (json_int_t)svc->counters.decode_errors);
    if (o) /* READY instances self-preservation keeps (counted READY in "states") */
        json_object_set_new(o, "stale", json_integer((json_int_t)svc->n_stale));
    return o;
}
