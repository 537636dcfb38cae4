/*
 * subchannel.h - one connection to one instance: TCP (+TLS later), an HTTP/2
 * client session (nghttp2, I/O done here on the loop), connectivity state,
 * reconnect with gRPC's backoff, keepalive PINGs.
 *
 * Rules:
 *  1. Loop-thread only (see loop.h rule 1).
 *  2. The state callback may call rsv_subchannel_del on the subchannel
 *     that reports; nothing touches it after the callback returns then.
 *  3. States follow gRPC: IDLE -> CONNECTING -> READY; a failure goes to
 *     TRANSIENT_FAILURE, waits out the backoff, then CONNECTING again.
 *     SHUTDOWN is reported once, by rsv_subchannel_shutdown.  A READY
 *     connection the server ends without losing a stream (EOF, or a GOAWAY
 *     whose last_stream_id covers every open stream, any error code but
 *     ENHANCE_YOUR_CALM too_many_pings) goes to CONNECTING at once instead:
 *     no backoff, last_error untouched.
 *  4. With health checking (opts->health_grpc_service non-NULL, "" for the
 *     whole server, in the options the connection began with), a connection whose HTTP/2 handshake
 * is done stays CONNECTING until grpc.health.v1.Health/Watch (or Check, polled, when Watch is
 * UNIMPLEMENTED) answers: SERVING -> READY; NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN or a failed call
 * -> TRANSIENT_FAILURE with the connection kept and watched (no backoff, no reconnect); the next
 *     SERVING -> READY.  UNIMPLEMENTED on both methods counts as healthy.
 */
#ifndef RSV_SUBCHANNEL_H
#define RSV_SUBCHANNEL_H

#include <stdint.h>
#include "config.h"
#include "dns.h"
#include "loop.h"
#include "state.h"

typedef struct rsv_subchannel rsv_subchannel;

typedef void (*rsv_subchannel_state_cb)(rsv_subchannel *sc, rsv_state old_state,
                                        rsv_state new_state, void *arg);

/* Figures for introspection; read with rsv_subchannel_stats_get.  A
 * connection adds its own to its subchannel's (connection.h). */
typedef struct rsv_subchannel_stats {
    uint64_t state_since_ms; /* loop time of the last transition */
    uint64_t connect_attempts;
    uint64_t reconnects; /* transitions into CONNECTING after the first */
    uint64_t transitions;
    uint64_t goaways;
    uint64_t pings_sent, pings_acked;
    int64_t rtt_last_us, rtt_smoothed_us; /* -1 until a PING was acked */
    uint64_t bytes_in, bytes_out;
    char last_error[128]; /* "" if none */
    /* Health checking (health_check.grpc_service set, protocols h2c/h2):
     * "" (off, or not known yet on this connection), "SERVING",
     * "NOT_SERVING", "SERVICE_UNKNOWN", "UNKNOWN" (the call failed or
     * answered UNKNOWN), "UNIMPLEMENTED" (neither Watch nor Check:
     * treated as healthy).  READY needs SERVING or UNIMPLEMENTED. */
    char health[16];
    uint64_t health_calls; /* Watch/Check calls started */
} rsv_subchannel_stats;

/* Creates an IDLE subchannel to host:port.  `opts` is copied.  A host
 * name is resolved through `dns` (borrowed: it must outlive the
 * subchannel; NULL: only numeric hosts connect) at each connection attempt,
 * and every address is tried (dial.h); numeric hosts skip DNS.  NULL on
 * allocation failure. */
rsv_subchannel *rsv_subchannel_new(rsv_loop *loop, rsv_dns *dns, const char *host, uint16_t port,
                                   const rsv_service_options *opts, rsv_subchannel_state_cb cb,
                                   void *arg);
/* New options (a reload).  `opts` is copied; they take effect when the
 * subchannel next opens a connection (reconnect, backoff retry, max-age
 * replacement): the connection open now keeps the options it began with
 * (health checking on or off, keepalive time, max age).  0 or
 * RESOLVER_ERR_NOMEM (the old options stay). */
int rsv_subchannel_set_options(rsv_subchannel *sc, const rsv_service_options *opts);
/* IDLE -> CONNECTING (no-op in any other state). */
void rsv_subchannel_connect(rsv_subchannel *sc);
/* Closes the connection (GOAWAY if HTTP/2 is up), reports SHUTDOWN, and
 * stops every timer.  The object stays valid until rsv_subchannel_del. */
void rsv_subchannel_shutdown(rsv_subchannel *sc);
/* Frees (closing first if needed, without calling the callback).  NULL ok. */
void rsv_subchannel_del(rsv_subchannel *sc);

rsv_state rsv_subchannel_state(const rsv_subchannel *sc);
const rsv_subchannel_stats *rsv_subchannel_stats_get(const rsv_subchannel *sc);
/* Why the last transition happened ("keepalive ping timeout", "connect:
 * Connection refused", "GOAWAY ... from server", "health: NOT_SERVING",
 * "connected"...): valid inside the state callback and until the next
 * transition.  The subchannel logs no transition itself; its host does. */
const char *rsv_subchannel_state_cause(const rsv_subchannel *sc);

/* Sends a PING now unless one is in flight (used after a failed call);
 * no ACK within keepalive_timeout_ms closes the connection. */
void rsv_subchannel_probe(rsv_subchannel *sc);

#endif
