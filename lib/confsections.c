/*
 * confsections.c - the configuration's sections other than defaults,
 * services and registrations: etcd (endpoint URLs, credential files),
 * socket, metrics, dns; and the service-name alphabet.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include <sys/un.h>

#include "confjson.h"
#include "dns.h"

/* Also consulted for a key written one level off (confjson.c). */
const char *const rsv_conf_etcd_keys[] = {"endpoints", "username", "password_file",   "ca_file",
                                          "cert_file", "key_file", "dial_timeout_ms", NULL};
const char *const rsv_conf_socket_keys[] = {
    "path", "mode", "group", "admin_group", "max_detached_tickets", NULL};
const char *const rsv_conf_metrics_keys[] = {"listen", NULL};

/* ---- addresses -------------------------------------------------------- */

static int is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Checks "host:port", "[v6]:port" or "host" in s[0..n).  Returns NULL or a
 * static reason. */
static const char *hostport_check(const char *s, size_t n, int need_host, int need_port)
{
    const char *port = NULL;
    size_t hlen, plen = 0;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return "unterminated '[' in an IPv6 address";
        hlen = (size_t)(close - s - 1);
        for (size_t i = 1; i <= hlen; i++)
            if (!is_hex((unsigned char)s[i]) && s[i] != ':' && s[i] != '.')
                return "invalid IPv6 address";
        if (hlen == 0)
            return "empty IPv6 address";
        size_t rest = n - (size_t)(close + 1 - s);
        if (rest > 0 && close[1] != ':')
            return "unexpected text after ']'";
        if (rest > 0) {
            port = close + 2;
            plen = rest - 1;
        }
    } else {
        const char *colon = NULL;
        for (size_t i = 0; i < n; i++) {
            if (s[i] != ':')
                continue;
            if (colon)
                return "IPv6 addresses need brackets, e.g. [::1]:2379";
            colon = s + i;
        }
        hlen = colon ? (size_t)(colon - s) : n;
        for (size_t i = 0; i < hlen; i++)
            if (!is_alnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
                return "invalid character in host name";
        if (colon) {
            port = colon + 1;
            plen = n - hlen - 1;
        }
    }
    if (need_host && hlen == 0)
        return "missing host";
    if (!port)
        return need_port ? "missing port" : NULL;
    unsigned long value = 0;
    if (plen == 0 || plen > 5)
        return "port must be 1..65535";
    for (size_t i = 0; i < plen; i++) {
        if (port[i] < '0' || port[i] > '9')
            return "port must be 1..65535";
        value = value * 10 + (unsigned long)(port[i] - '0');
    }
    return value >= 1 && value <= 65535 ? NULL : "port must be 1..65535";
}

/* Validates an etcd endpoint URL.  Only scheme://host[:port][/] is taken:
 * the etcd client appends its own paths, and credentials belong in
 * etcd.username/password_file, not in a URL that ends up in logs.  On
 * success *keep is the length without the trailing '/'. */
int rsv_conf_url_check(const char *url, size_t *keep, char *why, size_t whylen)
{
    size_t skip;
    if (strncasecmp(url, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        skip = 8;
    else {
        snprintf(why, whylen, "\"%s\" is not an http:// or https:// URL", url);
        return -1;
    }
    const char *auth = url + skip;
    size_t n = strlen(auth);
    if (n > 0 && auth[n - 1] == '/')
        n--;
    const char *reason = NULL;
    if (memchr(auth, '@', n))
        reason = "user names go in etcd.username, not in the URL";
    else if (memchr(auth, '/', n) || memchr(auth, '?', n) || memchr(auth, '#', n))
        reason = "only scheme://host[:port] is allowed, without a path";
    else
        reason = hostport_check(auth, n, 1, 0);
    if (reason) {
        snprintf(why, whylen, "\"%s\" is not a valid URL: %s", url, reason);
        return -1;
    }
    *keep = skip + n;
    return 0;
}

void rsv_conf_set_endpoint_list(resolver_config *cfg, char **list, size_t n)
{
    rsv_conf_strv_free(cfg->etcd.endpoints, cfg->etcd.n_endpoints);
    cfg->etcd.endpoints = list;
    cfg->etcd.n_endpoints = n;
}

/* ---- sections --------------------------------------------------------- */

static int parse_endpoints(rsv_conf_ctx *ctx, const char *path, json_t *v, resolver_config *cfg)
{
    if (!json_is_array(v))
        return rsv_conf_wrong_type(ctx, path, v, "an array of URLs");
    size_t n = json_array_size(v);
    if (n == 0)
        return rsv_conf_fail(ctx, "%s: must list at least one URL", path);
    char **list = calloc(n, sizeof(*list));
    if (!list)
        return rsv_conf_nomem(ctx);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char p[RSV_CONF_PATH_LEN], why[RSV_CONF_PATH_LEN + RSV_CONF_VALUE_LEN];
        json_t *x = json_array_get(v, i);
        size_t keep;
        rsv_conf_join_index(p, path, i);
        if (!json_is_string(x))
            rc = rsv_conf_wrong_type(ctx, p, x, "a URL string");
        else if (rsv_conf_url_check(json_string_value(x), &keep, why, sizeof(why)))
            rc = rsv_conf_fail(ctx, "%s: %s", p, why);
        else if (!(list[i] = strndup(json_string_value(x), keep)))
            rc = rsv_conf_nomem(ctx);
    }
    if (rc) {
        rsv_conf_strv_free(list, n);
        return rc;
    }
    rsv_conf_set_endpoint_list(cfg, list, n);
    return 0;
}

/* systemd's LoadCredential= puts files in $CREDENTIALS_DIRECTORY, a path
 * known only once the service runs: a relative file name is looked up there
 * when it is set, and a name may start with "$CREDENTIALS_DIRECTORY/" (or
 * "${CREDENTIALS_DIRECTORY}/") to require it. */
static int resolve_credential(rsv_conf_ctx *ctx, const char *path, char **file)
{
    static const char *const vars[] = {"$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"};
    const char *f = *file, *rest = NULL;
    if (!*f)
        return 0;
    for (size_t i = 0; i < 2 && !rest; i++)
        if (strncmp(f, vars[i], strlen(vars[i])) == 0)
            rest = f + strlen(vars[i]);
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (rest && (!dir || !*dir))
        return rsv_conf_fail(
            ctx,
            "%s: \"%s\" names $CREDENTIALS_DIRECTORY, which is not set (systemd sets it "
            "for a unit with LoadCredential=)",
            path, f);
    if (!rest) {
        if (f[0] == '/' || !dir || !*dir)
            return 0;
        rest = f;
    }
    size_t n = strlen(dir) + 1 + strlen(rest) + 1;
    char *joined = malloc(n);
    if (!joined)
        return rsv_conf_nomem(ctx);
    snprintf(joined, n, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", rest);
    free(*file);
    *file = joined;
    return 0;
}

int rsv_conf_parse_etcd(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg)
{
    const char *const *keys = rsv_conf_etcd_keys;
    const struct {
        const char *key;
        char **dst;
    } strings[] = {
        {"username", &cfg->etcd.username}, {"password_file", &cfg->etcd.password_file},
        {"ca_file", &cfg->etcd.ca_file},   {"cert_file", &cfg->etcd.cert_file},
        {"key_file", &cfg->etcd.key_file},
    };
    char p[RSV_CONF_PATH_LEN];
    json_t *x;
    int rc;
    if (!json_is_object(v))
        return rsv_conf_wrong_type(ctx, "etcd", v, "an object");
    if ((rc = rsv_conf_check_keys(ctx, "etcd", v, keys, NULL, NULL)))
        return rc;
    if ((x = json_object_get(v, "endpoints")) &&
        (rc = parse_endpoints(ctx, "etcd.endpoints", x, cfg)))
        return rc;
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        if ((x = json_object_get(v, strings[i].key)) &&
            (rc = rsv_conf_take_string(ctx, rsv_conf_join(p, "etcd", strings[i].key), x,
                                       strings[i].dst)))
            return rc;
    for (size_t i = 1; i < sizeof(strings) / sizeof(strings[0]); i++) /* the files */
        if ((rc =
                 resolve_credential(ctx, rsv_conf_join(p, "etcd", strings[i].key), strings[i].dst)))
            return rc;
    if ((x = json_object_get(v, "dial_timeout_ms")) &&
        (rc = rsv_conf_take_ms(ctx, "etcd.dial_timeout_ms", x, 1, &cfg->etcd.dial_timeout_ms)))
        return rc;
    /* A client certificate is useless without its key and the reverse. */
    if (!*cfg->etcd.cert_file != !*cfg->etcd.key_file)
        return rsv_conf_fail(ctx, "%s: set without %s",
                             *cfg->etcd.cert_file ? "etcd.cert_file" : "etcd.key_file",
                             *cfg->etcd.cert_file ? "etcd.key_file" : "etcd.cert_file");
    return 0;
}

/* "0660" (octal, as chmod takes it) or a JSON integer. */
static int parse_mode(rsv_conf_ctx *ctx, const char *path, const json_t *v, unsigned *mode)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > 0777)
            return rsv_conf_fail(
                ctx,
                "%s: must be in 0..511 (0..0777 in octal), got %" JSON_INTEGER_FORMAT
                "; write modes as octal strings such as \"0660\"",
                path, i);
        *mode = (unsigned)i;
        return 0;
    }
    if (!json_is_string(v))
        return rsv_conf_wrong_type(ctx, path, v, "an octal string such as \"0660\"");
    const char *s = json_string_value(v);
    size_t n = strlen(s);
    unsigned value = 0;
    int ok = n >= 1 && n <= 6; /* "01777" is octal too, just out of range */
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i] >= '0' && s[i] <= '7';
        value = value * 8 + (unsigned)(s[i] - '0');
    }
    if (!ok)
        return rsv_conf_fail(ctx, "%s: \"%s\" is not an octal mode such as \"0660\"", path, s);
    if (value > 0777)
        return rsv_conf_fail(ctx, "%s: must be at most 0777, got \"%s\"", path, s);
    *mode = value;
    return 0;
}

int rsv_conf_parse_socket(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg)
{
    const char *const *keys = rsv_conf_socket_keys;
    json_t *x;
    int rc;
    if (!json_is_object(v))
        return rsv_conf_wrong_type(ctx, "socket", v, "an object");
    if ((rc = rsv_conf_check_keys(ctx, "socket", v, keys, NULL, NULL)))
        return rc;
    if ((x = json_object_get(v, "path"))) {
        if ((rc = rsv_conf_take_string(ctx, "socket.path", x, &cfg->socket.path)))
            return rc;
        size_t n = strlen(cfg->socket.path);
        if (n == 0)
            return rsv_conf_fail(ctx, "socket.path: must not be empty");
        if (n >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return rsv_conf_fail(
                ctx, "socket.path: \"%s\" is too long for a Unix socket (%zu bytes, at most %zu)",
                cfg->socket.path, n, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    }
    if ((x = json_object_get(v, "mode")) &&
        (rc = parse_mode(ctx, "socket.mode", x, &cfg->socket.mode)))
        return rc;
    if ((x = json_object_get(v, "group")) &&
        (rc = rsv_conf_take_string(ctx, "socket.group", x, &cfg->socket.group)))
        return rc;
    if ((x = json_object_get(v, "admin_group")) &&
        (rc = rsv_conf_take_string(ctx, "socket.admin_group", x, &cfg->socket.admin_group)))
        return rc;
    uint64_t u;
    if ((x = json_object_get(v, "max_detached_tickets"))) {
        if ((rc = rsv_conf_take_uint(ctx, "socket.max_detached_tickets", x, 0, 100000000, &u)))
            return rc;
        cfg->socket.max_detached_tickets = (uint32_t)u;
    }
    return 0;
}

int rsv_conf_parse_metrics(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg)
{
    const char *const *keys = rsv_conf_metrics_keys;
    json_t *x;
    int rc;
    if (!json_is_object(v))
        return rsv_conf_wrong_type(ctx, "metrics", v, "an object");
    if ((rc = rsv_conf_check_keys(ctx, "metrics", v, keys, NULL, NULL)))
        return rc;
    if (!(x = json_object_get(v, "listen")))
        return 0;
    if ((rc = rsv_conf_take_string(ctx, "metrics.listen", x, &cfg->metrics.listen)))
        return rc;
    const char *s = cfg->metrics.listen;
    const char *why = *s ? hostport_check(s, strlen(s), 0, 1) : NULL; /* "": disabled */
    if (why)
        return rsv_conf_fail(ctx, "metrics.listen: \"%s\" is not HOST:PORT or :PORT: %s", s, why);
    return 0;
}

/* The length of the well-formed UTF-8 sequence of a non-ASCII code point
 * at s (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF), or
 * 0. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (len == 0 || len > left || s[0] < 0xc2 || s[0] > 0xf4)
        return 0;
    uint32_t cp = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* ---- dns: the name servers of instance host names (dns.h) ---- */

static int parse_dns_servers(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg)
{
    if (!json_is_array(v))
        return rsv_conf_wrong_type(ctx, "dns.servers", v, "an array of addresses");
    size_t n = json_array_size(v);
    char **list = n ? calloc(n, sizeof(*list)) : NULL;
    if (n && !list)
        return rsv_conf_nomem(ctx);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char p[RSV_CONF_PATH_LEN];
        json_t *x = json_array_get(v, i);
        rsv_conf_join_index(p, "dns.servers", i);
        if (!json_is_string(x))
            rc = rsv_conf_wrong_type(ctx, p, x, "an address string");
        else if (!rsv_dns_server_valid(json_string_value(x)))
            rc = rsv_conf_fail(ctx, "%s: \"%s\" is not IP, IP:PORT or [IPv6]:PORT", p,
                               json_string_value(x));
        else if (!(list[i] = strdup(json_string_value(x))))
            rc = rsv_conf_nomem(ctx);
    }
    if (rc) {
        rsv_conf_strv_free(list, n);
        return rc;
    }
    rsv_conf_strv_free(cfg->dns.servers, cfg->dns.n_servers);
    cfg->dns.servers = list;
    cfg->dns.n_servers = n;
    return 0;
}

int rsv_conf_parse_dns(rsv_conf_ctx *ctx, json_t *v, resolver_config *cfg)
{
    static const char *const keys[] = {"servers", NULL};
    json_t *x;
    int rc;
    if (!json_is_object(v))
        return rsv_conf_wrong_type(ctx, "dns", v, "an object");
    if ((rc = rsv_conf_check_keys(ctx, "dns", v, keys, NULL, NULL)))
        return rc;
    if ((x = json_object_get(v, "servers")) && (rc = parse_dns_servers(ctx, x, cfg)))
        return rc;
    return 0;
}

void rsv_conf_dns_free(resolver_config *cfg)
{
    rsv_conf_strv_free(cfg->dns.servers, cfg->dns.n_servers);
    cfg->dns.servers = NULL;
    cfg->dns.n_servers = 0;
}

int rsv_config_dns_equal(const resolver_config *a, const resolver_config *b)
{
    if (a->dns.n_servers != b->dns.n_servers)
        return 0;
    for (size_t i = 0; i < a->dns.n_servers; i++)
        if (!rsv_conf_str_equal(a->dns.servers[i], b->dns.servers[i]))
            return 0;
    return 1;
}

/* {"servers": [...]}; NULL when out of memory. */
json_t *rsv_conf_dns_to_json(const resolver_config *cfg)
{
    json_t *servers = json_array();
    for (size_t i = 0; servers && i < cfg->dns.n_servers; i++)
        if (json_array_append_new(servers, rsv_conf_jstr(cfg->dns.servers[i]))) {
            json_decref(servers);
            servers = NULL;
        }
    return servers ? json_pack("{s:o}", "servers", servers) : NULL;
}

int rsv_service_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > RSV_SERVICE_NAME_MAX)
        return 0;
    /* Names travel in protocol lines, log lines, JSON and metric labels:
     * a small alphabet keeps every one of them free of escaping bugs. */
    const unsigned char *s = (const unsigned char *)name;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t len = utf8_sequence(s + i, n - i);
            if (!len)
                return 0;
            i += len;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(RSV_SERVICE_NAME_PUNCT, c)))
            return 0;
        i++;
    }
    return 1;
}
