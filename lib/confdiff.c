/* confdiff.c - the differences between two configurations (see confdiff.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "confdiff.h"

#define VALUE_MAX 120

/* Read once at start: the etcd client (lib/etcd.c), the socket and the
 * metrics listener (src/resolverd.c, src/server.c), and the zone every
 * service is created with (lib/engine.c).  Everything else takes effect at
 * a reload: services and their options, defaults (services discovered from
 * then on), socket.admin_group and socket.max_detached_tickets (the socket
 * server), on_demand_services_max and cache_file (the engine). */
static const char *const restart_keys[] = {"etcd",         "socket.path",    "socket.mode",
                                           "socket.group", "metrics.listen", "zone"};

int rsv_config_key_needs_restart(const char *key)
{
    for (size_t i = 0; i < sizeof(restart_keys) / sizeof(restart_keys[0]); i++) {
        size_t n = strlen(restart_keys[i]);
        if (strncmp(key, restart_keys[i], n) == 0 && (key[n] == '\0' || key[n] == '.'))
            return 1;
    }
    return 0;
}

typedef struct {
    rsv_diff_cb cb;
    void *arg;
    int count;
} differ;

/* Compact JSON of v, cut at VALUE_MAX bytes; "" when out of memory. */
static void value_text(const json_t *v, char *buf, size_t n)
{
    char *s = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    if (!s) {
        snprintf(buf, n, "%s", v ? "" : "(none)");
        return;
    }
    if (strlen(s) > VALUE_MAX)
        snprintf(buf, n, "%.*s...", VALUE_MAX, s);
    else
        snprintf(buf, n, "%s", s);
    free(s);
}

static void report(differ *d, rsv_diff_kind kind, const char *key, const json_t *a, const json_t *b)
{
    char old_text[VALUE_MAX + 4], new_text[VALUE_MAX + 4];
    value_text(a, old_text, sizeof(old_text));
    value_text(b, new_text, sizeof(new_text));
    d->count++;
    d->cb(d->arg, kind, key, a ? old_text : NULL, b ? new_text : NULL);
}

/* Objects are compared key by key (a nested object's keys get the dotted
 * path); anything else, arrays included, as one value. */
static void diff_values(differ *d, const char *path, const json_t *a, const json_t *b,
                        int top_level)
{
    if (json_equal((json_t *)a, (json_t *)b))
        return;
    if (json_is_object(a) && json_is_object(b)) {
        const char *k;
        json_t *va;
        json_object_foreach((json_t *)a, k, va)
        {
            char sub[512];
            snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", k);
            diff_values(d, sub, va, json_object_get(b, k), top_level);
        }
        json_t *vb;
        json_object_foreach((json_t *)b, k, vb)
        {
            if (json_object_get(a, k))
                continue;
            char sub[512];
            snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", k);
            diff_values(d, sub, NULL, vb, top_level);
        }
        return;
    }
    int restart = top_level && rsv_config_key_needs_restart(path);
    report(d, restart ? RSV_DIFF_NEEDS_RESTART : RSV_DIFF_CHANGED, path, a, b);
}

static const json_t *find_service(const json_t *services, const char *name)
{
    size_t i;
    json_t *s;
    json_array_foreach((json_t *)services, i, s)
    {
        const char *n = json_string_value(json_object_get(s, "name"));
        if (n && strcmp(n, name) == 0)
            return s;
    }
    return NULL;
}

static void diff_services(differ *d, const json_t *a, const json_t *b)
{
    size_t i;
    json_t *s;
    json_array_foreach((json_t *)a, i, s)
    {
        const char *name = json_string_value(json_object_get(s, "name"));
        if (name && !find_service(b, name)) {
            d->count++;
            d->cb(d->arg, RSV_DIFF_SERVICE_REMOVED, name, NULL, NULL);
        }
    }
    json_array_foreach((json_t *)b, i, s)
    {
        const char *name = json_string_value(json_object_get(s, "name"));
        if (name && !find_service(a, name)) {
            d->count++;
            d->cb(d->arg, RSV_DIFF_SERVICE_ADDED, name, NULL,
                  json_string_value(json_object_get(s, "prefix")));
        }
    }
    json_array_foreach((json_t *)b, i, s)
    {
        const char *name = json_string_value(json_object_get(s, "name"));
        const json_t *before = name ? find_service(a, name) : NULL;
        if (!before)
            continue;
        char path[RSV_SERVICE_NAME_MAX + 16];
        snprintf(path, sizeof(path), "services[%s]", name);
        diff_values(d, path, before, s, 0);
    }
}

static json_t *as_json(const resolver_config *cfg)
{
    char *text = NULL;
    if (rsv_config_to_json(cfg, &text) != 0)
        return NULL;
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    return j;
}

int rsv_config_diff(const resolver_config *old_cfg, const resolver_config *new_cfg, rsv_diff_cb cb,
                    void *arg)
{
    differ d = {cb, arg, 0};
    json_t *a = as_json(old_cfg), *b = as_json(new_cfg);
    if (!a || !b) {
        json_decref(a);
        json_decref(b);
        return -1;
    }
    const char *k;
    json_t *va;
    json_object_foreach(a, k, va)
    {
        if (strcmp(k, "services") != 0)
            diff_values(&d, k, va, json_object_get(b, k), 1);
    }
    diff_services(&d, json_object_get(a, "services"), json_object_get(b, "services"));
    json_decref(a);
    json_decref(b);
    return d.count;
}
