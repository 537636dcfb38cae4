/*
 * metrics_http.c - see metrics_http.h.
 *
 * Deliberately tiny: Prometheus (and curl) send one GET and read until the
 * server closes, so one request per connection is all we serve.  Each
 * connection reads its request head into a fixed 8 KiB buffer, answers
 * with one buffered response, then half-closes and discards input until
 * the peer closes: closing with unread input would make the kernel send a
 * RST that can destroy the response before the client has read it.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include "accept_backoff.h"
#include "daemon_log.h"
#include "metrics_http.h"
#include "metrics_text.h"

typedef struct conn conn;

struct conn {
    rsv_metrics_http *m;
    conn *prev, *next;
    int fd;
    resolver_timer *timer; /* the per-connection deadline */
    char in[RSV_METRICS_HTTP_MAX_REQUEST];
    size_t in_len;
    char *out; /* the whole response; NULL until there is one */
    size_t out_len, out_off;
    int lingering; /* response sent and write side shut: wait for the peer's EOF */
};

struct rsv_metrics_http {
    resolver_engine *engine;
    resolver_loop *loop;
    int fd;
    conn *conns;
    size_t n_conns;
    accept_backoff backoff;
    int have_backoff;
};

/* ---- connections ---- */

static void conn_close(conn *c)
{
    rsv_metrics_http *m = c->m;
    if (c->prev)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    m->n_conns--;
    resolver_loop_unwatch(m->loop, c->fd);
    close(c->fd);
    resolver_timer_free(c->timer);
    free(c->out);
    free(c);
}

static void on_conn_io(resolver_loop *loop, int fd, unsigned events, void *arg);

/* After the response: no more writes, and read only to see the peer's EOF. */
static void conn_linger(conn *c)
{
    free(c->out);
    c->out = NULL;
    c->lingering = 1;
    shutdown(c->fd, SHUT_WR);
    if (resolver_loop_watch(c->m->loop, c->fd, RESOLVER_FD_READ, on_conn_io, c) != 0)
        conn_close(c);
}

static void conn_flush(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (resolver_loop_watch(c->m->loop, c->fd, RESOLVER_FD_WRITE, on_conn_io, c) != 0)
                conn_close(c);
            return;
        }
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    conn_linger(c);
}

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

/* Queues one complete response and starts sending it.  HEAD gets the
 * headers of the GET without the body. */
static void conn_respond(conn *c, int status, const char *type, const char *body, size_t body_len,
                         int head_only)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "%sConnection: close\r\n\r\n",
                     status, status_text(status), type, body_len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    size_t send_body = head_only ? 0 : body_len;
    c->out = malloc((size_t)n + send_body);
    if (!c->out) {
        conn_close(c);
        return;
    }
    memcpy(c->out, head, (size_t)n);
    if (send_body)
        memcpy(c->out + n, body, send_body);
    c->out_len = (size_t)n + send_body;
    c->out_off = 0;
    conn_flush(c);
}

static void conn_respond_text(conn *c, int status, const char *text, int head_only)
{
    conn_respond(c, status, "text/plain; charset=utf-8", text, strlen(text), head_only);
}

static void serve_metrics(conn *c, int head_only)
{
    char *text = rsv_metrics_text(c->m->engine);
    if (!text) {
        conn_respond_text(c, 500, "out of memory\n", head_only);
        return;
    }
    /* The exposition format's own content type, as Prometheus expects. */
    conn_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text), head_only);
    free(text);
}

/* Kubernetes' and Envoy's readiness check: 200 "ready", or 503 with the
 * reason (resolver_engine_ready). */
static void serve_ready(conn *c, int head_only)
{
    char why[512], body[520];
    int ready = resolver_engine_ready(c->m->engine, why, sizeof(why));
    snprintf(body, sizeof(body), "%s\n", why);
    conn_respond_text(c, ready ? 200 : 503, body, head_only);
}

/* Handles the request line "METHOD TARGET HTTP/1.x" at the start of c->in
 * (NUL-terminated by the caller). */
static void conn_handle(conn *c)
{
    char *save = NULL;
    char *line = strtok_r(c->in, "\r\n", &save);
    char *method = line ? strtok_r(line, " ", &save) : NULL;
    char *target = method ? strtok_r(NULL, " ", &save) : NULL;
    char *version = target ? strtok_r(NULL, " ", &save) : NULL;
    if (!version || strtok_r(NULL, " ", &save) || strncmp(version, "HTTP/1.", 7) != 0) {
        conn_respond_text(c, 400, "malformed request line\n", 0);
        return;
    }
    int head_only = strcmp(method, "HEAD") == 0;
    if (!head_only && strcmp(method, "GET") != 0) {
        conn_respond_text(c, 405, "only GET and HEAD are served\n", 0);
        return;
    }
    target[strcspn(target, "?#")] = '\0'; /* a scraper's query string changes nothing */
    LOG_DEBUG("metrics: %s %s", method, target);
    if (strcmp(target, "/metrics") == 0)
        serve_metrics(c, head_only);
    else if (strcmp(target, "/healthz") == 0)
        conn_respond_text(c, 200, "ok\n", head_only); /* answering at all is the point */
    else if (strcmp(target, "/ready") == 0)
        serve_ready(c, head_only);
    else
        conn_respond_text(c, 404, "not found; try /metrics, /healthz or /ready\n", head_only);
}

/* The request head ends at the first empty line. */
static int head_complete(const conn *c)
{
    for (size_t i = 0; i + 1 < c->in_len; i++) {
        if (c->in[i] != '\n')
            continue;
        if (c->in[i + 1] == '\n' ||
            (c->in[i + 1] == '\r' && i + 2 < c->in_len && c->in[i + 2] == '\n'))
            return 1;
    }
    return 0;
}

static void conn_read(conn *c)
{
    /* One byte stays free for the NUL that conn_handle's parsing needs. */
    size_t room = sizeof(c->in) - 1 - c->in_len;
    ssize_t n = read(c->fd, c->in + c->in_len, room);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) { /* the client left before asking anything */
        conn_close(c);
        return;
    }
    c->in_len += (size_t)n;
    if (head_complete(c)) {
        c->in[c->in_len] = '\0';
        conn_handle(c);
    } else if (c->in_len == sizeof(c->in) - 1) {
        conn_respond_text(c, 431, "request head larger than 8 KiB\n", 0);
    }
}

/* Reads and drops whatever the peer still sends until its EOF. */
static void conn_discard(conn *c)
{
    char sink[1024];
    for (;;) {
        ssize_t n = read(c->fd, sink, sizeof(sink));
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(c);
        return;
    }
}

static void on_conn_io(resolver_loop *loop, int fd, unsigned events, void *arg)
{
    conn *c = arg;
    if (c->out)
        conn_flush(c);
    else if (c->lingering)
        conn_discard(c);
    else
        conn_read(c);
}

static void on_conn_timeout(resolver_loop *loop, resolver_timer *t, void *arg)
{
    conn *c = arg;
    LOG_DEBUG("metrics: closing a connection after %d ms", RSV_METRICS_HTTP_TIMEOUT_MS);
    conn_close(c);
}

/* Best effort: a refused scraper learns why instead of seeing a reset. */
static void refuse(int fd)
{
    static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                              "Connection: close\r\n\r\n";
    ssize_t rc = send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)rc;
    close(fd);
}

static void conn_open(rsv_metrics_http *m, int fd)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->m = m;
    c->fd = fd;
    c->next = m->conns;
    if (m->conns)
        m->conns->prev = c;
    m->conns = c;
    m->n_conns++;
    c->timer = resolver_timer_new(m->loop, on_conn_timeout, c);
    if (!c->timer || resolver_loop_watch(m->loop, fd, RESOLVER_FD_READ, on_conn_io, c) != 0) {
        conn_close(c);
        return;
    }
    resolver_timer_start(c->timer, RSV_METRICS_HTTP_TIMEOUT_MS);
}

static void on_accept(resolver_loop *loop, int fd, unsigned events, void *arg)
{
    rsv_metrics_http *m = arg;
    /* A bounded burst: the loop comes back while the backlog is not empty. */
    for (int burst = 0; burst < RSV_METRICS_HTTP_MAX_CONNS; burst++) {
        int cfd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            accept_backoff_failed(&m->backoff, errno);
            return;
        }
        if (m->n_conns >= RSV_METRICS_HTTP_MAX_CONNS) {
            static resolver_log_limit lim; /* one per connection attempt */
            LOG_WARN_LIMITED(&lim, "metrics: refused a connection: %d connections open (the limit)",
                             RSV_METRICS_HTTP_MAX_CONNS);
            refuse(cfd);
            continue;
        }
        conn_open(m, cfd);
    }
}

/* ---- listening socket ---- */

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" into host and port (in buf). */
static int split_listen(const char *listen_addr, char *buf, size_t buflen, const char **host,
                        const char **port)
{
    if (strlen(listen_addr) >= buflen)
        return -1;
    strcpy(buf, listen_addr);
    char *colon = strrchr(buf, ':');
    if (!colon || !colon[1])
        return -1;
    *colon = '\0';
    *port = colon + 1;
    *host = buf;
    if (buf[0] == '[') {
        size_t n = strlen(buf);
        if (n < 3 || buf[n - 1] != ']')
            return -1;
        buf[n - 1] = '\0';
        *host = buf + 1;
    }
    if (!**host)
        *host = "127.0.0.1"; /* ":PORT": loopback, never every interface */
    return 0;
}

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const uint8_t *a = in6->sin6_addr.s6_addr;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && a[12] == 127);
    }
    return 0;
}

static int bind_one(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    /* A restarted daemon must not wait for the old connections' TIME_WAIT. */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, RSV_METRICS_HTTP_MAX_CONNS) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Binds the first address `listen_addr` resolves to that accepts a bind. */
static int bind_listen(rsv_metrics_http *m, const char *listen_addr, char *err, size_t errlen)
{
    char buf[300];
    const char *host, *port;
    if (split_listen(listen_addr, buf, sizeof(buf), &host, &port) != 0) {
        snprintf(err, errlen, "metrics.listen \"%s\": not HOST:PORT or :PORT", listen_addr);
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "metrics.listen \"%s\": %s", listen_addr, gai_strerror(gai));
        return -1;
    }
    int saved = 0;
    for (const struct addrinfo *ai = res; ai && m->fd < 0; ai = ai->ai_next) {
        m->fd = bind_one(ai);
        if (m->fd < 0)
            saved = errno;
        else if (!is_loopback(ai->ai_addr))
            LOG_WARN("metrics.listen \"%s\" is not a loopback address: the metrics are served "
                     "to the network without authentication",
                     listen_addr);
    }
    freeaddrinfo(res);
    if (m->fd < 0) {
        snprintf(err, errlen, "metrics.listen \"%s\": cannot listen: %s", listen_addr,
                 strerror(saved));
        return -1;
    }
    return 0;
}

/* Names the address actually bound: ":9100" or "localhost:9100" say less. */
static void log_bound(const rsv_metrics_http *m)
{
    struct sockaddr_storage ss = {.ss_family = AF_UNSPEC};
    socklen_t len = sizeof(ss);
    char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
    if (getsockname(m->fd, (struct sockaddr *)&ss, &len) == 0)
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    int v6 = ss.ss_family == AF_INET6;
    LOG_INFO("metrics: serving http://%s%s%s:%s/metrics", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

rsv_metrics_http *rsv_metrics_http_new(resolver_engine *engine, const char *listen_addr, char *err,
                                       size_t errlen)
{
    rsv_metrics_http *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "metrics.listen: out of memory");
        return NULL;
    }
    m->engine = engine;
    m->loop = resolver_engine_loop(engine);
    m->fd = -1;
    if (bind_listen(m, listen_addr, err, errlen) != 0)
        goto fail;
    if (accept_backoff_init(&m->backoff, engine, RSV_LISTENER_METRICS, m->fd, on_accept, m) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    m->have_backoff = 1;
    if (resolver_loop_watch(m->loop, m->fd, RESOLVER_FD_READ, on_accept, m) != 0) {
        snprintf(err, errlen, "metrics.listen \"%s\": cannot watch the socket", listen_addr);
        goto fail;
    }
    log_bound(m);
    return m;
fail:
    rsv_metrics_http_del(m);
    return NULL;
}

void rsv_metrics_http_del(rsv_metrics_http *m)
{
    if (!m)
        return;
    while (m->conns)
        conn_close(m->conns);
    if (m->have_backoff)
        accept_backoff_clear(&m->backoff);
    if (m->fd >= 0) {
        resolver_loop_unwatch(m->loop, m->fd);
        close(m->fd);
    }
    free(m);
}
