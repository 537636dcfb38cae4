/*
 * subchannel.c - one connection to one instance (see subchannel.h): the
 * state machine, reconnects with backoff, options, stats.  Reaching the
 * instance is connector.h's, the HTTP/2 session connection.h's, health
 * checking health.h's.
 *
 * Shape:
 *  - A subchannel owns at most two connections: `active`, the one its
 *    state describes, and `pending`, a replacement opened when the active
 *    one reaches max_connection_age; the old one is retired only once the
 *    replacement is READY, so the state never leaves READY for that.  Each
 *    connection's health checker (health checking on) is its data pointer.
 *  - A state callback may delete the subchannel or shut it down (rule 2 of
 *    subchannel.h), which frees its connections.  So set_state reports
 *    through a flag on its own stack whether the subchannel survived, and
 *    the connections and health checkers guard their own calls the same way
 *    (connection.h rule 2, health.h rule 2).
 *  - A failure noticed inside a call the host made (probe) is reported from
 *    a 0 ms timer, so a host never sees its own callback re-entered from a
 *    call it made; failures noticed in loop callbacks are reported at once.
 *
 * Backoff follows gRPC's rules (doc/design.md, Backoff): each attempt gets a
 * deadline now + backoff (jittered, growing), its connect timeout is
 * max(that, connect_timeout_ms), and after a failure the next attempt waits
 * until that deadline.  The backoff resets when the server's SETTINGS arrive
 * (protocol tcp: when the TCP connect completes).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/ssl.h>
#include "connection.h"
#include "health.h"
#include "log.h"
#include "random.h"
#include "subchannel.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 20000 /* gRPC MIN_CONNECT_TIMEOUT */
#define KEEPALIVE_TIME_MAX_MS (24ull * 3600 * 1000)
/* A connection must have been READY this long for a clean end (EOF, or a
 * GOAWAY that left no stream of ours unprocessed) to earn an immediate reconnect; faster churn
 * counts as a failure, so a peer that accepts and hangs up at once gets backoff, not a hot loop. */
#define FREE_RECONNECT_MIN_READY_MS 100

struct rsv_subchannel {
    rsv_loop *loop;
    rsv_dns *dns; /* NULL: numeric hosts only */
    char *host;   /* without IPv6 brackets */
    char *name;   /* "host:port" or "[v6]:port", for logs */
    uint16_t port;
    rsv_service_options opts;       /* what the connections opened now use */
    rsv_service_options *next_opts; /* a reload's, taken when the next one opens */
    rsv_subchannel_state_cb cb;
    void *arg;
    rsv_state state;
    char state_cause[128]; /* why the last transition happened, for the service's log */
    int connected_before;  /* for stats.reconnects */
    rsv_subchannel_stats stats;
    rsv_backoff backoff;
    uint64_t attempt_deadline_ms; /* gRPC's current_deadline */
    uint64_t keepalive_time_ms;   /* doubled on GOAWAY too_many_pings */
    rsv_connection *active, *pending;
    rsv_timer *retry_timer;
    int *deleted_flag; /* set while the state callback runs */
    SSL_CTX *ssl_ctx;  /* protocol h2: created at the first TLS connect */
    uint8_t *hc_req;   /* the health request: gRPC prefix + HealthCheckRequest; NULL: off */
    size_t hc_req_len;
    rsv_health_status health;
};

static void take_next_options(rsv_subchannel *sc);

static uint64_t connect_timeout_ms(const rsv_subchannel *sc)
{
    return sc->opts.connect_timeout_ms ? sc->opts.connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
}

/* ---- state ---- */

/* Records a transition and calls the state callback.  Returns 0 if the
 * callback deleted the subchannel: the caller must then return without
 * touching it or anything it owned.  Otherwise the callback may still have
 * shut it down, so callers make this the last step or look things up
 * again. */
static int set_state(rsv_subchannel *sc, rsv_state to, const char *cause)
{
    rsv_state from = sc->state;
    if (from == to)
        return 1;
    sc->state = to;
    sc->stats.state_since_ms = rsv_loop_now(sc->loop);
    sc->stats.transitions++;
    if (to == RSV_STATE_CONNECTING) {
        if (sc->connected_before)
            sc->stats.reconnects++;
        sc->connected_before = 1;
    }
    /* The service logs transitions (it knows the service's name). */
    snprintf(sc->state_cause, sizeof(sc->state_cause), "%s", cause);
    if (!sc->cb)
        return 1;
    int deleted = 0;
    int *outer = sc->deleted_flag; /* a callback may nest another transition */
    sc->deleted_flag = &deleted;
    sc->cb(sc, from, to, sc->arg);
    if (deleted) {
        if (outer)
            *outer = 1;
        return 0;
    }
    sc->deleted_flag = outer;
    return 1;
}

/* ---- health ---- */

static void set_health(rsv_subchannel *sc, rsv_health_status h)
{
    if (sc->health == h)
        return;
    /* NONE is only "forgotten with the connection": not worth a line.
     * The state change a health answer makes is the service's to log. */
    if (h != RSV_HEALTH_NONE)
        LOG_DEBUG("subchannel %s: health %s -> %s", sc->name,
                  sc->health == RSV_HEALTH_NONE ? "(none)" : rsv_health_name(sc->health),
                  rsv_health_name(h));
    sc->health = h;
    snprintf(sc->stats.health, sizeof(sc->stats.health), "%s", rsv_health_name(h));
}

/* A health answer (or a failed call): READY when healthy, else
 * TRANSIENT_FAILURE with the connection kept (no backoff: the server
 * answered, it is the service that is not well). */
static void on_health(rsv_connection *c, rsv_health_status st, const char *why, void *arg)
{
    rsv_subchannel *sc = arg;
    set_health(sc, st);
    if (c != sc->active || !rsv_connection_is_ready(c))
        return;
    if (st == RSV_HEALTH_SERVING || st == RSV_HEALTH_UNIMPLEMENTED) {
        set_state(sc, RSV_STATE_READY, why);
    } else {
        snprintf(sc->stats.last_error, sizeof(sc->stats.last_error), "%s", why);
        set_state(sc, RSV_STATE_TRANSIENT_FAILURE, why);
    }
}

/* ---- connections ---- */

static void conn_del(rsv_connection *c, int goaway)
{
    if (!c)
        return;
    rsv_health *h = rsv_connection_data(c);
    rsv_connection_del(c, goaway); /* first: it detaches the health call (connection.h rule 5) */
    rsv_health_del(h);
}

/* Detaches c from the subchannel and closes it. */
static void conn_release(rsv_subchannel *sc, rsv_connection *c, int goaway)
{
    if (!c)
        return;
    if (sc->active == c)
        sc->active = NULL;
    if (sc->pending == c)
        sc->pending = NULL;
    conn_del(c, goaway);
}

static void on_conn_ready(rsv_connection *c, void *arg);
static void on_conn_closed(rsv_connection *c, const rsv_connection_end *end, void *arg);
static void on_conn_aged(rsv_connection *c, void *arg);
static const rsv_connection_callbacks conn_callbacks = {on_conn_ready, on_conn_closed,
                                                        on_conn_aged};

/* Starts a connection.  Never reports anything itself (connection.h rule
 * 4), so callers may announce CONNECTING first.  NULL only when out of
 * memory. */
static rsv_connection *conn_start(rsv_subchannel *sc, uint64_t timeout_ms)
{
    rsv_connection_config cfg = {
        .host = sc->host,
        .port = sc->port,
        .dns = sc->dns,
        .authority = sc->name,
        .opts = &sc->opts,
        .keepalive_time_ms = sc->keepalive_time_ms,
        .connect_timeout_ms = timeout_ms,
        .tls_ctx = &sc->ssl_ctx,
        .stats = &sc->stats,
        .cbs = &conn_callbacks,
        .arg = sc,
    };
    rsv_connection *c = rsv_connection_new(sc->loop, &cfg);
    if (!c)
        return NULL;
    if (sc->hc_req) {
        rsv_health *h = rsv_health_new(sc->loop, c, sc->hc_req, sc->hc_req_len, &sc->opts,
                                       &sc->stats.health_calls, on_health, sc);
        if (!h) {
            rsv_connection_del(c, 0);
            return NULL;
        }
        rsv_connection_set_data(c, h);
    }
    sc->stats.connect_attempts++;
    if (sc->opts.protocol == RSV_PROTOCOL_H2)
        LOG_DEBUG("subchannel %s: TLS connect (ALPN h2, system CAs)", sc->name);
    return c;
}

/* The active connection is old: open its replacement.  Nothing is reported;
 * on_conn_ready swaps them once the new one is READY. */
static void on_conn_aged(rsv_connection *c, void *arg)
{
    rsv_subchannel *sc = arg;
    /* The connection, not the state: with health checking a READY
     * connection may be TRANSIENT_FAILURE (NOT_SERVING) or still CONNECTING
     * (no answer yet); it ages all the same, its replacement is
     * health-checked before it takes over. */
    if (c != sc->active || sc->pending || !rsv_connection_is_ready(c))
        return;
    LOG_DEBUG("subchannel %s: max connection age reached, opening a replacement", sc->name);
    take_next_options(sc);
    sc->pending = conn_start(sc, connect_timeout_ms(sc));
    if (!sc->pending)
        rsv_connection_age_again(c, 1000); /* out of memory: try again later */
}

/* ---- the state machine's moves ---- */

/* Opens the active connection for a new attempt.  Does not notify. */
static void start_attempt(rsv_subchannel *sc)
{
    take_next_options(sc);
    uint64_t now = rsv_loop_now(sc->loop);
    uint64_t backoff = rsv_backoff_next(&sc->backoff, rsv_random01());
    uint64_t timeout = connect_timeout_ms(sc);
    sc->attempt_deadline_ms = now + backoff;
    if (backoff > timeout)
        timeout = backoff; /* gRPC: TryConnect(max(current_deadline, now + MIN_CONNECT_TIMEOUT)) */
    sc->active = conn_start(sc, timeout);
    if (!sc->active)
        rsv_timer_start(sc->retry_timer, 0); /* retry_cb reports the failure */
}

static void transient_failure(rsv_subchannel *sc, const char *cause)
{
    uint64_t now = rsv_loop_now(sc->loop);
    conn_release(sc, sc->pending, 1);
    set_health(sc, RSV_HEALTH_NONE); /* the connection it described is gone */
    snprintf(sc->stats.last_error, sizeof(sc->stats.last_error), "%s", cause);
    /* gRPC: SleepUntil(current_deadline) */
    rsv_timer_start(sc->retry_timer,
                    sc->attempt_deadline_ms > now ? sc->attempt_deadline_ms - now : 0);
    set_state(sc, RSV_STATE_TRANSIENT_FAILURE, cause);
}

/* A READY connection ended cleanly: CONNECTING at once, no backoff, not a
 * failure (the server drained, aged out, or closed an idle connection). */
static void reconnect_now(rsv_subchannel *sc, const char *cause)
{
    set_health(sc, RSV_HEALTH_NONE);
    if (sc->pending) {
        /* A max-age replacement is already on its way: it is the attempt. */
        uint64_t backoff = rsv_backoff_next(&sc->backoff, rsv_random01());
        sc->attempt_deadline_ms = rsv_loop_now(sc->loop) + backoff;
        sc->active = sc->pending;
        sc->pending = NULL;
    } else {
        start_attempt(sc);
    }
    set_state(sc, RSV_STATE_CONNECTING, cause);
}

static void replacement_failed(rsv_subchannel *sc, const char *cause)
{
    conn_release(sc, sc->pending, 0);
    LOG_DEBUG("subchannel %s: replacement connection failed (%s), keeping the old one", sc->name,
              cause);
    if (sc->active)
        rsv_connection_age_again(sc->active, rsv_backoff_next(&sc->backoff, rsv_random01()));
}

/* The connection `c` is over; it is freed here and the subchannel may be
 * gone when this returns. */
static void on_conn_closed(rsv_connection *c, const rsv_connection_end *end, void *arg)
{
    rsv_subchannel *sc = arg;
    if (end->too_many_pings && sc->keepalive_time_ms > 0) {
        /* The server objects to our PINGs: new connections PING half as often. */
        uint64_t ka = sc->keepalive_time_ms * 2;
        if (ka > KEEPALIVE_TIME_MAX_MS)
            ka = KEEPALIVE_TIME_MAX_MS;
        LOG_WARN("subchannel %s: server sent GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\": "
                 "keepalive_time %llu ms is below its minimum ping interval; using %llu ms "
                 "for new connections (raise keepalive_time_ms in the configuration)",
                 sc->name, (unsigned long long)sc->keepalive_time_ms, (unsigned long long)ka);
        sc->keepalive_time_ms = ka;
    }
    if (c == sc->pending) {
        replacement_failed(sc, end->cause);
        return;
    }
    int free_reconnect =
        end->clean && end->was_ready && end->ready_ms >= FREE_RECONNECT_MIN_READY_MS;
    conn_release(sc, c, 0); /* end->cause lives on the connection's caller's stack: still valid */
    if (free_reconnect)
        reconnect_now(sc, end->cause);
    else
        transient_failure(sc, end->cause);
}

/* c finished its handshake: the server's SETTINGS arrived (protocol tcp: the
 * connect completed). */
static void on_conn_ready(rsv_connection *c, void *arg)
{
    rsv_subchannel *sc = arg;
    rsv_health *h = rsv_connection_data(c);
    rsv_backoff_reset(&sc->backoff);
    if (c == sc->pending) {
        /* Max-age replacement is up: retire the old one, stay READY.  With
         * health checking the last answer stands until the new
         * connection's Watch answers. */
        rsv_connection *old = sc->active;
        sc->active = c;
        sc->pending = NULL;
        conn_del(old, 1);
        LOG_DEBUG("subchannel %s: replaced an aged connection", sc->name);
        if (h)
            (void)rsv_health_start(h); /* a failure is reported from the loop */
        return;
    }
    if (h) {
        /* The transport is up; READY waits for the first health answer. */
        set_health(sc, RSV_HEALTH_NONE);
        if (rsv_health_start(h) == 0)
            LOG_DEBUG("subchannel %s: connected; waiting for the health service", sc->name);
        return;
    }
    set_state(sc, RSV_STATE_READY, "connected");
}

static void retry_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_subchannel *sc = arg;
    if (sc->state == RSV_STATE_TRANSIENT_FAILURE) {
        start_attempt(sc);
        set_state(sc, RSV_STATE_CONNECTING, "backoff elapsed");
    } else if (sc->state == RSV_STATE_CONNECTING && !sc->active) {
        transient_failure(sc, "out of memory");
    }
}

/* ---- options from a reload ---- */

/* Called where a connection is about to open (start_attempt, a max-age
 * replacement): the options of rsv_subchannel_set_options become the
 * subchannel's.  A connection already open keeps what it began with: its
 * own copy of the health request, keepalive time, health checking on or
 * off.  Out of memory: the old options stay, and the next connection tries
 * again. */
static void take_next_options(rsv_subchannel *sc)
{
    rsv_service_options *next = sc->next_opts;
    if (!next)
        return;
    uint8_t *old_req = sc->hc_req;
    size_t old_len = sc->hc_req_len;
    sc->hc_req = NULL;
    sc->hc_req_len = 0;
    if (next->health_grpc_service && next->protocol != RSV_PROTOCOL_TCP &&
        rsv_health_encode_request(next->health_grpc_service, &sc->hc_req, &sc->hc_req_len) != 0) {
        sc->hc_req = old_req;
        sc->hc_req_len = old_len;
        return;
    }
    free(old_req);
    /* A too_many_pings doubling stands unless the configuration changed
     * the keepalive time itself. */
    if (next->keepalive_time_ms != sc->opts.keepalive_time_ms)
        sc->keepalive_time_ms = next->keepalive_time_ms;
    /* The backoff keeps its progress, within the new bounds. */
    double current = sc->backoff.current_ms;
    rsv_backoff_init(&sc->backoff, &next->backoff);
    if (current > (double)sc->backoff.cfg.max_ms)
        current = (double)sc->backoff.cfg.max_ms;
    if (current > sc->backoff.current_ms)
        sc->backoff.current_ms = current;
    LOG_DEBUG("subchannel %s: new options from a reload take effect with this connection",
              sc->name);
    rsv_service_options_clear(&sc->opts);
    sc->opts = *next;
    free(next);
    sc->next_opts = NULL;
}

int rsv_subchannel_set_options(rsv_subchannel *sc, const rsv_service_options *opts)
{
    rsv_service_options *next = malloc(sizeof(*next));
    if (!next || rsv_service_options_copy(next, opts) != 0) {
        free(next);
        return RESOLVER_ERR_NOMEM;
    }
    if (sc->next_opts) {
        rsv_service_options_clear(sc->next_opts);
        free(sc->next_opts);
    }
    sc->next_opts = next;
    return 0;
}

/* ---- public API ---- */

rsv_subchannel *rsv_subchannel_new(rsv_loop *loop, rsv_dns *dns, const char *host, uint16_t port,
                                   const rsv_service_options *opts, rsv_subchannel_state_cb cb,
                                   void *arg)
{
    if (!loop || !host || !*host || !opts)
        return NULL;
    rsv_subchannel *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return NULL;
    size_t hlen = strlen(host);
    if (hlen > 2 && host[0] == '[' && host[hlen - 1] == ']')
        sc->host = strndup(host + 1, hlen - 2); /* "[::1]" -> "::1" */
    else
        sc->host = strdup(host);
    if (!sc->host)
        goto fail_sc;
    int v6 = strchr(sc->host, ':') != NULL;
    size_t nlen = strlen(sc->host) + 10;
    sc->name = malloc(nlen);
    if (!sc->name)
        goto fail_host;
    snprintf(sc->name, nlen, v6 ? "[%s]:%u" : "%s:%u", sc->host, (unsigned)port);
    if (rsv_service_options_copy(&sc->opts, opts) != 0)
        goto fail_name;
    sc->retry_timer = rsv_timer_new(loop, retry_cb, sc);
    if (!sc->retry_timer)
        goto fail_opts;
    sc->loop = loop;
    sc->dns = dns;
    sc->port = port;
    sc->cb = cb;
    sc->arg = arg;
    sc->state = RSV_STATE_IDLE;
    sc->keepalive_time_ms = opts->keepalive_time_ms;
    if (opts->health_grpc_service) {
        if (opts->protocol == RSV_PROTOCOL_TCP)
            LOG_DEBUG("subchannel %s: health_check needs HTTP/2; protocol tcp checks the "
                      "connection only",
                      sc->name);
        else if (rsv_health_encode_request(opts->health_grpc_service, &sc->hc_req,
                                           &sc->hc_req_len) != 0)
            goto fail_timer;
    }
    rsv_backoff_init(&sc->backoff, &opts->backoff);
    sc->stats.state_since_ms = rsv_loop_now(loop);
    sc->stats.rtt_last_us = -1;
    sc->stats.rtt_smoothed_us = -1;
    return sc;

fail_timer:
    rsv_timer_del(sc->retry_timer);
fail_opts:
    rsv_service_options_clear(&sc->opts);
fail_name:
    free(sc->name);
fail_host:
    free(sc->host);
fail_sc:
    free(sc);
    return NULL;
}

void rsv_subchannel_connect(rsv_subchannel *sc)
{
    if (!sc || sc->state != RSV_STATE_IDLE)
        return;
    start_attempt(sc);
    set_state(sc, RSV_STATE_CONNECTING, "connect requested");
}

void rsv_subchannel_shutdown(rsv_subchannel *sc)
{
    if (!sc || sc->state == RSV_STATE_SHUTDOWN)
        return;
    rsv_timer_stop(sc->retry_timer);
    conn_release(sc, sc->pending, 1);
    conn_release(sc, sc->active, 1);
    set_state(sc, RSV_STATE_SHUTDOWN, "shutdown");
}

void rsv_subchannel_del(rsv_subchannel *sc)
{
    if (!sc)
        return;
    if (sc->deleted_flag)
        *sc->deleted_flag = 1; /* tells set_state, up the stack, not to touch sc */
    conn_del(sc->pending, 1);
    conn_del(sc->active, 1);
    rsv_timer_del(sc->retry_timer);
    SSL_CTX_free(sc->ssl_ctx);
    free(sc->hc_req);
    rsv_service_options_clear(&sc->opts);
    if (sc->next_opts) {
        rsv_service_options_clear(sc->next_opts);
        free(sc->next_opts);
    }
    free(sc->name);
    free(sc->host);
    free(sc);
}

rsv_state rsv_subchannel_state(const rsv_subchannel *sc)
{
    return sc->state;
}

const char *rsv_subchannel_state_cause(const rsv_subchannel *sc)
{
    return sc->state_cause;
}

const rsv_subchannel_stats *rsv_subchannel_stats_get(const rsv_subchannel *sc)
{
    return &sc->stats;
}

void rsv_subchannel_probe(rsv_subchannel *sc)
{
    if (sc && sc->active)
        rsv_connection_ping(sc->active);
}
