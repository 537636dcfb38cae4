/*
 * engine.h - the engine's internal face, used by the daemon's socket server.
 * The public face is in resolver.h.  Loop-thread only.
 */
#ifndef RSV_ENGINE_H
#define RSV_ENGINE_H

#include <jansson.h>
#include "config.h"
#include "loop.h"
#include "resolver.h"
#include "service.h"

typedef struct rsv_ticket rsv_ticket;

/* Tickets taken on behalf of one client, released together when it goes.
 * Embed in the client's struct, zero-initialised.  `uid` and `pid` name the
 * peer picking now (set them before each pick: one owner may serve several
 * processes of a uid); each ticket keeps a copy, so that a leaked ticket's
 * warning names who picked it. */
typedef struct {
    rsv_ticket *head;
    size_t count;
    long uid, pid;
} rsv_ticket_owner;

rsv_loop *rsv_engine_loop(resolver_engine *e);
const resolver_config *rsv_engine_config(const resolver_engine *e);

/* Picks as resolver_engine_pick; the ticket belongs to `owner` (NULL: to
 * nobody, released only by done or timeout).  `why` receives the reason of
 * a failure.  `fresh` (may be NULL) is set to 1 when the service was created
 * or has not finished its first sync and connection attempts: the caller
 * may retry shortly instead of failing. */
int rsv_engine_pick_owned(resolver_engine *e, const char *service, const char *key,
                          rsv_ticket_owner *owner, resolver_pick_result *out, char *why,
                          size_t whylen, int *fresh);
/* Releases every ticket of `owner`. */
void rsv_engine_release_owner(resolver_engine *e, rsv_ticket_owner *owner);
/* The owner an outstanding ticket was picked for (NULL: none), so that the
 * daemon lets only its owner report it done.  0 or RESOLVER_ERR_NOT_FOUND. */
int rsv_engine_ticket_owner(resolver_engine *e, uint64_t id, rsv_ticket_owner **owner);

/* The daemon's listeners, for counters the engine exposes with its own. */
typedef enum { RSV_LISTENER_SOCKET, RSV_LISTENER_METRICS, RSV_LISTENER_COUNT } rsv_listener;
const char *rsv_listener_name(rsv_listener which); /* "socket", "metrics" */
/* Counts one pause of a listener that could not accept (EMFILE and the
 * like): resolver_accept_backoffs_total{listener=...}. */
void rsv_engine_count_accept_backoff(resolver_engine *e, rsv_listener which);

/* Introspection (new references; NULL and NOT_FOUND for an unknown service). */
json_t *rsv_engine_services_json(resolver_engine *e);
json_t *rsv_engine_instances_json(resolver_engine *e, const char *service);
json_t *rsv_engine_status_json(resolver_engine *e);
/* What the metrics exposition (metrics.c) reads. */
/* The services sorted by name; free the array (not the services). */
rsv_service **rsv_engine_sorted_services(resolver_engine *e, size_t *n);
/* The highest revision any service has applied. */
int64_t rsv_engine_revision(resolver_engine *e);
rsv_etcd *rsv_engine_etcd(resolver_engine *e);
typedef struct {
    size_t tickets_outstanding;
    uint64_t tickets_leaked;
    uint64_t accept_backoffs[RSV_LISTENER_COUNT];
} rsv_engine_counters;
void rsv_engine_counters_get(resolver_engine *e, rsv_engine_counters *out);

/* Readiness, the daemon's /ready: 1 when etcd answered within the last
 * RSV_READY_ETCD_MS (while any service is watched, the member in use
 * is probed every 3 s) and every configured service has its first listing
 * from etcd; 0 while not, or when shutting down.  `why` says which. */
#define RSV_READY_ETCD_MS 10000
int rsv_engine_ready(resolver_engine *e, char *why, size_t whylen);

/* Operator drain (1) or undrain (0).  0; RESOLVER_ERR_NOT_FOUND (no such
 * service or instance); RESOLVER_ERR_INVALID (undrain of an instance that is
 * not drained). */
int rsv_engine_drain(resolver_engine *e, const char *service, const char *address, int drain);

/* The registrations as rsv_registrar_json lists them (new reference). */
json_t *rsv_engine_registrations_json(resolver_engine *e);

/* Replaces the configuration (takes `cfg` in every case): services added,
 * removed or given new options; subchannels of instances that stay are kept. */
int rsv_engine_reload(resolver_engine *e, resolver_config *cfg);

/* One listener for instance changes (the daemon's `watch`). */
typedef void (*rsv_engine_change_cb)(void *arg, const char *service, const rsv_instance *inst,
                                     const char *event);
void rsv_engine_set_listener(resolver_engine *e, rsv_engine_change_cb cb, void *arg);

/* One hook for "service's picker changed": an instance became pickable
 * (READY) or stopped being, or the first listing from etcd arrived, so a
 * pick that failed as `fresh` may have another outcome now.  The daemon
 * wakes the picks parked on the service with it instead of polling.
 * Called on the loop thread from inside service updates: the callee must
 * not pick (nor change services) there and then; schedule it. */
typedef void (*rsv_engine_picker_cb)(void *arg, const char *service);
void rsv_engine_set_picker_hook(resolver_engine *e, rsv_engine_picker_cb cb, void *arg);

/* Begins graceful shutdown: picks fail with RESOLVER_ERR_CLOSED and every
 * instance drains (closed when its picks are done or drain_timeout_ms
 * passes).  rsv_engine_drained tells when nothing is left;
 * rsv_engine_max_drain_ms is the longest drain_timeout_ms configured. */
void rsv_engine_shutdown(resolver_engine *e);
int rsv_engine_drained(resolver_engine *e);
uint64_t rsv_engine_max_drain_ms(const resolver_engine *e);

#endif
