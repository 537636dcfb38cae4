/*
 * engine.h - the engine's internal face, for the library's own files and
 * tests.  The public face (what resolverd is written on) is resolver.h.
 * Loop-thread only.
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

/* The services as JSON (a new reference), for the picker benchmark. */
json_t *rsv_engine_services_json(resolver_engine *e);
/* The services sorted by name; free the array (not the services). */
rsv_service **rsv_engine_sorted_services(resolver_engine *e, size_t *n);
/* The highest revision any service has applied. */
int64_t rsv_engine_revision(resolver_engine *e);

#define RSV_READY_ETCD_MS 10000 /* resolver_engine_ready */

#endif
