/*
 * directory.c - the engine's services by name: added from the
 * configuration, on demand or from the cache file, removed by reload or
 * when idle, and the immutable directory picking threads read under hazard
 * pointers (see engine_internal.h for the threading).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine_internal.h"
#include "log.h"
#include "proto.h"

/* An on-demand service nobody picked for this long is dropped (its watch
 * and its connections are not free). */
#define ON_DEMAND_IDLE_MS (10 * 60 * 1000)

/* ---- the directory: services by name for picking threads ---- */

void rsv_directory_free(void *arg);

static void dir_free_retire(resolver_engine *e, void *old)
{
    rsv_hazard_retire(e->hazard, old, rsv_directory_free);
}

void rsv_directory_free(void *arg)
{
    rsv_directory *d = arg;
    if (!d)
        return;
    free(d->entries);
    free(d->names);
    free(d);
}

static int by_entry_name(const void *a, const void *b)
{
    return strcmp(((const rsv_dir_entry *)a)->name, ((const rsv_dir_entry *)b)->name);
}

/* Publishes the services of the map, but `skip` (a service about to be
 * removed; NULL: none).  0, or RESOLVER_ERR_NOMEM with the old directory
 * still published: a caller must then not free a service the old one
 * names, nor count on a new one being visible. */
int rsv_directory_publish(resolver_engine *e, const char *skip)
{
    rsv_directory *d = calloc(1, sizeof(*d));
    size_t bytes = 0;
    const char *name;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, &name, NULL);)
        bytes += strlen(name) + 1;
    if (d) {
        d->entries = calloc(e->services.len + 1, sizeof(rsv_dir_entry));
        d->names = malloc(bytes + 1);
    }
    if (!d || !d->entries || !d->names) {
        rsv_directory_free(d);
        static rsv_log_limit lim;
        LOG_ERROR_LIMITED(&lim, "out of memory publishing the service directory");
        return RESOLVER_ERR_NOMEM;
    }
    char *w = d->names;
    void *value;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, &name, &value);) {
        if (skip && strcmp(name, skip) == 0)
            continue;
        size_t len = strlen(name) + 1;
        memcpy(w, name, len);
        d->entries[d->n].name = w;
        d->entries[d->n].svc = value;
        d->n++;
        w += len;
    }
    qsort(d->entries, d->n, sizeof(rsv_dir_entry), by_entry_name);
    dir_free_retire(e, atomic_exchange(&e->directory, d));
    return 0;
}

/* Any thread: the service called `name`, protected in the SERVICE hazard
 * slot (clear it when done), or NULL. */
rsv_service *rsv_directory_lookup(resolver_engine *e, const char *name)
{
    for (;;) {
        rsv_directory *d = rsv_hazard_protect(RESOLVER_HAZARD_DIRECTORY, &e->directory);
        if (!d)
            return NULL;
        rsv_dir_entry key = {(char *)name, NULL};
        rsv_dir_entry *hit = bsearch(&key, d->entries, d->n, sizeof(rsv_dir_entry), by_entry_name);
        rsv_service *svc = hit ? hit->svc : NULL;
        if (svc && rsv_hazard_set(RESOLVER_HAZARD_SERVICE, svc) != 0)
            svc = NULL;
        /* Still the current directory: svc was not retired before we
         * published our hazard (it is retired only after a directory
         * without it is published). */
        int current = atomic_load(&e->directory) == d;
        rsv_hazard_clear(RESOLVER_HAZARD_DIRECTORY);
        if (current)
            return svc;
        rsv_hazard_clear(RESOLVER_HAZARD_SERVICE);
    }
}

static void service_free_retired(void *svc)
{
    rsv_service_free(svc);
}

/* Loop thread: removes a service; its memory goes when no picking thread
 * can hold it any more.  RESOLVER_ERR_NOMEM: nothing changed (a directory
 * without it could not be published, and the one picking threads read
 * still names it: freeing it would leave them a dangling pointer). */
int rsv_directory_remove(resolver_engine *e, const char *name)
{
    rsv_service *svc = rsv_strmap_get(&e->services, name);
    if (!svc)
        return 0;
    if (rsv_directory_publish(e, name) != 0)
        return RESOLVER_ERR_NOMEM;
    rsv_strmap_remove(&e->services, name);
    rsv_strmap_remove(&e->synced, name); /* a service added again syncs again */
    rsv_service_stop(svc);
    rsv_hazard_retire(e->hazard, svc, service_free_retired);
    return 0;
}

/* The one gate for service names into the engine (picks from any thread,
 * on-demand discovery, the cache file; the configuration loader uses the
 * same rsv_service_name_valid).  Names end up in metric labels, JSON
 * and log lines.  0, or RESOLVER_ERR_INVALID with the name shown escaped
 * as the protocol escapes it (it may hold a newline). */
int rsv_check_service_name(const char *name, char *why, size_t whylen)
{
    if (rsv_service_name_valid(name))
        return 0;
    char shown[300];
    rsv_proto_escape(name ? name : "", shown, sizeof(shown));
    snprintf(why, whylen,
             "invalid service name \"%s\": 1..%d bytes of letters, digits, %s and "
             "non-ASCII UTF-8",
             shown, RSV_SERVICE_NAME_MAX, RSV_SERVICE_NAME_PUNCT);
    return RESOLVER_ERR_INVALID;
}

rsv_service *rsv_directory_add(resolver_engine *e, const char *name, const char *prefix,
                               const rsv_service_options *opts)
{
    char why[512];
    if (rsv_check_service_name(name, why, sizeof(why)) != 0) {
        LOG_WARN("%s; not added", why);
        return NULL;
    }
    rsv_service *svc = rsv_service_new(e->loop, e->etcd, e->dns, e->hazard, e->cfg->zone, name,
                                       prefix, opts, rsv_engine_on_change, e);
    if (!svc)
        return NULL;
    if (rsv_strmap_put(&e->services, name, svc, NULL) != 0) {
        rsv_service_del(svc);
        return NULL;
    }
    if (rsv_directory_publish(e, NULL) != 0) {
        /* Never published: no picking thread can hold it. */
        rsv_strmap_remove(&e->services, name);
        rsv_service_del(svc);
        return NULL;
    }
    LOG_INFO("service %s: watching etcd prefix \"%s\" (policy %s)", name, prefix,
             rsv_policy_name(opts->policy));
    return svc;
}

int rsv_directory_add_configured(resolver_engine *e)
{
    for (size_t i = 0; i < e->cfg->n_services; i++) {
        const rsv_service_config *sc = &e->cfg->services[i];
        if (!rsv_directory_add(e, sc->name, sc->prefix, &sc->options))
            return RESOLVER_ERR_NOMEM;
    }
    return 0;
}

/* The answer to a pick of a service that cannot be discovered. */
int rsv_on_demand_refused(const char *name, unsigned max, char *why, size_t whylen)
{
    snprintf(why, whylen, "service %s is not configured and on_demand_services_max (%u) is reached",
             name, max);
    return RESOLVER_ERR_LIMIT;
}

/* Loop thread: tells picking threads whether an unknown name can still be
 * discovered.  Called where a discovery is refused and by housekeeping, so
 * a service dropped or a raised cap (reload) opens the way again within a
 * housekeeping period wherever n_on_demand changed. */
void rsv_note_on_demand_room(resolver_engine *e)
{
    atomic_store(&e->on_demand_max_seen, e->cfg->on_demand_services_max);
    atomic_store(&e->on_demand_full, e->n_on_demand >= e->cfg->on_demand_services_max);
}

/* A service not in the configuration: go-zero's convention, prefix NAME/. */
rsv_service *rsv_find_or_discover(resolver_engine *e, const char *name, char *why, size_t whylen,
                                  int *err)
{
    rsv_service *svc = rsv_strmap_get(&e->services, name);
    if (svc)
        return svc;
    if (e->n_on_demand >= e->cfg->on_demand_services_max) {
        rsv_note_on_demand_room(e);
        *err = rsv_on_demand_refused(name, e->cfg->on_demand_services_max, why, whylen);
        return NULL;
    }
    size_t len = strlen(name);
    char *prefix = malloc(len + 2);
    if (!prefix) {
        *err = RESOLVER_ERR_NOMEM;
        return NULL;
    }
    memcpy(prefix, name, len);
    memcpy(prefix + len, "/", 2);
    svc = rsv_directory_add(e, name, prefix, &e->cfg->defaults);
    free(prefix);
    if (!svc) {
        *err = RESOLVER_ERR_NOMEM;
        return NULL;
    }
    e->n_on_demand++;
    return svc;
}

static uint64_t name_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h ? h : 1; /* 0 marks a free slot */
}

/* Any thread: claims `name`'s slot in `discovering` for a discover request
 * its caller then posts (this file posts nothing: tickets.c does, on the
 * pick path).  1 with *slot claimed, 0 when a request for it is in flight
 * already, -1 when every slot of its hash is taken by other names. */
int rsv_discover_claim(resolver_engine *e, const char *name, size_t *slot)
{
    uint64_t h = name_hash(name);
    for (size_t i = 0; i < RSV_DISCOVER_PROBES; i++) {
        size_t at = (size_t)((h + i) % RSV_DISCOVER_SLOTS);
        uint_fast64_t cur = atomic_load(&e->discovering[at]);
        if (cur == h)
            return 0;
        if (cur == 0 && atomic_compare_exchange_strong(&e->discovering[at], &cur, h)) {
            *slot = at;
            return 1;
        }
        if (cur == h) /* another thread claimed it for this name first */
            return 0;
    }
    return -1;
}

/* Any thread: frees a claimed slot (its request was applied, or could not
 * be posted). */
void rsv_discover_release(resolver_engine *e, size_t slot)
{
    atomic_store(&e->discovering[slot], 0);
}

/* Loop thread: applies a discover request posted for `name` in `slot`. */
void rsv_discover_apply(resolver_engine *e, const char *name, size_t slot)
{
    static rsv_log_limit discover_log;
    char why[256];
    int err;
    if (!rsv_find_or_discover(e, name, why, sizeof(why), &err))
        LOG_WARN_LIMITED(&discover_log, "%s", why);
    /* After the directory names it: a pick that then misses it again
     * posts anew, and finds it done. */
    rsv_discover_release(e, slot);
}

void rsv_drop_idle_services(resolver_engine *e)
{
    uint64_t now = rsv_loop_now(e->loop);
    size_t n = 0;
    char **idle = calloc(e->services.len + 1, sizeof(char *));
    const char *name;
    void *value;
    for (size_t pos = 0; idle && rsv_strmap_next(&e->services, &pos, &name, &value);)
        if (!rsv_config_find_service(e->cfg, name) &&
            rsv_service_idle_ms(value, now) >= ON_DEMAND_IDLE_MS)
            idle[n++] = strdup(name);
    for (size_t i = 0; i < n; i++) {
        if (idle[i]) {
            LOG_INFO("service %s: no pick for %d s; no longer watched", idle[i],
                     ON_DEMAND_IDLE_MS / 1000);
            if (rsv_directory_remove(e, idle[i]) == 0)
                e->n_on_demand--;
        }
        free(idle[i]);
    }
    free(idle);
}
