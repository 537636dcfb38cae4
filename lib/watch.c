/*
 * watch.c - what the engine tells its host: typed events of instances and
 * services (resolver_engine_watch), and the picks that wait for an
 * instance to become pickable (resolver_engine_pick_async on the engine
 * thread, resolver_engine_pick_wait on any other).
 *
 * Services report every change through one callback (rsv_engine_on_change,
 * given to each service by directory.c).  An instance's change becomes an
 * event for the watches; RSV_CHANGE_PICKER ("a new picker is published":
 * an instance became pickable or stopped being, the first listing came)
 * wakes the waiting picks of the service, and the first one after the
 * service's first listing is its SERVICE_SYNCED event.  Those callbacks run
 * inside the service's update, so waiting picks are retried from their own
 * timers, never from there.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "clock.h"
#include "engine_internal.h"
#include "log.h"

/* A wait on max_outstanding (RESOLVER_ERR_LIMIT) ends with a done, which
 * publishes no picker: such a wait looks again this often. */
#define LIMIT_RECHECK_MS 100

struct resolver_watch {
    resolver_engine *engine;
    char *service; /* NULL: every service */
    resolver_watch_fn fn;
    void *arg;
    int dead; /* freed during a dispatch: unlinked after it */
    resolver_watch *next;
};

struct resolver_pick_waiter {
    resolver_engine *engine;
    char *service, *key;
    resolver_owner *owner;
    unsigned flags;
    uint64_t deadline;
    resolver_pick_fn fn;
    void *arg;
    rsv_timer *timer;
    resolver_pick_waiter *prev, *next;
};

resolver_state rsv_instance_public_state(const rsv_instance *inst)
{
    if (inst->draining)
        return RESOLVER_STATE_DRAINING;
    if (!inst->sc)
        return RESOLVER_STATE_SHUTDOWN;
    if (inst->stale)
        return RESOLVER_STATE_STALE;
    switch (rsv_subchannel_state(inst->sc)) {
    case RSV_STATE_IDLE:
        return RESOLVER_STATE_IDLE;
    case RSV_STATE_CONNECTING:
        return RESOLVER_STATE_CONNECTING;
    case RSV_STATE_READY:
        return RESOLVER_STATE_READY;
    case RSV_STATE_TRANSIENT_FAILURE:
        return RESOLVER_STATE_TRANSIENT_FAILURE;
    case RSV_STATE_SHUTDOWN:
        break;
    }
    return RESOLVER_STATE_SHUTDOWN;
}

const char *resolver_state_name(resolver_state state)
{
    switch (state) {
    case RESOLVER_STATE_IDLE:
        return "IDLE";
    case RESOLVER_STATE_CONNECTING:
        return "CONNECTING";
    case RESOLVER_STATE_READY:
        return "READY";
    case RESOLVER_STATE_TRANSIENT_FAILURE:
        return "TRANSIENT_FAILURE";
    case RESOLVER_STATE_SHUTDOWN:
        return "SHUTDOWN";
    case RESOLVER_STATE_DRAINING:
        return "DRAINING";
    case RESOLVER_STATE_STALE:
        return "STALE";
    case RESOLVER_STATE_COUNT:
        break;
    }
    return "?";
}

/* ---- watches ---- */

static void dispatch(resolver_engine *e, const resolver_event *ev)
{
    e->dispatching++;
    for (resolver_watch *w = e->watches; w; w = w->next)
        if (!w->dead && (!w->service || strcmp(w->service, ev->service) == 0))
            w->fn(w->arg, ev);
    if (--e->dispatching == 0 && e->watch_dead) {
        e->watch_dead = 0;
        for (resolver_watch **p = &e->watches; *p;) {
            resolver_watch *w = *p;
            if (!w->dead) {
                p = &w->next;
                continue;
            }
            *p = w->next;
            free(w->service);
            free(w);
        }
    }
}

int resolver_engine_watch(resolver_engine *e, const char *service, resolver_watch_fn fn, void *arg,
                          resolver_watch **out)
{
    if (!e || !fn || !out)
        return RESOLVER_ERR_INVALID;
    resolver_watch *w = calloc(1, sizeof(*w));
    if (!w || (service && !(w->service = strdup(service)))) {
        free(w);
        return RESOLVER_ERR_NOMEM;
    }
    w->engine = e;
    w->fn = fn;
    w->arg = arg;
    /* At the end: events reach watches in the order they were made. */
    resolver_watch **p = &e->watches;
    while (*p)
        p = &(*p)->next;
    *p = w;
    *out = w;
    return 0;
}

void resolver_watch_free(resolver_watch *w)
{
    if (!w)
        return;
    resolver_engine *e = w->engine;
    if (e->dispatching) {
        w->dead = 1;
        e->watch_dead = 1;
        return;
    }
    for (resolver_watch **p = &e->watches; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    free(w->service);
    free(w);
}

/* ---- the service's callback ---- */

static void wake_blocked(resolver_engine *e)
{
    if (atomic_load(&e->n_blocked) == 0)
        return; /* the common case: no thread waits */
    pthread_mutex_lock(&e->wait_lock);
    atomic_fetch_add(&e->picker_gen, 1);
    pthread_cond_broadcast(&e->wait_cond);
    pthread_mutex_unlock(&e->wait_lock);
}

static void picker_changed(resolver_engine *e, rsv_service *svc)
{
    const char *name = rsv_service_name(svc);
    for (resolver_pick_waiter *w = e->waiters; w; w = w->next)
        if (strcmp(w->service, name) == 0)
            rsv_timer_start(w->timer, 0);
    wake_blocked(e);
    if (!rsv_service_synced(svc) || rsv_strmap_get(&e->synced, name))
        return;
    if (rsv_strmap_put(&e->synced, name, svc, NULL) != 0)
        return; /* no memory: told at the next picker change */
    resolver_event ev = {RESOLVER_EVENT_SERVICE_SYNCED, name, NULL, RESOLVER_STATE_COUNT, 0};
    ev.state = (resolver_state)rsv_service_state(svc);
    dispatch(e, &ev);
}

void rsv_engine_on_change(void *arg, rsv_service *svc, const rsv_instance *inst, rsv_change what)
{
    resolver_engine *e = arg;
    resolver_event ev;
    switch (what) {
    case RSV_CHANGE_PICKER:
        picker_changed(e, svc);
        return;
    case RSV_CHANGE_ADDED:
        ev.type = RESOLVER_EVENT_INSTANCE_ADDED;
        break;
    case RSV_CHANGE_REMOVED:
        ev.type = RESOLVER_EVENT_INSTANCE_REMOVED;
        break;
    case RSV_CHANGE_STATE:
        ev.type = RESOLVER_EVENT_INSTANCE_STATE;
        break;
    case RSV_CHANGE_CLOSED:
        ev.type = RESOLVER_EVENT_INSTANCE_DRAINED;
        break;
    default:
        return;
    }
    if (!e->watches)
        return;
    ev.service = rsv_service_name(svc);
    ev.address = inst->endpoint.address;
    ev.state = rsv_instance_public_state(inst);
    ev.outstanding = atomic_load(&inst->outstanding);
    dispatch(e, &ev);
}

/* ---- waiting picks ---- */

static int waits_out(int rc)
{
    return rc == RESOLVER_ERR_NO_INSTANCE || rc == RESOLVER_ERR_NONE_READY ||
           rc == RESOLVER_ERR_LIMIT;
}

static void waiter_free(resolver_pick_waiter *w)
{
    resolver_engine *e = w->engine;
    if (w->prev)
        w->prev->next = w->next;
    else
        e->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    rsv_timer_del(w->timer);
    free(w->service);
    free(w->key);
    free(w);
}

void resolver_pick_waiter_free(resolver_pick_waiter *w)
{
    if (w)
        waiter_free(w);
}

static void on_waiter_timer(rsv_loop *loop, rsv_timer *t, void *arg)
{
    resolver_pick_waiter *w = arg;
    resolver_engine *e = w->engine;
    uint64_t now = rsv_loop_now(loop);
    resolver_pick_result r;
    char why[512];
    int fresh = 0;
    int rc = rsv_engine_pick_core(e, w->service, w->key, w->owner, &r, why, sizeof(why), &fresh, 0);
    int final = rc == 0 || now >= w->deadline || !waits_out(rc) ||
                ((w->flags & RESOLVER_PICK_WAIT_FRESH) && !fresh);
    if (!final) {
        uint64_t left = w->deadline - now;
        rsv_timer_start(t, rc == RESOLVER_ERR_LIMIT && left > LIMIT_RECHECK_MS ? LIMIT_RECHECK_MS
                                                                               : left);
        return;
    }
    if (rc != 0)
        rsv_engine_count_failure(e, w->service);
    resolver_pick_fn fn = w->fn;
    void *fn_arg = w->arg;
    waiter_free(w); /* first: fn may start another wait, or free the host's state */
    fn(fn_arg, rc, rc == 0 ? &r : NULL, rc == 0 ? "" : why);
}

int resolver_engine_pick_async(resolver_engine *e, const char *service,
                               const resolver_pick_options *opts, uint32_t timeout_ms,
                               resolver_pick_fn fn, void *arg, resolver_pick_result *out, char *why,
                               size_t whylen, resolver_pick_waiter **waiter)
{
    char buf[256];
    if (!why || !whylen) {
        why = buf;
        whylen = sizeof(buf);
    }
    if (waiter)
        *waiter = NULL;
    if (!e || !fn || !out) {
        snprintf(why, whylen, "an engine, a callback and a result are required");
        return RESOLVER_ERR_INVALID;
    }
    const char *key = opts ? opts->key : NULL;
    resolver_owner *owner = opts ? opts->owner : NULL;
    unsigned flags = opts ? opts->flags : 0;
    int fresh = 0;
    int rc = rsv_engine_pick_core(e, service, key, owner, out, why, whylen, &fresh, 0);
    if (rc == 0)
        return 0;
    if (timeout_ms == 0 || !waits_out(rc) || ((flags & RESOLVER_PICK_WAIT_FRESH) && !fresh)) {
        rsv_engine_count_failure(e, service);
        return rc;
    }
    resolver_pick_waiter *w = calloc(1, sizeof(*w));
    if (w) {
        w->engine = e;
        w->service = strdup(service);
        w->key = key ? strdup(key) : NULL;
        w->timer = rsv_timer_new(e->loop, on_waiter_timer, w);
    }
    if (!w || !w->service || (key && !w->key) || !w->timer) {
        if (w) {
            rsv_timer_del(w->timer);
            free(w->service);
            free(w->key);
            free(w);
        }
        rsv_engine_count_failure(e, service);
        snprintf(why, whylen, "out of memory");
        return RESOLVER_ERR_NOMEM;
    }
    w->owner = owner;
    w->flags = flags;
    w->fn = fn;
    w->arg = arg;
    w->deadline = rsv_loop_now(e->loop) + timeout_ms;
    w->next = e->waiters;
    if (e->waiters)
        e->waiters->prev = w;
    e->waiters = w;
    rsv_timer_start(w->timer, rc == RESOLVER_ERR_LIMIT && timeout_ms > LIMIT_RECHECK_MS
                                  ? LIMIT_RECHECK_MS
                                  : timeout_ms);
    if (waiter)
        *waiter = w;
    return RESOLVER_PICK_PENDING;
}

int resolver_engine_pick_wait(resolver_engine *e, const char *service,
                              const resolver_pick_options *opts, uint32_t timeout_ms,
                              resolver_pick_result *out, char *why, size_t whylen)
{
    char buf[256];
    if (!why || !whylen) {
        why = buf;
        whylen = sizeof(buf);
    }
    if (!e || !out || (opts && opts->owner) || rsv_on_loop_thread(e)) {
        snprintf(why, whylen,
                 "a waiting pick is for a thread other than the engine's, "
                 "without an owner");
        return RESOLVER_ERR_INVALID;
    }
    const char *key = opts ? opts->key : NULL;
    uint64_t deadline = rsv_clock_ms() + timeout_ms;
    atomic_fetch_add(&e->n_blocked, 1);
    int rc;
    for (;;) {
        uint_fast64_t gen = atomic_load(&e->picker_gen);
        rc = rsv_engine_pick_core(e, service, key, NULL, out, why, whylen, NULL, 0);
        uint64_t now = rsv_clock_ms();
        if (rc == 0 || !waits_out(rc) || now >= deadline)
            break;
        uint64_t until = deadline;
        if (rc == RESOLVER_ERR_LIMIT && now + LIMIT_RECHECK_MS < until)
            until = now + LIMIT_RECHECK_MS;
        struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000};
        pthread_mutex_lock(&e->wait_lock);
        int err = 0;
        while (err != ETIMEDOUT && atomic_load(&e->picker_gen) == gen)
            err = pthread_cond_timedwait(&e->wait_cond, &e->wait_lock, &ts);
        pthread_mutex_unlock(&e->wait_lock);
    }
    atomic_fetch_sub(&e->n_blocked, 1);
    if (rc != 0 && rc != RESOLVER_ERR_INVALID)
        rsv_engine_count_failure(e, service);
    return rc;
}

void rsv_engine_wake_waiters(resolver_engine *e)
{
    wake_blocked(e);
    for (resolver_pick_waiter *w = e->waiters; w; w = w->next)
        rsv_timer_start(w->timer, 0);
}

int rsv_engine_watch_init(resolver_engine *e)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return RESOLVER_ERR_NOMEM;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&e->wait_cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        return RESOLVER_ERR_NOMEM;
    if (pthread_mutex_init(&e->wait_lock, NULL) != 0) {
        pthread_cond_destroy(&e->wait_cond);
        return RESOLVER_ERR_NOMEM;
    }
    e->wait_ready = 1;
    return 0;
}

void rsv_engine_watch_fini(resolver_engine *e)
{
    while (e->waiters)
        waiter_free(e->waiters);
    while (e->watches) {
        resolver_watch *w = e->watches;
        e->watches = w->next;
        free(w->service);
        free(w);
    }
    rsv_strmap_clear(&e->synced);
    if (e->wait_ready) {
        pthread_cond_destroy(&e->wait_cond);
        pthread_mutex_destroy(&e->wait_lock);
        e->wait_ready = 0;
    }
}
