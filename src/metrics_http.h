/*
 * metrics_http.h - resolverd's optional HTTP listener for Prometheus
 * (`metrics.listen`): GET /metrics answers the text of `resolverctl
 * metrics`, /healthz 200 "ok" while the process serves at all, /ready 200
 * or 503 with the reason (resolver_engine_ready), anything else 404.
 * HTTP/1.1, one request per connection
 * (Connection: close), on the engine's loop.  Engine thread only.
 *
 * Limits: a request head of at most 8 KiB, at most 64 connections at a
 * time, 5 s per connection from accept to close.  A client that breaks
 * them is answered (431, 503) or dropped; nobody else is affected.
 */
#ifndef RSV_METRICS_HTTP_H
#define RSV_METRICS_HTTP_H

#include <stddef.h>
#include <resolver.h>

typedef struct rsv_metrics_http rsv_metrics_http;

#define RSV_METRICS_HTTP_MAX_REQUEST 8192
#define RSV_METRICS_HTTP_MAX_CONNS 64
#define RSV_METRICS_HTTP_TIMEOUT_MS 5000

/* Binds `listen_addr` ("HOST:PORT", "[V6]:PORT", or ":PORT" for 127.0.0.1) and
 * starts serving on the engine's loop.  An address that is not loopback is
 * bound as asked, with a warning in the log.  On failure returns NULL with
 * a message naming metrics.listen in err. */
rsv_metrics_http *rsv_metrics_http_new(resolver_engine *engine, const char *listen_addr, char *err,
                                       size_t errlen);
/* Closes every connection and the listening socket.  NULL is accepted.
 * Call before resolver_engine_free (the loop must still exist). */
void rsv_metrics_http_del(rsv_metrics_http *m);

#endif
