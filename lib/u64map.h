/*
 * u64map.h - a map from non-zero uint64_t keys to pointers (open
 * addressing, linear probing, backward-shift deletion): tickets by id,
 * without formatting numbers into strings on the pick path.  Not
 * thread-safe.
 */
#ifndef RESOLVER_U64MAP_H
#define RESOLVER_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t key; /* 0: empty */
    void *value;
} resolver_u64map_slot;

typedef struct {
    resolver_u64map_slot *slots;
    size_t cap, len;
} resolver_u64map;

void *resolver_u64map_get(const resolver_u64map *m, uint64_t key);
/* 0 or RESOLVER_ERR_NOMEM (RESOLVER_ERR_INVALID for key 0). Replaces. */
int resolver_u64map_put(resolver_u64map *m, uint64_t key, void *value);
void *resolver_u64map_remove(resolver_u64map *m, uint64_t key);
void resolver_u64map_clear(resolver_u64map *m);
/* Any one value (NULL when empty), for draining the map. */
void *resolver_u64map_any(const resolver_u64map *m);

#endif
