/*
 * u64map.h - a map from non-zero uint64_t keys to pointers (open
 * addressing, linear probing, backward-shift deletion): tickets by id,
 * without formatting numbers into strings on the pick path.  Not
 * thread-safe.
 */
#ifndef RSV_U64MAP_H
#define RSV_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t key; /* 0: empty */
    void *value;
} rsv_u64map_slot;

typedef struct {
    rsv_u64map_slot *slots;
    size_t cap, len;
} rsv_u64map;

void *rsv_u64map_get(const rsv_u64map *m, uint64_t key);
/* 0 or RESOLVER_ERR_NOMEM (RESOLVER_ERR_INVALID for key 0). Replaces. */
int rsv_u64map_put(rsv_u64map *m, uint64_t key, void *value);
void *rsv_u64map_remove(rsv_u64map *m, uint64_t key);
void rsv_u64map_clear(rsv_u64map *m);
/* Any one value (NULL when empty), for draining the map. */
void *rsv_u64map_any(const rsv_u64map *m);

#endif
