/*
 * service_index.c - reads of a service's instances map that change
 * nothing and call nothing of the service's other files: snapshots, the
 * address order, counts by state, ejected counts, the zone filter.
 * Called by service.c and service_view.c (introspect.c reads the counts
 * through service.h); calls none of them.
 */
#include <stdlib.h>
#include <string.h>
#include "service.h"
#include "service_priv.h"

rsv_instance **rsv_service_collect(const rsv_service *svc, size_t *n)
{
    *n = 0;
    rsv_instance **all = calloc(svc->instances.len + 1, sizeof(*all));
    void *value;
    for (size_t pos = 0; all && rsv_strmap_next(&svc->instances, &pos, NULL, &value);)
        all[(*n)++] = value;
    return all;
}

int rsv_instance_by_address(const void *a, const void *b)
{
    const rsv_instance *x = *(rsv_instance *const *)a;
    const rsv_instance *y = *(rsv_instance *const *)b;
    return strcmp(x->endpoint.address, y->endpoint.address);
}

void rsv_service_state_counts(const rsv_service *svc, size_t counts[5])
{
    memset(counts, 0, 5 * sizeof(size_t));
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&svc->instances, &pos, NULL, &value);) {
        const rsv_instance *inst = value;
        if (inst->draining)
            counts[RSV_STATE_SHUTDOWN]++;
        else
            counts[rsv_subchannel_state(inst->sc)]++;
    }
}

size_t rsv_service_ejected_count(const rsv_service *svc)
{
    size_t n = 0;
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&svc->instances, &pos, NULL, &value);)
        n += ((rsv_instance *)value)->ejected;
    return n;
}

/* Zone preference: the daemon's zone alone while at least
 * zone_min_ready_percent of its instances there are READY. */
size_t rsv_service_filter_zone(const rsv_service *svc, rsv_instance **ready, size_t n)
{
    if (!svc->opts.zone_min_ready_percent || !svc->zone[0])
        return n;
    size_t local_total = 0, local_ready = 0;
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&svc->instances, &pos, NULL, &value);) {
        const rsv_instance *inst = value;
        if (!inst->draining && strcmp(inst->endpoint.zone, svc->zone) == 0)
            local_total++;
    }
    for (size_t i = 0; i < n; i++)
        local_ready += strcmp(ready[i]->endpoint.zone, svc->zone) == 0;
    if (local_ready == 0 || local_ready * 100 < svc->opts.zone_min_ready_percent * local_total)
        return n;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(ready[i]->endpoint.zone, svc->zone) == 0)
            ready[k++] = ready[i];
    return k;
}
