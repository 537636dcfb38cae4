/*
 * check_discovery.c - discovery's own bookkeeping without etcd: revisions
 * (snapshot at R, watch from R+1, resume from the last revision seen,
 * duplicates dropped, progress notifications), resyncs (compaction, another
 * cluster, an undecodable message), paged ranges, a silent stream, and
 * what it tells etcd.c (a member to leave, a token to drop); and etcd.c's
 * failover decisions, which are pure functions (etcd.h rule 4).
 *
 * A fake transport (rsv_discovery_transport, discovery.h) stands in for
 * etcd.c: it records each request discovery posts and the test answers it
 * with the bytes etcd 3.4's JSON gateway sends (the shapes of
 * check_etcdproto.c).  The fake keeps etcd.h's rules that discovery relies
 * on: a cancelled request gets no callback, the done callback comes last,
 * a reader's abort ends the request with "aborted by the reader".  What
 * etcd itself does is checked by the integration tests against real etcd
 * (test_etcd_*.sh); these check what discovery does with the answers.
 */
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "discovery.h"
#include "etcdproto.h"
#include "loop.h"
#include "resolver.h"

/* ---- the fake etcd ------------------------------------------------------ */

struct rsv_etcd {
    uint64_t cluster_id; /* as etcd.c's note_cluster keeps it */
    uint64_t cluster_changes;
    int64_t cluster_revision;
    uint64_t cluster_revision_ms;
    unsigned token_rejections, heard;
};

struct rsv_etcd_request {
    char *path, *body;
    unsigned flags;
    rsv_etcd_data_cb data_cb;
    rsv_etcd_done_cb done_cb;
    void *arg;
    int cancelled, ended, bad;
    char bad_why[256];
};

#define MAX_REQS 64
static rsv_etcd fake;
static rsv_etcd_request *reqs[MAX_REQS];
static size_t n_reqs, n_seen;
static unsigned failovers; /* requests that ended marked bad */

static rsv_etcd_request *fake_post(rsv_etcd *etcd, const char *path, const char *body,
                                   unsigned flags, rsv_etcd_data_cb data_cb,
                                   rsv_etcd_done_cb done_cb, void *arg)
{
    ck_assert_ptr_eq(etcd, &fake);
    ck_assert_uint_lt(n_reqs, MAX_REQS);
    rsv_etcd_request *r = calloc(1, sizeof(*r));
    ck_assert_ptr_nonnull(r);
    r->path = strdup(path);
    r->body = strdup(body);
    r->flags = flags;
    r->data_cb = data_cb;
    r->done_cb = done_cb;
    r->arg = arg;
    reqs[n_reqs++] = r;
    return r;
}

static void fake_cancel(rsv_etcd_request *req)
{
    if (req) {
        ck_assert(!req->ended);
        req->cancelled = 1;
    }
}

static void fake_mark_bad(rsv_etcd_request *req, const char *why)
{
    if (req) {
        req->bad = 1;
        snprintf(req->bad_why, sizeof(req->bad_why), "%s", why);
    }
}

static const char *fake_request_endpoint(const rsv_etcd_request *req)
{
    return "http://127.0.0.1:2379";
}

static void fake_token_rejected(rsv_etcd *etcd)
{
    etcd->token_rejections++;
}

static const char *fake_endpoint(const rsv_etcd *etcd)
{
    return "http://127.0.0.1:2379";
}

static int64_t fake_cluster_revision(const rsv_etcd *etcd, uint64_t *seen_ms)
{
    *seen_ms = etcd->cluster_revision_ms;
    return etcd->cluster_revision;
}

static void fake_heard(rsv_etcd *etcd)
{
    etcd->heard++;
}

static int fake_note_cluster(rsv_etcd *etcd, uint64_t id)
{
    if (id == 0 || id == etcd->cluster_id)
        return 0;
    uint64_t old = etcd->cluster_id;
    etcd->cluster_id = id;
    etcd->cluster_changes += old != 0;
    return old != 0;
}

static uint64_t fake_cluster_id(const rsv_etcd *etcd)
{
    return etcd->cluster_id;
}

static const rsv_discovery_transport fake_transport = {
    .post = fake_post,
    .cancel = fake_cancel,
    .mark_bad = fake_mark_bad,
    .request_endpoint = fake_request_endpoint,
    .token_rejected = fake_token_rejected,
    .endpoint = fake_endpoint,
    .cluster_revision = fake_cluster_revision,
    .heard = fake_heard,
    .note_cluster = fake_note_cluster,
    .cluster_id = fake_cluster_id,
};

/* Ends a request as etcd.c does: the done callback, unless cancelled. */
static void end_req(rsv_etcd_request *r, long status, const char *error)
{
    ck_assert(!r->ended);
    r->ended = 1;
    if (r->cancelled)
        return;
    if (r->bad)
        failovers++;
    r->done_cb(r->arg, status, error);
}

/* Feeds body bytes; a reader's abort ends the request (etcd.c rule 3).
 * Returns the data callback's answer. */
static int feed(rsv_etcd_request *r, const char *bytes)
{
    ck_assert(!r->ended);
    ck_assert(!r->cancelled);
    int rc = r->data_cb(r->arg, bytes, strlen(bytes));
    if (rc != 0)
        end_req(r, 200, "aborted by the reader");
    return rc;
}

/* A unary answer: the whole body, then the end. */
static void answer(rsv_etcd_request *r, const char *body)
{
    ck_assert_int_eq(feed(r, body), 0);
    end_req(r, 200, "");
}

/* ---- the loop and the receiver ------------------------------------------ */

static rsv_loop *loop;
static rsv_discovery *disc;
static char events[8192];
static size_t events_len;

static void rec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void rec(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(events + events_len, sizeof(events) - events_len, fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)(sizeof(events) - events_len));
    events_len += (size_t)n;
}

static void on_snapshot(void *arg, const rsv_kv *kvs, size_t n, int64_t revision)
{
    rec("S%lld", (long long)revision);
    for (size_t i = 0; i < n; i++)
        rec(" %s=%s", kvs[i].key, kvs[i].value);
    rec("\n");
}

static void on_put(void *arg, const rsv_kv *kv)
{
    rec("P %s=%s m=%lld\n", kv->key, kv->value, (long long)kv->mod_revision);
}

static void on_delete(void *arg, const rsv_kv *kv)
{
    rec("D %s m=%lld\n", kv->key, (long long)kv->mod_revision);
}

static void on_batch(void *arg, int begin)
{
    rec(begin ? "B[\n" : "B]\n");
}

/* The events since the last call, then forgotten. */
static const char *take_events(void)
{
    static char out[sizeof(events)];
    memcpy(out, events, events_len + 1);
    events_len = 0;
    events[0] = '\0';
    return out;
}

static void setup(void)
{
    memset(&fake, 0, sizeof(fake));
    n_reqs = n_seen = 0;
    failovers = 0;
    events_len = 0;
    events[0] = '\0';
    loop = rsv_loop_new();
    ck_assert_ptr_nonnull(loop);
    static const rsv_discovery_callbacks cb = {on_snapshot, on_put, on_delete, on_batch};
    disc = rsv_discovery_new_on(&fake_transport, loop, &fake, "user.rpc/", &cb, NULL);
    ck_assert_ptr_nonnull(disc);
}

static void teardown(void)
{
    rsv_discovery_del(disc);
    rsv_loop_del(loop);
    for (size_t i = 0; i < n_reqs; i++) {
        free(reqs[i]->path);
        free(reqs[i]->body);
        free(reqs[i]);
    }
}

/* Runs the loop (retry timers, at most `ms`) until discovery posts its
 * next request, which must go to `path`. */
static rsv_etcd_request *next_req_within(const char *path, uint64_t ms)
{
    uint64_t until = rsv_loop_update_time(loop) + ms;
    while (n_seen == n_reqs && rsv_loop_update_time(loop) < until)
        rsv_loop_run_once(loop, 10);
    ck_assert_uint_gt(n_reqs, n_seen);
    ck_assert_uint_eq(n_reqs, n_seen + 1); /* one at a time */
    rsv_etcd_request *r = reqs[n_seen++];
    ck_assert_str_eq(r->path, path);
    return r;
}

static rsv_etcd_request *next_req(const char *path)
{
    return next_req_within(path, 6000);
}

/* A member of the request body's create_request (watch) or of the body
 * itself (range), an int64 as the gateway's string; 0 when absent. */
static long long body_int(const rsv_etcd_request *r, const char *name)
{
    json_t *root = json_loads(r->body, 0, NULL);
    ck_assert_ptr_nonnull(root);
    json_t *o = json_object_get(root, "create_request");
    const char *v = json_string_value(json_object_get(o ? o : root, name));
    long long n = v ? atoll(v) : 0;
    json_decref(root);
    return n;
}

/* A member of the body that is base64 (key, range_end), decoded. */
static char *body_key(const rsv_etcd_request *r, const char *name, size_t *len)
{
    json_t *root = json_loads(r->body, 0, NULL);
    ck_assert_ptr_nonnull(root);
    const char *v = json_string_value(json_object_get(root, name));
    ck_assert_ptr_nonnull(v);
    char *k = rsv_base64_decode(v, strlen(v), len);
    json_decref(root);
    return k;
}

/* ---- what etcd 3.4's gateway sends (shapes of check_etcdproto.c) -------- */

#define CLUSTER "14841639068965178418"
#define OTHER_CLUSTER "9372538179322589801"

static char *header(const char *cluster, long long rev)
{
    static char h[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(h[i], sizeof(h[i]),
             "\"header\":{\"cluster_id\":\"%s\",\"member_id\":\"10276657743932975437\","
             "\"revision\":\"%lld\",\"raft_term\":\"2\"}",
             cluster, rev);
    return h[i];
}

/* A kv as the gateway writes it: key and value base64, int64 as strings. */
static char *kv_json(const char *key, const char *value, long long create, long long mod,
                     long long version)
{
    char *k = rsv_base64_encode(key, strlen(key));
    char *v = rsv_base64_encode(value, strlen(value));
    char *s = malloc(512);
    snprintf(s, 512,
             "{\"key\":\"%s\",\"create_revision\":\"%lld\",\"mod_revision\":\"%lld\","
             "\"version\":\"%lld\",\"value\":\"%s\"}",
             k, create, mod, version, v);
    free(k);
    free(v);
    return s;
}

static void range_answer(rsv_etcd_request *r, const char *cluster, long long rev, int more,
                         const char *kvs, int count)
{
    char body[8192];
    if (kvs[0])
        snprintf(body, sizeof(body), "{%s,\"kvs\":[%s]%s,\"count\":\"%d\"}", header(cluster, rev),
                 kvs, more ? ",\"more\":true" : "", count);
    else
        snprintf(body, sizeof(body), "{%s}", header(cluster, rev));
    answer(r, body);
}

static void feed_created(rsv_etcd_request *r, long long rev)
{
    char m[512];
    snprintf(m, sizeof(m), "{\"result\":{%s,\"created\":true}}\n", header(CLUSTER, rev));
    ck_assert_int_eq(feed(r, m), 0);
}

static int feed_put(rsv_etcd_request *r, const char *cluster, const char *key, const char *value,
                    long long create, long long mod, long long version)
{
    char *kv = kv_json(key, value, create, mod, version);
    char m[1024];
    snprintf(m, sizeof(m), "{\"result\":{%s,\"events\":[{\"kv\":%s}]}}\n", header(cluster, mod),
             kv);
    free(kv);
    return feed(r, m);
}

static void feed_delete(rsv_etcd_request *r, const char *key, long long mod)
{
    char *k = rsv_base64_encode(key, strlen(key));
    char m[1024];
    snprintf(m, sizeof(m),
             "{\"result\":{%s,\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":\"%s\","
             "\"mod_revision\":\"%lld\"}}]}}\n",
             header(CLUSTER, mod), k, mod);
    free(k);
    ck_assert_int_eq(feed(r, m), 0);
}

static void feed_progress(rsv_etcd_request *r, long long rev)
{
    char m[512];
    snprintf(m, sizeof(m), "{\"result\":{%s}}\n", header(CLUSTER, rev));
    ck_assert_int_eq(feed(r, m), 0);
}

/* Initial sync: a one-page range at revision 5 with two keys, then a
 * watch created from 6.  Returns the watch. */
static rsv_etcd_request *sync_at_5(void)
{
    rsv_etcd_request *range = next_req("/v3/kv/range");
    ck_assert_int_eq(body_int(range, "revision"), 0); /* the latest */
    size_t len;
    char *k = body_key(range, "key", &len);
    ck_assert_str_eq(k, "user.rpc/");
    free(k);
    k = body_key(range, "range_end", &len);
    ck_assert_str_eq(k, "user.rpc0"); /* the prefix's last byte + 1 */
    free(k);
    char *a = kv_json("user.rpc/1", "10.0.0.1:9001", 2, 2, 1);
    char *b = kv_json("user.rpc/2", "10.0.0.2:9001", 3, 5, 2);
    char kvs[1024];
    snprintf(kvs, sizeof(kvs), "%s,%s", a, b);
    free(a);
    free(b);
    ck_assert_int_eq(rsv_discovery_synced(disc), 0);
    range_answer(range, CLUSTER, 5, 0, kvs, 2);
    ck_assert_str_eq(take_events(), "S5 user.rpc/1=10.0.0.1:9001 user.rpc/2=10.0.0.2:9001\n");
    ck_assert_int_eq(rsv_discovery_synced(disc), 1);
    ck_assert_int_eq(rsv_discovery_revision(disc), 5);
    rsv_etcd_request *w = next_req("/v3/watch");
    ck_assert_uint_eq(w->flags & RSV_ETCD_STREAM, RSV_ETCD_STREAM);
    ck_assert_int_eq(body_int(w, "start_revision"), 6);
    ck_assert_int_eq(rsv_discovery_watching(disc), 0);
    feed_created(w, 5);
    ck_assert_int_eq(rsv_discovery_watching(disc), 1);
    return w;
}

/* ---- revision bookkeeping ----------------------------------------------- */

START_TEST(test_snapshot_then_watch)
{
    rsv_etcd_request *w = sync_at_5();
    ck_assert_int_eq(feed_put(w, CLUSTER, "user.rpc/3", "10.0.0.3:9001", 6, 6, 1), 0);
    feed_delete(w, "user.rpc/1", 7);
    ck_assert_str_eq(take_events(), "P user.rpc/3=10.0.0.3:9001 m=6\nD user.rpc/1 m=7\n");
    ck_assert_int_eq(rsv_discovery_revision(disc), 7);
    ck_assert_uint_eq(rsv_discovery_reconnects(disc), 0);
    ck_assert_uint_eq(rsv_discovery_resyncs(disc), 0);
    ck_assert_uint_gt(fake.heard, 0);
    ck_assert_uint_eq(fake.cluster_id, 14841639068965178418ULL);
}
END_TEST

/* A broken stream resumes with a watch from the last revision + 1, never a
 * range; the error is kept for status. */
START_TEST(test_resume_after_broken_stream)
{
    rsv_etcd_request *w = sync_at_5();
    ck_assert_int_eq(feed_put(w, CLUSTER, "user.rpc/3", "10.0.0.3:9001", 6, 6, 1), 0);
    take_events();
    end_req(w, 200, "http://127.0.0.1:2379/v3/watch: Recv failure: Connection reset by peer");
    ck_assert_int_eq(rsv_discovery_watching(disc), 0);
    ck_assert_uint_eq(rsv_discovery_reconnects(disc), 1);
    ck_assert_ptr_nonnull(strstr(rsv_discovery_last_error(disc), "Connection reset by peer"));
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 7);
    feed_created(w, 9);
    ck_assert_str_eq(take_events(), "");
    /* A stream that ends cleanly (etcd closing it) resumes the same way. */
    end_req(w, 200, "");
    ck_assert_str_eq(rsv_discovery_last_error(disc), "watch stream ended");
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 7);
    ck_assert_uint_eq(rsv_discovery_reconnects(disc), 2);
    ck_assert_uint_eq(rsv_discovery_resyncs(disc), 0);
}
END_TEST

/* A resumed watch may repeat events already applied: they are dropped by
 * mod_revision; events of one revision (a txn) in one message are all
 * applied, as one batch. */
START_TEST(test_duplicates_dropped)
{
    rsv_etcd_request *w = sync_at_5();
    ck_assert_int_eq(feed_put(w, CLUSTER, "user.rpc/3", "10.0.0.3:9001", 6, 6, 1), 0);
    ck_assert_int_eq(feed_put(w, CLUSTER, "user.rpc/4", "10.0.0.4:9001", 7, 7, 1), 0);
    take_events();
    end_req(w, 200, "http://127.0.0.1:2379/v3/watch: Recv failure: Connection reset by peer");
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 8);
    feed_created(w, 7);
    /* Old and duplicate revisions (as another member, behind, may send). */
    ck_assert_int_eq(feed_put(w, CLUSTER, "user.rpc/3", "10.0.0.3:9001", 6, 6, 1), 0);
    ck_assert_int_eq(feed_put(w, CLUSTER, "user.rpc/4", "10.0.0.4:9001", 7, 7, 1), 0);
    ck_assert_int_eq(feed_put(w, CLUSTER, "user.rpc/2", "10.0.0.2:9002", 3, 4, 2), 0);
    ck_assert_str_eq(take_events(), "");
    ck_assert_int_eq(rsv_discovery_revision(disc), 7);
    /* One message of revision 8 with a delete and a put (a txn), with an
     * old event of revision 7 in front. */
    char *a = kv_json("user.rpc/4", "10.0.0.4:9001", 7, 7, 1);
    char *b = kv_json("user.rpc/5", "10.0.0.4:9001", 8, 8, 1);
    char *k = rsv_base64_encode("user.rpc/3", 10);
    char m[2048];
    snprintf(m, sizeof(m),
             "{\"result\":{%s,\"events\":[{\"kv\":%s},{\"type\":\"DELETE\",\"kv\":{\"key\":"
             "\"%s\",\"mod_revision\":\"8\"}},{\"kv\":%s}]}}\n",
             header(CLUSTER, 8), a, k, b);
    free(a);
    free(b);
    free(k);
    ck_assert_int_eq(feed(w, m), 0);
    ck_assert_str_eq(take_events(), "B[\nD user.rpc/3 m=8\nP user.rpc/5=10.0.0.4:9001 m=8\nB]\n");
    ck_assert_int_eq(rsv_discovery_revision(disc), 8);
    /* Revision 8 again (a resumed watch from an older revision). */
    ck_assert_int_eq(feed_put(w, CLUSTER, "user.rpc/5", "10.0.0.4:9001", 8, 8, 1), 0);
    ck_assert_str_eq(take_events(), "");
}
END_TEST

/* A progress notification (no events) moves the revision to its header's;
 * the "created" message's header does not (historic events may follow). */
START_TEST(test_progress_notify)
{
    rsv_etcd_request *w = sync_at_5();
    ck_assert_int_eq(rsv_discovery_revision(disc), 5);
    end_req(w, 200, "http://127.0.0.1:2379/v3/watch: Recv failure: Connection reset by peer");
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 6);
    feed_created(w, 20); /* the cluster is at 20; 6..20 may still come */
    ck_assert_int_eq(rsv_discovery_revision(disc), 5);
    feed_progress(w, 12);
    ck_assert_int_eq(rsv_discovery_revision(disc), 12);
    feed_progress(w, 9); /* never backwards */
    ck_assert_int_eq(rsv_discovery_revision(disc), 12);
    ck_assert_str_eq(take_events(), "");
    end_req(w, 200, "http://127.0.0.1:2379/v3/watch: Recv failure: Connection reset by peer");
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 13);
}
END_TEST

/* The revision we need was compacted: the watch answers canceled with
 * compact_revision (and stays open): discovery closes it and ranges
 * afresh, then watches from the new range's revision + 1. */
START_TEST(test_compacted_resyncs)
{
    rsv_etcd_request *w = sync_at_5();
    end_req(w, 200, "http://127.0.0.1:2379/v3/watch: Recv failure: Connection reset by peer");
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 6);
    char m[1024];
    snprintf(m, sizeof(m),
             "{\"result\":{%s,\"watch_id\":\"1\",\"created\":true}}\n"
             "{\"result\":{%s,\"watch_id\":\"1\",\"canceled\":true,\"compact_revision\":\"10\","
             "\"cancel_reason\":\"mvcc: required revision has been compacted\"}}\n",
             header(CLUSTER, 30), header(CLUSTER, 30));
    ck_assert_int_ne(feed(w, m), 0);
    ck_assert_int_eq(w->cancelled, 1); /* closed by discovery: no done callback */
    ck_assert_uint_eq(rsv_discovery_resyncs(disc), 1);
    ck_assert_ptr_nonnull(strstr(rsv_discovery_last_error(disc), "revision 6 compacted"));
    rsv_etcd_request *range = next_req("/v3/kv/range");
    ck_assert_int_eq(body_int(range, "revision"), 0);
    char *a = kv_json("user.rpc/2", "10.0.0.2:9001", 3, 5, 2);
    range_answer(range, CLUSTER, 30, 0, a, 1);
    free(a);
    ck_assert_str_eq(take_events(), "S30 user.rpc/2=10.0.0.2:9001\n");
    ck_assert_int_eq(rsv_discovery_revision(disc), 30);
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 31);
    ck_assert_uint_eq(rsv_discovery_reconnects(disc), 1); /* a resync is not a failure */
}
END_TEST

/* Another cluster answers behind the same endpoints (restored from a
 * backup): its revisions are unrelated, so none of its events is applied
 * before a fresh range, whose revision may be lower than ours. */
START_TEST(test_cluster_change_resyncs)
{
    rsv_etcd_request *w = sync_at_5();
    ck_assert_int_ne(feed_put(w, OTHER_CLUSTER, "user.rpc/9", "10.0.0.9:9001", 3, 3, 1), 0);
    ck_assert_int_eq(w->cancelled, 1);
    ck_assert_str_eq(take_events(), "");
    ck_assert_uint_eq(fake.cluster_changes, 1);
    ck_assert_uint_eq(rsv_discovery_resyncs(disc), 1);
    ck_assert_ptr_nonnull(strstr(rsv_discovery_last_error(disc), "another etcd cluster"));
    rsv_etcd_request *range = next_req("/v3/kv/range");
    char *a = kv_json("user.rpc/9", "10.0.0.9:9001", 3, 3, 1);
    range_answer(range, OTHER_CLUSTER, 3, 0, a, 1);
    free(a);
    ck_assert_str_eq(take_events(), "S3 user.rpc/9=10.0.0.9:9001\n");
    ck_assert_int_eq(rsv_discovery_revision(disc), 3);
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 4);
}
END_TEST

/* Someone else (the member probe, another prefix) heard the other cluster
 * while our stream was down: the retry ranges instead of resuming. */
START_TEST(test_cluster_change_seen_elsewhere)
{
    rsv_etcd_request *w = sync_at_5();
    end_req(w, 200, "http://127.0.0.1:2379/v3/watch: Recv failure: Connection reset by peer");
    ck_assert_int_eq(fake_note_cluster(&fake, 9372538179322589801ULL), 1);
    rsv_etcd_request *range = next_req("/v3/kv/range");
    ck_assert_uint_eq(rsv_discovery_resyncs(disc), 1);
    range_answer(range, OTHER_CLUSTER, 2, 0, "", 0);
    ck_assert_str_eq(take_events(), "S2\n");
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 3);
}
END_TEST

/* A watch message that cannot be decoded: its events would be lost while
 * later ones advance the revision, so nothing after it is applied and the
 * prefix is ranged again. */
START_TEST(test_undecodable_message_resyncs)
{
    rsv_etcd_request *w = sync_at_5();
    char m[1024];
    snprintf(m, sizeof(m),
             "{\"result\":{%s,\"events\":[{\"kv\":{\"key\":\"Y===\"}}]}}\n"
             "{\"result\":{%s}}\n",
             header(CLUSTER, 6), header(CLUSTER, 7));
    ck_assert_int_ne(feed(w, m), 0);
    ck_assert_int_eq(w->cancelled, 1);
    ck_assert_int_eq(rsv_discovery_revision(disc), 5); /* the progress after it was not taken */
    ck_assert_uint_eq(rsv_discovery_resyncs(disc), 1);
    rsv_etcd_request *range = next_req("/v3/kv/range");
    range_answer(range, CLUSTER, 7, 0, "", 0);
    ck_assert_str_eq(take_events(), "S7\n");
}
END_TEST

/* A range is read in pages at the first page's revision; the next page
 * starts after the last key; the snapshot is delivered once. */
START_TEST(test_paged_range)
{
    rsv_etcd_request *r = next_req("/v3/kv/range");
    ck_assert_int_eq(body_int(r, "limit"), 10);
    char kvs[8192] = "";
    for (int i = 0; i < 10; i++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "user.rpc/%02d", i);
        snprintf(val, sizeof(val), "10.0.0.%d:9001", i);
        char *kv = kv_json(key, val, 2, 2, 1);
        snprintf(kvs + strlen(kvs), sizeof(kvs) - strlen(kvs), "%s%s", i ? "," : "", kv);
        free(kv);
    }
    range_answer(r, CLUSTER, 40, 1, kvs, 12);
    ck_assert_str_eq(take_events(), "");
    ck_assert_int_eq(rsv_discovery_synced(disc), 0);
    r = next_req("/v3/kv/range");
    ck_assert_int_eq(body_int(r, "revision"), 40);
    ck_assert_int_gt(body_int(r, "limit"), 10); /* small values: bigger pages */
    size_t len;
    char *k = body_key(r, "key", &len);
    ck_assert_uint_eq(len, 12);
    ck_assert_int_eq(memcmp(k, "user.rpc/09\0", 12), 0);
    free(k);
    char *a = kv_json("user.rpc/10", "10.0.0.10:9001", 2, 2, 1);
    char *b = kv_json("user.rpc/11", "10.0.0.11:9001", 2, 2, 1);
    snprintf(kvs, sizeof(kvs), "%s,%s", a, b);
    free(a);
    free(b);
    range_answer(r, CLUSTER, 41, 0, kvs, 12); /* the header says now; kvs are as of 40 */
    const char *ev = take_events();
    ck_assert_int_eq(strncmp(ev, "S40 user.rpc/00=10.0.0.0:9001 ", 30), 0);
    ck_assert_ptr_nonnull(strstr(ev, " user.rpc/11=10.0.0.11:9001\n"));
    ck_assert_int_eq(rsv_discovery_revision(disc), 40);
    r = next_req("/v3/watch");
    ck_assert_int_eq(body_int(r, "start_revision"), 41);
}
END_TEST

/* Another cluster answering a later page: the pages do not belong
 * together; the range starts over (a failure, retried). */
START_TEST(test_paged_range_other_cluster)
{
    rsv_etcd_request *r = next_req("/v3/kv/range");
    char *a = kv_json("user.rpc/1", "10.0.0.1:9001", 2, 2, 1);
    range_answer(r, CLUSTER, 40, 1, a, 2);
    r = next_req("/v3/kv/range");
    ck_assert_int_eq(body_int(r, "revision"), 40);
    range_answer(r, OTHER_CLUSTER, 4, 0, a, 1);
    ck_assert_str_eq(take_events(), "");
    ck_assert_ptr_nonnull(strstr(rsv_discovery_last_error(disc), "paged range"));
    r = next_req("/v3/kv/range");
    ck_assert_int_eq(body_int(r, "revision"), 0); /* from scratch */
    range_answer(r, OTHER_CLUSTER, 4, 0, a, 1);
    free(a);
    ck_assert_str_eq(take_events(), "S4 user.rpc/1=10.0.0.1:9001\n");
}
END_TEST

/* A failed range is retried as a range, with backoff. */
START_TEST(test_range_failure_retries)
{
    rsv_etcd_request *r = next_req("/v3/kv/range");
    end_req(r, 0, "http://127.0.0.1:2379/v3/kv/range: Failed to connect to 127.0.0.1 port 2379");
    ck_assert_ptr_nonnull(strstr(rsv_discovery_last_error(disc), "Failed to connect"));
    r = next_req("/v3/kv/range");
    answer(r, "{\"header\":{\"revision\":\"5\"}");
    ck_assert_ptr_nonnull(strstr(rsv_discovery_last_error(disc), "bad range response"));
    r = next_req("/v3/kv/range");
    range_answer(r, CLUSTER, 5, 0, "", 0);
    ck_assert_str_eq(take_events(), "S5\n");
    ck_assert_uint_eq(rsv_discovery_reconnects(disc), 2);
}
END_TEST

/* A stream silent for SILENT_MS (10 s) while the member probe saw the
 * cluster move past our revision: a keys-only range over the revisions
 * since ours asks whether the prefix changed.  A key modified since says
 * the stream missed it: abandoned, resumed from our revision + 1.  (Takes
 * about 12 s of the loop's real time.) */
START_TEST(test_silent_stream_abandoned)
{
    rsv_etcd_request *w = sync_at_5();
    fake.cluster_revision = 9;
    fake.cluster_revision_ms = rsv_loop_update_time(loop);
    rsv_etcd_request *check = next_req_within("/v3/kv/range", 16000);
    ck_assert_uint_eq(check->flags & RSV_ETCD_CHECK, RSV_ETCD_CHECK);
    ck_assert_int_eq(body_int(check, "revision"), 9);
    ck_assert_int_eq(body_int(check, "min_mod_revision"), 6);
    ck_assert_ptr_nonnull(strstr(check->body, "\"keys_only\":true"));
    ck_assert(!w->cancelled);
    /* etcd's answer: one key modified at 8, count 2 (etcd does not filter
     * the count). */
    char *k = rsv_base64_encode("user.rpc/2", 10);
    char body[512];
    snprintf(body, sizeof(body),
             "{%s,\"kvs\":[{\"key\":\"%s\",\"create_revision\":\"3\",\"mod_revision\":"
             "\"8\",\"version\":\"3\"}],\"count\":\"2\"}",
             header(CLUSTER, 9), k);
    free(k);
    answer(check, body);
    ck_assert_int_eq(w->cancelled, 1);
    ck_assert_uint_eq(rsv_discovery_silent_streams(disc), 1);
    ck_assert_ptr_nonnull(strstr(rsv_discovery_last_error(disc), "silent"));
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 6);
    ck_assert_str_eq(take_events(), "");
}
END_TEST

/* ---- what discovery tells etcd.c (failover, auth) ------------------------ */

/* A stream error inside a 200 ("no leader") marks the request bad, so that
 * etcd.c leaves the member when it ends; discovery resumes the watch. */
START_TEST(test_stream_error_marks_member_bad)
{
    rsv_etcd_request *w = sync_at_5();
    static const char err[] =
        "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"etcdserver: no leader\","
        "\"http_status\":\"Service Unavailable\"}}";
    ck_assert_int_ne(feed(w, err), 0);
    ck_assert_int_eq(w->bad, 1);
    ck_assert_ptr_nonnull(strstr(w->bad_why, "no leader"));
    ck_assert_uint_eq(failovers, 1);
    ck_assert_uint_eq(fake.token_rejections, 0);
    /* The owner's reason is etcd's words, not "aborted". */
    ck_assert_ptr_nonnull(strstr(rsv_discovery_last_error(disc), "etcdserver: no leader"));
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 6);
}
END_TEST

/* An error object without the trailing newline, split over two reads, is
 * taken when its last byte arrives (the parser scans bytes, not lines). */
START_TEST(test_stream_error_split_reads)
{
    rsv_etcd_request *w = sync_at_5();
    static const char err[] =
        "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"etcdserver: no leader\","
        "\"http_status\":\"Service Unavailable\"}}";
    ck_assert_int_eq(w->data_cb(w->arg, err, 20), 0);
    ck_assert_int_eq(w->bad, 0);
    ck_assert_int_ne(feed(w, err + 20), 0);
    ck_assert_int_eq(w->bad, 1);
    ck_assert_ptr_nonnull(strstr(rsv_discovery_last_error(disc), "no leader"));
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 6);
}
END_TEST

/* UNAUTHENTICATED is not the member's fault: the token is dropped instead
 * of leaving the member. */
START_TEST(test_stream_unauthenticated_drops_token)
{
    rsv_etcd_request *w = sync_at_5();
    static const char err[] = "{\"error\":{\"grpc_code\":16,\"http_code\":401,\"message\":"
                              "\"etcdserver: invalid auth token\",\"http_status\":"
                              "\"Unauthorized\"}}\n";
    ck_assert_int_ne(feed(w, err), 0);
    ck_assert_int_eq(w->bad, 0);
    ck_assert_uint_eq(failovers, 0);
    ck_assert_uint_eq(fake.token_rejections, 1);
    w = next_req("/v3/watch");
    /* A watch cancelled at creation for its token: dropped too. */
    char m[512];
    snprintf(m, sizeof(m),
             "{\"result\":{%s,\"canceled\":true,\"cancel_reason\":\"rpc error: code = "
             "Unauthenticated desc = etcdserver: invalid auth token\"}}\n",
             header(CLUSTER, 5));
    ck_assert_int_ne(feed(w, m), 0);
    ck_assert_uint_eq(fake.token_rejections, 2);
    ck_assert_uint_eq(rsv_discovery_resyncs(disc), 0);
    w = next_req("/v3/watch");
    ck_assert_int_eq(body_int(w, "start_revision"), 6);
}
END_TEST

/* Deleting the discovery cancels what it has in flight. */
START_TEST(test_del_cancels)
{
    rsv_etcd_request *w = sync_at_5();
    rsv_discovery_del(disc);
    disc = NULL;
    ck_assert_int_eq(w->cancelled, 1);
}
END_TEST

/* ---- etcd.c's failover decisions (etcd.h rule 4) ------------------------ */

START_TEST(test_member_failure)
{
    /* Not serving: no connection, a timeout, a cut transfer, TLS, 5xx. */
    static const int fail[] = {CURLE_COULDNT_CONNECT,  CURLE_OPERATION_TIMEDOUT, CURLE_RECV_ERROR,
                               CURLE_SEND_ERROR,       CURLE_GOT_NOTHING,        CURLE_PARTIAL_FILE,
                               CURLE_SSL_CONNECT_ERROR};
    for (size_t i = 0; i < sizeof(fail) / sizeof(fail[0]); i++)
        ck_assert_int_eq(rsv_etcd_member_failure(fail[i], 0), 1);
    ck_assert_int_eq(rsv_etcd_member_failure(CURLE_OK, 503), 1);
    ck_assert_int_eq(rsv_etcd_member_failure(CURLE_OK, 500), 1);
    /* The member answered: a 4xx (bad request, a token) is not its fault;
     * neither is our own abort or a name that does not resolve. */
    ck_assert_int_eq(rsv_etcd_member_failure(CURLE_OK, 200), 0);
    ck_assert_int_eq(rsv_etcd_member_failure(CURLE_OK, 400), 0);
    ck_assert_int_eq(rsv_etcd_member_failure(CURLE_OK, 401), 0);
    ck_assert_int_eq(rsv_etcd_member_failure(CURLE_WRITE_ERROR, 200), 0);
    ck_assert_int_eq(rsv_etcd_member_failure(CURLE_COULDNT_RESOLVE_HOST, 0), 0);
}
END_TEST

START_TEST(test_next_endpoint)
{
    /* Round and round the list. */
    ck_assert_uint_eq(rsv_etcd_next_endpoint(0, 3, 0), 1);
    ck_assert_uint_eq(rsv_etcd_next_endpoint(1, 3, 1), 2);
    ck_assert_uint_eq(rsv_etcd_next_endpoint(2, 3, 2), 0);
    /* A member already left fails again (its other streams ending): once
     * per failure, no second step. */
    ck_assert_uint_eq(rsv_etcd_next_endpoint(1, 3, 0), 1);
    ck_assert_uint_eq(rsv_etcd_next_endpoint(0, 3, 2), 0);
    /* One endpoint: nowhere to go. */
    ck_assert_uint_eq(rsv_etcd_next_endpoint(0, 1, 0), 0);
    ck_assert_uint_eq(rsv_etcd_next_endpoint(0, 2, 0), 1);
    ck_assert_uint_eq(rsv_etcd_next_endpoint(1, 2, 1), 0);
}
END_TEST

static Suite *discovery_suite(void)
{
    Suite *s = suite_create("discovery");
    TCase *t = tcase_create("revisions");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 20);
    tcase_add_test(t, test_snapshot_then_watch);
    tcase_add_test(t, test_resume_after_broken_stream);
    tcase_add_test(t, test_duplicates_dropped);
    tcase_add_test(t, test_progress_notify);
    tcase_add_test(t, test_compacted_resyncs);
    tcase_add_test(t, test_cluster_change_resyncs);
    tcase_add_test(t, test_cluster_change_seen_elsewhere);
    tcase_add_test(t, test_undecodable_message_resyncs);
    tcase_add_test(t, test_paged_range);
    tcase_add_test(t, test_paged_range_other_cluster);
    tcase_add_test(t, test_range_failure_retries);
    suite_add_tcase(s, t);
    t = tcase_create("silence");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 40);
    tcase_add_test(t, test_silent_stream_abandoned);
    suite_add_tcase(s, t);
    t = tcase_create("etcd");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 20);
    tcase_add_test(t, test_stream_error_marks_member_bad);
    tcase_add_test(t, test_stream_error_split_reads);
    tcase_add_test(t, test_stream_unauthenticated_drops_token);
    tcase_add_test(t, test_del_cancels);
    suite_add_tcase(s, t);
    t = tcase_create("failover");
    tcase_add_test(t, test_member_failure);
    tcase_add_test(t, test_next_endpoint);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(discovery_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
