/*
 * strmap.h - a string-keyed hash map (open addressing, linear probing,
 * backward-shift deletion).  Keys are copied; values are borrowed pointers.
 * Not thread-safe.  Iteration order is unspecified; a map may not be changed
 * while it is iterated, except through resolver_strmap_iter_remove... which
 * we do not offer: collect first, then change.
 */
#ifndef RSV_STRMAP_H
#define RSV_STRMAP_H

#include <stddef.h>

typedef struct {
    char *key; /* NULL: empty slot */
    void *value;
    size_t hash;
} rsv_strmap_slot;

typedef struct {
    rsv_strmap_slot *slots;
    size_t cap; /* power of two, or 0 */
    size_t len;
} rsv_strmap;

#define RSV_STRMAP_INIT                                                                            \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void *rsv_strmap_get(const rsv_strmap *m, const char *key);
/* Inserts or replaces.  Returns 0 or RESOLVER_ERR_NOMEM. If `old` is not
 * NULL it receives the replaced value (NULL if the key was new). */
int rsv_strmap_put(rsv_strmap *m, const char *key, void *value, void **old);
/* Removes and returns the value (NULL if absent). */
void *rsv_strmap_remove(rsv_strmap *m, const char *key);
/* Frees the table and the key copies (not the values). */
void rsv_strmap_clear(rsv_strmap *m);

/* for (size_t i = 0; rsv_strmap_next(m, &i, &key, &value);) { ... } */
int rsv_strmap_next(const rsv_strmap *m, size_t *pos, const char **key, void **value);

#endif
