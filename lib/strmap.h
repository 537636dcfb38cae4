/*
 * strmap.h - a string-keyed hash map (open addressing, linear probing,
 * backward-shift deletion).  Keys are copied; values are borrowed pointers.
 * Not thread-safe.  Iteration order is unspecified; a map may not be changed
 * while it is iterated, except through resolver_strmap_iter_remove... which
 * we do not offer: collect first, then change.
 */
#ifndef RESOLVER_STRMAP_H
#define RESOLVER_STRMAP_H

#include <stddef.h>

typedef struct {
    char *key; /* NULL: empty slot */
    void *value;
    size_t hash;
} resolver_strmap_slot;

typedef struct {
    resolver_strmap_slot *slots;
    size_t cap; /* power of two, or 0 */
    size_t len;
} resolver_strmap;

#define RESOLVER_STRMAP_INIT                                                                       \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void *resolver_strmap_get(const resolver_strmap *m, const char *key);
/* Inserts or replaces.  Returns 0 or RESOLVER_ERR_NOMEM. If `old` is not
 * NULL it receives the replaced value (NULL if the key was new). */
int resolver_strmap_put(resolver_strmap *m, const char *key, void *value, void **old);
/* Removes and returns the value (NULL if absent). */
void *resolver_strmap_remove(resolver_strmap *m, const char *key);
/* Frees the table and the key copies (not the values). */
void resolver_strmap_clear(resolver_strmap *m);

/* for (size_t i = 0; resolver_strmap_next(m, &i, &key, &value);) { ... } */
int resolver_strmap_next(const resolver_strmap *m, size_t *pos, const char **key, void **value);

#endif
