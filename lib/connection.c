/*
 * connection.c - one transport to one instance (see connection.h).
 *
 * Shape:
 *  - A connection has no socket of its own until its connector hands over
 *    a connected one (connected()); the connect deadline covers the
 *    connector and the HTTP/2 handshake both.
 *  - nghttp2 does no I/O here: bytes read go to nghttp2_session_mem_recv,
 *    bytes to write come from nghttp2_session_mem_send.  nghttp2 callbacks
 *    only record what arrived (SETTINGS, PING ACK, GOAWAY, stream events) in
 *    the connection and its streams; dispatch() acts on those records after
 *    mem_recv has returned, never from inside nghttp2.
 *  - A callback into the owner may delete the connection (rule 2 of
 *    connection.h).  So each call is bracketed by a guard: a flag on the
 *    caller's stack that rsv_connection_del sets, and every caller returns
 *    at once when it was set.
 *  - A failure noticed inside a call the owner made (ping, fail, a stream
 *    call from a timer) is reported from a 0 ms timer (rule 4).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "clock.h"
#include "conn_io.h"
#include "connection.h"
#include "connector.h"
#include "h2mem.h"
#include "log.h"
#include "random.h"
#include "subchannel.h"

#define DEFAULT_KEEPALIVE_TIMEOUT_MS 20000 /* gRPC's default keepalive timeout */
#define AGE_JITTER 0.1 /* max_connection_age +-10 % (doc/design.md, Connection ends) */
#define READ_CHUNK 16384
/* Plain sockets: reads per readiness event; epoll is level-triggered, so the
 * rest comes next iteration and one busy peer cannot starve the loop.  TLS
 * reads until WANT_READ because OpenSSL may buffer what epoll cannot see. */
#define READS_PER_EVENT 8

enum { IO_AGAIN = RSV_IO_AGAIN, IO_ERROR = RSV_IO_ERROR };

/* rsv_stream.flags */
enum { ST_QUEUED = 1, ST_INPUT = 2, ST_CLOSED = 4 };

typedef enum {
    PHASE_CONNECTING,   /* the connector resolves, connects, shakes hands (TLS) */
    PHASE_H2_HANDSHAKE, /* preface + SETTINGS sent; waiting for the server's SETTINGS */
    PHASE_READY,
    PHASE_OVER /* `closed` was reported; waiting for rsv_connection_del */
} phase;

struct rsv_connection {
    rsv_loop *loop;
    const rsv_service_options *opts;
    struct rsv_subchannel_stats *stats;
    const rsv_connection_callbacks *cbs;
    void *arg, *data;
    const char *authority;
    int *deleted_flag; /* set while an owner's callback runs */
    SSL *ssl;
    nghttp2_session *h2;
    const uint8_t *out; /* mem_send output not yet written (nghttp2's buffer) */
    size_t out_len;
    rsv_timer *deadline_timer; /* connect deadline, or a deferred failure */
    /* Keepalive: the next PING is due; with a PING in flight, its ACK
     * timeout (the two never run at once). */
    rsv_timer *keepalive_timer;
    rsv_timer *age_timer; /* max_connection_age */
    uint64_t keepalive_time_ms;
    uint64_t ready_since_ms;
    uint64_t last_read_ms;
    uint64_t ping_seq; /* the PING in flight carries its 8 bytes, little-endian */
    uint64_t ping_sent_us;
    rsv_stream *streams; /* open streams */
    rsv_stream *queue;   /* streams with events for dispatch */
    int fd;
    uint32_t goaway_code;
    int32_t goaway_last_id; /* -1: no GOAWAY */
    /* Flags, a byte each (a connection per subchannel: its size is RSS). */
    uint8_t phase;          /* enum phase */
    uint8_t watching;       /* the events the loop watches for fd */
    uint8_t connecting;     /* u.connector is in use */
    uint8_t tls_want_write; /* OpenSSL needs the socket writable to progress */
    uint8_t in_read;        /* inside conn_read_h2: it flushes at its end */
    uint8_t manual_window;  /* rsv_connection_config.manual_window */
    uint8_t ping_in_flight;
    /* Recorded by nghttp2 callbacks, acted on after mem_recv returns. */
    uint8_t got_settings, got_ping_ack, got_goaway, too_many_pings;
    uint8_t goaway_processed; /* the GOAWAY's last_stream_id covers every open stream of ours */
    /* The connector's storage until it is done, then what only a
     * connected HTTP/2 connection uses: the connector costs no memory of
     * its own (a freed block per connection would stay as heap holes). */
    union {
        rsv_connector connector;
        struct {
            rsv_h2mem mem;         /* nghttp2's large blocks (h2mem.h) */
            char goaway_debug[32]; /* the GOAWAY's debug data, printable ASCII, for the log */
        } h2;
    } u;
    char error[112]; /* the cause of a failure about to be reported */
};

_Static_assert(sizeof(rsv_connector) <= sizeof(rsv_h2mem) + 32,
               "the connector must fit in the storage it borrows");

static void conn_fail(rsv_connection *c, const char *cause, int clean);
static void conn_write_failed(rsv_connection *c);
static void conn_io_cb(rsv_loop *loop, int fd, unsigned events, void *arg);
static int conn_flush(rsv_connection *c);

/* ---- guards around the owner's callbacks ---- */

typedef struct {
    int deleted;
    int *outer; /* a callback may nest another */
} guard;

static void guard_push(rsv_connection *c, guard *g)
{
    g->deleted = 0;
    g->outer = c->deleted_flag;
    c->deleted_flag = &g->deleted;
}

/* 0 if c was deleted meanwhile: the caller must return without touching it. */
static int guard_pop(rsv_connection *c, guard *g)
{
    if (g->deleted) {
        if (g->outer)
            *g->outer = 1;
        return 0;
    }
    c->deleted_flag = g->outer;
    return 1;
}

static uint64_t keepalive_timeout_ms(const rsv_connection *c)
{
    return c->opts->keepalive_timeout_ms ? c->opts->keepalive_timeout_ms
                                         : DEFAULT_KEEPALIVE_TIMEOUT_MS;
}

/* ---- I/O ---- */

static int conn_watch(rsv_connection *c)
{
    unsigned ev = RSV_LOOP_READ;
    if (c->out_len > 0 || c->tls_want_write)
        ev |= RSV_LOOP_WRITE;
    if (ev == c->watching)
        return 0;
    if (rsv_loop_watch(c->loop, c->fd, ev, conn_io_cb, c) != 0) {
        snprintf(c->error, sizeof(c->error), "epoll: %s", strerror(errno));
        return -1;
    }
    c->watching = ev;
    return 0;
}

/* Returns bytes written, IO_AGAIN or IO_ERROR (c->error set). */
static ssize_t conn_send(rsv_connection *c, const uint8_t *p, size_t n)
{
    ssize_t w = rsv_conn_io_send(c->ssl, c->fd, p, n, c->error, sizeof(c->error));
    if (w > 0)
        c->stats->bytes_out += (uint64_t)w;
    return w;
}

/* Returns bytes read, 0 at EOF, IO_AGAIN or IO_ERROR (c->error set). */
static ssize_t conn_recv(rsv_connection *c, uint8_t *buf, size_t n)
{
    ssize_t r =
        rsv_conn_io_recv(c->ssl, c->fd, buf, n, &c->tls_want_write, c->error, sizeof(c->error));
    if (r > 0) {
        c->stats->bytes_in += (uint64_t)r;
        /* Keepalive idleness is measured from the last byte read (doc/design.md, Keepalive). */
        c->last_read_ms = rsv_loop_now(c->loop);
    }
    return r;
}

/* Writes what nghttp2 has to send until the socket would block.  Returns 0,
 * or -1 with c->error set.  Never calls back, so it is safe inside any
 * call. */
static int conn_flush(rsv_connection *c)
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

/* Reports c->error from the loop soon rather than from inside the caller. */
static void conn_defer_fail(rsv_connection *c)
{
    rsv_timer_start(c->deadline_timer, 0);
}

/* A stream call from outside a read (a timer) flushes at once; inside one,
 * conn_read_h2 flushes when it is done. */
static void conn_flush_soon(rsv_connection *c)
{
    if (!c->in_read && c->phase == PHASE_READY && conn_flush(c) != 0)
        conn_defer_fail(c);
}

/* ---- lifetime ---- */

static void conn_stop(rsv_connection *c)
{
    if (c->connecting) {
        rsv_connector_cancel(&c->u.connector);
        c->connecting = 0;
        memset(&c->u, 0, sizeof(c->u));
    }
    rsv_timer_stop(c->deadline_timer);
    rsv_timer_stop(c->keepalive_timer);
    rsv_timer_stop(c->age_timer);
    if (c->fd >= 0)
        rsv_loop_unwatch(c->loop, c->fd);
    c->watching = 0;
}

void rsv_connection_del(rsv_connection *c, int goaway)
{
    if (!c)
        return;
    if (c->deleted_flag)
        *c->deleted_flag = 1; /* tells the guards up the stack not to touch c */
    if (goaway && c->h2 && (c->phase == PHASE_H2_HANDSHAKE || c->phase == PHASE_READY)) {
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                              NULL, 0);
        (void)conn_flush(c);
    }
    if (c->ssl && goaway && (c->phase == PHASE_H2_HANDSHAKE || c->phase == PHASE_READY)) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl); /* sends close_notify; no wait for the peer's */
        ERR_clear_error();
    }
    /* Rule 5: the streams still here are detached, so their owners' later
     * rsv_stream_reset is a no-op. */
    for (rsv_stream *st = c->streams; st; st = st->next_open)
        st->conn = NULL, st->id = 0;
    for (rsv_stream *st = c->queue; st; st = st->next_queued)
        st->conn = NULL, st->id = 0;
    conn_stop(c);
    rsv_timer_del(c->deadline_timer);
    rsv_timer_del(c->keepalive_timer);
    rsv_timer_del(c->age_timer);
    if (c->fd >= 0)
        close(c->fd);
    SSL_free(c->ssl);
    nghttp2_session_del(c->h2); /* frees its big blocks through c->u.h2.mem */
    rsv_h2mem_release(&c->u.h2.mem);
    free(c);
}

/* The end: stops everything and reports.  c may be gone on return. */
static void conn_fail(rsv_connection *c, const char *cause, int clean)
{
    char why[sizeof(c->error) + 16];
    snprintf(why, sizeof(why), "%s", cause); /* cause may live in c */
    rsv_connection_end end = {why, clean, c->too_many_pings, c->phase == PHASE_READY,
                              rsv_loop_now(c->loop) - c->ready_since_ms};
    conn_stop(c);
    c->phase = PHASE_OVER;
    c->cbs->closed(c, &end, c->arg);
}

static void conn_deadline_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_connection *c = arg;
    if (c->error[0]) {
        if (c->phase == PHASE_READY)
            conn_write_failed(c); /* a write from an owner's call failed */
        else
            conn_fail(c, c->error, 0);
        return;
    }
    switch (c->phase) {
    case PHASE_CONNECTING:
        if (c->connecting)
            rsv_connector_timeout_error(&c->u.connector, c->error, sizeof(c->error));
        conn_fail(c, c->error, 0);
        return;
    case PHASE_H2_HANDSHAKE:
        conn_fail(c, "timed out waiting for the server's SETTINGS", 0);
        return;
    case PHASE_READY:
    case PHASE_OVER:
        return; /* not armed in these phases without an error */
    }
}

/* ---- keepalive, max age ---- */

static void conn_arm_keepalive(rsv_connection *c)
{
    /* Protocol tcp has no PING: its keepalive is TCP-level only. */
    if (c->h2 && c->keepalive_time_ms > 0 && !c->ping_in_flight)
        rsv_timer_start(c->keepalive_timer, c->keepalive_time_ms);
}

/* A PING's opaque data: the sequence number, little-endian. */
static const uint8_t *ping_bytes(uint64_t seq, uint8_t out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(seq >> (8 * i));
    return out;
}

/* Submits a PING and arms its ACK timeout.  Returns 0 or -1 (c->error set);
 * never calls back. */
static int conn_send_ping(rsv_connection *c)
{
    if (c->ping_in_flight)
        return 0;
    uint8_t data[8];
    c->ping_seq++;
    ping_bytes(c->ping_seq, data);
    int rv = nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, data);
    if (rv != 0) {
        snprintf(c->error, sizeof(c->error), "http2: %s", nghttp2_strerror(rv));
        return -1;
    }
    c->ping_in_flight = 1;
    c->ping_sent_us = rsv_clock_us(); /* refined when the frame is serialized */
    c->stats->pings_sent++;
    rsv_timer_start(c->keepalive_timer, keepalive_timeout_ms(c)); /* now the ACK timeout */
    return conn_flush(c);
}

static void conn_keepalive_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_connection *c = arg;
    if (c->ping_in_flight) {
        conn_fail(c, "keepalive ping timeout", 0);
        return;
    }
    uint64_t idle = rsv_loop_now(loop) - c->last_read_ms;
    if (idle < c->keepalive_time_ms) {
        /* Something was read since the timer was armed: no PING needed yet. */
        rsv_timer_start(t, c->keepalive_time_ms - idle);
        return;
    }
    if (conn_send_ping(c) != 0)
        conn_write_failed(c);
}

static void conn_on_ping_ack(rsv_connection *c)
{
    struct rsv_subchannel_stats *st = c->stats;
    int64_t rtt = (int64_t)(rsv_clock_us() - c->ping_sent_us);
    c->ping_in_flight = 0;
    rsv_timer_stop(c->keepalive_timer);
    st->pings_acked++;
    st->rtt_last_us = rtt;
    /* EWMA with gain 1/8, as TCP's SRTT. */
    st->rtt_smoothed_us =
        st->rtt_smoothed_us < 0 ? rtt : st->rtt_smoothed_us + (rtt - st->rtt_smoothed_us) / 8;
    conn_arm_keepalive(c);
}

static void conn_arm_age(rsv_connection *c)
{
    uint64_t age = c->opts->max_connection_age_ms;
    if (age == 0)
        return;
    double f = 1.0 + AGE_JITTER * (2.0 * rsv_random01() - 1.0);
    rsv_timer_start(c->age_timer, (uint64_t)((double)age * f) + 1);
}

static void conn_age_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_connection *c = arg;
    if (c->phase == PHASE_READY)
        c->cbs->aged(c, c->arg);
}

/* ---- streams: dispatch ---- */

static void stream_unlink(rsv_stream **head, rsv_stream *s, int queue)
{
    for (rsv_stream **p = head; *p; p = queue ? &(*p)->next_queued : &(*p)->next_open)
        if (*p == s) {
            *p = queue ? s->next_queued : s->next_open;
            return;
        }
}

static void stream_mark(rsv_connection *c, rsv_stream *s, int flag)
{
    s->flags |= flag;
    if (!(s->flags & ST_QUEUED)) {
        s->flags |= ST_QUEUED;
        s->next_queued = c->queue;
        c->queue = s;
    }
}

/* Delivers the streams' events (rule S3).  Returns 0 if c is gone. */
static int dispatch_streams(rsv_connection *c)
{
    while (c->queue) {
        rsv_stream *s = c->queue;
        c->queue = s->next_queued;
        s->next_queued = NULL;
        int32_t id = s->id;
        int flags = s->flags;
        s->flags &= ~(ST_QUEUED | ST_INPUT);
        guard g;
        if ((flags & ST_INPUT) && s->cbs->on_input) {
            guard_push(c, &g);
            s->cbs->on_input(s, s->user);
            if (!guard_pop(c, &g))
                return 0;
        }
        /* on_input may have reset the stream, or opened another in its place. */
        if ((flags & ST_CLOSED) && s->id == id && id != 0) {
            s->id = 0;
            s->flags = 0;
            s->end.goaway_last_stream_id = c->goaway_last_id;
            guard_push(c, &g);
            s->cbs->on_close(s, &s->end, s->user);
            if (!guard_pop(c, &g))
                return 0;
        }
    }
    return 1;
}

/* ---- HTTP/2 ---- */

/* 1 if a GOAWAY with this last_stream_id leaves none of our streams
 * unprocessed: every stream this connection opened is at or below it, or
 * none above it is still open.  Called from on_frame_recv, before nghttp2
 * closes the streams above last_stream_id. */
static int goaway_all_processed(nghttp2_session *s, const rsv_connection *c, int32_t last_id)
{
    int64_t highest = (int64_t)nghttp2_session_get_next_stream_id(s) - 2; /* -1: none opened */
    if (highest <= last_id)
        return 1;
    for (const rsv_stream *st = c->streams; st; st = st->next_open)
        if (st->id > last_id)
            return 0;
    return 1;
}

/* Keeps a GOAWAY's debug data ("enter idle", "max_age") for the reason;
 * anything but printable ASCII becomes '?'. */
static void goaway_copy_debug(rsv_connection *c, const uint8_t *p, size_t n)
{
    size_t i, max = sizeof(c->u.h2.goaway_debug) - 1;
    for (i = 0; i < n && i < max; i++)
        c->u.h2.goaway_debug[i] = p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' ? (char)p[i] : '?';
    c->u.h2.goaway_debug[i] = '\0';
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    rsv_connection *c = user;
    uint8_t data[8];
    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK))
            c->got_settings = 1;
        break;
    case NGHTTP2_PING:
        if ((f->hd.flags & NGHTTP2_FLAG_ACK) && c->ping_in_flight &&
            memcmp(f->ping.opaque_data, ping_bytes(c->ping_seq, data), 8) == 0)
            c->got_ping_ack = 1;
        break;
    case NGHTTP2_GOAWAY:
        c->stats->goaways++;
        if (!c->got_goaway) {
            c->got_goaway = 1;
            c->goaway_code = f->goaway.error_code;
            c->goaway_last_id = f->goaway.last_stream_id;
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
    rsv_connection *c = user;
    /* The RTT clock starts when the PING is serialized, not submitted. */
    if (f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK))
        c->ping_sent_us = rsv_clock_us();
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    rsv_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    stream_mark(user, st, ST_INPUT);
    if (st->cbs->on_header)
        st->cbs->on_header(st, (const char *)name, namelen, (const char *)value, valuelen,
                           f->headers.cat == NGHTTP2_HCAT_HEADERS, st->user);
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                              size_t len, void *user)
{
    rsv_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st)
        return 0;
    stream_mark(user, st, ST_INPUT);
    if (st->cbs->on_data)
        st->cbs->on_data(st, data, len, st->user);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t error_code, void *user)
{
    rsv_connection *c = user;
    rsv_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st)
        return 0;
    stream_unlink(&c->streams, st, 0);
    st->end.error_code = error_code;
    stream_mark(c, st, ST_CLOSED);
    return 0;
}

static ssize_t stream_body_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                                uint32_t *flags, nghttp2_data_source *src, void *user)
{
    rsv_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st) {
        *flags |= NGHTTP2_DATA_FLAG_EOF; /* a stream given up on */
        return 0;
    }
    size_t n = st->body_len - st->body_off;
    n = n > len ? len : n;
    memcpy(buf, st->body + st->body_off, n);
    st->body_off += n;
    if (st->body_off == st->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF; /* half-close: the request is all sent */
    return (ssize_t)n;
}

static int h2_session_new(rsv_connection *c, int manual_window)
{
    nghttp2_mem mem = rsv_h2mem_allocator(&c->u.h2.mem);
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt = NULL;
    int rv = nghttp2_session_callbacks_new(&cbs);
    if (rv != 0)
        goto fail;
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    if (manual_window && (rv = nghttp2_option_new(&opt)) == 0)
        nghttp2_option_set_no_auto_window_update(opt, 1);
    if (rv == 0)
        rv = nghttp2_session_client_new3(&c->h2, cbs, c, opt, &mem);
    nghttp2_option_del(opt);
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

/* The server said GOAWAY; c ends here.  The end is clean (reconnect at
 * once, no backoff, not a failure) whenever the server processed all our
 * streams, whatever its code: servers use codes other than NO_ERROR for
 * plain housekeeping (grpcio 1.51 closes an idle connection with
 * INTERNAL_ERROR "enter idle"), and what matters to a client is whether
 * work was lost.  too_many_pings is the exception: the server objects to
 * us, so it gets the backoff (the owner doubles its keepalive). */
static void conn_on_goaway(rsv_connection *c)
{
    char why[112];
    int clean = !c->too_many_pings && (c->goaway_code == NGHTTP2_NO_ERROR || c->goaway_processed);
    if (c->goaway_code == NGHTTP2_NO_ERROR && !c->u.h2.goaway_debug[0])
        snprintf(why, sizeof(why), "GOAWAY NO_ERROR from server");
    else
        snprintf(why, sizeof(why), "GOAWAY %s%s%s%s from server%s",
                 nghttp2_http2_strerror(c->goaway_code), c->u.h2.goaway_debug[0] ? " \"" : "",
                 c->u.h2.goaway_debug, c->u.h2.goaway_debug[0] ? "\"" : "",
                 clean && c->goaway_code != NGHTTP2_NO_ERROR ? " (no stream lost)" : "");
    conn_fail(c, why, clean);
}

/* A write failed.  The peer may have said goodbye first (GOAWAY, then
 * close): read what it sent before blaming the write, so a draining server
 * is not mistaken for a broken one, and a closed socket is reported as
 * closed rather than as EPIPE. */
static void conn_write_failed(rsv_connection *c)
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

/* The handshake is done.  Returns 0 if c is gone. */
static int conn_ready(rsv_connection *c)
{
    c->phase = PHASE_READY;
    c->ready_since_ms = rsv_loop_now(c->loop);
    rsv_timer_stop(c->deadline_timer);
    conn_arm_keepalive(c);
    conn_arm_age(c);
    guard g;
    guard_push(c, &g);
    c->cbs->ready(c, c->arg);
    return guard_pop(c, &g);
}

/* Acts on what nghttp2 recorded during mem_recv.  Returns 0 if c is gone. */
static int dispatch(rsv_connection *c)
{
    if (c->got_ping_ack) {
        c->got_ping_ack = 0;
        conn_on_ping_ack(c);
    }
    if (c->got_goaway) {
        conn_on_goaway(c);
        return 0;
    }
    if (c->got_settings && c->phase == PHASE_H2_HANDSHAKE && !conn_ready(c))
        return 0;
    if (c->phase != PHASE_READY)
        return c->phase != PHASE_OVER;
    return dispatch_streams(c) && c->phase == PHASE_READY;
}

/* Returns 1 if c is still alive. */
static int conn_read_h2(rsv_connection *c)
{
    uint8_t buf[READ_CHUNK];
    int eof = 0, failed = 0;
    c->in_read = 1;
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
    if (!dispatch(c))
        return 0;
    c->in_read = 0;
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
static void conn_read_tcp(rsv_connection *c)
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

static void conn_io_cb(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    rsv_connection *c = arg;
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

/* The connector is done: a connected socket (and its TLS), or why not. */
static void connected(int fd, SSL *ssl, const char *error, void *arg)
{
    rsv_connection *c = arg;
    c->connecting = 0;
    memset(&c->u, 0, sizeof(c->u)); /* the connector is done with it (connector.h rule 2) */
    if (fd < 0) {
        snprintf(c->error, sizeof(c->error), "%s", error);
        conn_fail(c, c->error, 0);
        return;
    }
    c->fd = fd;
    c->ssl = ssl;
    c->last_read_ms = rsv_loop_now(c->loop);
    if (c->opts->protocol == RSV_PROTOCOL_TCP) {
        c->phase = PHASE_READY;
        if (conn_watch(c) != 0)
            conn_fail(c, c->error, 0);
        else
            (void)conn_ready(c); /* the last step either way */
        return;
    }
    c->phase = PHASE_H2_HANDSHAKE;
    if (h2_session_new(c, c->manual_window) != 0)
        conn_fail(c, c->error, 0);
    else if (conn_flush(c) != 0)
        conn_write_failed(c);
}

/* ---- public ---- */

rsv_connection *rsv_connection_new(rsv_loop *loop, const rsv_connection_config *cfg)
{
    rsv_connection *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->opts = cfg->opts;
    c->stats = cfg->stats;
    c->cbs = cfg->cbs;
    c->arg = cfg->arg;
    c->authority = cfg->authority;
    c->fd = -1;
    c->keepalive_time_ms = cfg->keepalive_time_ms;
    c->goaway_last_id = -1;
    c->manual_window = cfg->manual_window;
    c->deadline_timer = rsv_timer_new(loop, conn_deadline_cb, c);
    c->keepalive_timer = rsv_timer_new(loop, conn_keepalive_cb, c);
    c->age_timer = rsv_timer_new(loop, conn_age_cb, c);
    if (!c->deadline_timer || !c->keepalive_timer || !c->age_timer)
        goto fail;
    rsv_connector_config cc = {cfg->host,   cfg->port, cfg->dns, cfg->opts, cfg->keepalive_time_ms,
                               cfg->tls_ctx};
    if (rsv_connector_start(&c->u.connector, loop, &cc, connected, c) == 0) {
        c->connecting = 1;
    } else {
        snprintf(c->error, sizeof(c->error), "out of memory");
        conn_defer_fail(c);
        return c;
    }
    rsv_timer_start(c->deadline_timer, cfg->connect_timeout_ms);
    return c;

fail:
    rsv_timer_del(c->deadline_timer);
    rsv_timer_del(c->keepalive_timer);
    rsv_timer_del(c->age_timer);
    free(c);
    return NULL;
}

int rsv_connection_is_ready(const rsv_connection *c)
{
    return c->phase == PHASE_READY;
}

int rsv_connection_is_h2(const rsv_connection *c)
{
    return c->h2 != NULL;
}

int rsv_connection_is_tls(const rsv_connection *c)
{
    return c->ssl != NULL;
}

uint64_t rsv_connection_keepalive_time(const rsv_connection *c)
{
    return c->keepalive_time_ms;
}

const char *rsv_connection_authority(const rsv_connection *c)
{
    return c->authority;
}

void rsv_connection_set_data(rsv_connection *c, void *data)
{
    c->data = data;
}

void *rsv_connection_data(const rsv_connection *c)
{
    return c->data;
}

void rsv_connection_ping(rsv_connection *c)
{
    if (!c || c->phase != PHASE_READY || !c->h2 || c->ping_in_flight)
        return;
    if (conn_send_ping(c) != 0)
        conn_defer_fail(c); /* reported from the loop, not inside the caller */
}

void rsv_connection_fail(rsv_connection *c, const char *cause)
{
    if (c->phase == PHASE_OVER)
        return;
    snprintf(c->error, sizeof(c->error), "%s", cause);
    conn_defer_fail(c);
}

void rsv_connection_age_again(rsv_connection *c, uint64_t ms)
{
    rsv_timer_start(c->age_timer, ms);
}

int32_t rsv_connection_goaway_last_stream_id(const rsv_connection *c)
{
    return c->goaway_last_id;
}

/* ---- the stream API ---- */

#define NV_MAX 16

int rsv_stream_open(rsv_connection *c, rsv_stream *s, const rsv_header *headers, size_t n,
                    const uint8_t *body, size_t body_len, const rsv_stream_callbacks *cbs,
                    void *user)
{
    nghttp2_nv nv[NV_MAX];
    if (!c->h2 || c->phase != PHASE_READY || n > NV_MAX)
        return NGHTTP2_ERR_INVALID_STATE;
    for (size_t i = 0; i < n; i++)
        nv[i] = (nghttp2_nv){(uint8_t *)headers[i].name, (uint8_t *)headers[i].value,
                             headers[i].name_len, headers[i].value_len, NGHTTP2_NV_FLAG_NONE};
    memset(s, 0, sizeof(*s));
    s->conn = c;
    s->cbs = cbs;
    s->user = user;
    s->body = body;
    s->body_len = body_len;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = stream_body_read};
    int32_t id = nghttp2_submit_request(c->h2, NULL, nv, n, body ? &prd : NULL, s);
    if (id < 0)
        return id;
    s->id = id;
    s->next_open = c->streams;
    c->streams = s;
    conn_flush_soon(c);
    return 0;
}

const char *rsv_stream_strerror(int rv)
{
    return nghttp2_strerror(rv);
}

void rsv_stream_reset(rsv_stream *s, uint32_t error_code)
{
    rsv_connection *c = s->conn;
    if (!c || s->id == 0)
        return;
    if (s->flags & ST_QUEUED)
        stream_unlink(&c->queue, s, 1);
    if (!(s->flags & ST_CLOSED)) {
        stream_unlink(&c->streams, s, 0);
        (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, error_code);
        (void)nghttp2_session_set_stream_user_data(c->h2, s->id, NULL);
        conn_flush_soon(c);
    }
    s->id = 0;
    s->flags = 0;
}

void rsv_stream_consume(rsv_stream *s, size_t n)
{
    rsv_connection *c = s->conn;
    if (c && c->manual_window && c->h2 && s->id != 0 && !(s->flags & ST_CLOSED))
        (void)nghttp2_session_consume(c->h2, s->id, n);
}
