/*
 * service.h - one service: the instances etcd lists for it, one subchannel
 * each, drain of removed instances, and the pick over READY ones.
 *
 * Close rule:
 *  - rsv_service_stop ends the service: discovery stops, every instance
 *    closes at once (no drain) and is detached (its `service` NULL), and the
 *    last picker, published before the return, fails every pick ("no
 *    longer served").  After it no change callback runs and no timer or
 *    before-sleep hook of the service fires.
 *  - Picking threads may still read the service and its last picker after
 *    the stop; rsv_service_free frees the memory once the engine knows none
 *    can (hazard pointers).  rsv_service_del is stop + free, for a service
 *    no other thread ever saw.
 *  - Instances live on their own references (instance.h): one that a
 *    ticket or a retired picker holds outlives its removal and the service;
 *    rsv_instance_release on a detached instance touches no service.
 *
 * Rules:
 *  1. Loop-thread only, but rsv_service_pick and rsv_service_count_failure.
 *  2. An instance lives while etcd lists it under at least one key, and after
 *     that while it drains; a ticket holds a reference, so an instance struct
 *     outlives its removal until its last ticket is released.
 *  3. The change callback is told about every instance added, removed or
 *     changing state; it must not delete the service.
 *  4. The events of one watch message (one etcd revision: a txn) and a
 *     snapshot are applied as one change: an address whose key is deleted
 *     and that another key of the same batch names again keeps its
 *     instance and connection (no removal is seen).
 *  5. Self-preservation: when the deletions of a batch would leave fewer
 *     keyed READY instances than self_preservation_percent of the most the
 *     service had in the last 10 s, the removed instances whose connection
 *     is READY stay pickable as STALE (n_keys 0, not draining) until their
 *     connection leaves READY, a key names them again, or
 *     self_preservation_max_ms passes; then they drain as any removal.
 *  6. Picks see a change at the end of the loop iteration that made it: the
 *     picker is rebuilt once then, in a before-sleep hook (loop.h rule 6),
 *     however many changes the iteration made, and RSV_CHANGE_PICKER
 *     follows.  A service of 1,024 instances or more lets the state
 *     changes of its connections wait up to 10x the cost of its last
 *     rebuild (other changes still publish at the iteration's end).
 *     rsv_service_new and rsv_service_stop publish before they return.
 */
#ifndef RSV_SERVICE_H
#define RSV_SERVICE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include "config.h"
#include "discovery.h"
#include "hazard.h"
#include "histogram.h"
#include "instance.h"
#include "log.h"
#include "registry.h"
#include "strmap.h"
#include "subchannel.h"

typedef struct rsv_service rsv_service;

typedef enum {
    RSV_CHANGE_ADDED,
    RSV_CHANGE_REMOVED, /* left etcd: draining or closed */
    RSV_CHANGE_STATE,
    RSV_CHANGE_CLOSED,
    RSV_CHANGE_PICKER /* inst NULL: a new picker is published (an
                       * instance became pickable or stopped being, the
                       * first listing arrived): a pick that failed may
                       * succeed now */
} rsv_change;

typedef void (*rsv_service_change_cb)(void *arg, rsv_service *svc, const rsv_instance *inst,
                                      rsv_change what);

typedef struct {
    atomic_uint_fast64_t picks, pick_failures; /* (any) */
    uint64_t decode_errors, transitions, ejections;
    uint64_t self_preservation_events; /* batches that held instances as STALE (rule 5) */
    rsv_histogram latency;             /* pick-to-done, as reported by done */
} rsv_service_counters;

/* Creates the service and starts discovery of `prefix` in `etcd`.  With
 * etcd NULL no discovery starts: the creator calls the callbacks of
 * rsv_service_discovery_callbacks itself, with the service as their arg,
 * as discovery would (tests).  `opts` is copied.
 * Replaced pickers are retired to `hazard` (the engine's domain); `zone` is
 * the daemon's zone ("" none); instance host names resolve through `dns`
 * (borrowed, outlives the service; NULL: numeric addresses only). */
rsv_service *rsv_service_new(rsv_loop *loop, rsv_etcd *etcd, rsv_dns *dns,
                             rsv_hazard_domain *hazard, const char *zone, const char *name,
                             const char *prefix, const rsv_service_options *opts,
                             rsv_service_change_cb cb, void *arg);
/* What rsv_service_new hands to discovery: the service's reactions to a
 * snapshot, a put, a delete and the bounds of one watch message. */
const rsv_discovery_callbacks *rsv_service_discovery_callbacks(void);
/* Stops discovery and closes every subchannel at once (no drain); picks
 * fail from then on.  The memory stays until rsv_service_free, which
 * the engine calls once no picking thread can still reach the service. */
void rsv_service_stop(rsv_service *svc);
void rsv_service_free(rsv_service *svc);
/* stop + free, for a service no other thread ever saw. */
void rsv_service_del(rsv_service *svc);
/* Graceful stop: every instance drains as if removed from etcd. */
void rsv_service_drain_all(rsv_service *svc);
/* Replaces the options (reload; engine thread).  What picks use (policy,
 * max_outstanding, ticket_timeout_ms, zone preference) applies at once,
 * through a new picker snapshot; subchannels stay and take the connection
 * options at their next connection.  rsv_service_options_get is for
 * the engine thread only. */
int rsv_service_set_options(rsv_service *svc, const rsv_service_options *opts);

const char *rsv_service_name(const rsv_service *svc);
const char *rsv_service_prefix(const rsv_service *svc);
const rsv_service_options *rsv_service_options_get(const rsv_service *svc);
int rsv_service_synced(const rsv_service *svc);
int64_t rsv_service_revision(const rsv_service *svc);
const rsv_service_counters *rsv_service_counters_get(const rsv_service *svc);
const rsv_discovery *rsv_service_discovery(const rsv_service *svc);

/* cache_file support.  preload applies an endpoint read from the cache as
 * if etcd had listed it (ignored once etcd has answered: etcd wins; its
 * first listing reconciles away what the cache had and etcd has not).
 * take_changed returns 1 once after any key changed.  cache_json is
 * {"prefix":..,"revision":N,"kvs":[{"key","address","weight","zone","tls"}]}. */
int rsv_service_preload(rsv_service *svc, const char *key, const rsv_endpoint *ep);
int rsv_service_take_changed(rsv_service *svc);
json_t *rsv_service_cache_json(const rsv_service *svc);

/* Picks a READY, non-draining, non-ejected instance.  ANY THREAD: reads
 * the published picker snapshot without locks, and nothing else that the
 * engine thread may change (the options a pick needs are in the snapshot).
 * On success returns 0 and the instance with a reference taken
 * (outstanding and refs incremented), and the ticket_timeout_ms of the
 * snapshot it came from; end it with rsv_instance_release on the
 * engine thread.  Errors:
 * NO_INSTANCE, NONE_READY with a reason such as "none ready for x: 2
 * CONNECTING, 1 TRANSIENT_FAILURE" in why[0..whylen) (not counted: see
 * rsv_service_count_failure). */
int rsv_service_pick(rsv_service *svc, const char *key, rsv_instance **out,
                     uint64_t *ticket_timeout_ms, char *why, size_t whylen);
/* Counts a pick that failed (any thread).  Not done by rsv_service_pick:
 * a pick the caller retries (the daemon's first pick of a service still
 * connecting) counts once, by its final outcome. */
void rsv_service_count_failure(rsv_service *svc);
/* Ends a pick (engine thread): outstanding--, outlier accounting, a probe
 * PING after a failure, drain completion, refs--. */
void rsv_instance_release(rsv_instance *inst, int failed);
/* Engine thread: a duration the client reported for a pick of `inst`
 * (done latency_ms), into its service's latency histogram and the
 * instance's latency average (least_latency, with the service's
 * latency_decay_ms). */
void rsv_instance_observe_latency(rsv_instance *inst, uint32_t ms);
/* Engine thread: milliseconds since the service was last picked, as seen
 * by calls to this function (a pick since the last call counts as now). */
uint64_t rsv_service_idle_ms(rsv_service *svc, uint64_t now_ms);

/* Operator drain/undrain of an address.  0, RESOLVER_ERR_NOT_FOUND, or
 * RESOLVER_ERR_INVALID for an undrain of an instance that is not drained. */
int rsv_service_drain(rsv_service *svc, const char *address, int drain);

/* Aggregate connectivity (gRPC): READY if any READY, else CONNECTING if any
 * connecting, else IDLE if any idle, else TRANSIENT_FAILURE (also when empty). */
rsv_state rsv_service_state(const rsv_service *svc);
/* Count of instances per display state (index: rsv_state, and
 * RSV_STATE_SHUTDOWN counts DRAINING). */
void rsv_service_state_counts(const rsv_service *svc, size_t counts[5]);
size_t rsv_service_instance_count(const rsv_service *svc);
/* Instances kept by self-preservation (rule 5). */
size_t rsv_service_stale_count(const rsv_service *svc);

/* "IDLE", ..., "DRAINING" for a draining instance, "STALE" for one kept by
 * self-preservation. */
const char *rsv_instance_state_name(const rsv_instance *inst);
/* The instances sorted by address; free the array (not the instances).
 * NULL (and *n 0) when out of memory. */
rsv_instance **rsv_service_instances_sorted(const rsv_service *svc, size_t *n);
/* JSON views for introspection (new references). */
json_t *rsv_service_to_json(const rsv_service *svc);

#endif
