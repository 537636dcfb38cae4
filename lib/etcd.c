/*
 * etcd.c - libcurl multi_socket driven by rsv_loop (see etcd.h).
 *
 * The pattern is libcurl's ephiperfifo example, with its known fixes: the
 * socket callback adds or modifies the loop watch (never a blind ADD), a 0
 * ms timer means "call socket_action soon" (our timers never fire inside the
 * call that arms them), and curl_multi_info_read is drained after every
 * socket_action.
 *
 * A request is in one of three places: `waiting` (auth configured and no
 * token yet: no curl handle), the multi handle (running), or `doomed`
 * (cancelled from inside a curl callback, freed when curl returns).
 *
 * Connections (doc/design.md, etcd connections).  Over https every request
 * to a member rides one HTTP/2 connection (ALPN h2, CURLPIPE_MULTIPLEX,
 * CURLOPT_PIPEWAIT so that a burst of requests waits for the first
 * connection instead of opening one each): watch streams, ranges, lease
 * keepalives, auth and the member probe.  Over http etcd serves the
 * gateway in HTTP/1.1 only, so each stream holds a connection of its own
 * and is started on a fresh one.  The stall detection of a shared
 * connection is the member probe riding it: a request whose answer must
 * come within etcd.dial_timeout_ms, every PROBE_INTERVAL_MS while a stream
 * is open (a PING would do the same, but libcurl 7.88 neither lets a multi
 * user send one nor reports its ACK).  When a member fails, every request
 * on it is ended at once and its connection closed (CURLOPT_FORBID_REUSE
 * on the last one out), so that nothing new lands on the stalled
 * connection; the owners start again on the member now in use.  Open
 * sockets are counted through curl's open/close socket callbacks
 * (etcdfail.c).
 *
 * Who frees a request: the code that holds it last.  finish_request owns
 * the request it finishes from its first line to its last: what it calls
 * (a failover ending other streams, their owners' done callbacks, this
 * request's own done callback) may cancel it, which then only marks it
 * cancelled (no callback follows); finish_request frees it at its end.
 */
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <curl/curl.h>
#include "backoff.h"
#include "etcd.h"
#include "etcdfail.h"
#include "etcdproto.h"
#include "log.h"

#define PROBE_INTERVAL_MS 3000
/* Streams on one HTTP/2 connection before curl opens a second (libcurl's
 * default is 100; etcd 3.4 allows 2^32-1): 256 watched prefixes, their
 * ranges and keepalives fit on one connection per member. */
#define MAX_STREAMS_PER_CONNECTION 1000L
#define MAX_CONNECTIONS_PER_MEMBER 2L
#define AUTH_BACKOFF_INITIAL_MS 500
#define AUTH_BACKOFF_MAX_MS 30000

/* A warning that repeats while etcd is down: one line per cause per
 * RSV_LOG_LIMIT_MS (log.h), the rest still seen at debug. */
#define WARN_DAMPED(lim, ...)                                                                      \
    do {                                                                                           \
        if (!LOG_WARN_LIMITED((lim), __VA_ARGS__))                                                 \
            LOG_DEBUG(__VA_ARGS__);                                                                \
    } while (0)
#define ERROR_DAMPED(lim, ...)                                                                     \
    do {                                                                                           \
        if (!LOG_ERROR_LIMITED((lim), __VA_ARGS__))                                                \
            LOG_DEBUG(__VA_ARGS__);                                                                \
    } while (0)

static void endpoint_failed(rsv_etcd *etcd, size_t endpoint, const char *why, rsv_log_limit *lim);
static void start_auth(rsv_etcd *etcd);
static int launch(request *req);

/* Over https the gateway speaks HTTP/2 and requests share a connection. */
static int endpoint_h2(const rsv_etcd *etcd, size_t endpoint)
{
    return strncmp(etcd->endpoints[endpoint], "https://", 8) == 0;
}

/* ---- request lifetime ---- */

static void unlink_all(request *req)
{
    rsv_etcd *etcd = req->etcd;
    if (req->prev)
        req->prev->next = req->next;
    else if (etcd->all == req)
        etcd->all = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

static void request_free(request *req)
{
    if (req->easy) {
        unlink_all(req);
        curl_multi_remove_handle(req->etcd->multi, req->easy);
        curl_easy_cleanup(req->easy);
    }
    curl_slist_free_all(req->headers);
    free(req->path);
    free(req->body);
    free(req);
}

static int auth_configured(const rsv_etcd *etcd)
{
    return etcd->username != NULL;
}

static void finish_request(request *req, CURLcode result)
{
    rsv_etcd *etcd = req->etcd;
    /* From here on nothing but the end of this function frees `req`: the
     * failover below runs other owners' callbacks, which may cancel it. */
    req->finishing = 1;
    /* Out of `all` first: a failover below ends the streams still listed
     * there, and must not end this one a second time. */
    unlink_all(req);
    long status = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status > 0)
        rsv_etcd_heard(etcd);
    if (status == 401 && req->token_generation == etcd->token_generation)
        rsv_etcd_token_rejected(etcd);
    char why[WHY_MAX] = "";
    if (!req->forced_error && !req->aborted && (result != CURLE_OK || status < 200 || status > 299))
        rsv_etcd_describe_failure(req, result, status, why, sizeof(why));
    if (req->bad ||
        (!req->aborted && !req->forced_error && rsv_etcd_member_failure(result, status)))
        endpoint_failed(etcd, req->endpoint, why[0] ? why : req->bad_why,
                        req == etcd->probe_req ? &etcd->lim_probe : &etcd->lim_failover);
    if (!req->cancelled && req->done_cb) {
        char error[WHY_MAX + 64];
        snprintf(error, sizeof(error), "%s",
                 req->forced_error ? req->forced_error
                 : req->aborted    ? "aborted by the reader"
                                   : why);
        req->done_cb(req->arg, status, error);
    }
    request_free(req);
}

static void drain_messages(rsv_etcd *etcd)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(etcd->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        request *req = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
        finish_request(req, msg->data.result);
    }
}

static void socket_action(rsv_etcd *etcd, curl_socket_t fd, int mask)
{
    int running;
    etcd->in_curl = 1;
    curl_multi_socket_action(etcd->multi, fd, mask, &running);
    etcd->in_curl = 0;
    /* Free what was cancelled inside curl's callbacks first: removing a
     * handle also drops its queued completion message. */
    while (etcd->doomed) {
        request *req = etcd->doomed;
        etcd->doomed = req->next_doomed;
        request_free(req);
    }
    drain_messages(etcd);
}

/* ---- curl <-> loop ---- */

static void on_io(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    int mask = 0;
    if (events & RSV_LOOP_READ)
        mask |= CURL_CSELECT_IN;
    if (events & RSV_LOOP_WRITE)
        mask |= CURL_CSELECT_OUT;
    if (events & RSV_LOOP_ERROR)
        mask |= CURL_CSELECT_ERR;
    socket_action(arg, fd, mask);
}

static void on_curl_timer(rsv_loop *loop, rsv_timer *timer, void *arg)
{
    socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    rsv_etcd *etcd = userp;
    unsigned events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= RSV_LOOP_READ;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= RSV_LOOP_WRITE;
    if (what == CURL_POLL_REMOVE || events == 0) {
        rsv_loop_unwatch(etcd->loop, fd);
        return 0;
    }
    if (rsv_loop_watch(etcd->loop, fd, events, on_io, etcd) != 0) {
        static rsv_log_limit lim;
        LOG_ERROR_LIMITED(&lim, "etcd: cannot watch socket %d", (int)fd);
        return -1;
    }
    return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    rsv_etcd *etcd = userp;
    if (timeout_ms < 0)
        rsv_timer_stop(etcd->curl_timer);
    else
        rsv_timer_start(etcd->curl_timer, (uint64_t)timeout_ms);
    return 0;
}

/* ---- failover ---- */

/* Ends every stream still open on a member we left, so that its owner
 * reconnects to the member now in use.  Over HTTP/2 every request on the
 * member shares its (maybe stalled) connection: all of them end, and the
 * connection is closed with the last one (FORBID_REUSE), so that the
 * owners' new requests open a new one.  Owners may cancel or start other
 * requests from their done callbacks, so the victims are collected first
 * and each is checked to be still alive before it is ended. */
static void end_streams_on(rsv_etcd *etcd, size_t endpoint, const char *why)
{
    size_t n = 0, cap = 0;
    request **victims = NULL;
    int h2 = endpoint_h2(etcd, endpoint);
    for (request *r = etcd->all; r; r = r->next) {
        if (r->endpoint != endpoint || r->cancelled)
            continue;
        if (h2)
            curl_easy_setopt(r->easy, CURLOPT_FORBID_REUSE, 1L);
        if (!h2 && !(r->flags & RSV_ETCD_STREAM))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            request **v = realloc(victims, cap * sizeof(*v));
            if (!v)
                break;
            victims = v;
        }
        victims[n++] = r;
    }
    for (size_t i = 0; i < n; i++) {
        int alive = 0;
        for (request *r = etcd->all; r && !alive; r = r->next)
            alive = r == victims[i];
        if (!alive || victims[i]->cancelled)
            continue;
        victims[i]->forced_error = why;
        finish_request(victims[i], CURLE_OK);
    }
    free(victims);
}

/* `lim`: the cause's limiter (a failed request, a failed probe).  With one
 * endpoint there is nothing to switch to: the owners of the streams ended
 * here log the reason they are given. */
static void endpoint_failed(rsv_etcd *etcd, size_t endpoint, const char *why, rsv_log_limit *lim)
{
    size_t next = rsv_etcd_next_endpoint(etcd->current, etcd->n_endpoints, endpoint);
    if (endpoint != etcd->current)
        return; /* already moved on: one failover per failure */
    /* Not snprintf onto itself: `why` may be a stream's copy of it. */
    char reason[sizeof(etcd->failure)];
    snprintf(reason, sizeof(reason), "etcd member failed: %s", why); /* `why` has the URL */
    memcpy(etcd->failure, reason, sizeof(reason));
    if (next != etcd->current) {
        etcd->current = next;
        etcd->failovers++;
        WARN_DAMPED(lim, "etcd: member failed (%s); switching to %s", why,
                    etcd->endpoints[etcd->current]);
    }
    if (!etcd->in_curl)
        end_streams_on(etcd, endpoint, etcd->failure);
}

/* ---- health probe ---- */

/* Small internal answers (probe, auth) are kept in the request's own
 * bounded buffer. */
static int keep_body(request *req, const char *data, size_t len)
{
    size_t room = sizeof(req->errbody) - 1 - req->errbody_len;
    size_t n = len < room ? len : room;
    memcpy(req->errbody + req->errbody_len, data, n);
    req->errbody_len += n;
    return 0;
}

static int on_probe_data(void *arg, const char *data, size_t len)
{
    return keep_body(((rsv_etcd *)arg)->probe_req, data, len);
}

/* maintenance/status answers on a member cut off from the cluster too:
 * "leader" missing or "0" is what says it is useless.  A good answer's
 * header.revision (an int64 as a JSON string) is the cluster's revision. */
static int status_has_leader(rsv_etcd *etcd, const char *body, size_t len)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    const char *leader = json_string_value(json_object_get(root, "leader"));
    int ok = leader && strcmp(leader, "0") != 0;
    json_t *header = json_object_get(root, "header");
    const char *rev = json_string_value(json_object_get(header, "revision"));
    const char *cluster = json_string_value(json_object_get(header, "cluster_id"));
    if (cluster) {
        char *end;
        errno = 0;
        unsigned long long id = strtoull(cluster, &end, 10);
        if (*end == '\0' && errno == 0 && cluster[0] >= '0' && cluster[0] <= '9')
            rsv_etcd_note_cluster(etcd, id);
    }
    if (ok && rev) {
        char *end;
        long long v = strtoll(rev, &end, 10);
        if (*end == '\0' && v > 0) {
            etcd->cluster_revision = v;
            etcd->cluster_revision_ms = rsv_loop_now(etcd->loop);
        }
    }
    json_decref(root);
    return ok;
}

static void on_probe_done(void *arg, long status, const char *error)
{
    rsv_etcd *etcd = arg;
    request *req = etcd->probe_req;
    etcd->probe_req = NULL;
    if (error[0] == '\0' && !status_has_leader(etcd, req->errbody, req->errbody_len)) {
        char why[256];
        snprintf(why, sizeof(why), "%s/v3/maintenance/status: the member has no leader",
                 etcd->endpoints[req->endpoint]);
        endpoint_failed(etcd, req->endpoint, why, &etcd->lim_probe);
    } else if (error[0] != '\0' && req->endpoint == etcd->current) {
        /* Connection-level failures failed over already in finish_request;
         * anything else (a 4xx) is a member we cannot use either. */
        endpoint_failed(etcd, req->endpoint, error, &etcd->lim_probe);
    }
    rsv_timer_start(etcd->probe_timer, PROBE_INTERVAL_MS);
}

static void on_probe_timer(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_etcd *etcd = arg;
    int streams = 0;
    for (request *r = etcd->all; r && !streams; r = r->next)
        streams = (r->flags & RSV_ETCD_STREAM) != 0;
    if (!streams || etcd->probe_req) {
        rsv_timer_start(t, PROBE_INTERVAL_MS);
        return;
    }
    request *req = calloc(1, sizeof(*req));
    if (!req) {
        rsv_timer_start(t, PROBE_INTERVAL_MS);
        return;
    }
    req->etcd = etcd;
    req->path = strdup("/v3/maintenance/status");
    req->body = strdup("{}");
    req->data_cb = on_probe_data;
    req->done_cb = on_probe_done;
    req->arg = etcd;
    req->flags = RSV_ETCD_CHECK;
    etcd->probe_req = req;
    if (!req->path || !req->body || launch(req) != 0) {
        etcd->probe_req = NULL;
        request_free(req);
        rsv_timer_start(t, PROBE_INTERVAL_MS);
    }
}

/* ---- requests ---- */

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    request *req = userp;
    size_t len = size * nmemb;
    if (req->cancelled)
        return 0; /* makes curl end the transfer; it is freed when done */
    long status = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    rsv_etcd_heard(req->etcd);
    if (status < 200 || status > 299) {
        size_t room = sizeof(req->errbody) - req->errbody_len;
        size_t n = len < room ? len : room;
        memcpy(req->errbody + req->errbody_len, data, n);
        req->errbody_len += n;
        return len;
    }
    if (req->data_cb && req->data_cb(req->arg, data, len) != 0) {
        req->aborted = 1;
        return 0;
    }
    return req->cancelled ? 0 : len;
}

static int add_header(request *req, const char *header)
{
    struct curl_slist *h = curl_slist_append(req->headers, header);
    if (!h)
        return RESOLVER_ERR_NOMEM;
    req->headers = h;
    return 0;
}

static int set_headers(request *req)
{
    rsv_etcd *etcd = req->etcd;
    if (add_header(req, "Content-Type: application/json") != 0)
        return RESOLVER_ERR_NOMEM;
    /* Without it a watch on a member cut off from the leader hangs
     * silently (doc/design.md, etcd gateway). */
    if ((req->flags & RSV_ETCD_STREAM) && add_header(req, "Grpc-Metadata-Hasleader: true") != 0)
        return RESOLVER_ERR_NOMEM;
    if (etcd->token && req->arg != etcd) { /* not on auth and probe requests */
        /* etcd wants the token raw, not as "Bearer <token>". */
        size_t len = strlen(etcd->token) + 32;
        char *h = malloc(len);
        if (!h)
            return RESOLVER_ERR_NOMEM;
        snprintf(h, len, "Authorization: %s", etcd->token);
        int rc = add_header(req, h);
        free(h);
        req->token_generation = etcd->token_generation;
        return rc;
    }
    return 0;
}

static void configure_easy(request *req, const char *url)
{
    rsv_etcd *etcd = req->etcd;
    CURL *e = req->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(e, CURLOPT_PRIVATE, req);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, etcd->dial_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, rsv_etcd_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, req);
    /* The connection may outlive the request that opened it. */
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, rsv_etcd_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, etcd);
    int h2 = endpoint_h2(etcd, req->endpoint);
    if (h2) {
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    }
    if ((req->flags & RSV_ETCD_STREAM) || h2) {
        /* Over HTTP/2 any request may be the one that opens the connection
         * the streams will ride. */
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 10L);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 5L);
        curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, rsv_etcd_stream_sockopt);
    }
    if (!(req->flags & RSV_ETCD_STREAM)) {
        /* Probes, checks and auth must answer within the dial budget;
         * ranges may be big. */
        int check = req->arg == etcd || (req->flags & RSV_ETCD_CHECK);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, check ? etcd->dial_timeout_ms : UNARY_TIMEOUT_MS);
    }
    /* HTTP/1.1: a stream holds its connection for its whole life, and is
     * (re)started after trouble: never on a pooled connection that may have
     * gone silent (a stalled path would swallow the resumed watch too).  A
     * check judges liveness: its own connection, likewise.  HTTP/2: one
     * shared connection per member, judged by the member probe riding it;
     * a failed member's connection is closed (end_streams_on). */
    if (!h2 && (req->flags & (RSV_ETCD_CHECK | RSV_ETCD_STREAM)))
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    if (etcd->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, etcd->ca_file);
    if (etcd->cert_file)
        curl_easy_setopt(e, CURLOPT_SSLCERT, etcd->cert_file);
    if (etcd->key_file)
        curl_easy_setopt(e, CURLOPT_SSLKEY, etcd->key_file);
}

/* Gives a request its curl handle and starts it on the endpoint in use. */
static int launch(request *req)
{
    rsv_etcd *etcd = req->etcd;
    req->easy = curl_easy_init();
    if (!req->easy || set_headers(req) != 0)
        return RESOLVER_ERR_NOMEM;
    req->endpoint = etcd->current;
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", etcd->endpoints[etcd->current], req->path);
    configure_easy(req, url);
    if (curl_multi_add_handle(etcd->multi, req->easy) != CURLM_OK) {
        curl_easy_cleanup(req->easy);
        req->easy = NULL;
        return RESOLVER_ERR_INTERNAL;
    }
    req->next = etcd->all;
    if (etcd->all)
        etcd->all->prev = req;
    etcd->all = req;
    return 0;
}

rsv_etcd_request *rsv_etcd_post(rsv_etcd *etcd, const char *path, const char *body, unsigned flags,
                                rsv_etcd_data_cb data_cb, rsv_etcd_done_cb done_cb, void *arg)
{
    request *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->etcd = etcd;
    req->flags = flags;
    req->data_cb = data_cb;
    req->done_cb = done_cb;
    req->arg = arg;
    req->path = strdup(path);
    req->body = strdup(body);
    if (!req->path || !req->body)
        goto fail;
    if (auth_configured(etcd) && !etcd->token) {
        req->next_waiting = NULL;
        *etcd->waiting_tail = req;
        etcd->waiting_tail = &req->next_waiting;
        start_auth(etcd);
        return req;
    }
    if (launch(req) != 0)
        goto fail;
    return req;
fail:
    request_free(req);
    return NULL;
}

static int unqueue(rsv_etcd *etcd, request *req)
{
    for (request **p = &etcd->waiting; *p; p = &(*p)->next_waiting) {
        if (*p == req) {
            *p = req->next_waiting;
            if (etcd->waiting_tail == &req->next_waiting)
                etcd->waiting_tail = p;
            return 1;
        }
    }
    return 0;
}

void rsv_etcd_cancel(rsv_etcd_request *req)
{
    if (!req || req->cancelled)
        return;
    req->cancelled = 1;
    if (req->finishing)
        return; /* its finish_request frees it, without a done callback now */
    if (!req->easy) {
        unqueue(req->etcd, req);
        request_free(req);
        return;
    }
    /* Inside curl's own callbacks a handle may not be removed: it is freed
     * when socket_action returns. */
    if (req->etcd->in_curl) {
        req->next_doomed = req->etcd->doomed;
        req->etcd->doomed = req;
        return;
    }
    request_free(req);
}

void rsv_etcd_mark_bad(rsv_etcd_request *req, const char *why)
{
    if (!req)
        return;
    req->bad = 1;
    snprintf(req->bad_why, sizeof(req->bad_why), "%s%s: %s", req->etcd->endpoints[req->endpoint],
             req->path, why);
}

const char *rsv_etcd_request_endpoint(const rsv_etcd_request *req)
{
    return req->etcd->endpoints[req->endpoint];
}

/* ---- auth ---- */

static char *read_password(rsv_etcd *etcd, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        ERROR_DAMPED(&etcd->lim_password, "etcd: cannot read etcd.password_file %s: %s", path,
                     strerror(errno));
        return NULL;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    char *pw = strdup(buf);
    memset(buf, 0, sizeof(buf));
    return pw;
}

static const rsv_backoff_config auth_backoff = {AUTH_BACKOFF_INITIAL_MS, 2.0, 0.0,
                                                AUTH_BACKOFF_MAX_MS};

/* The delay before the next authentication attempt, and the timer armed. */
static uint64_t auth_retry_later(rsv_etcd *etcd)
{
    uint64_t delay = rsv_backoff_next(&etcd->auth_backoff, 0.0); /* no jitter */
    rsv_timer_start(etcd->auth_timer, delay);
    return delay;
}

static int on_auth_data(void *arg, const char *data, size_t len)
{
    return keep_body(((rsv_etcd *)arg)->auth_req, data, len);
}

static void on_auth_done(void *arg, long status, const char *error)
{
    rsv_etcd *etcd = arg;
    request *req = etcd->auth_req;
    etcd->auth_req = NULL;
    char *token = NULL;
    if (error[0] && status == 0) {
        /* etcd unreachable: not an auth problem, and it repeats for as long
         * as etcd is down.  The text is curl's; it never holds the password. */
        uint64_t delay = auth_retry_later(etcd);
        WARN_DAMPED(&etcd->lim_auth_wait,
                    "etcd: cannot authenticate as \"%s\" yet (%s); requests are waiting for "
                    "etcd, next try in %llu ms",
                    etcd->username, error, (unsigned long long)delay);
        return;
    }
    if (error[0] || rsv_auth_parse(req->errbody, req->errbody_len, &token) != 0) {
        /* etcd's answer (its message, never the password we sent). */
        char why[WHY_MAX];
        if (!error[0])
            snprintf(why, sizeof(why), "%s/v3/auth/authenticate: no token in the answer",
                     etcd->endpoints[req->endpoint]);
        uint64_t delay = auth_retry_later(etcd);
        /* etcd's words do not say what to do about it. */
        const char *hint = strstr(error, "CommonName of client")
                               ? " (etcd with auth and --client-cert-auth refuses gateway clients "
                                 "whose certificate has a Common Name: give etcd.cert_file one "
                                 "without)"
                               : "";
        ERROR_DAMPED(&etcd->lim_auth,
                     "etcd: authentication as \"%s\" failed: %s%s; retrying in %llu ms",
                     etcd->username, error[0] ? error : why, hint, (unsigned long long)delay);
        return;
    }
    free(etcd->token);
    etcd->token = token;
    etcd->token_generation++;
    etcd->authentications++;
    rsv_backoff_reset(&etcd->auth_backoff);
    LOG_INFO("etcd: authenticated as \"%s\"", etcd->username);
    while (etcd->waiting) {
        request *w = etcd->waiting;
        etcd->waiting = w->next_waiting;
        if (!etcd->waiting)
            etcd->waiting_tail = &etcd->waiting;
        if (launch(w) != 0 && w->done_cb) {
            w->finishing = 1;
            w->done_cb(w->arg, 0, "out of memory");
            request_free(w);
        }
    }
}

static void start_auth(rsv_etcd *etcd)
{
    if (etcd->auth_req || rsv_timer_active(etcd->auth_timer))
        return;
    char *password = read_password(etcd, etcd->password_file);
    if (!password) {
        auth_retry_later(etcd);
        return;
    }
    json_t *o = json_pack("{s:s, s:s}", "name", etcd->username, "password", password);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    memset(password, 0, strlen(password));
    free(password);
    request *req = calloc(1, sizeof(*req));
    if (!body || !req) {
        free(body);
        free(req);
        auth_retry_later(etcd);
        return;
    }
    req->etcd = etcd;
    req->path = strdup("/v3/auth/authenticate");
    req->body = body;
    req->data_cb = on_auth_data;
    req->done_cb = on_auth_done;
    req->arg = etcd;
    etcd->auth_req = req;
    if (!req->path || launch(req) != 0) {
        etcd->auth_req = NULL;
        request_free(req);
        auth_retry_later(etcd);
    }
}

static void on_auth_timer(rsv_loop *loop, rsv_timer *t, void *arg)
{
    start_auth(arg);
}

void rsv_etcd_token_rejected(rsv_etcd *etcd)
{
    if (!auth_configured(etcd) || !etcd->token)
        return;
    LOG_INFO("etcd: token rejected (expired?); authenticating again");
    free(etcd->token);
    etcd->token = NULL;
    etcd->token_generation++;
}

/* ---- object ---- */

static int set_endpoints(rsv_etcd *etcd, const resolver_config *cfg)
{
    etcd->endpoints = calloc(cfg->etcd.n_endpoints, sizeof(char *));
    if (!etcd->endpoints)
        return RESOLVER_ERR_NOMEM;
    for (size_t i = 0; i < cfg->etcd.n_endpoints; i++) {
        const char *url = cfg->etcd.endpoints[i];
        size_t len = strlen(url);
        while (len > 0 && url[len - 1] == '/')
            len--; /* we append "/v3/..." */
        etcd->endpoints[i] = strndup(url, len);
        if (!etcd->endpoints[i])
            return RESOLVER_ERR_NOMEM;
        etcd->n_endpoints++;
    }
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

rsv_etcd *rsv_etcd_new(rsv_loop *loop, const resolver_config *cfg)
{
    static int curl_ready;
    if (!curl_ready) {
        /* curl_global_init is not thread-safe before 7.84; engines are
         * created from one thread in practice, and it is idempotent.  It
         * fails only out of memory: then no engine, and the next one
         * tries again. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return NULL;
        curl_ready = 1;
    }
    rsv_etcd *etcd = calloc(1, sizeof(*etcd));
    if (!etcd)
        return NULL;
    etcd->loop = loop;
    etcd->waiting_tail = &etcd->waiting;
    etcd->dial_timeout_ms = rsv_ms_to_int(cfg->etcd.dial_timeout_ms);
    rsv_backoff_init(&etcd->auth_backoff, &auth_backoff);
    etcd->ca_file = dup_or_null(cfg->etcd.ca_file);
    etcd->cert_file = dup_or_null(cfg->etcd.cert_file);
    etcd->key_file = dup_or_null(cfg->etcd.key_file);
    if (cfg->etcd.username && *cfg->etcd.username) {
        etcd->username = strdup(cfg->etcd.username);
        etcd->password_file = dup_or_null(cfg->etcd.password_file);
        if (!etcd->username || !etcd->password_file)
            goto fail;
    }
    if (set_endpoints(etcd, cfg) != 0 || etcd->n_endpoints == 0)
        goto fail;
    etcd->curl_timer = rsv_timer_new(loop, on_curl_timer, etcd);
    etcd->auth_timer = rsv_timer_new(loop, on_auth_timer, etcd);
    etcd->probe_timer = rsv_timer_new(loop, on_probe_timer, etcd);
    etcd->multi = curl_multi_init();
    if (!etcd->curl_timer || !etcd->auth_timer || !etcd->probe_timer || !etcd->multi)
        goto fail;
    curl_multi_setopt(etcd->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
    curl_multi_setopt(etcd->multi, CURLMOPT_SOCKETDATA, etcd);
    curl_multi_setopt(etcd->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(etcd->multi, CURLMOPT_TIMERDATA, etcd);
    /* Only https endpoints get HTTP/2 (configure_easy). */
    curl_multi_setopt(etcd->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(etcd->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, MAX_STREAMS_PER_CONNECTION);
    /* PIPEWAIT alone does not hold back a burst (256 prefixes ranging at
     * start) while the first TLS handshake is slow: measured under load,
     * 157 connections to one member.  Over HTTP/2 a cap on connections per
     * member queues the rest until they can share one.  Not over http,
     * where each watch needs a connection of its own. */
    int all_h2 = 1;
    for (size_t i = 0; i < etcd->n_endpoints; i++)
        all_h2 &= endpoint_h2(etcd, i);
    if (all_h2)
        curl_multi_setopt(etcd->multi, CURLMOPT_MAX_HOST_CONNECTIONS, MAX_CONNECTIONS_PER_MEMBER);
    rsv_timer_start(etcd->probe_timer, PROBE_INTERVAL_MS);
    return etcd;
fail:
    rsv_etcd_del(etcd);
    return NULL;
}

void rsv_etcd_del(rsv_etcd *etcd)
{
    if (!etcd)
        return;
    /* Requests still running belong to their owners, who must have
     * cancelled them; free any left (auth, probe) so nothing leaks. */
    while (etcd->all)
        request_free(etcd->all);
    while (etcd->waiting) {
        request *w = etcd->waiting;
        etcd->waiting = w->next_waiting;
        request_free(w);
    }
    if (etcd->multi)
        curl_multi_cleanup(etcd->multi); /* closes the pooled connections (rsv_etcd_close_socket) */
    free(etcd->conns);
    rsv_timer_del(etcd->curl_timer);
    rsv_timer_del(etcd->auth_timer);
    rsv_timer_del(etcd->probe_timer);
    for (size_t i = 0; i < etcd->n_endpoints; i++)
        free(etcd->endpoints[i]);
    free(etcd->endpoints);
    free(etcd->ca_file);
    free(etcd->cert_file);
    free(etcd->key_file);
    free(etcd->username);
    free(etcd->password_file);
    if (etcd->token)
        memset(etcd->token, 0, strlen(etcd->token));
    free(etcd->token);
    free(etcd);
}

const char *rsv_etcd_endpoint(const rsv_etcd *etcd)
{
    return etcd->endpoints[etcd->current];
}

int64_t rsv_etcd_cluster_revision(const rsv_etcd *etcd, uint64_t *seen_ms)
{
    *seen_ms = etcd->cluster_revision_ms;
    return etcd->cluster_revision;
}

uint64_t rsv_etcd_last_heard(const rsv_etcd *etcd)
{
    return etcd->last_heard;
}

void rsv_etcd_heard(rsv_etcd *etcd)
{
    etcd->last_heard = rsv_loop_now(etcd->loop);
}

int rsv_etcd_note_cluster(rsv_etcd *etcd, uint64_t cluster_id)
{
    static rsv_log_limit lim;
    if (cluster_id == 0 || cluster_id == etcd->cluster_id)
        return 0;
    uint64_t old = etcd->cluster_id;
    etcd->cluster_id = cluster_id;
    if (old == 0)
        return 0;
    etcd->cluster_changes++;
    /* Its revisions are unrelated to the old one's: what the old cluster's
     * revision was says nothing about this one. */
    etcd->cluster_revision = 0;
    etcd->cluster_revision_ms = 0;
    LOG_WARN_LIMITED(&lim,
                     "etcd: cluster id changed from %llu to %llu at %s (etcd replaced or "
                     "restored from a backup): every prefix resyncs by a fresh range",
                     (unsigned long long)old, (unsigned long long)cluster_id,
                     etcd->endpoints[etcd->current]);
    return 1;
}

uint64_t rsv_etcd_cluster_id(const rsv_etcd *etcd)
{
    return etcd->cluster_id;
}

uint64_t rsv_etcd_cluster_changes(const rsv_etcd *etcd)
{
    return etcd->cluster_changes;
}

uint64_t rsv_etcd_failovers(const rsv_etcd *etcd)
{
    return etcd->failovers;
}

uint64_t rsv_etcd_authentications(const rsv_etcd *etcd)
{
    return etcd->authentications;
}

void rsv_etcd_conns_get(const rsv_etcd *etcd, rsv_etcd_conns *out)
{
    memset(out, 0, sizeof(*out));
    out->connections = etcd->n_conns;
    for (size_t i = 0; i < etcd->n_conns; i++)
        out->connections_current += etcd->conns[i].endpoint == etcd->current;
    for (const request *r = etcd->all; r; r = r->next) {
        if (r->cancelled)
            continue;
        out->streams++;
        out->watch_streams += (r->flags & RSV_ETCD_STREAM) != 0;
    }
    out->http2 = endpoint_h2(etcd, etcd->current);
}
