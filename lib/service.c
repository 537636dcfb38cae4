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
 * engine thread, so picking threads never read it), rebuilt on the engine
 * thread at the end of a loop iteration that changed one of those
 * (service.h rule 6: changes are rare, picks are not) and swapped in
 * atomically; replaced snapshots are freed through hazard pointers once no
 * picking thread holds them.  Self-preservation is in selfpres.c, the
 * views (JSON, counts) in service_view.c, the outlier rules in outlier.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "clock.h"
#include "log.h"
#include "outlier.h"
#include "picker.h"
#include "service.h"
#include "service_priv.h"

static void log_back(rsv_instance *inst, const char *how);
static void batch_begin(rsv_service *svc);
static void batch_end(rsv_service *svc);

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

void rsv_service_notify(rsv_service *svc, const rsv_instance *inst, rsv_change what)
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
    rsv_sp_clear(inst);
    if (inst->sc) {
        rsv_subchannel_del(inst->sc);
        inst->sc = NULL;
    }
    LOG_INFO("service %s: instance %s closed", svc->name, inst->endpoint.address);
    rsv_service_notify(svc, inst, RSV_CHANGE_CLOSED);
    inst->service = NULL;
    rsv_service_picker_dirty(svc);
    rsv_instance_unref(inst);
}

/* Self-preservation (selfpres.c) changes the STALE marks; what follows
 * from them for picks and observers is done here. */
static void sp_end(rsv_instance *inst, const char *why)
{
    rsv_sp_end(inst, why);
    rsv_service_picker_dirty(inst->service);
}

static void on_held_stale(rsv_instance *inst)
{
    rsv_service_picker_dirty(inst->service);
    rsv_service_notify(inst->service, inst, RSV_CHANGE_STATE);
}

static void on_stale_timeout(rsv_loop *loop, rsv_timer *t, void *arg)
{
    (void)loop;
    (void)t;
    rsv_instance *inst = arg;
    if (!rsv_sp_expire(inst))
        return;
    rsv_service_picker_dirty(inst->service);
    rsv_service_start_drain(inst);
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
    rsv_service_picker_dirty(svc);
    rsv_service_notify(svc, inst, RSV_CHANGE_STATE);
}

/* A connection's state changed.  A picker costs O(instances): a small
 * service rebuilds at the end of the iteration like any change, but the
 * first sync of a big one (COALESCE_MIN instances or more) would rebuild
 * once per iteration while its subchannels connect (each goes IDLE ->
 * CONNECTING -> ... and their outcomes arrive a few per iteration), O(N^2)
 * in all.  So a big service's state changes wait 10x the last rebuild's
 * cost (rebuilds take at most ~10 % of the loop; a pick may see a state
 * that old), unless another change has the picker rebuilt first. */
#define COALESCE_MIN 1024
static void picker_dirty_state(rsv_service *svc)
{
    if (!svc->settle_timer || svc->instances.len < COALESCE_MIN)
        rsv_service_picker_dirty(svc);
    else if (!rsv_timer_active(svc->settle_timer) && !rsv_sleep_hook_armed(svc->publish_hook))
        rsv_timer_start(svc->settle_timer, svc->publish_cost_us / 100);
}

static void on_settle_timer(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_service_picker_dirty(arg);
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
    picker_dirty_state(svc);
    rsv_service_notify(svc, inst, RSV_CHANGE_STATE);
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
    inst->stale_timer = rsv_timer_new(svc->loop, on_stale_timeout, inst);
    inst->sc = rsv_subchannel_new(svc->loop, svc->dns, ep->host, ep->port, &svc->opts,
                                  on_subchannel_state, inst);
    if (!inst->drain_timer || !inst->eject_timer || !inst->stale_timer || !inst->sc ||
        rsv_strmap_put(&svc->instances, ep->address, inst, NULL) != 0) {
        rsv_instance_unref(inst);
        return NULL;
    }
    LOG_INFO("service %s: instance %s added", svc->name, ep->address);
    rsv_service_notify(svc, inst, RSV_CHANGE_ADDED);
    rsv_subchannel_connect(inst->sc);
    return inst;
}

void rsv_service_start_drain(rsv_instance *inst)
{
    rsv_service *svc = inst->service;
    if (inst->stale)
        sp_end(inst, "the service is stopping");
    inst->draining = 1;
    inst->last_change_ms = rsv_loop_now(svc->loop);
    rsv_service_picker_dirty(svc);
    unsigned outstanding = atomic_load(&inst->outstanding);
    LOG_INFO("service %s: instance %s removed; draining %u outstanding picks", svc->name,
             inst->endpoint.address, outstanding);
    rsv_service_notify(svc, inst, RSV_CHANGE_REMOVED);
    if (outstanding == 0)
        instance_close(inst);
    else
        rsv_timer_start(inst->drain_timer, svc->opts.drain_timeout_ms);
}

/* ---- keys ---- */

/* A value naming an instance's address changed its weight, zone, tls or
 * metadata (the address itself never changes).  The picker's tables
 * (weights) and the zone filter were built from the old values: publish
 * again. */
static void instance_set_endpoint(rsv_service *svc, rsv_instance *inst, const rsv_endpoint *ep)
{
    rsv_endpoint *cur = &inst->endpoint;
    rsv_metadata *meta = atomic_load(&ep->metadata);
    int meta_changed = !rsv_metadata_equal(atomic_load(&cur->metadata), meta);
    int rest_changed =
        cur->weight != ep->weight || cur->tls != ep->tls || strcmp(cur->zone, ep->zone) != 0;
    if (!meta_changed && !rest_changed)
        return;
    LOG_INFO("service %s: instance %s now has weight %u, zone \"%s\"%s", svc->name, cur->address,
             ep->weight, ep->zone, meta_changed ? ", new metadata" : "");
    if (meta_changed) {
        /* Picks made until now point at the old one: retired, not freed
         * (instance.h rule 5). */
        rsv_metadata *old = atomic_exchange(&cur->metadata, rsv_metadata_ref(meta));
        if (old)
            rsv_hazard_retire(svc->hazard, old, rsv_metadata_unref_void);
    }
    cur->weight = ep->weight;
    cur->tls = ep->tls;
    memcpy(cur->zone, ep->zone, sizeof(cur->zone));
    inst->last_change_ms = rsv_loop_now(svc->loop);
    svc->changed = 1; /* cache_file keeps weight and zone too */
    if (rest_changed)
        rsv_service_picker_dirty(svc);
    rsv_service_notify(svc, inst, RSV_CHANGE_STATE);
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
        rsv_service_picker_dirty(svc);
        rsv_service_notify(svc, inst, RSV_CHANGE_ADDED);
    } else if (inst->stale) {
        /* Listed again: an ordinary instance, on the same connection. */
        sp_end(inst, "etcd lists it again");
        inst->last_change_ms = rsv_loop_now(svc->loop);
        rsv_service_notify(svc, inst, RSV_CHANGE_STATE);
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
            rsv_service_start_drain(inst); /* out of memory: drain now, as before */
            return;
        }
        svc->unkeyed = grown;
        svc->cap_unkeyed = cap;
    }
    rsv_instance_ref(inst);
    inst->unkeyed_in_batch = 1;
    svc->unkeyed[svc->n_unkeyed++] = inst;
}

/* At the end of a batch: drain the instances it left without a key, but
 * those self-preservation keeps. */
static void drain_unkeyed(rsv_service *svc)
{
    rsv_sp_hold(svc, on_held_stale);
    for (size_t i = 0; i < svc->n_unkeyed; i++) {
        rsv_instance *inst = svc->unkeyed[i];
        inst->unkeyed_in_batch = 0;
        if (inst->service == svc && inst->n_keys == 0 && !svc->stopped && !inst->stale)
            rsv_service_start_drain(inst);
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
    rsv_endpoint_clear(&ep);
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
    rsv_service_picker_dirty(svc);
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

static int instance_pickable(const rsv_instance *inst)
{
    return !inst->draining && !inst->ejected && inst->sc &&
           rsv_subchannel_state(inst->sc) == RSV_STATE_READY;
}

/* The reason an empty picker gives, computed here on the engine thread. */
static int empty_reason(const rsv_service *svc, char *why, size_t whylen)
{
    if (svc->stopped) {
        snprintf(why, whylen, "service %s is no longer served", svc->name);
        return RESOLVER_ERR_NO_INSTANCE;
    }
    if (svc->instances.len == 0) {
        if (!rsv_service_synced(svc))
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
    int n = snprintf(why, whylen, "none ready for %s:", svc->name);
    for (int s = 0; s < 5 && n > 0 && (size_t)n < whylen; s++)
        if (counts[s])
            n += snprintf(why + n, whylen - (size_t)n, " %zu %s%s", counts[s],
                          /* counts' SHUTDOWN slot holds the draining ones */
                          rsv_shown_name(s == RSV_STATE_SHUTDOWN ? RSV_SHOWN_DRAINING : s),
                          s == RSV_STATE_READY && ejected ? " (ejected)" : "");
    return RESOLVER_ERR_NONE_READY;
}

/* A batch of changes (a snapshot, a watch message: one etcd revision, the
 * graceful stop) is applied as one change: instances left without a key
 * drain only at its end (see instance_unkeyed).  The picker is rebuilt
 * once after it as after any change (picker_dirty). */
static void batch_begin(rsv_service *svc)
{
    svc->batch++;
}

static void batch_end(rsv_service *svc)
{
    if (svc->batch == 1)
        drain_unkeyed(svc);
    svc->batch--;
}

static void publish_picker_now(rsv_service *svc);

/* Something a pick depends on changed (an instance's state, drain,
 * ejection, weight, the set, the options): the picker is rebuilt once, at
 * the end of the loop iteration (loop.h rule 6), however many changes the
 * iteration made (100,000 instances drained one by one used to cost
 * minutes).  Picking threads see the iteration's changes when it ends (a
 * removed instance is still pickable meanwhile, as it always was between
 * its removal and the next publish). */
void rsv_service_picker_dirty(rsv_service *svc)
{
    if (svc->publish_hook)
        rsv_sleep_hook_arm(svc->publish_hook);
}

static void on_publish_hook(rsv_loop *loop, rsv_sleep_hook *hook, void *arg)
{
    rsv_service *svc = arg;
    uint64_t start = rsv_clock_us();
    publish_picker_now(svc);
    svc->publish_cost_us = rsv_clock_us() - start; /* picker_dirty_state's delay */
}

static void publish_picker_now(rsv_service *svc)
{
    rsv_timer_stop(svc->settle_timer); /* the changes it waits for are in this picker */
    rsv_sleep_hook_disarm(svc->publish_hook);
    size_t n = 0, keyed_ready = 0;
    rsv_instance **ready = calloc(svc->instances.len + 1, sizeof(*ready));
    void *value;
    for (size_t pos = 0;
         ready && !svc->stopped && rsv_strmap_next(&svc->instances, &pos, NULL, &value);) {
        if (instance_pickable(value))
            ready[n++] = value;
        keyed_ready += rsv_instance_keyed_ready(value);
    }
    if (ready)
        rsv_sp_note_ready(svc, keyed_ready);
    if (ready) {
        n = rsv_service_filter_zone(svc, ready, n);
        qsort(ready, n, sizeof(*ready), rsv_instance_by_address);
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
    rsv_service_notify(svc, NULL, RSV_CHANGE_PICKER);
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
    rsv_service_picker_dirty(svc);
    rsv_service_notify(svc, inst, RSV_CHANGE_STATE);
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
        return; /* no rule trips: spare the walk of rsv_service_ejected_count */
    rsv_outlier_counts c = outlier_counts(inst, rsv_service_ejected_count(inst->service));
    rsv_outlier_decision d = rsv_outlier_after_call(&inst->service->opts, &c);
    apply_outlier(inst, &d);
}

static void on_outlier_interval(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_service *svc = arg;
    size_t n;
    rsv_instance **all = rsv_service_collect(svc, &n);
    size_t ejected = rsv_service_ejected_count(svc);
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
    rsv_service_picker_dirty(svc);
    rsv_service_notify(svc, inst, RSV_CHANGE_STATE);
    return 0;
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
    if (etcd)
        svc->discovery =
            rsv_discovery_new(loop, etcd, prefix, rsv_service_discovery_callbacks(), svc);
    svc->outlier_timer = rsv_timer_new(loop, on_outlier_interval, svc);
    svc->settle_timer = rsv_timer_new(loop, on_settle_timer, svc);
    svc->publish_hook = rsv_sleep_hook_new(loop, on_publish_hook, svc);
    if ((etcd && !svc->discovery) || !svc->outlier_timer || !svc->settle_timer ||
        !svc->publish_hook)
        goto fail;
    rsv_timer_start(svc->outlier_timer, svc->opts.outlier.interval_ms);
    publish_picker_now(svc); /* the first picker exists from the start */
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
    rsv_timer_del(svc->settle_timer);
    svc->settle_timer = NULL;
    rsv_sleep_hook_del(svc->publish_hook);
    svc->publish_hook = NULL;
    svc->change_cb = NULL; /* nobody listens to a service being torn down */
    svc->stopped = 1;
    /* Collect first: instance_close removes from the map. */
    size_t n;
    rsv_instance **all = rsv_service_collect(svc, &n);
    batch_begin(svc);
    for (size_t i = 0; i < n; i++)
        instance_close(all[i]);
    batch_end(svc);
    free(all);
    publish_picker_now(svc); /* now: picks fail from the return on */
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
    rsv_instance **all = rsv_service_collect(svc, &n);
    batch_begin(svc);
    for (size_t i = 0; i < n; i++)
        if (!all[i]->draining || all[i]->operator_drained) {
            all[i]->operator_drained = 0;
            all[i]->n_keys = 0;
            rsv_service_start_drain(all[i]);
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
    rsv_service_picker_dirty(svc); /* policy, max_outstanding, ticket_timeout_ms, latency_decay_ms,
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
    if (!svc->discovery) /* stopped, or fed by its creator (no etcd): its first snapshot */
        return !svc->etcd && !svc->stopped && svc->listed;
    return rsv_discovery_synced(svc->discovery);
}

const rsv_discovery_callbacks *rsv_service_discovery_callbacks(void)
{
    static const rsv_discovery_callbacks callbacks = {on_snapshot, on_put, on_delete, on_batch};
    return &callbacks;
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
