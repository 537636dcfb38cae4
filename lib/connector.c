/*
 * connector.c - DNS, TCP and TLS up to a connected socket (see connector.h).
 * The TCP part is dial.h's; the TLS handshake is stepped here on loop
 * readiness, and the socket is handed over unwatched.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "connector.h"
#include "dial.h"

#define DEFAULT_KEEPALIVE_TIMEOUT_MS 20000 /* as connection.c */

static uint64_t keepalive_timeout_ms(const rsv_connector *cn)
{
    return cn->opts->keepalive_timeout_ms ? cn->opts->keepalive_timeout_ms
                                          : DEFAULT_KEEPALIVE_TIMEOUT_MS;
}

/* Reports: the last thing it does with cn (rule 2). */
static void finish(rsv_connector *cn, int fd, SSL *ssl, const char *error)
{
    rsv_connector_cb cb = cn->cb;
    void *arg = cn->arg;
    if (fd >= 0)
        rsv_loop_unwatch(cn->loop, fd);
    cn->fd = -1;
    cn->ssl = NULL;
    cb(fd, ssl, error ? error : "", arg);
}

static void fail(rsv_connector *cn, const char *error)
{
    if (cn->fd >= 0) {
        rsv_loop_unwatch(cn->loop, cn->fd);
        close(cn->fd);
        cn->fd = -1;
    }
    SSL_free(cn->ssl);
    cn->ssl = NULL;
    finish(cn, -1, NULL, error);
}

/* ---- socket options ---- */

/* TCP_KEEPIDLE and TCP_KEEPINTVL take whole seconds in 1..32767 (Linux's
 * MAX_TCP_KEEPIDLE): outside that the kernel refuses the option and the
 * socket silently keeps its defaults (2 h idle, 75 s interval). */
static int tcp_keepalive_seconds(uint64_t ms)
{
    uint64_t s = ms / 1000;
    return s < 1 ? 1 : s > 32767 ? 32767 : (int)s;
}

static void set_socket_options(rsv_connector *cn)
{
    int one = 1, fd = cn->fd;
    /* Best effort: a socket without these still works. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    /* Unacknowledged data fails the connection after the keepalive timeout
     * instead of ~15 min of retransmissions (doc/design.md, Keepalive). */
    int timeout = rsv_ms_to_int(keepalive_timeout_ms(cn));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
    if (cn->opts->protocol == RSV_PROTOCOL_TCP && cn->keepalive_time_ms > 0) {
        /* No PINGs: let TCP probe an idle connection at the keepalive time. */
        int idle = tcp_keepalive_seconds(cn->keepalive_time_ms);
        int intvl = tcp_keepalive_seconds((uint64_t)timeout), cnt = 3;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
}

/* ---- TLS (protocol h2) ---- */

static void tls_error(rsv_connector *cn, char *err, size_t errlen, const char *what, int ssl_err,
                      int saved_errno)
{
    unsigned long e = ERR_peek_last_error();
    long vr = SSL_get_verify_result(cn->ssl);
    if (vr != X509_V_OK) {
        snprintf(err, errlen, "%s: certificate verify failed: %s", what,
                 X509_verify_cert_error_string(vr));
    } else if (e) {
        char buf[96];
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(err, errlen, "%s: %s", what, buf);
    } else if (ssl_err == SSL_ERROR_SYSCALL && saved_errno) {
        snprintf(err, errlen, "%s: %s", what, strerror(saved_errno));
    } else {
        snprintf(err, errlen, "%s: connection closed by peer", what);
    }
    ERR_clear_error();
}

/* Puts OpenSSL's last error into err. */
static void tls_setup_error(char *err, size_t errlen)
{
    char buf[80];
    ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
    snprintf(err, errlen, "TLS setup: %s", buf);
    ERR_clear_error();
}

static SSL_CTX *tls_ctx(rsv_connector *cn)
{
    static const unsigned char alpn[] = {2, 'h', '2'};
    if (*cn->tls_ctx)
        return *cn->tls_ctx;
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
    *cn->tls_ctx = ctx;
    return ctx;

fail_ctx:
    SSL_CTX_free(ctx);
fail:
    return NULL;
}

static int host_is_numeric(const char *host)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

static void tls_io_cb(rsv_loop *loop, int fd, unsigned events, void *arg);

static void tls_step(rsv_connector *cn)
{
    ERR_clear_error();
    int rv = SSL_do_handshake(cn->ssl);
    if (rv == 1) {
        const unsigned char *proto = NULL;
        unsigned len = 0;
        SSL_get0_alpn_selected(cn->ssl, &proto, &len);
        if (len != 2 || memcmp(proto, "h2", 2) != 0) {
            fail(cn, "TLS: the server did not select ALPN h2");
            return;
        }
        finish(cn, cn->fd, cn->ssl, NULL);
        return;
    }
    int saved = errno, e = SSL_get_error(cn->ssl, rv);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        unsigned ev = RSV_LOOP_READ | (e == SSL_ERROR_WANT_WRITE ? RSV_LOOP_WRITE : 0);
        if (rsv_loop_watch(cn->loop, cn->fd, ev, tls_io_cb, cn) != 0) {
            char err[112];
            snprintf(err, sizeof(err), "epoll: %s", strerror(errno));
            fail(cn, err);
        }
        return;
    }
    char err[112];
    tls_error(cn, err, sizeof(err), "TLS handshake", e, saved);
    fail(cn, err);
}

static void tls_io_cb(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    tls_step(arg);
}

static void tls_begin(rsv_connector *cn)
{
    const char *host = cn->host;
    SSL_CTX *ctx = tls_ctx(cn);
    if (!ctx || !(cn->ssl = SSL_new(ctx)) || SSL_set_fd(cn->ssl, cn->fd) != 1)
        goto fail;
    if (host_is_numeric(host)) {
        /* No SNI for an address (RFC 6066); verify the address instead. */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(cn->ssl), host) != 1)
            goto fail;
    } else if (SSL_set_tlsext_host_name(cn->ssl, host) != 1 || SSL_set1_host(cn->ssl, host) != 1) {
        goto fail;
    }
    SSL_set_connect_state(cn->ssl);
    tls_step(cn);
    return;

fail:;
    char err[112];
    tls_setup_error(err, sizeof(err));
    fail(cn, err);
}

/* ---- TCP ---- */

static void dialed(int fd, const char *error, void *arg)
{
    rsv_connector *cn = arg;
    cn->dial = NULL;
    if (fd < 0) {
        fail(cn, error);
        return;
    }
    cn->fd = fd;
    set_socket_options(cn);
    if (cn->opts->protocol == RSV_PROTOCOL_H2)
        tls_begin(cn);
    else
        finish(cn, fd, NULL, NULL);
}

int rsv_connector_start(rsv_connector *cn, rsv_loop *loop, const rsv_connector_config *cfg,
                        rsv_connector_cb cb, void *arg)
{
    *cn = (rsv_connector){loop, cfg->host, cfg->opts, cfg->keepalive_time_ms, cfg->tls_ctx, cb, arg,
                          NULL, NULL,      -1};
    /* Resolving and connecting happen off this call: dial.h. */
    cn->dial = rsv_dial_start(loop, cfg->dns, cfg->host, cfg->port, dialed, cn);
    return cn->dial ? 0 : -1;
}

void rsv_connector_cancel(rsv_connector *cn)
{
    rsv_dial_cancel(cn->dial);
    cn->dial = NULL;
    if (cn->fd >= 0) {
        rsv_loop_unwatch(cn->loop, cn->fd);
        close(cn->fd);
        cn->fd = -1;
    }
    SSL_free(cn->ssl);
    cn->ssl = NULL;
}

void rsv_connector_timeout_error(const rsv_connector *cn, char *buf, size_t len)
{
    if (cn->dial && rsv_dial_resolving(cn->dial))
        snprintf(buf, len, "resolve %s: timed out", cn->host);
    else if (cn->dial)
        snprintf(buf, len, "connect: timed out");
    else
        snprintf(buf, len, "TLS handshake timed out");
}
