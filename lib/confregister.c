/*
 * confregister.c - the local instances to publish in etcd (the "register"
 * list): defaults, the checks every part gets wherever it comes from (the
 * file, the CLI, the library), parsing, and writing back as JSON.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "confjson.h"

#define MS_MAX RSV_DURATION_MAX_MS

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

int rsv_registration_copy(rsv_registration_config *dst, const rsv_registration_config *src)
{
    *dst = *src;
    dst->service = dst->address = dst->zone = dst->metadata = dst->key = dst->health_check = NULL;
    if (rsv_conf_dup_or_empty(&dst->service, src->service) ||
        rsv_conf_dup_or_empty(&dst->address, src->address) ||
        rsv_conf_dup_or_empty(&dst->zone, src->zone) ||
        rsv_conf_dup_or_empty(&dst->metadata, src->metadata) ||
        rsv_conf_dup_or_empty(&dst->key, src->key) ||
        (src->health_check && rsv_conf_dup_or_empty(&dst->health_check, src->health_check))) {
        rsv_registration_clear(dst);
        return RESOLVER_ERR_NOMEM;
    }
    return 0;
}

int rsv_registration_equal(const rsv_registration_config *a, const rsv_registration_config *b)
{
    return rsv_conf_str_equal(a->service, b->service) &&
           rsv_conf_str_equal(a->address, b->address) && a->format == b->format &&
           a->ttl_ms == b->ttl_ms && a->weight == b->weight &&
           rsv_conf_str_equal(a->zone, b->zone) && rsv_conf_str_equal(a->metadata, b->metadata) &&
           rsv_conf_str_equal(a->key, b->key) && !a->health_check == !b->health_check &&
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

static int take_registration_string(rsv_conf_ctx *ctx, const char *path, json_t *v,
                                    const char *name, char **dst)
{
    char p[RSV_CONF_PATH_LEN];
    json_t *x = json_object_get(v, name);
    return x ? rsv_conf_take_string(ctx, rsv_conf_join(p, path, name), x, dst) : 0;
}

static int parse_registration_parts(rsv_conf_ctx *ctx, const char *path, json_t *v,
                                    rsv_registration_config *r)
{
    char p[RSV_CONF_PATH_LEN], canon[300];
    const char *bad;
    json_t *x;
    uint64_t u;
    int rc;
    if (!json_object_get(v, "service"))
        return rsv_conf_fail(ctx, "%s: missing required key \"service\"", path);
    if (!json_object_get(v, "address"))
        return rsv_conf_fail(ctx, "%s: missing required key \"address\"", path);
    if ((rc = take_registration_string(ctx, path, v, "service", &r->service)) ||
        (rc = take_registration_string(ctx, path, v, "address", &r->address)) ||
        (rc = take_registration_string(ctx, path, v, "zone", &r->zone)) ||
        (rc = take_registration_string(ctx, path, v, "key", &r->key)))
        return rc;
    if (!rsv_service_name_valid(r->service))
        return rsv_conf_fail(ctx, "%s: invalid service name \"%s\"",
                             rsv_conf_join(p, path, "service"), r->service);
    char reason[128];
    if ((bad =
             registration_address_check(r->address, canon, sizeof(canon), reason, sizeof(reason))))
        return rsv_conf_fail(ctx, "%s: \"%s\": %s", rsv_conf_join(p, path, "address"), r->address,
                             bad);
    free(r->address);
    if (!(r->address = strdup(canon)))
        return rsv_conf_nomem(ctx);
    if ((x = json_object_get(v, "format"))) {
        rsv_conf_join(p, path, "format");
        if (!json_is_string(x))
            return rsv_conf_wrong_type(ctx, p, x, "a string");
        if ((bad = registration_format_check(json_string_value(x), &r->format)))
            return rsv_conf_fail(ctx, "%s: \"%s\": %s", p, json_string_value(x), bad);
    }
    if ((x = json_object_get(v, "ttl_ms")) &&
        (rc = rsv_conf_take_ms(ctx, rsv_conf_join(p, path, "ttl_ms"), x, REGISTRATION_TTL_MIN_MS,
                               &r->ttl_ms)))
        return rc;
    if ((x = json_object_get(v, "weight"))) {
        if ((rc = rsv_conf_take_uint(ctx, rsv_conf_join(p, path, "weight"), x, 1,
                                     REGISTRATION_WEIGHT_MAX, &u)))
            return rc;
        r->weight = (uint32_t)u;
    }
    if (r->zone && (bad = registration_zone_check(r->zone)))
        return rsv_conf_fail(ctx, "%s: \"%s\": %s", rsv_conf_join(p, path, "zone"), r->zone, bad);
    if (r->key && !*r->key)
        return rsv_conf_fail(ctx, "%s: must not be empty", rsv_conf_join(p, path, "key"));
    if ((x = json_object_get(v, "metadata"))) {
        if ((bad = registration_metadata_check(x)))
            return rsv_conf_fail(ctx, "%s: %s", rsv_conf_join(p, path, "metadata"), bad);
        /* {} is kept as "" (none), as written back by rsv_config_to_json. */
        if (!(r->metadata =
                  json_object_size(x) ? json_dumps(x, JSON_COMPACT | JSON_SORT_KEYS) : strdup("")))
            return rsv_conf_nomem(ctx);
    }
    /* The same object as a service's: {"grpc_service": ""} for the whole
     * server, a name for one service, null for none. */
    if ((x = json_object_get(v, "health_check")) &&
        (rc = rsv_conf_parse_health(ctx, rsv_conf_join(p, path, "health_check"), x,
                                    &r->health_check)))
        return rc;
    return 0;
}

static int parse_registration(rsv_conf_ctx *ctx, const char *path, json_t *v,
                              rsv_registration_config *r)
{
    static const char *const keys[] = {"service", "address",  "format", "ttl_ms",       "weight",
                                       "zone",    "metadata", "key",    "health_check", NULL};
    int rc;
    if (!json_is_object(v))
        return rsv_conf_wrong_type(ctx, path, v, "an object");
    if ((rc = rsv_conf_check_keys(ctx, path, v, keys, NULL, NULL)))
        return rc;
    rc = parse_registration_parts(ctx, path, v, r);
    /* Unset strings are "" like everywhere else in the config. */
    if (!rc && ((!r->zone && rsv_conf_dup_or_empty(&r->zone, "")) ||
                (!r->metadata && rsv_conf_dup_or_empty(&r->metadata, "")) ||
                (!r->key && rsv_conf_dup_or_empty(&r->key, ""))))
        return rsv_conf_nomem(ctx);
    return rc;
}

int rsv_conf_parse_registrations(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg)
{
    if (!json_is_array(v))
        return rsv_conf_wrong_type(ctx, "register", v, "an array");
    size_t n = json_array_size(v);
    if (n == 0)
        return 0;
    if (!(cfg->registrations = calloc(n, sizeof(*cfg->registrations))))
        return rsv_conf_nomem(ctx);
    for (size_t i = 0; i < n; i++) {
        char p[RSV_CONF_PATH_LEN];
        rsv_registration_config *r = &cfg->registrations[i];
        rsv_registration_default(r);
        cfg->n_registrations = i + 1;
        int rc =
            parse_registration(ctx, rsv_conf_join_index(p, "register", i), json_array_get(v, i), r);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->registrations[j].service, r->service) == 0 &&
                strcmp(cfg->registrations[j].address, r->address) == 0)
                return rsv_conf_fail(ctx, "register[%zu]: duplicate of register[%zu] (%s %s)", i, j,
                                     r->service, r->address);
    }
    return 0;
}

static json_t *registration_to_json(const rsv_registration_config *r)
{
    json_t *meta = r->metadata && *r->metadata ? json_loads(r->metadata, 0, NULL) : json_object();
    json_t *obj =
        json_pack("{s:o,s:o,s:s,s:o,s:o,s:o,s:o}", "service", rsv_conf_jstr(r->service), "address",
                  rsv_conf_jstr(r->address), "format", rsv_format_name(r->format), "ttl_ms",
                  rsv_conf_jint(r->ttl_ms), "weight", rsv_conf_jint(r->weight), "zone",
                  rsv_conf_jstr(r->zone), "metadata", meta);
    if (obj && r->health_check &&
        json_object_set_new(obj, "health_check",
                            json_pack("{s:o}", "grpc_service", rsv_conf_jstr(r->health_check))) !=
            0) {
        json_decref(obj);
        return NULL;
    }
    if (obj && r->key && *r->key && json_object_set_new(obj, "key", rsv_conf_jstr(r->key)) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

json_t *rsv_conf_registrations_to_json(const resolver_config *cfg)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < cfg->n_registrations; i++)
        if (json_array_append_new(list, registration_to_json(&cfg->registrations[i]))) {
            json_decref(list);
            return NULL;
        }
    return list;
}
