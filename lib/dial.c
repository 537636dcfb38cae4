/*
 * dial.c - resolve, then race connection attempts (see dial.h).
 *
 * Shape: an array of attempts in the order to try, `next` the first not
 * started.  launch() starts attempts until one is in progress (one whose
 * connect() fails at once is recorded and the next one starts); the timer
 * starts another every DIAL_STAGGER_MS while some are left; an attempt that
 * fails starts the next at once.  The first socket to become writable with
 * SO_ERROR 0 wins.  The same timer, at 0 ms, carries a result reached
 * inside rsv_dial_start (dial.h rule 2).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dial.h"
#include "log.h"

typedef struct {
    rsv_dial *d;
    int fd; /* -1: not started, or over */
    int err;
    struct sockaddr_storage addr;
} attempt;

struct rsv_dial {
    rsv_loop *loop;
    rsv_dial_cb cb;
    void *arg;
    char *host; /* for reasons */
    uint16_t port;
    rsv_dns_lookup *lookup; /* while resolving */
    rsv_timer *timer;       /* the stagger, or a deferred result */
    attempt at[DNS_ADDRS_MAX];
    size_t n, next, active;
    int in_start; /* inside rsv_dial_start: results wait for the timer */
    int done;     /* the result below waits for the timer */
    int result_fd;
    char error[112];
};

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

void rsv_dial_format(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    } else {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(in4->sin_port));
    }
}

void rsv_dial_interleave(struct sockaddr_storage *addrs, size_t n)
{
    struct sockaddr_storage tmp[DNS_ADDRS_MAX];
    size_t first[DNS_ADDRS_MAX], other[DNS_ADDRS_MAX], nf = 0, no = 0, k = 0;
    if (n < 2)
        return;
    n = n > DNS_ADDRS_MAX ? DNS_ADDRS_MAX : n;
    for (size_t i = 0; i < n; i++) {
        if (addrs[i].ss_family == addrs[0].ss_family)
            first[nf++] = i;
        else
            other[no++] = i;
    }
    for (size_t i = 0; i < nf || i < no; i++) {
        if (i < nf)
            tmp[k++] = addrs[first[i]];
        if (i < no)
            tmp[k++] = addrs[other[i]];
    }
    memcpy(addrs, tmp, n * sizeof(*addrs));
}

/* ---- the end ---- */

static void close_attempt(attempt *a)
{
    if (a->fd < 0)
        return;
    rsv_loop_unwatch(a->d->loop, a->fd);
    close(a->fd);
    a->fd = -1;
}

static void dial_free(rsv_dial *d)
{
    for (size_t i = 0; i < d->n; i++)
        close_attempt(&d->at[i]);
    rsv_dns_cancel(d->lookup);
    rsv_timer_del(d->timer);
    free(d->host);
    free(d);
}

/* Reports fd (>= 0) or d->error, then frees d; inside rsv_dial_start
 * the report waits for the timer. */
static void finish(rsv_dial *d, int fd)
{
    d->result_fd = fd;
    if (d->in_start) {
        d->done = 1;
        rsv_timer_start(d->timer, 0);
        return;
    }
    rsv_dial_cb cb = d->cb;
    void *arg = d->arg;
    char error[sizeof(d->error)];
    snprintf(error, sizeof(error), "%s", d->error);
    dial_free(d);
    cb(fd, fd >= 0 ? NULL : error, arg);
}

/* Every attempt failed: say why, as briefly as the errors allow. */
static void fail_all(rsv_dial *d)
{
    int same = 1;
    for (size_t i = 1; i < d->n; i++)
        same = same && d->at[i].err == d->at[0].err;
    if (d->n == 1) {
        snprintf(d->error, sizeof(d->error), "connect: %s", strerror(d->at[0].err));
    } else if (same) {
        snprintf(d->error, sizeof(d->error), "connect: %s (all %zu addresses)",
                 strerror(d->at[0].err), d->n);
    } else {
        size_t len = (size_t)snprintf(d->error, sizeof(d->error), "connect:");
        for (size_t i = 0; i < d->n && len < sizeof(d->error); i++) {
            char a[INET6_ADDRSTRLEN + 8];
            rsv_dial_format(&d->at[i].addr, a, sizeof(a));
            len += (size_t)snprintf(d->error + len, sizeof(d->error) - len, "%s %s %s",
                                    i ? ";" : "", a, strerror(d->at[i].err));
        }
    }
    finish(d, -1);
}

/* ---- attempts ---- */

static void attempt_io_cb(rsv_loop *loop, int fd, unsigned events, void *arg);

/* Starts a's connect.  0 in progress, or -1 with a->err set. */
static int attempt_open(attempt *a)
{
    int rv;
    a->fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (a->fd < 0) {
        a->err = errno;
        return -1;
    }
    do
        rv = connect(a->fd, (struct sockaddr *)&a->addr, addr_len(&a->addr));
    while (rv != 0 && errno == EINTR);
    /* Even an immediate success is taken in attempt_io_cb: the socket is
     * writable at once. */
    if ((rv != 0 && errno != EINPROGRESS) ||
        rsv_loop_watch(a->d->loop, a->fd, RSV_LOOP_WRITE, attempt_io_cb, a) != 0) {
        a->err = errno ? errno : EIO;
        close(a->fd);
        a->fd = -1;
        return -1;
    }
    return 0;
}

/* Starts attempts until one is in progress; then arms the stagger for the
 * next, or, with nothing in progress and nothing left, fails. */
static void launch(rsv_dial *d)
{
    while (d->next < d->n) {
        attempt *a = &d->at[d->next++];
        if (attempt_open(a) == 0) {
            d->active++;
            break;
        }
    }
    if (d->active == 0 && d->next == d->n) {
        rsv_timer_stop(d->timer);
        fail_all(d);
        return;
    }
    if (d->next < d->n)
        rsv_timer_start(d->timer, DIAL_STAGGER_MS);
    else
        rsv_timer_stop(d->timer);
}

static void win(rsv_dial *d, attempt *a)
{
    int fd = a->fd;
    rsv_loop_unwatch(d->loop, fd);
    a->fd = -1;
    if (d->n > 1 && rsv_log_enabled(RESOLVER_LOG_DEBUG)) {
        char s[INET6_ADDRSTRLEN + 8];
        rsv_dial_format(&a->addr, s, sizeof(s));
        LOG_DEBUG("dial %s: connected to %s (attempt %zu of %zu)", d->host, s,
                  (size_t)(a - d->at) + 1, d->n);
    }
    finish(d, fd);
}

static void attempt_io_cb(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    attempt *a = arg;
    rsv_dial *d = a->d;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0) {
        win(d, a);
        return;
    }
    a->err = err;
    close_attempt(a);
    d->active--;
    launch(d); /* the next one at once (RFC 8305 section 5) */
}

static void timer_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_dial *d = arg;
    if (d->done) {
        d->in_start = 0;
        finish(d, d->result_fd);
        return;
    }
    launch(d);
}

/* ---- start ---- */

static rsv_dial *dial_new(rsv_loop *loop, const char *host, uint16_t port, rsv_dial_cb cb,
                          void *arg)
{
    rsv_dial *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->loop = loop;
    d->cb = cb;
    d->arg = arg;
    d->port = port;
    d->host = strdup(host);
    d->timer = rsv_timer_new(loop, timer_cb, d);
    if (!d->host || !d->timer) {
        rsv_timer_del(d->timer);
        free(d->host);
        free(d);
        return NULL;
    }
    for (size_t i = 0; i < DNS_ADDRS_MAX; i++) {
        d->at[i].d = d;
        d->at[i].fd = -1;
    }
    return d;
}

static void set_addrs(rsv_dial *d, const struct sockaddr_storage *addrs, size_t n)
{
    d->n = n > DNS_ADDRS_MAX ? DNS_ADDRS_MAX : n;
    for (size_t i = 0; i < d->n; i++)
        d->at[i].addr = addrs[i];
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static void on_resolved(int status, const struct sockaddr_storage *addrs, size_t n,
                        const char *error, void *arg)
{
    rsv_dial *d = arg;
    d->lookup = NULL;
    if (status != 0 || n == 0) {
        snprintf(d->error, sizeof(d->error), "resolve %s: %s", d->host,
                 error && *error ? error : "no address");
        finish(d, -1);
        return;
    }
    struct sockaddr_storage tmp[DNS_ADDRS_MAX];
    n = n > DNS_ADDRS_MAX ? DNS_ADDRS_MAX : n;
    for (size_t i = 0; i < n; i++) {
        tmp[i] = addrs[i];
        set_port(&tmp[i], d->port);
    }
    rsv_dial_interleave(tmp, n);
    set_addrs(d, tmp, n);
    launch(d);
}

/* 1 and *ss filled if host is a numeric IPv4 or IPv6 address. */
static int numeric(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        return 1;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        return 1;
    }
    return 0;
}

rsv_dial *rsv_dial_start(rsv_loop *loop, rsv_dns *dns, const char *host, uint16_t port,
                         rsv_dial_cb cb, void *arg)
{
    struct sockaddr_storage ss;
    rsv_dial *d = dial_new(loop, host, port, cb, arg);
    if (!d)
        return NULL;
    d->in_start = 1;
    if (numeric(host, port, &ss)) {
        set_addrs(d, &ss, 1);
        launch(d);
    } else if (!dns) {
        snprintf(d->error, sizeof(d->error), "resolve %s: no DNS resolver here", host);
        finish(d, -1);
    } else if (!(d->lookup = rsv_dns_lookup_start(dns, host, on_resolved, d))) {
        dial_free(d);
        return NULL;
    }
    if (!d->done)
        d->in_start = 0;
    return d;
}

rsv_dial *rsv_dial_addrs(rsv_loop *loop, const struct sockaddr_storage *addrs, size_t n,
                         rsv_dial_cb cb, void *arg)
{
    if (n == 0)
        return NULL;
    char name[INET6_ADDRSTRLEN + 8];
    rsv_dial_format(&addrs[0], name, sizeof(name));
    rsv_dial *d = dial_new(loop, name, 0, cb, arg);
    if (!d)
        return NULL;
    d->in_start = 1;
    set_addrs(d, addrs, n);
    launch(d);
    if (!d->done)
        d->in_start = 0;
    return d;
}

void rsv_dial_cancel(rsv_dial *d)
{
    if (d)
        dial_free(d);
}

int rsv_dial_resolving(const rsv_dial *d)
{
    return d && d->lookup != NULL;
}

size_t rsv_dial_attempts(const rsv_dial *d)
{
    return d ? d->next : 0;
}
