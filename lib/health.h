/*
 * health.h - gRPC health checking (grpc.health.v1.Health) of one
 * connection, as a client of its stream API (connection.h): Watch, or
 * Check polled when Watch is UNIMPLEMENTED.  Every answer, and every
 * failed call, is reported to the owner (the subchannel), which decides
 * the state.
 *
 * Close rule:
 *  1. Loop-thread only (loop.h rule 1).
 *  2. rsv_health_del ends it and frees it on return: its timer stopped,
 *     no callback follows.  It may be called from the report callback.
 *     Deleted before its connection it resets its open call (RST_STREAM
 *     CANCEL); after it (the owner's usual order), nothing is sent, as a
 *     connection that ended has detached its streams (connection.h rule 5).
 *  3. The report callback runs from the loop (a stream callback or the
 *     health timer), never from inside a call the owner made.
 */
#ifndef RSV_HEALTH_H
#define RSV_HEALTH_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "connection.h"
#include "loop.h"

/* What the owner knows of its instance's health (stats.health). */
typedef enum {
    RSV_HEALTH_NONE = 0, /* not checked, or no answer yet on this connection */
    RSV_HEALTH_SERVING,
    RSV_HEALTH_NOT_SERVING,
    RSV_HEALTH_SERVICE_UNKNOWN,
    RSV_HEALTH_UNKNOWN,      /* the server said UNKNOWN, or the call failed */
    RSV_HEALTH_UNIMPLEMENTED /* neither Watch nor Check: treated as healthy */
} rsv_health_status;

/* "" for NONE, else the status's name. */
const char *rsv_health_name(rsv_health_status h);

typedef struct rsv_health rsv_health;

typedef void (*rsv_health_cb)(rsv_connection *c, rsv_health_status st, const char *why, void *arg);

/* The request every call sends: the gRPC prefix and HealthCheckRequest{service}
 * (malloc'd into *req).  0 or -1 (out of memory). */
int rsv_health_encode_request(const char *service, uint8_t **req, size_t *len);

/* A health checker for `c` (not started).  `req` is copied; `opts` is
 * borrowed (connect_timeout_ms and keepalive_timeout_ms are the calls'
 * deadlines, read when each call starts); `*calls` counts the calls
 * started.  NULL when out of memory. */
rsv_health *rsv_health_new(rsv_loop *loop, rsv_connection *c, const uint8_t *req, size_t req_len,
                           const rsv_service_options *opts, uint64_t *calls, rsv_health_cb cb,
                           void *arg);
/* Opens the Watch (c must be READY).  0, or -1: the connection was told to
 * fail (rsv_connection_fail). */
int rsv_health_start(rsv_health *h);
/* Rule 2.  NULL is fine. */
void rsv_health_del(rsv_health *h);

#endif
