/*
 * cache.h - the optional cache_file: the last known instances of every
 * service, written atomically on change, read at start so that a restarted
 * daemon answers picks before etcd does.  File format (JSON):
 *   {"version":1,"services":{"NAME":{"prefix":"NAME/","revision":N,
 *     "kvs":[{"key":..,"address":"host:port","weight":N,"zone":..,"tls":false}]}}}
 */
#ifndef RESOLVER_CACHE_H
#define RESOLVER_CACHE_H

#include <jansson.h>
#include <stddef.h>
#include "registry.h"

/* Writes `services` (an object NAME -> service cache JSON) to `path` via a
 * temporary file, fsync and rename, so a crash leaves the old or the new
 * file, never half of one.  0 or RESOLVER_ERR_IO with err filled. */
int resolver_cache_write(const char *path, json_t *services, char *err, size_t errlen);

typedef void (*resolver_cache_entry_cb)(void *arg, const char *service, const char *prefix,
                                        const char *key, const resolver_endpoint *ep);

/* Reads `path` and calls cb for every valid entry (bad entries are skipped
 * and counted in *skipped).  A missing file is not an error (returns 0 with
 * no call).  RESOLVER_ERR_DECODE for a file that is not a cache. */
int resolver_cache_read(const char *path, resolver_cache_entry_cb cb, void *arg, size_t *skipped,
                        char *err, size_t errlen);

#endif
