/*
 * discovery.c - range then watch one prefix, never missing an event.
 *
 * States: RANGE (a range in flight, page by page) -> WATCH (a stream open)
 * -> on any end: WAIT (a retry timer) -> WATCH again from last+1, or RANGE
 * again after a gap (resync, below).
 *
 * A range is read in pages at one revision R (the first page's header
 * revision; etcd answers later pages as of R), each page's size adapted to
 * the bytes per key seen so far, and the whole set goes to on_snapshot
 * once.  Then the watch starts from R+1.
 *
 * Resync: when what the stream delivered can no longer be trusted to be
 * complete, the prefix is ranged afresh and the receiver reconciles
 * (on_snapshot applies real differences only: an unchanged instance stays,
 * with its connection).  The causes: the revision we need was compacted;
 * another cluster answers behind the same endpoints (header.cluster_id
 * changed: etcd replaced or restored from a backup, its revisions
 * unrelated to ours); a watch message too large to take (a catch-up after
 * a long cut-off can exceed any limit, and resuming from the same revision
 * would only fetch it again: the range pages, the watch then starts after
 * it); a watch message that cannot be decoded (its events would be lost
 * while later messages advance the revision).  The parser stops at such a
 * message, so nothing after it is applied before the range.
 *
 * Revision bookkeeping (doc/design.md, Revision bookkeeping): `revision` is the highest revision
 * whose effects we have applied.  Events at or below it are duplicates
 * (a resumed watch may repeat them) and are dropped.  A progress message (no
 * events, not the "created" message) proves nothing changed up to its header
 * revision, so it advances `revision` too.  The "created" message's header
 * does not: historic events from start_revision may still follow it.
 *
 * A silent stream: a watch stream can stay open and deliver nothing while
 * its prefix changes (a stalled connection whose TCP peer, a proxy say,
 * still answers keepalives; the member probe goes over another connection
 * and is fine).  The gateway takes one request body per stream, so no
 * progress request can be sent on it; instead, when a stream has been
 * silent for SILENT_MS and the member probe saw the cluster's revision C
 * move past ours, a range at C asks whether the prefix changed in between:
 * a key modified after our revision (min_mod_revision, limit 1, keys only)
 * or a key count other than ours (a delete leaves no key behind to
 * filter on).  etcd ignores min_mod_revision when it counts (doc/design.md,
 * etcd gateway), so the count alone is no answer; the keys it returns are
 * filtered.  If the prefix changed and the stream still has not said so,
 * the stream is abandoned and the watch resumes from last+1.  A quiet
 * prefix of a busy cluster costs one such range per SILENT_MS (etcd reads
 * the prefix's keys to answer it).
 *
 * Logs: a failure repeats for every prefix and every retry while etcd is
 * down, so each cause (a failed range, an ended watch, a silent stream, a
 * resync, a recovery) goes through one limiter shared by all prefixes of
 * the process: one line per 10 s, the others at debug (log.h).  The reason
 * is etcd.c's (URL, curl's words, the timeout or etcd's message).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backoff.h"
#include "discovery.h"
#include "log.h"
#include "random.h"

#define RETRY_INITIAL_MS 100
#define RETRY_MAX_MS 5000
/* Retries wait uniform in [r/2, r] for r = RETRY_INITIAL_MS, doubling up to
 * RETRY_MAX_MS: in backoff.h's terms the centre 3/4 r, jitter 1/3. */
static const rsv_backoff_config retry_backoff = {RETRY_INITIAL_MS * 3 / 4, 2.0, 1.0 / 3.0,
                                                 RETRY_MAX_MS * 3 / 4};
#define SILENCE_CHECK_MS 2000        /* how often an open stream is looked at */
#define SILENT_MS 10000              /* no message for this long: ask etcd */
#define PROPAGATION_MS 1000          /* an event older than this must have arrived */
#define PAGE_FIRST 10                /* keys in a range's first page */
#define PAGE_MAX 2000                /* keys in any page */
#define PAGE_BYTES ((size_t)8 << 20) /* aim for pages of about this many bytes */
#define RESYNC_QUIET_MS 10000        /* another resync this soon: no new warning, a delay */

typedef enum { PHASE_IDLE, PHASE_RANGE, PHASE_WATCH } phase;

struct rsv_discovery {
    const rsv_discovery_transport *t;
    rsv_loop *loop;
    rsv_etcd *etcd;
    char *prefix;
    rsv_discovery_callbacks cb;
    void *arg;
    phase phase;
    rsv_etcd_request *req;
    rsv_timer *retry;
    rsv_backoff retry_backoff;
    int need_range;   /* next attempt must range (start, resync) */
    int auth_retried; /* a token rejection reset the backoff since the last watch */
    int synced, watching;
    int64_t revision;
    uint64_t cluster_id; /* the cluster `revision` belongs to (0: unknown) */
    size_t n_keys;       /* keys under the prefix at `revision` */
    /* the range in progress: pages gathered so far, all as of range_revision */
    rsv_kv *snap;
    size_t snap_n, snap_cap;
    int64_t range_revision; /* 0 until the first page answered */
    uint64_t range_cluster;
    int64_t page_limit;
    unsigned pages;
    char *next_key; /* the first key of the next page */
    size_t next_key_len;
    /* resyncs (see the top of the file) */
    uint64_t resyncs;
    uint64_t last_resync_ms;
    uint64_t resync_delay_ms;
    uint64_t reconnects;
    uint64_t failures; /* consecutive, reset when a watch is established */
    /* range body accumulated here (also the answer to a silence check:
     * checks run only while watching, never during a range) */
    char *body;
    size_t body_len, body_cap;
    rsv_watch_parser *parser;
    char last_error[768];
    /* silent-stream detection (see the top of the file) */
    rsv_timer *silence_timer;
    rsv_etcd_request *check_req;
    uint64_t last_message_ms; /* the last message on the current stream */
    uint64_t check_started_ms;
    int64_t checked_revision; /* a check found nothing missed up to here */
    int64_t check_target;     /* the cluster revision the check in flight covers */
    uint64_t silent_streams;  /* abandoned for silence */
};

static void start_attempt(rsv_discovery *d);

/* The limiters of the causes (see the top of the file). */
static rsv_log_limit range_failures, watch_ends, silent_streams, resyncs, recoveries;

/* The member the stream is on (the parser may be finished after the
 * stream's end: then the member in use). */
static const char *stream_endpoint(const rsv_discovery *d)
{
    return d->req ? d->t->request_endpoint(d->req) : d->t->endpoint(d->etcd);
}

static void warn_damped(rsv_log_limit *lim, resolver_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* `level` (warn or info) once per limiter window, debug otherwise. */
static void warn_damped(rsv_log_limit *lim, resolver_log_level level, const char *fmt, ...)
{
    if (!rsv_log_enabled(level))
        return;
    char line[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (!rsv_log_limited(lim, level, "%s", line))
        LOG_DEBUG("%s", line);
}

static void on_retry_timer(rsv_loop *loop, rsv_timer *t, void *arg)
{
    start_attempt(arg);
}

/* Ends the current attempt and schedules the next one with jittered,
 * doubling delay on the next endpoint of the cluster. */
static void cancel_check(rsv_discovery *d)
{
    if (d->check_req) {
        d->t->cancel(d->check_req);
        d->check_req = NULL;
    }
    rsv_timer_stop(d->silence_timer);
}

static void schedule_retry_as(rsv_discovery *d, const char *why, rsv_log_limit *lim)
{
    cancel_check(d);
    if (d->req) {
        d->t->cancel(d->req);
        d->req = NULL;
    }
    if (why && why != d->last_error) /* snprintf onto its own source is undefined */
        snprintf(d->last_error, sizeof(d->last_error), "%s", why);
    d->phase = PHASE_IDLE;
    d->watching = 0;
    d->reconnects++;
    uint64_t delay = rsv_backoff_next(&d->retry_backoff, rsv_random01());
    d->failures++;
    warn_damped(lim, RESOLVER_LOG_WARN, "etcd: prefix \"%s\": %s; retrying in %llu ms via %s",
                d->prefix, why ? why : "stream ended", (unsigned long long)delay,
                d->t->endpoint(d->etcd));
    rsv_timer_start(d->retry, delay);
}

/* The cause is what was running: a range or a watch. */
static void schedule_retry(rsv_discovery *d, const char *why)
{
    schedule_retry_as(d, why, d->phase == PHASE_RANGE ? &range_failures : &watch_ends);
}

/* ---- range ---- */

static int on_range_data(void *arg, const char *data, size_t len)
{
    rsv_discovery *d = arg;
    if (d->body_len + len + 1 > d->body_cap) {
        size_t cap = d->body_cap ? d->body_cap : 65536;
        while (cap < d->body_len + len + 1)
            cap *= 2;
        char *b = realloc(d->body, cap);
        if (!b)
            return 1;
        d->body = b;
        d->body_cap = cap;
    }
    memcpy(d->body + d->body_len, data, len);
    d->body_len += len;
    return 0;
}

static void start_watch(rsv_discovery *d);

static void snap_clear(rsv_discovery *d)
{
    rsv_range_result r = {.kvs = d->snap, .n_kvs = d->snap_n};
    rsv_range_result_clear(&r);
    d->snap = NULL;
    d->snap_n = d->snap_cap = 0;
    free(d->next_key);
    d->next_key = NULL;
    d->next_key_len = 0;
}

/* Moves a page's kvs (and ownership of their strings) to the snapshot. */
static int take_page(rsv_discovery *d, rsv_range_result *r)
{
    if (d->snap_n + r->n_kvs > d->snap_cap) {
        size_t cap = d->snap_cap ? d->snap_cap * 2 : 64;
        while (cap < d->snap_n + r->n_kvs)
            cap *= 2;
        rsv_kv *k = realloc(d->snap, cap * sizeof(*k));
        if (!k)
            return RESOLVER_ERR_NOMEM;
        d->snap = k;
        d->snap_cap = cap;
    }
    if (r->n_kvs)
        memcpy(d->snap + d->snap_n, r->kvs, r->n_kvs * sizeof(*r->kvs));
    d->snap_n += r->n_kvs;
    free(r->kvs);
    r->kvs = NULL;
    r->n_kvs = 0;
    return 0;
}

/* Pages of about PAGE_BYTES: a prefix of huge values pages by a few keys,
 * one of small values by PAGE_MAX. */
static int64_t page_limit_for(size_t page_bytes, size_t n_kvs)
{
    size_t per_key = page_bytes / n_kvs + 1;
    size_t limit = PAGE_BYTES / per_key;
    if (limit < 1)
        return 1;
    return limit > PAGE_MAX ? PAGE_MAX : (int64_t)limit;
}

/* The key after the last one of a page: the last key with a 0 byte added. */
static int set_next_key(rsv_discovery *d, const rsv_kv *last)
{
    char *k = malloc(last->key_len + 1);
    if (!k)
        return RESOLVER_ERR_NOMEM;
    memcpy(k, last->key, last->key_len);
    k[last->key_len] = '\0';
    free(d->next_key);
    d->next_key = k;
    d->next_key_len = last->key_len + 1;
    return 0;
}

static void request_page(rsv_discovery *d);

/* The last page is in: the whole prefix as of range_revision. */
static void finish_range(rsv_discovery *d)
{
    LOG_DEBUG("etcd: prefix \"%s\": %zu keys at revision %lld in %u pages", d->prefix, d->snap_n,
              (long long)d->range_revision, d->pages);
    d->revision = d->range_revision;
    d->cluster_id = d->range_cluster;
    d->n_keys = d->snap_n;
    d->need_range = 0;
    d->synced = 1;
    d->cb.on_snapshot(d->arg, d->snap, d->snap_n, d->revision);
    snap_clear(d);
    start_watch(d);
}

static void on_range_done(void *arg, long status, const char *error)
{
    rsv_discovery *d = arg;
    d->req = NULL;
    if (error[0]) {
        schedule_retry(d, error);
        return;
    }
    rsv_range_result r;
    char why[256];
    int rc = rsv_range_parse(d->body, d->body_len, &r, why, sizeof(why));
    size_t page_bytes = d->body_len;
    d->body_len = 0;
    if (rc != 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "bad range response: %s", why);
        schedule_retry(d, msg);
        return;
    }
    d->t->note_cluster(d->etcd, r.cluster_id);
    if (d->range_revision == 0) {
        d->range_revision = r.revision;
        d->range_cluster = r.cluster_id;
    } else if (r.cluster_id != d->range_cluster) {
        rsv_range_result_clear(&r);
        schedule_retry(d, "another etcd cluster answered in the middle of a paged range");
        return;
    }
    d->pages++;
    int more = r.more && r.n_kvs > 0;
    if (r.n_kvs > 0)
        d->page_limit = page_limit_for(page_bytes, r.n_kvs);
    rc = more ? set_next_key(d, &r.kvs[r.n_kvs - 1]) : 0;
    if (rc == 0)
        rc = take_page(d, &r);
    rsv_range_result_clear(&r);
    if (rc != 0)
        schedule_retry(d, "out of memory");
    else if (more)
        request_page(d);
    else
        finish_range(d);
}

static void request_page(rsv_discovery *d)
{
    char *body = rsv_range_request(d->prefix, strlen(d->prefix), d->range_revision, d->page_limit,
                                   d->next_key, d->next_key_len);
    if (!body) {
        schedule_retry(d, "out of memory");
        return;
    }
    d->body_len = 0;
    d->phase = PHASE_RANGE;
    d->req = d->t->post(d->etcd, "/v3/kv/range", body, 0, on_range_data, on_range_done, d);
    free(body);
    if (!d->req)
        schedule_retry(d, "out of memory");
}

static void start_range(rsv_discovery *d)
{
    snap_clear(d);
    d->range_revision = 0;
    d->range_cluster = 0;
    d->page_limit = PAGE_FIRST;
    d->pages = 0;
    request_page(d);
}

/* ---- resync ---- */

/* 0 for the first resync of a while, then doubling up to RETRY_MAX_MS. */
static uint64_t next_resync_delay(uint64_t prev, int again)
{
    if (!again)
        return 0;
    if (prev == 0)
        return RETRY_INITIAL_MS;
    return prev * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : prev * 2;
}

/* Ends whatever runs and ranges the prefix afresh (see the top of the
 * file).  Not a failure: the first resync of a while starts at once and
 * warns; more within RESYNC_QUIET_MS wait a doubling delay and log at info
 * (`quiet` logs at info anyway: a cause already warned about elsewhere).
 * May be called from inside the stream's own callbacks, which then return
 * non-zero. */
static void resync(rsv_discovery *d, const char *why, int quiet)
{
    uint64_t now = rsv_loop_now(d->loop);
    int again = d->resyncs > 0 && now - d->last_resync_ms < RESYNC_QUIET_MS;
    d->resync_delay_ms = next_resync_delay(d->resync_delay_ms, again);
    d->last_resync_ms = now;
    d->resyncs++;
    cancel_check(d);
    if (d->req) {
        d->t->cancel(d->req);
        d->req = NULL;
    }
    if (why != d->last_error)
        snprintf(d->last_error, sizeof(d->last_error), "%s", why);
    if (quiet || again)
        LOG_INFO("etcd: prefix \"%s\": %s; resyncing by a fresh range", d->prefix, why);
    else
        warn_damped(&resyncs, RESOLVER_LOG_WARN,
                    "etcd: prefix \"%s\": %s; resyncing by a fresh range", d->prefix, why);
    d->phase = PHASE_IDLE;
    d->watching = 0;
    d->need_range = 1;
    rsv_timer_start(d->retry, d->resync_delay_ms);
}

/* Someone (the member probe, another prefix) heard another cluster than
 * the one our revision belongs to. */
static int cluster_changed(const rsv_discovery *d)
{
    uint64_t known = d->t->cluster_id(d->etcd);
    return known && d->cluster_id && known != d->cluster_id;
}

static void resync_other_cluster(rsv_discovery *d, uint64_t now_id)
{
    char why[160];
    snprintf(why, sizeof(why), "another etcd cluster answers (id %llu, was %llu)",
             (unsigned long long)now_id, (unsigned long long)d->cluster_id);
    resync(d, why, 1);
}

/* ---- watch ---- */

static void apply_events(rsv_discovery *d, const rsv_watch_message *m)
{
    /* One revision may hold several events (a txn, a `del --prefix`, a
     * lease expiring with several keys attached); they all come in one
     * message.  So duplicates are judged against the revision applied
     * before this message, not against the event just applied. */
    int64_t applied = d->revision;
    int batch = m->n_events > 1 && d->cb.on_batch;
    if (batch)
        d->cb.on_batch(d->arg, 1);
    for (size_t i = 0; i < m->n_events; i++) {
        const rsv_kv *kv = &m->events[i];
        if (kv->mod_revision <= applied)
            continue; /* already applied before a reconnect */
        /* The key count, for the silence check: etcd only deletes keys
         * that exist, and a key's version is 1 when it is created. */
        if (kv->type == RSV_KV_DELETE) {
            d->n_keys -= d->n_keys > 0;
            d->cb.on_delete(d->arg, kv);
        } else {
            d->n_keys += kv->version == 1;
            d->cb.on_put(d->arg, kv);
        }
        if (kv->mod_revision > d->revision)
            d->revision = kv->mod_revision;
    }
    if (batch)
        d->cb.on_batch(d->arg, 0);
}

static int on_watch_message(void *arg, const rsv_watch_message *m)
{
    rsv_discovery *d = arg;
    d->t->heard(d->etcd);
    d->last_message_ms = rsv_loop_now(d->loop);
    if (m->cluster_id) {
        d->t->note_cluster(d->etcd, m->cluster_id);
        if (d->cluster_id && m->cluster_id != d->cluster_id) {
            resync_other_cluster(d, m->cluster_id); /* before any of its events */
            return 1;
        }
    }
    if (m->is_error) {
        char why[400];
        snprintf(why, sizeof(why), "watch error from etcd: %s (gRPC code %d)",
                 m->error_message ? m->error_message : "", m->error_code);
        snprintf(d->last_error, sizeof(d->last_error), "%s/v3/watch: %s", stream_endpoint(d), why);
        if (m->error_code == 16) /* gRPC UNAUTHENTICATED */
            d->t->token_rejected(d->etcd);
        else
            d->t->mark_bad(d->req, why); /* "no leader", unavailable: fail over */
        return 1;                        /* abort: the done callback retries */
    }
    if (m->canceled) {
        const char *reason = m->cancel_reason ? m->cancel_reason : "";
        /* A bad token cancels the watch at creation and leaves the stream
         * open: drop the token so the retry authenticates again. */
        if (strstr(reason, "Unauthenticated") || strstr(reason, "auth token") ||
            strstr(reason, "user name is empty")) {
            d->t->token_rejected(d->etcd);
            /* The member answered: the first retry need not wait out the
             * backoff of earlier connection failures (it queues until a
             * token is had).  Only once per established watch, so that a
             * token rejected again and again still backs off. */
            if (!d->auth_retried) {
                d->auth_retried = 1;
                rsv_backoff_reset(&d->retry_backoff);
            }
        }
        if (m->compact_revision > 0) {
            char why[160];
            snprintf(why, sizeof(why), "revision %lld compacted (oldest now %lld)",
                     (long long)(d->revision + 1), (long long)m->compact_revision);
            resync(d, why, 0);
            return 1;
        }
        snprintf(d->last_error, sizeof(d->last_error), "%s/v3/watch: watch cancelled by etcd: %s",
                 stream_endpoint(d), reason[0] ? reason : "compacted");
        return 1;
    }
    if (m->created) {
        d->watching = 1;
        rsv_backoff_reset(&d->retry_backoff);
        d->auth_retried = 0;
        if (d->failures > 1)
            warn_damped(&recoveries, RESOLVER_LOG_INFO,
                        "etcd: prefix \"%s\": watching again via %s after %llu failed attempts",
                        d->prefix, stream_endpoint(d), (unsigned long long)d->failures);
        d->failures = 0;
        LOG_DEBUG("etcd: prefix \"%s\": watching from revision %lld", d->prefix,
                  (long long)(d->revision + 1));
        rsv_timer_start(d->silence_timer, SILENCE_CHECK_MS);
        return 0;
    }
    if (m->n_events > 0)
        apply_events(d, m);
    else if (m->revision > d->revision)
        d->revision = m->revision; /* progress notification */
    return 0;
}

static int on_watch_data(void *arg, const char *data, size_t len)
{
    rsv_discovery *d = arg;
    int rc = rsv_watch_parser_feed(d->parser, data, len);
    if (rc == RESOLVER_ERR_DECODE || rc == RESOLVER_ERR_LIMIT) {
        /* The parser stopped there: nothing after it was applied. */
        char why[300];
        snprintf(why, sizeof(why), "%s (%s)",
                 rc == RESOLVER_ERR_LIMIT
                     ? "a watch message too large to take (a catch-up after a long cut-off?)"
                     : "a watch message that cannot be decoded: its events are lost",
                 rsv_watch_parser_error(d->parser));
        resync(d, why, 0);
        return 1;
    }
    return rc;
}

static void on_watch_done(void *arg, long status, const char *error)
{
    rsv_discovery *d = arg;
    d->req = NULL;
    cancel_check(d);
    /* An error object without a trailing newline is still in the parser. */
    rsv_watch_parser_finish(d->parser);
    const char *why = d->last_error[0] && strstr(error, "aborted") ? d->last_error : error;
    schedule_retry(d, why[0] ? why : "watch stream ended");
}

/* ---- silent streams ---- */

static void on_check_done(void *arg, long status, const char *error)
{
    rsv_discovery *d = arg;
    d->check_req = NULL;
    rsv_range_result r;
    char why[128];
    int silent = 0;
    /* Changes up to the probed revision that the stream, silent since
     * before the check began, has not delivered: a key modified since, or
     * fewer or more keys than we hold. */
    if (!error[0] && d->watching && d->last_message_ms < d->check_started_ms &&
        rsv_range_parse(d->body, d->body_len, &r, why, sizeof(why)) == 0) {
        /* Another cluster's answer says nothing about our revisions: the
         * next look (cluster_changed) resyncs instead. */
        d->t->note_cluster(d->etcd, r.cluster_id);
        silent = (r.n_kvs > 0 || r.count != (int64_t)d->n_keys) &&
                 (!r.cluster_id || !d->cluster_id || r.cluster_id == d->cluster_id);
        rsv_range_result_clear(&r);
    }
    if (!silent) {
        if (!error[0])
            d->checked_revision = d->check_target;
        rsv_timer_start(d->silence_timer, SILENCE_CHECK_MS);
        return;
    }
    d->silent_streams++;
    char msg[300];
    snprintf(msg, sizeof(msg),
             "watch stream silent for %llu s on %s/v3/watch while keys of the prefix changed; "
             "resuming",
             (unsigned long long)((rsv_loop_now(d->loop) - d->last_message_ms) / 1000),
             stream_endpoint(d));
    schedule_retry_as(d, msg, &silent_streams);
}

static void on_silence_timer(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_discovery *d = arg;
    if (!d->watching || d->check_req)
        return;
    if (cluster_changed(d)) {
        resync_other_cluster(d, d->t->cluster_id(d->etcd));
        return;
    }
    uint64_t now = rsv_loop_now(loop), seen_ms;
    int64_t cluster = d->t->cluster_revision(d->etcd, &seen_ms);
    /* A quiet prefix in a busy cluster: at most one check per SILENT_MS,
     * each over the revisions the last one did not cover. */
    int64_t from = d->revision > d->checked_revision ? d->revision : d->checked_revision;
    if (now - d->last_message_ms < SILENT_MS || now - d->check_started_ms < SILENT_MS ||
        cluster <= from || now - seen_ms < PROPAGATION_MS) {
        rsv_timer_start(t, SILENCE_CHECK_MS);
        return;
    }
    char *body = rsv_range_changed_request(d->prefix, strlen(d->prefix), cluster, from + 1);
    LOG_DEBUG("etcd: prefix \"%s\": stream quiet for %llu s while the cluster moved to %lld: "
              "checking revisions %lld..%lld",
              d->prefix, (unsigned long long)((now - d->last_message_ms) / 1000),
              (long long)cluster, (long long)(from + 1), (long long)cluster);
    d->body_len = 0;
    d->check_started_ms = now;
    d->check_target = cluster;
    d->check_req = body ? d->t->post(d->etcd, "/v3/kv/range", body, RSV_ETCD_CHECK, on_range_data,
                                     on_check_done, d)
                        : NULL;
    free(body);
    if (!d->check_req)
        rsv_timer_start(t, SILENCE_CHECK_MS); /* out of memory: later */
}

static void start_watch(rsv_discovery *d)
{
    rsv_watch_parser_del(d->parser);
    d->parser = rsv_watch_parser_new(0, on_watch_message, d);
    rsv_watch_parser_stop_at_error(d->parser, 1);
    char *body = rsv_watch_request(d->prefix, strlen(d->prefix), d->revision + 1, 1);
    if (!d->parser || !body) {
        free(body);
        schedule_retry(d, "out of memory");
        return;
    }
    d->last_error[0] = '\0';
    d->phase = PHASE_WATCH;
    d->req =
        d->t->post(d->etcd, "/v3/watch", body, RSV_ETCD_STREAM, on_watch_data, on_watch_done, d);
    free(body);
    if (!d->req)
        schedule_retry(d, "out of memory");
}

static void start_attempt(rsv_discovery *d)
{
    if (!d->need_range && cluster_changed(d)) {
        resync_other_cluster(d, d->t->cluster_id(d->etcd));
        return;
    }
    if (d->need_range)
        start_range(d);
    else
        start_watch(d);
}

const rsv_discovery_transport rsv_discovery_etcd = {
    .post = rsv_etcd_post,
    .cancel = rsv_etcd_cancel,
    .mark_bad = rsv_etcd_mark_bad,
    .request_endpoint = rsv_etcd_request_endpoint,
    .token_rejected = rsv_etcd_token_rejected,
    .endpoint = rsv_etcd_endpoint,
    .cluster_revision = rsv_etcd_cluster_revision,
    .heard = rsv_etcd_heard,
    .note_cluster = rsv_etcd_note_cluster,
    .cluster_id = rsv_etcd_cluster_id,
};

rsv_discovery *rsv_discovery_new(rsv_loop *loop, rsv_etcd *etcd, const char *prefix,
                                 const rsv_discovery_callbacks *callbacks, void *arg)
{
    return rsv_discovery_new_on(&rsv_discovery_etcd, loop, etcd, prefix, callbacks, arg);
}

rsv_discovery *rsv_discovery_new_on(const rsv_discovery_transport *t, rsv_loop *loop,
                                    rsv_etcd *etcd, const char *prefix,
                                    const rsv_discovery_callbacks *callbacks, void *arg)
{
    rsv_discovery *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->t = t;
    d->loop = loop;
    d->etcd = etcd;
    d->cb = *callbacks;
    d->arg = arg;
    d->need_range = 1;
    rsv_backoff_init(&d->retry_backoff, &retry_backoff);
    d->prefix = strdup(prefix);
    d->retry = rsv_timer_new(loop, on_retry_timer, d);
    d->silence_timer = rsv_timer_new(loop, on_silence_timer, d);
    if (!d->prefix || !d->retry || !d->silence_timer) {
        rsv_discovery_del(d);
        return NULL;
    }
    rsv_timer_start(d->retry, 0);
    return d;
}

void rsv_discovery_del(rsv_discovery *d)
{
    if (!d)
        return;
    d->t->cancel(d->req);
    d->t->cancel(d->check_req);
    rsv_timer_del(d->retry);
    rsv_timer_del(d->silence_timer);
    rsv_watch_parser_del(d->parser);
    snap_clear(d);
    free(d->body);
    free(d->prefix);
    free(d);
}

int64_t rsv_discovery_revision(const rsv_discovery *d)
{
    return d->revision;
}

int rsv_discovery_synced(const rsv_discovery *d)
{
    return d->synced;
}

int rsv_discovery_watching(const rsv_discovery *d)
{
    return d->watching;
}

uint64_t rsv_discovery_reconnects(const rsv_discovery *d)
{
    return d->reconnects;
}

uint64_t rsv_discovery_silent_streams(const rsv_discovery *d)
{
    return d->silent_streams;
}

uint64_t rsv_discovery_resyncs(const rsv_discovery *d)
{
    return d->resyncs;
}

const char *rsv_discovery_last_error(const rsv_discovery *d)
{
    return d->last_error;
}
