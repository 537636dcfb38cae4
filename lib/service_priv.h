/*
 * service_priv.h - what the files of the service share and nobody else
 * sees: the service's struct and the few calls one file makes into
 * another.  service.c: the object, keys and reconcile, drain, outlier
 * accounting, the picker; selfpres.c: self-preservation (service.h rule
 * 5); service_view.c: introspection and the cache file's JSON;
 * service_index.c: read-only walks of the instances map, calling nothing.
 * Engine thread only, like everything in service.h but the picks.
 */
#ifndef RSV_SERVICE_PRIV_H
#define RSV_SERVICE_PRIV_H

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
    rsv_sleep_hook *publish_hook; /* armed: the picker is to be rebuilt (picker_dirty) */
    rsv_timer *settle_timer;      /* a big service's state changes wait this long */
    uint64_t publish_cost_us;     /* how long the last rebuild took */
    rsv_service_counters counters;
    atomic_int picked; /* (any) a pick happened since the last idle check */
    uint64_t last_active_ms;
    int changed; /* keys changed since rsv_service_take_changed */
    int stopped;
    int draining_all; /* graceful stop: etcd changes ignored, cache_file kept as it was */
    int batch;        /* > 0: inside a batch of changes (batch_begin) */
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

/* service.c */
void rsv_service_notify(rsv_service *svc, const rsv_instance *inst, rsv_change what);
/* Something a pick depends on changed: the picker is rebuilt once, at the
 * end of the loop iteration. */
void rsv_service_picker_dirty(rsv_service *svc);
/* A removed instance stops being picked and closes once its picks are
 * released or drain_timeout_ms passes. */
void rsv_service_start_drain(rsv_instance *inst);

/* service_index.c */
/* A snapshot of the instances, for loops that may close some of them (the
 * map may not change while it is iterated).  Free the array; NULL with
 * *n = 0 when out of memory. */
rsv_instance **rsv_service_collect(const rsv_service *svc, size_t *n);
/* qsort order of rsv_instance pointers by address. */
int rsv_instance_by_address(const void *a, const void *b);
/* The service's ejected instances (draining ones included). */
size_t rsv_service_ejected_count(const rsv_service *svc);
/* Zone preference: keeps the daemon's zone alone in ready[0..n) while
 * zone_min_ready_percent of its instances there are READY; returns the
 * count kept. */
size_t rsv_service_filter_zone(const rsv_service *svc, rsv_instance **ready, size_t n);

/* selfpres.c */
/* Keyed (etcd names it), not draining, its connection READY. */
int rsv_instance_keyed_ready(const rsv_instance *inst);
/* Notes the count of keyed READY instances now (at every publish). */
void rsv_sp_note_ready(rsv_service *svc, size_t ready);
/* At the end of a batch, before its unkeyed instances drain: keeps those
 * whose connection is READY as STALE if the deletions make a storm, calling
 * on_held for each as it is kept.  Returns how many. */
size_t rsv_sp_hold(rsv_service *svc, void (*on_held)(rsv_instance *inst));
/* Forgets the STALE mark (the instance closes: no drain follows). */
void rsv_sp_clear(rsv_instance *inst);
/* The instance is no longer STALE (listed again, or about to drain); the
 * caller marks the picker dirty. */
void rsv_sp_end(rsv_instance *inst, const char *why);
/* At an instance's stale_timer: 1 if it was STALE and no longer is (the
 * caller marks the picker dirty and drains it). */
int rsv_sp_expire(rsv_instance *inst);

#endif
