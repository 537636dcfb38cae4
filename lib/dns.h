/*
 * dns.h - host names to addresses, asynchronously (c-ares), on the engine's
 * loop, with the answers kept for their TTL.
 *
 * c-ares is what curl and gRPC resolve with: it never blocks, reads
 * /etc/hosts and resolv.conf like the C library does, and tells us which
 * sockets to watch (its socket-state callback feeds loop.h watchers) and
 * when its next timeout is (a loop.h timer).
 *
 * Rules:
 *  1. Loop-thread only (loop.h rule 1).
 *  2. A lookup's callback is never called from inside rsv_dns_lookup
 *     or rsv_dns_cancel, always from the loop (a cached answer from a
 *     0 ms timer).  Each lookup gets exactly one call unless cancelled
 *     first, and is freed when its callback returns: the callback may
 *     start lookups and cancel others, never its own.
 *  3. One query per name at a time: a lookup of a name being resolved waits
 *     for that query.  An answer is kept for its TTL (the smallest of its
 *     records), at most DNS_TTL_MAX_S; "no such name" or "no address" for
 *     DNS_NEGATIVE_TTL_MS; a timeout or a server failure not at all.  When
 *     every lookup of a name is cancelled its query still runs, and its
 *     answer is kept for the next one.
 *  4. Addresses come in the order c-ares sorts them (RFC 6724 destination
 *     address selection), IPv4 and IPv6 mixed, port 0.  At most
 *     DNS_ADDRS_MAX are kept per name.
 */
#ifndef RSV_DNS_H
#define RSV_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "loop.h"

#define DNS_TTL_MAX_S 300
#define DNS_NEGATIVE_TTL_MS 2000
#define DNS_ADDRS_MAX 16

typedef struct rsv_dns rsv_dns;
typedef struct rsv_dns_lookup rsv_dns_lookup;

typedef struct {
    /* Name servers, "IPv4", "IPv4:PORT", "IPv6" or "[IPv6]:PORT"; none:
     * the system's (resolv.conf). */
    const char *const *servers;
    size_t n_servers;
    /* 0: resolv.conf's or c-ares' defaults (tests set them short). */
    uint64_t timeout_ms; /* of one try to one server */
    unsigned tries;
} rsv_dns_options;

/* status 0: `addrs` holds n >= 1 addresses, valid during the call only.
 * Otherwise `error` says why ("Domain name not found", "Timeout while
 * contacting DNS servers", ...). */
typedef void (*rsv_dns_cb)(int status, const struct sockaddr_storage *addrs, size_t n,
                           const char *error, void *arg);

typedef struct {
    uint64_t queries;    /* sent to c-ares (each may be an A and an AAAA query) */
    uint64_t cache_hits; /* lookups answered from the cache */
    uint64_t joined;     /* lookups that waited for a query already running */
    uint64_t failures;   /* queries that ended without an address */
} rsv_dns_stats;

/* NULL on allocation failure, or when c-ares cannot start (unreadable
 * resolv.conf is not a failure: c-ares then uses 127.0.0.1) or a server is
 * malformed (the configuration module validates them first). */
rsv_dns *rsv_dns_new(rsv_loop *loop, const rsv_dns_options *opts);
/* Frees everything.  Lookups still waiting are freed without a call. */
void rsv_dns_del(rsv_dns *dns);
/* New servers (reload): queries in flight are asked again of them, and the
 * cache is forgotten.  0, RESOLVER_ERR_NOMEM or RESOLVER_ERR_INVALID (the
 * old servers stay). */
int rsv_dns_configure(rsv_dns *dns, const rsv_dns_options *opts);

/* Resolves `name` (not a numeric address: callers skip those).  NULL only
 * when out of memory. */
rsv_dns_lookup *rsv_dns_lookup_start(rsv_dns *dns, const char *name, rsv_dns_cb cb, void *arg);
/* Drops a lookup before its callback: no call follows.  NULL is fine. */
void rsv_dns_cancel(rsv_dns_lookup *l);

const rsv_dns_stats *rsv_dns_stats_get(const rsv_dns *dns);

/* 1 if `server` is one rsv_dns_options.servers accepts. */
int rsv_dns_server_valid(const char *server);

#endif
