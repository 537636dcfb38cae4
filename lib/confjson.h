/* confjson.h - what the configuration's parts share while reading JSON
 * (internal to config.c, confjson.c, confopts.c, confsections.c and
 * confregister.c; the rest of the library includes config.h only).
 *
 * Every reader takes a context and the full path of the value it reads
 * ("services[0].backoff.max_ms"), applies the value on top of what its
 * destination already holds, and on failure writes one message naming that
 * path and returns its code: RESOLVER_ERR_CONFIG for a bad value,
 * RESOLVER_ERR_NOMEM when an allocation fails. */
#ifndef RSV_CONFJSON_H
#define RSV_CONFJSON_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "config.h"

enum {
    RSV_CONF_PATH_LEN = 256,  /* longest key path kept for messages */
    RSV_CONF_VALUE_LEN = 128, /* longest value quoted in a message */
};

typedef struct {
    char *err;
    size_t errlen;
    const char *origin; /* the file being loaded, prefixed to messages; or NULL */
    int wanted_string;  /* set when a value was of another type where a string goes */
} rsv_conf_ctx;

/* ---- messages (confjson.c) ---- */
/* Writes the message (origin first, control characters as '?') and returns
 * code. */
int rsv_conf_report(rsv_conf_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* rsv_conf_report with RESOLVER_ERR_CONFIG. */
int rsv_conf_fail(rsv_conf_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int rsv_conf_nomem(rsv_conf_ctx *ctx);
/* dst (RSV_CONF_PATH_LEN bytes) = parent.key or parent[i], truncated; returns dst. */
const char *rsv_conf_join(char *dst, const char *parent, const char *key);
const char *rsv_conf_join_index(char *dst, const char *parent, size_t i);
/* "PATH: expected EXPECTED, got VALUE". */
int rsv_conf_wrong_type(rsv_conf_ctx *ctx, const char *path, const json_t *v, const char *expected);

/* ---- typed values (confjson.c) ---- */
/* Replaces *dst with a copy of the string v. */
int rsv_conf_take_string(rsv_conf_ctx *ctx, const char *path, const json_t *v, char **dst);
int rsv_conf_take_uint(rsv_conf_ctx *ctx, const char *path, const json_t *v, uint64_t min,
                       uint64_t max, uint64_t *out);
/* A duration in milliseconds, min..RSV_DURATION_MAX_MS. */
int rsv_conf_take_ms(rsv_conf_ctx *ctx, const char *path, const json_t *v, uint64_t min,
                     uint64_t *out);
int rsv_conf_take_number(rsv_conf_ctx *ctx, const char *path, const json_t *v, double *out);

/* The three enumerations behind one interface, so that option parsing and
 * the "expected one of" message are written once (confopts.c). */
typedef enum { RSV_CONF_ENUM_FORMAT, RSV_CONF_ENUM_POLICY, RSV_CONF_ENUM_PROTOCOL } rsv_conf_enum;
/* Stores through a pointer of the enum's own type: enums need not be ints. */
int rsv_conf_take_enum(rsv_conf_ctx *ctx, const char *path, const json_t *v, rsv_conf_enum k,
                       void *field);

/* ---- keys (confjson.c) ---- */
/* Where a key written one level off belongs: 1 with its full path in out
 * (n bytes), 0 if it belongs nowhere known.  Given by the layer that knows
 * the other objects' keys (confopts.c, config.c). */
typedef int (*rsv_conf_home_fn)(const char *path, const char *key, char *out, size_t n);
/* Checks that every key of obj is in `known` (NULL-terminated, or NULL) or
 * is also(i) for some i (also: further keys by index, NULL past their end;
 * or NULL); an unknown key fails with the nearest of these keys, else with
 * the place home (or NULL) says it belongs. */
int rsv_conf_check_keys(rsv_conf_ctx *ctx, const char *path, json_t *obj, const char *const *known,
                        const char *(*also)(size_t i), rsv_conf_home_fn home);
/* 1 if key is in list (NULL-terminated). */
int rsv_conf_in_list(const char *const *list, const char *key);
/* The keys of the sections, also consulted for a key written one level off
 * at the top (confsections.c, read by config.c). */
extern const char *const rsv_conf_etcd_keys[];
extern const char *const rsv_conf_socket_keys[];
extern const char *const rsv_conf_metrics_keys[];

/* Keeps candidate in *best if it is nearer to key than *best_d (then
 * lowered): the "did you mean" of keys and enumeration names. */
void rsv_conf_consider(const char *key, const char *candidate, const char **best, size_t *best_d);

/* ---- small shared pieces (confjson.c) ---- */
int rsv_conf_str_equal(const char *a, const char *b); /* NULL equals NULL only */
void rsv_conf_strv_free(char **v, size_t n);
/* *dst = a copy of src, "" for NULL; 0 or RESOLVER_ERR_NOMEM. */
int rsv_conf_dup_or_empty(char **dst, const char *src);
/* A JSON string of s ("" for NULL; bytes that are not UTF-8 become '?'). */
json_t *rsv_conf_jstr(const char *s);
json_t *rsv_conf_jint(uint64_t u);

/* ---- per-service options (confopts.c) ---- */
/* 1 if key is a per-service option key. */
int rsv_conf_opt_find(const char *key);
/* rsv_conf_check_keys for an object that also takes the per-service options
 * ("defaults", a service): a backoff or health_check key written directly in
 * it is pointed to its place. */
int rsv_conf_check_option_keys(rsv_conf_ctx *ctx, const char *path, json_t *obj,
                               const char *const *known);
/* Applies the option keys present in obj on top of o (what is inherited). */
int rsv_conf_parse_options(rsv_conf_ctx *ctx, const char *path, json_t *obj,
                           rsv_service_options *o);
/* A health_check object: {"grpc_service": "" | NAME | null}. */
int rsv_conf_parse_health(rsv_conf_ctx *ctx, const char *path, json_t *v, char **service);
/* Sets every option of o in obj; NULL (obj released) when out of memory. */
json_t *rsv_conf_options_to_json(const rsv_service_options *o, json_t *obj);

/* ---- sections (confsections.c) ---- */
int rsv_conf_parse_etcd(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg);
int rsv_conf_parse_socket(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg);
int rsv_conf_parse_metrics(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg);
int rsv_conf_parse_dns(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg);
/* An etcd endpoint URL: 0 with *keep its length without a trailing '/', or
 * -1 with a reason in why. */
int rsv_conf_url_check(const char *url, size_t *keep, char *why, size_t whylen);
/* Replaces cfg's endpoints with list (taken over). */
void rsv_conf_set_endpoint_list(resolver_config *cfg, char **list, size_t n);
void rsv_conf_dns_free(resolver_config *cfg);
/* {"servers": [...]}; NULL when out of memory. */
json_t *rsv_conf_dns_to_json(const resolver_config *cfg);

/* ---- registrations (confregister.c) ---- */
int rsv_conf_parse_registrations(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg);
json_t *rsv_conf_registrations_to_json(const resolver_config *cfg);

#endif
