/*
 * etcd.c - libcurl multi_socket driven by resolver_loop (see etcd.h).
 *
 * The pattern is libcurl's ephiperfifo example, with its known fixes: the
 * socket callback adds or modifies the loop watch (never a blind ADD), a 0
 * ms timer means "call socket_action soon" (our timers never fire inside the
 * call that arms them), and curl_multi_info_read is drained after every
 * socket_action.
 */
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "etcd.h"
#include "log.h"

#define ERROR_BODY_MAX 512
/* A range over 100k keys takes ~1.5 s on loopback; anything that is not a
 * stream and takes a minute is stuck. */
#define UNARY_TIMEOUT_MS 60000L

struct resolver_etcd {
    resolver_loop *loop;
    CURLM *multi;
    resolver_timer *timer;
    char **endpoints;
    size_t n_endpoints, current;
    char *ca_file, *cert_file, *key_file;
    long dial_timeout_ms;
    int in_curl; /* inside curl_multi_socket_action: handles may not be removed */
    struct resolver_etcd_request *doomed; /* cancelled while in_curl */
    struct resolver_etcd_request *all;    /* every live request, for del */
    uint64_t last_heard;
};

struct resolver_etcd_request {
    resolver_etcd *etcd;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    unsigned flags;
    resolver_etcd_data_cb data_cb;
    resolver_etcd_done_cb done_cb;
    void *arg;
    int cancelled, aborted, in_done;
    struct resolver_etcd_request *next_doomed;
    struct resolver_etcd_request *prev, *next; /* in etcd->all */
    char errbuf[CURL_ERROR_SIZE];
    char errbody[ERROR_BODY_MAX];
    size_t errbody_len;
};

static void request_free(resolver_etcd_request *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else
        req->etcd->all = req->next;
    if (req->next)
        req->next->prev = req->prev;
    curl_multi_remove_handle(req->etcd->multi, req->easy);
    curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    free(req->body);
    free(req);
}

static void finish_request(resolver_etcd_request *req, CURLcode result)
{
    long status = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    if (req->cancelled) {
        /* Already on the doomed list; it is freed there. */
        return;
    }
    if (req->done_cb) {
        char error[CURL_ERROR_SIZE + ERROR_BODY_MAX + 64] = "";
        if (req->aborted)
            snprintf(error, sizeof(error), "aborted by the reader");
        else if (result != CURLE_OK)
            snprintf(error, sizeof(error), "%s",
                     req->errbuf[0] ? req->errbuf : curl_easy_strerror(result));
        else if (status < 200 || status > 299)
            snprintf(error, sizeof(error), "HTTP %ld: %.*s", status, (int)req->errbody_len,
                     req->errbody);
        if (status > 0)
            resolver_etcd_heard(req->etcd);
        req->in_done = 1;
        req->done_cb(req->arg, status, error);
    }
    request_free(req);
}

static void drain_messages(resolver_etcd *etcd)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(etcd->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        resolver_etcd_request *req = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
        finish_request(req, msg->data.result);
    }
}

static void socket_action(resolver_etcd *etcd, curl_socket_t fd, int mask)
{
    int running;
    etcd->in_curl = 1;
    curl_multi_socket_action(etcd->multi, fd, mask, &running);
    etcd->in_curl = 0;
    /* Free what was cancelled inside curl's callbacks first: removing a
     * handle also drops its queued completion message. */
    while (etcd->doomed) {
        resolver_etcd_request *req = etcd->doomed;
        etcd->doomed = req->next_doomed;
        request_free(req);
    }
    drain_messages(etcd);
}

static void on_io(resolver_loop *loop, int fd, unsigned events, void *arg)
{
    int mask = 0;
    if (events & RESOLVER_LOOP_READ)
        mask |= CURL_CSELECT_IN;
    if (events & RESOLVER_LOOP_WRITE)
        mask |= CURL_CSELECT_OUT;
    if (events & RESOLVER_LOOP_ERROR)
        mask |= CURL_CSELECT_ERR;
    socket_action(arg, fd, mask);
}

static void on_timer(resolver_loop *loop, resolver_timer *timer, void *arg)
{
    socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    resolver_etcd *etcd = userp;
    unsigned events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= RESOLVER_LOOP_READ;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= RESOLVER_LOOP_WRITE;
    if (what == CURL_POLL_REMOVE || events == 0) {
        resolver_loop_unwatch(etcd->loop, fd);
        return 0;
    }
    if (resolver_loop_watch(etcd->loop, fd, events, on_io, etcd) != 0) {
        LOG_ERROR("etcd: cannot watch socket %d", (int)fd);
        return -1;
    }
    return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    resolver_etcd *etcd = userp;
    if (timeout_ms < 0)
        resolver_timer_stop(etcd->timer);
    else
        resolver_timer_start(etcd->timer, (uint64_t)timeout_ms);
    return 0;
}

static int set_endpoints(resolver_etcd *etcd, const resolver_config *cfg)
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

resolver_etcd *resolver_etcd_new(resolver_loop *loop, const resolver_config *cfg)
{
    static int curl_ready;
    if (!curl_ready) {
        /* curl_global_init is not thread-safe before 7.84; engines are
         * created from one thread in practice, and it is idempotent. */
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_ready = 1;
    }
    resolver_etcd *etcd = calloc(1, sizeof(*etcd));
    if (!etcd)
        return NULL;
    etcd->loop = loop;
    etcd->dial_timeout_ms = (long)cfg->etcd.dial_timeout_ms;
    etcd->ca_file = dup_or_null(cfg->etcd.ca_file);
    etcd->cert_file = dup_or_null(cfg->etcd.cert_file);
    etcd->key_file = dup_or_null(cfg->etcd.key_file);
    if (set_endpoints(etcd, cfg) != 0 || etcd->n_endpoints == 0)
        goto fail;
    etcd->timer = resolver_timer_new(loop, on_timer, etcd);
    etcd->multi = curl_multi_init();
    if (!etcd->timer || !etcd->multi)
        goto fail;
    curl_multi_setopt(etcd->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
    curl_multi_setopt(etcd->multi, CURLMOPT_SOCKETDATA, etcd);
    curl_multi_setopt(etcd->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(etcd->multi, CURLMOPT_TIMERDATA, etcd);
    return etcd;
fail:
    resolver_etcd_del(etcd);
    return NULL;
}

void resolver_etcd_del(resolver_etcd *etcd)
{
    if (!etcd)
        return;
    if (etcd->multi) {
        /* Requests still running belong to their owners, who must have
         * cancelled them; free any left so nothing leaks. */
        while (etcd->all)
            request_free(etcd->all);
        curl_multi_cleanup(etcd->multi);
    }
    resolver_timer_del(etcd->timer);
    for (size_t i = 0; i < etcd->n_endpoints; i++)
        free(etcd->endpoints[i]);
    free(etcd->endpoints);
    free(etcd->ca_file);
    free(etcd->cert_file);
    free(etcd->key_file);
    free(etcd);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    resolver_etcd_request *req = userp;
    size_t len = size * nmemb;
    if (req->cancelled)
        return 0; /* makes curl end the transfer; it is freed when done */
    long status = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    resolver_etcd_heard(req->etcd);
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

static int configure_easy(resolver_etcd_request *req, const char *url)
{
    resolver_etcd *etcd = req->etcd;
    CURL *e = req->easy;
    req->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (req->headers && (req->flags & RESOLVER_ETCD_STREAM)) {
        /* Without it a watch on a member cut off from the leader hangs
         * silently (DESIGN.md §2). */
        struct curl_slist *h = curl_slist_append(req->headers, "Grpc-Metadata-Hasleader: true");
        if (!h)
            return RESOLVER_ERR_NOMEM;
        req->headers = h;
    }
    if (!req->headers)
        return RESOLVER_ERR_NOMEM;
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
    if (req->flags & RESOLVER_ETCD_STREAM) {
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 10L);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 5L);
    } else {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, UNARY_TIMEOUT_MS);
    }
    if (etcd->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, etcd->ca_file);
    if (etcd->cert_file)
        curl_easy_setopt(e, CURLOPT_SSLCERT, etcd->cert_file);
    if (etcd->key_file)
        curl_easy_setopt(e, CURLOPT_SSLKEY, etcd->key_file);
    return 0;
}

resolver_etcd_request *resolver_etcd_post(resolver_etcd *etcd, const char *path, const char *body,
                                          unsigned flags, resolver_etcd_data_cb data_cb,
                                          resolver_etcd_done_cb done_cb, void *arg)
{
    resolver_etcd_request *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->etcd = etcd;
    req->flags = flags;
    req->data_cb = data_cb;
    req->done_cb = done_cb;
    req->arg = arg;
    req->body = strdup(body);
    req->easy = curl_easy_init();
    if (!req->body || !req->easy)
        goto fail;
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", resolver_etcd_endpoint(etcd), path);
    if (configure_easy(req, url) != 0)
        goto fail;
    if (curl_multi_add_handle(etcd->multi, req->easy) != CURLM_OK)
        goto fail;
    req->next = etcd->all;
    if (etcd->all)
        etcd->all->prev = req;
    etcd->all = req;
    return req;
fail:
    if (req->easy)
        curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    free(req->body);
    free(req);
    return NULL;
}

void resolver_etcd_cancel(resolver_etcd_request *req)
{
    if (!req || req->cancelled || req->in_done)
        return;
    req->cancelled = 1;
    /* Inside curl's own callbacks a handle may not be removed: it is freed
     * when socket_action returns. */
    if (req->etcd->in_curl) {
        req->next_doomed = req->etcd->doomed;
        req->etcd->doomed = req;
        return;
    }
    request_free(req);
}

const char *resolver_etcd_endpoint(const resolver_etcd *etcd)
{
    return etcd->endpoints[etcd->current];
}

void resolver_etcd_rotate(resolver_etcd *etcd)
{
    etcd->current = (etcd->current + 1) % etcd->n_endpoints;
}

uint64_t resolver_etcd_last_heard(const resolver_etcd *etcd)
{
    return etcd->last_heard;
}

void resolver_etcd_heard(resolver_etcd *etcd)
{
    etcd->last_heard = resolver_loop_now(etcd->loop);
}
