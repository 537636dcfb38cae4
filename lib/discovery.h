/*
 * discovery.h - keeps one etcd prefix in view: range it at revision R (in
 * pages), then watch from R+1; resume from the last revision seen after any
 * stream end; range again (resync) after a gap a resumed watch cannot fill:
 * a compaction, another etcd cluster behind the endpoints (cluster_id
 * changed), a watch message too large to take or that cannot be decoded.
 * Reports what it learns through the callbacks.  Loop-thread only.
 *
 * Callbacks may not delete the discovery object itself.
 */
#ifndef RSV_DISCOVERY_H
#define RSV_DISCOVERY_H

#include <stdint.h>
#include "etcd.h"
#include "etcdproto.h"

typedef struct {
    /* The complete set of keys under the prefix at `revision` (initial sync
     * or a resync): the receiver reconciles, applying only the differences.
     * After another cluster appeared, `revision` may be lower than before. */
    void (*on_snapshot)(void *arg, const rsv_kv *kvs, size_t n, int64_t revision);
    /* One change, in revision order, each revision at most once. */
    void (*on_put)(void *arg, const rsv_kv *kv);
    void (*on_delete)(void *arg, const rsv_kv *kv);
    /* Optional (may be NULL): called with 1 before and 0 after the changes
     * of one watch message when it holds more than one (a `del --prefix`
     * may bring thousands, a txn a delete and a put), so that the receiver
     * applies them as one change (service.c: an address deleted and named
     * again by another key of the batch keeps its instance). */
    void (*on_batch)(void *arg, int begin);
} rsv_discovery_callbacks;

/* What discovery asks of etcd, as a table of etcd.h's calls (same names
 * without the rsv_etcd_ prefix, same rules), so that a unit test can stand
 * in for etcd and feed the gateway's bytes (tests/unit/check_discovery.c).
 * rsv_discovery_etcd holds the real calls. */
typedef struct {
    rsv_etcd_request *(*post)(rsv_etcd *etcd, const char *path, const char *body, unsigned flags,
                              rsv_etcd_data_cb data_cb, rsv_etcd_done_cb done_cb, void *arg);
    void (*cancel)(rsv_etcd_request *req);
    void (*mark_bad)(rsv_etcd_request *req, const char *why);
    const char *(*request_endpoint)(const rsv_etcd_request *req);
    void (*token_rejected)(rsv_etcd *etcd);
    const char *(*endpoint)(const rsv_etcd *etcd);
    int64_t (*cluster_revision)(const rsv_etcd *etcd, uint64_t *seen_ms);
    void (*heard)(rsv_etcd *etcd);
    int (*note_cluster)(rsv_etcd *etcd, uint64_t cluster_id);
    uint64_t (*cluster_id)(const rsv_etcd *etcd);
} rsv_discovery_transport;

extern const rsv_discovery_transport rsv_discovery_etcd;

typedef struct rsv_discovery rsv_discovery;

/* Starts at once (the first request goes out in the next loop iteration).
 * `prefix` and `callbacks` are copied.  NULL on allocation failure. */
rsv_discovery *rsv_discovery_new(rsv_loop *loop, rsv_etcd *etcd, const char *prefix,
                                 const rsv_discovery_callbacks *callbacks, void *arg);
/* The same over another transport (`t` is not copied: it must outlive the
 * discovery; `etcd` is only passed back to its calls). */
rsv_discovery *rsv_discovery_new_on(const rsv_discovery_transport *t, rsv_loop *loop,
                                    rsv_etcd *etcd, const char *prefix,
                                    const rsv_discovery_callbacks *callbacks, void *arg);
void rsv_discovery_del(rsv_discovery *d);

/* Highest revision applied (0 before the first snapshot). */
int64_t rsv_discovery_revision(const rsv_discovery *d);
/* 1 once the first snapshot was delivered. */
int rsv_discovery_synced(const rsv_discovery *d);
/* 1 while a watch stream is established. */
int rsv_discovery_watching(const rsv_discovery *d);
/* Counters for introspection. */
uint64_t rsv_discovery_reconnects(const rsv_discovery *d);
/* Streams abandoned because they stayed silent while the prefix changed. */
uint64_t rsv_discovery_silent_streams(const rsv_discovery *d);
/* Fresh ranges after a gap a resumed watch cannot fill (see the top). */
uint64_t rsv_discovery_resyncs(const rsv_discovery *d);
const char *rsv_discovery_last_error(const rsv_discovery *d);

#endif
