/*
 * health.c - grpc.health.v1.Health over one connection's streams (see
 * health.h).  The stream callbacks of S2 only record (the status of each
 * answer, the :status and grpc-status headers); on_input and on_close act
 * on the records, outside the connection's parsing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backoff.h"
#include "health.h"
#include "log.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 20000   /* as subchannel.c */
#define DEFAULT_KEEPALIVE_TIMEOUT_MS 20000 /* as connection.c */
#define HC_POLL_MAX_MS 5000                /* Check polling: min(keepalive_time, this) */
#define HC_REOPEN_MS 200 /* a Watch that had answered ended: open it again after this */
#define HC_MSG_MAX 1024  /* a HealthCheckResponse is 2 bytes; refuse silly sizes */
/* A call that failed without an answer: retry after 1 s, doubling up to 10 s. */
static const rsv_backoff_config retry_backoff = {1000, 2.0, 0.0, 10000};

enum { HC_WATCH = 1, HC_CHECK = 2 };

struct rsv_health {
    rsv_connection *conn;
    const rsv_service_options *opts;
    uint64_t *calls;
    rsv_health_cb cb;
    void *arg;
    int *deleted_flag; /* set while the report callback runs */
    uint8_t *req;      /* the request of every call */
    size_t req_len;
    int method;        /* HC_WATCH, or HC_CHECK once Watch was UNIMPLEMENTED */
    rsv_stream stream; /* the call in progress, if stream.id != 0 */
    int answers;       /* messages received on this call */
    rsv_backoff retry; /* after calls that failed without an answer */
    /* `timer`: with a call in progress, its deadline (Watch: the first
     * answer; Check: the answer); without, when to start the next call. */
    rsv_timer *timer;
    /* gRPC message framing: 5-byte prefix, then the message. */
    uint8_t prefix[5];
    size_t prefix_have;
    uint8_t *msg;
    size_t msg_len, msg_have;
    /* Recorded by the stream callbacks. */
    int got_status, status_value; /* the last HealthCheckResponse.status */
    uint32_t rst_code;
    int bad;         /* malformed answer */
    int grpc_status; /* -1: none seen */
    int http_status; /* 0: none seen */
};

static int start_call(rsv_health *h);

const char *rsv_health_name(rsv_health_status h)
{
    switch (h) {
    case RSV_HEALTH_NONE:
        return "";
    case RSV_HEALTH_SERVING:
        return "SERVING";
    case RSV_HEALTH_NOT_SERVING:
        return "NOT_SERVING";
    case RSV_HEALTH_SERVICE_UNKNOWN:
        return "SERVICE_UNKNOWN";
    case RSV_HEALTH_UNKNOWN:
        return "UNKNOWN";
    case RSV_HEALTH_UNIMPLEMENTED:
        return "UNIMPLEMENTED";
    }
    return "UNKNOWN";
}

static uint64_t connect_timeout_ms(const rsv_health *h)
{
    return h->opts->connect_timeout_ms ? h->opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
}

static uint64_t keepalive_timeout_ms(const rsv_health *h)
{
    return h->opts->keepalive_timeout_ms ? h->opts->keepalive_timeout_ms
                                         : DEFAULT_KEEPALIVE_TIMEOUT_MS;
}

static uint64_t poll_ms(const rsv_health *h)
{
    uint64_t ka = rsv_connection_keepalive_time(h->conn);
    return ka > 0 && ka < HC_POLL_MAX_MS ? ka : HC_POLL_MAX_MS;
}

/* ---- protobuf ---- */

/* The gRPC prefix (uncompressed, length) and HealthCheckRequest{service =
 * 1: string}, proto3 (an empty service is the default value and is not
 * encoded). */
int rsv_health_encode_request(const char *service, uint8_t **req, size_t *len)
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
    *req = p;
    *len = 5 + msg;
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
static int decode_response(const uint8_t *p, size_t len)
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

/* Splits gRPC messages, records the status of each.  Only records
 * (h->got_status, h->bad). */
static void parse(rsv_health *h, const uint8_t *data, size_t len)
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
            int st = decode_response(h->msg, h->msg_len);
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

static void reset_call(rsv_health *h)
{
    h->answers = 0;
    h->prefix_have = 0;
    free(h->msg);
    h->msg = NULL;
    h->msg_len = h->msg_have = 0;
    h->got_status = h->bad = 0;
    h->rst_code = 0;
    h->grpc_status = -1;
    h->http_status = 0;
}

/* ---- reporting ---- */

/* Tells the owner.  Returns 0 if h is gone. */
static int report(rsv_health *h, rsv_health_status st, const char *why)
{
    int deleted = 0;
    int *outer = h->deleted_flag;
    h->deleted_flag = &deleted;
    h->cb(h->conn, st, why, h->arg);
    if (deleted) {
        if (outer)
            *outer = 1;
        return 0;
    }
    h->deleted_flag = outer;
    return 1;
}

/* grpc-status of a call that ended: the trailer, else the HTTP status
 * mapped as gRPC does (doc/design.md, Health checking), else the
 * RST_STREAM code. */
static int call_status(const rsv_health *h)
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
    if (h->rst_code == RSV_H2_REFUSED_STREAM)
        return 14;
    if (h->rst_code == RSV_H2_CANCEL)
        return 1;
    return h->rst_code ? 13 : 2;
}

/* The call ended (closed, or malformed: then it is reset here): decide
 * what comes next.  Returns 0 if h is gone. */
static int call_ended(rsv_health *h)
{
    char why[96];
    int gs = call_status(h);
    int answered = h->answers > 0;
    rsv_stream_reset(&h->stream, RSV_H2_PROTOCOL_ERROR); /* malformed: give it up */
    const char *method = h->method == HC_CHECK ? "Check" : "Watch";
    reset_call(h);
    rsv_timer_stop(h->timer);
    if (gs == 12) { /* UNIMPLEMENTED */
        if (h->method == HC_WATCH) {
            h->method = HC_CHECK;
            LOG_INFO("subchannel %s: health Watch is UNIMPLEMENTED; polling Check every %llu ms",
                     rsv_connection_authority(h->conn), (unsigned long long)poll_ms(h));
            (void)start_call(h);
            return 1;
        }
        /* Neither method: a server without the health service is healthy
         * (gRPC's rule); no more polling on this connection. */
        return report(h, RSV_HEALTH_UNIMPLEMENTED, "health: UNIMPLEMENTED (treated as healthy)");
    }
    if (h->method == HC_CHECK) {
        rsv_timer_start(h->timer, poll_ms(h));
        if (gs == 0 && answered)
            return 1; /* the answer was applied when it arrived */
        snprintf(why, sizeof(why), "health: Check failed (grpc-status %d)", gs);
        return report(h, gs == 5 ? RSV_HEALTH_SERVICE_UNKNOWN : RSV_HEALTH_UNKNOWN, why);
    }
    /* A Watch ended.  After answers (a server restarting its streams) the
     * last answer stands and the call is opened again soon; without any,
     * the health service is failing: unhealthy until a retry answers. */
    if (answered) {
        LOG_DEBUG("subchannel %s: health Watch ended (grpc-status %d); reopening",
                  rsv_connection_authority(h->conn), gs);
        rsv_backoff_reset(&h->retry);
        rsv_timer_start(h->timer, HC_REOPEN_MS);
        return 1;
    }
    rsv_timer_start(h->timer, rsv_backoff_next(&h->retry, 0.0));
    snprintf(why, sizeof(why), "health: %s failed (grpc-status %d)", method, gs);
    return report(h, RSV_HEALTH_UNKNOWN, why);
}

static rsv_health_status from_proto(int v)
{
    switch (v) {
    case 1:
        return RSV_HEALTH_SERVING;
    case 2:
        return RSV_HEALTH_NOT_SERVING;
    case 3:
        return RSV_HEALTH_SERVICE_UNKNOWN;
    default:
        return RSV_HEALTH_UNKNOWN;
    }
}

/* ---- stream callbacks ---- */

static int parse_status_code(const char *v, size_t len)
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

static void on_header(rsv_stream *s, const char *name, size_t namelen, const char *value,
                      size_t valuelen, int trailers, void *user)
{
    rsv_health *h = user;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0)
        h->http_status = parse_status_code(value, valuelen);
    else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        h->grpc_status = parse_status_code(value, valuelen);
}

static void on_data(rsv_stream *s, const uint8_t *data, size_t len, void *user)
{
    rsv_health *h = user;
    /* Only a 200 carries gRPC messages; any other status is a plain HTTP
     * error page (nghttpd's 404), mapped by call_status. */
    if (h->http_status == 200)
        parse(h, data, len);
}

/* Acts on an answer. */
static void on_input(rsv_stream *s, void *user)
{
    rsv_health *h = user;
    if (h->got_status && !h->bad) {
        char why[64];
        rsv_health_status st = from_proto(h->status_value);
        h->got_status = 0;
        if (h->method == HC_WATCH) {
            rsv_timer_stop(h->timer); /* the first-answer deadline */
            rsv_backoff_reset(&h->retry);
        }
        snprintf(why, sizeof(why), "health: %s", rsv_health_name(st));
        if (!report(h, st, why))
            return;
    }
    if (h->bad)
        (void)call_ended(h);
}

static void on_close(rsv_stream *s, const rsv_stream_end *end, void *user)
{
    rsv_health *h = user;
    h->rst_code = end->error_code;
    (void)call_ended(h);
}

static const rsv_stream_callbacks stream_callbacks = {on_header, on_data, on_input, on_close};

/* ---- calls ---- */

#define HDR(n, v, vlen)                                                                            \
    {                                                                                              \
        (n), (v), sizeof(n) - 1, (vlen)                                                            \
    }

/* Opens a call of h->method and arms its deadline.  0, or -1: the
 * connection was told to fail. */
static int start_call(rsv_health *h)
{
    const char *path =
        h->method == HC_CHECK ? "/grpc.health.v1.Health/Check" : "/grpc.health.v1.Health/Watch";
    const char *scheme = rsv_connection_is_tls(h->conn) ? "https" : "http";
    const char *authority = rsv_connection_authority(h->conn);
    uint64_t deadline = h->method == HC_CHECK ? keepalive_timeout_ms(h) : connect_timeout_ms(h);
    char timeout[24];
    /* gRPC's grpc-timeout: at most 8 digits. */
    snprintf(timeout, sizeof(timeout), "%llum",
             (unsigned long long)(deadline > 99999999 ? 99999999 : deadline));
    rsv_header hdr[] = {
        HDR(":method", "POST", 4),
        HDR(":scheme", scheme, strlen(scheme)),
        HDR(":path", path, strlen(path)),
        HDR(":authority", authority, strlen(authority)),
        HDR("content-type", "application/grpc", 16),
        HDR("te", "trailers", 8),
        HDR("user-agent", "libresolver", 11),
        HDR("grpc-timeout", timeout, strlen(timeout)),
    };
    size_t n = sizeof(hdr) / sizeof(hdr[0]);
    if (h->method != HC_CHECK)
        n--; /* a Watch lasts as long as the connection */
    reset_call(h);
    int rv = rsv_stream_open(h->conn, &h->stream, hdr, n, h->req, h->req_len, &stream_callbacks, h);
    if (rv != 0) {
        char why[112];
        snprintf(why, sizeof(why), "http2: health call: %s", rsv_stream_strerror(rv));
        rsv_connection_fail(h->conn, why);
        return -1;
    }
    (*h->calls)++;
    /* Watch: the first answer must come within the connect timeout (a
     * server whose health service hangs is not healthy); Check: within the
     * keepalive timeout. */
    rsv_timer_start(h->timer, deadline);
    return 0;
}

/* The health timer: a call's deadline passed, or the next call is due. */
static void timer_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_health *h = arg;
    if (h->stream.id == 0) {
        (void)start_call(h);
        return;
    }
    char why[96];
    uint64_t deadline;
    rsv_stream_reset(&h->stream, RSV_H2_CANCEL);
    if (h->method == HC_CHECK) {
        deadline = keepalive_timeout_ms(h);
        rsv_timer_start(t, poll_ms(h));
    } else {
        deadline = connect_timeout_ms(h);
        rsv_timer_start(t, rsv_backoff_next(&h->retry, 0.0));
    }
    snprintf(why, sizeof(why), "health: no %s answer within %llu ms",
             h->method == HC_CHECK ? "Check" : "Watch", (unsigned long long)deadline);
    reset_call(h);
    (void)report(h, RSV_HEALTH_UNKNOWN, why);
}

rsv_health *rsv_health_new(rsv_loop *loop, rsv_connection *c, const uint8_t *req, size_t req_len,
                           const rsv_service_options *opts, uint64_t *calls, rsv_health_cb cb,
                           void *arg)
{
    rsv_health *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    /* A copy: a reload may replace the owner's request while this one lives. */
    if (!(h->timer = rsv_timer_new(loop, timer_cb, h)) || !(h->req = malloc(req_len))) {
        rsv_health_del(h);
        return NULL;
    }
    memcpy(h->req, req, req_len);
    h->req_len = req_len;
    h->conn = c;
    h->opts = opts;
    h->calls = calls;
    h->cb = cb;
    h->arg = arg;
    rsv_backoff_init(&h->retry, &retry_backoff);
    reset_call(h);
    return h;
}

int rsv_health_start(rsv_health *h)
{
    h->method = HC_WATCH;
    rsv_backoff_reset(&h->retry);
    return start_call(h);
}

void rsv_health_del(rsv_health *h)
{
    if (!h)
        return;
    if (h->deleted_flag)
        *h->deleted_flag = 1;
    rsv_stream_reset(&h->stream, RSV_H2_CANCEL);
    rsv_timer_del(h->timer);
    free(h->msg);
    free(h->req);
    free(h);
}
