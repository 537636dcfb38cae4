/*
 * config.c - the JSON configuration: strict parsing, defaults, and the
 * effective configuration written back as JSON.
 *
 * Loading starts from a complete default configuration and applies what the
 * document sets, so every key is optional.  Unknown keys are errors, not
 * warnings: a misspelt key would otherwise leave a default silently in
 * place, the hardest kind of configuration mistake to notice.  Every message
 * names the full path of the offending key ("services[0].backoff.max_ms").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <jansson.h>

#include "config.h"
#include "dns.h"

enum {
    PATH_LEN = 256,            /* longest key path kept for messages */
    VALUE_LEN = 128,           /* longest value quoted in a message */
    CONFIG_FILE_MAX = 1 << 24, /* 16 MiB: a config is never this big; /dev/zero is */
    SUGGEST_KEY_MAX = 64,      /* keys longer than this get no "did you mean" */
};

/* Every duration key is bounded by RSV_DURATION_MAX_MS (config.h). */
#define MS_MAX RSV_DURATION_MAX_MS
#define MULTIPLIER_MAX 100.0

/* ---- errors and key paths --------------------------------------------- */

typedef struct {
    char *err;
    size_t errlen;
    const char *origin; /* the file being loaded, prefixed to messages; or NULL */
} parse_ctx;

static int vreport(parse_ctx *ctx, int code, const char *fmt, va_list ap)
{
    if (!ctx->err || ctx->errlen == 0)
        return code;
    size_t used = 0;
    if (ctx->origin) {
        int n = snprintf(ctx->err, ctx->errlen, "%s: ", ctx->origin);
        used = n < 0 ? 0 : (size_t)n;
    }
    if (used < ctx->errlen)
        vsnprintf(ctx->err + used, ctx->errlen - used, fmt, ap);
    /* Keys and values come from the file: keep the message on one line. */
    for (char *p = ctx->err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return code;
}

static int report(parse_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int report(parse_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ctx, code, fmt, ap);
    va_end(ap);
    return code;
}

static int fail(parse_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parse_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ctx, RESOLVER_ERR_CONFIG, fmt, ap);
    va_end(ap);
    return RESOLVER_ERR_CONFIG;
}

static int nomem(parse_ctx *ctx)
{
    return report(ctx, RESOLVER_ERR_NOMEM, "out of memory");
}

/* Appends s at dst[n], keeping room for the NUL of a PATH_LEN buffer. */
static size_t path_append(char *dst, size_t n, const char *s)
{
    /* A byte loop: gcc's sanitizer build sees through strnlen+memcpy and
     * warns about bounds it cannot prove. */
    while (*s && n < PATH_LEN - 1)
        dst[n++] = *s++;
    return n;
}

/* dst = parent + sep + piece, truncated to PATH_LEN: a truncated path still
 * makes a useful message.  Copied by hand because snprintf from one bounded
 * buffer into another trips -Wformat-truncation. */
static const char *path_cat(char *dst, const char *parent, const char *sep, const char *piece)
{
    size_t n = path_append(dst, 0, parent);
    n = path_append(dst, n, sep);
    n = path_append(dst, n, piece);
    dst[n] = '\0';
    return dst;
}

static const char *join(char *dst, const char *parent, const char *key)
{
    return path_cat(dst, parent, *parent ? "." : "", key);
}

static const char *join_index(char *dst, const char *parent, size_t i)
{
    char index[32];
    snprintf(index, sizeof(index), "[%zu]", i);
    return path_cat(dst, parent, "", index);
}

/* A JSON value as a message shows it: `"30s"`, `5`, `an array`. */
static const char *describe(const json_t *v, char *buf, size_t n)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        snprintf(buf, n, "\"%s\"", json_string_value(v));
        return buf;
    case JSON_INTEGER:
        snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    case JSON_REAL:
        snprintf(buf, n, "%g", json_real_value(v));
        return buf;
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static int wrong_type(parse_ctx *ctx, const char *path, const json_t *v, const char *expected)
{
    char buf[VALUE_LEN];
    return fail(ctx, "%s: expected %s, got %s", path, expected, describe(v, buf, sizeof(buf)));
}

/* ---- typed values ----------------------------------------------------- */

static int take_string(parse_ctx *ctx, const char *path, const json_t *v, char **dst)
{
    if (!json_is_string(v))
        return wrong_type(ctx, path, v, "a string");
    char *s = strdup(json_string_value(v));
    if (!s)
        return nomem(ctx);
    free(*dst);
    *dst = s;
    return 0;
}

static int take_uint(parse_ctx *ctx, const char *path, const json_t *v, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    if (!json_is_integer(v))
        return wrong_type(ctx, path, v, "an integer");
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i < min) {
        if (min <= 1)
            return fail(ctx, "%s: must be %s 0, got %" JSON_INTEGER_FORMAT, path,
                        min ? ">" : ">=", i);
        return fail(ctx, "%s: must be >= %" PRIu64 ", got %" JSON_INTEGER_FORMAT, path, min, i);
    }
    if ((uint64_t)i > max)
        return fail(ctx, "%s: must be <= %" PRIu64 ", got %" JSON_INTEGER_FORMAT, path, max, i);
    *out = (uint64_t)i;
    return 0;
}

/* A duration in milliseconds: every *_ms key shares one bound, said in
 * hours too so that the unit is not in doubt. */
static int take_ms(parse_ctx *ctx, const char *path, const json_t *v, uint64_t min, uint64_t *out)
{
    uint64_t ms;
    int rc = take_uint(ctx, path, v, min, UINT64_MAX, &ms);
    if (rc)
        return rc;
    if (ms > MS_MAX)
        return fail(ctx, "%s: must be <= %" PRIu64 " (%" PRIu64 " h), got %" PRIu64, path, MS_MAX,
                    MS_MAX / 3600000, ms);
    *out = ms;
    return 0;
}

static int take_number(parse_ctx *ctx, const char *path, const json_t *v, double *out)
{
    if (!json_is_number(v))
        return wrong_type(ctx, path, v, "a number");
    *out = json_number_value(v);
    return 0;
}

/* Checks that every key of obj is in `known` (NULL-terminated) or, when
 * with_options, is a per-service option key. */
static int check_keys(parse_ctx *ctx, const char *path, json_t *obj, const char *const *known,
                      int with_options);

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

/* The three enumerations behind one interface, so that option parsing and
 * the "expected one of" message are written once. */
typedef enum { ENUM_FORMAT, ENUM_POLICY, ENUM_PROTOCOL } enum_kind;

static const char *enum_what(enum_kind k)
{
    return k == ENUM_FORMAT ? "format" : k == ENUM_POLICY ? "policy" : "protocol";
}

static size_t enum_count(enum_kind k)
{
    return k == ENUM_FORMAT ? N_FORMATS : k == ENUM_POLICY ? N_POLICIES : N_PROTOCOLS;
}

static const char *enum_name(enum_kind k, int value)
{
    switch (k) {
    case ENUM_FORMAT:
        return rsv_format_name((rsv_format)value);
    case ENUM_POLICY:
        return rsv_policy_name((rsv_policy)value);
    case ENUM_PROTOCOL:
        return rsv_protocol_name((rsv_protocol)value);
    }
    return "unknown";
}

/* Stores through a pointer of the enum's own type: enums need not be ints. */
static int enum_parse(enum_kind k, const char *name, void *field)
{
    switch (k) {
    case ENUM_FORMAT:
        return rsv_format_parse(name, (rsv_format *)field);
    case ENUM_POLICY:
        return rsv_policy_parse(name, (rsv_policy *)field);
    case ENUM_PROTOCOL:
        return rsv_protocol_parse(name, (rsv_protocol *)field);
    }
    return RESOLVER_ERR_INVALID;
}

static void consider(const char *key, const char *candidate, const char **best, size_t *best_d);

static int take_enum(parse_ctx *ctx, const char *path, const json_t *v, enum_kind k, void *field)
{
    if (!json_is_string(v))
        return wrong_type(ctx, path, v, "a string");
    if (enum_parse(k, json_string_value(v), field) == 0)
        return 0;
    char list[256] = "";
    size_t used = 0, best_d = 3;
    const char *best = NULL;
    for (size_t i = 0; i < enum_count(k) && used < sizeof(list); i++) {
        int n =
            snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", enum_name(k, (int)i));
        used += n > 0 ? (size_t)n : 0;
        consider(json_string_value(v), enum_name(k, (int)i), &best, &best_d);
    }
    if (best)
        return fail(ctx, "%s: unknown %s \"%s\" (did you mean \"%s\"? expected one of: %s)", path,
                    enum_what(k), json_string_value(v), best, list);
    return fail(ctx, "%s: unknown %s \"%s\" (expected one of: %s)", path, enum_what(k),
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
    size_t offset; /* of the field in rsv_service_options */
    enum_kind en;  /* OPT_ENUM */
    uint64_t min;  /* OPT_MS, OPT_COUNT */
    uint64_t max;  /* OPT_COUNT; 0: UINT32_MAX */
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
    OPT("format", OPT_ENUM, format, ENUM_FORMAT, 0),
    OPT("policy", OPT_ENUM, policy, ENUM_POLICY, 0),
    OPT("protocol", OPT_ENUM, protocol, ENUM_PROTOCOL, 0),
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

static const opt_field *opt_find(const char *key)
{
    for (size_t i = 0; i < N_OPT_FIELDS; i++)
        if (strcmp(opt_fields[i].key, key) == 0)
            return &opt_fields[i];
    return NULL;
}

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

static int backoff_equal(const rsv_backoff_config *a, const rsv_backoff_config *b)
{
    return a->initial_ms == b->initial_ms && a->multiplier == b->multiplier &&
           a->jitter == b->jitter && a->max_ms == b->max_ms;
}

static int str_equal(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
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
           str_equal(a->health_grpc_service, b->health_grpc_service) &&
           a->choice_count == b->choice_count &&
           a->zone_min_ready_percent == b->zone_min_ready_percent &&
           a->self_preservation_percent == b->self_preservation_percent &&
           a->self_preservation_max_ms == b->self_preservation_max_ms &&
           a->latency_decay_ms == b->latency_decay_ms &&
           memcmp(&a->outlier, &b->outlier, sizeof(a->outlier)) == 0;
}

/* Applies the keys present in a backoff object on top of *b.  The result is
 * checked as a whole, so a service may lower max_ms alone as long as it
 * stays above the initial_ms it inherits. */
/* The keys of the objects without options of their own (the rest are in
 * opt_fields), also consulted for a key written one level off. */
static const char *const backoff_keys[] = {"initial_ms", "multiplier", "jitter", "max_ms", NULL};
static const char *const health_keys[] = {"grpc_service", NULL};
static const char *const etcd_keys[] = {"endpoints", "username", "password_file",   "ca_file",
                                        "cert_file", "key_file", "dial_timeout_ms", NULL};
static const char *const socket_keys[] = {
    "path", "mode", "group", "admin_group", "max_detached_tickets", NULL};
static const char *const metrics_keys[] = {"listen", NULL};

static int parse_backoff(parse_ctx *ctx, const char *path, json_t *v, rsv_backoff_config *b)
{
    const char *const *keys = backoff_keys;
    char p[PATH_LEN];
    int rc;
    if (!json_is_object(v))
        return wrong_type(ctx, path, v, "an object");
    if ((rc = check_keys(ctx, path, v, keys, 0)))
        return rc;
    rsv_backoff_config nb = *b;
    json_t *x;
    if ((x = json_object_get(v, "initial_ms")) &&
        (rc = take_ms(ctx, join(p, path, "initial_ms"), x, 1, &nb.initial_ms)))
        return rc;
    if ((x = json_object_get(v, "multiplier"))) {
        if ((rc = take_number(ctx, join(p, path, "multiplier"), x, &nb.multiplier)))
            return rc;
        /* Below 1 the delay would shrink after each failure. */
        if (nb.multiplier < 1.0)
            return fail(ctx, "%s: must be >= 1.0, got %g", p, nb.multiplier);
        if (nb.multiplier > MULTIPLIER_MAX)
            return fail(ctx, "%s: must be <= %g, got %g", p, MULTIPLIER_MAX, nb.multiplier);
    }
    if ((x = json_object_get(v, "jitter"))) {
        if ((rc = take_number(ctx, join(p, path, "jitter"), x, &nb.jitter)))
            return rc;
        if (!(nb.jitter >= 0.0 && nb.jitter <= 1.0))
            return fail(ctx, "%s: must be between 0 and 1, got %g", p, nb.jitter);
    }
    json_t *max = json_object_get(v, "max_ms");
    if (max && (rc = take_ms(ctx, join(p, path, "max_ms"), max, 1, &nb.max_ms)))
        return rc;
    if (nb.max_ms < nb.initial_ms) {
        if (max)
            return fail(ctx, "%s: must be >= initial_ms (%" PRIu64 "), got %" PRIu64,
                        join(p, path, "max_ms"), nb.initial_ms, nb.max_ms);
        return fail(ctx, "%s: must be <= max_ms (%" PRIu64 "), got %" PRIu64,
                    join(p, path, "initial_ms"), nb.max_ms, nb.initial_ms);
    }
    *b = nb;
    return 0;
}

static int parse_health(parse_ctx *ctx, const char *path, json_t *v, char **service)
{
    const char *const *keys = health_keys;
    char p[PATH_LEN];
    int rc;
    if (!json_is_object(v))
        return wrong_type(ctx, path, v, "an object");
    if ((rc = check_keys(ctx, path, v, keys, 0)))
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
        return wrong_type(ctx, join(p, path, "grpc_service"), x, "a string or null");
    return take_string(ctx, p, x, service);
}

static int parse_option(parse_ctx *ctx, const char *path, const opt_field *f, json_t *v,
                        rsv_service_options *o)
{
    void *field = (char *)o + f->offset;
    uint64_t u;
    int rc;
    switch (f->kind) {
    case OPT_ENUM:
        return take_enum(ctx, path, v, f->en, field);
    case OPT_MS:
        return take_ms(ctx, path, v, f->min, (uint64_t *)field);
    case OPT_COUNT:
        if ((rc = take_uint(ctx, path, v, f->min, f->max ? f->max : UINT32_MAX, &u)))
            return rc;
        *(uint32_t *)field = (uint32_t)u;
        return 0;
    case OPT_BACKOFF:
        return parse_backoff(ctx, path, v, (rsv_backoff_config *)field);
    case OPT_HEALTH:
        return parse_health(ctx, path, v, (char **)field);
    }
    return RESOLVER_ERR_INTERNAL;
}

/* Applies the option keys present in obj to o (which holds what is
 * inherited).  Keys are looked up, not iterated, so that the order of keys
 * in the file never matters. */
static int parse_options(parse_ctx *ctx, const char *path, json_t *obj, rsv_service_options *o)
{
    char p[PATH_LEN];
    for (size_t i = 0; i < N_OPT_FIELDS; i++) {
        json_t *v = json_object_get(obj, opt_fields[i].key);
        int rc = v ? parse_option(ctx, join(p, path, opt_fields[i].key), &opt_fields[i], v, o) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- unknown keys ----------------------------------------------------- */

/* Edit distance, to suggest the key a typo meant. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[SUGGEST_KEY_MAX + 1];
    if (la > SUGGEST_KEY_MAX || lb > SUGGEST_KEY_MAX)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* key without case, '_' and '-': "keepaliveTimeMs" and "keepalive-time-ms"
 * are keepalive_time_ms written in another convention.  0 if too long. */
static int normalize_key(const char *key, char *out, size_t n)
{
    size_t j = 0;
    for (; *key; key++) {
        if (*key == '_' || *key == '-')
            continue;
        if (j + 1 >= n)
            return 0;
        out[j++] = (char)(*key >= 'A' && *key <= 'Z' ? *key - 'A' + 'a' : *key);
    }
    out[j] = '\0';
    return 1;
}

/* How far a typed key is from a known one: the edit distance, except that
 * a key that is the known one without its unit or suffix ("initial" for
 * "initial_ms", "password" for "password_file"), or the known one in
 * another case or separator convention, counts as one typo. */
static size_t key_distance(const char *key, const char *known)
{
    size_t lk = strlen(key), ln = strlen(known);
    if (lk >= 3 && lk < ln && strncmp(key, known, lk) == 0 && known[lk] == '_')
        return 1;
    char a[SUGGEST_KEY_MAX + 1], b[SUGGEST_KEY_MAX + 1];
    if (normalize_key(key, a, sizeof(a)) && normalize_key(known, b, sizeof(b)) && strcmp(a, b) == 0)
        return 1;
    return distance(key, known);
}

static void consider(const char *key, const char *candidate, const char **best, size_t *best_d)
{
    size_t d = key_distance(key, candidate);
    if (d < *best_d) {
        *best_d = d;
        *best = candidate;
    }
}

static int in_list(const char *const *list, const char *key)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], key) == 0)
            return 1;
    return 0;
}

/* A known key written one level off ("defaults.initial_ms" for
 * "defaults.backoff.initial_ms", a top-level "policy" for
 * "defaults.policy"): 1 with the full path it belongs at in out. */
static int misplaced(const char *path, const char *key, int with_options, char *out, size_t n)
{
    static const struct {
        const char *parent;
        const char *const *keys;
    } root_children[] = {{"etcd", etcd_keys}, {"socket", socket_keys}, {"metrics", metrics_keys}};
    const char *sep = *path ? "." : "";
    if (with_options && in_list(backoff_keys, key))
        return snprintf(out, n, "%s%sbackoff.%s", path, sep, key) > 0;
    if (with_options && in_list(health_keys, key))
        return snprintf(out, n, "%s%shealth_check.%s", path, sep, key) > 0;
    if (*path)
        return 0;
    if (opt_find(key))
        return snprintf(out, n, "defaults.%s", key) > 0;
    for (size_t i = 0; i < sizeof(root_children) / sizeof(root_children[0]); i++)
        if (in_list(root_children[i].keys, key))
            return snprintf(out, n, "%s.%s", root_children[i].parent, key) > 0;
    return 0;
}

static int check_keys(parse_ctx *ctx, const char *path, json_t *obj, const char *const *known,
                      int with_options)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int ok = with_options && opt_find(key);
        for (size_t i = 0; !ok && known && known[i]; i++)
            ok = strcmp(known[i], key) == 0;
        if (ok)
            continue;
        const char *best = NULL;
        size_t best_d = 3; /* only near misses are worth a suggestion */
        for (size_t i = 0; known && known[i]; i++)
            consider(key, known[i], &best, &best_d);
        for (size_t i = 0; with_options && i < N_OPT_FIELDS; i++)
            consider(key, opt_fields[i].key, &best, &best_d);
        char p[PATH_LEN], home[PATH_LEN];
        join(p, path, key);
        if (best)
            return fail(ctx, "unknown key \"%s\" (did you mean \"%s\"?)", p, best);
        if (misplaced(path, key, with_options, home, sizeof(home)))
            return fail(ctx, "unknown key \"%s\" (did you mean \"%s\"?)", p, home);
        return fail(ctx, "unknown key \"%s\"", p);
    }
    return 0;
}

/* ---- addresses -------------------------------------------------------- */

static int is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Checks "host:port", "[v6]:port" or "host" in s[0..n).  Returns NULL or a
 * static reason. */
static const char *hostport_check(const char *s, size_t n, int need_host, int need_port)
{
    const char *port = NULL;
    size_t hlen, plen = 0;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return "unterminated '[' in an IPv6 address";
        hlen = (size_t)(close - s - 1);
        for (size_t i = 1; i <= hlen; i++)
            if (!is_hex((unsigned char)s[i]) && s[i] != ':' && s[i] != '.')
                return "invalid IPv6 address";
        if (hlen == 0)
            return "empty IPv6 address";
        size_t rest = n - (size_t)(close + 1 - s);
        if (rest > 0 && close[1] != ':')
            return "unexpected text after ']'";
        if (rest > 0) {
            port = close + 2;
            plen = rest - 1;
        }
    } else {
        const char *colon = NULL;
        for (size_t i = 0; i < n; i++) {
            if (s[i] != ':')
                continue;
            if (colon)
                return "IPv6 addresses need brackets, e.g. [::1]:2379";
            colon = s + i;
        }
        hlen = colon ? (size_t)(colon - s) : n;
        for (size_t i = 0; i < hlen; i++)
            if (!is_alnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
                return "invalid character in host name";
        if (colon) {
            port = colon + 1;
            plen = n - hlen - 1;
        }
    }
    if (need_host && hlen == 0)
        return "missing host";
    if (!port)
        return need_port ? "missing port" : NULL;
    unsigned long value = 0;
    if (plen == 0 || plen > 5)
        return "port must be 1..65535";
    for (size_t i = 0; i < plen; i++) {
        if (port[i] < '0' || port[i] > '9')
            return "port must be 1..65535";
        value = value * 10 + (unsigned long)(port[i] - '0');
    }
    return value >= 1 && value <= 65535 ? NULL : "port must be 1..65535";
}

/* Validates an etcd endpoint URL.  Only scheme://host[:port][/] is taken:
 * the etcd client appends its own paths, and credentials belong in
 * etcd.username/password_file, not in a URL that ends up in logs.  On
 * success *keep is the length without the trailing '/'. */
static int url_check(const char *url, size_t *keep, char *why, size_t whylen)
{
    size_t skip;
    if (strncasecmp(url, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        skip = 8;
    else {
        snprintf(why, whylen, "\"%s\" is not an http:// or https:// URL", url);
        return -1;
    }
    const char *auth = url + skip;
    size_t n = strlen(auth);
    if (n > 0 && auth[n - 1] == '/')
        n--;
    const char *reason = NULL;
    if (memchr(auth, '@', n))
        reason = "user names go in etcd.username, not in the URL";
    else if (memchr(auth, '/', n) || memchr(auth, '?', n) || memchr(auth, '#', n))
        reason = "only scheme://host[:port] is allowed, without a path";
    else
        reason = hostport_check(auth, n, 1, 0);
    if (reason) {
        snprintf(why, whylen, "\"%s\" is not a valid URL: %s", url, reason);
        return -1;
    }
    *keep = skip + n;
    return 0;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void set_endpoint_list(resolver_config *cfg, char **list, size_t n)
{
    strv_free(cfg->etcd.endpoints, cfg->etcd.n_endpoints);
    cfg->etcd.endpoints = list;
    cfg->etcd.n_endpoints = n;
}

/* ---- sections --------------------------------------------------------- */

static int parse_endpoints(parse_ctx *ctx, const char *path, json_t *v, resolver_config *cfg)
{
    if (!json_is_array(v))
        return wrong_type(ctx, path, v, "an array of URLs");
    size_t n = json_array_size(v);
    if (n == 0)
        return fail(ctx, "%s: must list at least one URL", path);
    char **list = calloc(n, sizeof(*list));
    if (!list)
        return nomem(ctx);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char p[PATH_LEN], why[PATH_LEN + VALUE_LEN];
        json_t *x = json_array_get(v, i);
        size_t keep;
        join_index(p, path, i);
        if (!json_is_string(x))
            rc = wrong_type(ctx, p, x, "a URL string");
        else if (url_check(json_string_value(x), &keep, why, sizeof(why)))
            rc = fail(ctx, "%s: %s", p, why);
        else if (!(list[i] = strndup(json_string_value(x), keep)))
            rc = nomem(ctx);
    }
    if (rc) {
        strv_free(list, n);
        return rc;
    }
    set_endpoint_list(cfg, list, n);
    return 0;
}

/* systemd's LoadCredential= puts files in $CREDENTIALS_DIRECTORY, a path
 * known only once the service runs: a relative file name is looked up there
 * when it is set, and a name may start with "$CREDENTIALS_DIRECTORY/" (or
 * "${CREDENTIALS_DIRECTORY}/") to require it. */
static int resolve_credential(parse_ctx *ctx, const char *path, char **file)
{
    static const char *const vars[] = {"$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"};
    const char *f = *file, *rest = NULL;
    if (!*f)
        return 0;
    for (size_t i = 0; i < 2 && !rest; i++)
        if (strncmp(f, vars[i], strlen(vars[i])) == 0)
            rest = f + strlen(vars[i]);
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (rest && (!dir || !*dir))
        return fail(ctx,
                    "%s: \"%s\" names $CREDENTIALS_DIRECTORY, which is not set (systemd sets it "
                    "for a unit with LoadCredential=)",
                    path, f);
    if (!rest) {
        if (f[0] == '/' || !dir || !*dir)
            return 0;
        rest = f;
    }
    size_t n = strlen(dir) + 1 + strlen(rest) + 1;
    char *joined = malloc(n);
    if (!joined)
        return nomem(ctx);
    snprintf(joined, n, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", rest);
    free(*file);
    *file = joined;
    return 0;
}

static int parse_etcd(parse_ctx *ctx, json_t *v, resolver_config *cfg)
{
    const char *const *keys = etcd_keys;
    const struct {
        const char *key;
        char **dst;
    } strings[] = {
        {"username", &cfg->etcd.username}, {"password_file", &cfg->etcd.password_file},
        {"ca_file", &cfg->etcd.ca_file},   {"cert_file", &cfg->etcd.cert_file},
        {"key_file", &cfg->etcd.key_file},
    };
    char p[PATH_LEN];
    json_t *x;
    int rc;
    if (!json_is_object(v))
        return wrong_type(ctx, "etcd", v, "an object");
    if ((rc = check_keys(ctx, "etcd", v, keys, 0)))
        return rc;
    if ((x = json_object_get(v, "endpoints")) &&
        (rc = parse_endpoints(ctx, "etcd.endpoints", x, cfg)))
        return rc;
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        if ((x = json_object_get(v, strings[i].key)) &&
            (rc = take_string(ctx, join(p, "etcd", strings[i].key), x, strings[i].dst)))
            return rc;
    for (size_t i = 1; i < sizeof(strings) / sizeof(strings[0]); i++) /* the files */
        if ((rc = resolve_credential(ctx, join(p, "etcd", strings[i].key), strings[i].dst)))
            return rc;
    if ((x = json_object_get(v, "dial_timeout_ms")) &&
        (rc = take_ms(ctx, "etcd.dial_timeout_ms", x, 1, &cfg->etcd.dial_timeout_ms)))
        return rc;
    /* A client certificate is useless without its key and the reverse. */
    if (!*cfg->etcd.cert_file != !*cfg->etcd.key_file)
        return fail(ctx, "%s: set without %s",
                    *cfg->etcd.cert_file ? "etcd.cert_file" : "etcd.key_file",
                    *cfg->etcd.cert_file ? "etcd.key_file" : "etcd.cert_file");
    return 0;
}

/* "0660" (octal, as chmod takes it) or a JSON integer. */
static int parse_mode(parse_ctx *ctx, const char *path, const json_t *v, unsigned *mode)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > 0777)
            return fail(ctx,
                        "%s: must be in 0..511 (0..0777 in octal), got %" JSON_INTEGER_FORMAT
                        "; write modes as octal strings such as \"0660\"",
                        path, i);
        *mode = (unsigned)i;
        return 0;
    }
    if (!json_is_string(v))
        return wrong_type(ctx, path, v, "an octal string such as \"0660\"");
    const char *s = json_string_value(v);
    size_t n = strlen(s);
    unsigned value = 0;
    int ok = n >= 1 && n <= 6; /* "01777" is octal too, just out of range */
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i] >= '0' && s[i] <= '7';
        value = value * 8 + (unsigned)(s[i] - '0');
    }
    if (!ok)
        return fail(ctx, "%s: \"%s\" is not an octal mode such as \"0660\"", path, s);
    if (value > 0777)
        return fail(ctx, "%s: must be at most 0777, got \"%s\"", path, s);
    *mode = value;
    return 0;
}

static int parse_socket(parse_ctx *ctx, json_t *v, resolver_config *cfg)
{
    const char *const *keys = socket_keys;
    json_t *x;
    int rc;
    if (!json_is_object(v))
        return wrong_type(ctx, "socket", v, "an object");
    if ((rc = check_keys(ctx, "socket", v, keys, 0)))
        return rc;
    if ((x = json_object_get(v, "path"))) {
        if ((rc = take_string(ctx, "socket.path", x, &cfg->socket.path)))
            return rc;
        size_t n = strlen(cfg->socket.path);
        if (n == 0)
            return fail(ctx, "socket.path: must not be empty");
        if (n >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return fail(
                ctx, "socket.path: \"%s\" is too long for a Unix socket (%zu bytes, at most %zu)",
                cfg->socket.path, n, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    }
    if ((x = json_object_get(v, "mode")) &&
        (rc = parse_mode(ctx, "socket.mode", x, &cfg->socket.mode)))
        return rc;
    if ((x = json_object_get(v, "group")) &&
        (rc = take_string(ctx, "socket.group", x, &cfg->socket.group)))
        return rc;
    if ((x = json_object_get(v, "admin_group")) &&
        (rc = take_string(ctx, "socket.admin_group", x, &cfg->socket.admin_group)))
        return rc;
    uint64_t u;
    if ((x = json_object_get(v, "max_detached_tickets"))) {
        if ((rc = take_uint(ctx, "socket.max_detached_tickets", x, 0, 100000000, &u)))
            return rc;
        cfg->socket.max_detached_tickets = (uint32_t)u;
    }
    return 0;
}

static int parse_metrics(parse_ctx *ctx, json_t *v, resolver_config *cfg)
{
    const char *const *keys = metrics_keys;
    json_t *x;
    int rc;
    if (!json_is_object(v))
        return wrong_type(ctx, "metrics", v, "an object");
    if ((rc = check_keys(ctx, "metrics", v, keys, 0)))
        return rc;
    if (!(x = json_object_get(v, "listen")))
        return 0;
    if ((rc = take_string(ctx, "metrics.listen", x, &cfg->metrics.listen)))
        return rc;
    const char *s = cfg->metrics.listen;
    const char *why = *s ? hostport_check(s, strlen(s), 0, 1) : NULL; /* "": disabled */
    if (why)
        return fail(ctx, "metrics.listen: \"%s\" is not HOST:PORT or :PORT: %s", s, why);
    return 0;
}

/* The length of the well-formed UTF-8 sequence of a non-ASCII code point
 * at s (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF), or
 * 0. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (len == 0 || len > left || s[0] < 0xc2 || s[0] > 0xf4)
        return 0;
    uint32_t cp = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* ---- dns: the name servers of instance host names (dns.h) ---- */

static int parse_dns_servers(parse_ctx *ctx, json_t *v, resolver_config *cfg)
{
    if (!json_is_array(v))
        return wrong_type(ctx, "dns.servers", v, "an array of addresses");
    size_t n = json_array_size(v);
    char **list = n ? calloc(n, sizeof(*list)) : NULL;
    if (n && !list)
        return nomem(ctx);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char p[PATH_LEN];
        json_t *x = json_array_get(v, i);
        join_index(p, "dns.servers", i);
        if (!json_is_string(x))
            rc = wrong_type(ctx, p, x, "an address string");
        else if (!rsv_dns_server_valid(json_string_value(x)))
            rc = fail(ctx, "%s: \"%s\" is not IP, IP:PORT or [IPv6]:PORT", p, json_string_value(x));
        else if (!(list[i] = strdup(json_string_value(x))))
            rc = nomem(ctx);
    }
    if (rc) {
        strv_free(list, n);
        return rc;
    }
    strv_free(cfg->dns.servers, cfg->dns.n_servers);
    cfg->dns.servers = list;
    cfg->dns.n_servers = n;
    return 0;
}

static int parse_dns(parse_ctx *ctx, json_t *v, resolver_config *cfg)
{
    static const char *const keys[] = {"servers", NULL};
    json_t *x;
    int rc;
    if (!json_is_object(v))
        return wrong_type(ctx, "dns", v, "an object");
    if ((rc = check_keys(ctx, "dns", v, keys, 0)))
        return rc;
    if ((x = json_object_get(v, "servers")) && (rc = parse_dns_servers(ctx, x, cfg)))
        return rc;
    return 0;
}

static void dns_config_free(resolver_config *cfg)
{
    strv_free(cfg->dns.servers, cfg->dns.n_servers);
    cfg->dns.servers = NULL;
    cfg->dns.n_servers = 0;
}

int rsv_config_dns_equal(const resolver_config *a, const resolver_config *b)
{
    if (a->dns.n_servers != b->dns.n_servers)
        return 0;
    for (size_t i = 0; i < a->dns.n_servers; i++)
        if (!str_equal(a->dns.servers[i], b->dns.servers[i]))
            return 0;
    return 1;
}

static json_t *jstr(const char *s);

/* {"servers": [...]}; NULL when out of memory. */
static json_t *dns_to_json(const resolver_config *cfg)
{
    json_t *servers = json_array();
    for (size_t i = 0; servers && i < cfg->dns.n_servers; i++)
        if (json_array_append_new(servers, jstr(cfg->dns.servers[i]))) {
            json_decref(servers);
            servers = NULL;
        }
    return servers ? json_pack("{s:o}", "servers", servers) : NULL;
}

int rsv_service_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > RSV_SERVICE_NAME_MAX)
        return 0;
    /* Names travel in protocol lines, log lines, JSON and metric labels:
     * a small alphabet keeps every one of them free of escaping bugs. */
    const unsigned char *s = (const unsigned char *)name;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t len = utf8_sequence(s + i, n - i);
            if (!len)
                return 0;
            i += len;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(RSV_SERVICE_NAME_PUNCT, c)))
            return 0;
        i++;
    }
    return 1;
}

static int parse_service(parse_ctx *ctx, const char *path, json_t *v,
                         const rsv_service_options *defaults, rsv_service_config *svc)
{
    static const char *const keys[] = {"name", "prefix", NULL};
    char p[PATH_LEN];
    json_t *x;
    int rc;
    if (!json_is_object(v))
        return wrong_type(ctx, path, v, "an object");
    if ((rc = check_keys(ctx, path, v, keys, 1)))
        return rc;
    if (!(x = json_object_get(v, "name")))
        return fail(ctx, "%s: missing required key \"name\"", path);
    if ((rc = take_string(ctx, join(p, path, "name"), x, &svc->name)))
        return rc;
    if (!rsv_service_name_valid(svc->name))
        return fail(ctx,
                    "%s: invalid service name \"%s\" (1..%d bytes of letters, digits, "
                    "%s and non-ASCII UTF-8)",
                    p, svc->name, RSV_SERVICE_NAME_MAX, RSV_SERVICE_NAME_PUNCT);
    if ((x = json_object_get(v, "prefix"))) {
        if ((rc = take_string(ctx, join(p, path, "prefix"), x, &svc->prefix)))
            return rc;
        /* An empty prefix would watch the whole etcd keyspace. */
        if (!*svc->prefix)
            return fail(ctx, "%s: must not be empty", p);
    } else {
        size_t n = strlen(svc->name);
        if (!(svc->prefix = malloc(n + 2)))
            return nomem(ctx);
        memcpy(svc->prefix, svc->name, n);
        memcpy(svc->prefix + n, "/", 2); /* go-zero's convention: NAME/ */
    }
    if (rsv_service_options_copy(&svc->options, defaults))
        return nomem(ctx);
    return parse_options(ctx, path, v, &svc->options);
}

static int parse_services(parse_ctx *ctx, json_t *v, resolver_config *cfg)
{
    if (!json_is_array(v))
        return wrong_type(ctx, "services", v, "an array");
    size_t n = json_array_size(v);
    if (n == 0)
        return 0;
    if (!(cfg->services = calloc(n, sizeof(*cfg->services))))
        return nomem(ctx);
    for (size_t i = 0; i < n; i++) {
        char p[PATH_LEN];
        rsv_service_config *svc = &cfg->services[i];
        cfg->n_services = i + 1; /* counted before parsing: free releases partial work */
        int rc = parse_service(ctx, join_index(p, "services", i), json_array_get(v, i),
                               &cfg->defaults, svc);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->services[j].name, svc->name) == 0)
                return fail(ctx, "services[%zu].name: duplicate service \"%s\" (see services[%zu])",
                            i, svc->name, j);
    }
    return 0;
}

/* ---- registrations ("register") --------------------------------------- */

#define REGISTRATION_WEIGHT_MAX 1000000
/* etcd counts lease TTLs in whole seconds and raises short ones to its own
 * minimum (about 2 s): below 1 s is a mistake, not a wish. */
#define REGISTRATION_TTL_MIN_MS 1000

void rsv_registration_default(rsv_registration_config *r)
{
    memset(r, 0, sizeof(*r));
    r->format = RSV_FORMAT_GOZERO;
    r->ttl_ms = 10000;
    r->weight = 1;
}

void rsv_registration_clear(rsv_registration_config *r)
{
    free(r->service);
    free(r->address);
    free(r->zone);
    free(r->metadata);
    free(r->key);
    free(r->health_check);
    rsv_registration_default(r);
}

static int dup_or_empty(char **dst, const char *src)
{
    return (*dst = strdup(src ? src : "")) ? 0 : RESOLVER_ERR_NOMEM;
}

int rsv_registration_copy(rsv_registration_config *dst, const rsv_registration_config *src)
{
    *dst = *src;
    dst->service = dst->address = dst->zone = dst->metadata = dst->key = dst->health_check = NULL;
    if (dup_or_empty(&dst->service, src->service) || dup_or_empty(&dst->address, src->address) ||
        dup_or_empty(&dst->zone, src->zone) || dup_or_empty(&dst->metadata, src->metadata) ||
        dup_or_empty(&dst->key, src->key) ||
        (src->health_check && dup_or_empty(&dst->health_check, src->health_check))) {
        rsv_registration_clear(dst);
        return RESOLVER_ERR_NOMEM;
    }
    return 0;
}

int rsv_registration_equal(const rsv_registration_config *a, const rsv_registration_config *b)
{
    return str_equal(a->service, b->service) && str_equal(a->address, b->address) &&
           a->format == b->format && a->ttl_ms == b->ttl_ms && a->weight == b->weight &&
           str_equal(a->zone, b->zone) && str_equal(a->metadata, b->metadata) &&
           str_equal(a->key, b->key) && !a->health_check == !b->health_check &&
           (!a->health_check || strcmp(a->health_check, b->health_check) == 0);
}

/* The checks each part of a registration gets, wherever it comes from.
 * NULL or a static reason. */
static const char *registration_address_check(const char *address, char *canon, size_t n, char *why,
                                              size_t whylen)
{
    rsv_endpoint ep;
    if (rsv_address_parse(address, strlen(address), &ep, why, whylen) != 0)
        return why;
    snprintf(canon, n, "%s", ep.address);
    return NULL;
}

static const char *registration_format_check(const char *name, rsv_format *out)
{
    if (rsv_format_parse(name, out) != 0)
        return "not one of gozero, etcd_naming, kratos, kitex, native";
    if (*out == RSV_FORMAT_AUTO)
        return "\"auto\" reads any format but cannot write one: name the format to write";
    return NULL;
}

static const char *registration_zone_check(const char *zone)
{
    if (strlen(zone) >= RSV_ZONE_MAX)
        return "longer than 63 bytes";
    for (const char *p = zone; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return "control character";
    return NULL;
}

/* Metadata is a map of strings in every framework that has one (Kratos
 * metadata, Kitex tags): anything else could not be written in all formats. */
static const char *registration_metadata_check(json_t *v)
{
    const char *k;
    json_t *x;
    if (!json_is_object(v))
        return "expected an object of strings";
    json_object_foreach(v, k, x) if (!json_is_string(x)) return "every value must be a string";
    return NULL;
}

int rsv_registration_build(rsv_registration_config *out, const char *service, const char *address,
                           const char *format, uint64_t ttl_ms, uint32_t weight, const char *zone,
                           const char *metadata, const char *key, char *why, size_t whylen)
{
    const char *bad = NULL, *what = "";
    char canon[300], reason[128];
    rsv_registration_config r;
    rsv_registration_default(&r);
    json_t *meta = NULL;
    if (!service || !rsv_service_name_valid(service))
        what = "service", bad = "invalid service name";
    else if (!address || (bad = registration_address_check(address, canon, sizeof(canon), reason,
                                                           sizeof(reason))))
        what = "address", bad = bad ? bad : "missing";
    else if (format && (bad = registration_format_check(format, &r.format)))
        what = "format";
    else if (ttl_ms && (ttl_ms < REGISTRATION_TTL_MIN_MS || ttl_ms > MS_MAX))
        what = "ttl_ms", bad = "must be 1000..86400000";
    else if (weight > REGISTRATION_WEIGHT_MAX)
        what = "weight", bad = "must be 1..1000000";
    else if (zone && (bad = registration_zone_check(zone)))
        what = "zone";
    else if (key && !*key)
        what = "key", bad = "must not be empty";
    else if (metadata && *metadata) {
        meta = json_loads(metadata, JSON_REJECT_DUPLICATES, NULL);
        if ((bad = meta ? registration_metadata_check(meta) : "not JSON"))
            what = "metadata";
    }
    if (bad) {
        json_decref(meta);
        snprintf(why, whylen, "%s: %s", what, bad);
        return RESOLVER_ERR_INVALID;
    }
    r.service = (char *)service;
    r.address = canon;
    r.ttl_ms = ttl_ms ? ttl_ms : r.ttl_ms;
    r.weight = weight ? weight : 1;
    r.zone = (char *)zone;
    char *compact = json_object_size(meta) ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(meta);
    r.metadata = compact;
    r.key = (char *)key;
    int rc = rsv_registration_copy(out, &r);
    free(compact);
    if (rc)
        snprintf(why, whylen, "out of memory");
    return rc;
}

static int take_registration_string(parse_ctx *ctx, const char *path, json_t *v, const char *name,
                                    char **dst)
{
    char p[PATH_LEN];
    json_t *x = json_object_get(v, name);
    return x ? take_string(ctx, join(p, path, name), x, dst) : 0;
}

static int parse_registration_parts(parse_ctx *ctx, const char *path, json_t *v,
                                    rsv_registration_config *r)
{
    char p[PATH_LEN], canon[300];
    const char *bad;
    json_t *x;
    uint64_t u;
    int rc;
    if (!json_object_get(v, "service"))
        return fail(ctx, "%s: missing required key \"service\"", path);
    if (!json_object_get(v, "address"))
        return fail(ctx, "%s: missing required key \"address\"", path);
    if ((rc = take_registration_string(ctx, path, v, "service", &r->service)) ||
        (rc = take_registration_string(ctx, path, v, "address", &r->address)) ||
        (rc = take_registration_string(ctx, path, v, "zone", &r->zone)) ||
        (rc = take_registration_string(ctx, path, v, "key", &r->key)))
        return rc;
    if (!rsv_service_name_valid(r->service))
        return fail(ctx, "%s: invalid service name \"%s\"", join(p, path, "service"), r->service);
    char reason[128];
    if ((bad =
             registration_address_check(r->address, canon, sizeof(canon), reason, sizeof(reason))))
        return fail(ctx, "%s: \"%s\": %s", join(p, path, "address"), r->address, bad);
    free(r->address);
    if (!(r->address = strdup(canon)))
        return nomem(ctx);
    if ((x = json_object_get(v, "format"))) {
        join(p, path, "format");
        if (!json_is_string(x))
            return wrong_type(ctx, p, x, "a string");
        if ((bad = registration_format_check(json_string_value(x), &r->format)))
            return fail(ctx, "%s: \"%s\": %s", p, json_string_value(x), bad);
    }
    if ((x = json_object_get(v, "ttl_ms")) &&
        (rc = take_ms(ctx, join(p, path, "ttl_ms"), x, REGISTRATION_TTL_MIN_MS, &r->ttl_ms)))
        return rc;
    if ((x = json_object_get(v, "weight"))) {
        if ((rc = take_uint(ctx, join(p, path, "weight"), x, 1, REGISTRATION_WEIGHT_MAX, &u)))
            return rc;
        r->weight = (uint32_t)u;
    }
    if (r->zone && (bad = registration_zone_check(r->zone)))
        return fail(ctx, "%s: \"%s\": %s", join(p, path, "zone"), r->zone, bad);
    if (r->key && !*r->key)
        return fail(ctx, "%s: must not be empty", join(p, path, "key"));
    if ((x = json_object_get(v, "metadata"))) {
        if ((bad = registration_metadata_check(x)))
            return fail(ctx, "%s: %s", join(p, path, "metadata"), bad);
        /* {} is kept as "" (none), as written back by rsv_config_to_json. */
        if (!(r->metadata =
                  json_object_size(x) ? json_dumps(x, JSON_COMPACT | JSON_SORT_KEYS) : strdup("")))
            return nomem(ctx);
    }
    /* The same object as a service's: {"grpc_service": ""} for the whole
     * server, a name for one service, null for none. */
    if ((x = json_object_get(v, "health_check")) &&
        (rc = parse_health(ctx, join(p, path, "health_check"), x, &r->health_check)))
        return rc;
    return 0;
}

static int parse_registration(parse_ctx *ctx, const char *path, json_t *v,
                              rsv_registration_config *r)
{
    static const char *const keys[] = {"service", "address",  "format", "ttl_ms",       "weight",
                                       "zone",    "metadata", "key",    "health_check", NULL};
    int rc;
    if (!json_is_object(v))
        return wrong_type(ctx, path, v, "an object");
    if ((rc = check_keys(ctx, path, v, keys, 0)))
        return rc;
    rc = parse_registration_parts(ctx, path, v, r);
    /* Unset strings are "" like everywhere else in the config. */
    if (!rc && ((!r->zone && dup_or_empty(&r->zone, "")) ||
                (!r->metadata && dup_or_empty(&r->metadata, "")) ||
                (!r->key && dup_or_empty(&r->key, ""))))
        return nomem(ctx);
    return rc;
}

static int parse_registrations(parse_ctx *ctx, json_t *v, resolver_config *cfg)
{
    if (!json_is_array(v))
        return wrong_type(ctx, "register", v, "an array");
    size_t n = json_array_size(v);
    if (n == 0)
        return 0;
    if (!(cfg->registrations = calloc(n, sizeof(*cfg->registrations))))
        return nomem(ctx);
    for (size_t i = 0; i < n; i++) {
        char p[PATH_LEN];
        rsv_registration_config *r = &cfg->registrations[i];
        rsv_registration_default(r);
        cfg->n_registrations = i + 1;
        int rc = parse_registration(ctx, join_index(p, "register", i), json_array_get(v, i), r);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->registrations[j].service, r->service) == 0 &&
                strcmp(cfg->registrations[j].address, r->address) == 0)
                return fail(ctx, "register[%zu]: duplicate of register[%zu] (%s %s)", i, j,
                            r->service, r->address);
    }
    return 0;
}

static int parse_root(parse_ctx *ctx, json_t *root, resolver_config *cfg)
{
    static const char *const keys[] = {"etcd",
                                       "socket",
                                       "metrics",
                                       "zone",
                                       "cache_file",
                                       "on_demand_services_max",
                                       "defaults",
                                       "services",
                                       "dns",
                                       "register",
                                       "deregister_grace_ms",
                                       NULL};
    json_t *x;
    uint64_t u;
    int rc;
    if (!json_is_object(root))
        return wrong_type(ctx, "configuration", root, "a JSON object");
    if ((rc = check_keys(ctx, "", root, keys, 0)))
        return rc;
    if ((x = json_object_get(root, "etcd")) && (rc = parse_etcd(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "socket")) && (rc = parse_socket(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "metrics")) && (rc = parse_metrics(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "dns")) && (rc = parse_dns(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "zone"))) {
        if ((rc = take_string(ctx, "zone", x, &cfg->zone)))
            return rc;
        /* Instance zones are compared against it and hold at most this much. */
        if (strlen(cfg->zone) >= RSV_ZONE_MAX)
            return fail(ctx, "zone: \"%s\" is longer than %d bytes", cfg->zone, RSV_ZONE_MAX - 1);
    }
    if ((x = json_object_get(root, "cache_file")) &&
        (rc = take_string(ctx, "cache_file", x, &cfg->cache_file)))
        return rc;
    if ((x = json_object_get(root, "on_demand_services_max"))) {
        if ((rc = take_uint(ctx, "on_demand_services_max", x, 0, UINT32_MAX, &u)))
            return rc;
        cfg->on_demand_services_max = (uint32_t)u;
    }
    /* Defaults before services, whatever their order in the file: services
     * inherit from them. */
    if ((x = json_object_get(root, "defaults"))) {
        if (!json_is_object(x))
            return wrong_type(ctx, "defaults", x, "an object");
        if ((rc = check_keys(ctx, "defaults", x, NULL, 1)) ||
            (rc = parse_options(ctx, "defaults", x, &cfg->defaults)))
            return rc;
    }
    if ((x = json_object_get(root, "services")) && (rc = parse_services(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "register")) && (rc = parse_registrations(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "deregister_grace_ms")) &&
        (rc = take_ms(ctx, "deregister_grace_ms", x, 0, &cfg->deregister_grace_ms)))
        return rc;
    return 0;
}

/* ---- public: building, loading, freeing -------------------------------- */

void resolver_config_free(resolver_config *cfg)
{
    if (!cfg)
        return;
    strv_free(cfg->etcd.endpoints, cfg->etcd.n_endpoints);
    free(cfg->etcd.username);
    free(cfg->etcd.password_file);
    free(cfg->etcd.ca_file);
    free(cfg->etcd.cert_file);
    free(cfg->etcd.key_file);
    free(cfg->socket.path);
    free(cfg->socket.group);
    free(cfg->socket.admin_group);
    free(cfg->metrics.listen);
    dns_config_free(cfg);
    free(cfg->zone);
    free(cfg->cache_file);
    rsv_service_options_clear(&cfg->defaults);
    for (size_t i = 0; i < cfg->n_services; i++) {
        free(cfg->services[i].name);
        free(cfg->services[i].prefix);
        rsv_service_options_clear(&cfg->services[i].options);
    }
    free(cfg->services);
    for (size_t i = 0; i < cfg->n_registrations; i++)
        rsv_registration_clear(&cfg->registrations[i]);
    free(cfg->registrations);
    free(cfg);
}

int resolver_config_new_default(resolver_config **out)
{
    if (!out)
        return RESOLVER_ERR_INVALID;
    *out = NULL;
    resolver_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return RESOLVER_ERR_NOMEM;
    const struct {
        char **dst;
        const char *value;
    } strings[] = {
        {&cfg->etcd.username, ""},  {&cfg->etcd.password_file, ""},
        {&cfg->etcd.ca_file, ""},   {&cfg->etcd.cert_file, ""},
        {&cfg->etcd.key_file, ""},  {&cfg->socket.path, "/run/resolverd/resolverd.sock"},
        {&cfg->socket.group, ""},   {&cfg->socket.admin_group, ""},
        {&cfg->metrics.listen, ""}, {&cfg->zone, ""},
        {&cfg->cache_file, ""},
    };
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        if (!(*strings[i].dst = strdup(strings[i].value)))
            goto fail;
    if (!(cfg->etcd.endpoints = calloc(1, sizeof(char *))) ||
        !(cfg->etcd.endpoints[0] = strdup("http://127.0.0.1:2379")))
        goto fail;
    cfg->etcd.n_endpoints = 1;
    cfg->etcd.dial_timeout_ms = 2000;
    cfg->socket.mode = 0660;
    cfg->socket.max_detached_tickets = 10000;
    cfg->on_demand_services_max = 256;
    cfg->deregister_grace_ms = 2000;
    rsv_service_options_default(&cfg->defaults);
    *out = cfg;
    return 0;
fail:
    resolver_config_free(cfg); /* endpoints: n_endpoints is still 0 */
    return RESOLVER_ERR_NOMEM;
}

static int load_text(parse_ctx *ctx, const char *text, size_t len, resolver_config **out)
{
    /* Zeroed: when jansson's first allocation fails it sets text[0] but not
     * the code byte json_error_code() reads (valgrind: uninitialised). */
    json_error_t jerr;
    memset(&jerr, 0, sizeof(jerr));
    /* Duplicate keys are rejected: with two "policy" keys only one would win,
     * silently. */
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        /* jansson leaves the error empty when its first allocation fails. */
        if (json_error_code(&jerr) == json_error_out_of_memory || !jerr.text[0])
            return nomem(ctx);
        return fail(ctx, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                    jerr.text);
    }
    resolver_config *cfg = NULL;
    int rc = resolver_config_new_default(&cfg);
    if (rc) {
        rc = nomem(ctx);
        goto out;
    }
    rc = parse_root(ctx, root, cfg);
    if (rc) {
        resolver_config_free(cfg);
        cfg = NULL;
    }
out:
    json_decref(root);
    *out = cfg;
    return rc;
}

int resolver_config_load_string(const char *json, resolver_config **out, char *err, size_t errlen)
{
    parse_ctx ctx = {err, errlen, NULL};
    if (err && errlen)
        err[0] = '\0';
    if (out)
        *out = NULL;
    if (!json || !out)
        return report(&ctx, RESOLVER_ERR_INVALID, "no configuration text or no output");
    return load_text(&ctx, json, strlen(json), out);
}

/* Reads a whole file, keeping errno of the failing call for the caller. */
static int read_file(parse_ctx *ctx, const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf = NULL;
    size_t used = 0, cap = 0;
    int rc = 0, e;
    if (!f)
        goto io;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        goto io;
    }
    for (;;) {
        if (used == cap) {
            if (cap >= CONFIG_FILE_MAX) {
                rc = fail(ctx, "larger than %d bytes: not a configuration file", CONFIG_FILE_MAX);
                goto out;
            }
            char *n = realloc(buf, cap = cap ? cap * 2 : 4096);
            if (!n) {
                rc = nomem(ctx);
                goto out;
            }
            buf = n;
        }
        size_t got = fread(buf + used, 1, cap - used, f);
        used += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        goto io;
    fclose(f);
    *text = buf;
    *len = used;
    return 0;
io:
    e = errno;
    rc = report(ctx, RESOLVER_ERR_IO, "%s", strerror(e));
    errno = e;
out:
    e = errno;
    if (f)
        fclose(f);
    free(buf);
    errno = e;
    return rc;
}

int resolver_config_load_file(const char *path, resolver_config **out, char *err, size_t errlen)
{
    parse_ctx ctx = {err, errlen, path};
    char *text = NULL;
    size_t len = 0;
    if (err && errlen)
        err[0] = '\0';
    if (out)
        *out = NULL;
    if (!path || !out) {
        ctx.origin = NULL;
        return report(&ctx, RESOLVER_ERR_INVALID, "no file name or no output");
    }
    int rc = read_file(&ctx, path, &text, &len);
    if (rc)
        return rc;
    rc = load_text(&ctx, text, len, out);
    free(text);
    return rc;
}

int resolver_config_set_endpoints(resolver_config *cfg, const char *csv)
{
    if (!cfg || !csv)
        return RESOLVER_ERR_INVALID;
    size_t n = 1;
    for (const char *c = csv; *c; c++)
        n += *c == ',';
    char **list = calloc(n, sizeof(*list));
    if (!list)
        return RESOLVER_ERR_NOMEM;
    int rc = 0;
    const char *item = csv;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *end = strchr(item, ',');
        if (!end)
            end = item + strlen(item);
        const char *next = *end ? end + 1 : end;
        /* "a, b" as people type it on a command line. */
        while (item < end && (*item == ' ' || *item == '\t'))
            item++;
        while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        char why[256], *url = strndup(item, (size_t)(end - item));
        size_t keep;
        if (!url)
            rc = RESOLVER_ERR_NOMEM;
        else if (url_check(url, &keep, why, sizeof(why)))
            rc = RESOLVER_ERR_CONFIG;
        else
            url[keep] = '\0';
        list[i] = url;
        item = next;
    }
    if (rc) {
        strv_free(list, n);
        return rc;
    }
    set_endpoint_list(cfg, list, n);
    return 0;
}

const rsv_service_config *rsv_config_find_service(const resolver_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_services; i++)
        if (strcmp(cfg->services[i].name, name) == 0)
            return &cfg->services[i];
    return NULL;
}

int rsv_config_equal(const resolver_config *a, const resolver_config *b)
{
    if (a->etcd.n_endpoints != b->etcd.n_endpoints || a->n_services != b->n_services ||
        a->n_registrations != b->n_registrations ||
        a->deregister_grace_ms != b->deregister_grace_ms)
        return 0;
    for (size_t i = 0; i < a->n_registrations; i++)
        if (!rsv_registration_equal(&a->registrations[i], &b->registrations[i]))
            return 0;
    for (size_t i = 0; i < a->etcd.n_endpoints; i++)
        if (!str_equal(a->etcd.endpoints[i], b->etcd.endpoints[i]))
            return 0;
    for (size_t i = 0; i < a->n_services; i++) {
        const rsv_service_config *x = &a->services[i], *y = &b->services[i];
        if (!str_equal(x->name, y->name) || !str_equal(x->prefix, y->prefix) ||
            !rsv_service_options_equal(&x->options, &y->options))
            return 0;
    }
    return str_equal(a->etcd.username, b->etcd.username) &&
           str_equal(a->etcd.password_file, b->etcd.password_file) &&
           str_equal(a->etcd.ca_file, b->etcd.ca_file) &&
           str_equal(a->etcd.cert_file, b->etcd.cert_file) &&
           str_equal(a->etcd.key_file, b->etcd.key_file) &&
           a->etcd.dial_timeout_ms == b->etcd.dial_timeout_ms &&
           str_equal(a->socket.path, b->socket.path) && a->socket.mode == b->socket.mode &&
           str_equal(a->socket.group, b->socket.group) &&
           str_equal(a->socket.admin_group, b->socket.admin_group) &&
           a->socket.max_detached_tickets == b->socket.max_detached_tickets &&
           str_equal(a->metrics.listen, b->metrics.listen) && str_equal(a->zone, b->zone) &&
           str_equal(a->cache_file, b->cache_file) &&
           a->on_demand_services_max == b->on_demand_services_max && rsv_config_dns_equal(a, b) &&
           rsv_service_options_equal(&a->defaults, &b->defaults);
}

/* ---- the effective configuration as JSON ------------------------------ */

/* A string the caller may have set directly (not from JSON) need not be
 * UTF-8, which jansson refuses; such bytes become '?' rather than failing. */
static json_t *jstr(const char *s)
{
    if (!s)
        return json_string("");
    json_t *v = json_string(s);
    if (v)
        return v;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

static json_t *jint(uint64_t u)
{
    return json_integer((json_int_t)u);
}

static json_t *options_to_json(const rsv_service_options *o, json_t *obj)
{
    int bad = !obj;
    for (size_t i = 0; !bad && i < N_OPT_FIELDS; i++) {
        const opt_field *f = &opt_fields[i];
        const void *field = (const char *)o + f->offset;
        json_t *v = NULL;
        switch (f->kind) {
        case OPT_ENUM:
            v = json_string(f->en == ENUM_FORMAT   ? rsv_format_name(o->format)
                            : f->en == ENUM_POLICY ? rsv_policy_name(o->policy)
                                                   : rsv_protocol_name(o->protocol));
            break;
        case OPT_MS:
            v = jint(*(const uint64_t *)field);
            break;
        case OPT_COUNT:
            v = jint(*(const uint32_t *)field);
            break;
        case OPT_BACKOFF:
            v = json_pack("{s:I,s:f,s:f,s:I}", "initial_ms", (json_int_t)o->backoff.initial_ms,
                          "multiplier", o->backoff.multiplier, "jitter", o->backoff.jitter,
                          "max_ms", (json_int_t)o->backoff.max_ms);
            break;
        case OPT_HEALTH:
            v = json_pack("{s:o}", "grpc_service",
                          o->health_grpc_service ? jstr(o->health_grpc_service) : json_null());
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

static json_t *config_to_json(const resolver_config *cfg)
{
    char mode[16];
    snprintf(mode, sizeof(mode), "%04o", cfg->socket.mode);
    json_t *endpoints = json_array();
    for (size_t i = 0; endpoints && i < cfg->etcd.n_endpoints; i++)
        if (json_array_append_new(endpoints, jstr(cfg->etcd.endpoints[i]))) {
            json_decref(endpoints);
            endpoints = NULL;
        }
    json_t *services = json_array();
    for (size_t i = 0; services && i < cfg->n_services; i++) {
        const rsv_service_config *s = &cfg->services[i];
        json_t *obj = json_pack("{s:o,s:o}", "name", jstr(s->name), "prefix", jstr(s->prefix));
        if (json_array_append_new(services, options_to_json(&s->options, obj))) {
            json_decref(services);
            services = NULL;
        }
    }
    /* "o" steals each reference, and json_pack releases them on failure. */
    return json_pack(
        "{s:{s:o,s:o,s:o,s:o,s:o,s:o,s:o},s:{s:o,s:s,s:o,s:o,s:o},s:{s:o},s:o,s:o,s:o,s:o,s:o}",
        "etcd", "endpoints", endpoints, "username", jstr(cfg->etcd.username), "password_file",
        jstr(cfg->etcd.password_file), "ca_file", jstr(cfg->etcd.ca_file), "cert_file",
        jstr(cfg->etcd.cert_file), "key_file", jstr(cfg->etcd.key_file), "dial_timeout_ms",
        jint(cfg->etcd.dial_timeout_ms), "socket", "path", jstr(cfg->socket.path), "mode", mode,
        "group", jstr(cfg->socket.group), "admin_group", jstr(cfg->socket.admin_group),
        "max_detached_tickets", jint(cfg->socket.max_detached_tickets), "metrics", "listen",
        jstr(cfg->metrics.listen), "zone", jstr(cfg->zone), "cache_file", jstr(cfg->cache_file),
        "on_demand_services_max", jint(cfg->on_demand_services_max), "defaults",
        options_to_json(&cfg->defaults, json_object()), "services", services);
}

static json_t *registration_to_json(const rsv_registration_config *r)
{
    json_t *meta = r->metadata && *r->metadata ? json_loads(r->metadata, 0, NULL) : json_object();
    json_t *obj =
        json_pack("{s:o,s:o,s:s,s:o,s:o,s:o,s:o}", "service", jstr(r->service), "address",
                  jstr(r->address), "format", rsv_format_name(r->format), "ttl_ms", jint(r->ttl_ms),
                  "weight", jint(r->weight), "zone", jstr(r->zone), "metadata", meta);
    if (obj && r->health_check &&
        json_object_set_new(obj, "health_check",
                            json_pack("{s:o}", "grpc_service", jstr(r->health_check))) != 0) {
        json_decref(obj);
        return NULL;
    }
    if (obj && r->key && *r->key && json_object_set_new(obj, "key", jstr(r->key)) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static json_t *registrations_to_json(const resolver_config *cfg)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < cfg->n_registrations; i++)
        if (json_array_append_new(list, registration_to_json(&cfg->registrations[i]))) {
            json_decref(list);
            return NULL;
        }
    return list;
}

/* The fewest significant digits that print every real of cfg exactly, so
 * that 1.6 is written "1.6" and not "1.6000000000000001". */
static int real_precision(const resolver_config *cfg)
{
    int precision = 1;
    for (size_t i = 0; i <= cfg->n_services; i++) {
        const rsv_backoff_config *b =
            i < cfg->n_services ? &cfg->services[i].options.backoff : &cfg->defaults.backoff;
        const double reals[] = {b->multiplier, b->jitter};
        for (size_t j = 0; j < 2; j++) {
            char buf[64];
            for (;; precision++) {
                int n = snprintf(buf, sizeof(buf), "%.*g", precision, reals[j]);
                if (precision >= 17 || (n > 0 && strtod(buf, NULL) == reals[j]))
                    break;
            }
        }
    }
    return precision;
}

int rsv_config_to_json(const resolver_config *cfg, char **out)
{
    if (!cfg || !out)
        return RESOLVER_ERR_INVALID;
    *out = NULL;
    json_t *root = config_to_json(cfg);
    if (!root || json_object_set_new(root, "dns", dns_to_json(cfg)) != 0 ||
        json_object_set_new(root, "register", registrations_to_json(cfg)) != 0 ||
        json_object_set_new(root, "deregister_grace_ms", jint(cfg->deregister_grace_ms)) != 0) {
        json_decref(root);
        return RESOLVER_ERR_NOMEM;
    }
    *out = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(real_precision(cfg)));
    json_decref(root);
    return *out ? 0 : RESOLVER_ERR_NOMEM;
}
