/*
 * h2server.c - a small HTTP/2 server for integration tests and benchmarks.
 *
 * Cleartext HTTP/2 with prior knowledge (h2c), nghttp2's server API, one
 * epoll loop, one thread, any number of connections.  Every GET/POST is
 * answered 200 with --name as the body, so a test can see which backend
 * answered; grpc.health.v1.Health/Check and /Watch get a real gRPC answer
 * (SERVING unless --health says otherwise).  Misbehaviours a client must
 * survive are switched on by options: idle close, max connection age,
 * PING abuse policing, never ACKing PINGs.
 *
 * Usage: h2server [options] PORT      (PORT 0: pick a free one)
 *   --bind ADDR               listen address, IPv4 or IPv6 (default 127.0.0.1)
 *   --port-file FILE          write the bound port there once listening
 *   --name NAME               body of every answer (default "h2server")
 *   --idle-close MS           GOAWAY NO_ERROR + close after MS without streams
 *   --goaway-after MS         GOAWAY NO_ERROR MS after a connection opens
 *   --goaway-code N           the error code of those two GOAWAYs instead of
 *                             NO_ERROR (grpcio's idle close says 2)
 *   --goaway-last-id N        announce N as their last_stream_id instead of
 *                             the last stream processed (a server that drops
 *                             streams it had received)
 *   --min-ping-interval MS    a PING sooner than MS after the previous one is
 *                             a strike; more than --ping-strikes strikes (as
 *                             gRPC: default 2) get GOAWAY ENHANCE_YOUR_CALM
 *                             "too_many_pings" and the connection closed
 *   --ping-strikes N
 *   --no-ping-ack             never ACK PINGs (a zombie peer)
 *   --health STATUS           SERVING, NOT_SERVING or UNIMPLEMENTED
 *   --verbose                 log connections to stderr
 * SIGTERM/SIGINT: GOAWAY to every connection, close, exit 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <nghttp2/nghttp2.h>

#define MAX_EVENTS 256
#define GOAWAY_GRACE_MS 1000 /* streams get this long after a NO_ERROR GOAWAY */
#define HEALTH_PREFIX "/grpc.health.v1.Health/"

typedef struct stream {
    int32_t id;
    int health; /* a grpc.health.v1.Health call: 1 Check, 2 Watch */
    const uint8_t *body;
    size_t len, off;
    uint8_t msg[7]; /* a gRPC frame: flag, length, HealthCheckResponse */
    struct stream *prev, *next;
} stream;

typedef struct conn {
    int fd;
    nghttp2_session *s;
    uint64_t opened_ms, idle_since_ms, goaway_ms, last_ping_ms;
    int open_streams, strikes;
    int goaway_sent; /* by us */
    int hard_close;  /* close once the output is flushed */
    int dead;        /* freed at the end of the loop iteration */
    uint32_t events;
    stream *streams; /* nghttp2_session_del does not call on_stream_close */
    struct conn *prev, *next;
} conn;

/* The options; a test program may have a few globals. */
static struct {
    const char *bind, *port_file, *name;
    uint64_t idle_close_ms, goaway_after_ms, min_ping_interval_ms;
    int ping_strikes, no_ping_ack, verbose;
    int health;             /* 1 SERVING, 2 NOT_SERVING, -1 UNIMPLEMENTED */
    uint32_t goaway_code;   /* of the idle and max-age GOAWAYs */
    int64_t goaway_last_id; /* -1: the last stream processed */
} opt = {"127.0.0.1", NULL, "h2server", 0, 0, 0, 2, 0, 0, 1, NGHTTP2_NO_ERROR, -1};

static conn *conns;
static int epfd;
static char listen_tag, signal_tag; /* epoll data for the non-conn fds */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void vlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void vlog(const char *fmt, ...)
{
    if (!opt.verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "h2server[%d]: ", (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- responses ---- */

static ssize_t body_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    stream *st = src->ptr;
    size_t n = st->len - st->off;
    if (n > len)
        n = len;
    memcpy(buf, st->body + st->off, n);
    st->off += n;
    if (st->off < st->len)
        return (ssize_t)n;
    if (st->health == 2) /* Watch: the stream stays open after the first answer */
        return n > 0 ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->health == 1) {
        static const nghttp2_nv trailer[] = {
            {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE}};
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (nghttp2_submit_trailer(s, sid, trailer, 1) != 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }

static int respond(nghttp2_session *s, stream *st)
{
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = body_read};
    if (!st->health) {
        nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "text/plain")};
        st->body = (const uint8_t *)opt.name;
        st->len = strlen(opt.name);
        return nghttp2_submit_response(s, st->id, nv, 2, &prd);
    }
    if (opt.health < 0) { /* trailers-only answer */
        nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                           NV("grpc-status", "12")};
        return nghttp2_submit_response(s, st->id, nv, 3, NULL);
    }
    /* HealthCheckResponse{status = opt.health}: field 1, varint. */
    const uint8_t msg[7] = {0, 0, 0, 0, 2, 0x08, (uint8_t)opt.health};
    memcpy(st->msg, msg, sizeof(msg));
    st->body = st->msg;
    st->len = sizeof(st->msg);
    nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    return nghttp2_submit_response(s, st->id, nv, 2, &prd);
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    conn *c = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream only */
    st->id = f->hd.stream_id;
    if (nghttp2_session_set_stream_user_data(s, st->id, st) != 0) {
        free(st);
        return 0;
    }
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    c->open_streams++;
    return 0;
}

static void stream_free(conn *c, stream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    free(st);
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    size_t plen = sizeof(HEALTH_PREFIX) - 1;
    if (!st || nlen != 5 || memcmp(name, ":path", 5) != 0)
        return 0;
    if (vlen == plen + 5 && memcmp(value, HEALTH_PREFIX, plen) == 0) {
        if (memcmp(value + plen, "Check", 5) == 0)
            st->health = 1;
        else if (memcmp(value + plen, "Watch", 5) == 0)
            st->health = 2;
    }
    return 0;
}

static void send_goaway_last(conn *c, int32_t last_id, uint32_t code, const char *debug)
{
    if (c->goaway_sent)
        return;
    nghttp2_submit_goaway(c->s, NGHTTP2_FLAG_NONE, last_id, code, (const uint8_t *)debug,
                          debug ? strlen(debug) : 0);
    c->goaway_sent = 1;
    c->goaway_ms = now_ms();
}

static void send_goaway(conn *c, uint32_t code, const char *debug)
{
    send_goaway_last(c, nghttp2_session_get_last_proc_stream_id(c->s), code, debug);
}

/* The GOAWAY of a trigger (idle, max age): --goaway-code, --goaway-last-id. */
static void send_trigger_goaway(conn *c, const char *debug)
{
    int32_t last = opt.goaway_last_id >= 0 ? (int32_t)opt.goaway_last_id
                                           : nghttp2_session_get_last_proc_stream_id(c->s);
    send_goaway_last(c, last, opt.goaway_code, debug);
}

static void police_ping(conn *c)
{
    uint64_t now = now_ms();
    if (c->last_ping_ms && now - c->last_ping_ms < opt.min_ping_interval_ms &&
        ++c->strikes > opt.ping_strikes) {
        vlog("fd %d: too many pings, GOAWAY ENHANCE_YOUR_CALM", c->fd);
        send_goaway(c, NGHTTP2_ENHANCE_YOUR_CALM, "too_many_pings");
        c->hard_close = 1;
    }
    c->last_ping_ms = now;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    conn *c = user;
    if (f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK) && opt.min_ping_interval_ms)
        police_ping(c);
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        if (st && respond(s, st) != 0)
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t code, void *user)
{
    conn *c = user;
    stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st)
        return 0;
    stream_free(c, st);
    if (--c->open_streams == 0)
        c->idle_since_ms = now_ms();
    return 0;
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *user)
{
    conn *c = user;
    ssize_t n;
    do
        n = send(c->fd, data, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK ? NGHTTP2_ERR_WOULDBLOCK
                                                   : NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* ---- connections ---- */

static void conn_kill(conn *c, const char *why)
{
    if (c->dead)
        return;
    vlog("fd %d: closing (%s)", c->fd, why);
    c->dead = 1;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

static void conn_free(conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    nghttp2_session_del(c->s);
    while (c->streams)
        stream_free(c, c->streams);
    free(c);
}

/* Sends what nghttp2 has, updates epoll interest, closes when done. */
static void conn_sync(conn *c)
{
    if (c->dead)
        return;
    if (nghttp2_session_send(c->s) != 0) {
        conn_kill(c, "write error");
        return;
    }
    int ww = nghttp2_session_want_write(c->s);
    if (!nghttp2_session_want_read(c->s) && !ww) {
        conn_kill(c, "session done");
        return;
    }
    if (c->hard_close && !ww) {
        conn_kill(c, "after GOAWAY");
        return;
    }
    uint32_t ev = EPOLLIN | (ww ? EPOLLOUT : 0);
    if (ev != c->events) {
        struct epoll_event e = {.events = ev, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
        c->events = ev;
    }
}

static void conn_read(conn *c)
{
    uint8_t buf[16384];
    for (int i = 0; i < 8; i++) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            conn_kill(c, n == 0 ? "EOF" : strerror(errno));
            return;
        }
        if (nghttp2_session_mem_recv(c->s, buf, (size_t)n) < 0) {
            conn_kill(c, "protocol error");
            return;
        }
    }
    conn_sync(c);
}

static nghttp2_session_callbacks *cbs;

static nghttp2_session_callbacks *callbacks(void)
{
    if (cbs || nghttp2_session_callbacks_new(&cbs) != 0)
        return cbs;
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    return cbs;
}

static void conn_new(int fd)
{
    conn *c = calloc(1, sizeof(*c));
    nghttp2_option *o = NULL;
    if (!c || !callbacks() || nghttp2_option_new(&o) != 0)
        goto fail;
    if (opt.no_ping_ack)
        nghttp2_option_set_no_auto_ping_ack(o, 1);
    int rv = nghttp2_session_server_new2(&c->s, callbacks(), c, o);
    nghttp2_option_del(o);
    if (rv != 0)
        goto fail;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000}};
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 1);
    c->fd = fd;
    c->opened_ms = c->idle_since_ms = now_ms();
    c->events = EPOLLIN;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) != 0)
        goto fail_session;
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    vlog("fd %d: accepted", fd);
    conn_sync(c);
    return;

fail_session:
    nghttp2_session_del(c->s);
fail:
    free(c);
    close(fd);
}

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                fprintf(stderr, "h2server: accept: %s\n", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn_new(fd);
    }
}

/* ---- timers: a scan over connections, fine at test scale ---- */

static uint64_t min_deadline(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Sends the trigger GOAWAY when a trigger (max age, idle) is due;
 * returns the connection's next trigger (UINT64_MAX: none). */
static uint64_t check_triggers(conn *c, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    if (opt.goaway_after_ms) {
        uint64_t d = c->opened_ms + opt.goaway_after_ms;
        if (now >= d) {
            vlog("fd %d: max age, GOAWAY code %u", c->fd, (unsigned)opt.goaway_code);
            send_trigger_goaway(c, "max_age");
            return next;
        }
        next = min_deadline(next, d);
    }
    if (opt.idle_close_ms && c->open_streams == 0) {
        uint64_t d = c->idle_since_ms + opt.idle_close_ms;
        if (now >= d) {
            vlog("fd %d: idle, GOAWAY code %u", c->fd, (unsigned)opt.goaway_code);
            send_trigger_goaway(c, "idle");
            return next;
        }
        next = min_deadline(next, d);
    }
    return next;
}

/* Acts on due deadlines; returns the next one (UINT64_MAX: none). */
static uint64_t run_deadlines(uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (conn *c = conns; c; c = c->next) {
        if (c->dead)
            continue;
        if (!c->goaway_sent) {
            next = min_deadline(next, check_triggers(c, now));
            if (!c->goaway_sent)
                continue;
            conn_sync(c); /* sends the GOAWAY; closes at once if no stream is open */
            if (c->dead)
                continue;
        }
        uint64_t d = c->goaway_ms + GOAWAY_GRACE_MS;
        if (now >= d)
            conn_kill(c, "GOAWAY grace over");
        else
            next = min_deadline(next, d);
    }
    return next;
}

static void reap(void)
{
    for (conn *c = conns, *n; c; c = n) {
        n = c->next;
        if (c->dead)
            conn_free(c);
    }
}

/* ---- setup ---- */

static int listen_on(const char *addr, int port, int *bound)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        len = sizeof(*in4);
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        len = sizeof(*in6);
    } else {
        fprintf(stderr, "h2server: --bind %s: not an IPv4 or IPv6 address\n", addr);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        fprintf(stderr, "h2server: listen on %s:%d: %s\n", addr, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *bound = ntohs(ss.ss_family == AF_INET ? in4->sin_port : in6->sin6_port);
    return fd;
}

/* Written to a temporary name and renamed, so a reader never sees half. */
static int write_port_file(const char *path, int port)
{
    size_t n = strlen(path) + 8;
    char *tmp = malloc(n);
    if (!tmp)
        return -1;
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && fprintf(f, "%d\n", port) > 0;
    if (f && fclose(f) != 0)
        ok = 0;
    if (ok && rename(tmp, path) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "h2server: %s: %s\n", path, strerror(errno));
    free(tmp);
    return ok ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: h2server [--bind ADDR] [--port-file FILE] [--name NAME]\n"
                    "                [--idle-close MS] [--goaway-after MS] [--goaway-code N]\n"
                    "                [--goaway-last-id N]\n"
                    "                [--min-ping-interval MS] [--ping-strikes N] [--no-ping-ack]\n"
                    "                [--health SERVING|NOT_SERVING|UNIMPLEMENTED] [--verbose] "
                    "PORT\n");
    exit(2);
}

static uint64_t number(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-')
        usage();
    return v;
}

static int parse_args(int argc, char **argv)
{
    int port = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--no-ping-ack") == 0)
            opt.no_ping_ack = 1;
        else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0)
            opt.verbose = 1;
        else if (strcmp(a, "--bind") == 0 && more)
            opt.bind = argv[++i];
        else if (strcmp(a, "--port-file") == 0 && more)
            opt.port_file = argv[++i];
        else if (strcmp(a, "--name") == 0 && more)
            opt.name = argv[++i];
        else if (strcmp(a, "--idle-close") == 0 && more)
            opt.idle_close_ms = number(argv[++i]);
        else if (strcmp(a, "--goaway-after") == 0 && more)
            opt.goaway_after_ms = number(argv[++i]);
        else if (strcmp(a, "--goaway-code") == 0 && more)
            opt.goaway_code = (uint32_t)number(argv[++i]);
        else if (strcmp(a, "--goaway-last-id") == 0 && more)
            opt.goaway_last_id = (int64_t)(number(argv[++i]) & 0x7fffffff);
        else if (strcmp(a, "--min-ping-interval") == 0 && more)
            opt.min_ping_interval_ms = number(argv[++i]);
        else if (strcmp(a, "--ping-strikes") == 0 && more)
            opt.ping_strikes = (int)number(argv[++i]);
        else if (strcmp(a, "--health") == 0 && more) {
            const char *h = argv[++i];
            opt.health = strcmp(h, "SERVING") == 0         ? 1
                         : strcmp(h, "NOT_SERVING") == 0   ? 2
                         : strcmp(h, "UNIMPLEMENTED") == 0 ? -1
                                                           : 0;
            if (!opt.health)
                usage();
        } else if (a[0] != '-' && port < 0) {
            uint64_t p = number(a);
            if (p > 65535)
                usage();
            port = (int)p;
        } else
            usage();
    }
    if (port < 0)
        usage();
    return port;
}

static int setup_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void shutdown_all(void)
{
    for (conn *c = conns; c; c = c->next) {
        if (c->dead)
            continue;
        send_goaway(c, NGHTTP2_NO_ERROR, "shutdown");
        (void)nghttp2_session_send(c->s); /* best effort */
        conn_kill(c, "shutdown");
    }
    reap();
}

int main(int argc, char **argv)
{
    int port = parse_args(argc, argv), bound;
    int sfd = setup_signals();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || epfd < 0) {
        fprintf(stderr, "h2server: setup: %s\n", strerror(errno));
        return 1;
    }
    int lfd = listen_on(opt.bind, port, &bound);
    if (lfd < 0)
        return 1;
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = &listen_tag};
    struct epoll_event se = {.events = EPOLLIN, .data.ptr = &signal_tag};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &le) != 0 ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &se) != 0) {
        fprintf(stderr, "h2server: epoll: %s\n", strerror(errno));
        return 1;
    }
    if (opt.port_file && write_port_file(opt.port_file, bound) != 0)
        return 1;
    fprintf(stderr, "h2server: %s listening on %s:%d\n", opt.name, opt.bind, bound);

    for (int running = 1; running;) {
        uint64_t next = run_deadlines(now_ms());
        reap();
        uint64_t now = now_ms();
        int timeout = next == UINT64_MAX ? -1 : next <= now ? 0 : (int)(next - now);
        struct epoll_event ev[MAX_EVENTS];
        int n = epoll_wait(epfd, ev, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "h2server: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &listen_tag) {
                accept_all(lfd);
            } else if (ev[i].data.ptr == &signal_tag) {
                running = 0;
            } else {
                conn *c = ev[i].data.ptr; /* freed only by reap(), after this batch */
                if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                    conn_read(c);
                else
                    conn_sync(c);
            }
        }
        reap();
    }
    shutdown_all();
    close(lfd);
    close(sfd);
    close(epfd);
    nghttp2_session_callbacks_del(cbs);
    fprintf(stderr, "h2server: %s stopped\n", opt.name);
    return 0;
}
