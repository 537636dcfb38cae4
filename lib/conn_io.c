/*
 * conn_io.c - socket and TLS reads and writes of one connection (see
 * conn_io.h).  Split from connection.c, which keeps the byte counters.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "conn_io.h"

static void tls_error(char *err, size_t errlen, const char *what, int ssl_err, int saved_errno)
{
    unsigned long e = ERR_peek_last_error();
    if (e) {
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

/* Returns bytes written, RSV_IO_AGAIN or RSV_IO_ERROR (err set). */
ssize_t rsv_conn_io_send(SSL *ssl, int fd, const uint8_t *p, size_t n, char *err, size_t errlen)
{
    if (ssl) {
        ERR_clear_error();
        int w = SSL_write(ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (w > 0)
            return w;
        int saved = errno, e = SSL_get_error(ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            return RSV_IO_AGAIN; /* WANT_READ: READ is always watched */
        tls_error(err, errlen, "TLS write", e, saved);
        return RSV_IO_ERROR;
    }
    for (;;) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return RSV_IO_AGAIN;
        snprintf(err, errlen, "write: %s", strerror(errno));
        return RSV_IO_ERROR;
    }
}

/* Returns bytes read, 0 at EOF, RSV_IO_AGAIN or RSV_IO_ERROR (err set). */
ssize_t rsv_conn_io_recv(SSL *ssl, int fd, uint8_t *buf, size_t n, uint8_t *want_write, char *err,
                         size_t errlen)
{
    ssize_t r;
    if (ssl) {
        ERR_clear_error();
        *want_write = 0;
        int rv = SSL_read(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
        if (rv <= 0) {
            int saved = errno, e = SSL_get_error(ssl, rv);
            if (e == SSL_ERROR_ZERO_RETURN)
                return 0; /* close_notify, or a bare EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
            if (e == SSL_ERROR_WANT_READ)
                return RSV_IO_AGAIN;
            if (e == SSL_ERROR_WANT_WRITE) {
                *want_write = 1; /* e.g. answering a KeyUpdate into a full socket */
                return RSV_IO_AGAIN;
            }
            tls_error(err, errlen, "TLS read", e, saved);
            return RSV_IO_ERROR;
        }
        r = rv;
    } else {
        do
            r = recv(fd, buf, n, 0);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return RSV_IO_AGAIN;
            snprintf(err, errlen, "read: %s", strerror(errno));
            return RSV_IO_ERROR;
        }
    }
    return r;
}
