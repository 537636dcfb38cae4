/*
 * registrar.c - local instances published in etcd under a lease (see
 * registrar.h for the rules).
 *
 * Each registration runs one chain of requests at a time:
 *   GRANT -> PUT -> [REVOKE_OLD] -> [DELETE_STALE] -> wait TTL/3 ->
 *   KEEPALIVE -> CHECK (range of the key) -> wait TTL/3 -> KEEPALIVE ...
 * and, when leaving, DELETE -> REVOKE -> grace -> freed.  A failed request
 * is retried with backoff; the lease is given up (and a new one granted)
 * when etcd says it is gone, when etcd has not answered for longer than the
 * TTL, or when the answers come from another cluster.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "backoff.h"
#include "etcdproto.h"
#include "log.h"
#include "registrar.h"
#include "registry.h"
#include "subchannel.h"

#define RETRY_MIN_MS 100
/* Capped low: once etcd answers again, the key must be back within a second. */
#define REGISTRAR_RETRY_MAX_MS 500
static const rsv_backoff_config retry_backoff = {RETRY_MIN_MS, 2.0, 0.0, REGISTRAR_RETRY_MAX_MS};
#define BODY_MAX (64 * 1024)

typedef enum {
    OP_NONE,
    OP_GRANT,
    OP_PUT,
    OP_REVOKE_OLD,
    OP_DELETE_STALE,
    OP_KEEPALIVE,
    OP_CHECK,
    OP_DELETE,
    OP_REVOKE,
    OP_DELETE_UNHEALTHY
} reg_op;

typedef enum { ST_PENDING, ST_REGISTERED, ST_UNHEALTHY, ST_LEAVING } reg_state;

typedef struct reg reg;
struct reg {
    reg *next;
    rsv_registrar *owner;
    rsv_registration_config spec;
    char *prefix;
    int from_config;
    reg_state state;
    int64_t lease, old_lease; /* 0: none */
    int64_t lease_ttl_s;
    uint64_t lease_deadline_ms; /* when the lease runs out by our reckoning */
    uint64_t cluster_id;        /* of the answers the lease was granted by */
    char *key, *value;
    char *stale_key; /* a key of ours that an update or a new lease replaced */
    reg_op op;
    rsv_etcd_request *req;
    char *body;
    size_t body_len;
    int body_overflow;
    rsv_timer *timer;    /* next step, retry, or end of the grace */
    rsv_timer *deadline; /* of the request in flight */
    rsv_backoff backoff;
    uint64_t registered_count; /* puts that succeeded */
    int leave_done;            /* delete and revoke are over: in the grace */
    /* Health gating (spec.health_check set): a subchannel to the instance
     * with gRPC health checking; the key exists only while it is READY. */
    rsv_subchannel *health;
    int healthy; /* 1 without health checking */
};

struct rsv_registrar {
    rsv_loop *loop;
    rsv_etcd *etcd;
    rsv_dns *dns;
    uint64_t grace_ms;
    int closed;
    reg *head;
    rsv_log_limit lim_fail, lim_lost;
};

/* ---- rendering: keys and values as each framework writes them ---- */

static char *dump(json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    return s;
}

/* The metadata object (stored as sorted compact text), a new reference. */
static json_t *metadata_json(const rsv_registration_config *spec)
{
    if (spec->metadata && *spec->metadata) {
        json_t *m = json_loads(spec->metadata, 0, NULL);
        if (m)
            return m;
    }
    return json_object();
}

static char *render_value(const rsv_registration_config *s)
{
    const char *addr = s->address;
    json_t *meta = metadata_json(s);
    switch (s->format) {
    case RSV_FORMAT_ETCD_NAMING:
        /* grpc-go's endpoints.Update: Metadata is null when unset. */
        if (json_object_size(meta) == 0) {
            json_decref(meta);
            meta = json_null();
        }
        return dump(json_pack("{s:i,s:s,s:o}", "Op", 0, "Addr", addr, "Metadata", meta));
    case RSV_FORMAT_KRATOS: {
        /* Kratos keeps the weight as a string in its metadata. */
        char w[16], url[320];
        snprintf(w, sizeof(w), "%" PRIu32, s->weight);
        if (s->weight != 1 && meta)
            json_object_set_new(meta, "weight", json_string(w));
        snprintf(url, sizeof(url), "grpc://%s", addr);
        return dump(json_pack("{s:s,s:s,s:s,s:o,s:[s]}", "id", addr, "name", s->service, "version",
                              "", "metadata", meta, "endpoints", url));
    }
    case RSV_FORMAT_KITEX:
        return dump(json_pack("{s:s,s:s,s:I,s:o}", "network", "tcp", "address", addr, "weight",
                              (json_int_t)s->weight, "tags", meta));
    case RSV_FORMAT_NATIVE: {
        json_t *v = json_pack("{s:s,s:I}", "address", addr, "weight", (json_int_t)s->weight);
        if (v && s->zone && *s->zone)
            json_object_set_new(v, "zone", json_string(s->zone));
        if (v && json_object_size(meta))
            json_object_set(v, "metadata", meta);
        json_decref(meta);
        return dump(v);
    }
    default: /* go-zero: the bare address */
        json_decref(meta);
        return strdup(addr);
    }
}

static char *concat3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb);
        memcpy(s + la + lb, c, lc + 1);
    }
    return s;
}

/* top + service + "/" + leaf */
static char *key_under(const char *top, const char *service, const char *leaf)
{
    char *dir = concat3(top, service, "/");
    char *k = dir ? concat3(dir, leaf, "") : NULL;
    free(dir);
    return k;
}

static char *render_key(const rsv_registration_config *s, const char *prefix, int64_t lease)
{
    char id[32];
    if (s->key && *s->key)
        return strdup(s->key);
    switch (s->format) {
    case RSV_FORMAT_GOZERO:
        /* go-zero's publisher: the key is the prefix and the lease id. */
        snprintf(id, sizeof(id), "%" PRId64, lease);
        return concat3(prefix, "", id);
    case RSV_FORMAT_KRATOS: /* Kratos' namespace, its name, its instance id */
        return key_under("/microservices/", s->service, s->address);
    case RSV_FORMAT_KITEX: /* registry-etcd's template */
        return key_under("kitex/registry-etcd/", s->service, s->address);
    default: /* etcd_naming and native: the prefix and the address */
        return concat3(prefix, s->address, "");
    }
}

int rsv_registration_render(const rsv_registration_config *spec, const char *prefix, int64_t lease,
                            char **key, char **value)
{
    *key = render_key(spec, prefix, lease);
    *value = render_value(spec);
    if (*key && *value)
        return 0;
    free(*key);
    free(*value);
    *key = *value = NULL;
    return RESOLVER_ERR_NOMEM;
}

/* ---- requests ---- */

static void step(reg *g, reg_op op);
static void schedule(reg *g, reg_op op, uint64_t ms);

static const char *op_name(reg_op op)
{
    static const char *const names[] = {"none",         "lease grant",     "put",   "lease revoke",
                                        "delete",       "lease keepalive", "range", "delete",
                                        "lease revoke", "delete"};
    return names[op];
}

static uint64_t ttl_ms(const reg *g)
{
    return g->lease_ttl_s > 0 ? (uint64_t)g->lease_ttl_s * 1000 : g->spec.ttl_ms;
}

/* A request that has not answered by then is abandoned: a stalled
 * connection must not outlive the lease it should keep. */
static uint64_t request_timeout_ms(const reg *g)
{
    uint64_t t = ttl_ms(g) / 3;
    return t < 1000 ? 1000 : t > 5000 ? 5000 : t;
}

static void end_request(reg *g)
{
    if (g->req)
        rsv_etcd_cancel(g->req);
    g->req = NULL;
    rsv_timer_stop(g->deadline);
    free(g->body);
    g->body = NULL;
    g->body_len = 0;
    g->body_overflow = 0;
}

static int on_data(void *arg, const char *data, size_t len)
{
    reg *g = arg;
    if (g->body_len + len > BODY_MAX) {
        g->body_overflow = 1;
        return 1;
    }
    char *b = realloc(g->body, g->body_len + len + 1);
    if (!b)
        return 1;
    memcpy(b + g->body_len, data, len);
    g->body = b;
    g->body_len += len;
    b[g->body_len] = '\0';
    return 0;
}

static int64_t json_int64(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

static uint64_t header_cluster(json_t *obj)
{
    json_t *v = json_object_get(json_object_get(obj, "header"), "cluster_id");
    if (json_is_integer(v))
        return (uint64_t)json_integer_value(v);
    return json_is_string(v) ? strtoull(json_string_value(v), NULL, 10) : 0;
}

static void backoff_retry(reg *g, reg_op op, const char *error)
{
    rsv_registrar *r = g->owner;
    LOG_WARN_LIMITED(&r->lim_fail,
                     "register %s %s: etcd %s failed (%s); retrying (never giving up)",
                     g->spec.service, g->spec.address, op_name(op), error);
    uint64_t delay = rsv_backoff_next(&g->backoff, 0.0); /* no jitter */
    uint64_t now = rsv_loop_now(r->loop);
    /* etcd silent for longer than the TTL: the lease is presumed gone (it
     * may survive an etcd restart; the next success revokes it). */
    if (g->state != ST_LEAVING && g->lease && now >= g->lease_deadline_ms) {
        LOG_WARN_LIMITED(&r->lim_lost,
                         "register %s %s: etcd unreachable for longer than the lease TTL; "
                         "granting a new lease when it answers",
                         g->spec.service, g->spec.address);
        g->old_lease = g->lease;
        g->lease = 0;
        g->state = ST_PENDING;
        op = OP_GRANT;
    }
    schedule(g, op, delay);
}

/* The lease is gone (etcd says so, or another cluster answers): a new one
 * at once. */
static void lease_lost(reg *g, const char *why)
{
    LOG_WARN_LIMITED(&g->owner->lim_lost,
                     "register %s %s: lease %" PRId64 " %s; granting a new one", g->spec.service,
                     g->spec.address, g->lease, why);
    g->lease = 0;
    g->old_lease = 0;
    g->state = ST_PENDING;
    step(g, OP_GRANT);
}

static void after_put(reg *g)
{
    if (g->old_lease)
        step(g, OP_REVOKE_OLD);
    else if (g->stale_key)
        step(g, OP_DELETE_STALE);
    else
        schedule(g, OP_KEEPALIVE, ttl_ms(g) / 3);
}

static void leave_over(reg *g)
{
    g->leave_done = 1;
    g->state = ST_LEAVING;
    rsv_timer_start(g->timer, g->owner->grace_ms);
}

/* Whether the range answer shows our key, our value, our lease. */
static int key_is_ours(reg *g, const char *body, size_t len)
{
    rsv_range_result rr;
    char why[128];
    if (rsv_range_parse(body, len, &rr, why, sizeof(why)) != 0)
        return -1;
    int ours = rr.n_kvs == 1 && rr.kvs[0].lease == g->lease &&
               rr.kvs[0].value_len == strlen(g->value) &&
               memcmp(rr.kvs[0].value, g->value, rr.kvs[0].value_len) == 0;
    rsv_range_result_clear(&rr);
    return ours;
}

static void handle_ok(reg *g, reg_op op, json_t *root)
{
    rsv_registrar *r = g->owner;
    uint64_t now = rsv_loop_now(r->loop);
    switch (op) {
    case OP_GRANT: {
        int64_t id = json_int64(root, "ID"), ttl = json_int64(root, "TTL");
        if (id == 0 || ttl <= 0) {
            backoff_retry(g, op, "no lease in the answer");
            return;
        }
        g->lease = id;
        g->lease_ttl_s = ttl;
        g->lease_deadline_ms = now + (uint64_t)ttl * 1000;
        g->cluster_id = header_cluster(root);
        char *key, *value;
        if (rsv_registration_render(&g->spec, g->prefix, id, &key, &value) != 0) {
            backoff_retry(g, op, "out of memory");
            return;
        }
        if (g->key && strcmp(g->key, key) != 0 && !g->stale_key)
            g->stale_key = g->key; /* go-zero: the old lease's key */
        else
            free(g->key);
        free(g->value);
        g->key = key;
        g->value = value;
        if (!g->healthy) { /* no key while the instance is unhealthy */
            g->state = ST_UNHEALTHY;
            schedule(g, OP_KEEPALIVE, ttl_ms(g) / 3);
            return;
        }
        step(g, OP_PUT);
        return;
    }
    case OP_DELETE_UNHEALTHY:
        g->state = ST_UNHEALTHY;
        schedule(g, OP_KEEPALIVE, ttl_ms(g) / 3);
        return;
    case OP_PUT:
        if (g->state != ST_REGISTERED || g->registered_count == 0)
            LOG_INFO("registered %s %s as %s (lease %" PRId64 ", TTL %" PRId64 " s)",
                     g->spec.service, g->spec.address, g->key, g->lease, g->lease_ttl_s);
        g->state = ST_REGISTERED;
        g->registered_count++;
        after_put(g);
        return;
    case OP_REVOKE_OLD:
        g->old_lease = 0;
        after_put(g);
        return;
    case OP_DELETE_STALE:
        free(g->stale_key);
        g->stale_key = NULL;
        after_put(g);
        return;
    case OP_KEEPALIVE: {
        json_t *res = json_object_get(root, "result");
        int64_t ttl = json_int64(res ? res : root, "TTL");
        if (ttl <= 0) {
            lease_lost(g, "expired or was revoked");
            return;
        }
        g->lease_deadline_ms = now + (uint64_t)ttl * 1000;
        if (g->healthy)
            step(g, OP_CHECK);
        else
            schedule(g, OP_KEEPALIVE, ttl_ms(g) / 3);
        return;
    }
    case OP_CHECK: {
        int ours = key_is_ours(g, g->body, g->body_len);
        if (ours < 0) {
            backoff_retry(g, op, "bad range answer");
            return;
        }
        if (!ours) {
            LOG_WARN_LIMITED(&r->lim_lost,
                             "register %s %s: %s was deleted or changed by someone else; "
                             "putting it again",
                             g->spec.service, g->spec.address, g->key);
            step(g, OP_PUT);
            return;
        }
        schedule(g, OP_KEEPALIVE, ttl_ms(g) / 3);
        return;
    }
    case OP_DELETE:
        step(g, g->lease ? OP_REVOKE : OP_NONE);
        if (!g->lease)
            leave_over(g);
        return;
    case OP_REVOKE:
        LOG_INFO("deregistered %s %s (%s deleted, lease %" PRId64 " revoked)", g->spec.service,
                 g->spec.address, g->key ? g->key : "no key", g->lease);
        g->lease = 0;
        leave_over(g);
        return;
    case OP_NONE:
        return;
    }
}

static void on_done(void *arg, long status, const char *error)
{
    reg *g = arg;
    reg_op op = g->op;
    g->req = NULL;
    rsv_timer_stop(g->deadline);
    char *body = g->body;
    size_t len = g->body_len;
    g->body = NULL;
    g->body_len = 0;
    json_t *root = NULL;
    if (*error == '\0' && status == 200 && body) {
        /* A keepalive answer is a stream: its first line is the one. */
        const char *nl = memchr(body, '\n', len);
        root = json_loadb(body, nl ? (size_t)(nl - body) : len, 0, NULL);
    }
    if (root) {
        uint64_t cid = header_cluster(
            json_object_get(root, "result") ? json_object_get(root, "result") : root);
        if (cid)
            rsv_etcd_note_cluster(g->owner->etcd, cid);
        rsv_backoff_reset(&g->backoff);
        if (cid && g->cluster_id && cid != g->cluster_id && g->state != ST_LEAVING &&
            op != OP_GRANT) {
            g->cluster_id = cid;
            lease_lost(g, "belongs to another etcd cluster");
        } else {
            g->body = body; /* the range check reads it */
            g->body_len = len;
            body = NULL;
            handle_ok(g, op, root);
        }
        json_decref(root);
        free(body);
        return;
    }
    char what[160];
    snprintf(what, sizeof(what), "%s",
             *error          ? error
             : status == 200 ? "bad answer"
                             : "HTTP error");
    free(body);
    if (g->state == ST_LEAVING) {
        /* Best effort: the key then goes with its lease. */
        LOG_WARN("deregister %s %s: etcd %s failed (%s); the key expires with its lease",
                 g->spec.service, g->spec.address, op_name(op), what);
        leave_over(g);
        return;
    }
    /* A put refused for its lease (etcd lost it meanwhile): a new lease. */
    if (op == OP_PUT && status >= 400 && status < 500) {
        lease_lost(g, "was refused by the put");
        return;
    }
    if (op == OP_REVOKE_OLD || op == OP_DELETE_STALE) {
        /* Leftovers of an old lease go with it; not worth holding up. */
        g->old_lease = op == OP_REVOKE_OLD ? 0 : g->old_lease;
        if (op == OP_DELETE_STALE) {
            free(g->stale_key);
            g->stale_key = NULL;
        }
        after_put(g);
        return;
    }
    backoff_retry(g, op, what);
}

static char *b64(const char *s)
{
    return rsv_base64_encode(s, strlen(s));
}

static char *request_body(reg *g, reg_op op, const char **path)
{
    char *k = NULL, *v = NULL, *out = NULL;
    int64_t id = op == OP_REVOKE_OLD ? g->old_lease : g->lease;
    switch (op) {
    case OP_GRANT:
        *path = "/v3/lease/grant";
        return dump(json_pack("{s:I}", "TTL", (json_int_t)((g->spec.ttl_ms + 999) / 1000)));
    case OP_PUT:
        *path = "/v3/kv/put";
        if ((k = b64(g->key)) && (v = b64(g->value))) {
            char lease[32];
            snprintf(lease, sizeof(lease), "%" PRId64, g->lease);
            out = dump(json_pack("{s:s,s:s,s:s}", "key", k, "value", v, "lease", lease));
        }
        break;
    case OP_CHECK:
        *path = "/v3/kv/range";
        if ((k = b64(g->key)))
            out = dump(json_pack("{s:s}", "key", k));
        break;
    case OP_DELETE:
    case OP_DELETE_STALE:
    case OP_DELETE_UNHEALTHY:
        *path = "/v3/kv/deleterange";
        if ((k = b64(op == OP_DELETE_STALE ? g->stale_key : g->key)))
            out = dump(json_pack("{s:s}", "key", k));
        break;
    case OP_KEEPALIVE:
    case OP_REVOKE:
    case OP_REVOKE_OLD: {
        char lease[32];
        snprintf(lease, sizeof(lease), "%" PRId64, id);
        *path = op == OP_KEEPALIVE ? "/v3/lease/keepalive" : "/v3/lease/revoke";
        return dump(json_pack("{s:s}", "ID", lease));
    }
    case OP_NONE:
        break;
    }
    free(k);
    free(v);
    return out;
}

static void step(reg *g, reg_op op)
{
    end_request(g);
    rsv_timer_stop(g->timer);
    g->op = op;
    if (op == OP_NONE)
        return;
    const char *path = "";
    char *body = request_body(g, op, &path);
    if (body)
        g->req = rsv_etcd_post(g->owner->etcd, path, body, 0, on_data, on_done, g);
    free(body);
    if (!g->req) {
        backoff_retry(g, op, "out of memory");
        return;
    }
    rsv_timer_start(g->deadline, request_timeout_ms(g));
}

static void schedule(reg *g, reg_op op, uint64_t ms)
{
    end_request(g);
    g->op = op;
    rsv_timer_start(g->timer, ms);
}

/* ---- health gating ---- */

/* READY: healthy; TRANSIENT_FAILURE (a failed connection, or a health
 * answer other than SERVING): unhealthy.  CONNECTING keeps the last
 * verdict, so that a server's graceful GOAWAY does not flap the key. */
static void on_health(rsv_subchannel *sc, rsv_state old_state, rsv_state new_state, void *arg)
{
    reg *g = arg;
    int healthy = new_state == RSV_STATE_READY               ? 1
                  : new_state == RSV_STATE_TRANSIENT_FAILURE ? 0
                                                             : g->healthy;
    if (healthy == g->healthy || g->state == ST_LEAVING)
        return;
    g->healthy = healthy;
    const rsv_subchannel_stats *st = rsv_subchannel_stats_get(sc);
    if (healthy) {
        LOG_INFO("register %s %s: healthy: putting its key", g->spec.service, g->spec.address);
        if (g->lease)
            step(g, OP_PUT); /* without one, the grant in progress puts it */
    } else {
        LOG_WARN("register %s %s: unhealthy (%s): deleting its key", g->spec.service,
                 g->spec.address, *st->health ? st->health : st->last_error);
        if (g->lease)
            step(g, OP_DELETE_UNHEALTHY);
    }
}

static int health_start(reg *g, const rsv_service_options *opts)
{
    rsv_subchannel_del(g->health);
    g->health = NULL;
    g->healthy = g->spec.health_check == NULL;
    if (!g->spec.health_check)
        return 0;
    rsv_endpoint ep;
    if (rsv_address_parse(g->spec.address, strlen(g->spec.address), &ep, NULL, 0) != 0)
        return RESOLVER_ERR_INVALID;
    rsv_service_options o;
    rsv_service_options_default(&o);
    if (opts)
        o = *opts; /* borrowed: the subchannel copies what it keeps */
    o.health_grpc_service = g->spec.health_check;
    g->health =
        rsv_subchannel_new(g->owner->loop, g->owner->dns, ep.host, ep.port, &o, on_health, g);
    if (!g->health)
        return RESOLVER_ERR_NOMEM;
    rsv_subchannel_connect(g->health);
    return 0;
}

/* ---- registrations ---- */

static void reg_free(reg *g)
{
    rsv_subchannel_del(g->health);
    end_request(g);
    rsv_timer_del(g->timer);
    rsv_timer_del(g->deadline);
    rsv_registration_clear(&g->spec);
    free(g->prefix);
    free(g->key);
    free(g->value);
    free(g->stale_key);
    free(g);
}

static void unlink_reg(reg *g)
{
    for (reg **p = &g->owner->head; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            return;
        }
}

static void on_timer(rsv_loop *loop, rsv_timer *t, void *arg)
{
    reg *g = arg;
    if (g->leave_done) { /* the grace is over */
        unlink_reg(g);
        reg_free(g);
        return;
    }
    step(g, g->op);
}

static void on_deadline(rsv_loop *loop, rsv_timer *t, void *arg)
{
    reg *g = arg;
    reg_op op = g->op;
    if (g->req)
        rsv_etcd_cancel(g->req);
    g->req = NULL;
    free(g->body);
    g->body = NULL;
    g->body_len = 0;
    g->op = op;
    on_done(g, 0, "no answer in time");
}

static reg *find(rsv_registrar *r, const char *service, const char *address, int leaving)
{
    for (reg *g = r->head; g; g = g->next)
        if ((leaving || g->state != ST_LEAVING) && strcmp(g->spec.service, service) == 0 &&
            strcmp(g->spec.address, address) == 0)
            return g;
    return NULL;
}

rsv_registrar *rsv_registrar_new(rsv_loop *loop, rsv_etcd *etcd, rsv_dns *dns, uint64_t grace_ms)
{
    rsv_registrar *r = calloc(1, sizeof(*r));
    if (r) {
        r->loop = loop;
        r->etcd = etcd;
        r->dns = dns;
        r->grace_ms = grace_ms;
    }
    return r;
}

void rsv_registrar_del(rsv_registrar *r)
{
    if (!r)
        return;
    while (r->head) {
        reg *g = r->head;
        r->head = g->next;
        reg_free(g);
    }
    free(r);
}

void rsv_registrar_set_grace(rsv_registrar *r, uint64_t grace_ms)
{
    r->grace_ms = grace_ms;
}

/* An update of a live registration: the new key and value with the same
 * lease (a new one if the TTL changed); the old key, if another, deleted. */
static int update(reg *g, const rsv_registration_config *spec, const char *prefix,
                  const rsv_service_options *opts)
{
    rsv_registration_config copy;
    char *p = strdup(prefix);
    if (!p || rsv_registration_copy(&copy, spec) != 0) {
        free(p);
        return RESOLVER_ERR_NOMEM;
    }
    int new_lease = copy.ttl_ms != g->spec.ttl_ms || !g->lease;
    int new_health = !g->spec.health_check != !copy.health_check ||
                     (copy.health_check && strcmp(copy.health_check, g->spec.health_check) != 0);
    rsv_registration_clear(&g->spec);
    g->spec = copy;
    free(g->prefix);
    g->prefix = p;
    if (new_health && health_start(g, opts) != 0)
        return RESOLVER_ERR_NOMEM;
    if (!g->healthy && g->lease && g->key) {
        step(g, OP_DELETE_UNHEALTHY);
        return 0;
    }
    if (new_lease) {
        if (g->lease)
            g->old_lease = g->lease;
        g->lease = 0;
        g->state = ST_PENDING;
        step(g, OP_GRANT);
        return 0;
    }
    char *key, *value;
    if (rsv_registration_render(&g->spec, g->prefix, g->lease, &key, &value) != 0)
        return RESOLVER_ERR_NOMEM;
    if (g->key && strcmp(g->key, key) != 0 && !g->stale_key)
        g->stale_key = g->key;
    else
        free(g->key);
    free(g->value);
    g->key = key;
    g->value = value;
    step(g, OP_PUT);
    return 0;
}

int rsv_registrar_add(rsv_registrar *r, const rsv_registration_config *spec, const char *prefix,
                      const rsv_service_options *opts, int from_config)
{
    if (r->closed)
        return RESOLVER_ERR_CLOSED;
    reg *g = find(r, spec->service, spec->address, 0);
    if (g) {
        g->from_config = from_config;
        return rsv_registration_equal(&g->spec, spec) && strcmp(g->prefix, prefix) == 0
                   ? 0
                   : update(g, spec, prefix, opts);
    }
    if (!(g = calloc(1, sizeof(*g))))
        return RESOLVER_ERR_NOMEM;
    g->owner = r;
    g->from_config = from_config;
    rsv_backoff_init(&g->backoff, &retry_backoff);
    rsv_registration_default(&g->spec);
    g->timer = rsv_timer_new(r->loop, on_timer, g);
    g->deadline = rsv_timer_new(r->loop, on_deadline, g);
    g->prefix = strdup(prefix);
    if (!g->timer || !g->deadline || !g->prefix || rsv_registration_copy(&g->spec, spec) != 0) {
        reg_free(g);
        return RESOLVER_ERR_NOMEM;
    }
    if (health_start(g, opts) != 0) {
        reg_free(g);
        return RESOLVER_ERR_NOMEM;
    }
    g->next = r->head;
    r->head = g;
    step(g, OP_GRANT);
    return 0;
}

static void leave(reg *g)
{
    g->state = ST_LEAVING;
    rsv_subchannel_del(g->health);
    g->health = NULL;
    free(g->stale_key);
    g->stale_key = NULL;
    if (g->key)
        step(g, OP_DELETE);
    else if (g->lease)
        step(g, OP_REVOKE);
    else {
        end_request(g);
        leave_over(g);
    }
}

int rsv_registrar_remove(rsv_registrar *r, const char *service, const char *address)
{
    reg *g = find(r, service, address, 0);
    if (!g)
        return RESOLVER_ERR_NOT_FOUND;
    LOG_INFO("deregistering %s %s: deleting %s", service, address,
             g->key ? g->key : "(no key yet)");
    leave(g);
    return 0;
}

void rsv_registrar_leave_all(rsv_registrar *r)
{
    r->closed = 1;
    for (reg *g = r->head; g; g = g->next)
        if (g->state != ST_LEAVING)
            rsv_registrar_remove(r, g->spec.service, g->spec.address);
}

void rsv_registrar_forget_config(rsv_registrar *r, const resolver_config *cfg)
{
    for (reg *g = r->head; g; g = g->next) {
        if (!g->from_config || g->state == ST_LEAVING)
            continue;
        int kept = 0;
        for (size_t i = 0; !kept && i < cfg->n_registrations; i++)
            kept = strcmp(cfg->registrations[i].service, g->spec.service) == 0 &&
                   strcmp(cfg->registrations[i].address, g->spec.address) == 0;
        if (!kept)
            rsv_registrar_remove(r, g->spec.service, g->spec.address);
    }
}

size_t rsv_registrar_count(const rsv_registrar *r)
{
    size_t n = 0;
    for (const reg *g = r->head; g; g = g->next)
        n++;
    return n;
}

static int by_service_address(const void *a, const void *b)
{
    const reg *x = *(reg *const *)a, *y = *(reg *const *)b;
    int c = strcmp(x->spec.service, y->spec.service);
    return c ? c : strcmp(x->spec.address, y->spec.address);
}

static const char *state_name(const reg *g)
{
    return g->state == ST_REGISTERED  ? "REGISTERED"
           : g->state == ST_UNHEALTHY ? "UNHEALTHY"
           : g->state == ST_LEAVING   ? "LEAVING"
                                      : "PENDING";
}

void resolver_registration_info_free(resolver_registration_info *info, size_t n)
{
    if (!info)
        return;
    for (size_t i = 0; i < n; i++) {
        free(info[i].service);
        free(info[i].address);
        free(info[i].format);
        free(info[i].key);
        free(info[i].state);
    }
    free(info);
}

static char *dup_text(const char *s, int *nomem)
{
    char *d = strdup(s ? s : "");
    if (!d)
        *nomem = 1;
    return d;
}

int rsv_registrar_list(rsv_registrar *r, const char *service, const char *address,
                       resolver_registration_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    rsv_endpoint ep;
    if (address && rsv_address_parse(address, strlen(address), &ep, NULL, 0) == 0)
        address = ep.address;
    size_t count = rsv_registrar_count(r), i = 0;
    reg **v = calloc(count + 1, sizeof(*v));
    resolver_registration_info *info = v ? calloc(count + 1, sizeof(*info)) : NULL;
    if (!info) {
        free(v);
        return RESOLVER_ERR_NOMEM;
    }
    for (reg *g = r->head; g; g = g->next)
        if ((!service || strcmp(g->spec.service, service) == 0) &&
            (!address || strcmp(g->spec.address, address) == 0))
            v[i++] = g;
    count = i;
    qsort(v, count, sizeof(*v), by_service_address);
    uint64_t now = rsv_loop_now(r->loop);
    int nomem = 0;
    for (i = 0; i < count; i++) {
        const reg *g = v[i];
        resolver_registration_info *x = &info[i];
        x->service = dup_text(g->spec.service, &nomem);
        x->address = dup_text(g->spec.address, &nomem);
        x->format = dup_text(rsv_format_name(g->spec.format), &nomem);
        x->key = dup_text(g->key, &nomem);
        x->lease = g->lease;
        x->ttl_left_ms =
            g->lease && g->lease_deadline_ms > now ? (int64_t)(g->lease_deadline_ms - now) : -1;
        x->state = dup_text(state_name(g), &nomem);
        x->from_config = g->from_config;
        x->registered_count = g->registered_count;
    }
    free(v);
    if (nomem) {
        resolver_registration_info_free(info, count);
        return RESOLVER_ERR_NOMEM;
    }
    *out = info;
    *n = count;
    return 0;
}
