/*
 * confopts.c - the per-service options that "defaults" and each service
 * hold: their names and table, built-in defaults, copy and comparison,
 * parsing on top of what is inherited, and writing back as JSON.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "confjson.h"

#define MS_MAX RSV_DURATION_MAX_MS
#define MULTIPLIER_MAX 100.0

/* ---- names ------------------------------------------------------------ */

static const char *const policy_names[] = {
    [RSV_POLICY_ROUND_ROBIN] = "round_robin",
    [RSV_POLICY_PICK_FIRST] = "pick_first",
    [RSV_POLICY_WEIGHTED_ROUND_ROBIN] = "weighted_round_robin",
    [RSV_POLICY_LEAST_REQUEST] = "least_request",
    [RSV_POLICY_RING_HASH] = "ring_hash",
    [RSV_POLICY_RANDOM] = "random",
    [RSV_POLICY_LEAST_LATENCY] = "least_latency",
};
#define N_POLICIES (sizeof(policy_names) / sizeof(policy_names[0]))

static const char *const protocol_names[] = {
    [RSV_PROTOCOL_H2C] = "h2c",
    [RSV_PROTOCOL_H2] = "h2",
    [RSV_PROTOCOL_TCP] = "tcp",
};
#define N_PROTOCOLS (sizeof(protocol_names) / sizeof(protocol_names[0]))
#define N_FORMATS ((size_t)RSV_FORMAT_NATIVE + 1)

const char *rsv_policy_name(rsv_policy p)
{
    return (size_t)p < N_POLICIES ? policy_names[p] : "unknown";
}

int rsv_policy_parse(const char *name, rsv_policy *out)
{
    for (size_t i = 0; name && out && i < N_POLICIES; i++) {
        if (strcmp(name, policy_names[i]) == 0) {
            *out = (rsv_policy)i;
            return 0;
        }
    }
    return RESOLVER_ERR_INVALID;
}

const char *rsv_protocol_name(rsv_protocol p)
{
    return (size_t)p < N_PROTOCOLS ? protocol_names[p] : "unknown";
}

int rsv_protocol_parse(const char *name, rsv_protocol *out)
{
    for (size_t i = 0; name && out && i < N_PROTOCOLS; i++) {
        if (strcmp(name, protocol_names[i]) == 0) {
            *out = (rsv_protocol)i;
            return 0;
        }
    }
    return RESOLVER_ERR_INVALID;
}

/* The enumerations behind one interface (confjson.h). */

static const char *enum_what(rsv_conf_enum k)
{
    return k == RSV_CONF_ENUM_FORMAT ? "format" : k == RSV_CONF_ENUM_POLICY ? "policy" : "protocol";
}

static size_t enum_count(rsv_conf_enum k)
{
    return k == RSV_CONF_ENUM_FORMAT   ? N_FORMATS
           : k == RSV_CONF_ENUM_POLICY ? N_POLICIES
                                       : N_PROTOCOLS;
}

static const char *enum_name(rsv_conf_enum k, int value)
{
    switch (k) {
    case RSV_CONF_ENUM_FORMAT:
        return rsv_format_name((rsv_format)value);
    case RSV_CONF_ENUM_POLICY:
        return rsv_policy_name((rsv_policy)value);
    case RSV_CONF_ENUM_PROTOCOL:
        return rsv_protocol_name((rsv_protocol)value);
    }
    return "unknown";
}

static int enum_parse(rsv_conf_enum k, const char *name, void *field)
{
    switch (k) {
    case RSV_CONF_ENUM_FORMAT:
        return rsv_format_parse(name, (rsv_format *)field);
    case RSV_CONF_ENUM_POLICY:
        return rsv_policy_parse(name, (rsv_policy *)field);
    case RSV_CONF_ENUM_PROTOCOL:
        return rsv_protocol_parse(name, (rsv_protocol *)field);
    }
    return RESOLVER_ERR_INVALID;
}

int rsv_conf_take_enum(rsv_conf_ctx *ctx, const char *path, const json_t *v, rsv_conf_enum k,
                       void *field)
{
    if (!json_is_string(v))
        return rsv_conf_wrong_type(ctx, path, v, "a string");
    if (enum_parse(k, json_string_value(v), field) == 0)
        return 0;
    char list[256] = "";
    size_t used = 0, best_d = 3;
    const char *best = NULL;
    for (size_t i = 0; i < enum_count(k) && used < sizeof(list); i++) {
        int n =
            snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", enum_name(k, (int)i));
        used += n > 0 ? (size_t)n : 0;
        rsv_conf_consider(json_string_value(v), enum_name(k, (int)i), &best, &best_d);
    }
    if (best)
        return rsv_conf_fail(ctx,
                             "%s: unknown %s \"%s\" (did you mean \"%s\"? expected one of: %s)",
                             path, enum_what(k), json_string_value(v), best, list);
    return rsv_conf_fail(ctx, "%s: unknown %s \"%s\" (expected one of: %s)", path, enum_what(k),
                         json_string_value(v), list);
}

/* ---- per-service options (shared by "defaults" and each service) ------ */

typedef enum {
    OPT_ENUM,    /* a name: format, policy, protocol */
    OPT_MS,      /* a duration in milliseconds, >= min */
    OPT_COUNT,   /* a uint32_t count, 0 allowed */
    OPT_BACKOFF, /* the nested backoff object, merged field by field */
    OPT_HEALTH,  /* the nested health_check object */
} opt_kind;

typedef struct {
    const char *key;
    opt_kind kind;
    size_t offset;    /* of the field in rsv_service_options */
    rsv_conf_enum en; /* OPT_ENUM */
    uint64_t min;     /* OPT_MS, OPT_COUNT */
    uint64_t max;     /* OPT_COUNT; 0: UINT32_MAX */
} opt_field;

#define OPT(key, kind, field, en, min)                                                             \
    {                                                                                              \
        key, kind, offsetof(rsv_service_options, field), en, min, 0                                \
    }
#define OPT_RANGE(key, field, min, max)                                                            \
    {                                                                                              \
        key, OPT_COUNT, offsetof(rsv_service_options, field), 0, min, max                          \
    }
static const opt_field opt_fields[] = {
    OPT("format", OPT_ENUM, format, RSV_CONF_ENUM_FORMAT, 0),
    OPT("policy", OPT_ENUM, policy, RSV_CONF_ENUM_POLICY, 0),
    OPT("protocol", OPT_ENUM, protocol, RSV_CONF_ENUM_PROTOCOL, 0),
    /* HTTP/2 PINGs more often than every 10 ms would be a flood. */
    OPT("keepalive_time_ms", OPT_MS, keepalive_time_ms, 0, 10),
    OPT("keepalive_timeout_ms", OPT_MS, keepalive_timeout_ms, 0, 1),
    OPT("connect_timeout_ms", OPT_MS, connect_timeout_ms, 0, 1),
    OPT("backoff", OPT_BACKOFF, backoff, 0, 0),
    OPT("drain_timeout_ms", OPT_MS, drain_timeout_ms, 0, 1),
    OPT("max_connection_age_ms", OPT_MS, max_connection_age_ms, 0, 0), /* 0: never */
    OPT("ticket_timeout_ms", OPT_MS, ticket_timeout_ms, 0, 1),
    OPT("max_outstanding", OPT_COUNT, max_outstanding, 0, 0), /* 0: no cap */
    OPT("health_check", OPT_HEALTH, health_grpc_service, 0, 0),
    /* least_request: power of N choices (gRPC allows 2..10). */
    OPT_RANGE("choice_count", choice_count, 2, 10),
    /* least_latency: the time constant of the latency averages; under
     * 10 ms a single done would be all the history an instance has. */
    OPT("latency_decay_ms", OPT_MS, latency_decay_ms, 0, 10),
    /* Prefer the daemon's zone while at least this % of its instances there
     * is READY; 0 turns zone preference off. */
    OPT_RANGE("zone_min_ready_percent", zone_min_ready_percent, 0, 100),
    /* Keep instances etcd removed while deletions would take the service
     * below this % of its READY instances of 10 s before; 0 turns it off. */
    OPT_RANGE("self_preservation_percent", self_preservation_percent, 0, 100),
    OPT("self_preservation_max_ms", OPT_MS, self_preservation_max_ms, 0, 1),
    /* Outlier detection (Envoy's defaults); 0 turns a detector off. */
    OPT_RANGE("outlier_consecutive_failures", outlier.consecutive_failures, 0, 1000000),
    OPT_RANGE("outlier_failure_percent", outlier.failure_percent, 0, 100),
    OPT_RANGE("outlier_min_requests", outlier.min_requests, 1, 1000000000),
    OPT("outlier_interval_ms", OPT_MS, outlier.interval_ms, 0, 10),
    OPT("outlier_base_ejection_ms", OPT_MS, outlier.base_ejection_ms, 0, 1),
    OPT("outlier_max_ejection_ms", OPT_MS, outlier.max_ejection_ms, 0, 1),
    OPT_RANGE("outlier_max_ejection_percent", outlier.max_ejection_percent, 0, 100),
};
#define N_OPT_FIELDS (sizeof(opt_fields) / sizeof(opt_fields[0]))

void rsv_service_options_default(rsv_service_options *o)
{
    memset(o, 0, sizeof(*o));
    o->format = RSV_FORMAT_AUTO;
    o->policy = RSV_POLICY_ROUND_ROBIN;
    o->protocol = RSV_PROTOCOL_H2C;
    o->keepalive_time_ms = 30000;
    o->keepalive_timeout_ms = 10000;
    o->connect_timeout_ms = 20000;
    o->backoff.initial_ms = 1000;
    o->backoff.multiplier = 1.6;
    o->backoff.jitter = 0.2;
    o->backoff.max_ms = 120000;
    o->drain_timeout_ms = 30000;
    o->max_connection_age_ms = 0;
    o->ticket_timeout_ms = 60000;
    o->max_outstanding = 0;
    o->health_grpc_service = NULL;
    o->choice_count = 2;
    o->zone_min_ready_percent = 0;
    o->self_preservation_percent = 50;
    o->self_preservation_max_ms = 300000;
    o->latency_decay_ms = 10000;
    o->outlier.consecutive_failures = 5;
    o->outlier.failure_percent = 85;
    o->outlier.min_requests = 50;
    o->outlier.interval_ms = 10000;
    o->outlier.base_ejection_ms = 30000;
    o->outlier.max_ejection_ms = 300000;
    o->outlier.max_ejection_percent = 10;
}

int rsv_service_options_copy(rsv_service_options *dst, const rsv_service_options *src)
{
    *dst = *src;
    if (src->health_grpc_service) {
        dst->health_grpc_service = strdup(src->health_grpc_service);
        if (!dst->health_grpc_service)
            return RESOLVER_ERR_NOMEM;
    }
    return 0;
}

void rsv_service_options_clear(rsv_service_options *o)
{
    if (!o)
        return;
    free(o->health_grpc_service);
    memset(o, 0, sizeof(*o));
}

static const char *opt_key(size_t i)
{
    return i < N_OPT_FIELDS ? opt_fields[i].key : NULL;
}

int rsv_conf_opt_find(const char *key)
{
    for (size_t i = 0; i < N_OPT_FIELDS; i++)
        if (strcmp(opt_fields[i].key, key) == 0)
            return 1;
    return 0;
}

static int backoff_equal(const rsv_backoff_config *a, const rsv_backoff_config *b)
{
    return a->initial_ms == b->initial_ms && a->multiplier == b->multiplier &&
           a->jitter == b->jitter && a->max_ms == b->max_ms;
}

int rsv_service_options_equal(const rsv_service_options *a, const rsv_service_options *b)
{
    return a->format == b->format && a->policy == b->policy && a->protocol == b->protocol &&
           a->keepalive_time_ms == b->keepalive_time_ms &&
           a->keepalive_timeout_ms == b->keepalive_timeout_ms &&
           a->connect_timeout_ms == b->connect_timeout_ms &&
           backoff_equal(&a->backoff, &b->backoff) && a->drain_timeout_ms == b->drain_timeout_ms &&
           a->max_connection_age_ms == b->max_connection_age_ms &&
           a->ticket_timeout_ms == b->ticket_timeout_ms &&
           a->max_outstanding == b->max_outstanding &&
           rsv_conf_str_equal(a->health_grpc_service, b->health_grpc_service) &&
           a->choice_count == b->choice_count &&
           a->zone_min_ready_percent == b->zone_min_ready_percent &&
           a->self_preservation_percent == b->self_preservation_percent &&
           a->self_preservation_max_ms == b->self_preservation_max_ms &&
           a->latency_decay_ms == b->latency_decay_ms &&
           memcmp(&a->outlier, &b->outlier, sizeof(a->outlier)) == 0;
}

/* The keys of the objects without options of their own (the rest are in
 * opt_fields), also consulted for a key written one level off. */
static const char *const backoff_keys[] = {"initial_ms", "multiplier", "jitter", "max_ms", NULL};
static const char *const health_keys[] = {"grpc_service", NULL};

/* "defaults.initial_ms" for "defaults.backoff.initial_ms". */
static int option_home(const char *path, const char *key, char *out, size_t n)
{
    const char *sep = *path ? "." : "";
    if (rsv_conf_in_list(backoff_keys, key))
        return snprintf(out, n, "%s%sbackoff.%s", path, sep, key) > 0;
    if (rsv_conf_in_list(health_keys, key))
        return snprintf(out, n, "%s%shealth_check.%s", path, sep, key) > 0;
    return 0;
}

int rsv_conf_check_option_keys(rsv_conf_ctx *ctx, const char *path, json_t *obj,
                               const char *const *known)
{
    return rsv_conf_check_keys(ctx, path, obj, known, opt_key, option_home);
}

/* Applies the keys present in a backoff object on top of *b.  The result is
 * checked as a whole, so a service may lower max_ms alone as long as it
 * stays above the initial_ms it inherits. */
static int parse_backoff(rsv_conf_ctx *ctx, const char *path, json_t *v, rsv_backoff_config *b)
{
    const char *const *keys = backoff_keys;
    char p[RSV_CONF_PATH_LEN];
    int rc;
    if (!json_is_object(v))
        return rsv_conf_wrong_type(ctx, path, v, "an object");
    if ((rc = rsv_conf_check_keys(ctx, path, v, keys, NULL, NULL)))
        return rc;
    rsv_backoff_config nb = *b;
    json_t *x;
    if ((x = json_object_get(v, "initial_ms")) &&
        (rc = rsv_conf_take_ms(ctx, rsv_conf_join(p, path, "initial_ms"), x, 1, &nb.initial_ms)))
        return rc;
    if ((x = json_object_get(v, "multiplier"))) {
        if ((rc = rsv_conf_take_number(ctx, rsv_conf_join(p, path, "multiplier"), x,
                                       &nb.multiplier)))
            return rc;
        /* Below 1 the delay would shrink after each failure. */
        if (nb.multiplier < 1.0)
            return rsv_conf_fail(ctx, "%s: must be >= 1.0, got %g", p, nb.multiplier);
        if (nb.multiplier > MULTIPLIER_MAX)
            return rsv_conf_fail(ctx, "%s: must be <= %g, got %g", p, MULTIPLIER_MAX,
                                 nb.multiplier);
    }
    if ((x = json_object_get(v, "jitter"))) {
        if ((rc = rsv_conf_take_number(ctx, rsv_conf_join(p, path, "jitter"), x, &nb.jitter)))
            return rc;
        if (!(nb.jitter >= 0.0 && nb.jitter <= 1.0))
            return rsv_conf_fail(ctx, "%s: must be between 0 and 1, got %g", p, nb.jitter);
    }
    json_t *max = json_object_get(v, "max_ms");
    if (max && (rc = rsv_conf_take_ms(ctx, rsv_conf_join(p, path, "max_ms"), max, 1, &nb.max_ms)))
        return rc;
    if (nb.max_ms < nb.initial_ms) {
        if (max)
            return rsv_conf_fail(ctx, "%s: must be >= initial_ms (%" PRIu64 "), got %" PRIu64,
                                 rsv_conf_join(p, path, "max_ms"), nb.initial_ms, nb.max_ms);
        return rsv_conf_fail(ctx, "%s: must be <= max_ms (%" PRIu64 "), got %" PRIu64,
                             rsv_conf_join(p, path, "initial_ms"), nb.max_ms, nb.initial_ms);
    }
    *b = nb;
    return 0;
}

int rsv_conf_parse_health(rsv_conf_ctx *ctx, const char *path, json_t *v, char **service)
{
    const char *const *keys = health_keys;
    char p[RSV_CONF_PATH_LEN];
    int rc;
    if (!json_is_object(v))
        return rsv_conf_wrong_type(ctx, path, v, "an object");
    if ((rc = rsv_conf_check_keys(ctx, path, v, keys, NULL, NULL)))
        return rc;
    json_t *x = json_object_get(v, "grpc_service");
    if (!x)
        return 0;
    if (json_is_null(x)) { /* explicitly off, e.g. overriding the defaults */
        free(*service);
        *service = NULL;
        return 0;
    }
    if (!json_is_string(x))
        return rsv_conf_wrong_type(ctx, rsv_conf_join(p, path, "grpc_service"), x,
                                   "a string or null");
    return rsv_conf_take_string(ctx, p, x, service);
}

static int parse_option(rsv_conf_ctx *ctx, const char *path, const opt_field *f, json_t *v,
                        rsv_service_options *o)
{
    void *field = (char *)o + f->offset;
    uint64_t u;
    int rc;
    switch (f->kind) {
    case OPT_ENUM:
        return rsv_conf_take_enum(ctx, path, v, f->en, field);
    case OPT_MS:
        return rsv_conf_take_ms(ctx, path, v, f->min, (uint64_t *)field);
    case OPT_COUNT:
        if ((rc = rsv_conf_take_uint(ctx, path, v, f->min, f->max ? f->max : UINT32_MAX, &u)))
            return rc;
        *(uint32_t *)field = (uint32_t)u;
        return 0;
    case OPT_BACKOFF:
        return parse_backoff(ctx, path, v, (rsv_backoff_config *)field);
    case OPT_HEALTH:
        return rsv_conf_parse_health(ctx, path, v, (char **)field);
    }
    return RESOLVER_ERR_INTERNAL;
}

/* Applies the option keys present in obj to o (which holds what is
 * inherited).  Keys are looked up, not iterated, so that the order of keys
 * in the file never matters. */
int rsv_conf_parse_options(rsv_conf_ctx *ctx, const char *path, json_t *obj, rsv_service_options *o)
{
    char p[RSV_CONF_PATH_LEN];
    for (size_t i = 0; i < N_OPT_FIELDS; i++) {
        json_t *v = json_object_get(obj, opt_fields[i].key);
        int rc =
            v ? parse_option(ctx, rsv_conf_join(p, path, opt_fields[i].key), &opt_fields[i], v, o)
              : 0;
        if (rc)
            return rc;
    }
    return 0;
}

json_t *rsv_conf_options_to_json(const rsv_service_options *o, json_t *obj)
{
    int bad = !obj;
    for (size_t i = 0; !bad && i < N_OPT_FIELDS; i++) {
        const opt_field *f = &opt_fields[i];
        const void *field = (const char *)o + f->offset;
        json_t *v = NULL;
        switch (f->kind) {
        case OPT_ENUM:
            v = json_string(f->en == RSV_CONF_ENUM_FORMAT   ? rsv_format_name(o->format)
                            : f->en == RSV_CONF_ENUM_POLICY ? rsv_policy_name(o->policy)
                                                            : rsv_protocol_name(o->protocol));
            break;
        case OPT_MS:
            v = rsv_conf_jint(*(const uint64_t *)field);
            break;
        case OPT_COUNT:
            v = rsv_conf_jint(*(const uint32_t *)field);
            break;
        case OPT_BACKOFF:
            v = json_pack("{s:I,s:f,s:f,s:I}", "initial_ms", (json_int_t)o->backoff.initial_ms,
                          "multiplier", o->backoff.multiplier, "jitter", o->backoff.jitter,
                          "max_ms", (json_int_t)o->backoff.max_ms);
            break;
        case OPT_HEALTH:
            v = json_pack("{s:o}", "grpc_service",
                          o->health_grpc_service ? rsv_conf_jstr(o->health_grpc_service)
                                                 : json_null());
            break;
        }
        bad = json_object_set_new(obj, f->key, v) != 0;
    }
    if (bad) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}
