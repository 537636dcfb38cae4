/* strmap.c - see strmap.h. */
#include <stdlib.h>
#include <string.h>
#include "resolver.h"
#include "strmap.h"

/* FNV-1a: short keys (service names, addresses, etcd keys), no adversary
 * that can choose many colliding keys cheaply enough to matter here. */
static size_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return (size_t)(h ^ (h >> 29));
}

static rsv_strmap_slot *find_slot(const rsv_strmap *m, const char *key, size_t hash)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        rsv_strmap_slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->hash == hash && strcmp(s->key, key) == 0)
            return s;
    }
}

void *rsv_strmap_get(const rsv_strmap *m, const char *key)
{
    rsv_strmap_slot *s = find_slot(m, key, hash_key(key));
    return s ? s->value : NULL;
}

static void place(rsv_strmap_slot *slots, size_t cap, rsv_strmap_slot item)
{
    size_t mask = cap - 1;
    size_t i = item.hash & mask;
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i] = item;
}

static int grow(rsv_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    rsv_strmap_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return RESOLVER_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            place(slots, cap, m->slots[i]);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int rsv_strmap_put(rsv_strmap *m, const char *key, void *value, void **old)
{
    size_t hash = hash_key(key);
    rsv_strmap_slot *s = find_slot(m, key, hash);
    if (old)
        *old = s ? s->value : NULL;
    if (s) {
        s->value = value;
        return 0;
    }
    /* Keep the load factor under 3/4 so probes stay short. */
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m) != 0)
        return RESOLVER_ERR_NOMEM;
    char *copy = strdup(key);
    if (!copy)
        return RESOLVER_ERR_NOMEM;
    place(m->slots, m->cap, (rsv_strmap_slot){copy, value, hash});
    m->len++;
    return 0;
}

void *rsv_strmap_remove(rsv_strmap *m, const char *key)
{
    rsv_strmap_slot *s = find_slot(m, key, hash_key(key));
    if (!s)
        return NULL;
    void *value = s->value;
    free(s->key);
    size_t mask = m->cap - 1;
    size_t hole = (size_t)(s - m->slots);
    /* Backward-shift: move later members of the probe run into the hole so
     * lookups never need tombstones. */
    for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
        size_t home = m->slots[i].hash & mask;
        size_t dist_i = (i - home) & mask, dist_hole = (hole - home) & mask;
        if (dist_hole < dist_i) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    m->slots[hole] = (rsv_strmap_slot){NULL, NULL, 0};
    m->len--;
    return value;
}

void rsv_strmap_clear(rsv_strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    *m = (rsv_strmap)RSV_STRMAP_INIT;
}

int rsv_strmap_next(const rsv_strmap *m, size_t *pos, const char **key, void **value)
{
    for (; *pos < m->cap; (*pos)++) {
        if (m->slots[*pos].key) {
            if (key)
                *key = m->slots[*pos].key;
            if (value)
                *value = m->slots[*pos].value;
            (*pos)++;
            return 1;
        }
    }
    return 0;
}
