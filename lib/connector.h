/*
 * connector.h - reaches an instance: its name resolved and its addresses
 * raced (dial.h, dns.h), the socket options set, and for protocol h2 the
 * TLS handshake (ALPN h2, the system CAs, the host name or address
 * verified).  What comes out is a connected socket (and its SSL) for a
 * connection (connection.h) to speak HTTP/2 on, or why there is none.
 *
 * Close rule:
 *  1. Loop-thread only (loop.h rule 1).
 *  2. The storage is the caller's (struct below, its fields private): in
 *     use from a successful rsv_connector_start until the callback runs or
 *     rsv_connector_cancel returns; the connector never touches it after
 *     calling back, so the callback may reuse it at once.  No heap memory
 *     of its own beyond the dial's.
 *  3. The callback runs exactly once unless rsv_connector_cancel comes
 *     first, never from inside rsv_connector_start or _cancel.  The
 *     callback must not cancel.
 *  4. rsv_connector_cancel ends it at once: no callback follows, the
 *     socket and every attempt are closed.
 *  5. The callback owns what it gets (close the fd, SSL_free the SSL).
 *     The connector no longer watches the fd.
 */
#ifndef RSV_CONNECTOR_H
#define RSV_CONNECTOR_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include "config.h"
#include "dns.h"
#include "loop.h"

typedef struct {
    const char *host; /* without IPv6 brackets; borrowed for the connector's life */
    uint16_t port;
    rsv_dns *dns; /* NULL: numeric hosts only */
    /* Borrowed; read when the TCP connect completes: protocol, and
     * keepalive_timeout_ms (TCP_USER_TIMEOUT, and TCP keepalive's interval
     * for protocol tcp). */
    const rsv_service_options *opts;
    uint64_t keepalive_time_ms; /* protocol tcp: TCP keepalive idle time (0: off) */
    /* Protocol h2: the context TLS connections use, created into *tls_ctx
     * at the first handshake; the caller frees it (SSL_CTX_free). */
    SSL_CTX **tls_ctx;
} rsv_connector_config;

/* fd >= 0 (and ssl for protocol h2, else NULL) on success; fd -1 and a
 * reason ("connect: Connection refused", "TLS handshake: ...") on failure. */
typedef void (*rsv_connector_cb)(int fd, SSL *ssl, const char *error, void *arg);

/* A connector in progress (rule 2).  Small on purpose: a connection keeps
 * it in storage it needs only once connected. */
typedef struct {
    rsv_loop *loop;
    const char *host;
    const rsv_service_options *opts;
    uint64_t keepalive_time_ms;
    SSL_CTX **tls_ctx;
    rsv_connector_cb cb;
    void *arg;
    struct rsv_dial *dial; /* until the TCP connect completes */
    SSL *ssl;              /* then, during the TLS handshake, */
    int fd;                /* on this socket */
} rsv_connector;

/* 0, or -1 when out of memory (nothing started). */
int rsv_connector_start(rsv_connector *cn, rsv_loop *loop, const rsv_connector_config *cfg,
                        rsv_connector_cb cb, void *arg);
void rsv_connector_cancel(rsv_connector *cn);
/* Why a deadline that passes now fails the attempt: "resolve HOST: timed
 * out", "connect: timed out" or "TLS handshake timed out". */
void rsv_connector_timeout_error(const rsv_connector *cn, char *buf, size_t len);

#endif
