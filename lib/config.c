/*
 * config.c - the JSON configuration: strict parsing, defaults, and the
 * effective configuration written back as JSON.
 *
 * Loading starts from a complete default configuration and applies what the
 * document sets, so every key is optional.  Unknown keys are errors, not
 * warnings: a misspelt key would otherwise leave a default silently in
 * place, the hardest kind of configuration mistake to notice.  Every message
 * names the full path of the offending key ("services[0].backoff.max_ms").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <jansson.h>

#include "confjson.h"

enum {
    CONFIG_FILE_MAX = 1 << 24, /* 16 MiB: a config is never this big; /dev/zero is */
};

/* ---- services --------------------------------------------------------- */

static int parse_service(rsv_conf_ctx *ctx, const char *path, json_t *v,
                         const rsv_service_options *defaults, rsv_service_config *svc)
{
    static const char *const keys[] = {"name", "prefix", NULL};
    char p[RSV_CONF_PATH_LEN];
    json_t *x;
    int rc;
    if (!json_is_object(v))
        return rsv_conf_wrong_type(ctx, path, v, "an object");
    if ((rc = rsv_conf_check_option_keys(ctx, path, v, keys)))
        return rc;
    if (!(x = json_object_get(v, "name")))
        return rsv_conf_fail(ctx, "%s: missing required key \"name\"", path);
    if ((rc = rsv_conf_take_string(ctx, rsv_conf_join(p, path, "name"), x, &svc->name)))
        return rc;
    if (!rsv_service_name_valid(svc->name))
        return rsv_conf_fail(ctx,
                             "%s: invalid service name \"%s\" (1..%d bytes of letters, digits, "
                             "%s and non-ASCII UTF-8)",
                             p, svc->name, RSV_SERVICE_NAME_MAX, RSV_SERVICE_NAME_PUNCT);
    if ((x = json_object_get(v, "prefix"))) {
        if ((rc = rsv_conf_take_string(ctx, rsv_conf_join(p, path, "prefix"), x, &svc->prefix)))
            return rc;
        /* An empty prefix would watch the whole etcd keyspace. */
        if (!*svc->prefix)
            return rsv_conf_fail(ctx, "%s: must not be empty", p);
    } else {
        size_t n = strlen(svc->name);
        if (!(svc->prefix = malloc(n + 2)))
            return rsv_conf_nomem(ctx);
        memcpy(svc->prefix, svc->name, n);
        memcpy(svc->prefix + n, "/", 2); /* go-zero's convention: NAME/ */
    }
    if (rsv_service_options_copy(&svc->options, defaults))
        return rsv_conf_nomem(ctx);
    return rsv_conf_parse_options(ctx, path, v, &svc->options);
}

static int parse_services(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg)
{
    if (!json_is_array(v))
        return rsv_conf_wrong_type(ctx, "services", v, "an array");
    size_t n = json_array_size(v);
    if (n == 0)
        return 0;
    if (!(cfg->services = calloc(n, sizeof(*cfg->services))))
        return rsv_conf_nomem(ctx);
    for (size_t i = 0; i < n; i++) {
        char p[RSV_CONF_PATH_LEN];
        rsv_service_config *svc = &cfg->services[i];
        cfg->n_services = i + 1; /* counted before parsing: free releases partial work */
        int rc = parse_service(ctx, rsv_conf_join_index(p, "services", i), json_array_get(v, i),
                               &cfg->defaults, svc);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->services[j].name, svc->name) == 0)
                return rsv_conf_fail(
                    ctx, "services[%zu].name: duplicate service \"%s\" (see services[%zu])", i,
                    svc->name, j);
    }
    return 0;
}

/* ---- the top level --------------------------------------------------- */

/* A key of "defaults" or of a section written at the top ("policy" for
 * "defaults.policy", "endpoints" for "etcd.endpoints"). */
static int root_home(const char *path, const char *key, char *out, size_t n)
{
    static const struct {
        const char *parent;
        const char *const *keys;
    } root_children[] = {{"etcd", rsv_conf_etcd_keys},
                         {"socket", rsv_conf_socket_keys},
                         {"metrics", rsv_conf_metrics_keys}};
    (void)path; /* always the top: "" */
    if (rsv_conf_opt_find(key))
        return snprintf(out, n, "defaults.%s", key) > 0;
    for (size_t i = 0; i < sizeof(root_children) / sizeof(root_children[0]); i++)
        if (rsv_conf_in_list(root_children[i].keys, key))
            return snprintf(out, n, "%s.%s", root_children[i].parent, key) > 0;
    return 0;
}

static int parse_root(rsv_conf_ctx *ctx, json_t *root, resolver_config *cfg)
{
    static const char *const keys[] = {"etcd",
                                       "socket",
                                       "metrics",
                                       "zone",
                                       "cache_file",
                                       "on_demand_services_max",
                                       "defaults",
                                       "services",
                                       "dns",
                                       "register",
                                       "deregister_grace_ms",
                                       NULL};
    json_t *x;
    uint64_t u;
    int rc;
    if (!json_is_object(root))
        return rsv_conf_wrong_type(ctx, "configuration", root, "a JSON object");
    if ((rc = rsv_conf_check_keys(ctx, "", root, keys, NULL, root_home)))
        return rc;
    if ((x = json_object_get(root, "etcd")) && (rc = rsv_conf_parse_etcd(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "socket")) && (rc = rsv_conf_parse_socket(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "metrics")) && (rc = rsv_conf_parse_metrics(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "dns")) && (rc = rsv_conf_parse_dns(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "zone"))) {
        if ((rc = rsv_conf_take_string(ctx, "zone", x, &cfg->zone)))
            return rc;
        /* Instance zones are compared against it and hold at most this much. */
        if (strlen(cfg->zone) >= RSV_ZONE_MAX)
            return rsv_conf_fail(ctx, "zone: \"%s\" is longer than %d bytes", cfg->zone,
                                 RSV_ZONE_MAX - 1);
    }
    if ((x = json_object_get(root, "cache_file")) &&
        (rc = rsv_conf_take_string(ctx, "cache_file", x, &cfg->cache_file)))
        return rc;
    if ((x = json_object_get(root, "on_demand_services_max"))) {
        if ((rc = rsv_conf_take_uint(ctx, "on_demand_services_max", x, 0, UINT32_MAX, &u)))
            return rc;
        cfg->on_demand_services_max = (uint32_t)u;
    }
    /* Defaults before services, whatever their order in the file: services
     * inherit from them. */
    if ((x = json_object_get(root, "defaults"))) {
        if (!json_is_object(x))
            return rsv_conf_wrong_type(ctx, "defaults", x, "an object");
        if ((rc = rsv_conf_check_option_keys(ctx, "defaults", x, NULL)) ||
            (rc = rsv_conf_parse_options(ctx, "defaults", x, &cfg->defaults)))
            return rc;
    }
    if ((x = json_object_get(root, "services")) && (rc = parse_services(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "register")) && (rc = rsv_conf_parse_registrations(ctx, x, cfg)))
        return rc;
    if ((x = json_object_get(root, "deregister_grace_ms")) &&
        (rc = rsv_conf_take_ms(ctx, "deregister_grace_ms", x, 0, &cfg->deregister_grace_ms)))
        return rc;
    return 0;
}

/* ---- public: building, loading, freeing -------------------------------- */

void resolver_config_free(resolver_config *cfg)
{
    if (!cfg)
        return;
    rsv_conf_strv_free(cfg->etcd.endpoints, cfg->etcd.n_endpoints);
    free(cfg->etcd.username);
    free(cfg->etcd.password_file);
    free(cfg->etcd.ca_file);
    free(cfg->etcd.cert_file);
    free(cfg->etcd.key_file);
    free(cfg->socket.path);
    free(cfg->socket.group);
    free(cfg->socket.admin_group);
    free(cfg->metrics.listen);
    rsv_conf_dns_free(cfg);
    free(cfg->zone);
    free(cfg->cache_file);
    rsv_service_options_clear(&cfg->defaults);
    for (size_t i = 0; i < cfg->n_services; i++) {
        free(cfg->services[i].name);
        free(cfg->services[i].prefix);
        rsv_service_options_clear(&cfg->services[i].options);
    }
    free(cfg->services);
    for (size_t i = 0; i < cfg->n_registrations; i++)
        rsv_registration_clear(&cfg->registrations[i]);
    free(cfg->registrations);
    free(cfg);
}

int resolver_config_new_default(resolver_config **out)
{
    if (!out)
        return RESOLVER_ERR_INVALID;
    *out = NULL;
    resolver_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return RESOLVER_ERR_NOMEM;
    const struct {
        char **dst;
        const char *value;
    } strings[] = {
        {&cfg->etcd.username, ""},  {&cfg->etcd.password_file, ""},
        {&cfg->etcd.ca_file, ""},   {&cfg->etcd.cert_file, ""},
        {&cfg->etcd.key_file, ""},  {&cfg->socket.path, "/run/resolverd/resolverd.sock"},
        {&cfg->socket.group, ""},   {&cfg->socket.admin_group, ""},
        {&cfg->metrics.listen, ""}, {&cfg->zone, ""},
        {&cfg->cache_file, ""},
    };
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        if (!(*strings[i].dst = strdup(strings[i].value)))
            goto fail;
    if (!(cfg->etcd.endpoints = calloc(1, sizeof(char *))) ||
        !(cfg->etcd.endpoints[0] = strdup("http://127.0.0.1:2379")))
        goto fail;
    cfg->etcd.n_endpoints = 1;
    cfg->etcd.dial_timeout_ms = 2000;
    cfg->socket.mode = 0660;
    cfg->socket.max_detached_tickets = 10000;
    cfg->on_demand_services_max = 256;
    cfg->deregister_grace_ms = 2000;
    rsv_service_options_default(&cfg->defaults);
    *out = cfg;
    return 0;
fail:
    resolver_config_free(cfg); /* endpoints: n_endpoints is still 0 */
    return RESOLVER_ERR_NOMEM;
}

/* A new configuration: the defaults with root applied.  On failure *out is
 * NULL and the message in ctx. */
static int load_root(rsv_conf_ctx *ctx, json_t *root, resolver_config **out)
{
    resolver_config *cfg = NULL;
    *out = NULL;
    if (resolver_config_new_default(&cfg))
        return rsv_conf_nomem(ctx);
    int rc = parse_root(ctx, root, cfg);
    if (rc) {
        resolver_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

static int load_text(rsv_conf_ctx *ctx, const char *text, size_t len, resolver_config **out)
{
    /* Zeroed: when jansson's first allocation fails it sets text[0] but not
     * the code byte json_error_code() reads (valgrind: uninitialised). */
    json_error_t jerr;
    memset(&jerr, 0, sizeof(jerr));
    /* Duplicate keys are rejected: with two "policy" keys only one would win,
     * silently. */
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        *out = NULL;
        /* jansson leaves the error empty when its first allocation fails. */
        if (json_error_code(&jerr) == json_error_out_of_memory || !jerr.text[0])
            return rsv_conf_nomem(ctx);
        return rsv_conf_fail(ctx, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                             jerr.text);
    }
    int rc = load_root(ctx, root, out);
    json_decref(root);
    return rc;
}

int resolver_config_load_string(const char *json, resolver_config **out, char *err, size_t errlen)
{
    rsv_conf_ctx ctx = {err, errlen, NULL, 0};
    if (err && errlen)
        err[0] = '\0';
    if (out)
        *out = NULL;
    if (!json || !out)
        return rsv_conf_report(&ctx, RESOLVER_ERR_INVALID, "no configuration text or no output");
    return load_text(&ctx, json, strlen(json), out);
}

/* Reads a whole file, keeping errno of the failing call for the caller. */
static int read_file(rsv_conf_ctx *ctx, const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf = NULL;
    size_t used = 0, cap = 0;
    int rc = 0, e;
    if (!f)
        goto io;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        goto io;
    }
    for (;;) {
        if (used == cap) {
            if (cap >= CONFIG_FILE_MAX) {
                rc = rsv_conf_fail(ctx, "larger than %d bytes: not a configuration file",
                                   CONFIG_FILE_MAX);
                goto out;
            }
            char *n = realloc(buf, cap = cap ? cap * 2 : 4096);
            if (!n) {
                rc = rsv_conf_nomem(ctx);
                goto out;
            }
            buf = n;
        }
        size_t got = fread(buf + used, 1, cap - used, f);
        used += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        goto io;
    fclose(f);
    *text = buf;
    *len = used;
    return 0;
io:
    e = errno;
    rc = rsv_conf_report(ctx, RESOLVER_ERR_IO, "%s", strerror(e));
    errno = e;
out:
    e = errno;
    if (f)
        fclose(f);
    free(buf);
    errno = e;
    return rc;
}

int resolver_config_load_file(const char *path, resolver_config **out, char *err, size_t errlen)
{
    rsv_conf_ctx ctx = {err, errlen, path, 0};
    char *text = NULL;
    size_t len = 0;
    if (err && errlen)
        err[0] = '\0';
    if (out)
        *out = NULL;
    if (!path || !out) {
        ctx.origin = NULL;
        return rsv_conf_report(&ctx, RESOLVER_ERR_INVALID, "no file name or no output");
    }
    int rc = read_file(&ctx, path, &text, &len);
    if (rc)
        return rc;
    rc = load_text(&ctx, text, len, out);
    free(text);
    return rc;
}

int resolver_config_set_endpoints(resolver_config *cfg, const char *csv)
{
    if (!cfg || !csv)
        return RESOLVER_ERR_INVALID;
    size_t n = 1;
    for (const char *c = csv; *c; c++)
        n += *c == ',';
    char **list = calloc(n, sizeof(*list));
    if (!list)
        return RESOLVER_ERR_NOMEM;
    int rc = 0;
    const char *item = csv;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *end = strchr(item, ',');
        if (!end)
            end = item + strlen(item);
        const char *next = *end ? end + 1 : end;
        /* "a, b" as people type it on a command line. */
        while (item < end && (*item == ' ' || *item == '\t'))
            item++;
        while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        char why[256], *url = strndup(item, (size_t)(end - item));
        size_t keep;
        if (!url)
            rc = RESOLVER_ERR_NOMEM;
        else if (rsv_conf_url_check(url, &keep, why, sizeof(why)))
            rc = RESOLVER_ERR_CONFIG;
        else
            url[keep] = '\0';
        list[i] = url;
        item = next;
    }
    if (rc) {
        rsv_conf_strv_free(list, n);
        return rc;
    }
    rsv_conf_set_endpoint_list(cfg, list, n);
    return 0;
}

const rsv_service_config *rsv_config_find_service(const resolver_config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_services; i++)
        if (strcmp(cfg->services[i].name, name) == 0)
            return &cfg->services[i];
    return NULL;
}

int rsv_config_equal(const resolver_config *a, const resolver_config *b)
{
    if (a->etcd.n_endpoints != b->etcd.n_endpoints || a->n_services != b->n_services ||
        a->n_registrations != b->n_registrations ||
        a->deregister_grace_ms != b->deregister_grace_ms)
        return 0;
    for (size_t i = 0; i < a->n_registrations; i++)
        if (!rsv_registration_equal(&a->registrations[i], &b->registrations[i]))
            return 0;
    for (size_t i = 0; i < a->etcd.n_endpoints; i++)
        if (!rsv_conf_str_equal(a->etcd.endpoints[i], b->etcd.endpoints[i]))
            return 0;
    for (size_t i = 0; i < a->n_services; i++) {
        const rsv_service_config *x = &a->services[i], *y = &b->services[i];
        if (!rsv_conf_str_equal(x->name, y->name) || !rsv_conf_str_equal(x->prefix, y->prefix) ||
            !rsv_service_options_equal(&x->options, &y->options))
            return 0;
    }
    return rsv_conf_str_equal(a->etcd.username, b->etcd.username) &&
           rsv_conf_str_equal(a->etcd.password_file, b->etcd.password_file) &&
           rsv_conf_str_equal(a->etcd.ca_file, b->etcd.ca_file) &&
           rsv_conf_str_equal(a->etcd.cert_file, b->etcd.cert_file) &&
           rsv_conf_str_equal(a->etcd.key_file, b->etcd.key_file) &&
           a->etcd.dial_timeout_ms == b->etcd.dial_timeout_ms &&
           rsv_conf_str_equal(a->socket.path, b->socket.path) && a->socket.mode == b->socket.mode &&
           rsv_conf_str_equal(a->socket.group, b->socket.group) &&
           rsv_conf_str_equal(a->socket.admin_group, b->socket.admin_group) &&
           a->socket.max_detached_tickets == b->socket.max_detached_tickets &&
           rsv_conf_str_equal(a->metrics.listen, b->metrics.listen) &&
           rsv_conf_str_equal(a->zone, b->zone) &&
           rsv_conf_str_equal(a->cache_file, b->cache_file) &&
           a->on_demand_services_max == b->on_demand_services_max && rsv_config_dns_equal(a, b) &&
           rsv_service_options_equal(&a->defaults, &b->defaults);
}

/* ---- the effective configuration as JSON ------------------------------ */

static json_t *config_to_json(const resolver_config *cfg)
{
    char mode[16];
    snprintf(mode, sizeof(mode), "%04o", cfg->socket.mode);
    json_t *endpoints = json_array();
    for (size_t i = 0; endpoints && i < cfg->etcd.n_endpoints; i++)
        if (json_array_append_new(endpoints, rsv_conf_jstr(cfg->etcd.endpoints[i]))) {
            json_decref(endpoints);
            endpoints = NULL;
        }
    json_t *services = json_array();
    for (size_t i = 0; services && i < cfg->n_services; i++) {
        const rsv_service_config *s = &cfg->services[i];
        json_t *obj = json_pack("{s:o,s:o}", "name", rsv_conf_jstr(s->name), "prefix",
                                rsv_conf_jstr(s->prefix));
        if (json_array_append_new(services, rsv_conf_options_to_json(&s->options, obj))) {
            json_decref(services);
            services = NULL;
        }
    }
    /* "o" steals each reference, and json_pack releases them on failure. */
    return json_pack(
        "{s:{s:o,s:o,s:o,s:o,s:o,s:o,s:o},s:{s:o,s:s,s:o,s:o,s:o},s:{s:o},s:o,s:o,s:o,s:o,s:o}",
        "etcd", "endpoints", endpoints, "username", rsv_conf_jstr(cfg->etcd.username),
        "password_file", rsv_conf_jstr(cfg->etcd.password_file), "ca_file",
        rsv_conf_jstr(cfg->etcd.ca_file), "cert_file", rsv_conf_jstr(cfg->etcd.cert_file),
        "key_file", rsv_conf_jstr(cfg->etcd.key_file), "dial_timeout_ms",
        rsv_conf_jint(cfg->etcd.dial_timeout_ms), "socket", "path", rsv_conf_jstr(cfg->socket.path),
        "mode", mode, "group", rsv_conf_jstr(cfg->socket.group), "admin_group",
        rsv_conf_jstr(cfg->socket.admin_group), "max_detached_tickets",
        rsv_conf_jint(cfg->socket.max_detached_tickets), "metrics", "listen",
        rsv_conf_jstr(cfg->metrics.listen), "zone", rsv_conf_jstr(cfg->zone), "cache_file",
        rsv_conf_jstr(cfg->cache_file), "on_demand_services_max",
        rsv_conf_jint(cfg->on_demand_services_max), "defaults",
        rsv_conf_options_to_json(&cfg->defaults, json_object()), "services", services);
}

/* The fewest significant digits that print every real of cfg exactly, so
 * that 1.6 is written "1.6" and not "1.6000000000000001". */
static int real_precision(const resolver_config *cfg)
{
    int precision = 1;
    for (size_t i = 0; i <= cfg->n_services; i++) {
        const rsv_backoff_config *b =
            i < cfg->n_services ? &cfg->services[i].options.backoff : &cfg->defaults.backoff;
        const double reals[] = {b->multiplier, b->jitter};
        for (size_t j = 0; j < 2; j++) {
            char buf[64];
            for (;; precision++) {
                int n = snprintf(buf, sizeof(buf), "%.*g", precision, reals[j]);
                if (precision >= 17 || (n > 0 && strtod(buf, NULL) == reals[j]))
                    break;
            }
        }
    }
    return precision;
}

/* The whole configuration as one JSON object, or NULL when out of memory. */
static json_t *document(const resolver_config *cfg)
{
    json_t *root = config_to_json(cfg);
    if (!root || json_object_set_new(root, "dns", rsv_conf_dns_to_json(cfg)) != 0 ||
        json_object_set_new(root, "register", rsv_conf_registrations_to_json(cfg)) != 0 ||
        json_object_set_new(root, "deregister_grace_ms", rsv_conf_jint(cfg->deregister_grace_ms)) !=
            0) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int rsv_config_to_json(const resolver_config *cfg, char **out)
{
    if (!cfg || !out)
        return RESOLVER_ERR_INVALID;
    *out = NULL;
    json_t *root = document(cfg);
    if (!root)
        return RESOLVER_ERR_NOMEM;
    *out = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(real_precision(cfg)));
    json_decref(root);
    return *out ? 0 : RESOLVER_ERR_NOMEM;
}

static int key_component(const char *s, size_t n, char *name, size_t *index, int *indexed);

/* Walks doc along key without changing it: the value named, or NULL. */
static json_t *doc_get(json_t *doc, const char *key, int *malformed)
{
    json_t *obj = doc;
    *malformed = 0;
    for (const char *p = key;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p), index = 0;
        char name[RSV_CONF_PATH_LEN];
        int indexed;
        if (key_component(p, n, name, &index, &indexed)) {
            *malformed = 1;
            return NULL;
        }
        obj = json_object_get(obj, name);
        if (indexed)
            obj = json_array_get(obj, index);
        if (!obj || !dot)
            return obj;
        p = dot + 1;
    }
}

int resolver_config_get(const resolver_config *cfg, const char *key, char **json)
{
    if (!cfg || !json)
        return RESOLVER_ERR_INVALID;
    *json = NULL;
    if (!key || !*key)
        return rsv_config_to_json(cfg, json);
    json_t *root = document(cfg);
    if (!root)
        return RESOLVER_ERR_NOMEM;
    int malformed;
    json_t *v = doc_get(root, key, &malformed);
    int rc = malformed ? RESOLVER_ERR_INVALID : v ? 0 : RESOLVER_ERR_NOT_FOUND;
    if (v) {
        *json = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT |
                                  JSON_REAL_PRECISION(real_precision(cfg)));
        if (!*json)
            rc = RESOLVER_ERR_NOMEM;
    }
    json_decref(root);
    return rc;
}

/* ---- built in code: one key, one service at a time -------------------- */

/* Every change is made on the configuration as a JSON document (what
 * rsv_config_to_json writes, which loads back into an equal configuration),
 * and the changed document is loaded again by parse_root: a key set in code
 * gets exactly the checks and the messages it gets in a file, and a change
 * that fails leaves cfg as it was. */

/* Replaces cfg's contents with what doc loads into.  0 or the load's error. */
static int apply_document(rsv_conf_ctx *ctx, json_t *doc, resolver_config *cfg)
{
    resolver_config *fresh = NULL;
    int rc = load_root(ctx, doc, &fresh);
    if (rc)
        return rc;
    resolver_config old = *cfg;
    *cfg = *fresh;
    *fresh = old;
    resolver_config_free(fresh);
    return 0;
}

/* obj[key] = value (a new reference is taken), merged key by key into an
 * object already there, as a file's object applies over what it inherits. */
static int merge(json_t *obj, const char *key, json_t *value)
{
    json_t *old = json_object_get(obj, key);
    if (!json_is_object(old) || !json_is_object(value))
        return json_object_set(obj, key, value) ? RESOLVER_ERR_NOMEM : 0;
    const char *k;
    json_t *v;
    json_object_foreach(value, k, v)
    {
        int rc = merge(old, k, v);
        if (rc)
            return rc;
    }
    return 0;
}

/* One component of a key: "name" or "name[index]". */
static int key_component(const char *s, size_t n, char *name, size_t *index, int *indexed)
{
    const char *open = memchr(s, '[', n);
    size_t len = open ? (size_t)(open - s) : n;
    if (len == 0 || len >= RSV_CONF_PATH_LEN)
        return -1;
    memcpy(name, s, len);
    name[len] = '\0';
    *indexed = open != NULL;
    if (!open)
        return 0;
    size_t i = len + 1, value = 0;
    if (i >= n - 1 || s[n - 1] != ']')
        return -1;
    for (; i < n - 1; i++) {
        if (s[i] < '0' || s[i] > '9' || value > 1000000)
            return -1;
        value = value * 10 + (size_t)(s[i] - '0');
    }
    *index = value;
    return 0;
}

/* Walks doc along key ("etcd.dial_timeout_ms", "services[1].backoff"),
 * making an object of each missing component, and sets the last one to
 * value.  An index names an element that exists: lists are set whole. */
static int doc_set(rsv_conf_ctx *ctx, json_t *doc, const char *key, json_t *value)
{
    json_t *obj = doc;
    for (const char *p = key;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p), index = 0;
        char name[RSV_CONF_PATH_LEN];
        int indexed;
        if (key_component(p, n, name, &index, &indexed))
            return rsv_conf_report(ctx, RESOLVER_ERR_INVALID, "invalid key \"%s\"", key);
        json_t *next = json_object_get(obj, name);
        if (indexed) {
            size_t size = json_array_size(next);
            if (index >= size)
                return rsv_conf_fail(ctx, "%.*s: no such element (the list has %zu)",
                                     (int)(p + n - key), key, size);
            json_t *el = json_array_get(next, index);
            if (!dot && json_is_object(el) && json_is_object(value)) {
                const char *k;
                json_t *v;
                json_object_foreach(value, k, v)
                {
                    if (merge(el, k, v))
                        return rsv_conf_nomem(ctx);
                }
                return 0;
            }
            if (!dot || !json_is_object(el))
                if (json_array_set_new(next, index, dot ? json_object() : json_incref(value)))
                    return rsv_conf_nomem(ctx);
            if (!dot)
                return 0;
            obj = json_array_get(next, index);
        } else {
            if (!dot)
                return merge(obj, name, value) ? rsv_conf_nomem(ctx) : 0;
            if (!json_is_object(next) && json_object_set_new(obj, name, json_object()))
                return rsv_conf_nomem(ctx);
            obj = json_object_get(obj, name);
        }
        p = dot + 1;
    }
}

/* Sets key to value in a copy of cfg's document and loads it into cfg. */
static int set_value(rsv_conf_ctx *ctx, resolver_config *cfg, const char *key, json_t *value)
{
    json_t *doc = document(cfg);
    if (!doc)
        return rsv_conf_nomem(ctx);
    int rc = doc_set(ctx, doc, key, value);
    if (!rc)
        rc = apply_document(ctx, doc, cfg);
    json_decref(doc);
    return rc;
}

/* value as JSON; text that is not JSON is a string (unless it starts like
 * an object, array or string: then it is a mistake). */
static int parse_value(rsv_conf_ctx *ctx, const char *key, const char *text, json_t **out)
{
    json_error_t jerr;
    memset(&jerr, 0, sizeof(jerr));
    *out = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (*out)
        return 0;
    if (json_error_code(&jerr) == json_error_out_of_memory || !jerr.text[0])
        return rsv_conf_nomem(ctx);
    const char *t = text + strspn(text, " \t\r\n");
    if (*t == '{' || *t == '[' || *t == '"')
        return rsv_conf_fail(ctx, "%s: invalid JSON at column %d: %s", key, jerr.column, jerr.text);
    if ((*out = json_string(text)))
        return 0;
    /* json_string refuses text that is not UTF-8 (or fails to allocate). */
    json_t *probe = json_string("");
    if (!probe)
        return rsv_conf_nomem(ctx);
    json_decref(probe);
    return rsv_conf_fail(ctx, "%s: the value is not UTF-8 text", key);
}

int resolver_config_set(resolver_config *cfg, const char *key, const char *value, char *err,
                        size_t errlen)
{
    rsv_conf_ctx ctx = {err, errlen, NULL, 0};
    if (err && errlen)
        err[0] = '\0';
    if (!cfg || !key || !*key || !value)
        return rsv_conf_report(&ctx, RESOLVER_ERR_INVALID, "no configuration, key or value");
    json_t *v = NULL;
    int rc = parse_value(&ctx, key, value, &v);
    if (rc)
        return rc;
    rc = set_value(&ctx, cfg, key, v);
    /* "1000" for a key that takes a string (a zone named 1000) is the
     * string; the first message stands if that fails too. */
    if (rc == RESOLVER_ERR_CONFIG && ctx.wanted_string && !json_is_string(v) &&
        !json_is_object(v) && !json_is_array(v)) {
        rsv_conf_ctx quiet = {NULL, 0, NULL, 0};
        json_t *s = json_string(value);
        if (s && set_value(&quiet, cfg, key, s) == 0) {
            rc = 0;
            if (err && errlen)
                err[0] = '\0';
        }
        json_decref(s);
    }
    json_decref(v);
    return rc;
}

int resolver_config_add_service(resolver_config *cfg, const char *name, const char *options,
                                char *err, size_t errlen)
{
    rsv_conf_ctx ctx = {err, errlen, NULL, 0};
    char path[RSV_CONF_PATH_LEN];
    if (err && errlen)
        err[0] = '\0';
    if (!cfg || (!name && (!options || !*options)))
        return rsv_conf_report(&ctx, RESOLVER_ERR_INVALID, "no configuration or no service name");
    rsv_conf_join_index(path, "services", cfg->n_services);
    json_t *svc = json_object();
    if (options && *options) {
        json_error_t jerr;
        memset(&jerr, 0, sizeof(jerr));
        json_decref(svc);
        svc = json_loads(options, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        if (!svc && json_error_code(&jerr) != json_error_out_of_memory && jerr.text[0])
            return rsv_conf_fail(&ctx, "%s: invalid JSON at column %d: %s", path, jerr.column,
                                 jerr.text);
    }
    if (!svc)
        return rsv_conf_nomem(&ctx);
    int rc = 0;
    json_t *given = json_object_get(svc, "name");
    if (name && given && !(json_is_string(given) && strcmp(json_string_value(given), name) == 0))
        rc = rsv_conf_report(&ctx, RESOLVER_ERR_INVALID,
                             "%s.name: the options name another service than \"%s\"", path, name);
    else if (name && json_is_object(svc) && !given &&
             json_object_set_new(svc, "name", rsv_conf_jstr(name)))
        rc = rsv_conf_nomem(&ctx);
    json_t *doc = rc ? NULL : document(cfg);
    if (!rc && !doc)
        rc = rsv_conf_nomem(&ctx);
    if (!rc && json_array_append(json_object_get(doc, "services"), svc))
        rc = rsv_conf_nomem(&ctx);
    if (!rc)
        rc = apply_document(&ctx, doc, cfg);
    json_decref(doc);
    json_decref(svc);
    return rc;
}

int resolver_config_remove_service(resolver_config *cfg, const char *name)
{
    if (!cfg || !name)
        return RESOLVER_ERR_INVALID;
    for (size_t i = 0; i < cfg->n_services; i++) {
        rsv_service_config *s = &cfg->services[i];
        if (strcmp(s->name, name) != 0)
            continue;
        free(s->name);
        free(s->prefix);
        rsv_service_options_clear(&s->options);
        memmove(s, s + 1, (cfg->n_services - i - 1) * sizeof(*s));
        cfg->n_services--;
        return 0;
    }
    return RESOLVER_ERR_NOT_FOUND;
}
