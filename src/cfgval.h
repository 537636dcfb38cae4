/*
 * cfgval.h - typed reads of the configuration for the daemon, through the
 * public resolver_config_get (the JSON text of one key).
 */
#ifndef RSV_CFGVAL_H
#define RSV_CFGVAL_H

#include <stddef.h>
#include <stdint.h>
#include <resolver.h>

/* The string at `key`, malloc'd (free() it); "" for a key that is not a
 * string; NULL only when out of memory. */
char *rsv_cfg_string(const resolver_config *cfg, const char *key);
/* The unsigned integer at `key` (socket.mode's octal text included), or
 * `dflt` when the key holds none. */
uint64_t rsv_cfg_uint(const resolver_config *cfg, const char *key, uint64_t dflt);
/* How many elements the list at `key` has (0: none, or not a list). */
size_t rsv_cfg_count(const resolver_config *cfg, const char *key);

#endif
