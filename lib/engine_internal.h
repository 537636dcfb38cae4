/*
 * engine_internal.h - the engine's state, shared by the files that make it
 * up; included by them alone (the daemon uses engine.h, hosts resolver.h).
 *
 *   engine.c     lifecycle (new, free, run, process, shutdown), the cache
 *                file and housekeeping, registrations, applying the
 *                inbox's messages
 *   directory.c  services by name: add, remove, on-demand discovery, and
 *                the directory picking threads read
 *   tickets.c    picks and dones: tickets issued and released, their
 *                timeout queues, leak detection, owners
 *   inbox.c      work other threads hand to the loop thread: post, take,
 *                drain (a queue alone: engine.c gives it the apply step)
 *   reload.c     a new configuration: diff and apply
 *   introspect.c services, instances, status, counters, readiness
 *   watch.c      events for watches, waiting picks
 *
 * Among directory.c, tickets.c and inbox.c calls go one way: tickets.c (the
 * pick path) may call directory.c and inbox.c; directory.c calls neither;
 * inbox.c calls neither (it is given the function that applies a message).
 *
 * Threading (all files): the engine's state belongs to the thread that
 * drives the loop (resolver_engine_run or resolver_engine_process).
 * resolver_engine_pick and resolver_engine_done may be called from any
 * thread:
 *  - a pick finds its service in `directory`, an immutable name -> service
 *    table republished when services come and go, and picks from the
 *    service's immutable picker; both are read under hazard pointers, so a
 *    pick takes no lock and never waits for the engine;
 *  - what a pick or done must change in engine state (a ticket to track, a
 *    ticket to release, a service to discover) is pushed on a lock-free
 *    stack and applied by the loop thread, which the push wakes up.
 *  - a pick of a service nobody discovered yet posts at most one discover
 *    request per name at a time (`discovering`, a small table of name
 *    hashes), and while on_demand_services_max is reached such a pick is
 *    refused on its own thread (`on_demand_full`) without posting anything:
 *    however fast threads pick unknown names, the inbox holds a bounded
 *    number of discover requests and the log a line per 10 s.
 * On the loop thread itself (the daemon) the same calls apply directly; a
 * done there first looks in the inbox for a ticket another thread took.
 * The cache file is encoded on the loop and written by a thread of its own
 * (cache.h), at most once per CACHE_WRITE_INTERVAL_MS, and flushed at
 * shutdown (before the drain) and in resolver_engine_free.
 */
#ifndef RSV_ENGINE_INTERNAL_H
#define RSV_ENGINE_INTERNAL_H

#include <pthread.h>
#include "cache.h"
#include "dns.h"
#include "engine.h"
#include "etcd.h"
#include "hazard.h"
#include "registrar.h"
#include "strmap.h"
#include "u64map.h"

typedef struct rsv_timeout_queue rsv_timeout_queue;

struct rsv_ticket {
    uint64_t id;
    resolver_engine *engine;
    rsv_instance *instance;          /* holds a reference */
    rsv_metadata *metadata;          /* the instance's at the pick, a reference; or NULL */
    struct rsv_timeout_queue *queue; /* expiry order, see rsv_ticket_track */
    rsv_ticket *q_prev, *q_next;
    uint64_t deadline;
    resolver_owner *owner;
    rsv_ticket *owner_prev, *owner_next;
    uint64_t timeout_ms;
    long uid, pid;  /* who picked it (owner's at the pick); -1: in-process, no peer */
    char service[]; /* its service's name, for the leaked-ticket warning */
};

/* Work a foreign thread hands to the loop thread. */
typedef struct rsv_engine_msg {
    enum { RSV_MSG_TICKET, RSV_MSG_DONE, RSV_MSG_DISCOVER } type;
    struct rsv_engine_msg *next;
    rsv_ticket *ticket; /* RSV_MSG_TICKET */
    uint64_t id;        /* RSV_MSG_DONE; RSV_MSG_DISCOVER: its slot in `discovering` */
    int failed;
    uint32_t latency_ms;
    char name[]; /* RSV_MSG_DISCOVER */
} rsv_engine_msg;

typedef struct {
    char *name; /* a copy: readers may outlive the service's own string */
    rsv_service *svc;
} rsv_dir_entry;

typedef struct {
    size_t n;
    rsv_dir_entry *entries; /* sorted by name */
    char *names;            /* one allocation for every name */
} rsv_directory;

/* Discover requests in flight, as hashes of their names: a name is posted
 * only when none of its RSV_DISCOVER_PROBES slots holds its hash already (a
 * race with a slot being freed may post it once more, never more than
 * RSV_DISCOVER_PROBES times), and never more than RSV_DISCOVER_SLOTS requests wait
 * at once.  A hash collision only delays a name until the request holding
 * the slot has been applied. */
#define RSV_DISCOVER_SLOTS 64
#define RSV_DISCOVER_PROBES 8

struct resolver_engine {
    resolver_config *cfg;
    rsv_hazard_domain *hazard;
    _Atomic(void *) directory;           /* directory, read by any thread */
    _Atomic(rsv_engine_msg *) inbox;     /* pushed by any thread */
    rsv_engine_msg *taken, **taken_tail; /* loop thread: off the inbox, not applied yet */
    atomic_uint_fast64_t discovering[RSV_DISCOVER_SLOTS];
    atomic_int on_demand_full;      /* 1: picks of unknown names are refused at once */
    atomic_uint on_demand_max_seen; /* the cap it was reached at, for the message */
    atomic_uint_fast64_t ticket_seq;
    pthread_t loop_thread;
    atomic_int loop_thread_known;
    rsv_loop *loop;
    rsv_etcd *etcd;
    rsv_dns *dns;             /* instance host names */
    rsv_registrar *registrar; /* local instances published in etcd */
    rsv_strmap services;      /* name -> rsv_service */
    size_t n_on_demand;
    rsv_u64map tickets;        /* id -> rsv_ticket */
    rsv_timeout_queue *queues; /* one per distinct ticket_timeout_ms */
    uint64_t started_ms;
    uint64_t tickets_leaked, tickets_released, done_unknown;
    atomic_uint_fast64_t picks, pick_failures;
    /* watch.c */
    resolver_watch *watches;         /* in the order registered */
    int dispatching, watch_dead;     /* watches freed during a dispatch */
    resolver_pick_waiter *waiters;   /* resolver_engine_pick_async */
    rsv_strmap synced;               /* services whose SERVICE_SYNCED was told */
    pthread_mutex_t wait_lock;       /* resolver_engine_pick_wait: */
    pthread_cond_t wait_cond;        /*  broadcast when picker_gen moves */
    atomic_uint_fast64_t picker_gen; /* any picker published while a thread waits */
    atomic_int n_blocked;            /* threads inside resolver_engine_pick_wait */
    int wait_ready;                  /* lock and cond initialised */
    atomic_int shutting_down;
    rsv_timer *housekeeping;        /* cache writes, idle on-demand services */
    rsv_cache_writer *cache_writer; /* started at the first write */
    int cache_dirty;                /* a change not yet handed to the writer */
    uint64_t cache_next_ms;         /* no write before this (loop time) */
    uint64_t last_idle_sweep_ms;
    size_t cache_loaded, regs_restored;
    /* The run-time registrations asked for (resolver_engine_register, not
     * yet deregistered; a stop keeps them): "SERVICE\nADDRESS" -> the entry
     * the cache_file keeps (rsv_cache_registration_json). */
    json_t *runtime_regs;
};

/* ---- directory.c ---- */

/* Publishes the services of the map but `skip` (NULL: none).  0 or
 * RESOLVER_ERR_NOMEM (the old directory stays published). */
int rsv_directory_publish(resolver_engine *e, const char *skip);
/* A directory's memory (the directory pointer's last reader is gone). */
void rsv_directory_free(void *arg);
/* Any thread: the service called `name`, protected in the SERVICE hazard
 * slot (clear it when done), or NULL. */
rsv_service *rsv_directory_lookup(resolver_engine *e, const char *name);
/* Loop thread: adds a service and publishes it; NULL on a bad name or no
 * memory (logged). */
rsv_service *rsv_directory_add(resolver_engine *e, const char *name, const char *prefix,
                               const rsv_service_options *opts);
/* The configuration's services.  0 or RESOLVER_ERR_NOMEM. */
int rsv_directory_add_configured(resolver_engine *e);
/* Loop thread: removes a service (freed once no picking thread holds it).
 * 0 or RESOLVER_ERR_NOMEM (nothing changed). */
int rsv_directory_remove(resolver_engine *e, const char *name);
/* The gate for service names: 0 or RESOLVER_ERR_INVALID with why. */
int rsv_check_service_name(const char *name, char *why, size_t whylen);
/* The answer (RESOLVER_ERR_LIMIT) to a pick of a service that cannot be
 * discovered. */
int rsv_on_demand_refused(const char *name, unsigned max, char *why, size_t whylen);
/* Loop thread: tells picking threads whether an unknown name can still be
 * discovered. */
void rsv_note_on_demand_room(resolver_engine *e);
/* Loop thread: the service `name`, discovered on demand when not known.
 * NULL with *err and why when it cannot be. */
rsv_service *rsv_find_or_discover(resolver_engine *e, const char *name, char *why, size_t whylen,
                                  int *err);
/* Any thread: claims `name`'s slot in `discovering` before posting its
 * discover request (directory.c posts nothing itself).  1 with *slot
 * claimed, 0 when one is in flight already, -1 when no slot is free. */
int rsv_discover_claim(resolver_engine *e, const char *name, size_t *slot);
/* Any thread: frees a claimed slot (applied, or the post failed). */
void rsv_discover_release(resolver_engine *e, size_t slot);
/* Loop thread: applies a posted discover request, then frees its slot. */
void rsv_discover_apply(resolver_engine *e, const char *name, size_t slot);
/* Housekeeping: on-demand services nobody picked for ON_DEMAND_IDLE_MS go. */
void rsv_drop_idle_services(resolver_engine *e);

/* ---- tickets.c ---- */

/* Loop thread: starts tracking a ticket a pick made (released at once when
 * it cannot be tracked). */
void rsv_ticket_track(resolver_engine *e, rsv_ticket *t);
/* Loop thread: releases a ticket.  0 or RESOLVER_ERR_NOT_FOUND. */
int rsv_done_on_loop(resolver_engine *e, uint64_t ticket, int failed, uint32_t latency_ms);
/* Releases every ticket and frees the timeout queues (resolver_engine_free). */
void rsv_tickets_free_all(resolver_engine *e);

/* ---- inbox.c: only the queue; calls neither directory.c nor tickets.c ---- */

int rsv_on_loop_thread(resolver_engine *e);
/* The thread calling run or process first is the loop thread. */
void rsv_mark_loop_thread(resolver_engine *e);
/* Any thread: hands `m` to the loop thread. */
void rsv_inbox_post(resolver_engine *e, rsv_engine_msg *m);
/* Loop thread: applies one message (the inbox frees it after). */
typedef void rsv_inbox_apply_fn(resolver_engine *e, rsv_engine_msg *m);
/* Loop thread: 1 when it applied `m` during a take (the inbox frees it),
 * 0 to leave it for the drain. */
typedef int rsv_inbox_early_fn(resolver_engine *e, rsv_engine_msg *m);
/* Loop thread: moves the posted work to `taken`, offering each message to
 * `early` (NULL: none) on the way. */
void rsv_inbox_take(resolver_engine *e, rsv_inbox_early_fn *early);
/* Loop thread: applies the posted work with `apply`, in the order posted
 * (engine.c's wakeup callback and resolver_engine_free). */
void rsv_inbox_drain(resolver_engine *e, rsv_inbox_apply_fn *apply);

/* Picks as rsv_engine_pick_owned; with count 0 a failure is not counted
 * (the caller retries, and counts the final outcome with
 * rsv_engine_count_failure). */
int rsv_engine_pick_core(resolver_engine *e, const char *service, const char *key,
                         resolver_owner *owner, resolver_pick_result *out, char *why, size_t whylen,
                         int *fresh, int count);
/* Counts one failed pick of `service` (engine's and service's counters). */
void rsv_engine_count_failure(resolver_engine *e, const char *service);

/* ---- watch.c ---- */

/* Every service's change callback (arg: the engine). */
void rsv_engine_on_change(void *arg, rsv_service *svc, const rsv_instance *inst, rsv_change what);
resolver_state rsv_instance_public_state(const rsv_instance *inst);
/* Waiting picks look again at once (shutdown: they fail CLOSED). */
void rsv_engine_wake_waiters(resolver_engine *e);
/* The wait lock and condition (0 or RESOLVER_ERR_NOMEM); fini frees the
 * watches and waiters left. */
int rsv_engine_watch_init(resolver_engine *e);
void rsv_engine_watch_fini(resolver_engine *e);

/* ---- engine.c ---- */

rsv_dns_options rsv_engine_dns_options(const resolver_config *cfg);
/* The registrations `cfg` lists.  0 or an error of rsv_registrar_add. */
int rsv_engine_add_registrations(resolver_engine *e, const resolver_config *cfg);
/* A stop: what changed since the last cache write goes out now. */
void rsv_engine_flush_cache(resolver_engine *e);

#endif
