/*
 * registry.c - decoding the values that service registries put in etcd.
 *
 * Every value comes from the network and may be hostile: each decoder checks
 * types and bounds, never reads past the given length, and answers
 * RESOLVER_ERR_DECODE with a short reason instead of guessing.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "registry.h"
#include "resolver.h"

/* RFC 1123 limits; longer names cannot be resolved anyway. */
#define HOSTNAME_MAX 253
#define LABEL_MAX 63
/* Longest "[v6]:port" or "host:port" worth looking at. */
#define ADDRESS_TEXT_MAX (HOSTNAME_MAX + 1 + 6)
/* Bounds a weight so that sums over many instances cannot overflow. */
#define WEIGHT_MAX 1000000

static int fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the reason (if the caller wants one) and returns the error code, so
 * that decoders can `return fail(...)`. */
static int fail(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return RESOLVER_ERR_DECODE;
}

/* ---- addresses --------------------------------------------------------- */

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int parse_port(const char *s, size_t len, uint16_t *port, char *why, size_t whylen)
{
    if (len == 0)
        return fail(why, whylen, "missing port");
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return fail(why, whylen, "port is not a number");
        v = v * 10 + (unsigned long)(s[i] - '0');
        if (v > 65535)
            return fail(why, whylen, "port out of range");
    }
    if (v == 0)
        return fail(why, whylen, "port out of range");
    *port = (uint16_t)v;
    return 0;
}

static int is_label_char(char c)
{
    /* '_' is not RFC 1123, but docker-compose and Kubernetes-style service
     * names use it and resolvers accept it. */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* RFC 1123 host name: dot-separated labels of letters, digits and hyphens, no
 * label empty, longer than 63 or starting/ending with a hyphen.  One trailing
 * dot (a fully qualified name) is allowed and kept. */
static int check_hostname(const char *h, size_t len, char *why, size_t whylen)
{
    size_t end = len;
    if (end > 1 && h[end - 1] == '.')
        end--;
    if (end > HOSTNAME_MAX)
        return fail(why, whylen, "host name too long");
    size_t label = 0;
    for (size_t i = 0; i <= end; i++) {
        if (i == end || h[i] == '.') {
            if (label == 0)
                return fail(why, whylen, "empty label in host name");
            if (h[i - 1] == '-' || h[i - label] == '-')
                return fail(why, whylen, "host name label starts or ends with '-'");
            label = 0;
            continue;
        }
        if (!is_label_char(h[i]))
            return fail(why, whylen, "bad character in host name");
        if (++label > LABEL_MAX)
            return fail(why, whylen, "host name label too long");
    }
    return 0;
}

static int all_digits_and_dots(const char *h, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (h[i] != '.' && (h[i] < '0' || h[i] > '9'))
            return 0;
    return 1;
}

/* Validates the host and writes its canonical form (inet_ntop for IPv6,
 * lower case for names) into `out`, which holds RESOLVER_HOST_MAX bytes. */
static int canonical_host(const char *h, size_t len, int bracketed, char *out, char *why,
                          size_t whylen)
{
    char tmp[RESOLVER_HOST_MAX];
    if (len == 0)
        return fail(why, whylen, "empty host");
    if (len >= sizeof(tmp))
        return fail(why, whylen, "host name too long");
    memcpy(tmp, h, len);
    tmp[len] = '\0';
    if (bracketed) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return fail(why, whylen, "bad IPv6 address");
        inet_ntop(AF_INET6, &a6, out, RESOLVER_HOST_MAX);
        return 0;
    }
    /* A name made of digits and dots would be read as an IPv4 address by
     * getaddrinfo (or not at all): insist that it is a valid one. */
    if (all_digits_and_dots(tmp, len)) {
        struct in_addr a4;
        if (inet_pton(AF_INET, tmp, &a4) != 1)
            return fail(why, whylen, "bad IPv4 address");
        inet_ntop(AF_INET, &a4, out, RESOLVER_HOST_MAX);
        return 0;
    }
    int rc = check_hostname(tmp, len, why, whylen);
    if (rc)
        return rc;
    for (size_t i = 0; i <= len; i++)
        out[i] = (tmp[i] >= 'A' && tmp[i] <= 'Z') ? (char)(tmp[i] - 'A' + 'a') : tmp[i];
    return 0;
}

/* Finds host and port text in "host:port" or "[v6]:port". */
static int split_host_port(const char *t, size_t len, const char **host, size_t *hlen,
                           const char **port, size_t *plen, int *bracketed, char *why,
                           size_t whylen)
{
    const char *end = t + len;
    if (t[0] == '[') {
        const char *close = memchr(t, ']', len);
        if (!close)
            return fail(why, whylen, "missing ']' after IPv6 address");
        if (close + 1 == end)
            return fail(why, whylen, "missing port");
        if (close[1] != ':')
            return fail(why, whylen, "junk after ']'");
        *host = t + 1;
        *hlen = (size_t)(close - t - 1);
        *port = close + 2;
        *bracketed = 1;
    } else {
        const char *colon = NULL;
        for (const char *c = t; c < end; c++)
            if (*c == ':')
                colon = c;
        if (!colon)
            return fail(why, whylen, "missing port");
        if (memchr(t, ':', (size_t)(colon - t)))
            return fail(why, whylen, "IPv6 address must be in brackets");
        *host = t;
        *hlen = (size_t)(colon - t);
        *port = colon + 1;
        *bracketed = 0;
    }
    *plen = (size_t)(end - *port);
    return 0;
}

int rsv_address_parse(const char *text, size_t len, rsv_endpoint *out, char *why, size_t whylen)
{
    if (!text || !out)
        return fail(why, whylen, "no address");
    if (len == 0)
        return fail(why, whylen, "empty address");
    if (len > ADDRESS_TEXT_MAX)
        return fail(why, whylen, "address too long");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f)
            return fail(why, whylen, "control character in address");
        if (c == ' ')
            return fail(why, whylen, "space in address");
    }
    /* Initialised for the compiler, which cannot see that fail() is never 0. */
    const char *host = NULL, *port_text = NULL;
    size_t hlen = 0, plen = 0;
    int bracketed = 0, rc;
    rc = split_host_port(text, len, &host, &hlen, &port_text, &plen, &bracketed, why, whylen);
    if (rc)
        return rc;
    uint16_t port = 0;
    char canon[RESOLVER_HOST_MAX];
    if ((rc = parse_port(port_text, plen, &port, why, whylen)) != 0)
        return rc;
    if ((rc = canonical_host(host, hlen, bracketed, canon, why, whylen)) != 0)
        return rc;
    /* Commit only on success: a bad value leaves `out` as it was. */
    memcpy(out->host, canon, sizeof(out->host));
    out->port = port;
    snprintf(out->address, sizeof(out->address), bracketed ? "[%s]:%u" : "%s:%u", out->host,
             (unsigned)port);
    return 0;
}

/* ---- JSON field helpers ------------------------------------------------ */

/* An address from a JSON string member.  json_string_length keeps embedded
 * NULs (\u0000) visible so that they are rejected, not truncated. */
static int json_address(json_t *root, const char *name, rsv_endpoint *out, char *why, size_t whylen)
{
    json_t *v = json_object_get(root, name);
    if (!v)
        return fail(why, whylen, "missing \"%s\"", name);
    if (!json_is_string(v))
        return fail(why, whylen, "\"%s\" must be a string", name);
    return rsv_address_parse(json_string_value(v), json_string_length(v), out, why, whylen);
}

/* "weight": absent or null means 1, 0 means 1 (registries write 0 for
 * "unset"), anything else must be an integer in 1..WEIGHT_MAX. */
static int json_weight(json_t *root, uint32_t *weight, char *why, size_t whylen)
{
    json_t *v = json_object_get(root, "weight");
    *weight = 1;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return fail(why, whylen, "weight must be a positive integer");
    json_int_t w = json_integer_value(v);
    if (w > WEIGHT_MAX)
        return fail(why, whylen, "weight larger than %d", WEIGHT_MAX);
    if (w > 0)
        *weight = (uint32_t)w;
    return 0;
}

static int json_zone(json_t *root, char *zone, char *why, size_t whylen)
{
    json_t *v = json_object_get(root, "zone");
    zone[0] = '\0';
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(why, whylen, "zone must be a string");
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len >= RSV_ZONE_MAX)
        return fail(why, whylen, "zone too long");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fail(why, whylen, "control character in zone");
    memcpy(zone, s, len + 1);
    return 0;
}

/* ---- metadata ------------------------------------------------------------ */

rsv_metadata *rsv_metadata_new(const char *text, size_t len)
{
    rsv_metadata *m = malloc(sizeof(*m) + len + 1);
    if (!m)
        return NULL;
    atomic_init(&m->refs, 1);
    memcpy(m->text, text, len);
    m->text[len] = '\0';
    return m;
}

void rsv_metadata_unref(rsv_metadata *m)
{
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        free(m);
}

void rsv_metadata_unref_void(void *m)
{
    rsv_metadata_unref(m);
}

int rsv_metadata_equal(const rsv_metadata *a, const rsv_metadata *b)
{
    return a == b || (a && b && strcmp(a->text, b->text) == 0);
}

void rsv_endpoint_clear(rsv_endpoint *ep)
{
    if (ep)
        rsv_metadata_unref(atomic_exchange(&ep->metadata, NULL));
}

/* The object `name` of `root` as out->metadata.  Metadata is a description
 * of the instance, not a way to reach it: one that is not an object, empty,
 * or longer than RSV_METADATA_MAX leaves the instance without metadata
 * rather than dropping it.  Out of memory is a failure, as it is when
 * jansson runs out while parsing: the value is looked at again with its
 * next change or listing. */
static int json_metadata(json_t *root, const char *name, rsv_endpoint *out, char *why,
                         size_t whylen)
{
    json_t *v = json_object_get(root, name);
    if (!json_is_object(v) || json_object_size(v) == 0)
        return 0;
    char buf[RSV_METADATA_MAX + 1];
    size_t len = json_dumpb(v, buf, sizeof(buf), JSON_COMPACT | JSON_SORT_KEYS);
    if (len == 0 || len > RSV_METADATA_MAX)
        return 0;
    rsv_metadata *m = rsv_metadata_new(buf, len);
    if (!m)
        return fail(why, whylen, "out of memory");
    atomic_store(&out->metadata, m);
    return 0;
}

/* ---- the formats ------------------------------------------------------- */

static int decode_gozero(const char *value, size_t len, rsv_endpoint *out, char *why, size_t whylen)
{
    while (len > 0 && is_ws(value[0])) {
        value++;
        len--;
    }
    while (len > 0 && is_ws(value[len - 1]))
        len--;
    if (len == 0)
        return fail(why, whylen, "empty value");
    return rsv_address_parse(value, len, out, why, whylen);
}

static int decode_etcd_naming(json_t *root, rsv_endpoint *out, char *why, size_t whylen)
{
    json_t *op = json_object_get(root, "Op");
    if (op && !json_is_null(op)) {
        if (!json_is_integer(op))
            return fail(why, whylen, "\"Op\" must be an integer");
        json_int_t v = json_integer_value(op);
        if (v != 0 && v != 1)
            return fail(why, whylen, "unknown Op %lld", (long long)v);
        out->is_delete = v == 1;
    }
    int rc = json_address(root, "Addr", out, why, whylen);
    return rc ? rc : json_metadata(root, "Metadata", out, why, whylen);
}

/* Kratos' strconv.ParseBool spellings of true. */
static int is_true_text(const char *s, size_t len)
{
    static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (strlen(yes[i]) == len && memcmp(yes[i], s, len) == 0)
            return 1;
    return 0;
}

/* Looks for isSecure=<true> in a query string "a=b&c=d". */
static int query_is_secure(const char *q, size_t len)
{
    static const char key[] = "isSecure=";
    const char *end = q + len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        size_t n = (size_t)(stop - q);
        if (n >= sizeof(key) - 1 && memcmp(q, key, sizeof(key) - 1) == 0 &&
            is_true_text(q + sizeof(key) - 1, n - (sizeof(key) - 1)))
            return 1;
        q = amp ? amp + 1 : end;
    }
    return 0;
}

/* Returns the length of "grpc://" or "grpcs://" at the start of `s`, 0 if the
 * endpoint is of another scheme. */
static size_t grpc_scheme(const char *s, size_t len, int *tls)
{
    if (len >= 7 && strncasecmp(s, "grpc://", 7) == 0) {
        *tls = 0;
        return 7;
    }
    if (len >= 8 && strncasecmp(s, "grpcs://", 8) == 0) {
        *tls = 1;
        return 8;
    }
    return 0;
}

/* "grpc://host:port[/path][?query][#fragment]" */
static int decode_kratos_url(const char *s, size_t len, size_t skip, rsv_endpoint *out, char *why,
                             size_t whylen)
{
    const char *auth = s + skip, *end = s + len;
    const char *hash = memchr(auth, '#', (size_t)(end - auth));
    if (hash)
        end = hash;
    const char *stop = auth;
    while (stop < end && *stop != '/' && *stop != '?')
        stop++;
    int rc = rsv_address_parse(auth, (size_t)(stop - auth), out, why, whylen);
    if (rc)
        return rc;
    const char *q = memchr(stop, '?', (size_t)(end - stop));
    if (q && query_is_secure(q + 1, (size_t)(end - q - 1)))
        out->tls = 1;
    return 0;
}

/* Kratos keeps the weight as a string in metadata and ignores a bad one, so
 * do the same rather than drop the instance. */
static void kratos_weight(json_t *root, uint32_t *weight)
{
    json_t *w = json_object_get(json_object_get(root, "metadata"), "weight");
    if (!json_is_string(w))
        return;
    const char *s = json_string_value(w);
    size_t len = json_string_length(w);
    uint32_t v = 0;
    if (len == 0 || len > 7)
        return;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v >= 1 && v <= WEIGHT_MAX)
        *weight = v;
}

static int decode_kratos(json_t *root, rsv_endpoint *out, char *why, size_t whylen)
{
    json_t *eps = json_object_get(root, "endpoints");
    if (!eps)
        return fail(why, whylen, "missing \"endpoints\"");
    if (!json_is_array(eps))
        return fail(why, whylen, "\"endpoints\" must be an array");
    size_t i;
    json_t *ep;
    json_array_foreach(eps, i, ep)
    {
        if (!json_is_string(ep))
            continue;
        const char *s = json_string_value(ep);
        size_t len = json_string_length(ep);
        int tls;
        size_t skip = grpc_scheme(s, len, &tls);
        if (!skip)
            continue;
        out->tls = tls;
        int rc = decode_kratos_url(s, len, skip, out, why, whylen);
        if (rc)
            return rc;
        kratos_weight(root, &out->weight);
        return json_metadata(root, "metadata", out, why, whylen);
    }
    return fail(why, whylen, "no grpc:// endpoint");
}

static int decode_kitex(json_t *root, rsv_endpoint *out, char *why, size_t whylen)
{
    json_t *net = json_object_get(root, "network");
    if (net && !json_is_null(net)) {
        if (!json_is_string(net) || strcmp(json_string_value(net), "tcp") != 0 ||
            json_string_length(net) != 3)
            return fail(why, whylen, "network must be tcp");
    }
    int rc = json_address(root, "address", out, why, whylen);
    if (rc == 0)
        rc = json_weight(root, &out->weight, why, whylen);
    return rc ? rc : json_metadata(root, "tags", out, why, whylen);
}

static int decode_native(json_t *root, rsv_endpoint *out, char *why, size_t whylen)
{
    int rc = json_address(root, "address", out, why, whylen);
    if (rc)
        return rc;
    if ((rc = json_weight(root, &out->weight, why, whylen)) != 0)
        return rc;
    if ((rc = json_zone(root, out->zone, why, whylen)) != 0)
        return rc;
    return json_metadata(root, "metadata", out, why, whylen);
}

/* The value's own keys tell the formats apart (doc/design.md, Registry formats). */
static rsv_format detect_json(json_t *root)
{
    if (json_object_get(root, "Addr"))
        return RSV_FORMAT_ETCD_NAMING;
    if (json_is_array(json_object_get(root, "endpoints")))
        return RSV_FORMAT_KRATOS;
    if (json_object_get(root, "network"))
        return RSV_FORMAT_KITEX;
    if (json_object_get(root, "address"))
        return RSV_FORMAT_NATIVE;
    return RSV_FORMAT_AUTO;
}

static int decode_json(rsv_format format, const char *value, size_t len, rsv_endpoint *out,
                       char *why, size_t whylen)
{
    json_error_t err;
    json_t *root = json_loadb(value, len, 0, &err);
    int rc;
    if (!root)
        return fail(why, whylen, "not JSON: %s", err.text);
    if (!json_is_object(root)) {
        rc = fail(why, whylen, "not a JSON object");
        goto out;
    }
    if (format == RSV_FORMAT_AUTO)
        format = detect_json(root);
    out->format = format;
    switch (format) {
    case RSV_FORMAT_ETCD_NAMING:
        rc = decode_etcd_naming(root, out, why, whylen);
        break;
    case RSV_FORMAT_KRATOS:
        rc = decode_kratos(root, out, why, whylen);
        break;
    case RSV_FORMAT_KITEX:
        rc = decode_kitex(root, out, why, whylen);
        break;
    case RSV_FORMAT_NATIVE:
        rc = decode_native(root, out, why, whylen);
        break;
    default:
        rc = fail(why, whylen, "unknown JSON value (no Addr, endpoints or address)");
        break;
    }
out:
    json_decref(root);
    return rc;
}

static int starts_with_brace(const char *value, size_t len)
{
    size_t i = 0;
    while (i < len && is_ws(value[i]))
        i++;
    return i < len && value[i] == '{';
}

int rsv_registry_decode(rsv_format format, const char *value, size_t len, rsv_endpoint *out,
                        char *why, size_t whylen)
{
    if (why && whylen > 0)
        why[0] = '\0';
    if (!out)
        return fail(why, whylen, "no output");
    memset(out, 0, sizeof(*out));
    out->weight = 1;
    if (!value)
        return fail(why, whylen, "no value");
    if (format == RSV_FORMAT_AUTO && !starts_with_brace(value, len))
        format = RSV_FORMAT_GOZERO;
    if (format == RSV_FORMAT_GOZERO) {
        out->format = format;
        return decode_gozero(value, len, out, why, whylen);
    }
    if (format < RSV_FORMAT_AUTO || format > RSV_FORMAT_NATIVE)
        return fail(why, whylen, "unknown format");
    return decode_json(format, value, len, out, why, whylen);
}

/* ---- format names ------------------------------------------------------ */

static const char *const format_names[] = {"auto",   "gozero", "etcd_naming",
                                           "kratos", "kitex",  "native"};

const char *rsv_format_name(rsv_format f)
{
    if ((int)f < 0 || (size_t)f >= sizeof(format_names) / sizeof(format_names[0]))
        return "unknown";
    return format_names[f];
}

int rsv_format_parse(const char *name, rsv_format *out)
{
    if (!name || !out)
        return RESOLVER_ERR_INVALID;
    for (size_t i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *out = (rsv_format)i;
            return 0;
        }
    }
    if (strcmp(name, "go-zero") == 0) {
        *out = RSV_FORMAT_GOZERO;
        return 0;
    }
    return RESOLVER_ERR_INVALID;
}
