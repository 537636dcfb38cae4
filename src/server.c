/*
 * server.c - see server.h; the protocol is written down in doc/protocol.md.
 *
 * Each client has an input buffer (one line at most max_line long), an
 * output buffer (bounded: a client that never reads is disconnected rather
 * than growing the daemon), the tickets it owns, and optionally a watch.
 * Detached tickets (detach=1) belong to the peer's uid instead, bounded by
 * socket.max_detached_tickets; only a ticket's owner (or an admin) may
 * report it done.
 * Requests are answered strictly in order, so a pipelining client can match
 * replies to requests; a first pick of a service still being discovered
 * parks the client (not the daemon) until discovery settles: a waiting pick
 * of the engine (resolver_engine_pick_async, RESOLVER_PICK_WAIT_FRESH) that
 * the service's picker changes wake, fresh_wait_ms ends, and that counts in
 * pick_failures once, by its outcome.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "accept_backoff.h"
#include "cfgval.h"
#include "daemon_log.h"
#include "metrics_text.h"
#include "server.h"
#include "views.h"
#include "wire.h"

typedef struct client client;

struct client {
    rsv_server *server;
    client *prev, *next;
    int fd;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    int admin;
    char *in;
    size_t in_len;
    char *out;
    size_t out_len, out_cap;
    resolver_owner tickets;
    char *watch; /* service name, "*" for all, NULL: not watching */
    resolver_timer *idle_timer;
    resolver_pick_waiter *waiter; /* the parked first pick (NULL: none or not cancellable) */
    int parked;
    int closing;
    int hangup; /* last reply sent: flush, shut writing, discard input */
    int write_shut;
    unsigned interest; /* loop events asked for */
};

/* Detached tickets (PICK detach=1) outlive their connection: they belong to
 * the peer's uid, which bounds how many one user may hold and who may report
 * them done.  One entry per uid seen, kept until the server goes (the
 * engine points into it). */
typedef struct uid_tickets {
    uid_t uid;
    resolver_owner tickets;
    struct uid_tickets *next;
} uid_tickets;

struct rsv_server {
    resolver_engine *engine;
    resolver_loop *loop;
    rsv_server_limits limits;
    int fd;
    char *path;     /* the socket we bound, NULL if none */
    dev_t sock_dev; /* its identity, so that we unlink only our own */
    ino_t sock_ino;
    int lock_fd; /* flock on PATH.lock, held while we serve PATH */
    accept_backoff backoff;
    int have_backoff;
    gid_t admin_gid;
    int have_admin_gid;
    client *clients;
    size_t n_clients;
    uid_tickets *detached;
    resolver_timer *reap_timer; /* closes clients marked closing from nested code */
    int picks_stopped;
    rsv_server_reload_cb reload_cb;
    void *reload_arg;
    rsv_server_status_cb status_cb;
    void *status_arg;
    resolver_watch *watch; /* the engine's events, for WATCH clients */
    uint64_t max_detached; /* socket.max_detached_tickets, read at start and each reload */
};

void rsv_server_limits_default(rsv_server_limits *l)
{
    l->max_clients = 1024;
    l->max_line = RSV_PROTO_LINE_MAX;
    l->max_tickets_per_client = 10000;
    l->max_output = 1 << 20;
    l->idle_timeout_ms = 300000;
    l->fresh_wait_ms = 2000;
}

static void client_close(client *c);
static void client_process(client *c);

/* ---- output ---- */

static void client_flush(client *c);

static void on_client_io(resolver_loop *loop, int fd, unsigned events, void *arg);

/* The limit is on replies queued and unread when a new one comes: a client
 * that stops reading is cut off, while one reply of any size (INSTANCES of
 * a big service) still goes to a client that reads. */
static int client_over_backlog(client *c)
{
    if (c->closing)
        return 1;
    if (c->out_len < c->server->limits.max_output)
        return 0;
    static resolver_log_limit lim;
    LOG_WARN_LIMITED(&lim, "client pid %d: more than %zu bytes of replies unread; disconnecting",
                     (int)c->pid, c->server->limits.max_output);
    c->closing = 1;
    return 1;
}

static void buffer_append(client *c, const char *data, size_t len)
{
    if (c->closing)
        return;
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        char *b = realloc(c->out, cap);
        if (!b) {
            c->closing = 1;
            return;
        }
        c->out = b;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
}

static void client_append(client *c, const char *data, size_t len)
{
    if (!client_over_backlog(c))
        buffer_append(c, data, len);
}

static void reply_json(client *c, const char *kind, json_t *payload)
{
    char *text = payload ? rsv_proto_json_dumps(payload, JSON_COMPACT) : NULL;
    json_decref(payload);
    if (!text) {
        client_append(c, "ERR nomem out of memory\n", 24);
        return;
    }
    if (!client_over_backlog(c)) {
        buffer_append(c, kind, strlen(kind));
        buffer_append(c, " ", 1);
        buffer_append(c, text, strlen(text));
        buffer_append(c, "\n", 1);
    }
    free(text);
}

static void reply_ok(client *c, json_t *payload)
{
    reply_json(c, "OK", payload);
}

/* The two replies of the hot path (a pick and its done) are formatted by
 * hand: with json_pack + json_dumps and snprintf they cost more than the
 * rest of the request (jansson alone was a fifth of the daemon's time
 * under pipelined PICK/DONE). */
static char *put_str(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

static char *put_u64(char *p, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = digits[--n];
    return p;
}

#define PUT_LITERAL(p, lit) put_str((p), (lit), sizeof(lit) - 1)

static void reply_released(client *c, uint64_t ticket)
{
    char reply[64];
    char *p = PUT_LITERAL(reply, "OK {\"released\":");
    p = put_u64(p, ticket);
    p = PUT_LITERAL(p, "}\n");
    client_append(c, reply, (size_t)(p - reply));
}

static void reply_picked(client *c, const resolver_pick_result *r)
{
    /* Addresses are host:port as the registry decoder validated them:
     * nothing in them needs JSON escaping. */
    char reply[RESOLVER_ADDRESS_MAX + 64];
    char *p = PUT_LITERAL(reply, "OK {\"address\":\"");
    p = put_str(p, r->address, strnlen(r->address, RESOLVER_ADDRESS_MAX));
    p = PUT_LITERAL(p, "\",\"ticket\":");
    p = put_u64(p, r->ticket);
    p = PUT_LITERAL(p, "}\n");
    client_append(c, reply, (size_t)(p - reply));
}

static void reply_err(client *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_err(client *c, int err, const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), "ERR %s ", resolver_error_word(err));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    /* Messages may quote client input: keep the reply one line. */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    strcat(line, "\n");
    client_append(c, line, strlen(line));
}

/* ---- verbs ---- */

/* ---- the audit of admin actions ----
 *
 * Every admin action (DRAIN, UNDRAIN, RELOAD, DONE of another peer's
 * ticket), its outcome and the peer that asked (uid and pid from
 * SO_PEERCRED) get one line: info when it was done (a reload: when it
 * starts, its changes follow), warn when it was refused or failed.
 * Refusals of peers that are not admins are rate-limited (anyone who may
 * connect can send them); what admins do is not. */
static void audit(client *c, resolver_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void audit(client *c, resolver_log_level level, const char *fmt, ...)
{
    char what[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    resolver_log(level, "admin: uid %d pid %d: %s", (int)c->uid, (int)c->pid, what);
}

typedef struct {
    const char *name;
    int min_args, max_args; /* positional arguments after the verb, options included */
    int admin;
    const char *usage;
    void (*handler)(client *c, const rsv_proto_request *req);
} verb;

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || *s == '-')
        return -1;
    *out = v;
    return 0;
}

static uid_tickets *detached_owner(rsv_server *s, uid_t uid)
{
    for (uid_tickets *u = s->detached; u; u = u->next)
        if (u->uid == uid)
            return u;
    uid_tickets *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->uid = uid;
    u->next = s->detached;
    s->detached = u;
    return u;
}

/* Whose the new ticket will be, or NULL with the refusal sent. */
static resolver_owner *pick_owner(client *c, int detach)
{
    rsv_server *s = c->server;
    if (!detach) {
        if (c->tickets.count < s->limits.max_tickets_per_client)
            return &c->tickets;
        reply_err(c, RESOLVER_ERR_LIMIT,
                  "this connection holds %zu tickets (the limit); report done for some first",
                  c->tickets.count);
        return NULL;
    }
    uid_tickets *u = detached_owner(s, c->uid);
    if (!u) {
        reply_err(c, RESOLVER_ERR_NOMEM, "out of memory");
        return NULL;
    }
    uint64_t max = s->max_detached;
    if (u->tickets.count < max)
        return &u->tickets;
    reply_err(c, RESOLVER_ERR_LIMIT,
              "uid %d holds %zu detached tickets (socket.max_detached_tickets is %u); report "
              "done for some first",
              (int)c->uid, u->tickets.count, (unsigned)max);
    return NULL;
}

static void on_pick_done(void *arg, int rc, const resolver_pick_result *r, const char *why);

/* Returns 1 when the pick was answered, 0 when the client should wait. */
static int try_pick(client *c, const rsv_proto_request *req, int may_park)
{
    rsv_server *s = c->server;
    if (s->picks_stopped) {
        reply_err(c, RESOLVER_ERR_CLOSED, "resolverd is shutting down");
        return 1;
    }
    const char *key = rsv_proto_option(req, 2, "key");
    int detach = rsv_proto_option(req, 2, "detach") != NULL;
    resolver_owner *owner = pick_owner(c, detach);
    if (!owner)
        return 1;
    owner->uid = (long)c->uid;
    owner->pid = (long)c->pid;
    resolver_pick_result r;
    char why[512];
    /* A service being discovered right now: wait a little for it instead of
     * failing the very first pick (gRPC queues picks while CONNECTING). */
    resolver_pick_options opts = {key, owner, may_park ? RESOLVER_PICK_WAIT_FRESH : 0};
    int rc = resolver_engine_pick_async(s->engine, req->argv[1], &opts,
                                        may_park ? s->limits.fresh_wait_ms : 0, on_pick_done, c, &r,
                                        why, sizeof(why), &c->waiter);
    if (rc == RESOLVER_PICK_PENDING)
        return 0;
    if (rc == 0) {
        reply_picked(c, &r);
        return 1;
    }
    reply_err(c, rc, "%s", why);
    return 1;
}

static void verb_pick(client *c, const rsv_proto_request *req)
{
    if (!try_pick(c, req, 1))
        c->parked = 1; /* on_pick_done answers */
}

static int owner_is_uid(rsv_server *s, const resolver_owner *owner)
{
    for (uid_tickets *u = s->detached; u; u = u->next)
        if (&u->tickets == owner)
            return 1;
    return 0;
}

/* Ticket ids are sequential: without this any client could release (or
 * fail=1) anyone's picks.  A ticket is its connection's, a detached one
 * its uid's; admins may release any. */
static int owns(client *c, const resolver_owner *owner)
{
    if (owner == &c->tickets)
        return 1;
    for (uid_tickets *u = c->server->detached; u; u = u->next)
        if (&u->tickets == owner)
            return u->uid == c->uid;
    return 0;
}

static void verb_done(client *c, const rsv_proto_request *req)
{
    uint64_t ticket, latency = RESOLVER_LATENCY_UNKNOWN; /* none given: not observed */
    if (parse_u64(req->argv[1], &ticket) != 0) {
        reply_err(c, RESOLVER_ERR_INVALID, "ticket must be a number, got \"%s\"", req->argv[1]);
        return;
    }
    const char *lat = rsv_proto_option(req, 2, "latency_ms");
    if (lat && parse_u64(lat, &latency) != 0) {
        reply_err(c, RESOLVER_ERR_INVALID, "latency_ms must be a number, got \"%s\"", lat);
        return;
    }
    const char *fail = rsv_proto_option(req, 2, "fail");
    int failed = fail && strcmp(fail, "0") != 0;
    resolver_owner *owner;
    int rc = resolver_engine_ticket_owner(c->server->engine, ticket, &owner);
    int own = rc == 0 && owns(c, owner);
    if (rc == 0 && !own && !c->admin) {
        static resolver_log_limit lim; /* any peer may try ticket numbers */
        LOG_WARN_LIMITED(&lim, "admin: uid %d pid %d: DONE %" PRIu64 " of another %s denied",
                         (int)c->uid, (int)c->pid, ticket,
                         owner_is_uid(c->server, owner) ? "user" : "connection");
        reply_err(c, RESOLVER_ERR_DENIED,
                  "ticket %" PRIu64 " was picked by another %s; only its owner or an admin may "
                  "report it done",
                  ticket, owner_is_uid(c->server, owner) ? "user" : "connection");
        return;
    }
    if (rc == 0)
        rc = resolver_engine_done(c->server->engine, ticket, failed,
                                  latency >= RESOLVER_LATENCY_UNKNOWN && lat
                                      ? RESOLVER_LATENCY_UNKNOWN - 1
                                      : (uint32_t)latency);
    if (rc == 0 && !own)
        audit(c, RESOLVER_LOG_INFO, "DONE %" PRIu64 "%s of another %s", ticket,
              failed ? " fail=1" : "", owner_is_uid(c->server, owner) ? "user" : "connection");
    if (rc == RESOLVER_ERR_NOT_FOUND)
        reply_err(c, rc, "no outstanding ticket %" PRIu64 " (already done or timed out)", ticket);
    else
        reply_released(c, ticket);
}

static void verb_services(client *c, const rsv_proto_request *req)
{
    reply_ok(c, rsv_view_services(c->server->engine));
}

static void verb_instances(client *c, const rsv_proto_request *req)
{
    int rc;
    json_t *j = rsv_view_instances(c->server->engine, req->argv[1], &rc);
    if (rc == RESOLVER_ERR_NOMEM) {
        reply_err(c, rc, "out of memory");
        return;
    }
    if (!j) {
        reply_err(c, RESOLVER_ERR_NOT_FOUND,
                  "unknown service \"%s\" (not configured and never "
                  "picked)",
                  req->argv[1]);
        return;
    }
    reply_ok(c, j);
}

static void verb_status(client *c, const rsv_proto_request *req)
{
    json_t *j = rsv_view_status(c->server->engine);
    if (j)
        json_object_set_new(j, "clients", json_integer((json_int_t)c->server->n_clients));
    if (j && c->server->status_cb)
        c->server->status_cb(c->server->status_arg, j);
    reply_ok(c, j);
}

static void verb_metrics(client *c, const rsv_proto_request *req)
{
    char *text = rsv_metrics_text(c->server->engine);
    if (!text) {
        reply_err(c, RESOLVER_ERR_NOMEM, "out of memory");
        return;
    }
    reply_ok(c, json_pack("{s:s}", "text", text));
    free(text);
}

static void verb_watch(client *c, const rsv_proto_request *req)
{
    const char *name = req->argc > 1 ? req->argv[1] : "*";
    free(c->watch);
    c->watch = strdup(name);
    reply_ok(c, json_pack("{s:s}", "watching", name));
}

static void drain_common(client *c, const rsv_proto_request *req, int drain)
{
    const char *what = drain ? "drain" : "undrain", *svc = req->argv[1], *addr = req->argv[2];
    int rc = drain ? resolver_engine_drain(c->server->engine, svc, addr)
                   : resolver_engine_undrain(c->server->engine, svc, addr);
    if (rc == 0) {
        audit(c, RESOLVER_LOG_INFO, "%s %s %s: done", what, svc, addr);
        reply_ok(c,
                 json_pack("{s:s, s:s, s:b}", "service", svc, "address", addr, "drained", drain));
    } else if (rc == RESOLVER_ERR_INVALID) {
        audit(c, RESOLVER_LOG_WARN, "%s %s %s refused: it is not drained", what, svc, addr);
        reply_err(c, RESOLVER_ERR_NOT_FOUND,
                  "service \"%s\": instance \"%s\" is not drained (nothing to undo)", svc, addr);
    } else {
        audit(c, RESOLVER_LOG_WARN, "%s %s %s refused: no such instance", what, svc, addr);
        reply_err(c, rc, "service \"%s\" has no instance \"%s\"", svc, addr);
    }
}

static void verb_drain(client *c, const rsv_proto_request *req)
{
    drain_common(c, req, 1);
}

static void verb_undrain(client *c, const rsv_proto_request *req)
{
    drain_common(c, req, 0);
}

/* Unknown option names are refused: a misspelt ttl_ms would otherwise
 * register with the default TTL. */
static int register_options_known(client *c, const rsv_proto_request *req)
{
    static const char *const known[] = {"format", "ttl_ms",   "zone",        "weight",
                                        "key",    "metadata", "health_check"};
    for (int i = 3; i < req->argc; i++) {
        const char *eq = strchr(req->argv[i], '=');
        size_t n = eq ? (size_t)(eq - req->argv[i]) : strlen(req->argv[i]);
        int ok = 0;
        for (size_t k = 0; eq && !ok && k < sizeof(known) / sizeof(known[0]); k++)
            ok = strlen(known[k]) == n && strncmp(known[k], req->argv[i], n) == 0;
        if (!ok) {
            reply_err(c, RESOLVER_ERR_INVALID,
                      "unknown option \"%.64s\" (format=, ttl_ms=, zone=, weight=, key=, "
                      "metadata=, health_check=)",
                      req->argv[i]);
            return 0;
        }
    }
    return 1;
}

/* One registration as REGISTRATIONS lists it (canonical address, defaults
 * filled in), or a bare acknowledgement. */
static json_t *registration_view(resolver_engine *e, const char *service, const char *address)
{
    resolver_registration_info *info;
    size_t n;
    json_t *found = NULL;
    if (resolver_engine_registration_list(e, service, address, &info, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(info[i].state, "LEAVING") != 0) {
                json_decref(found);
                found = rsv_view_registration(&info[i]);
            }
        resolver_registration_info_free(info, n);
    }
    return found ? found : json_pack("{s:s,s:s}", "service", service, "address", address);
}

static void verb_register(client *c, const rsv_proto_request *req)
{
    resolver_engine *e = c->server->engine;
    uint64_t ttl = 0, weight = 0;
    const char *ttl_text = rsv_proto_option(req, 3, "ttl_ms");
    const char *weight_text = rsv_proto_option(req, 3, "weight");
    if (!register_options_known(c, req))
        return;
    if ((ttl_text && parse_u64(ttl_text, &ttl) != 0) ||
        (weight_text &&
         (parse_u64(weight_text, &weight) != 0 || weight == 0 || weight > UINT32_MAX))) {
        reply_err(c, RESOLVER_ERR_INVALID, "%s: not a positive integer",
                  ttl_text && parse_u64(ttl_text, &ttl) != 0 ? "ttl_ms" : "weight");
        return;
    }
    resolver_registration reg = {req->argv[1],
                                 req->argv[2],
                                 rsv_proto_option(req, 3, "format"),
                                 ttl,
                                 (uint32_t)weight,
                                 rsv_proto_option(req, 3, "zone"),
                                 rsv_proto_option(req, 3, "metadata"),
                                 rsv_proto_option(req, 3, "key"),
                                 rsv_proto_option(req, 3, "health_check")};
    char err[256] = "";
    int rc = resolver_engine_register(e, &reg, err, sizeof(err));
    if (rc) {
        reply_err(c, rc, "%s", err);
        return;
    }
    json_t *out = registration_view(e, req->argv[1], req->argv[2]);
    char *cache = rsv_cfg_string(resolver_engine_config(e), "cache_file");
    if (out)
        json_object_set_new(out, "persisted", json_boolean(cache && *cache));
    free(cache);
    reply_ok(c, out);
}

static void verb_deregister(client *c, const rsv_proto_request *req)
{
    int rc = resolver_engine_deregister(c->server->engine, req->argv[1], req->argv[2]);
    if (rc == 0)
        reply_ok(c, json_pack("{s:s,s:s,s:s,s:I}", "service", req->argv[1], "address", req->argv[2],
                              "state", "LEAVING", "grace_ms",
                              (json_int_t)rsv_cfg_uint(resolver_engine_config(c->server->engine),
                                                       "deregister_grace_ms", 0)));
    else
        reply_err(c, rc, "service \"%s\" has no registration \"%s\"", req->argv[1], req->argv[2]);
}

static void verb_registrations(client *c, const rsv_proto_request *req)
{
    json_t *j = rsv_view_registrations(c->server->engine, NULL, NULL);
    if (!j) {
        reply_err(c, RESOLVER_ERR_NOMEM, "out of memory");
        return;
    }
    reply_ok(c, j);
}

static void verb_reload(client *c, const rsv_proto_request *req)
{
    char err[512] = "reload is not available";
    rsv_server *s = c->server;
    audit(c, RESOLVER_LOG_INFO, "reload requested");
    if (s->reload_cb && s->reload_cb(s->reload_arg, err, sizeof(err)) == 0) {
        reply_ok(c, json_pack("{s:b}", "reloaded", 1));
    } else {
        audit(c, RESOLVER_LOG_WARN, "reload failed: %s", err);
        reply_err(c, RESOLVER_ERR_CONFIG, "%s", err);
    }
}

static void verb_ping(client *c, const rsv_proto_request *req)
{
    reply_ok(c, json_pack("{s:b}", "pong", 1));
}

static const verb verbs[] = {
    {"PICK", 1, 3, 0, "PICK SERVICE [key=KEY] [detach=1]", verb_pick},
    {"DONE", 1, 3, 0, "DONE TICKET [fail=1] [latency_ms=N]", verb_done},
    {"SERVICES", 0, 0, 0, "SERVICES", verb_services},
    {"INSTANCES", 1, 1, 0, "INSTANCES SERVICE", verb_instances},
    {"STATUS", 0, 0, 0, "STATUS", verb_status},
    {"METRICS", 0, 0, 0, "METRICS", verb_metrics},
    {"WATCH", 0, 1, 0, "WATCH [SERVICE]", verb_watch},
    {"DRAIN", 2, 2, 1, "DRAIN SERVICE ADDRESS", verb_drain},
    {"UNDRAIN", 2, 2, 1, "UNDRAIN SERVICE ADDRESS", verb_undrain},
    {"RELOAD", 0, 0, 1, "RELOAD", verb_reload},
    {"REGISTER", 2, 9, 1,
     "REGISTER SERVICE ADDRESS [format=F] [ttl_ms=N] [zone=Z] [weight=W] [key=K] [metadata=JSON] "
     "[health_check=GRPC_SERVICE]",
     verb_register},
    {"DEREGISTER", 2, 2, 1, "DEREGISTER SERVICE ADDRESS", verb_deregister},
    {"REGISTRATIONS", 0, 0, 0, "REGISTRATIONS", verb_registrations},
    {"PING", 0, 0, 0, "PING", verb_ping},
};

/* ASCII only, and no locale lookup: this runs for every request. */
static int verb_is(const char *verb_name, const char *name)
{
    for (; *verb_name; verb_name++, name++) {
        char ch = *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name;
        if (ch != *verb_name)
            return 0;
    }
    return *name == '\0';
}

static const verb *find_verb(const char *name)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (verb_is(verbs[i].name, name))
            return &verbs[i];
    return NULL;
}

static void handle_line(client *c, char *line)
{
    rsv_proto_request req;
    const char *why;
    if (rsv_proto_split(line, &req, &why) != 0) {
        reply_err(c, RESOLVER_ERR_PROTOCOL, "%s", why);
        return;
    }
    const verb *v = find_verb(req.argv[0]);
    if (!v) {
        reply_err(c, RESOLVER_ERR_INVALID, "unknown verb \"%.64s\"", req.argv[0]);
        return;
    }
    if (req.argc - 1 < v->min_args || req.argc - 1 > v->max_args) {
        reply_err(c, RESOLVER_ERR_INVALID, "usage: %s", v->usage);
        return;
    }
    if (v->admin && !c->admin) {
        static resolver_log_limit lim; /* any peer may send these */
        LOG_WARN_LIMITED(&lim,
                         "admin: uid %d pid %d: %s denied (neither root, the daemon's user, nor "
                         "in socket.admin_group)",
                         (int)c->uid, (int)c->pid, v->name);
        reply_err(c, RESOLVER_ERR_DENIED,
                  "%s is an admin verb: uid %d is neither root, the "
                  "daemon's user, nor in socket.admin_group",
                  v->name, (int)c->uid);
        return;
    }
    v->handler(c, &req);
}

/* ---- parking (first pick of a service being discovered) ---- */

/* The end of a parked pick (the engine's waiting pick), on a timer of the
 * engine's loop: answered, the client reads on. */
static void on_pick_done(void *arg, int rc, const resolver_pick_result *r, const char *why)
{
    client *c = arg;
    c->waiter = NULL;
    if (rc == 0)
        reply_picked(c, r);
    else if (rc == RESOLVER_ERR_CLOSED && c->server->picks_stopped)
        reply_err(c, rc, "resolverd is shutting down");
    else
        reply_err(c, rc, "%s", why);
    c->parked = 0;
    /* The parked PICK is the first line still in the input buffer. */
    char *nl = memchr(c->in, '\n', c->in_len);
    size_t len = (size_t)(nl - c->in);
    memmove(c->in, nl + 1, c->in_len - len - 1);
    c->in_len -= len + 1;
    client_process(c);
    client_flush(c);
    if (c->closing)
        client_close(c);
}

/* ---- input ---- */

/* Handles complete lines in the input buffer until it is empty or the
 * client parks on a pick. */
static void client_process(client *c)
{
    size_t off = 0;
    while (!c->closing && !c->parked && !c->hangup) {
        char *start = c->in + off;
        char *nl = memchr(start, '\n', c->in_len - off);
        if (!nl)
            break;
        size_t len = (size_t)(nl - start);
        /* Work on a copy: splitting writes into the line, and a parked
         * pick must stay in the buffer untouched for its retry. */
        char line[RSV_PROTO_LINE_MAX + 1];
        memcpy(line, start, len);
        line[len] = '\0';
        if (len > 0 && line[len - 1] == '\r')
            line[len - 1] = '\0';
        handle_line(c, line);
        if (c->parked)
            break;
        off += len + 1;
    }
    /* One move per batch, not per line: pipelined requests arrive many to
     * a read. */
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

/* After a protocol violation the client gets its ERR line and then
 * end-of-file; what it still sends is read and dropped, because closing a
 * socket with unread input makes the kernel send a reset that can destroy
 * the ERR line before the client reads it. */
static void client_hangup(client *c)
{
    c->hangup = 1;
    c->in_len = 0;
    resolver_timer_start(c->idle_timer, 2000);
}

static void discard_input(client *c)
{
    char scratch[4096];
    ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        c->closing = 1;
}

static void client_read(client *c)
{
    if (c->hangup) {
        discard_input(c);
        return;
    }
    size_t room = c->server->limits.max_line + 1 - c->in_len;
    if (room == 0)
        return; /* parked with a full buffer; update_interest stops reading */
    ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        c->closing = 1;
        return;
    }
    if (n < 0)
        return;
    c->in_len += (size_t)n;
    resolver_timer_start(c->idle_timer, c->server->limits.idle_timeout_ms);
    if (!c->parked)
        client_process(c);
    if (!c->parked && c->in_len > c->server->limits.max_line && !memchr(c->in, '\n', c->in_len)) {
        reply_err(c, RESOLVER_ERR_PROTOCOL, "request line longer than %zu bytes; disconnecting",
                  c->server->limits.max_line);
        client_hangup(c);
    }
}

static void update_interest(client *c)
{
    unsigned events = RESOLVER_FD_READ;
    if (c->out_len > 0)
        events |= RESOLVER_FD_WRITE;
    /* A parked client's further input waits in its buffer; a full buffer
     * stops reading until the pick is answered. */
    if (c->parked && c->in_len > c->server->limits.max_line)
        events &= ~(unsigned)RESOLVER_FD_READ;
    if (events == c->interest)
        return; /* no system call when nothing changed: the common case */
    if (resolver_loop_watch(c->server->loop, c->fd, events, on_client_io, c) != 0)
        c->closing = 1;
    c->interest = events;
}

static void client_flush(client *c)
{
    while (c->out_len > 0) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            memmove(c->out, c->out + n, c->out_len - (size_t)n);
            c->out_len -= (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        c->closing = 1;
        return;
    }
    if (c->hangup && c->out_len == 0 && !c->write_shut) {
        shutdown(c->fd, SHUT_WR);
        c->write_shut = 1;
    }
    update_interest(c);
}

static void on_client_io(resolver_loop *loop, int fd, unsigned events, void *arg)
{
    client *c = arg;
    if (events & RESOLVER_FD_READ)
        client_read(c);
    if (!c->closing)
        client_flush(c);
    if (c->closing || (events & RESOLVER_FD_ERROR && !(events & RESOLVER_FD_READ)))
        client_close(c);
}

static void on_idle(resolver_loop *loop, resolver_timer *t, void *arg)
{
    client *c = arg;
    if (!c->hangup && (c->watch || c->tickets.count > 0)) {
        resolver_timer_start(t, c->server->limits.idle_timeout_ms);
        return;
    }
    LOG_DEBUG("client pid %d idle for %llu ms; closing", (int)c->pid,
              (unsigned long long)c->server->limits.idle_timeout_ms);
    client_close(c);
}

/* ---- clients ---- */

static void client_close(client *c)
{
    rsv_server *s = c->server;
    resolver_loop_unwatch(s->loop, c->fd);
    close(c->fd);
    /* Tickets of a connection that goes away are released: the C API's
     * promise (CLI picks are taken with detach=1 and belong to the uid). */
    resolver_pick_waiter_free(c->waiter); /* before its owner's tickets go */
    resolver_engine_release_owner(s->engine, &c->tickets);
    resolver_timer_free(c->idle_timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_clients--;
    free(c->watch);
    free(c->in);
    free(c->out);
    free(c);
}

/* The peer's supplementary groups as they were when it connected
 * (SO_PEERGROUPS, Linux 4.13), else from /proc/PID/status ("Groups:").
 * Returns how many were stored in groups[0..max), -1 if unknown. */
static int peer_groups(int fd, pid_t pid, gid_t *groups, int max)
{
    socklen_t len = (socklen_t)(max * (int)sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
        return (int)(len / sizeof(gid_t));
    if (errno == ERANGE)
        return -1; /* more groups than we look at: not worth a guess */
    char path[64], line[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = pid > 0 ? fopen(path, "re") : NULL;
    int n = -1;
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Groups:", 7) != 0)
            continue;
        n = 0;
        char *p = line + 7, *end;
        for (unsigned long g; n < max && (g = strtoul(p, &end, 10), end != p); p = end)
            groups[n++] = (gid_t)g;
        break;
    }
    if (f)
        fclose(f);
    return n;
}

/* Root, the daemon's own user, and members of socket.admin_group by the
 * peer's own credentials: no NSS lookup here (this runs on every accept,
 * on the loop), and no guess from /etc/group about what groups the peer
 * process really has. */
static int peer_is_admin(rsv_server *s, int fd, const struct ucred *cred)
{
    if (cred->uid == 0 || cred->uid == geteuid())
        return 1;
    if (!s->have_admin_gid)
        return 0;
    if (cred->gid == s->admin_gid)
        return 1;
    gid_t groups[256];
    int n = peer_groups(fd, cred->pid, groups, 256);
    for (int i = 0; i < n; i++)
        if (groups[i] == s->admin_gid)
            return 1;
    return 0;
}

static void on_accept(resolver_loop *loop, int fd, unsigned events, void *arg)
{
    rsv_server *s = arg;
    for (int burst = 0; burst < 64; burst++) {
        int cfd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            accept_backoff_failed(&s->backoff, errno);
            return;
        }
        if (s->n_clients >= s->limits.max_clients) {
            static const char msg[] = "ERR limit too many clients; try again later\n";
            ssize_t rc = send(cfd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)rc;
            close(cfd);
            static resolver_log_limit lim; /* one per connection attempt */
            LOG_WARN_LIMITED(&lim, "refused a client: %zu clients connected (the limit)",
                             s->n_clients);
            continue;
        }
        client *c = calloc(1, sizeof(*c));
        if (c)
            c->in = malloc(s->limits.max_line + 1);
        if (!c || !c->in) {
            free(c);
            close(cfd);
            continue;
        }
        c->server = s;
        c->fd = cfd;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
            c->uid = cred.uid;
            c->gid = cred.gid;
            c->pid = cred.pid;
            c->admin = peer_is_admin(s, cfd, &cred);
        } else {
            c->uid = (uid_t)-1;
        }
        c->idle_timer = resolver_timer_new(loop, on_idle, c);
        c->next = s->clients;
        if (s->clients)
            s->clients->prev = c;
        s->clients = c;
        s->n_clients++;
        if (!c->idle_timer ||
            resolver_loop_watch(loop, cfd, RESOLVER_FD_READ, on_client_io, c) != 0) {
            client_close(c);
            continue;
        }
        c->interest = RESOLVER_FD_READ;
        resolver_timer_start(c->idle_timer, s->limits.idle_timeout_ms);
    }
}

/* ---- watch fan-out ---- */

/* The protocol's names of the engine's instance events. */
static const char *event_name(resolver_event_type type)
{
    switch (type) {
    case RESOLVER_EVENT_INSTANCE_ADDED:
        return "added";
    case RESOLVER_EVENT_INSTANCE_REMOVED:
        return "removed";
    case RESOLVER_EVENT_INSTANCE_STATE:
        return "state";
    case RESOLVER_EVENT_INSTANCE_DRAINED:
        return "closed";
    case RESOLVER_EVENT_SERVICE_SYNCED:
        break;
    }
    return NULL;
}

static void on_engine_change(void *arg, const resolver_event *e)
{
    const char *service = e->service, *event = event_name(e->type);
    if (!event)
        return; /* not a WATCH event (yet) */
    rsv_server *s = arg;
    json_t *ev = NULL;
    for (client *c = s->clients, *next; c; c = next) {
        next = c->next;
        if (!c->watch || (strcmp(c->watch, "*") != 0 && strcmp(c->watch, service) != 0))
            continue;
        if (!ev)
            ev = json_pack("{s:s, s:s, s:s, s:s, s:I}", "service", service, "event", event,
                           "address", e->address, "state", resolver_state_name(e->state),
                           "outstanding", (json_int_t)e->outstanding);
        if (!ev)
            return;
        json_incref(ev);
        reply_json(c, "EVENT", ev);
        client_flush(c);
        /* Closing here could re-enter the engine (its tickets are released)
         * while it is telling us about a change: let the reaper do it. */
        if (c->closing)
            resolver_timer_start(s->reap_timer, 0);
    }
    json_decref(ev);
}

static void on_reap(resolver_loop *loop, resolver_timer *t, void *arg)
{
    rsv_server *s = arg;
    for (client *c = s->clients, *next; c; c = next) {
        next = c->next;
        if (c->closing)
            client_close(c);
    }
}

/* ---- socket ---- */

/* The path is ours only while we hold an exclusive flock on PATH.lock: two
 * daemons started at the same moment cannot both get past this, whatever
 * the order of their probes, unlinks and binds.  The lock file stays (an
 * unlinked lock file could be locked by one daemon while another creates
 * and locks a new one at the same path). */
static int lock_socket_path(rsv_server *s, const char *path, char *err, size_t errlen)
{
    size_t len = strlen(path);
    char *lock_path = malloc(len + sizeof(".lock"));
    if (!lock_path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(lock_path, path, len);
    memcpy(lock_path + len, ".lock", sizeof(".lock"));
    s->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->lock_fd < 0) {
        snprintf(err, errlen, "cannot open the lock file %s: %s", lock_path, strerror(errno));
        free(lock_path);
        return -1;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK)
            snprintf(err, errlen,
                     "%s: another resolverd holds %s and serves this socket; not starting", path,
                     lock_path);
        else
            snprintf(err, errlen, "cannot lock %s: %s", lock_path, strerror(e));
        free(lock_path);
        return -1;
    }
    free(lock_path);
    return 0;
}

/* With the lock held: clears the way for bind.  A socket file left by a
 * daemon that died is removed; one that answers belongs to a daemon that
 * does not take the lock (an older version) and is not ours to take; any
 * other kind of file is not ours to delete. */
static int clear_socket_path(const struct sockaddr_un *addr, char *err, size_t errlen)
{
    const char *path = addr->sun_path;
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen,
                 "%s exists and is not a socket; refusing to replace it (remove it or choose "
                 "another socket.path)",
                 path);
        return -1;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (const struct sockaddr *)addr, sizeof(*addr)) == 0) {
        close(probe);
        snprintf(err, errlen, "%s: another resolverd is already serving this socket", path);
        return -1;
    }
    if (probe >= 0)
        close(probe);
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "cannot remove the stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int bind_path(rsv_server *s, const char *path, unsigned mode, const char *group, char *err,
                     size_t errlen)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        snprintf(err, errlen, "socket.path \"%s\" is longer than %zu bytes", path,
                 sizeof(addr.sun_path) - 1);
        return -1;
    }
    strcpy(addr.sun_path, path);
    if (lock_socket_path(s, path, err, errlen) != 0 || clear_socket_path(&addr, err, errlen) != 0)
        return -1;
    s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    mode_t old = umask(0177);
    int rc = bind(s->fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (rc != 0 || listen(s->fd, 512) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        return -1;
    }
    /* What we created, so that exiting removes this file and no other. */
    struct stat st;
    if (stat(path, &st) == 0) {
        s->sock_dev = st.st_dev;
        s->sock_ino = st.st_ino;
        s->path = strdup(path);
    }
    if (chmod(path, (mode_t)mode) != 0) {
        snprintf(err, errlen, "chmod %s: %s", path, strerror(errno));
        return -1;
    }
    if (group && *group) {
        struct group *g = getgrnam(group);
        if (!g || chown(path, (uid_t)-1, g->gr_gid) != 0) {
            snprintf(err, errlen, "socket.group \"%s\": %s", group,
                     g ? strerror(errno) : "no such group");
            return -1;
        }
    }
    return 0;
}

static int bind_socket(rsv_server *s, const resolver_config *cfg, char *err, size_t errlen)
{
    char *path = rsv_cfg_string(cfg, "socket.path"), *group = rsv_cfg_string(cfg, "socket.group");
    int rc = -1;
    if (!path || !group)
        snprintf(err, errlen, "out of memory");
    else
        rc = bind_path(s, path, (unsigned)rsv_cfg_uint(cfg, "socket.mode", 0660), group, err,
                       errlen);
    free(path);
    free(group);
    return rc;
}

/* Unlinks the socket file only if it is still the one we bound. */
static void unlink_own_socket(rsv_server *s)
{
    struct stat st;
    if (!s->path || lstat(s->path, &st) != 0)
        return;
    if (S_ISSOCK(st.st_mode) && st.st_dev == s->sock_dev && st.st_ino == s->sock_ino)
        unlink(s->path);
    else
        LOG_WARN("%s is no longer the socket this daemon created; leaving it", s->path);
}

/* socket.admin_group to a gid, once per start or reload (an NSS lookup
 * may block: not on every accept). */
static int resolve_admin_group(rsv_server *s, const resolver_config *cfg, char *err, size_t errlen)
{
    char *group = rsv_cfg_string(cfg, "socket.admin_group");
    if (!group) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    if (!*group) {
        s->have_admin_gid = 0;
    } else {
        struct group *g = getgrnam(group);
        if (!g) {
            snprintf(err, errlen, "socket.admin_group \"%s\": no such group", group);
            rc = -1;
        } else {
            s->admin_gid = g->gr_gid;
            s->have_admin_gid = 1;
        }
    }
    free(group);
    return rc;
}

int rsv_server_reconfigure(rsv_server *s, const resolver_config *cfg, char *err, size_t errlen)
{
    return resolve_admin_group(s, cfg, err, errlen);
}

void rsv_server_config_applied(rsv_server *s)
{
    s->max_detached = rsv_cfg_uint(resolver_engine_config(s->engine), "socket.max_detached_tickets",
                                   s->max_detached);
}

rsv_server *rsv_server_new(resolver_engine *engine, const resolver_config *cfg,
                           const rsv_server_limits *limits, char *err, size_t errlen)
{
    rsv_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->engine = engine;
    s->loop = resolver_engine_loop(engine);
    s->max_detached = rsv_cfg_uint(cfg, "socket.max_detached_tickets", 0);
    s->fd = -1;
    s->lock_fd = -1;
    if (limits)
        s->limits = *limits;
    else
        rsv_server_limits_default(&s->limits);
    if (resolve_admin_group(s, cfg, err, errlen) != 0)
        goto fail;
    s->reap_timer = resolver_timer_new(s->loop, on_reap, s);
    if (!s->reap_timer) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (bind_socket(s, cfg, err, errlen) != 0)
        goto fail;
    if (accept_backoff_init(&s->backoff, engine, RSV_LISTENER_SOCKET, s->fd, on_accept, s) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->have_backoff = 1;
    if (resolver_loop_watch(s->loop, s->fd, RESOLVER_FD_READ, on_accept, s) != 0) {
        snprintf(err, errlen, "cannot watch the listening socket");
        goto fail;
    }
    if (resolver_engine_watch(engine, NULL, on_engine_change, s, &s->watch) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return s;
fail:
    rsv_server_del(s);
    return NULL;
}

void rsv_server_del(rsv_server *s)
{
    if (!s)
        return;
    while (s->clients)
        client_close(s->clients);
    while (s->detached) {
        uid_tickets *u = s->detached;
        s->detached = u->next;
        resolver_engine_release_owner(s->engine, &u->tickets);
        free(u);
    }
    resolver_timer_free(s->reap_timer);
    if (s->have_backoff)
        accept_backoff_clear(&s->backoff);
    if (s->fd >= 0) {
        resolver_loop_unwatch(s->loop, s->fd);
        close(s->fd);
    }
    unlink_own_socket(s);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* after the unlink: the next daemon may take the path now */
    resolver_watch_free(s->watch);
    free(s->path);
    free(s);
}

void rsv_server_set_reload(rsv_server *s, rsv_server_reload_cb cb, void *arg)
{
    s->reload_cb = cb;
    s->reload_arg = arg;
}

void rsv_server_set_status(rsv_server *s, rsv_server_status_cb cb, void *arg)
{
    s->status_cb = cb;
    s->status_arg = arg;
}

void rsv_server_stop_picks(rsv_server *s)
{
    s->picks_stopped = 1;
}
