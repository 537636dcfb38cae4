/* cfgval.c - see cfgval.h. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "cfgval.h"

static json_t *get(const resolver_config *cfg, const char *key)
{
    char *text = NULL;
    if (resolver_config_get(cfg, key, &text) != 0)
        return NULL;
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    free(text);
    return v;
}

char *rsv_cfg_string(const resolver_config *cfg, const char *key)
{
    json_t *v = get(cfg, key);
    char *s = strdup(json_is_string(v) ? json_string_value(v) : "");
    json_decref(v);
    return s;
}

uint64_t rsv_cfg_uint(const resolver_config *cfg, const char *key, uint64_t dflt)
{
    json_t *v = get(cfg, key);
    uint64_t out = dflt;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        out = (uint64_t)json_integer_value(v);
    } else if (json_is_string(v)) { /* socket.mode: "0660" */
        char *end;
        const char *s = json_string_value(v);
        unsigned long long u = strtoull(s, &end, 8);
        if (*s && !*end)
            out = u;
    }
    json_decref(v);
    return out;
}

size_t rsv_cfg_count(const resolver_config *cfg, const char *key)
{
    json_t *v = get(cfg, key);
    size_t n = json_array_size(v);
    json_decref(v);
    return n;
}
