/*
 * conn_io.h - socket and TLS reads and writes of one connection.
 *
 * Internal to lib/connection.c and lib/conn_io.c.  These helpers only move
 * bytes and describe failures; the byte counters and the keepalive idleness
 * clock stay with the connection, so nothing here calls back into it.
 */
#ifndef RSV_CONN_IO_H
#define RSV_CONN_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <openssl/ssl.h>

enum { RSV_IO_AGAIN = -1, RSV_IO_ERROR = -2 };

/* Writes to ssl if not NULL, else to fd.  Returns bytes written,
 * RSV_IO_AGAIN or RSV_IO_ERROR (err set). */
ssize_t rsv_conn_io_send(SSL *ssl, int fd, const uint8_t *p, size_t n, char *err, size_t errlen);

/* Reads from ssl if not NULL, else from fd.  Returns bytes read, 0 at EOF,
 * RSV_IO_AGAIN or RSV_IO_ERROR (err set).  With TLS, *want_write is set to
 * whether OpenSSL needs the socket writable to progress. */
ssize_t rsv_conn_io_recv(SSL *ssl, int fd, uint8_t *buf, size_t n, uint8_t *want_write, char *err,
                         size_t errlen);

#endif
