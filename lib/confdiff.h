/*
 * confdiff.h - what a reload changes: the differences between two
 * configurations, key by key, for the log.
 *
 * Both configurations are compared in the form rsv_config_to_json
 * writes (every key, defaults included, each service with its effective
 * options), so a key is named as the configuration file names it
 * ("etcd.endpoints", "socket.path", "defaults.backoff.initial_ms") and a
 * service's key as "services[NAME].policy".  Services are matched by name.
 */
#ifndef RSV_CONFDIFF_H
#define RSV_CONFDIFF_H

#include "config.h"

typedef enum {
    RSV_DIFF_SERVICE_ADDED,   /* `key` is the service's name, `new_value` its prefix */
    RSV_DIFF_SERVICE_REMOVED, /* `key` is the service's name */
    RSV_DIFF_CHANGED,         /* `key` took effect with the reload */
    RSV_DIFF_NEEDS_RESTART    /* `key` changed, but only a restart applies it */
} rsv_diff_kind;

/* One difference.  `old_value`, `new_value`: compact JSON ("round_robin" with
 * its quotes, 1000, ["http://a:2379"]), cut at 120 bytes with "..."; NULL
 * where they do not apply. */
typedef void (*rsv_diff_cb)(void *arg, rsv_diff_kind kind, const char *key, const char *old_value,
                            const char *new_value);

/* Calls `cb` for every difference, in the order of the configuration file
 * (top-level keys, then services: removed, added, changed).  Returns the
 * number of differences, or -1 when out of memory (nothing or part reported). */
int rsv_config_diff(const resolver_config *old_cfg, const resolver_config *new_cfg, rsv_diff_cb cb,
                    void *arg);

/* 1 if the daemon reads the top-level key only at start (etcd.*,
 * socket.path, socket.mode, socket.group, metrics.listen, zone). */
int rsv_config_key_needs_restart(const char *key);

#endif
