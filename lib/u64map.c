/* u64map.c - see u64map.h. */
#include <stdlib.h>
#include "resolver.h"
#include "u64map.h"

static size_t slot_of(uint64_t key, size_t mask)
{
    /* Fibonacci hashing: consecutive ids spread over the table. */
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & mask;
}

static rsv_u64map_slot *find(const rsv_u64map *m, uint64_t key)
{
    if (m->cap == 0 || key == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = slot_of(key, mask);; i = (i + 1) & mask) {
        if (m->slots[i].key == key)
            return &m->slots[i];
        if (m->slots[i].key == 0)
            return NULL;
    }
}

void *rsv_u64map_get(const rsv_u64map *m, uint64_t key)
{
    rsv_u64map_slot *s = find(m, key);
    return s ? s->value : NULL;
}

static void place(rsv_u64map_slot *slots, size_t cap, rsv_u64map_slot item)
{
    size_t mask = cap - 1, i = slot_of(item.key, mask);
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i] = item;
}

static int grow(rsv_u64map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    rsv_u64map_slot *slots = calloc(cap, sizeof(*slots));
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

int rsv_u64map_put(rsv_u64map *m, uint64_t key, void *value)
{
    if (key == 0)
        return RESOLVER_ERR_INVALID;
    rsv_u64map_slot *s = find(m, key);
    if (s) {
        s->value = value;
        return 0;
    }
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m) != 0)
        return RESOLVER_ERR_NOMEM;
    place(m->slots, m->cap, (rsv_u64map_slot){key, value});
    m->len++;
    return 0;
}

void *rsv_u64map_remove(rsv_u64map *m, uint64_t key)
{
    rsv_u64map_slot *s = find(m, key);
    if (!s)
        return NULL;
    void *value = s->value;
    size_t mask = m->cap - 1, hole = (size_t)(s - m->slots);
    for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
        size_t home = slot_of(m->slots[i].key, mask);
        if (((hole - home) & mask) < ((i - home) & mask)) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    m->slots[hole] = (rsv_u64map_slot){0, NULL};
    m->len--;
    return value;
}

void rsv_u64map_clear(rsv_u64map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->len = 0;
}

void *rsv_u64map_any(const rsv_u64map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            return m->slots[i].value;
    return NULL;
}
