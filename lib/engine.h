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

rsv_loop *rsv_engine_loop(resolver_engine *e);
const resolver_config *rsv_engine_config(const resolver_engine *e);

/* Picks as resolver_engine_pick_ex; the ticket belongs to `owner` (NULL: to
 * nobody, released only by done or timeout).  `why` receives the reason of
 * a failure.  `fresh` (may be NULL) is set to 1 when the service was created
 * or has not finished its first sync and connection attempts: the caller
 * may retry shortly instead of failing (resolver_engine_pick_async does). */
int rsv_engine_pick_owned(resolver_engine *e, const char *service, const char *key,
                          resolver_owner *owner, resolver_pick_result *out, char *why,
                          size_t whylen, int *fresh);

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

#define RSV_READY_ETCD_MS 10000 /* resolver_engine_ready */

/* The registrations as rsv_registrar_json lists them (new reference). */
json_t *rsv_engine_registrations_json(resolver_engine *e);

#endif
