/*
 * subchannel.c - one connection to one instance (see subchannel.h).
 *
 * Shape:
 *  - Reaching the instance (its name resolved off the loop, every address
 *    raced) is dial.h's: a conn has no socket of its own until its dial
 *    hands over a connected one (conn_dialed); the connect deadline covers
 *    both.
 *  - A subchannel owns at most two connections ("conn"): `active`, the one
 *    its state describes, and `pending`, a replacement opened when the active
 *    one reaches max_connection_age; the old one is retired only once the
 *    replacement is READY, so the state never leaves READY for that.
 *  - nghttp2 does no I/O here: bytes read go to nghttp2_session_mem_recv,
 *    bytes to write come from nghttp2_session_mem_send.  nghttp2 callbacks
 *    only record what arrived (SETTINGS, PING ACK, GOAWAY) in the conn; the
 *    state machine acts on those records after mem_recv has returned, never
 *    from inside nghttp2.
 *  - A state callback may delete the subchannel or shut it down (rule 2 of
 *    subchannel.h), which frees its connections.  So notify() reports through
 *    a flag on its own stack whether the subchannel survived, every caller
 *    returns at once when it did not, and a conn is found again by its id
 *    after a notification, never through a pointer held across it.
 *  - A failure noticed inside a call the host made (probe) is reported from
 *    a 0 ms timer, so a host never sees its own callback re-entered from a
 *    call it made; failures noticed in loop callbacks are reported at once.
 *
 * Backoff follows gRPC's rules (doc/design.md, Backoff): each attempt gets a
 * deadline now + backoff (jittered, growing), its connect timeout is
 * max(that, connect_timeout_ms), and after a failure the next attempt waits
 * until that deadline.  The backoff resets when the server's SETTINGS arrive
 * (protocol tcp: when the TCP connect completes).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "clock.h"
#include "dial.h"
#include "log.h"
#include "random.h"
#include "subchannel.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 20000   /* gRPC MIN_CONNECT_TIMEOUT */
#define DEFAULT_KEEPALIVE_TIMEOUT_MS 20000 /* gRPC's default keepalive timeout */
#define KEEPALIVE_TIME_MAX_MS (24ull * 3600 * 1000)
/* A connection must have been READY this long for a clean end (EOF, or a
 * GOAWAY that left no stream of ours unprocessed) to earn an immediate reconnect; faster churn
 * counts as a failure, so a peer that accepts and hangs up at once gets backoff, not a hot loop. */
#define FREE_RECONNECT_MIN_READY_MS 100
#define AGE_JITTER 0.1 /* max_connection_age +-10 % (doc/design.md, Connection ends) */
#define READ_CHUNK 16384
/* Plain sockets: reads per readiness event; epoll is level-triggered, so the
 * rest comes next iteration and one busy peer cannot starve the loop.  TLS
 * reads until WANT_READ because OpenSSL may buffer what epoll cannot see. */
#define READS_PER_EVENT 8
/* Health checking (grpc.health.v1.Health). */
#define HC_POLL_MAX_MS 5000   /* Check polling: min(keepalive_time, this) */
#define HC_REOPEN_MS 200      /* a Watch that had answered ended: open it again after this */
#define HC_RETRY_MIN_MS 1000  /* a call that failed without an answer: retry after this, */
#define HC_RETRY_MAX_MS 10000 /* doubling up to this */
#define HC_MSG_MAX 1024       /* a HealthCheckResponse is 2 bytes; refuse silly sizes */
/* nghttp2 blocks this large or larger get pages of their own (see h2_mem). */
#define H2_BIG_BLOCK 4096
#define H2_BIG_BLOCKS 4

enum { IO_AGAIN = -1, IO_ERROR = -2 };

/* What the subchannel knows of its instance's health (stats.health). */
typedef enum {
    HEALTH_NONE = 0, /* not checked, or no answer yet on this connection */
    HEALTH_SERVING,
    HEALTH_NOT_SERVING,
    HEALTH_SERVICE_UNKNOWN,
    HEALTH_UNKNOWN,      /* the server said UNKNOWN, or the call failed */
    HEALTH_UNIMPLEMENTED /* neither Watch nor Check: treated as healthy */
} health_status;

enum { HC_WATCH = 1, HC_CHECK = 2 };

/* The health call of one connection (only with health checking on).  The
 * nghttp2 callbacks fill the "recorded" part; health_dispatch acts on it
 * after mem_recv returns, as for PING ACKs and GOAWAY. */
typedef struct {
    uint8_t *req; /* the request of every call: sc->hc_req when the connection began */
    size_t req_len;
    int method;        /* HC_WATCH, or HC_CHECK once Watch was UNIMPLEMENTED */
    int32_t stream_id; /* the call in progress; 0: none */
    size_t req_off;    /* request bytes handed to nghttp2 */
    int answers;       /* messages received on this call */
    uint64_t retry_ms; /* the last retry delay after a failed call; 0: none yet */
    /* `timer`: with a call in progress, its deadline (Watch: the first
     * answer; Check: the answer); without, when to start the next call. */
    rsv_timer *timer;
    /* gRPC message framing: 5-byte prefix, then the message. */
    uint8_t prefix[5];
    size_t prefix_have;
    uint8_t *msg;
    size_t msg_len, msg_have;
    /* Recorded by nghttp2 callbacks. */
    int got_status, status_value; /* the last HealthCheckResponse.status */
    int closed;                   /* the call's stream closed */
    uint32_t rst_code;
    int bad;         /* malformed answer */
    int grpc_status; /* -1: none seen */
    int http_status; /* 0: none seen */
} health;

typedef enum {
    CONN_TCP_CONNECTING, /* dial.h resolves and races the addresses (c->dial) */
    CONN_TLS_HANDSHAKE,
    CONN_H2_HANDSHAKE, /* preface + SETTINGS sent; waiting for the server's SETTINGS */
    CONN_READY
} conn_phase;

typedef struct conn {
    rsv_subchannel *sc;
    uint64_t id; /* never reused within a subchannel: see conn_find */
    int fd;
    rsv_dial *dial; /* CONN_TCP_CONNECTING: the socket is the dial's until it connects */
    conn_phase phase;
    SSL *ssl;
    nghttp2_session *h2;
    const uint8_t *out; /* mem_send output not yet written (nghttp2's buffer) */
    size_t out_len;
    unsigned watching;         /* the events the loop watches for fd */
    int tls_want_write;        /* OpenSSL needs the socket writable to progress */
    rsv_timer *deadline_timer; /* connect deadline, or a deferred failure */
    rsv_timer *keepalive_timer;
    rsv_timer *ping_timer;      /* PING ACK timeout */
    rsv_timer *age_timer;       /* max_connection_age */
    uint64_t keepalive_time_ms; /* copied at creation: a doubling applies to new conns */
    uint64_t ready_since_ms;
    uint64_t last_read_ms;
    uint8_t ping_data[8];
    int ping_in_flight;
    uint64_t ping_seq;
    uint64_t ping_sent_us;
    /* Recorded by nghttp2 callbacks, acted on after mem_recv returns. */
    int got_settings, got_ping_ack, got_goaway, too_many_pings;
    uint32_t goaway_code;
    int goaway_processed;  /* the GOAWAY's last_stream_id covers every open stream of ours */
    char goaway_debug[32]; /* its debug data, printable ASCII, for the log */
    health *hc;            /* NULL unless health checking is on */
    struct {
        void *p;
        size_t len;
    } big[H2_BIG_BLOCKS]; /* nghttp2's large blocks, mapped here (h2_mem) */
    char error[112];      /* the cause of a failure about to be reported */
} conn;

struct rsv_subchannel {
    rsv_loop *loop;
    rsv_dns *dns; /* NULL: numeric hosts only */
    char *host;   /* without IPv6 brackets */
    char *name;   /* "host:port" or "[v6]:port", for logs */
    uint16_t port;
    rsv_service_options opts;       /* what the connections opened now use */
    rsv_service_options *next_opts; /* a reload's, taken when the next one opens */
    rsv_subchannel_state_cb cb;
    void *arg;
    rsv_state state;
    char state_cause[128]; /* why the last transition happened, for the service's log */
    int connected_before;  /* for stats.reconnects */
    rsv_subchannel_stats stats;
    rsv_backoff backoff;
    uint64_t attempt_deadline_ms; /* gRPC's current_deadline */
    uint64_t keepalive_time_ms;   /* doubled on GOAWAY too_many_pings */
    uint64_t next_conn_id;
    conn *active, *pending;
    rsv_timer *retry_timer;
    int *deleted_flag; /* set while the state callback runs */
    SSL_CTX *ssl_ctx;  /* protocol h2: created at the first TLS connect */
    uint8_t *hc_req;   /* the health request: gRPC prefix + HealthCheckRequest; NULL: off */
    size_t hc_req_len;
    health_status health;
};

static void conn_fail(conn *c, const char *cause, int clean);
static void conn_write_failed(conn *c);
static void conn_io_cb(rsv_loop *loop, int fd, unsigned events, void *arg);
static void conn_defer_fail(conn *c);
static conn *conn_find(rsv_subchannel *sc, uint64_t id);
static int conn_flush(conn *c);
static int health_begin(conn *c);
static void health_free(health *h);

/* ---- small helpers ---- */

static uint64_t connect_timeout_ms(const rsv_subchannel *sc)
{
    return sc->opts.connect_timeout_ms ? sc->opts.connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
}

static uint64_t keepalive_timeout_ms(const rsv_subchannel *sc)
{
    return sc->opts.keepalive_timeout_ms ? sc->opts.keepalive_timeout_ms
                                         : DEFAULT_KEEPALIVE_TIMEOUT_MS;
}

/* ---- state ---- */

/* Records a transition and calls the state callback.  Returns 0 if the
 * callback deleted the subchannel: the caller must then return without
 * touching it or anything it owned.  Otherwise the callback may still have
 * shut it down, so callers make this the last step or look things up
 * again. */
static int set_state(rsv_subchannel *sc, rsv_state to, const char *cause)
{
    rsv_state from = sc->state;
    if (from == to)
        return 1;
    sc->state = to;
    sc->stats.state_since_ms = rsv_loop_now(sc->loop);
    sc->stats.transitions++;
    if (to == RSV_STATE_CONNECTING) {
        if (sc->connected_before)
            sc->stats.reconnects++;
        sc->connected_before = 1;
    }
    /* The service logs transitions (it knows the service's name). */
    snprintf(sc->state_cause, sizeof(sc->state_cause), "%s", cause);
    if (!sc->cb)
        return 1;
    int deleted = 0;
    int *outer = sc->deleted_flag; /* a callback may nest another transition */
    sc->deleted_flag = &deleted;
    sc->cb(sc, from, to, sc->arg);
    if (deleted) {
        if (outer)
            *outer = 1;
        return 0;
    }
    sc->deleted_flag = outer;
    return 1;
}

/* ---- connection I/O ---- */

static int conn_watch(conn *c)
{
    unsigned ev = RSV_LOOP_READ;
    if (c->out_len > 0 || c->tls_want_write)
        ev |= RSV_LOOP_WRITE;
    if (ev == c->watching)
        return 0;
    if (rsv_loop_watch(c->sc->loop, c->fd, ev, conn_io_cb, c) != 0) {
        snprintf(c->error, sizeof(c->error), "epoll: %s", strerror(errno));
        return -1;
    }
    c->watching = ev;
    return 0;
}

static void tls_error(conn *c, const char *what, int ssl_err, int saved_errno)
{
    unsigned long e = ERR_peek_last_error();
    long vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK) {
        snprintf(c->error, sizeof(c->error), "%s: certificate verify failed: %s", what,
                 X509_verify_cert_error_string(vr));
    } else if (e) {
        char buf[96];
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(c->error, sizeof(c->error), "%s: %s", what, buf);
    } else if (ssl_err == SSL_ERROR_SYSCALL && saved_errno) {
        snprintf(c->error, sizeof(c->error), "%s: %s", what, strerror(saved_errno));
    } else {
        snprintf(c->error, sizeof(c->error), "%s: connection closed by peer", what);
    }
    ERR_clear_error();
}

/* Returns bytes written, IO_AGAIN or IO_ERROR (c->error set). */
static ssize_t conn_send(conn *c, const uint8_t *p, size_t n)
{
    if (c->ssl) {
        ERR_clear_error();
        int w = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (w > 0) {
            c->sc->stats.bytes_out += (uint64_t)w;
            return w;
        }
        int saved = errno, e = SSL_get_error(c->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            return IO_AGAIN; /* WANT_READ: READ is always watched */
        tls_error(c, "TLS write", e, saved);
        return IO_ERROR;
    }
    for (;;) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w >= 0) {
            c->sc->stats.bytes_out += (uint64_t)w;
            return w;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return IO_AGAIN;
        snprintf(c->error, sizeof(c->error), "write: %s", strerror(errno));
        return IO_ERROR;
    }
}

/* Returns bytes read, 0 at EOF, IO_AGAIN or IO_ERROR (c->error set). */
static ssize_t conn_recv(conn *c, uint8_t *buf, size_t n)
{
    ssize_t r;
    if (c->ssl) {
        ERR_clear_error();
        c->tls_want_write = 0;
        int rv = SSL_read(c->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
        if (rv <= 0) {
            int saved = errno, e = SSL_get_error(c->ssl, rv);
            if (e == SSL_ERROR_ZERO_RETURN)
                return 0; /* close_notify, or a bare EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
            if (e == SSL_ERROR_WANT_READ)
                return IO_AGAIN;
            if (e == SSL_ERROR_WANT_WRITE) {
                c->tls_want_write = 1; /* e.g. answering a KeyUpdate into a full socket */
                return IO_AGAIN;
            }
            tls_error(c, "TLS read", e, saved);
            return IO_ERROR;
        }
        r = rv;
    } else {
        do
            r = recv(c->fd, buf, n, 0);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return IO_AGAIN;
            snprintf(c->error, sizeof(c->error), "read: %s", strerror(errno));
            return IO_ERROR;
        }
    }
    if (r > 0) {
        c->sc->stats.bytes_in += (uint64_t)r;
        /* Keepalive idleness is measured from the last byte read (doc/design.md, Keepalive). */
        c->last_read_ms = rsv_loop_now(c->sc->loop);
    }
    return r;
}

/* Writes what nghttp2 has to send until the socket would block.  Returns 0,
 * or -1 with c->error set.  Never changes any state, so it is safe inside
 * any call. */
static int conn_flush(conn *c)
{
    for (;;) {
        if (c->out_len == 0) {
            ssize_t n = nghttp2_session_mem_send(c->h2, &c->out);
            if (n < 0) {
                snprintf(c->error, sizeof(c->error), "http2: %s", nghttp2_strerror((int)n));
                return -1;
            }
            if (n == 0)
                break;
            c->out_len = (size_t)n;
        }
        ssize_t w = conn_send(c, c->out, c->out_len);
        if (w == IO_AGAIN)
            break;
        if (w == IO_ERROR)
            return -1;
        c->out += w;
        c->out_len -= (size_t)w;
    }
    /* WRITE interest only while output is left over: nghttp2 has nothing
     * more (mem_send returned 0), so watching want_write alone would spin. */
    return conn_watch(c);
}

/* ---- connection lifetime ---- */

/* Stops everything and frees c.  With `goaway`, an HTTP/2 connection is told
 * GOAWAY NO_ERROR first, flushed best effort (the socket is not waited for). */
static void conn_close(conn *c, int goaway)
{
    if (!c)
        return;
    rsv_subchannel *sc = c->sc;
    if (goaway && c->h2 && c->phase >= CONN_H2_HANDSHAKE) {
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                              NULL, 0);
        (void)conn_flush(c);
    }
    if (c->ssl && goaway && c->phase >= CONN_H2_HANDSHAKE) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl); /* sends close_notify; no wait for the peer's */
        ERR_clear_error();
    }
    rsv_dial_cancel(c->dial);
    rsv_timer_del(c->deadline_timer);
    rsv_timer_del(c->keepalive_timer);
    rsv_timer_del(c->ping_timer);
    rsv_timer_del(c->age_timer);
    health_free(c->hc);
    if (c->fd >= 0) {
        rsv_loop_unwatch(sc->loop, c->fd);
        close(c->fd);
    }
    SSL_free(c->ssl);
    nghttp2_session_del(c->h2); /* frees its big blocks through h2_mem */
    for (int i = 0; i < H2_BIG_BLOCKS; i++)
        if (c->big[i].p)
            munmap(c->big[i].p, c->big[i].len);
    free(c);
}

/* Detaches c from the subchannel and closes it. */
static void conn_release(conn *c, int goaway)
{
    if (!c)
        return;
    if (c->sc->active == c)
        c->sc->active = NULL;
    if (c->sc->pending == c)
        c->sc->pending = NULL;
    conn_close(c, goaway);
}

/* The conn with this id, if it is still one of sc's. */
static conn *conn_find(rsv_subchannel *sc, uint64_t id)
{
    if (sc->active && sc->active->id == id)
        return sc->active;
    if (sc->pending && sc->pending->id == id)
        return sc->pending;
    return NULL;
}

/* Reports c->error from the loop soon rather than from inside the caller. */
static void conn_defer_fail(conn *c)
{
    rsv_timer_start(c->deadline_timer, 0);
}

static void conn_deadline_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    conn *c = arg;
    if (c->error[0]) {
        if (c->phase == CONN_READY)
            conn_write_failed(c); /* a probe's write failed */
        else
            conn_fail(c, c->error, 0);
        return;
    }
    switch (c->phase) {
    case CONN_TCP_CONNECTING:
        if (rsv_dial_resolving(c->dial))
            snprintf(c->error, sizeof(c->error), "resolve %s: timed out", c->sc->host);
        else
            snprintf(c->error, sizeof(c->error), "connect: timed out");
        conn_fail(c, c->error, 0);
        return;
    case CONN_TLS_HANDSHAKE:
        conn_fail(c, "TLS handshake timed out", 0);
        return;
    case CONN_H2_HANDSHAKE:
        conn_fail(c, "timed out waiting for the server's SETTINGS", 0);
        return;
    case CONN_READY:
        return; /* not armed in this phase without an error */
    }
}

/* ---- keepalive, max age ---- */

static void conn_arm_keepalive(conn *c)
{
    /* Protocol tcp has no PING: its keepalive is TCP-level only. */
    if (c->h2 && c->keepalive_time_ms > 0 && !c->ping_in_flight)
        rsv_timer_start(c->keepalive_timer, c->keepalive_time_ms);
}

/* Submits a PING and arms its ACK timeout.  Returns 0 or -1 (c->error set);
 * never changes state. */
static int conn_send_ping(conn *c)
{
    rsv_subchannel *sc = c->sc;
    if (c->ping_in_flight)
        return 0;
    c->ping_seq++;
    for (int i = 0; i < 8; i++)
        c->ping_data[i] = (uint8_t)(c->ping_seq >> (8 * i));
    int rv = nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, c->ping_data);
    if (rv != 0) {
        snprintf(c->error, sizeof(c->error), "http2: %s", nghttp2_strerror(rv));
        return -1;
    }
    c->ping_in_flight = 1;
    c->ping_sent_us = rsv_clock_us(); /* refined when the frame is serialized */
    sc->stats.pings_sent++;
    rsv_timer_stop(c->keepalive_timer);
    rsv_timer_start(c->ping_timer, keepalive_timeout_ms(sc));
    return conn_flush(c);
}

static void conn_keepalive_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    conn *c = arg;
    uint64_t idle = rsv_loop_now(loop) - c->last_read_ms;
    if (idle < c->keepalive_time_ms) {
        /* Something was read since the timer was armed: no PING needed yet. */
        rsv_timer_start(t, c->keepalive_time_ms - idle);
        return;
    }
    if (conn_send_ping(c) != 0)
        conn_write_failed(c);
}

static void conn_ping_timeout_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    conn_fail(arg, "keepalive ping timeout", 0);
}

static void conn_on_ping_ack(conn *c)
{
    rsv_subchannel_stats *st = &c->sc->stats;
    int64_t rtt = (int64_t)(rsv_clock_us() - c->ping_sent_us);
    c->ping_in_flight = 0;
    rsv_timer_stop(c->ping_timer);
    st->pings_acked++;
    st->rtt_last_us = rtt;
    /* EWMA with gain 1/8, as TCP's SRTT. */
    st->rtt_smoothed_us =
        st->rtt_smoothed_us < 0 ? rtt : st->rtt_smoothed_us + (rtt - st->rtt_smoothed_us) / 8;
    conn_arm_keepalive(c);
}

static void conn_arm_age(conn *c)
{
    rsv_subchannel *sc = c->sc;
    uint64_t age = sc->opts.max_connection_age_ms;
    if (age == 0)
        return;
    double f = 1.0 + AGE_JITTER * (2.0 * rsv_random01() - 1.0);
    rsv_timer_start(c->age_timer, (uint64_t)((double)age * f) + 1);
}

static conn *conn_start(rsv_subchannel *sc, uint64_t timeout_ms);
static void take_next_options(rsv_subchannel *sc);

/* The active connection is old: open its replacement.  Nothing is reported;
 * conn_ready swaps them once the new one is READY. */
static void conn_age_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    conn *c = arg;
    rsv_subchannel *sc = c->sc;
    /* The connection, not the state: with health checking a READY
     * connection may be TRANSIENT_FAILURE (NOT_SERVING) or still CONNECTING
     * (no answer yet); it ages all the same, its replacement is
     * health-checked before it takes over. */
    if (c != sc->active || sc->pending || c->phase != CONN_READY)
        return;
    LOG_DEBUG("subchannel %s: max connection age reached, opening a replacement", sc->name);
    take_next_options(sc);
    sc->pending = conn_start(sc, connect_timeout_ms(sc));
    if (!sc->pending)
        rsv_timer_start(t, 1000); /* out of memory: try again later */
}

/* ---- the state machine's moves ---- */

/* Opens the active connection for a new attempt.  Does not notify. */
static void start_attempt(rsv_subchannel *sc)
{
    take_next_options(sc);
    uint64_t now = rsv_loop_now(sc->loop);
    uint64_t backoff = rsv_backoff_next(&sc->backoff, rsv_random01());
    uint64_t timeout = connect_timeout_ms(sc);
    sc->attempt_deadline_ms = now + backoff;
    if (backoff > timeout)
        timeout = backoff; /* gRPC: TryConnect(max(current_deadline, now + MIN_CONNECT_TIMEOUT)) */
    sc->active = conn_start(sc, timeout);
    if (!sc->active)
        rsv_timer_start(sc->retry_timer, 0); /* retry_cb reports the failure */
}

static void set_health(rsv_subchannel *sc, health_status h);

static void transient_failure(rsv_subchannel *sc, const char *cause)
{
    uint64_t now = rsv_loop_now(sc->loop);
    conn_release(sc->pending, 1);
    set_health(sc, HEALTH_NONE); /* the connection it described is gone */
    snprintf(sc->stats.last_error, sizeof(sc->stats.last_error), "%s", cause);
    /* gRPC: SleepUntil(current_deadline) */
    rsv_timer_start(sc->retry_timer,
                    sc->attempt_deadline_ms > now ? sc->attempt_deadline_ms - now : 0);
    set_state(sc, RSV_STATE_TRANSIENT_FAILURE, cause);
}

/* A READY connection ended cleanly: CONNECTING at once, no backoff, not a
 * failure (the server drained, aged out, or closed an idle connection). */
static void reconnect_now(rsv_subchannel *sc, const char *cause)
{
    set_health(sc, HEALTH_NONE);
    if (sc->pending) {
        /* A max-age replacement is already on its way: it is the attempt. */
        uint64_t backoff = rsv_backoff_next(&sc->backoff, rsv_random01());
        sc->attempt_deadline_ms = rsv_loop_now(sc->loop) + backoff;
        sc->active = sc->pending;
        sc->pending = NULL;
    } else {
        start_attempt(sc);
    }
    set_state(sc, RSV_STATE_CONNECTING, cause);
}

static void replacement_failed(rsv_subchannel *sc, const char *cause)
{
    conn_release(sc->pending, 0);
    LOG_DEBUG("subchannel %s: replacement connection failed (%s), keeping the old one", sc->name,
              cause);
    if (sc->active)
        rsv_timer_start(sc->active->age_timer, rsv_backoff_next(&sc->backoff, rsv_random01()));
}

/* The connection `c` is over; c is freed and the subchannel may be gone
 * when this returns.  `clean`: EOF, or a GOAWAY that lost no stream (conn_on_goaway). */
static void conn_fail(conn *c, const char *cause, int clean)
{
    rsv_subchannel *sc = c->sc;
    char why[sizeof(c->error) + 16];
    snprintf(why, sizeof(why), "%s", cause); /* cause may live in c */
    if (c == sc->pending) {
        replacement_failed(sc, why);
        return;
    }
    int was_ready = c->phase == CONN_READY;
    uint64_t lasted = rsv_loop_now(sc->loop) - c->ready_since_ms;
    conn_release(c, 0);
    if (clean && was_ready && lasted >= FREE_RECONNECT_MIN_READY_MS) {
        reconnect_now(sc, why);
        return;
    }
    transient_failure(sc, why);
}

/* c finished its handshake: the server's SETTINGS arrived (protocol tcp: the
 * connect completed).  Returns 0 if the state callback deleted sc. */
static int conn_ready(conn *c)
{
    rsv_subchannel *sc = c->sc;
    c->phase = CONN_READY;
    c->ready_since_ms = rsv_loop_now(sc->loop);
    rsv_timer_stop(c->deadline_timer);
    rsv_backoff_reset(&sc->backoff);
    conn_arm_keepalive(c);
    conn_arm_age(c);
    if (c == sc->pending) {
        /* Max-age replacement is up: retire the old one, stay READY.  With
         * health checking the last answer stands until the new
         * connection's Watch answers. */
        conn *old = sc->active;
        sc->active = c;
        sc->pending = NULL;
        conn_close(old, 1);
        LOG_DEBUG("subchannel %s: replaced an aged connection", sc->name);
        if (c->hc && health_begin(c) != 0)
            conn_defer_fail(c); /* reported from the loop: see conn_deadline_cb */
        return 1;
    }
    if (c->hc) {
        /* The transport is up; READY waits for the first health answer. */
        set_health(sc, HEALTH_NONE);
        if (health_begin(c) != 0)
            conn_defer_fail(c);
        else
            LOG_DEBUG("subchannel %s: connected; waiting for the health service", sc->name);
        return 1;
    }
    return set_state(sc, RSV_STATE_READY, "connected");
}

static void retry_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_subchannel *sc = arg;
    if (sc->state == RSV_STATE_TRANSIENT_FAILURE) {
        start_attempt(sc);
        set_state(sc, RSV_STATE_CONNECTING, "backoff elapsed");
    } else if (sc->state == RSV_STATE_CONNECTING && !sc->active) {
        transient_failure(sc, "out of memory");
    }
}

/* ---- health checking (grpc.health.v1.Health over the connection) ---- */

static const char *health_name(health_status h)
{
    switch (h) {
    case HEALTH_NONE:
        return "";
    case HEALTH_SERVING:
        return "SERVING";
    case HEALTH_NOT_SERVING:
        return "NOT_SERVING";
    case HEALTH_SERVICE_UNKNOWN:
        return "SERVICE_UNKNOWN";
    case HEALTH_UNKNOWN:
        return "UNKNOWN";
    case HEALTH_UNIMPLEMENTED:
        return "UNIMPLEMENTED";
    }
    return "UNKNOWN";
}

static void set_health(rsv_subchannel *sc, health_status h)
{
    if (sc->health == h)
        return;
    /* NONE is only "forgotten with the connection": not worth a line.
     * The state change a health answer makes is the service's to log. */
    if (h != HEALTH_NONE)
        LOG_DEBUG("subchannel %s: health %s -> %s", sc->name,
                  sc->health == HEALTH_NONE ? "(none)" : health_name(sc->health), health_name(h));
    sc->health = h;
    snprintf(sc->stats.health, sizeof(sc->stats.health), "%s", health_name(h));
}

/* The request every call sends: the gRPC prefix (uncompressed, length)
 * and HealthCheckRequest{service = 1: string}, proto3 (an empty service
 * is the default value and is not encoded).  0 or -1 (out of memory). */
static int health_encode_request(rsv_subchannel *sc, const char *service)
{
    size_t n = strlen(service), msg = 0;
    if (n > 0) {
        msg = 1 + n; /* tag 0x0a (field 1, length-delimited) + the bytes */
        for (size_t v = n; v; v >>= 7)
            msg++; /* the length as a varint */
    }
    if (msg > UINT32_MAX - 5)
        return -1;
    uint8_t *p = malloc(5 + msg);
    if (!p)
        return -1;
    p[0] = 0;
    p[1] = (uint8_t)(msg >> 24);
    p[2] = (uint8_t)(msg >> 16);
    p[3] = (uint8_t)(msg >> 8);
    p[4] = (uint8_t)msg;
    size_t off = 5;
    if (n > 0) {
        p[off++] = 0x0a;
        size_t v = n;
        do {
            uint8_t b = v & 0x7f;
            v >>= 7;
            p[off++] = v ? (uint8_t)(b | 0x80) : b;
        } while (v);
        memcpy(p + off, service, n);
    }
    sc->hc_req = p;
    sc->hc_req_len = 5 + msg;
    return 0;
}

/* One varint at *p (at most 10 bytes, before end); -1 if malformed. */
static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* HealthCheckResponse{status = 1: enum}: the status, 0 (UNKNOWN, the proto3
 * default) when absent; unknown fields are skipped.  -1 if malformed. */
static int health_decode_response(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    int status = 0;
    while (p < end) {
        uint64_t key, v;
        if (pb_varint(&p, end, &key) != 0)
            return -1;
        switch (key & 7) {
        case 0: /* varint */
            if (pb_varint(&p, end, &v) != 0)
                return -1;
            if ((key >> 3) == 1)
                status = v > 1000 ? 1000 : (int)v; /* an enum value we do not know */
            break;
        case 1: /* 64-bit */
            if (end - p < 8)
                return -1;
            p += 8;
            break;
        case 2: /* length-delimited */
            if (pb_varint(&p, end, &v) != 0 || v > (uint64_t)(end - p))
                return -1;
            p += v;
            break;
        case 5: /* 32-bit */
            if (end - p < 4)
                return -1;
            p += 4;
            break;
        default:
            return -1;
        }
    }
    return status;
}

/* Called by on_data_chunk_recv: splits gRPC messages, records the status
 * of each.  Only records (h->got_status, h->bad). */
static void health_parse(health *h, const uint8_t *data, size_t len)
{
    while (len > 0 && !h->bad) {
        if (h->prefix_have < 5) {
            size_t n = 5 - h->prefix_have;
            n = n > len ? len : n;
            memcpy(h->prefix + h->prefix_have, data, n);
            h->prefix_have += n;
            data += n;
            len -= n;
            if (h->prefix_have < 5)
                return;
            h->msg_len = (size_t)h->prefix[1] << 24 | (size_t)h->prefix[2] << 16 |
                         (size_t)h->prefix[3] << 8 | h->prefix[4];
            h->msg_have = 0;
            /* Compressed: we never offered an encoding. */
            if (h->prefix[0] != 0 || h->msg_len > HC_MSG_MAX ||
                (h->msg_len > 0 && !(h->msg = malloc(h->msg_len)))) {
                h->bad = 1;
                return;
            }
        } else {
            size_t n = h->msg_len - h->msg_have;
            n = n > len ? len : n;
            memcpy(h->msg + h->msg_have, data, n);
            h->msg_have += n;
            data += n;
            len -= n;
        }
        if (h->msg_have == h->msg_len) {
            int st = health_decode_response(h->msg, h->msg_len);
            free(h->msg);
            h->msg = NULL;
            h->prefix_have = 0;
            if (st < 0) {
                h->bad = 1;
                return;
            }
            h->got_status = 1;
            h->status_value = st;
            h->answers++;
        }
    }
}

static void health_reset_call(health *h)
{
    h->stream_id = 0;
    h->req_off = 0;
    h->answers = 0;
    h->prefix_have = 0;
    free(h->msg);
    h->msg = NULL;
    h->msg_len = h->msg_have = 0;
    h->got_status = h->closed = h->bad = 0;
    h->rst_code = 0;
    h->grpc_status = -1;
    h->http_status = 0;
}

static void health_free(health *h)
{
    if (!h)
        return;
    rsv_timer_del(h->timer);
    free(h->msg);
    free(h->req);
    free(h);
}

static uint64_t health_poll_ms(const conn *c)
{
    uint64_t ka = c->keepalive_time_ms;
    return ka > 0 && ka < HC_POLL_MAX_MS ? ka : HC_POLL_MAX_MS;
}

static ssize_t health_req_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                               uint32_t *flags, nghttp2_data_source *src, void *user)
{
    conn *c = user;
    health *h = c->hc;
    if (!h || sid != h->stream_id) {
        *flags |= NGHTTP2_DATA_FLAG_EOF; /* a call given up on */
        return 0;
    }
    size_t n = h->req_len - h->req_off;
    n = n > len ? len : n;
    memcpy(buf, h->req + h->req_off, n);
    h->req_off += n;
    if (h->req_off == h->req_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF; /* half-close: the request is one message */
    return (ssize_t)n;
}

#define HC_NV(n, v, vlen)                                                                          \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen), NGHTTP2_NV_FLAG_NO_COPY_NAME        \
    }

/* Submits a call of h->method and arms its deadline.  The caller flushes.
 * 0, or -1 with c->error set. */
static int health_start_call(conn *c)
{
    rsv_subchannel *sc = c->sc;
    health *h = c->hc;
    const char *path =
        h->method == HC_CHECK ? "/grpc.health.v1.Health/Check" : "/grpc.health.v1.Health/Watch";
    const char *scheme = c->ssl ? "https" : "http";
    uint64_t deadline = h->method == HC_CHECK ? keepalive_timeout_ms(sc) : connect_timeout_ms(sc);
    char timeout[24];
    /* gRPC's grpc-timeout: at most 8 digits. */
    snprintf(timeout, sizeof(timeout), "%llum",
             (unsigned long long)(deadline > 99999999 ? 99999999 : deadline));
    nghttp2_nv nv[] = {
        HC_NV(":method", "POST", 4),
        HC_NV(":scheme", scheme, strlen(scheme)),
        HC_NV(":path", path, strlen(path)),
        HC_NV(":authority", sc->name, strlen(sc->name)),
        HC_NV("content-type", "application/grpc", 16),
        HC_NV("te", "trailers", 8),
        HC_NV("user-agent", "libresolver", 11),
        HC_NV("grpc-timeout", timeout, strlen(timeout)),
    };
    size_t nnv = sizeof(nv) / sizeof(nv[0]);
    if (h->method != HC_CHECK)
        nnv--; /* a Watch lasts as long as the connection */
    health_reset_call(h);
    nghttp2_data_provider prd = {.source.ptr = c, .read_callback = health_req_read};
    int32_t id = nghttp2_submit_request(c->h2, NULL, nv, nnv, &prd, NULL);
    if (id < 0) {
        snprintf(c->error, sizeof(c->error), "http2: health call: %s", nghttp2_strerror(id));
        return -1;
    }
    h->stream_id = id;
    sc->stats.health_calls++;
    /* Watch: the first answer must come within the connect timeout (a
     * server whose health service hangs is not healthy); Check: within the
     * keepalive timeout. */
    rsv_timer_start(h->timer, deadline);
    return 0;
}

/* Starts health checking on a connection whose handshake just finished.
 * 0, or -1 with c->error set. */
static int health_begin(conn *c)
{
    c->hc->method = HC_WATCH;
    c->hc->retry_ms = 0;
    return health_start_call(c);
}

/* Applies a health status to the subchannel: READY when healthy, else
 * TRANSIENT_FAILURE with the connection kept (no backoff: the server
 * answered, it is the service that is not well).  Returns c, or NULL if
 * c (or the subchannel) is gone. */
static conn *health_report(conn *c, health_status st, const char *why)
{
    rsv_subchannel *sc = c->sc;
    uint64_t id = c->id;
    set_health(sc, st);
    if (c != sc->active || c->phase != CONN_READY)
        return c;
    if (st == HEALTH_SERVING || st == HEALTH_UNIMPLEMENTED) {
        if (!set_state(sc, RSV_STATE_READY, why))
            return NULL;
    } else {
        snprintf(sc->stats.last_error, sizeof(sc->stats.last_error), "%s", why);
        if (!set_state(sc, RSV_STATE_TRANSIENT_FAILURE, why))
            return NULL;
    }
    return conn_find(sc, id);
}

/* grpc-status of a call that ended: the trailer, else the HTTP status
 * mapped as gRPC does (doc/design.md, Health checking), else the
 * RST_STREAM code. */
static int health_call_status(const health *h)
{
    if (h->bad)
        return 13; /* INTERNAL */
    if (h->grpc_status >= 0)
        return h->grpc_status;
    switch (h->http_status) {
    case 0:
    case 200:
        break;
    case 400:
        return 13; /* INTERNAL */
    case 401:
        return 16; /* UNAUTHENTICATED */
    case 403:
        return 7; /* PERMISSION_DENIED */
    case 404:
        return 12; /* UNIMPLEMENTED: an HTTP/2 server without the health service */
    case 429:
    case 502:
    case 503:
    case 504:
        return 14; /* UNAVAILABLE */
    default:
        return 2; /* UNKNOWN */
    }
    /* RST_STREAM: REFUSED_STREAM is UNAVAILABLE, CANCEL is CANCELLED, any
     * other code INTERNAL; ended without any status: UNKNOWN. */
    if (h->rst_code == NGHTTP2_REFUSED_STREAM)
        return 14;
    if (h->rst_code == NGHTTP2_CANCEL)
        return 1;
    return h->rst_code ? 13 : 2;
}

/* The call ended (or was malformed): decide what comes next.  Returns c,
 * or NULL if c or the subchannel is gone. */
static conn *health_call_ended(conn *c)
{
    rsv_subchannel *sc = c->sc;
    health *h = c->hc;
    char why[96];
    int gs = health_call_status(h);
    int answered = h->answers > 0;
    if (!h->closed && h->stream_id)
        (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, h->stream_id,
                                        NGHTTP2_PROTOCOL_ERROR); /* malformed: give it up */
    const char *method = h->method == HC_CHECK ? "Check" : "Watch";
    health_reset_call(h);
    rsv_timer_stop(h->timer);
    if (gs == 12) { /* UNIMPLEMENTED */
        if (h->method == HC_WATCH) {
            h->method = HC_CHECK;
            LOG_INFO("subchannel %s: health Watch is UNIMPLEMENTED; polling Check every %llu ms",
                     sc->name, (unsigned long long)health_poll_ms(c));
            if (health_start_call(c) != 0)
                conn_defer_fail(c);
            return c;
        }
        /* Neither method: a server without the health service is healthy
         * (gRPC's rule); no more polling on this connection. */
        return health_report(c, HEALTH_UNIMPLEMENTED, "health: UNIMPLEMENTED (treated as healthy)");
    }
    if (h->method == HC_CHECK) {
        rsv_timer_start(h->timer, health_poll_ms(c));
        if (gs == 0 && answered)
            return c; /* the answer was applied when it arrived */
        snprintf(why, sizeof(why), "health: Check failed (grpc-status %d)", gs);
        return health_report(c, gs == 5 ? HEALTH_SERVICE_UNKNOWN : HEALTH_UNKNOWN, why);
    }
    /* A Watch ended.  After answers (a server restarting its streams) the
     * last answer stands and the call is opened again soon; without any,
     * the health service is failing: unhealthy until a retry answers. */
    if (answered) {
        LOG_DEBUG("subchannel %s: health Watch ended (grpc-status %d); reopening", sc->name, gs);
        h->retry_ms = 0;
        rsv_timer_start(h->timer, HC_REOPEN_MS);
        return c;
    }
    h->retry_ms = h->retry_ms ? h->retry_ms * 2 : HC_RETRY_MIN_MS;
    if (h->retry_ms > HC_RETRY_MAX_MS)
        h->retry_ms = HC_RETRY_MAX_MS;
    rsv_timer_start(h->timer, h->retry_ms);
    snprintf(why, sizeof(why), "health: %s failed (grpc-status %d)", method, gs);
    return health_report(c, HEALTH_UNKNOWN, why);
}

static health_status health_from_proto(int v)
{
    switch (v) {
    case 1:
        return HEALTH_SERVING;
    case 2:
        return HEALTH_NOT_SERVING;
    case 3:
        return HEALTH_SERVICE_UNKNOWN;
    default:
        return HEALTH_UNKNOWN;
    }
}

/* Acts on what the callbacks recorded for the health call.  Returns c, or
 * NULL if c or the subchannel is gone. */
static conn *health_dispatch(conn *c)
{
    health *h = c->hc;
    if (h->got_status && !h->bad) {
        char why[64];
        health_status st = health_from_proto(h->status_value);
        h->got_status = 0;
        if (h->method == HC_WATCH) {
            rsv_timer_stop(h->timer); /* the first-answer deadline */
            h->retry_ms = 0;
        }
        snprintf(why, sizeof(why), "health: %s", health_name(st));
        if (!(c = health_report(c, st, why)))
            return NULL;
        h = c->hc;
    }
    if (h->closed || h->bad)
        return health_call_ended(c);
    return c;
}

/* The health timer: a call's deadline passed, or the next call is due. */
static void health_timer_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    conn *c = arg;
    health *h = c->hc;
    if (h->stream_id) {
        char why[96];
        uint64_t deadline;
        (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, h->stream_id, NGHTTP2_CANCEL);
        if (h->method == HC_CHECK) {
            deadline = keepalive_timeout_ms(c->sc);
            rsv_timer_start(t, health_poll_ms(c));
        } else {
            deadline = connect_timeout_ms(c->sc);
            h->retry_ms = h->retry_ms ? h->retry_ms * 2 : HC_RETRY_MIN_MS;
            if (h->retry_ms > HC_RETRY_MAX_MS)
                h->retry_ms = HC_RETRY_MAX_MS;
            rsv_timer_start(t, h->retry_ms);
        }
        snprintf(why, sizeof(why), "health: no %s answer within %llu ms",
                 h->method == HC_CHECK ? "Check" : "Watch", (unsigned long long)deadline);
        health_reset_call(h);
        if (!(c = health_report(c, HEALTH_UNKNOWN, why)))
            return;
    } else if (health_start_call(c) != 0) {
        conn_fail(c, c->error, 0);
        return;
    }
    if (conn_flush(c) != 0)
        conn_write_failed(c);
}

/* ---- HTTP/2 ---- */

/* 1 if a GOAWAY with this last_stream_id leaves none of our streams
 * unprocessed: every stream this connection opened is at or below it, or
 * none is still open.  (The health call is the only stream a subchannel
 * opens.)  Called from on_frame_recv, before nghttp2 closes the streams
 * above last_stream_id. */
static int goaway_all_processed(nghttp2_session *s, const conn *c, int32_t last_id)
{
    int64_t highest = (int64_t)nghttp2_session_get_next_stream_id(s) - 2; /* -1: none opened */
    if (highest <= last_id)
        return 1;
    const health *h = c->hc;
    return !(h && h->stream_id > last_id && !h->closed);
}

/* Keeps a GOAWAY's debug data ("enter idle", "max_age") for the reason;
 * anything but printable ASCII becomes '?'. */
static void goaway_copy_debug(conn *c, const uint8_t *p, size_t n)
{
    size_t i, max = sizeof(c->goaway_debug) - 1;
    for (i = 0; i < n && i < max; i++)
        c->goaway_debug[i] = p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' ? (char)p[i] : '?';
    c->goaway_debug[i] = '\0';
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    conn *c = user;
    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK))
            c->got_settings = 1;
        break;
    case NGHTTP2_PING:
        if ((f->hd.flags & NGHTTP2_FLAG_ACK) && c->ping_in_flight &&
            memcmp(f->ping.opaque_data, c->ping_data, 8) == 0)
            c->got_ping_ack = 1;
        break;
    case NGHTTP2_GOAWAY:
        c->sc->stats.goaways++;
        if (!c->got_goaway) {
            c->got_goaway = 1;
            c->goaway_code = f->goaway.error_code;
            c->goaway_processed = goaway_all_processed(s, c, f->goaway.last_stream_id);
            goaway_copy_debug(c, f->goaway.opaque_data, f->goaway.opaque_data_len);
            c->too_many_pings = f->goaway.error_code == NGHTTP2_ENHANCE_YOUR_CALM &&
                                f->goaway.opaque_data_len == 14 &&
                                memcmp(f->goaway.opaque_data, "too_many_pings", 14) == 0;
        }
        break;
    default:
        break;
    }
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    conn *c = user;
    /* The RTT clock starts when the PING is serialized, not submitted. */
    if (f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK))
        c->ping_sent_us = rsv_clock_us();
    return 0;
}

/* Health call answers: only recorded here (see health_dispatch). */
static int parse_status_code(const uint8_t *v, size_t len)
{
    int n = 0;
    if (len == 0 || len > 4)
        return 1000;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 1000;
        n = n * 10 + (v[i] - '0');
    }
    return n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    conn *c = user;
    health *h = c->hc;
    if (!h || f->hd.stream_id != h->stream_id || h->stream_id == 0)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0)
        h->http_status = parse_status_code(value, valuelen);
    else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        h->grpc_status = parse_status_code(value, valuelen);
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                              size_t len, void *user)
{
    conn *c = user;
    health *h = c->hc;
    /* Only a 200 carries gRPC messages; any other status is a plain HTTP
     * error page (nghttpd's 404), mapped by health_call_status. */
    if (h && sid == h->stream_id && sid != 0 && h->http_status == 200)
        health_parse(h, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t error_code, void *user)
{
    conn *c = user;
    health *h = c->hc;
    if (h && sid == h->stream_id && sid != 0) {
        h->closed = 1;
        h->rst_code = error_code;
    }
    return 0;
}

/* nghttp2's allocator for one connection.  An idle client session holds a
 * 16 KiB output buffer of which frames touch the first page, and a 4 KiB
 * stream table that stays all zeros without streams; from malloc they cost
 * their pages (and calloc's memset) in RSS all the same.  Blocks of
 * H2_BIG_BLOCK bytes or more get anonymous pages of their own instead
 * (zero-filled, so calloc needs no memset), which cost RSS only once
 * written: about 4 KiB less RSS per idle subchannel.  Smaller blocks, and big
 * ones beyond H2_BIG_BLOCKS at a time or when mmap fails, use malloc.  The
 * conn is the user data; nghttp2_session_del frees through here before the
 * conn goes. */
static void *h2_big_alloc(conn *c, size_t n)
{
    if (n < H2_BIG_BLOCK)
        return NULL;
    for (int i = 0; i < H2_BIG_BLOCKS; i++) {
        if (c->big[i].p)
            continue;
        size_t page = 4096, len = (n + page - 1) / page * page;
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        c->big[i].p = p;
        c->big[i].len = len;
        return p;
    }
    return NULL;
}

static int h2_big_index(const conn *c, const void *p)
{
    for (int i = 0; p && i < H2_BIG_BLOCKS; i++)
        if (c->big[i].p == p)
            return i;
    return -1;
}

static void *h2_mem_malloc(size_t n, void *user)
{
    void *p = h2_big_alloc(user, n);
    return p ? p : malloc(n);
}

static void h2_mem_free(void *p, void *user)
{
    conn *c = user;
    int i = h2_big_index(c, p);
    if (i < 0) {
        free(p);
        return;
    }
    munmap(p, c->big[i].len);
    c->big[i].p = NULL;
}

static void *h2_mem_calloc(size_t n, size_t size, void *user)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = h2_big_alloc(user, n * size); /* fresh pages are zeros */
    return p ? p : calloc(n, size);
}

static void *h2_mem_realloc(void *p, size_t n, void *user)
{
    conn *c = user;
    int i = h2_big_index(c, p);
    if (i < 0)
        return realloc(p, n); /* a malloc block stays one (its size is malloc's secret) */
    if (n <= c->big[i].len)
        return p;
    void *q = h2_mem_malloc(n, c);
    if (!q)
        return NULL;
    memcpy(q, p, c->big[i].len);
    h2_mem_free(p, c);
    return q;
}

static int h2_session_new(conn *c)
{
    nghttp2_mem mem = {c, h2_mem_malloc, h2_mem_free, h2_mem_calloc, h2_mem_realloc};
    nghttp2_session_callbacks *cbs;
    int rv = nghttp2_session_callbacks_new(&cbs);
    if (rv != 0)
        goto fail;
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    if (c->hc) {
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    }
    rv = nghttp2_session_client_new3(&c->h2, cbs, c, NULL, &mem);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        goto fail;
    /* The client magic goes out with the first mem_send; SETTINGS follow. */
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    rv = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (rv != 0)
        goto fail;
    return 0;

fail:
    snprintf(c->error, sizeof(c->error), "http2: %s", nghttp2_strerror(rv));
    return -1;
}

static void conn_h2_begin(conn *c)
{
    c->phase = CONN_H2_HANDSHAKE;
    if (h2_session_new(c) != 0)
        conn_fail(c, c->error, 0);
    else if (conn_flush(c) != 0)
        conn_write_failed(c);
}

/* The server said GOAWAY; c is closed here.  The end is clean (reconnect at
 * once, no backoff, not a failure) whenever the server processed all our
 * streams, whatever its code: servers use codes other than NO_ERROR for
 * plain housekeeping (grpcio 1.51 closes an idle connection with
 * INTERNAL_ERROR "enter idle"), and what matters to a client is whether
 * work was lost.  too_many_pings is the exception: the server objects to
 * us, so it gets the backoff, and new connections a doubled keepalive. */
static void conn_on_goaway(conn *c)
{
    rsv_subchannel *sc = c->sc;
    char why[112];
    int clean = !c->too_many_pings && (c->goaway_code == NGHTTP2_NO_ERROR || c->goaway_processed);
    if (c->too_many_pings && sc->keepalive_time_ms > 0) {
        uint64_t ka = sc->keepalive_time_ms * 2;
        if (ka > KEEPALIVE_TIME_MAX_MS)
            ka = KEEPALIVE_TIME_MAX_MS;
        LOG_WARN("subchannel %s: server sent GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\": "
                 "keepalive_time %llu ms is below its minimum ping interval; using %llu ms "
                 "for new connections (raise keepalive_time_ms in the configuration)",
                 sc->name, (unsigned long long)sc->keepalive_time_ms, (unsigned long long)ka);
        sc->keepalive_time_ms = ka;
    }
    if (c->goaway_code == NGHTTP2_NO_ERROR && !c->goaway_debug[0])
        snprintf(why, sizeof(why), "GOAWAY NO_ERROR from server");
    else
        snprintf(why, sizeof(why), "GOAWAY %s%s%s%s from server%s",
                 nghttp2_http2_strerror(c->goaway_code), c->goaway_debug[0] ? " \"" : "",
                 c->goaway_debug, c->goaway_debug[0] ? "\"" : "",
                 clean && c->goaway_code != NGHTTP2_NO_ERROR ? " (no stream lost)" : "");
    conn_fail(c, why, clean);
}

/* A write failed.  The peer may have said goodbye first (GOAWAY, then
 * close): read what it sent before blaming the write, so a draining server
 * is not mistaken for a broken one, and a closed socket is reported as
 * closed rather than as EPIPE. */
static void conn_write_failed(conn *c)
{
    char werr[sizeof(c->error)];
    uint8_t buf[READ_CHUNK];
    ssize_t n = IO_AGAIN;
    snprintf(werr, sizeof(werr), "%s", c->error);
    if (c->fd < 0 || !c->h2) {
        conn_fail(c, werr, 0);
        return;
    }
    for (int i = 0; i < 64 && !c->got_goaway; i++) {
        n = conn_recv(c, buf, sizeof(buf));
        if (n <= 0 || nghttp2_session_mem_recv(c->h2, buf, (size_t)n) < 0)
            break;
    }
    if (c->got_goaway)
        conn_on_goaway(c);
    else if (n == 0)
        conn_fail(c, "connection closed by peer", 1);
    else if (n == IO_ERROR)
        conn_fail(c, c->error, 0); /* e.g. "read: Connection reset by peer" */
    else
        conn_fail(c, werr, 0);
}

/* Acts on what nghttp2 recorded during mem_recv.  Returns c, or NULL if c or
 * the whole subchannel is gone. */
static conn *conn_dispatch(conn *c)
{
    rsv_subchannel *sc = c->sc;
    uint64_t id = c->id;
    if (c->got_ping_ack) {
        c->got_ping_ack = 0;
        conn_on_ping_ack(c);
    }
    if (c->got_goaway) {
        conn_on_goaway(c);
        return NULL;
    }
    if (c->got_settings && c->phase == CONN_H2_HANDSHAKE) {
        if (!conn_ready(c))
            return NULL;
        if (!(c = conn_find(sc, id)))
            return NULL;
    }
    if (c->hc && c->phase == CONN_READY && (c->hc->got_status || c->hc->closed || c->hc->bad))
        return health_dispatch(c);
    return c;
}

/* Returns 1 if c is still alive. */
static int conn_read_h2(conn *c)
{
    uint8_t buf[READ_CHUNK];
    int eof = 0, failed = 0;
    for (int i = 0; c->ssl || i < READS_PER_EVENT; i++) {
        ssize_t n = conn_recv(c, buf, sizeof(buf));
        if (n == IO_AGAIN)
            break;
        if (n == 0) {
            eof = 1;
            break;
        }
        if (n == IO_ERROR) {
            failed = 1;
            break;
        }
        ssize_t rv = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
        if (rv < 0) {
            snprintf(c->error, sizeof(c->error), "http2: %s", nghttp2_strerror((int)rv));
            failed = 1;
            break;
        }
        if (c->got_goaway)
            break; /* nothing after it matters */
    }
    /* Frames first: a GOAWAY before the EOF makes the end clean, SETTINGS
     * before an error still count as READY. */
    c = conn_dispatch(c);
    if (!c)
        return 0;
    if (failed) {
        conn_fail(c, c->error, 0);
        return 0;
    }
    if (eof) {
        conn_fail(c, "connection closed by peer", 1);
        return 0;
    }
    if (conn_flush(c) != 0) {
        conn_write_failed(c);
        return 0;
    }
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
        conn_fail(c, "http2: session terminated", 0);
        return 0;
    }
    return 1;
}

/* Protocol tcp: nothing to parse; reading notices EOF and errors. */
static void conn_read_tcp(conn *c)
{
    uint8_t buf[READ_CHUNK];
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t n = conn_recv(c, buf, sizeof(buf));
        if (n > 0)
            continue;
        if (n == 0)
            conn_fail(c, "connection closed by peer", 1);
        else if (n == IO_ERROR)
            conn_fail(c, c->error, 0);
        return;
    }
}

/* ---- TLS (protocol h2) ---- */

/* Puts OpenSSL's last error into c->error. */
static void tls_setup_error(conn *c)
{
    char buf[80];
    ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
    snprintf(c->error, sizeof(c->error), "TLS setup: %s", buf);
    ERR_clear_error();
}

static SSL_CTX *tls_ctx(rsv_subchannel *sc, conn *c)
{
    static const unsigned char alpn[] = {2, 'h', '2'};
    if (sc->ssl_ctx)
        return sc->ssl_ctx;
    /* One context per subchannel keeps the library free of globals; the CA
     * store is loaded once per subchannel, at its first TLS connect. */
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        goto fail;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_default_verify_paths(ctx) != 1 ||
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn)) != 0) /* 0 is success here */
        goto fail_ctx;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    /* nghttp2's buffer may move between a WANT_WRITE and the retry. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    sc->ssl_ctx = ctx;
    return ctx;

fail_ctx:
    SSL_CTX_free(ctx);
fail:
    tls_setup_error(c);
    return NULL;
}

static int host_is_numeric(const char *host)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

static void conn_tls_step(conn *c)
{
    ERR_clear_error();
    int rv = SSL_do_handshake(c->ssl);
    if (rv == 1) {
        const unsigned char *proto = NULL;
        unsigned len = 0;
        SSL_get0_alpn_selected(c->ssl, &proto, &len);
        c->tls_want_write = 0;
        if (len != 2 || memcmp(proto, "h2", 2) != 0) {
            conn_fail(c, "TLS: the server did not select ALPN h2", 0);
            return;
        }
        conn_h2_begin(c);
        return;
    }
    int saved = errno, e = SSL_get_error(c->ssl, rv);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->tls_want_write = e == SSL_ERROR_WANT_WRITE;
        if (conn_watch(c) != 0)
            conn_fail(c, c->error, 0);
        return;
    }
    tls_error(c, "TLS handshake", e, saved);
    conn_fail(c, c->error, 0);
}

static void conn_tls_begin(conn *c)
{
    rsv_subchannel *sc = c->sc;
    SSL_CTX *ctx = tls_ctx(sc, c);
    if (!ctx || !(c->ssl = SSL_new(ctx)) || SSL_set_fd(c->ssl, c->fd) != 1)
        goto fail;
    if (host_is_numeric(sc->host)) {
        /* No SNI for an address (RFC 6066); verify the address instead. */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), sc->host) != 1)
            goto fail;
    } else if (SSL_set_tlsext_host_name(c->ssl, sc->host) != 1 ||
               SSL_set1_host(c->ssl, sc->host) != 1) {
        goto fail;
    }
    SSL_set_connect_state(c->ssl);
    c->phase = CONN_TLS_HANDSHAKE;
    conn_tls_step(c);
    return;

fail:
    if (!c->error[0])
        tls_setup_error(c);
    conn_fail(c, c->error, 0);
}

/* ---- connecting ---- */

static void set_socket_options(conn *c);

/* The dial ended: a connected socket, or why there is none. */
static void conn_dialed(int fd, const char *error, void *arg)
{
    conn *c = arg;
    c->dial = NULL;
    if (fd < 0) {
        snprintf(c->error, sizeof(c->error), "%s", error);
        conn_fail(c, c->error, 0);
        return;
    }
    c->fd = fd;
    set_socket_options(c);
    c->last_read_ms = rsv_loop_now(c->sc->loop);
    switch (c->sc->opts.protocol) {
    case RSV_PROTOCOL_TCP:
        c->phase = CONN_READY;
        if (conn_watch(c) != 0)
            conn_fail(c, c->error, 0);
        else
            (void)conn_ready(c); /* the last step either way */
        return;
    case RSV_PROTOCOL_H2:
        conn_tls_begin(c);
        return;
    case RSV_PROTOCOL_H2C:
        conn_h2_begin(c);
        return;
    }
    conn_fail(c, "unknown protocol", 0);
}

static void conn_io_cb(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    conn *c = arg;
    switch (c->phase) {
    case CONN_TLS_HANDSHAKE:
        conn_tls_step(c);
        return;
    default:
        break;
    }
    if (!c->h2) {
        conn_read_tcp(c);
        return;
    }
    if ((events & (RSV_LOOP_READ | RSV_LOOP_ERROR)) || c->tls_want_write) {
        if (!conn_read_h2(c))
            return;
    }
    if ((events & RSV_LOOP_WRITE) && conn_flush(c) != 0)
        conn_write_failed(c);
}

/* TCP_KEEPIDLE and TCP_KEEPINTVL take whole seconds in 1..32767 (Linux's
 * MAX_TCP_KEEPIDLE): outside that the kernel refuses the option and the
 * socket silently keeps its defaults (2 h idle, 75 s interval). */
static int tcp_keepalive_seconds(uint64_t ms)
{
    uint64_t s = ms / 1000;
    return s < 1 ? 1 : s > 32767 ? 32767 : (int)s;
}

static void set_socket_options(conn *c)
{
    rsv_subchannel *sc = c->sc;
    int one = 1;
    /* Best effort: a socket without these still works. */
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    /* Unacknowledged data fails the connection after the keepalive timeout
     * instead of ~15 min of retransmissions (doc/design.md, Keepalive). */
    int timeout = rsv_ms_to_int(keepalive_timeout_ms(sc));
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
    if (sc->opts.protocol == RSV_PROTOCOL_TCP && sc->keepalive_time_ms > 0) {
        /* No PINGs: let TCP probe an idle connection at the keepalive time. */
        int idle = tcp_keepalive_seconds(sc->keepalive_time_ms);
        int intvl = tcp_keepalive_seconds((uint64_t)timeout), cnt = 3;
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
}

/* Starts a connection.  Never reports anything itself: a failure to start
 * is reported from the deadline timer at 0 ms, so callers may announce
 * CONNECTING first.  NULL only when out of memory. */
static conn *conn_start(rsv_subchannel *sc, uint64_t timeout_ms)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->sc = sc;
    c->id = ++sc->next_conn_id;
    c->fd = -1;
    c->keepalive_time_ms = sc->keepalive_time_ms;
    c->deadline_timer = rsv_timer_new(sc->loop, conn_deadline_cb, c);
    c->keepalive_timer = rsv_timer_new(sc->loop, conn_keepalive_cb, c);
    c->ping_timer = rsv_timer_new(sc->loop, conn_ping_timeout_cb, c);
    c->age_timer = rsv_timer_new(sc->loop, conn_age_cb, c);
    if (!c->deadline_timer || !c->keepalive_timer || !c->ping_timer || !c->age_timer)
        goto fail;
    if (sc->hc_req) {
        /* A copy: a reload may replace sc->hc_req while this one lives. */
        if (!(c->hc = calloc(1, sizeof(*c->hc))) ||
            !(c->hc->timer = rsv_timer_new(sc->loop, health_timer_cb, c)) ||
            !(c->hc->req = malloc(sc->hc_req_len)))
            goto fail;
        memcpy(c->hc->req, sc->hc_req, sc->hc_req_len);
        c->hc->req_len = sc->hc_req_len;
        health_reset_call(c->hc);
    }
    sc->stats.connect_attempts++;
    if (sc->opts.protocol == RSV_PROTOCOL_H2)
        LOG_DEBUG("subchannel %s: TLS connect (ALPN h2, system CAs)", sc->name);
    /* Resolving and connecting happen off this call: dial.h. */
    c->dial = rsv_dial_start(sc->loop, sc->dns, sc->host, sc->port, conn_dialed, c);
    if (!c->dial) {
        snprintf(c->error, sizeof(c->error), "out of memory");
        conn_defer_fail(c);
        return c;
    }
    rsv_timer_start(c->deadline_timer, timeout_ms);
    return c;

fail:
    rsv_timer_del(c->deadline_timer);
    rsv_timer_del(c->keepalive_timer);
    rsv_timer_del(c->ping_timer);
    rsv_timer_del(c->age_timer);
    health_free(c->hc);
    free(c);
    return NULL;
}

/* ---- options from a reload ---- */

/* Called where a connection is about to open (start_attempt, a max-age
 * replacement): the options of rsv_subchannel_set_options become the
 * subchannel's.  A connection already open keeps what it began with: its
 * own copy of the health request, keepalive time, health checking on or
 * off.  Out of memory: the old options stay, and the next connection tries
 * again. */
static void take_next_options(rsv_subchannel *sc)
{
    rsv_service_options *next = sc->next_opts;
    if (!next)
        return;
    uint8_t *old_req = sc->hc_req;
    size_t old_len = sc->hc_req_len;
    sc->hc_req = NULL;
    sc->hc_req_len = 0;
    if (next->health_grpc_service && next->protocol != RSV_PROTOCOL_TCP &&
        health_encode_request(sc, next->health_grpc_service) != 0) {
        sc->hc_req = old_req;
        sc->hc_req_len = old_len;
        return;
    }
    free(old_req);
    /* A too_many_pings doubling stands unless the configuration changed
     * the keepalive time itself. */
    if (next->keepalive_time_ms != sc->opts.keepalive_time_ms)
        sc->keepalive_time_ms = next->keepalive_time_ms;
    /* The backoff keeps its progress, within the new bounds. */
    double current = sc->backoff.current_ms;
    rsv_backoff_init(&sc->backoff, &next->backoff);
    if (current > (double)sc->backoff.cfg.max_ms)
        current = (double)sc->backoff.cfg.max_ms;
    if (current > sc->backoff.current_ms)
        sc->backoff.current_ms = current;
    LOG_DEBUG("subchannel %s: new options from a reload take effect with this connection",
              sc->name);
    rsv_service_options_clear(&sc->opts);
    sc->opts = *next;
    free(next);
    sc->next_opts = NULL;
}

int rsv_subchannel_set_options(rsv_subchannel *sc, const rsv_service_options *opts)
{
    rsv_service_options *next = malloc(sizeof(*next));
    if (!next || rsv_service_options_copy(next, opts) != 0) {
        free(next);
        return RESOLVER_ERR_NOMEM;
    }
    if (sc->next_opts) {
        rsv_service_options_clear(sc->next_opts);
        free(sc->next_opts);
    }
    sc->next_opts = next;
    return 0;
}

/* ---- public API ---- */

rsv_subchannel *rsv_subchannel_new(rsv_loop *loop, rsv_dns *dns, const char *host, uint16_t port,
                                   const rsv_service_options *opts, rsv_subchannel_state_cb cb,
                                   void *arg)
{
    if (!loop || !host || !*host || !opts)
        return NULL;
    rsv_subchannel *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return NULL;
    size_t hlen = strlen(host);
    if (hlen > 2 && host[0] == '[' && host[hlen - 1] == ']')
        sc->host = strndup(host + 1, hlen - 2); /* "[::1]" -> "::1" */
    else
        sc->host = strdup(host);
    if (!sc->host)
        goto fail_sc;
    int v6 = strchr(sc->host, ':') != NULL;
    size_t nlen = strlen(sc->host) + 10;
    sc->name = malloc(nlen);
    if (!sc->name)
        goto fail_host;
    snprintf(sc->name, nlen, v6 ? "[%s]:%u" : "%s:%u", sc->host, (unsigned)port);
    if (rsv_service_options_copy(&sc->opts, opts) != 0)
        goto fail_name;
    sc->retry_timer = rsv_timer_new(loop, retry_cb, sc);
    if (!sc->retry_timer)
        goto fail_opts;
    sc->loop = loop;
    sc->dns = dns;
    sc->port = port;
    sc->cb = cb;
    sc->arg = arg;
    sc->state = RSV_STATE_IDLE;
    sc->keepalive_time_ms = opts->keepalive_time_ms;
    if (opts->health_grpc_service) {
        if (opts->protocol == RSV_PROTOCOL_TCP)
            LOG_DEBUG("subchannel %s: health_check needs HTTP/2; protocol tcp checks the "
                      "connection only",
                      sc->name);
        else if (health_encode_request(sc, opts->health_grpc_service) != 0)
            goto fail_timer;
    }
    rsv_backoff_init(&sc->backoff, &opts->backoff);
    sc->stats.state_since_ms = rsv_loop_now(loop);
    sc->stats.rtt_last_us = -1;
    sc->stats.rtt_smoothed_us = -1;
    return sc;

fail_timer:
    rsv_timer_del(sc->retry_timer);
fail_opts:
    rsv_service_options_clear(&sc->opts);
fail_name:
    free(sc->name);
fail_host:
    free(sc->host);
fail_sc:
    free(sc);
    return NULL;
}

void rsv_subchannel_connect(rsv_subchannel *sc)
{
    if (!sc || sc->state != RSV_STATE_IDLE)
        return;
    start_attempt(sc);
    set_state(sc, RSV_STATE_CONNECTING, "connect requested");
}

void rsv_subchannel_shutdown(rsv_subchannel *sc)
{
    if (!sc || sc->state == RSV_STATE_SHUTDOWN)
        return;
    rsv_timer_stop(sc->retry_timer);
    conn_release(sc->pending, 1);
    conn_release(sc->active, 1);
    set_state(sc, RSV_STATE_SHUTDOWN, "shutdown");
}

void rsv_subchannel_del(rsv_subchannel *sc)
{
    if (!sc)
        return;
    if (sc->deleted_flag)
        *sc->deleted_flag = 1; /* tells set_state, up the stack, not to touch sc */
    conn_close(sc->pending, 1);
    conn_close(sc->active, 1);
    rsv_timer_del(sc->retry_timer);
    SSL_CTX_free(sc->ssl_ctx);
    free(sc->hc_req);
    rsv_service_options_clear(&sc->opts);
    if (sc->next_opts) {
        rsv_service_options_clear(sc->next_opts);
        free(sc->next_opts);
    }
    free(sc->name);
    free(sc->host);
    free(sc);
}

rsv_state rsv_subchannel_state(const rsv_subchannel *sc)
{
    return sc->state;
}

const char *rsv_subchannel_state_cause(const rsv_subchannel *sc)
{
    return sc->state_cause;
}

const rsv_subchannel_stats *rsv_subchannel_stats_get(const rsv_subchannel *sc)
{
    return &sc->stats;
}

void rsv_subchannel_probe(rsv_subchannel *sc)
{
    conn *c = sc ? sc->active : NULL;
    if (!c || c->phase != CONN_READY || !c->h2 || c->ping_in_flight)
        return;
    if (conn_send_ping(c) != 0)
        conn_defer_fail(c); /* reported from the loop, not inside the caller */
}
