/*
 * dial.h - opens one TCP connection to host:port: a numeric address
 * directly, a name through dns.h, then every address raced as RFC 8305
 * ("happy eyeballs") says: the address families interleaved (the first
 * address's family first), a new attempt every DIAL_STAGGER_MS or as soon
 * as the one before fails, the first to connect wins and the others are
 * closed.
 *
 * Rules:
 *  1. Loop-thread only (loop.h rule 1).
 *  2. The callback is called exactly once unless the dial is cancelled
 *     first, never from inside rsv_dial_start or rsv_dial_cancel.
 *     The dial is freed when the callback returns: do not cancel it there.
 *  3. The callback gets a connected, non-blocking, close-on-exec socket it
 *     then owns (fd >= 0), or fd -1 and a reason ("resolve NAME: ...",
 *     "connect: Connection refused").  Nothing is left open either way.
 *  4. A numeric host (IPv4, or IPv6 without brackets) never reaches DNS.
 *     Without a rsv_dns, names fail.
 *  5. At most DNS_ADDRS_MAX addresses are tried.  The caller bounds the
 *     whole dial (its connect timeout) by cancelling it.
 */
#ifndef RSV_DIAL_H
#define RSV_DIAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "dns.h"
#include "loop.h"

#define DIAL_STAGGER_MS 250 /* RFC 8305's Connection Attempt Delay */

typedef struct rsv_dial rsv_dial;

typedef void (*rsv_dial_cb)(int fd, const char *error, void *arg);

/* NULL only when out of memory. */
rsv_dial *rsv_dial_start(rsv_loop *loop, rsv_dns *dns, const char *host, uint16_t port,
                         rsv_dial_cb cb, void *arg);
/* Races these addresses (ports set) as they are, without interleaving:
 * the second half of rsv_dial_start, for tests. */
rsv_dial *rsv_dial_addrs(rsv_loop *loop, const struct sockaddr_storage *addrs, size_t n,
                         rsv_dial_cb cb, void *arg);
/* Closes every attempt; no callback follows.  NULL is fine. */
void rsv_dial_cancel(rsv_dial *d);

/* 1 while the name is being resolved (for a timeout's reason). */
int rsv_dial_resolving(const rsv_dial *d);
/* Connection attempts started so far. */
size_t rsv_dial_attempts(const rsv_dial *d);

/* Reorders addrs in place as RFC 8305 section 4: the first address's family,
 * then the other, alternating, each family in its given order. */
void rsv_dial_interleave(struct sockaddr_storage *addrs, size_t n);

/* "1.2.3.4:80" or "[::1]:80" (port from the address). */
void rsv_dial_format(const struct sockaddr_storage *ss, char *buf, size_t len);

#endif
