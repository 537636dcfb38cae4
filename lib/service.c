/*
 * service.c - instances of one service, kept in step with etcd (see service.h).
 *
 * Two maps: etcd key -> address, and address -> instance.  Several keys may
 * name one address (go-zero re-registers under a new lease before the old
 * one expires), so an instance counts its keys and leaves only with the last.
 *
 * Picks read `picker`, an immutable snapshot of the READY, non-draining,
 * non-ejected instances, the policy's tables and the options a pick uses
 * (ticket_timeout_ms, max_outstanding: a reload rewrites `opts` on the
 * engine thread, so picking threads never read it), rebuilt on the engine thread
 * whenever one of those changes (changes are rare, picks are not) and
 * swapped in atomically; replaced snapshots are freed through hazard
 * pointers once no picking thread holds them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "log.h"
#include "outlier.h"
#include "picker.h"
#include "service.h"

/* Self-preservation's window: the READY counts of the last 10 s. */
#define SP_WINDOW_S 10
#define SP_SLOTS (SP_WINDOW_S + 1)

struct rsv_service {
    rsv_loop *loop;
    rsv_etcd *etcd;
    rsv_dns *dns;
    rsv_hazard_domain *hazard;
    char *name, *prefix, *zone;
    rsv_service_options opts;
    rsv_service_change_cb change_cb;
    void *change_arg;
    rsv_discovery *discovery;
    rsv_strmap keys;        /* etcd key -> malloc'd address */
    rsv_strmap instances;   /* address -> rsv_instance */
    _Atomic(void *) picker; /* rsv_picker, read by any thread */
    rsv_timer *outlier_timer;
    rsv_timer *publish_timer; /* coalesces picker rebuilds after state changes */
    uint64_t publish_cost_us; /* how long the last coalesced rebuild took */
    rsv_service_counters counters;
    atomic_int picked; /* (any) a pick happened since the last idle check */
    uint64_t last_active_ms;
    int changed; /* keys changed since rsv_service_take_changed */
    int stopped;
    int draining_all;  /* graceful stop: etcd changes ignored, cache_file kept as it was */
    int batch;         /* > 0: inside a batch of changes, publish_picker only marks */
    int publish_dirty; /* a publish_picker was asked for inside the batch */
    /* Instances whose last key went inside the batch (each referenced):
     * they drain at its end unless a key named them again meanwhile. */
    rsv_instance **unkeyed;
    size_t n_unkeyed, cap_unkeyed;
    /* Self-preservation (service.h rule 5): the most keyed READY instances
     * seen in each of the last SP_SLOTS seconds, noted at every publish. */
    size_t ready_max[SP_SLOTS];
    uint64_t ready_sec; /* the second ready_max[ready_sec % SP_SLOTS] is for */
    size_t ready_now;   /* keyed READY at the last publish */
    int listed;         /* etcd's first listing applied: cache preloads it reconciles away
                         * are no evidence of a storm */
    size_t n_stale;
    rsv_log_limit sp_log; /* one warning per storm, not per watch message */
};

static void publish_picker(rsv_service *svc);
static void log_back(rsv_instance *inst, const char *how);
static void batch_begin(rsv_service *svc);
static void batch_end(rsv_service *svc);
static void stale_clear(rsv_instance *inst);
static void stale_end(rsv_instance *inst, const char *why);
static void on_stale_timer(rsv_loop *loop, rsv_timer *t, void *arg);

/* A snapshot of the instances, for loops that may close some of them (the
 * map may not change while it is iterated).  Free the array; NULL with
 * *n = 0 when out of memory. */
static rsv_instance **collect_instances(const rsv_service *svc, size_t *n)
{
    *n = 0;
    rsv_instance **all = calloc(svc->instances.len + 1, sizeof(*all));
    void *value;
    for (size_t pos = 0; all && rsv_strmap_next(&svc->instances, &pos, NULL, &value);)
        all[(*n)++] = value;
    return all;
}

/* ---- instance lifetime ---- */

/* instance.h rule 2: the last reference went (engine thread: the service's
 * instances are unreferenced there only). */
static void instance_free_owned(rsv_instance *inst)
{
    rsv_timer_del(inst->drain_timer);
    rsv_timer_del(inst->eject_timer);
    rsv_timer_del(inst->stale_timer);
    rsv_subchannel_del(inst->sc);
}

static void notify(rsv_service *svc, const rsv_instance *inst, rsv_change what)
{
    if (svc->change_cb)
        svc->change_cb(svc->change_arg, svc, inst, what);
}

/* Closes the subchannel and detaches the instance from the service; tickets
 * and pickers still holding it keep the memory alive (lifetime rule 2). */
static void instance_close(rsv_instance *inst)
{
    rsv_service *svc = inst->service;
    rsv_strmap_remove(&svc->instances, inst->endpoint.address);
    rsv_timer_stop(inst->drain_timer);
    rsv_timer_stop(inst->eject_timer);
    stale_clear(inst);
    if (inst->sc) {
        rsv_subchannel_del(inst->sc);
        inst->sc = NULL;
    }
    LOG_INFO("service %s: instance %s closed", svc->name, inst->endpoint.address);
    notify(svc, inst, RSV_CHANGE_CLOSED);
    inst->service = NULL;
    publish_picker(svc);
    rsv_instance_unref(inst);
}

static void on_drain_timeout(rsv_loop *loop, rsv_timer *t, void *arg)
{
    /* Not rate-limited: each instance drains once, and which one was cut
     * off with picks still outstanding is what the operator needs. */
    rsv_instance *inst = arg;
    LOG_WARN("service %s: instance %s drain timed out with %u picks outstanding",
             inst->service->name, inst->endpoint.address, atomic_load(&inst->outstanding));
    instance_close(inst);
}

static void on_eject_timeout(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_instance *inst = arg;
    rsv_service *svc = inst->service;
    uint64_t now = rsv_loop_now(loop);
    if (!rsv_outlier_ejection_over(now, inst->ejected_until_ms)) {
        rsv_timer_start(t, inst->ejected_until_ms - now);
        return;
    }
    inst->ejected = 0;
    inst->consecutive_failures = 0;
    inst->last_change_ms = rsv_loop_now(loop);
    if (inst->sc && rsv_subchannel_state(inst->sc) == RSV_STATE_READY)
        log_back(inst, "back from ejection");
    else
        LOG_DEBUG("service %s: instance %s returns from ejection, not READY", svc->name,
                  inst->endpoint.address);
    publish_picker(svc);
    notify(svc, inst, RSV_CHANGE_STATE);
}

static uint64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* publish_picker, timed: its cost decides whether the next one waits. */
static void publish_picker_timed(rsv_service *svc)
{
    uint64_t start = monotonic_us();
    publish_picker(svc);
    svc->publish_cost_us = monotonic_us() - start;
}

static void on_publish_timer(rsv_loop *loop, rsv_timer *t, void *arg)
{
    publish_picker_timed(arg);
}

/* Rebuilds the picker after a state change.  A picker costs O(instances),
 * and one per transition made the first sync of N instances O(N^2) (every
 * new subchannel goes IDLE -> CONNECTING -> ... and their outcomes arrive
 * in batches).  So a big service (COALESCE_MIN instances or more)
 * coalesces its changes and rebuilds after 10x the last rebuild's cost
 * (rebuilds take at most ~10 % of the loop; a pick may see a state that
 * old); a small one rebuilds at once, as before. */
#define COALESCE_MIN 1024
static void publish_picker_soon(rsv_service *svc)
{
    if (!svc->publish_timer || svc->instances.len < COALESCE_MIN) {
        if (svc->publish_timer)
            rsv_timer_stop(svc->publish_timer);
        publish_picker_timed(svc);
    } else if (!rsv_timer_active(svc->publish_timer)) {
        rsv_timer_start(svc->publish_timer, svc->publish_cost_us / 100);
    }
}

/* ---- what the log says of an instance's state ----
 *
 * The one place that decides it: an instance leaving service (READY and
 * not ejected) gets one warn line naming the cause, its return one info
 * line saying how long it was out; every transition gets one debug line.
 * A clean end (the server closed a READY connection without losing work:
 * EOF, GOAWAY that left no stream) reconnects at once and is not a failure,
 * so its line waits for the reconnect: back to READY says nothing above
 * debug, a failure says both causes.  Per instance at most one warn line
 * per RSV_LOG_LIMIT_MS and cause (connection, ejection): a flapping
 * instance gets one pair per window and the next warn line counts the
 * flaps in between; a return whose departure was not written is not
 * written either. */
enum {
    OUT_NEW = 0,  /* added, never READY yet, nothing said */
    OUT_IN,       /* in service */
    OUT_PENDING,  /* left READY by a clean end; reconnecting, nothing said yet */
    OUT_REPORTED, /* out, and the warn line was written */
    OUT_SILENT    /* out, the warn line was rate-limited away */
};

static double out_seconds(const rsv_instance *inst)
{
    return (double)(rsv_loop_now(inst->service->loop) - inst->out_since_ms) / 1000.0;
}

/* The warn line of a departure; `what` says how it left and why. */
static void log_out(rsv_instance *inst, rsv_log_limit *lim, const char *what)
{
    int logged = LOG_WARN_LIMITED(lim, "service %s: instance %s %s", inst->service->name,
                                  inst->endpoint.address, what);
    inst->out_state = logged ? OUT_REPORTED : OUT_SILENT;
}

/* Back in service: READY (`how`: "READY again", "back from ejection"). */
static void log_back(rsv_instance *inst, const char *how)
{
    if (inst->out_state == OUT_REPORTED)
        LOG_INFO("service %s: instance %s %s after %.1f s out of service", inst->service->name,
                 inst->endpoint.address, how, out_seconds(inst));
    inst->out_state = OUT_IN;
}

static void log_transition(rsv_instance *inst, rsv_state from, rsv_state to)
{
    rsv_service *svc = inst->service;
    const char *cause = rsv_subchannel_state_cause(inst->sc);
    char what[320];
    LOG_DEBUG("service %s: instance %s %s -> %s (%s)", svc->name, inst->endpoint.address,
              rsv_state_name(from), rsv_state_name(to), cause);
    if (to == RSV_STATE_READY) {
        if (!inst->ejected)
            log_back(inst, "READY again");
        return;
    }
    if (from == RSV_STATE_READY && !inst->ejected) {
        inst->out_since_ms = rsv_loop_now(svc->loop);
        if (to == RSV_STATE_CONNECTING) {
            inst->out_state = OUT_PENDING;
            snprintf(inst->clean_end, sizeof(inst->clean_end), "%s", cause);
            return;
        }
        snprintf(what, sizeof(what), "left READY: %s", cause);
        log_out(inst, &inst->flap_log, what);
        return;
    }
    if (to != RSV_STATE_TRANSIENT_FAILURE)
        return;
    if (inst->out_state == OUT_PENDING) {
        snprintf(what, sizeof(what), "left READY: %s; reconnecting failed: %s", inst->clean_end,
                 cause);
        log_out(inst, &inst->flap_log, what);
    } else if (inst->out_state == OUT_NEW) {
        snprintf(what, sizeof(what), "not READY since it was added: %s", cause);
        log_out(inst, &inst->flap_log, what);
    }
}

static void on_subchannel_state(rsv_subchannel *sc, rsv_state old_state, rsv_state new_state,
                                void *arg)
{
    rsv_instance *inst = arg;
    rsv_service *svc = inst->service;
    if (!svc || new_state == RSV_STATE_SHUTDOWN)
        return;
    inst->last_change_ms = rsv_loop_now(svc->loop);
    svc->counters.transitions++;
    log_transition(inst, old_state, new_state);
    /* A STALE instance leaves with its connection; not from inside the
     * subchannel's own callback, which must not delete it. */
    if (inst->stale && new_state != RSV_STATE_READY)
        rsv_timer_start(inst->stale_timer, 0);
    /* Any transition may change the picker or the reason an empty one
     * gives ("none ready: ..." lists the states). */
    publish_picker_soon(svc);
    notify(svc, inst, RSV_CHANGE_STATE);
}

static rsv_instance *instance_new(rsv_service *svc, const rsv_endpoint *ep)
{
    rsv_instance *inst = rsv_instance_new(ep, instance_free_owned);
    if (!inst)
        return NULL;
    inst->service = svc;
    inst->added_ms = inst->last_change_ms = rsv_loop_now(svc->loop);
    inst->out_since_ms = inst->added_ms; /* out_state OUT_NEW */
    inst->drain_timer = rsv_timer_new(svc->loop, on_drain_timeout, inst);
    inst->eject_timer = rsv_timer_new(svc->loop, on_eject_timeout, inst);
    inst->stale_timer = rsv_timer_new(svc->loop, on_stale_timer, inst);
    inst->sc = rsv_subchannel_new(svc->loop, svc->dns, ep->host, ep->port, &svc->opts,
                                  on_subchannel_state, inst);
    if (!inst->drain_timer || !inst->eject_timer || !inst->stale_timer || !inst->sc ||
        rsv_strmap_put(&svc->instances, ep->address, inst, NULL) != 0) {
        rsv_instance_unref(inst);
        return NULL;
    }
    LOG_INFO("service %s: instance %s added", svc->name, ep->address);
    notify(svc, inst, RSV_CHANGE_ADDED);
    rsv_subchannel_connect(inst->sc);
    return inst;
}

static void instance_start_drain(rsv_instance *inst)
{
    rsv_service *svc = inst->service;
    if (inst->stale)
        stale_end(inst, "the service is stopping");
    inst->draining = 1;
    inst->last_change_ms = rsv_loop_now(svc->loop);
    publish_picker(svc);
    unsigned outstanding = atomic_load(&inst->outstanding);
    LOG_INFO("service %s: instance %s removed; draining %u outstanding picks", svc->name,
             inst->endpoint.address, outstanding);
    notify(svc, inst, RSV_CHANGE_REMOVED);
    if (outstanding == 0)
        instance_close(inst);
    else
        rsv_timer_start(inst->drain_timer, svc->opts.drain_timeout_ms);
}

/* ---- keys ---- */

/* A value naming an instance's address changed its weight, zone or tls
 * (the address itself never changes).  The picker's tables (weights) and
 * the zone filter were built from the old values: publish again. */
static void instance_set_endpoint(rsv_service *svc, rsv_instance *inst, const rsv_endpoint *ep)
{
    rsv_endpoint *cur = &inst->endpoint;
    if (cur->weight == ep->weight && cur->tls == ep->tls && strcmp(cur->zone, ep->zone) == 0)
        return;
    LOG_INFO("service %s: instance %s now has weight %u, zone \"%s\"", svc->name, cur->address,
             ep->weight, ep->zone);
    cur->weight = ep->weight;
    cur->tls = ep->tls;
    memcpy(cur->zone, ep->zone, sizeof(cur->zone));
    inst->last_change_ms = rsv_loop_now(svc->loop);
    svc->changed = 1; /* cache_file keeps weight and zone too */
    publish_picker(svc);
    notify(svc, inst, RSV_CHANGE_STATE);
}

static void add_key_to_instance(rsv_service *svc, const rsv_endpoint *ep)
{
    rsv_instance *inst = rsv_strmap_get(&svc->instances, ep->address);
    if (!inst) {
        inst = instance_new(svc, ep);
        if (!inst) {
            static rsv_log_limit lim;
            LOG_ERROR_LIMITED(&lim, "service %s: out of memory adding %s", svc->name, ep->address);
            return;
        }
    } else if (inst->draining && inst->n_keys == 0) {
        /* Back before its drain finished: revive the same connection. */
        rsv_timer_stop(inst->drain_timer);
        inst->draining = inst->operator_drained;
        LOG_INFO("service %s: instance %s is back; revived", svc->name, ep->address);
        publish_picker(svc);
        notify(svc, inst, RSV_CHANGE_ADDED);
    } else if (inst->stale) {
        /* Listed again: an ordinary instance, on the same connection. */
        stale_end(inst, "etcd lists it again");
        inst->last_change_ms = rsv_loop_now(svc->loop);
        notify(svc, inst, RSV_CHANGE_STATE);
    }
    instance_set_endpoint(svc, inst, ep);
    inst->n_keys++;
}

/* The last key naming `inst` went.  Inside a batch (one watch message: a
 * txn that deletes one key and puts another with the same address, or a
 * snapshot) the drain waits for the batch's end, where a key that named the
 * address again keeps the instance as it is, connection and all; draining
 * at once would close an idle instance before the put could revive it. */
static void instance_unkeyed(rsv_service *svc, rsv_instance *inst)
{
    if (svc->batch == 0) {
        /* A batch of one, so that self-preservation sees it too. */
        batch_begin(svc);
        instance_unkeyed(svc, inst);
        batch_end(svc);
        return;
    }
    if (inst->unkeyed_in_batch)
        return; /* already waiting for the batch's end */
    if (svc->n_unkeyed == svc->cap_unkeyed) {
        size_t cap = svc->cap_unkeyed ? 2 * svc->cap_unkeyed : 16;
        rsv_instance **grown = realloc(svc->unkeyed, cap * sizeof(*grown));
        if (!grown) {
            instance_start_drain(inst); /* out of memory: drain now, as before */
            return;
        }
        svc->unkeyed = grown;
        svc->cap_unkeyed = cap;
    }
    rsv_instance_ref(inst);
    inst->unkeyed_in_batch = 1;
    svc->unkeyed[svc->n_unkeyed++] = inst;
}

/* ---- self-preservation (service.h rule 5) ---- */

static int instance_keyed_ready(const rsv_instance *inst)
{
    return inst->n_keys > 0 && !inst->draining && inst->sc &&
           rsv_subchannel_state(inst->sc) == RSV_STATE_READY;
}

/* Notes the count of keyed READY instances now; a second without a note
 * had the count of the last one (the count changes only where the picker
 * is published, which notes it). */
static void ready_history_note(rsv_service *svc, size_t ready)
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
    ready_history_note(svc, svc->ready_now);
    size_t max = 0;
    for (size_t i = 0; i < SP_SLOTS; i++)
        if (svc->ready_max[i] > max)
            max = svc->ready_max[i];
    return max;
}

static void stale_hold(rsv_instance *inst)
{
    rsv_service *svc = inst->service;
    inst->stale = 1;
    inst->stale_since_ms = inst->last_change_ms = rsv_loop_now(svc->loop);
    svc->n_stale++;
    rsv_timer_start(inst->stale_timer, svc->opts.self_preservation_max_ms);
    publish_picker(svc);
    notify(svc, inst, RSV_CHANGE_STATE);
}

/* Before the batch's unkeyed instances drain: if their deletions leave
 * fewer keyed READY instances than self_preservation_percent of the most
 * of the last 10 s (a rolling deploy removes one at a time and stays
 * above; publishers that lost etcd see their leases expire together), the
 * ones whose connection is READY stay as STALE.  Returns how many. */
static size_t self_preservation_hold(rsv_service *svc)
{
    uint32_t pct = svc->opts.self_preservation_percent;
    if (!pct || !svc->listed || svc->stopped || svc->draining_all)
        return 0;
    size_t baseline = ready_history_max(svc), kept = 0;
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&svc->instances, &pos, NULL, &value);)
        kept += instance_keyed_ready(value);
    if (kept * 100 >= (uint64_t)pct * baseline)
        return 0;
    size_t held = 0;
    for (size_t i = 0; i < svc->n_unkeyed; i++) {
        rsv_instance *inst = svc->unkeyed[i];
        if (inst->service == svc && inst->n_keys == 0 && !inst->draining && !inst->stale &&
            inst->sc && rsv_subchannel_state(inst->sc) == RSV_STATE_READY) {
            stale_hold(inst);
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

/* Forgets the STALE mark (instance_close: no drain follows). */
static void stale_clear(rsv_instance *inst)
{
    if (!inst->stale)
        return;
    inst->stale = 0;
    inst->service->n_stale--;
    rsv_timer_stop(inst->stale_timer);
}

static void stale_end(rsv_instance *inst, const char *why)
{
    rsv_service *svc = inst->service;
    stale_clear(inst);
    LOG_INFO("service %s: instance %s no longer STALE after %llu ms: %s", svc->name,
             inst->endpoint.address,
             (unsigned long long)(rsv_loop_now(svc->loop) - inst->stale_since_ms), why);
    if (svc->n_stale == 0)
        LOG_INFO("service %s: self-preservation over: no STALE instance left", svc->name);
    publish_picker(svc);
}

/* self_preservation_max_ms passed, or (0 ms) the connection left READY:
 * the instance drains as any removed one. */
static void on_stale_timer(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_instance *inst = arg;
    if (!inst->stale || !inst->service)
        return;
    int ready = inst->sc && rsv_subchannel_state(inst->sc) == RSV_STATE_READY;
    stale_end(inst, ready ? "self_preservation_max_ms passed" : "its connection left READY");
    instance_start_drain(inst);
}

size_t rsv_service_stale_count(const rsv_service *svc)
{
    return svc->n_stale;
}

/* At the end of a batch: drain the instances it left without a key, but
 * those self-preservation keeps. */
static void drain_unkeyed(rsv_service *svc)
{
    self_preservation_hold(svc);
    for (size_t i = 0; i < svc->n_unkeyed; i++) {
        rsv_instance *inst = svc->unkeyed[i];
        inst->unkeyed_in_batch = 0;
        if (inst->service == svc && inst->n_keys == 0 && !svc->stopped && !inst->stale)
            instance_start_drain(inst);
        rsv_instance_unref(inst);
    }
    svc->n_unkeyed = 0;
}

static void remove_key(rsv_service *svc, const char *key)
{
    char *address = rsv_strmap_remove(&svc->keys, key);
    if (!address)
        return;
    svc->changed = 1;
    rsv_instance *inst = rsv_strmap_get(&svc->instances, address);
    free(address);
    if (inst && inst->n_keys > 0 && --inst->n_keys == 0)
        instance_unkeyed(svc, inst);
}

/* Points `key` at the decoded endpoint `ep`. */
static void apply_endpoint(rsv_service *svc, const char *key, const rsv_endpoint *ep)
{
    if (ep->is_delete) {
        remove_key(svc, key);
        return;
    }
    const char *old = rsv_strmap_get(&svc->keys, key);
    if (old && strcmp(old, ep->address) == 0) {
        rsv_instance *inst = rsv_strmap_get(&svc->instances, old);
        if (inst)
            instance_set_endpoint(svc, inst, ep);
        return;
    }
    char *address = strdup(ep->address);
    if (!address)
        return;
    /* Add the new address before dropping the old one, so a key that moves
     * never leaves the service empty for an instant. */
    add_key_to_instance(svc, ep);
    if (old)
        remove_key(svc, key);
    if (rsv_strmap_put(&svc->keys, key, address, NULL) != 0)
        free(address);
    svc->changed = 1;
}

static void put_key(rsv_service *svc, const rsv_kv *kv)
{
    rsv_endpoint ep;
    char why[200];
    if (rsv_registry_decode(svc->opts.format, kv->value, kv->value_len, &ep, why, sizeof(why)) !=
        0) {
        /* Never remove a good instance because of a bad value. */
        svc->counters.decode_errors++;
        LOG_WARN("service %s: skipping key \"%s\": %s", svc->name, kv->key, why);
        return;
    }
    apply_endpoint(svc, kv->key, &ep);
}

int rsv_service_preload(rsv_service *svc, const char *key, const rsv_endpoint *ep)
{
    if (rsv_service_synced(svc))
        return 0; /* etcd spoke already: it wins over any cache */
    apply_endpoint(svc, key, ep);
    return 0;
}

int rsv_service_take_changed(rsv_service *svc)
{
    if (svc->draining_all)
        return 0; /* the drain is not a change: the cache keeps the last listing */
    int changed = svc->changed;
    svc->changed = 0;
    return changed;
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
        if (o) /* NULL for a key that is not UTF-8: it is just not cached */
            json_array_append_new(kvs, o);
    }
    return json_pack("{s:s, s:I, s:o}", "prefix", svc->prefix, "revision",
                     (json_int_t)rsv_service_revision(svc), "kvs", kvs);
}

static void on_put(void *arg, const rsv_kv *kv)
{
    if (!((rsv_service *)arg)->draining_all)
        put_key(arg, kv);
}

static void on_delete(void *arg, const rsv_kv *kv)
{
    if (!((rsv_service *)arg)->draining_all)
        remove_key(arg, kv->key);
}

/* A full listing: apply only what differs, so that no instance flaps. */
static void on_snapshot(void *arg, const rsv_kv *kvs, size_t n, int64_t revision)
{
    rsv_service *svc = arg;
    if (svc->draining_all)
        return; /* stopping: a put must not revive a draining instance */
    batch_begin(svc);
    /* Published even when nothing differs: the first listing changes the
     * empty picker's reason ("not listed" -> "empty"), and picks waiting
     * for it learn that it came (RSV_CHANGE_PICKER). */
    svc->publish_dirty = 1;
    rsv_strmap present = RSV_STRMAP_INIT;
    for (size_t i = 0; i < n; i++)
        rsv_strmap_put(&present, kvs[i].key, (void *)&kvs[i], NULL);
    /* Collect keys to drop first: the map may not change while iterated. */
    size_t n_gone = 0;
    char **gone = calloc(svc->keys.len + 1, sizeof(char *));
    const char *key;
    for (size_t pos = 0; gone && rsv_strmap_next(&svc->keys, &pos, &key, NULL);)
        if (!rsv_strmap_get(&present, key))
            gone[n_gone++] = strdup(key);
    for (size_t i = 0; i < n; i++)
        put_key(svc, &kvs[i]);
    for (size_t i = 0; i < n_gone; i++) {
        if (gone[i])
            remove_key(svc, gone[i]);
        free(gone[i]);
    }
    free(gone);
    rsv_strmap_clear(&present);
    batch_end(svc);
    svc->listed = 1;
}

static void on_batch(void *arg, int begin)
{
    if (begin)
        batch_begin(arg);
    else
        batch_end(arg);
}

/* ---- the picker snapshot ---- */

static int by_address(const void *a, const void *b)
{
    const rsv_instance *x = *(rsv_instance *const *)a;
    const rsv_instance *y = *(rsv_instance *const *)b;
    return strcmp(x->endpoint.address, y->endpoint.address);
}

static int instance_pickable(const rsv_instance *inst)
{
    return !inst->draining && !inst->ejected && inst->sc &&
           rsv_subchannel_state(inst->sc) == RSV_STATE_READY;
}

size_t rsv_service_instance_count(const rsv_service *svc)
{
    return svc->instances.len;
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

/* The reason an empty picker gives, computed here on the engine thread. */
static int empty_reason(const rsv_service *svc, char *why, size_t whylen)
{
    if (svc->stopped) {
        snprintf(why, whylen, "service %s is no longer served", svc->name);
        return RESOLVER_ERR_NO_INSTANCE;
    }
    if (svc->instances.len == 0) {
        if (!rsv_discovery_synced(svc->discovery))
            snprintf(why, whylen, "no instances known for %s yet: etcd prefix \"%s\" not listed",
                     svc->name, svc->prefix);
        else
            snprintf(why, whylen, "no instances known for %s (etcd prefix \"%s\" is empty)",
                     svc->name, svc->prefix);
        return RESOLVER_ERR_NO_INSTANCE;
    }
    size_t counts[5], ejected = 0;
    rsv_service_state_counts(svc, counts);
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&svc->instances, &pos, NULL, &value);)
        ejected += ((rsv_instance *)value)->ejected && !((rsv_instance *)value)->draining;
    static const char *const names[5] = {"IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE",
                                         "DRAINING"};
    int n = snprintf(why, whylen, "none ready for %s:", svc->name);
    for (int s = 0; s < 5 && n > 0 && (size_t)n < whylen; s++)
        if (counts[s])
            n += snprintf(why + n, whylen - (size_t)n, " %zu %s%s", counts[s], names[s],
                          s == RSV_STATE_READY && ejected ? " (ejected)" : "");
    return RESOLVER_ERR_NONE_READY;
}

/* Zone preference: the daemon's zone alone while at least
 * zone_min_ready_percent of its instances there are READY. */
static size_t filter_zone(const rsv_service *svc, rsv_instance **ready, size_t n)
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

/* A batch of changes (a snapshot, a watch message with many events, the
 * graceful stop) is applied as one change: instances left without a key
 * drain only at its end (see instance_unkeyed), and it publishes one
 * picker at its end instead of one per change:
 * each costs O(instances), and 100,000 instances drained one by one took
 * minutes.  Picking threads may see the batch's first changes only when it
 * ends (a removed instance is still pickable meanwhile, as it always was
 * between its removal and the next publish). */
static void batch_begin(rsv_service *svc)
{
    svc->batch++;
}

static void publish_picker_now(rsv_service *svc);

static void batch_end(rsv_service *svc)
{
    if (svc->batch == 1)
        drain_unkeyed(svc); /* still inside: their publishes coalesce too */
    if (--svc->batch == 0 && svc->publish_dirty) {
        svc->publish_dirty = 0;
        publish_picker_now(svc);
    }
}

static void publish_picker(rsv_service *svc)
{
    if (svc->batch > 0)
        svc->publish_dirty = 1;
    else
        publish_picker_now(svc);
}

static void publish_picker_now(rsv_service *svc)
{
    size_t n = 0, keyed_ready = 0;
    rsv_instance **ready = calloc(svc->instances.len + 1, sizeof(*ready));
    void *value;
    for (size_t pos = 0;
         ready && !svc->stopped && rsv_strmap_next(&svc->instances, &pos, NULL, &value);) {
        if (instance_pickable(value))
            ready[n++] = value;
        keyed_ready += instance_keyed_ready(value);
    }
    if (ready)
        ready_history_note(svc, keyed_ready);
    if (ready) {
        n = filter_zone(svc, ready, n);
        qsort(ready, n, sizeof(*ready), by_address);
    }
    rsv_picker *p = rsv_picker_new(svc->opts.policy, svc->opts.choice_count,
                                   svc->opts.max_outstanding, ready, ready ? n : 0);
    free(ready);
    if (!p) {
        static rsv_log_limit lim;
        LOG_ERROR_LIMITED(
            &lim, "service %s: out of memory building the picker; keeping the old one", svc->name);
        return;
    }
    char why[300];
    rsv_picker_set_reason(p, empty_reason(svc, why, sizeof(why)), why);
    rsv_picker_set_ticket_timeout(p, svc->opts.ticket_timeout_ms);
    rsv_picker_set_latency_decay(p, svc->opts.latency_decay_ms);
    void *old = atomic_exchange(&svc->picker, p);
    rsv_hazard_retire(svc->hazard, old, rsv_picker_free);
    notify(svc, NULL, RSV_CHANGE_PICKER);
}

int rsv_service_pick(rsv_service *svc, const char *key, rsv_instance **out,
                     uint64_t *ticket_timeout_ms, char *why, size_t whylen)
{
    atomic_store_explicit(&svc->picked, 1, memory_order_relaxed);
    rsv_picker *p = rsv_hazard_protect(RESOLVER_HAZARD_PICKER, &svc->picker);
    rsv_instance *inst = rsv_picker_pick(p, key);
    if (inst)
        *ticket_timeout_ms = rsv_picker_ticket_timeout(p);
    int rc = 0;
    if (!inst) {
        const char *reason = "out of memory";
        rc = p ? rsv_picker_reason(p, &reason) : RESOLVER_ERR_NOMEM;
        if (p && rsv_picker_size(p) > 0) {
            rc = RESOLVER_ERR_NONE_READY;
            snprintf(why, whylen, "every ready instance of %s is at max_outstanding %u", svc->name,
                     rsv_picker_max_outstanding(p));
        } else {
            snprintf(why, whylen, "%s", reason);
        }
    }
    rsv_hazard_clear(RESOLVER_HAZARD_PICKER);
    if (rc)
        return rc;
    atomic_fetch_add_explicit(&svc->counters.picks, 1, memory_order_relaxed);
    *out = inst;
    return 0;
}

void rsv_service_count_failure(rsv_service *svc)
{
    atomic_fetch_add_explicit(&svc->counters.pick_failures, 1, memory_order_relaxed);
}

uint64_t rsv_service_idle_ms(rsv_service *svc, uint64_t now_ms)
{
    if (atomic_exchange(&svc->picked, 0))
        svc->last_active_ms = now_ms;
    return now_ms - svc->last_active_ms;
}

/* ---- outlier detection: the decisions are outlier.h's ---- */

static size_t ejected_count(const rsv_service *svc)
{
    size_t n = 0;
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&svc->instances, &pos, NULL, &value);)
        n += ((rsv_instance *)value)->ejected;
    return n;
}

/* `service_ejected`: the service's ejected instances now (walking the
 * service for it once per instance would make an interval O(n^2)). */
static rsv_outlier_counts outlier_counts(const rsv_instance *inst, size_t service_ejected)
{
    rsv_outlier_counts c = {
        .consecutive_failures = inst->consecutive_failures,
        .interval_requests = inst->interval_requests,
        .interval_failures = inst->interval_failures,
        .times_ejected = inst->times_ejected,
        .ejected = inst->ejected,
        .service_ejected = service_ejected,
        .service_total = inst->service->instances.len,
    };
    return c;
}

static void apply_outlier(rsv_instance *inst, const rsv_outlier_decision *d)
{
    rsv_service *svc = inst->service;
    if (d->action == RSV_OUTLIER_FORGIVE) {
        inst->times_ejected = d->times_ejected;
        return;
    }
    if (d->action == RSV_OUTLIER_HELD) {
        LOG_DEBUG("service %s: not ejecting %s (%s): %zu already ejected", svc->name,
                  inst->endpoint.address, d->why, d->max_ejected);
        return;
    }
    if (d->action != RSV_OUTLIER_EJECT)
        return;
    uint64_t now = rsv_loop_now(svc->loop);
    inst->times_ejected = d->times_ejected;
    inst->ejected = 1;
    inst->ejected_until_ms = now + d->ms;
    inst->last_change_ms = now;
    svc->counters.ejections++;
    rsv_timer_start(inst->eject_timer, d->ms);
    char what[160];
    snprintf(what, sizeof(what), "ejected for %llu ms: %s", (unsigned long long)d->ms, d->why);
    if (inst->out_state == OUT_IN)
        inst->out_since_ms = now;
    log_out(inst, &inst->eject_log, what);
    publish_picker(svc);
    notify(svc, inst, RSV_CHANGE_STATE);
}

static void record_outcome(rsv_instance *inst, int failed)
{
    inst->interval_requests++;
    if (!failed) {
        inst->consecutive_failures = 0;
        return;
    }
    inst->failures++;
    inst->interval_failures++;
    inst->consecutive_failures++;
    uint32_t limit = inst->service->opts.outlier.consecutive_failures;
    if (!limit || inst->consecutive_failures < limit)
        return; /* no rule trips: spare the walk of ejected_count */
    rsv_outlier_counts c = outlier_counts(inst, ejected_count(inst->service));
    rsv_outlier_decision d = rsv_outlier_after_call(&inst->service->opts, &c);
    apply_outlier(inst, &d);
}

static void on_outlier_interval(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_service *svc = arg;
    size_t n;
    rsv_instance **all = collect_instances(svc, &n);
    size_t ejected = ejected_count(svc);
    for (size_t i = 0; i < n; i++) {
        rsv_instance *inst = all[i];
        rsv_outlier_counts c = outlier_counts(inst, ejected);
        rsv_outlier_decision d = rsv_outlier_after_interval(&svc->opts, &c);
        apply_outlier(inst, &d);
        ejected += d.action == RSV_OUTLIER_EJECT;
        inst->interval_requests = inst->interval_failures = 0;
    }
    free(all);
    rsv_timer_start(t, svc->opts.outlier.interval_ms);
}

void rsv_instance_release(rsv_instance *inst, int failed)
{
    if (atomic_load(&inst->outstanding) > 0)
        atomic_fetch_sub(&inst->outstanding, 1);
    if (inst->service)
        record_outcome(inst, failed);
    else if (failed)
        inst->failures++;
    /* A failed call may be the first sign of a silent drop: ask the
     * connection now instead of at the next keepalive. */
    if (failed && inst->sc)
        rsv_subchannel_probe(inst->sc);
    if (inst->service && inst->draining && !inst->operator_drained && inst->n_keys == 0 &&
        atomic_load(&inst->outstanding) == 0)
        instance_close(inst);
    rsv_instance_unref(inst);
}

void rsv_instance_observe_latency(rsv_instance *inst, uint32_t ms)
{
    if (!inst->service) /* a detached instance's service may be gone; nothing picks it */
        return;
    rsv_histogram_observe(&inst->service->counters.latency, ms);
    rsv_instance_latency_sample(inst, ms, inst->service->opts.latency_decay_ms);
}

int rsv_service_drain(rsv_service *svc, const char *address, int drain)
{
    rsv_instance *inst = rsv_strmap_get(&svc->instances, address);
    if (!inst || (inst->n_keys == 0 && (drain || inst->stale)))
        return RESOLVER_ERR_NOT_FOUND;
    if (!drain && !inst->operator_drained)
        return RESOLVER_ERR_INVALID; /* nothing to undo */
    inst->operator_drained = drain;
    inst->draining = drain || inst->n_keys == 0;
    inst->last_change_ms = rsv_loop_now(svc->loop);
    /* The daemon audits who asked (src/server.c); this is the library's. */
    LOG_DEBUG("service %s: instance %s %s by operator", svc->name, address,
              drain ? "drained" : "undrained");
    publish_picker(svc);
    notify(svc, inst, RSV_CHANGE_STATE);
    return 0;
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

/* ---- object ---- */

rsv_service *rsv_service_new(rsv_loop *loop, rsv_etcd *etcd, rsv_dns *dns,
                             rsv_hazard_domain *hazard, const char *zone, const char *name,
                             const char *prefix, const rsv_service_options *opts,
                             rsv_service_change_cb cb, void *arg)
{
    rsv_service *svc = calloc(1, sizeof(*svc));
    if (!svc)
        return NULL;
    svc->loop = loop;
    svc->etcd = etcd;
    svc->dns = dns;
    svc->hazard = hazard;
    svc->change_cb = cb;
    svc->change_arg = arg;
    svc->name = strdup(name);
    svc->prefix = strdup(prefix);
    svc->zone = strdup(zone ? zone : "");
    atomic_init(&svc->picker, NULL);
    atomic_init(&svc->picked, 1);
    if (!svc->name || !svc->prefix || !svc->zone || rsv_service_options_copy(&svc->opts, opts) != 0)
        goto fail;
    static const rsv_discovery_callbacks callbacks = {on_snapshot, on_put, on_delete, on_batch};
    svc->discovery = rsv_discovery_new(loop, etcd, prefix, &callbacks, svc);
    svc->outlier_timer = rsv_timer_new(loop, on_outlier_interval, svc);
    svc->publish_timer = rsv_timer_new(loop, on_publish_timer, svc);
    if (!svc->discovery || !svc->outlier_timer || !svc->publish_timer)
        goto fail;
    rsv_timer_start(svc->outlier_timer, svc->opts.outlier.interval_ms);
    publish_picker(svc);
    if (!atomic_load(&svc->picker))
        goto fail;
    return svc;
fail:
    rsv_service_del(svc);
    return NULL;
}

void rsv_service_stop(rsv_service *svc)
{
    if (!svc || svc->stopped)
        return;
    rsv_discovery_del(svc->discovery);
    svc->discovery = NULL;
    rsv_timer_del(svc->outlier_timer);
    svc->outlier_timer = NULL;
    rsv_timer_del(svc->publish_timer);
    svc->publish_timer = NULL;
    svc->change_cb = NULL; /* nobody listens to a service being torn down */
    svc->stopped = 1;
    /* Collect first: instance_close removes from the map. */
    size_t n;
    rsv_instance **all = collect_instances(svc, &n);
    batch_begin(svc);
    for (size_t i = 0; i < n; i++)
        instance_close(all[i]);
    batch_end(svc);
    free(all);
    publish_picker(svc);
}

void rsv_service_free(rsv_service *svc)
{
    if (!svc)
        return;
    rsv_service_stop(svc);
    const char *key;
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&svc->keys, &pos, &key, &value);)
        free(value);
    rsv_strmap_clear(&svc->keys);
    rsv_strmap_clear(&svc->instances);
    free(svc->unkeyed); /* empty: every batch ended */
    /* The last picker: the caller guarantees no thread can reach it. */
    rsv_picker_free(atomic_exchange(&svc->picker, NULL));
    rsv_service_options_clear(&svc->opts);
    free(svc->name);
    free(svc->prefix);
    free(svc->zone);
    free(svc);
}

void rsv_service_del(rsv_service *svc)
{
    rsv_service_free(svc);
}

void rsv_service_drain_all(rsv_service *svc)
{
    size_t n;
    svc->draining_all = 1;
    rsv_instance **all = collect_instances(svc, &n);
    batch_begin(svc);
    for (size_t i = 0; i < n; i++)
        if (!all[i]->draining || all[i]->operator_drained) {
            all[i]->operator_drained = 0;
            all[i]->n_keys = 0;
            instance_start_drain(all[i]);
        }
    batch_end(svc);
    free(all);
}

int rsv_service_set_options(rsv_service *svc, const rsv_service_options *opts)
{
    rsv_service_options copy;
    int rc = rsv_service_options_copy(&copy, opts);
    if (rc)
        return rc;
    rsv_service_options_clear(&svc->opts);
    svc->opts = copy;
    /* Connection options reach each subchannel at its next connection. */
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&svc->instances, &pos, NULL, &value);) {
        rsv_instance *inst = value;
        if (inst->sc && rsv_subchannel_set_options(inst->sc, &svc->opts) != 0)
            rc = RESOLVER_ERR_NOMEM;
    }
    publish_picker(svc); /* policy, max_outstanding, ticket_timeout_ms, latency_decay_ms,
                          * zone preference */
    return rc;
}

const char *rsv_service_name(const rsv_service *svc)
{
    return svc->name;
}

const char *rsv_service_prefix(const rsv_service *svc)
{
    return svc->prefix;
}

const rsv_service_options *rsv_service_options_get(const rsv_service *svc)
{
    return &svc->opts;
}

int rsv_service_synced(const rsv_service *svc)
{
    return svc->discovery && rsv_discovery_synced(svc->discovery);
}

int64_t rsv_service_revision(const rsv_service *svc)
{
    return svc->discovery ? rsv_discovery_revision(svc->discovery) : 0;
}

const rsv_service_counters *rsv_service_counters_get(const rsv_service *svc)
{
    return &svc->counters;
}

const rsv_discovery *rsv_service_discovery(const rsv_service *svc)
{
    return svc->discovery;
}

/* ---- introspection ---- */

const char *rsv_instance_state_name(const rsv_instance *inst)
{
    if (inst->draining)
        return "DRAINING";
    if (!inst->sc)
        return "SHUTDOWN";
    if (inst->stale)
        return "STALE";
    return rsv_state_name(rsv_subchannel_state(inst->sc));
}

json_t *rsv_instance_to_json(const rsv_instance *inst, uint64_t now_ms)
{
    const rsv_subchannel_stats *st = inst->sc ? rsv_subchannel_stats_get(inst->sc) : NULL;
    json_t *o =
        json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:f}", "address", inst->endpoint.address, "state",
                  rsv_instance_state_name(inst), "weight", (json_int_t)inst->endpoint.weight,
                  "outstanding", (json_int_t)atomic_load(&inst->outstanding), "picks",
                  (json_int_t)atomic_load(&inst->picks), "failures", (json_int_t)inst->failures,
                  "since_change_s", (double)(now_ms - inst->last_change_ms) / 1000.0);
    if (!o)
        return NULL;
    json_object_set_new(o, "zone", json_string(inst->endpoint.zone));
    json_object_set_new(o, "keys", json_integer(inst->n_keys));
    json_object_set_new(o, "operator_drained", json_boolean(inst->operator_drained));
    json_object_set_new(o, "ejected", json_boolean(inst->ejected));
    json_object_set_new(o, "stale", json_boolean(inst->stale));
    json_object_set_new(o, "times_ejected", json_integer(inst->times_ejected));
    if (st) {
        json_object_set_new(o, "reconnects", json_integer((json_int_t)st->reconnects));
        json_object_set_new(o, "connect_attempts", json_integer((json_int_t)st->connect_attempts));
        json_object_set_new(o, "rtt_ms",
                            st->rtt_last_us >= 0 ? json_real((double)st->rtt_last_us / 1000.0)
                                                 : json_null());
        json_object_set_new(o, "last_error", json_string(st->last_error));
        json_object_set_new(o, "health", json_string(st->health)); /* subchannel health check */
    }
    return o;
}

rsv_instance **rsv_service_instances_sorted(const rsv_service *svc, size_t *n)
{
    rsv_instance **all = collect_instances(svc, n);
    if (all)
        qsort(all, *n, sizeof(*all), by_address);
    return all;
}

json_t *rsv_service_instances_json(const rsv_service *svc, uint64_t now_ms)
{
    size_t n;
    rsv_instance **all = rsv_service_instances_sorted(svc, &n);
    json_t *arr = json_array();
    if (!all || !arr) {
        free(all);
        json_decref(arr);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, rsv_instance_to_json(all[i], now_ms));
    free(all);
    return arr;
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
