/*
 * tickets.c - picks and their tickets: issued by a pick on any thread,
 * tracked by the loop thread in per-timeout FIFO queues, released by done,
 * by their owner going, or as leaked when their timeout passes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine_internal.h"
#include "log.h"

/* ---- tickets ---- */

/* Tickets expire in the order they were taken when they share a timeout,
 * so each distinct ticket_timeout_ms gets a FIFO queue with one timer for
 * its head: O(1) per ticket instead of a heap entry each. */
struct rsv_timeout_queue {
    resolver_engine *engine;
    uint64_t timeout_ms;
    rsv_ticket *head, *tail;
    rsv_timer *timer;
    struct rsv_timeout_queue *next;
};

static void queue_arm(rsv_timeout_queue *q)
{
    if (!q->head) {
        rsv_timer_stop(q->timer);
        return;
    }
    uint64_t now = rsv_loop_now(q->engine->loop);
    rsv_timer_start(q->timer, q->head->deadline > now ? q->head->deadline - now : 0);
}

static void queue_unlink(rsv_ticket *t)
{
    rsv_timeout_queue *q = t->queue;
    int was_head = q->head == t;
    if (t->q_prev)
        t->q_prev->q_next = t->q_next;
    else
        q->head = t->q_next;
    if (t->q_next)
        t->q_next->q_prev = t->q_prev;
    else
        q->tail = t->q_prev;
    t->queue = NULL;
    if (was_head)
        queue_arm(q);
}

static void ticket_free(resolver_engine *e, rsv_ticket *t, int failed)
{
    rsv_u64map_remove(&e->tickets, t->id);
    if (t->owner) {
        if (t->owner_prev)
            t->owner_prev->owner_next = t->owner_next;
        else
            t->owner->priv = t->owner_next;
        if (t->owner_next)
            t->owner_next->owner_prev = t->owner_prev;
        t->owner->count--;
    }
    if (t->queue)
        queue_unlink(t);
    rsv_instance_release(t->instance, failed);
    rsv_metadata_unref(t->metadata);
    free(t);
}

/* One limiter for all: a leaking client leaks many, and 500 leaks must not
 * be 500 lines; the line that gets through names one of them. */
static void log_leak(const rsv_ticket *t)
{
    static rsv_log_limit lim;
    char who[64] = "in-process (no peer)";
    if (t->pid >= 0)
        snprintf(who, sizeof(who), "uid %ld pid %ld", t->uid, t->pid);
    LOG_WARN_LIMITED(&lim,
                     "service %s: ticket %" PRIu64 " (instance %s) picked by %s was not reported "
                     "done within %" PRIu64 " ms; released as leaked",
                     t->service, t->id, t->instance->endpoint.address, who, t->timeout_ms);
}

static void on_queue_timer(rsv_loop *loop, rsv_timer *timer, void *arg)
{
    rsv_timeout_queue *q = arg;
    resolver_engine *e = q->engine;
    uint64_t now = rsv_loop_now(loop);
    while (q->head && q->head->deadline <= now) {
        rsv_ticket *t = q->head;
        e->tickets_leaked++;
        log_leak(t);
        ticket_free(e, t, 0); /* re-arms the queue */
    }
    queue_arm(q);
}

static rsv_timeout_queue *queue_for(resolver_engine *e, uint64_t timeout_ms)
{
    for (rsv_timeout_queue *q = e->queues; q; q = q->next)
        if (q->timeout_ms == timeout_ms)
            return q;
    rsv_timeout_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->engine = e;
    q->timeout_ms = timeout_ms;
    q->timer = rsv_timer_new(e->loop, on_queue_timer, q);
    if (!q->timer) {
        free(q);
        return NULL;
    }
    q->next = e->queues;
    e->queues = q;
    return q;
}

/* Loop thread: starts tracking a ticket made by ticket_alloc. */
void rsv_ticket_track(resolver_engine *e, rsv_ticket *t)
{
    rsv_timeout_queue *q = queue_for(e, t->timeout_ms);
    if (!q || rsv_u64map_put(&e->tickets, t->id, t) != 0) {
        /* Cannot track it: release at once rather than leak the pick. */
        static rsv_log_limit lim;
        LOG_ERROR_LIMITED(&lim, "out of memory tracking ticket %" PRIu64 "; released", t->id);
        rsv_instance_release(t->instance, 0);
        rsv_metadata_unref(t->metadata);
        free(t);
        return;
    }
    t->deadline = rsv_loop_now(e->loop) + t->timeout_ms;
    t->queue = q;
    t->q_prev = q->tail;
    if (q->tail)
        q->tail->q_next = t;
    else
        q->head = t;
    q->tail = t;
    if (q->head == t)
        queue_arm(q);
    resolver_owner *owner = t->owner;
    if (owner) {
        rsv_ticket *head = owner->priv;
        t->owner_next = head;
        if (head)
            head->owner_prev = t;
        owner->priv = t;
        owner->count++;
    }
}

/* Any thread: a ticket for a pick, numbered from an atomic counter. */
static rsv_ticket *ticket_alloc(resolver_engine *e, const char *service, rsv_instance *inst,
                                uint64_t timeout_ms, resolver_owner *owner)
{
    size_t len = strlen(service);
    rsv_ticket *t = calloc(1, sizeof(*t) + len + 1);
    if (!t)
        return NULL;
    t->id = atomic_fetch_add(&e->ticket_seq, 1) + 1;
    t->engine = e;
    t->instance = inst;
    t->owner = owner;
    t->timeout_ms = timeout_ms;
    t->uid = owner ? owner->uid : -1;
    t->pid = owner ? owner->pid : -1;
    memcpy(t->service, service, len + 1);
    return t;
}

void resolver_engine_release_owner(resolver_engine *e, resolver_owner *owner)
{
    if (!e || !owner)
        return;
    while (owner->priv)
        ticket_free(e, owner->priv, 0);
}

int resolver_engine_ticket_owner(resolver_engine *e, uint64_t id, resolver_owner **owner)
{
    if (!e || !owner)
        return RESOLVER_ERR_INVALID;
    rsv_ticket *t = rsv_u64map_get(&e->tickets, id);
    if (!t)
        return RESOLVER_ERR_NOT_FOUND;
    *owner = t->owner;
    return 0;
}

/* Every ticket once, along the timeout queues (each tracked ticket is on
 * exactly one): taking "any" ticket from the map again and again rescanned
 * it from slot 0 each time, quadratic (200k tickets took 29 s). */
void rsv_tickets_free_all(resolver_engine *e)
{
    rsv_u64map_clear(&e->tickets);
    for (rsv_timeout_queue *q = e->queues; q; q = q->next) {
        while (q->head) {
            rsv_ticket *t = q->head;
            q->head = t->q_next;
            t->queue = NULL; /* no queue unlink, no timer re-arm per ticket */
            t->owner = NULL; /* owners may already be gone */
            ticket_free(e, t, 0);
        }
        q->tail = NULL;
        rsv_timer_stop(q->timer);
    }
    while (e->queues) {
        rsv_timeout_queue *q = e->queues;
        e->queues = q->next;
        rsv_timer_del(q->timer);
        free(q);
    }
}

/* ---- picking ---- */

static int service_is_fresh(resolver_engine *e, rsv_service *svc)
{
    if (!rsv_service_synced(svc))
        return 1;
    rsv_state s = rsv_service_state(svc);
    return rsv_service_instance_count(svc) > 0 &&
           (s == RSV_STATE_CONNECTING || s == RSV_STATE_IDLE);
}

/* The instance's metadata with a reference for a ticket.  Off the engine
 * thread the pointer is published in a hazard slot before the reference is
 * taken: the engine may be swapping it (instance.h rule 5). */
static rsv_metadata *metadata_take(rsv_instance *inst, int on_loop)
{
    rsv_metadata *m = atomic_load(&inst->endpoint.metadata);
    if (!m || on_loop)
        return rsv_metadata_ref(m);
    for (;;) {
        if (rsv_hazard_set(RESOLVER_HAZARD_METADATA, m) != 0)
            return NULL; /* this thread cannot register: no metadata rather than a race */
        rsv_metadata *again = atomic_load(&inst->endpoint.metadata);
        if (again == m)
            break;
        if (!(m = again)) {
            rsv_hazard_clear(RESOLVER_HAZARD_METADATA);
            return NULL;
        }
    }
    rsv_metadata_ref(m);
    rsv_hazard_clear(RESOLVER_HAZARD_METADATA);
    return m;
}

/* The pick itself: `svc` is protected or loop-owned.  0 or an error. */
static int pick_from(resolver_engine *e, rsv_service *svc, const char *key, resolver_owner *owner,
                     resolver_pick_result *out, char *why, size_t whylen, int on_loop)
{
    rsv_instance *inst;
    uint64_t ticket_timeout_ms;
    int rc = rsv_service_pick(svc, key, &inst, &ticket_timeout_ms, why, whylen);
    if (rc != 0)
        return rc;
    rsv_ticket *t = ticket_alloc(e, rsv_service_name(svc), inst, ticket_timeout_ms, owner);
    if (!t) {
        /* Undo by hand: release (outlier, drain) is the loop's business. */
        atomic_fetch_sub(&inst->outstanding, 1);
        if (on_loop)
            rsv_instance_unref(inst);
        snprintf(why, whylen, "out of memory");
        return RESOLVER_ERR_NOMEM;
    }
    /* Pointers into the instance, which the ticket's reference keeps (its
     * endpoint never changes after creation). */
    out->address = inst->endpoint.address;
    out->zone = inst->endpoint.zone;
    out->weight = inst->endpoint.weight;
    out->tls = inst->endpoint.tls;
    t->metadata = metadata_take(inst, on_loop);
    out->metadata = t->metadata ? t->metadata->text : NULL;
    out->ticket = t->id;
    if (on_loop) {
        rsv_ticket_track(e, t);
    } else {
        rsv_engine_msg *m = calloc(1, sizeof(*m));
        if (!m) {
            /* Memory is gone; the ticket is lost to the engine but the pick
             * stands (the instance reference leaks: better than a crash). */
            free(t);
            return 0;
        }
        m->type = RSV_MSG_TICKET;
        m->ticket = t;
        rsv_inbox_post(e, m);
    }
    return 0;
}

/* Off the loop thread: the answer to a pick of a service the directory
 * does not hold (its name already checked).  Allocates nothing unless it
 * posts the name's one discover request. */
static int pick_unknown(resolver_engine *e, const char *service, char *why, size_t whylen)
{
    static rsv_log_limit refused_log;
    if (atomic_load(&e->on_demand_full)) {
        int rc = rsv_on_demand_refused(service, atomic_load(&e->on_demand_max_seen), why, whylen);
        LOG_WARN_LIMITED(&refused_log, "%s", why);
        return rc;
    }
    size_t slot;
    int claimed = rsv_discover_claim(e, service, &slot);
    if (claimed > 0) {
        size_t len = strlen(service) + 1;
        rsv_engine_msg *m = calloc(1, sizeof(*m) + len);
        if (m) {
            m->type = RSV_MSG_DISCOVER;
            m->id = slot;
            memcpy(m->name, service, len);
            rsv_inbox_post(e, m);
        } else {
            rsv_discover_release(e, slot);
            claimed = -1;
        }
    }
    if (claimed < 0) { /* the next pick tries again */
        snprintf(why, whylen, "service %s: not known yet; too many services being discovered",
                 service);
        return RESOLVER_ERR_NO_INSTANCE;
    }
    snprintf(why, whylen, "service %s: discovery started; no instances known yet", service);
    return RESOLVER_ERR_NO_INSTANCE;
}

int rsv_engine_pick_core(resolver_engine *e, const char *service, const char *key,
                         resolver_owner *owner, resolver_pick_result *out, char *why, size_t whylen,
                         int *fresh, int count)
{
    int err = 0;
    if (fresh)
        *fresh = 0;
    if (!service || !*service || !out) {
        snprintf(why, whylen, "a service name is required");
        return RESOLVER_ERR_INVALID;
    }
    if (rsv_check_service_name(service, why, whylen) != 0)
        return RESOLVER_ERR_INVALID;
    if (atomic_load(&e->shutting_down)) {
        snprintf(why, whylen, "the engine is shutting down");
        return RESOLVER_ERR_CLOSED;
    }
    if (!rsv_on_loop_thread(e)) {
        rsv_service *svc = rsv_directory_lookup(e, service);
        if (!svc)
            return pick_unknown(e, service, why, whylen);
        int rc = pick_from(e, svc, key, owner, out, why, whylen, 0);
        if (rc && count)
            rsv_service_count_failure(svc);
        rsv_hazard_clear(RESOLVER_HAZARD_SERVICE);
        if (!rc || count)
            atomic_fetch_add(rc ? &e->pick_failures : &e->picks, 1);
        return rc;
    }
    rsv_service *svc = rsv_find_or_discover(e, service, why, whylen, &err);
    if (!svc)
        return err;
    int rc = pick_from(e, svc, key, owner, out, why, whylen, 1);
    if (rc != 0) {
        /* A caller that may retry (fresh != NULL) and will, is not failing
         * yet: count only answers that reach the client, once each (the
         * engine's and the service's counters alike). */
        if (fresh)
            *fresh = service_is_fresh(e, svc);
        if (count && (!fresh || !*fresh)) {
            atomic_fetch_add(&e->pick_failures, 1);
            rsv_service_count_failure(svc);
        }
        return rc;
    }
    atomic_fetch_add(&e->picks, 1);
    return 0;
}

int rsv_engine_pick_owned(resolver_engine *e, const char *service, const char *key,
                          resolver_owner *owner, resolver_pick_result *out, char *why,
                          size_t whylen, int *fresh)
{
    return rsv_engine_pick_core(e, service, key, owner, out, why, whylen, fresh, 1);
}

void rsv_engine_count_failure(resolver_engine *e, const char *service)
{
    atomic_fetch_add(&e->pick_failures, 1);
    if (!rsv_on_loop_thread(e)) {
        rsv_service *svc = rsv_directory_lookup(e, service);
        if (svc)
            rsv_service_count_failure(svc);
        rsv_hazard_clear(RESOLVER_HAZARD_SERVICE);
        return;
    }
    rsv_service *svc = rsv_strmap_get(&e->services, service);
    if (svc)
        rsv_service_count_failure(svc);
}

int resolver_engine_pick(resolver_engine *e, const char *service, const char *key,
                         resolver_pick_result *out)
{
    char why[256];
    if (!e)
        return RESOLVER_ERR_INVALID;
    return rsv_engine_pick_owned(e, service, key, NULL, out, why, sizeof(why), NULL);
}

int resolver_engine_pick_ex(resolver_engine *e, const char *service,
                            const resolver_pick_options *opts, resolver_pick_result *out, char *why,
                            size_t whylen)
{
    char buf[256];
    if (!why || !whylen) {
        why = buf;
        whylen = sizeof(buf);
    }
    if (!e) {
        snprintf(why, whylen, "no engine");
        return RESOLVER_ERR_INVALID;
    }
    if (opts && opts->owner && !rsv_on_loop_thread(e)) {
        snprintf(why, whylen, "a pick with an owner is for the engine thread");
        return RESOLVER_ERR_INVALID;
    }
    return rsv_engine_pick_owned(e, service, opts ? opts->key : NULL, opts ? opts->owner : NULL,
                                 out, why, whylen, NULL);
}

/* rsv_inbox_take's early step for a done on the loop thread: tracks a
 * ticket on the way, leaves the rest for the drain. */
static int track_early(resolver_engine *e, rsv_engine_msg *m)
{
    if (m->type != RSV_MSG_TICKET)
        return 0;
    rsv_ticket_track(e, m->ticket);
    return 1;
}

int rsv_done_on_loop(resolver_engine *e, uint64_t ticket, int failed, uint32_t latency_ms)
{
    rsv_ticket *t = rsv_u64map_get(&e->tickets, ticket);
    if (!t)
        return RESOLVER_ERR_NOT_FOUND;
    e->tickets_released++;
    if (latency_ms != RESOLVER_LATENCY_UNKNOWN)
        rsv_instance_observe_latency(t->instance, latency_ms);
    ticket_free(e, t, failed);
    return 0;
}

int resolver_engine_done(resolver_engine *e, uint64_t ticket, resolver_outcome outcome,
                         uint32_t latency_ms)
{
    if (!e || (outcome != RESOLVER_OUTCOME_OK && outcome != RESOLVER_OUTCOME_FAILED))
        return RESOLVER_ERR_INVALID;
    int failed = outcome == RESOLVER_OUTCOME_FAILED;
    if (rsv_on_loop_thread(e)) {
        int rc = rsv_done_on_loop(e, ticket, failed, latency_ms);
        if (rc == RESOLVER_ERR_NOT_FOUND && ticket != 0 && ticket <= atomic_load(&e->ticket_seq)) {
            /* Issued, but perhaps picked on another thread and still in
             * the inbox: track what is there, then look again. */
            rsv_inbox_take(e, track_early);
            rc = rsv_done_on_loop(e, ticket, failed, latency_ms);
        }
        return rc;
    }
    /* From another thread the ticket table cannot be consulted without a
     * lock: a ticket never issued is refused here, one already released is
     * counted by the loop thread. */
    if (ticket == 0 || ticket > atomic_load(&e->ticket_seq))
        return RESOLVER_ERR_NOT_FOUND;
    rsv_engine_msg *m = calloc(1, sizeof(*m));
    if (!m)
        return RESOLVER_ERR_NOMEM;
    m->type = RSV_MSG_DONE;
    m->id = ticket;
    m->failed = failed;
    m->latency_ms = latency_ms;
    rsv_inbox_post(e, m);
    return 0;
}
