/*
 * selfpres.c - self-preservation (service.h rule 5): when the deletions of
 * one batch would take a service below self_preservation_percent of the
 * most keyed READY instances it had in the last 10 s, the removed ones
 * whose connection is READY stay pickable as STALE.  A rolling deploy
 * removes one instance at a time and stays above; publishers that lost
 * etcd see their leases expire together, which is the case kept.
 */
#include <stdio.h>
#include "log.h"
#include "service_priv.h"

int rsv_instance_keyed_ready(const rsv_instance *inst)
{
    return inst->n_keys > 0 && !inst->draining && inst->sc &&
           rsv_subchannel_state(inst->sc) == RSV_STATE_READY;
}

/* Notes the count of keyed READY instances now; a second without a note
 * had the count of the last one (the count changes only where the picker
 * is published, which notes it). */
void rsv_sp_note_ready(rsv_service *svc, size_t ready)
{
    uint64_t sec = rsv_loop_now(svc->loop) / 1000;
    if (sec != svc->ready_sec) {
        uint64_t steps = sec - svc->ready_sec;
        if (steps > SP_SLOTS)
            steps = SP_SLOTS;
        for (uint64_t i = 1; i <= steps; i++)
            svc->ready_max[(svc->ready_sec + i) % SP_SLOTS] = svc->ready_now;
        svc->ready_sec = sec;
    }
    if (ready > svc->ready_max[sec % SP_SLOTS])
        svc->ready_max[sec % SP_SLOTS] = ready;
    svc->ready_now = ready;
}

/* The most keyed READY instances in the last SP_WINDOW_S seconds. */
static size_t ready_history_max(rsv_service *svc)
{
    rsv_sp_note_ready(svc, svc->ready_now);
    size_t max = 0;
    for (size_t i = 0; i < SP_SLOTS; i++)
        if (svc->ready_max[i] > max)
            max = svc->ready_max[i];
    return max;
}

static void stale_hold(rsv_instance *inst, void (*held)(rsv_instance *inst))
{
    rsv_service *svc = inst->service;
    inst->stale = 1;
    inst->stale_since_ms = inst->last_change_ms = rsv_loop_now(svc->loop);
    svc->n_stale++;
    rsv_timer_start(inst->stale_timer, svc->opts.self_preservation_max_ms);
    held(inst);
}

/* Before the batch's unkeyed instances drain: if their deletions leave
 * fewer keyed READY instances than self_preservation_percent of the most
 * of the last 10 s (a rolling deploy removes one at a time and stays
 * above; publishers that lost etcd see their leases expire together), the
 * ones whose connection is READY stay as STALE.  Returns how many. */
size_t rsv_sp_hold(rsv_service *svc, void (*on_held)(rsv_instance *inst))
{
    uint32_t pct = svc->opts.self_preservation_percent;
    if (!pct || !svc->listed || svc->stopped || svc->draining_all)
        return 0;
    size_t baseline = ready_history_max(svc), kept = 0;
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&svc->instances, &pos, NULL, &value);)
        kept += rsv_instance_keyed_ready(value);
    if (kept * 100 >= (uint64_t)pct * baseline)
        return 0;
    size_t held = 0;
    for (size_t i = 0; i < svc->n_unkeyed; i++) {
        rsv_instance *inst = svc->unkeyed[i];
        if (inst->service == svc && inst->n_keys == 0 && !inst->draining && !inst->stale &&
            inst->sc && rsv_subchannel_state(inst->sc) == RSV_STATE_READY) {
            stale_hold(inst, on_held);
            held++;
        }
    }
    if (held) {
        svc->counters.self_preservation_events++;
        LOG_WARN_LIMITED(&svc->sp_log,
                         "service %s: self-preservation: keeping %zu instances etcd removed as "
                         "STALE (%zu now): the deletions would leave %zu READY of the %zu of the "
                         "last 10 s, below self_preservation_percent %u; each serves until its "
                         "connection fails, etcd lists it again or %llu ms pass",
                         svc->name, held, svc->n_stale, kept, baseline, pct,
                         (unsigned long long)svc->opts.self_preservation_max_ms);
    }
    return held;
}

void rsv_sp_clear(rsv_instance *inst)
{
    if (!inst->stale)
        return;
    inst->stale = 0;
    inst->service->n_stale--;
    rsv_timer_stop(inst->stale_timer);
}

void rsv_sp_end(rsv_instance *inst, const char *why)
{
    rsv_service *svc = inst->service;
    rsv_sp_clear(inst);
    LOG_INFO("service %s: instance %s no longer STALE after %llu ms: %s", svc->name,
             inst->endpoint.address,
             (unsigned long long)(rsv_loop_now(svc->loop) - inst->stale_since_ms), why);
    if (svc->n_stale == 0)
        LOG_INFO("service %s: self-preservation over: no STALE instance left", svc->name);
}

/* self_preservation_max_ms passed, or (0 ms) the connection left READY:
 * the instance drains as any removed one (the caller starts the drain). */
int rsv_sp_expire(rsv_instance *inst)
{
    if (!inst->stale || !inst->service)
        return 0;
    int ready = inst->sc && rsv_subchannel_state(inst->sc) == RSV_STATE_READY;
    rsv_sp_end(inst, ready ? "self_preservation_max_ms passed" : "its connection left READY");
    return 1;
}
