/*
 * etcd.h - HTTP requests to etcd's JSON gateway, run on the engine loop
 * through libcurl's multi_socket API.
 *
 * One rsv_etcd per engine holds the curl multi handle, the endpoints of
 * the cluster and which one is in use, the auth token, and a health probe of
 * the member in use.  Requests are POSTs of a JSON body to a path such as
 * "/v3/kv/range"; the response body is streamed to a data callback (a watch
 * never ends by itself) and a done callback reports the end.
 *
 * Rules:
 *  1. Loop-thread only.
 *  2. rsv_etcd_cancel may be called anywhere, callbacks included; a
 *     cancelled request gets no further callback of any kind.
 *  3. The done callback is the last call for a request; the request is
 *     freed right after it returns.  A request that is ending is freed by
 *     its own end, never by a callback nested in it: cancelling it then
 *     (say, from a stream's done callback run by the failover this very
 *     request caused) only suppresses its done callback.
 *  4. Failover is decided here, not by callers: a request that fails to
 *     connect, times out, gets a 5xx, or is marked bad moves the cluster to
 *     the next endpoint (once per failure of the endpoint in use), and every
 *     stream still open on the bad member is ended with an error so that its
 *     owner reconnects (over https every request on it: they share its
 *     HTTP/2 connection, which is closed).  The member in use is probed
 *     every few seconds (maintenance/status: alive and has a leader; over
 *     https on the shared connection, which this judges).
 *  5. With auth configured, requests wait (queued, not failed) until a token
 *     is had; a token that etcd rejects is dropped and fetched again with
 *     backoff, never in a loop.  Secrets are never logged.
 *  6. Every warning here can repeat as long as etcd is down: each cause (a
 *     failover, a failed member probe, auth waiting for etcd, auth
 *     refused, an unreadable password file) has its own limiter, one line
 *     per 10 s (log.h); the lines suppressed are still logged at debug.
 */
#ifndef RSV_ETCD_H
#define RSV_ETCD_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "loop.h"

typedef struct rsv_etcd rsv_etcd;
typedef struct rsv_etcd_request rsv_etcd_request;

/* Body bytes as they arrive.  Return 0 to go on, non-zero to abort the
 * request (it then ends with a done callback carrying an error). */
typedef int (*rsv_etcd_data_cb)(void *arg, const char *data, size_t len);
/* `http_status` 0 when no response arrived; `error` "" on success, else a
 * description for logs that starts with the URL: curl's error buffer, the
 * timeout that fired by its name ("no answer within dial_timeout_ms=2000"),
 * "HTTP 400: <etcd's message> (gRPC code 3 INVALID_ARGUMENT)", or "etcd
 * member failed: <why>" for a stream ended by a failover. */
typedef void (*rsv_etcd_done_cb)(void *arg, long http_status, const char *error);

/* NULL on allocation failure. */
rsv_etcd *rsv_etcd_new(rsv_loop *loop, const resolver_config *cfg);
void rsv_etcd_del(rsv_etcd *etcd);

enum {
    /* A long-lived stream: no total timeout, only the connect timeout;
     * sends "Grpc-Metadata-Hasleader: true". */
    RSV_ETCD_STREAM = 1,
    /* A liveness check that answers within etcd.dial_timeout_ms: over http
     * on a new connection (a pooled one may be as stalled as the stream in
     * question); over https on the member's shared HTTP/2 connection, so
     * that a stall of it fails the member over. */
    RSV_ETCD_CHECK = 2
};

/* Starts a POST of `body` (copied) to the endpoint in use.  NULL on
 * allocation failure. */
rsv_etcd_request *rsv_etcd_post(rsv_etcd *etcd, const char *path, const char *body, unsigned flags,
                                rsv_etcd_data_cb data_cb, rsv_etcd_done_cb done_cb, void *arg);
void rsv_etcd_cancel(rsv_etcd_request *req);

/* The caller saw the member misbehave inside a 200 response (a watch error
 * such as "no leader"): when the request ends, fail over (rule 4), giving
 * `why` as the reason. */
void rsv_etcd_mark_bad(rsv_etcd_request *req, const char *why);
/* The endpoint a running request went to. */
const char *rsv_etcd_request_endpoint(const rsv_etcd_request *req);
/* The caller saw etcd reject the token inside a 200 response (a watch
 * cancelled as Unauthenticated): fetch a new one (rule 5). */
void rsv_etcd_token_rejected(rsv_etcd *etcd);

/* The endpoint requests go to now. */
const char *rsv_etcd_endpoint(const rsv_etcd *etcd);
/* Loop time when etcd last answered anything (0: never). */
uint64_t rsv_etcd_last_heard(const rsv_etcd *etcd);
/* The cluster's revision as the last good member probe saw it, and when
 * (*seen_ms, loop ms); 0 before any.  Probes run every 3 s while a watch
 * stream is open. */
int64_t rsv_etcd_cluster_revision(const rsv_etcd *etcd, uint64_t *seen_ms);
void rsv_etcd_heard(rsv_etcd *etcd);
/* The cluster_id of a response header (0: none): remembered; a change from
 * a known one (etcd replaced, or restored from a backup: its revisions are
 * unrelated to the old ones) is logged and counted, and returns 1.  Every
 * header that passes through a caller should be noted (the member probe's
 * are, here). */
int rsv_etcd_note_cluster(rsv_etcd *etcd, uint64_t cluster_id);
/* The cluster_id last noted (0: none yet). */
uint64_t rsv_etcd_cluster_id(const rsv_etcd *etcd);
/* Counters for status and metrics. */
uint64_t rsv_etcd_failovers(const rsv_etcd *etcd);
uint64_t rsv_etcd_cluster_changes(const rsv_etcd *etcd);
uint64_t rsv_etcd_authentications(const rsv_etcd *etcd);

/* Connections and streams now (status and metrics).  Over https the
 * requests to a member share one HTTP/2 connection; over http each open
 * request holds its own (etcd's gateway is HTTP/1.1 there). */
typedef struct {
    size_t connections;         /* open TCP connections to etcd, pooled idle ones included */
    size_t connections_current; /* of those, to the member in use */
    size_t streams;             /* requests running: watch streams, ranges, keepalives, probes */
    size_t watch_streams;       /* of those, watch streams */
    int http2;                  /* the member in use is https: HTTP/2, multiplexed */
} rsv_etcd_conns;
void rsv_etcd_conns_get(const rsv_etcd *etcd, rsv_etcd_conns *out);

/* Rule 4's decisions, pure (unit-tested alone).  Whether a request's end
 * says its member is not serving: curl's result (a CURLcode: no connection,
 * a timeout, a cut transfer, a TLS handshake failure) or a 5xx answer. */
int rsv_etcd_member_failure(int curl_result, long http_status);
/* The endpoint to use after the member `failed` failed while `current` of
 * `n` is in use: the next one in the list, round and round; `current`
 * itself when a member already left failed again (one failover per
 * failure) or when there is no other. */
size_t rsv_etcd_next_endpoint(size_t current, size_t n, size_t failed);

#endif
