/*
 * cache.h - the optional cache_file: the last known instances of every
 * service, written atomically on change, read at start so that a restarted
 * daemon answers picks before etcd does.  File format (JSON):
 *   {"version":1,"services":{"NAME":{"prefix":"NAME/","revision":N,
 *     "kvs":[{"key":..,"address":"host:port","weight":N,"zone":..,"tls":false}]}},
 *   "registrations":[{"service":..,"address":..,"format":..,"ttl_ms":N,"weight":N,
 *     "zone":..,"metadata":{..},"key":..,"health_check":..}]}
 * "registrations" (absent when none) are the registrations made at run time
 * (resolver_engine_register, `resolverctl register`), restored at the next
 * start; "zone", "metadata", "key" and "health_check" only when set.
 */
#ifndef RSV_CACHE_H
#define RSV_CACHE_H

#include <jansson.h>
#include <stddef.h>
#include "config.h"
#include "registry.h"

/* Writes `services` (an object NAME -> service cache JSON) to `path` via a
 * temporary file, fsync and rename, so a crash leaves the old or the new
 * file, never half of one.  0 or RESOLVER_ERR_IO with err filled. */
int rsv_cache_write(const char *path, json_t *services, char *err, size_t errlen);

/* The file's text for `services` and `registrations` (an array of
 * rsv_cache_registration_json values, or NULL for none), as rsv_cache_write
 * writes it; malloc'd, NULL when out of memory. */
char *rsv_cache_encode(json_t *services, json_t *registrations);
/* One run-time registration as the file keeps it; NULL when out of memory. */
json_t *rsv_cache_registration_json(const rsv_registration_config *r);
/* Writes text to path as rsv_cache_write does. */
int rsv_cache_write_text(const char *path, const char *text, char *err, size_t errlen);

/* A thread that writes the cache file, so that its write, fsync and rename
 * never hold up the engine's loop.  Rules:
 *  1. submit hands over a finished text (the loop encodes it: jansson values
 *     are not shared across threads) and never waits for the disk;
 *  2. a text submitted while an older one still waits replaces it: only
 *     the newest state is worth writing;
 *  3. del writes what is still waiting, then joins: the last state
 *     submitted is on disk when it returns (unless the write fails, which
 *     is logged). */
typedef struct rsv_cache_writer rsv_cache_writer;
/* NULL when the thread cannot be started (no memory, no thread). */
rsv_cache_writer *rsv_cache_writer_new(void);
/* Takes `text` (malloc'd) in every case.  0 or RESOLVER_ERR_NOMEM. */
int rsv_cache_writer_submit(rsv_cache_writer *w, const char *path, char *text);
/* Files written (renamed into place) so far. */
unsigned long long rsv_cache_writer_writes(rsv_cache_writer *w);
void rsv_cache_writer_del(rsv_cache_writer *w);

typedef void (*rsv_cache_entry_cb)(void *arg, const char *service, const char *prefix,
                                   const char *key, const rsv_endpoint *ep);

/* Reads `path` and calls cb for every valid entry (bad entries are skipped
 * and counted in *skipped).  A missing file is not an error (returns 0 with
 * no call).  RESOLVER_ERR_DECODE for a file that is not a cache. */
int rsv_cache_read(const char *path, rsv_cache_entry_cb cb, void *arg, size_t *skipped, char *err,
                   size_t errlen);

/* Called with each valid registration of the file (borrowed: copy what is
 * kept). */
typedef void (*rsv_cache_registration_cb)(void *arg, const rsv_registration_config *r);

/* Reads the "registrations" of `path` as rsv_cache_read reads its services:
 * entries that do not pass the checks of the "register" list are skipped
 * and counted in *skipped; a missing file is no error.  0, or
 * RESOLVER_ERR_DECODE for a file that is not a cache. */
int rsv_cache_read_registrations(const char *path, rsv_cache_registration_cb cb, void *arg,
                                 size_t *skipped, char *err, size_t errlen);

#endif
