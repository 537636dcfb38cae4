/*
 * reload.c - a new configuration replaces the old: the differences logged,
 * services added, removed or given new options (subchannels of instances
 * that stay are kept), DNS servers and registrations applied.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "confdiff.h"
#include "engine_internal.h"
#include "log.h"

/* ---- reload ---- */

static int service_in_config(const resolver_config *cfg, const char *name)
{
    return rsv_config_find_service(cfg, name) != NULL;
}

/* One line per difference a reload brings; keys only a restart applies are
 * warnings (the daemon keeps running with the old value). */
static void log_reload_change(void *arg, rsv_diff_kind kind, const char *key, const char *old_value,
                              const char *new_value)
{
    switch (kind) {
    case RSV_DIFF_SERVICE_ADDED:
        LOG_INFO("reload: service %s added (prefix %s)", key, new_value ? new_value : "?");
        break;
    case RSV_DIFF_SERVICE_REMOVED:
        LOG_INFO("reload: service %s removed", key);
        break;
    case RSV_DIFF_CHANGED:
        LOG_INFO("reload: %s: %s -> %s", key, old_value ? old_value : "(none)",
                 new_value ? new_value : "(none)");
        break;
    case RSV_DIFF_NEEDS_RESTART:
        LOG_WARN("reload: %s: %s -> %s needs a restart; %s stays in effect until then", key,
                 old_value ? old_value : "(none)", new_value ? new_value : "(none)",
                 old_value ? old_value : "(none)");
        break;
    }
}

int resolver_engine_reload(resolver_engine *e, resolver_config *cfg, char *err, size_t errlen)
{
    if (!e || !cfg) {
        resolver_config_free(cfg);
        if (err && errlen)
            snprintf(err, errlen, "no engine or no configuration");
        return RESOLVER_ERR_INVALID;
    }
    int changes = rsv_config_diff(e->cfg, cfg, log_reload_change, NULL);
    /* Services the old config listed and the new one does not are dropped;
     * on-demand services stay (they were asked for by clients). */
    size_t n = 0;
    char **gone = calloc(e->services.len + 1, sizeof(char *));
    if (!gone) {
        resolver_config_free(cfg);
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return RESOLVER_ERR_NOMEM;
    }
    const char *name;
    for (size_t pos = 0; rsv_strmap_next(&e->services, &pos, &name, NULL);)
        if (service_in_config(e->cfg, name) && !service_in_config(cfg, name))
            gone[n++] = strdup(name);
    for (size_t i = 0; i < n; i++) {
        if (gone[i])
            rsv_directory_remove(e, gone[i]); /* logged by log_reload_change */
        free(gone[i]);
    }
    free(gone);
    for (size_t i = 0; i < cfg->n_services; i++) {
        const rsv_service_config *sc = &cfg->services[i];
        rsv_service *svc = rsv_strmap_get(&e->services, sc->name);
        /* An on-demand service the new configuration lists is no longer on
         * demand, whether it stays or is replaced for another prefix. */
        if (svc && !service_in_config(e->cfg, sc->name) && e->n_on_demand > 0)
            e->n_on_demand--;
        if (svc && strcmp(rsv_service_prefix(svc), sc->prefix) != 0 &&
            rsv_directory_remove(e, sc->name) == 0)
            svc = NULL; /* out of memory: it stays, with its old prefix */
        if (svc) {
            rsv_service_set_options(svc, &sc->options);
        } else {
            rsv_directory_add(e, sc->name, sc->prefix, &sc->options);
        }
    }
    /* New servers apply at once; without servers of its own a reload
     * re-reads /etc/resolv.conf. */
    int dns_changed = !rsv_config_dns_equal(e->cfg, cfg);
    if (dns_changed || cfg->dns.n_servers == 0) {
        rsv_dns_options dns_opts = rsv_engine_dns_options(cfg);
        if (rsv_dns_configure(e->dns, &dns_opts) != 0)
            LOG_WARN("dns: cannot apply the new servers; keeping the old ones");
        else if (dns_changed)
            LOG_INFO("dns: %zu servers configured%s", cfg->dns.n_servers,
                     cfg->dns.n_servers ? "" : " (the system's, from /etc/resolv.conf)");
    }
    rsv_registrar_forget_config(e->registrar, cfg);
    rsv_registrar_set_grace(e->registrar, cfg->deregister_grace_ms);
    if (rsv_engine_add_registrations(e, cfg) != 0)
        LOG_WARN("register: out of memory applying the reloaded registrations");
    resolver_config_free(e->cfg);
    e->cfg = cfg;
    if (changes == 0)
        LOG_INFO("configuration reloaded: no change");
    else
        LOG_INFO("configuration reloaded: %zu service%s configured%s", cfg->n_services,
                 cfg->n_services == 1 ? "" : "s",
                 changes < 0 ? " (changes not listed: out of memory)" : "");
    return 0;
}
