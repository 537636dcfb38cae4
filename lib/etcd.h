/*
 * etcd.h - HTTP requests to etcd's JSON gateway, run on the engine loop
 * through libcurl's multi_socket API.
 *
 * One resolver_etcd per engine holds the curl multi handle, the list of
 * endpoints and which one is in use.  Requests are POSTs of a JSON body to
 * a path such as "/v3/kv/range"; the response body is streamed to a data
 * callback (a watch never ends by itself) and a done callback reports the
 * end.  Rules:
 *  1. Loop-thread only.
 *  2. resolver_etcd_cancel may be called anywhere, callbacks included; a
 *     cancelled request gets no further callback of any kind.
 *  3. The done callback is the last call for a request; the request is
 *     freed right after it returns.
 */
#ifndef RESOLVER_ETCD_H
#define RESOLVER_ETCD_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "loop.h"

typedef struct resolver_etcd resolver_etcd;
typedef struct resolver_etcd_request resolver_etcd_request;

/* Body bytes as they arrive.  Return 0 to go on, non-zero to abort the
 * request (it then ends with a done callback carrying `aborted`). */
typedef int (*resolver_etcd_data_cb)(void *arg, const char *data, size_t len);
/* `http_status` 0 when no response arrived; `error` "" on success, else a
 * description (curl's or "HTTP 503: body..."). */
typedef void (*resolver_etcd_done_cb)(void *arg, long http_status, const char *error);

resolver_etcd *resolver_etcd_new(resolver_loop *loop, const resolver_config *cfg);
void resolver_etcd_del(resolver_etcd *etcd);

enum {
    /* A long-lived stream: no total timeout, only the connect timeout;
     * sends "Grpc-Metadata-Hasleader: true". */
    RESOLVER_ETCD_STREAM = 1
};

/* Starts a POST of `body` (copied) to the current endpoint.  NULL on
 * allocation failure. */
resolver_etcd_request *resolver_etcd_post(resolver_etcd *etcd, const char *path, const char *body,
                                          unsigned flags, resolver_etcd_data_cb data_cb,
                                          resolver_etcd_done_cb done_cb, void *arg);
void resolver_etcd_cancel(resolver_etcd_request *req);

/* The endpoint requests go to now, and moving to the next one (after a
 * failure; callers add their own backoff). */
const char *resolver_etcd_endpoint(const resolver_etcd *etcd);
void resolver_etcd_rotate(resolver_etcd *etcd);

/* Loop time when etcd last answered anything (0: never). */
uint64_t resolver_etcd_last_heard(const resolver_etcd *etcd);
void resolver_etcd_heard(resolver_etcd *etcd);

#endif
