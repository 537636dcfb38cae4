/*
 * confjson.c - reading the configuration's JSON: messages that name the
 * full key path, typed values with their bounds, and unknown keys with a
 * "did you mean" (confjson.h).  Shared by the config*.c files.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "confjson.h"

enum {
    SUGGEST_KEY_MAX = 64, /* keys longer than this get no "did you mean" */
};

/* Every duration key is bounded by RSV_DURATION_MAX_MS (config.h). */
#define MS_MAX RSV_DURATION_MAX_MS

/* ---- errors and key paths --------------------------------------------- */

static int vreport(rsv_conf_ctx *ctx, int code, const char *fmt, va_list ap)
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

int rsv_conf_report(rsv_conf_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ctx, code, fmt, ap);
    va_end(ap);
    return code;
}

int rsv_conf_fail(rsv_conf_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ctx, RESOLVER_ERR_CONFIG, fmt, ap);
    va_end(ap);
    return RESOLVER_ERR_CONFIG;
}

int rsv_conf_nomem(rsv_conf_ctx *ctx)
{
    return rsv_conf_report(ctx, RESOLVER_ERR_NOMEM, "out of memory");
}

/* Appends s at dst[n], keeping room for the NUL of a RSV_CONF_PATH_LEN buffer. */
static size_t path_append(char *dst, size_t n, const char *s)
{
    /* A byte loop: gcc's sanitizer build sees through strnlen+memcpy and
     * warns about bounds it cannot prove. */
    while (*s && n < RSV_CONF_PATH_LEN - 1)
        dst[n++] = *s++;
    return n;
}

/* dst = parent + sep + piece, truncated to RSV_CONF_PATH_LEN: a truncated path still
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

const char *rsv_conf_join(char *dst, const char *parent, const char *key)
{
    return path_cat(dst, parent, *parent ? "." : "", key);
}

const char *rsv_conf_join_index(char *dst, const char *parent, size_t i)
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

int rsv_conf_wrong_type(rsv_conf_ctx *ctx, const char *path, const json_t *v, const char *expected)
{
    char buf[RSV_CONF_VALUE_LEN];
    if (strstr(expected, "string"))
        ctx->wanted_string = 1;
    return rsv_conf_fail(ctx, "%s: expected %s, got %s", path, expected,
                         describe(v, buf, sizeof(buf)));
}

/* ---- typed values ----------------------------------------------------- */

int rsv_conf_take_string(rsv_conf_ctx *ctx, const char *path, const json_t *v, char **dst)
{
    if (!json_is_string(v))
        return rsv_conf_wrong_type(ctx, path, v, "a string");
    char *s = strdup(json_string_value(v));
    if (!s)
        return rsv_conf_nomem(ctx);
    free(*dst);
    *dst = s;
    return 0;
}

int rsv_conf_take_uint(rsv_conf_ctx *ctx, const char *path, const json_t *v, uint64_t min,
                       uint64_t max, uint64_t *out)
{
    if (!json_is_integer(v))
        return rsv_conf_wrong_type(ctx, path, v, "an integer");
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i < min) {
        if (min <= 1)
            return rsv_conf_fail(ctx, "%s: must be %s 0, got %" JSON_INTEGER_FORMAT, path,
                                 min ? ">" : ">=", i);
        return rsv_conf_fail(ctx, "%s: must be >= %" PRIu64 ", got %" JSON_INTEGER_FORMAT, path,
                             min, i);
    }
    if ((uint64_t)i > max)
        return rsv_conf_fail(ctx, "%s: must be <= %" PRIu64 ", got %" JSON_INTEGER_FORMAT, path,
                             max, i);
    *out = (uint64_t)i;
    return 0;
}

/* A duration in milliseconds: every *_ms key shares one bound, said in
 * hours too so that the unit is not in doubt. */
int rsv_conf_take_ms(rsv_conf_ctx *ctx, const char *path, const json_t *v, uint64_t min,
                     uint64_t *out)
{
    uint64_t ms;
    int rc = rsv_conf_take_uint(ctx, path, v, min, UINT64_MAX, &ms);
    if (rc)
        return rc;
    if (ms > MS_MAX)
        return rsv_conf_fail(ctx, "%s: must be <= %" PRIu64 " (%" PRIu64 " h), got %" PRIu64, path,
                             MS_MAX, MS_MAX / 3600000, ms);
    *out = ms;
    return 0;
}

int rsv_conf_take_number(rsv_conf_ctx *ctx, const char *path, const json_t *v, double *out)
{
    if (!json_is_number(v))
        return rsv_conf_wrong_type(ctx, path, v, "a number");
    *out = json_number_value(v);
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

void rsv_conf_consider(const char *key, const char *candidate, const char **best, size_t *best_d)
{
    size_t d = key_distance(key, candidate);
    if (d < *best_d) {
        *best_d = d;
        *best = candidate;
    }
}

int rsv_conf_check_keys(rsv_conf_ctx *ctx, const char *path, json_t *obj, const char *const *known,
                        const char *(*also)(size_t i), rsv_conf_home_fn home)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int ok = 0;
        for (size_t i = 0; !ok && also && also(i); i++)
            ok = strcmp(also(i), key) == 0;
        for (size_t i = 0; !ok && known && known[i]; i++)
            ok = strcmp(known[i], key) == 0;
        if (ok)
            continue;
        const char *best = NULL;
        size_t best_d = 3; /* only near misses are worth a suggestion */
        for (size_t i = 0; known && known[i]; i++)
            rsv_conf_consider(key, known[i], &best, &best_d);
        for (size_t i = 0; also && also(i); i++)
            rsv_conf_consider(key, also(i), &best, &best_d);
        char p[RSV_CONF_PATH_LEN], where[RSV_CONF_PATH_LEN];
        rsv_conf_join(p, path, key);
        if (best)
            return rsv_conf_fail(ctx, "unknown key \"%s\" (did you mean \"%s\"?)", p, best);
        if (home && home(path, key, where, sizeof(where)))
            return rsv_conf_fail(ctx, "unknown key \"%s\" (did you mean \"%s\"?)", p, where);
        return rsv_conf_fail(ctx, "unknown key \"%s\"", p);
    }
    return 0;
}

int rsv_conf_in_list(const char *const *list, const char *key)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], key) == 0)
            return 1;
    return 0;
}

/* ---- small shared pieces ---------------------------------------------- */

int rsv_conf_str_equal(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

void rsv_conf_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

int rsv_conf_dup_or_empty(char **dst, const char *src)
{
    return (*dst = strdup(src ? src : "")) ? 0 : RESOLVER_ERR_NOMEM;
}

/* A string the caller may have set directly (not from JSON) need not be
 * UTF-8, which jansson refuses; such bytes become '?' rather than failing. */
json_t *rsv_conf_jstr(const char *s)
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

json_t *rsv_conf_jint(uint64_t u)
{
    return json_integer((json_int_t)u);
}
