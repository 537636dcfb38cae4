/*
 * connection.h - one transport to one instance: reached by a connector
 * (connector.h), then for protocols h2c/h2 an HTTP/2 client session
 * (nghttp2, its I/O done here on the loop) with keepalive PINGs, GOAWAY
 * handling and max connection age; protocol tcp only watches the socket.
 * HTTP/2 connections carry streams through a small stream API (below).
 *
 * Close rule:
 *  1. Loop-thread only (loop.h rule 1).
 *  2. rsv_connection_del ends a connection and frees it on return, with
 *     every timer and the socket; no callback of its own or of its streams
 *     runs after it.  It may be called from any callback, the connection's
 *     own included.
 *  3. `closed` reports the end exactly once (failure or an orderly end);
 *     the connection does nothing more afterwards but waits for
 *     rsv_connection_del, which the owner must call (in the callback or
 *     later).  `ready` and `aged` may be followed by anything.
 *  4. Callbacks never run from inside a call the owner made into the
 *     connection (failures noticed there are reported from a 0 ms timer),
 *     and never from inside nghttp2.
 *  5. Streams: see the stream rules below.  When the connection ends,
 *     streams still open get no callback: their owners learn it from the
 *     connection's `closed` (or from having called rsv_connection_del).
 *     rsv_connection_del detaches them (id 0; rsv_stream_reset is then a
 *     no-op), so their storage may go before or after it.
 */
#ifndef RSV_CONNECTION_H
#define RSV_CONNECTION_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include "config.h"
#include "dns.h"
#include "loop.h"

struct rsv_subchannel_stats;
typedef struct rsv_connection rsv_connection;

/* How a connection ended (the `closed` callback). */
typedef struct {
    const char *cause;  /* "keepalive ping timeout", "GOAWAY ... from server", ... */
    int clean;          /* EOF, or a GOAWAY that left none of our streams unprocessed */
    int too_many_pings; /* GOAWAY ENHANCE_YOUR_CALM "too_many_pings" */
    int was_ready;      /* the handshake had finished */
    uint64_t ready_ms;  /* for how long it had (loop time) */
} rsv_connection_end;

typedef struct {
    /* The handshake is done: the server's SETTINGS arrived (protocol tcp:
     * the TCP connect completed). */
    void (*ready)(rsv_connection *c, void *arg);
    /* The connection is over (rule 3). */
    void (*closed)(rsv_connection *c, const rsv_connection_end *end, void *arg);
    /* READY for max_connection_age_ms (+-10 %); the timer is not rearmed
     * unless rsv_connection_age_again. */
    void (*aged)(rsv_connection *c, void *arg);
} rsv_connection_callbacks;

typedef struct {
    const char *host; /* borrowed, like every pointer here, for the connection's life */
    uint16_t port;
    rsv_dns *dns;
    const char *authority; /* "host:port": :authority and logs */
    /* Read when they apply: protocol and keepalive_timeout_ms when
     * connecting and for each PING, max_connection_age_ms when READY. */
    const rsv_service_options *opts;
    uint64_t keepalive_time_ms;  /* PING interval (h2), TCP keepalive (tcp); 0 off */
    uint64_t connect_timeout_ms; /* the whole handshake: resolve, TCP, TLS, SETTINGS */
    SSL_CTX **tls_ctx;           /* connector.h */
    /* 0: each stream's receive window is given back as its data arrives;
     * 1: only by rsv_stream_consume (a consumer that buffers). */
    int manual_window;
    struct rsv_subchannel_stats *stats; /* bytes, PINGs, RTT, GOAWAYs are added here */
    const rsv_connection_callbacks *cbs;
    void *arg;
} rsv_connection_config;

/* Starts connecting.  Never reports anything itself: a failure to start is
 * reported from a 0 ms timer.  NULL only when out of memory. */
rsv_connection *rsv_connection_new(rsv_loop *loop, const rsv_connection_config *cfg);
/* Rule 2.  With `goaway`, an HTTP/2 connection is told GOAWAY NO_ERROR
 * (and TLS close_notify) first, flushed best effort.  NULL is fine. */
void rsv_connection_del(rsv_connection *c, int goaway);

int rsv_connection_is_ready(const rsv_connection *c);
int rsv_connection_is_h2(const rsv_connection *c);
int rsv_connection_is_tls(const rsv_connection *c);
uint64_t rsv_connection_keepalive_time(const rsv_connection *c);
const char *rsv_connection_authority(const rsv_connection *c);
/* The owner's pointer for this connection (like uv_handle_t.data). */
void rsv_connection_set_data(rsv_connection *c, void *data);
void *rsv_connection_data(const rsv_connection *c);
/* Sends a PING now unless one is in flight (h2, READY); no ACK within
 * keepalive_timeout_ms ends the connection. */
void rsv_connection_ping(rsv_connection *c);
/* Ends the connection with this cause, reported from a 0 ms timer. */
void rsv_connection_fail(rsv_connection *c, const char *cause);
/* Arms the max-age timer again (after a failed replacement). */
void rsv_connection_age_again(rsv_connection *c, uint64_t ms);
/* The last_stream_id of the server's GOAWAY; -1 before any. */
int32_t rsv_connection_goaway_last_stream_id(const rsv_connection *c);

/*
 * The stream API: client streams on an HTTP/2 connection.
 *
 * Stream rules:
 *  S1. The caller provides the rsv_stream storage (its fields are the
 *      connection's) and keeps it in place from rsv_stream_open until
 *      on_close ran, rsv_stream_reset returned, or the connection ended
 *      (rule 5); then it may be reused or freed.
 *  S2. on_header and on_data run while the connection parses what it read:
 *      they may record and copy, and call rsv_stream_reset on their own
 *      stream, nothing else of this API; the name, value and data pointers
 *      are valid only during the call.
 *  S3. on_input and on_close run after the parsing of a read, outside
 *      nghttp2, in that order, for each stream that received something (on_input) or
 *      closed (on_close) in it; they may do anything, rsv_connection_del
 *      included.  on_close is the stream's last callback.
 *  S4. After rsv_stream_reset no callback of that stream runs.
 */
typedef struct {
    const char *name, *value;
    size_t name_len, value_len;
} rsv_header;

typedef struct rsv_stream rsv_stream;

/* HTTP/2 error codes (RFC 9113 section 7) a stream user may meet. */
enum {
    RSV_H2_NO_ERROR = 0,
    RSV_H2_PROTOCOL_ERROR = 1,
    RSV_H2_REFUSED_STREAM = 7,
    RSV_H2_CANCEL = 8
};

/* Why a stream ended (on_close). */
typedef struct {
    uint32_t error_code; /* 0: ended normally; else the RST_STREAM (or nghttp2's) code */
    /* The server's GOAWAY last_stream_id when one came (-1: none): a stream
     * above it was not processed and may be retried elsewhere. */
    int32_t goaway_last_stream_id;
} rsv_stream_end;

typedef struct {
    /* One header field of the response (trailers: 1 for the trailers). */
    void (*on_header)(rsv_stream *s, const char *name, size_t name_len, const char *value,
                      size_t value_len, int trailers, void *user);
    /* Body bytes.  Their flow-control window is given back at once, or with
     * manual_window only by rsv_stream_consume. */
    void (*on_data)(rsv_stream *s, const uint8_t *data, size_t len, void *user);
    void (*on_input)(rsv_stream *s, void *user);
    void (*on_close)(rsv_stream *s, const rsv_stream_end *end, void *user);
} rsv_stream_callbacks;

struct rsv_stream {
    rsv_connection *conn;
    int32_t id; /* 0: not open */
    int flags;  /* private */
    const rsv_stream_callbacks *cbs;
    void *user;
    const uint8_t *body; /* borrowed until the stream ends (S1) */
    size_t body_len, body_off;
    rsv_stream_end end;
    rsv_stream *next_open, *next_queued; /* private */
};

/* Opens a stream: headers (pseudo-headers first; at most 16, copied), then
 * `body` (NULL for none) and the end of the request.  The caller's `user`
 * is passed to every callback.  0, or a negative code (connection not
 * READY, out of stream ids or memory; rsv_stream_strerror names it) with
 * nothing opened. */
int rsv_stream_open(rsv_connection *c, rsv_stream *s, const rsv_header *headers, size_t n,
                    const uint8_t *body, size_t body_len, const rsv_stream_callbacks *cbs,
                    void *user);
const char *rsv_stream_strerror(int code);
/* RST_STREAM with this code (unless the stream already closed), and the
 * stream is forgotten (S4).  A stream not open is fine. */
void rsv_stream_reset(rsv_stream *s, uint32_t error_code);
/* With manual_window: `n` bytes of s's data are consumed, their window
 * goes back to the server.  Otherwise a no-op. */
void rsv_stream_consume(rsv_stream *s, size_t n);

#endif
