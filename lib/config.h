/* config.h - the parsed configuration (internal view of resolver_config). */
#ifndef RSV_CONFIG_H
#define RSV_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include "resolver.h"
#include "backoff.h"
#include "registry.h"

typedef enum {
    RSV_POLICY_ROUND_ROBIN = 0,
    RSV_POLICY_PICK_FIRST,
    RSV_POLICY_WEIGHTED_ROUND_ROBIN,
    RSV_POLICY_LEAST_REQUEST,
    RSV_POLICY_RING_HASH,
    RSV_POLICY_RANDOM,
    RSV_POLICY_LEAST_LATENCY
} rsv_policy;

typedef enum {
    RSV_PROTOCOL_H2C = 0, /* HTTP/2 over cleartext TCP, prior knowledge */
    RSV_PROTOCOL_H2,      /* HTTP/2 over TLS with ALPN h2 */
    RSV_PROTOCOL_TCP      /* connect-level liveness only */
} rsv_protocol;

/* Everything that "defaults" holds and each service may override. */
typedef struct {
    rsv_format format;
    rsv_policy policy;
    rsv_protocol protocol;
    uint64_t keepalive_time_ms;    /* 30000 */
    uint64_t keepalive_timeout_ms; /* 10000 */
    uint64_t connect_timeout_ms;   /* 20000 */
    rsv_backoff_config backoff;
    uint64_t drain_timeout_ms;          /* 30000 */
    uint64_t max_connection_age_ms;     /* 0: never */
    uint64_t ticket_timeout_ms;         /* 60000 */
    uint32_t max_outstanding;           /* 0: no cap */
    char *health_grpc_service;          /* NULL: no health checking; "" = overall server health */
    uint32_t choice_count;              /* least_request: 2 */
    uint32_t zone_min_ready_percent;    /* 0: no zone preference */
    uint32_t self_preservation_percent; /* 50; 0: off (service.c, self-preservation) */
    uint64_t self_preservation_max_ms;  /* 300000: how long a STALE instance is kept */
    uint64_t latency_decay_ms;          /* least_latency: 10000 */
    struct {                            /* no padding inside: compared with memcmp */
        uint32_t consecutive_failures;  /* 5; 0: off */
        uint32_t failure_percent;       /* 85; 0: off */
        uint32_t min_requests;          /* 50 in an interval for failure_percent */
        uint32_t max_ejection_percent;  /* 10, but at least one instance */
        uint64_t interval_ms;           /* 10000 */
        uint64_t base_ejection_ms;      /* 30000, times the times ejected */
        uint64_t max_ejection_ms;       /* 300000 */
    } outlier;
} rsv_service_options;

typedef struct {
    char *name;   /* "user.rpc" */
    char *prefix; /* "user.rpc/" (default: name + "/") */
    rsv_service_options options;
} rsv_service_config;

/* One local instance to publish in etcd (the "register" list; registrar.h). */
typedef struct {
    char *service;      /* "user.rpc" */
    char *address;      /* canonical "host:port" or "[v6]:port" */
    rsv_format format;  /* never AUTO: gozero unless set */
    uint64_t ttl_ms;    /* 10000; the lease TTL is this rounded up to whole seconds */
    uint32_t weight;    /* 1 */
    char *zone;         /* "" if unset */
    char *metadata;     /* a compact JSON object of strings; "" if unset */
    char *key;          /* "" : the format's own key */
    char *health_check; /* NULL: none; "" = overall server health; else a gRPC service */
} rsv_registration_config;

struct resolver_config {
    struct {
        char **endpoints; /* at least one URL, e.g. "http://127.0.0.1:2379" (no trailing '/') */
        size_t n_endpoints;
        /* Files: a relative name (or one starting "$CREDENTIALS_DIRECTORY/")
         * is resolved under $CREDENTIALS_DIRECTORY (systemd LoadCredential=)
         * when that is set. */
        char *username, *password_file, *ca_file, *cert_file, *key_file; /* "" if unset */
        uint64_t dial_timeout_ms;                                        /* 2000 */
    } etcd;
    struct {
        char *path;    /* /run/resolverd/resolverd.sock */
        unsigned mode; /* 0660 */
        char *group;   /* "" if unset */
        char *admin_group;
        uint32_t max_detached_tickets; /* per peer uid (detach=1 picks): 10000 */
    } socket;
    struct {
        char *listen; /* "" if unset */
    } metrics;
    struct {
        /* Name servers for instance host names: "IP", "IP:PORT" or
         * "[IPv6]:PORT" (53 if no port).  None: the system's (resolv.conf). */
        char **servers;
        size_t n_servers;
    } dns;
    char *zone;
    char *cache_file;
    uint32_t on_demand_services_max; /* 256 */
    rsv_service_options defaults;
    rsv_service_config *services;
    size_t n_services;
    rsv_registration_config *registrations; /* "register" */
    size_t n_registrations;
    uint64_t deregister_grace_ms; /* 2000 */
};

/* Longest duration any *_ms key accepts: 24 h.  Code downstream relies on
 * it: a duration fits an int (TCP_USER_TIMEOUT, curl's long on any ABI) and
 * "now + duration" in milliseconds never overflows. */
#define RSV_DURATION_MAX_MS UINT64_C(86400000)

/* ms as an int for an API that takes one (setsockopt, curl), saturating
 * rather than wrapping: a config bounds durations, but a value computed from
 * one (a doubled keepalive) need not stay inside the bound. */
static inline int rsv_ms_to_int(uint64_t ms)
{
    return ms > (uint64_t)INT_MAX ? INT_MAX : (int)ms;
}

/* Longest service name, in bytes (NUL excluded). */
#define RSV_SERVICE_NAME_MAX 255

/* The configured service `name`, or NULL if the configuration does not list
 * it (the caller then uses cfg->defaults and the prefix name + "/").  The
 * result points into cfg; do not free it. */
const rsv_service_config *rsv_config_find_service(const resolver_config *cfg, const char *name);

/* 1 if `name` may name a service (configured, picked, discovered on demand
 * or read from the cache file; every path into the engine checks it):
 * 1..RSV_SERVICE_NAME_MAX bytes of ASCII letters, digits, the
 * punctuation below and well-formed non-ASCII UTF-8 (no control character,
 * space, quote or backslash: nothing that needs escaping anywhere). */
#define RSV_SERVICE_NAME_PUNCT "._-/:@"
int rsv_service_name_valid(const char *name);

/* The effective configuration as an indented JSON document that
 * resolver_config_load_string accepts and turns back into an equal config.
 * Every key is written, defaults included, and each service with all of its
 * effective options.  Holds no secret (only the password_file path).
 * *out is freed with free().  0, RESOLVER_ERR_NOMEM or RESOLVER_ERR_INVALID. */
int rsv_config_to_json(const resolver_config *cfg, char **out);

/* 1 if a and b would behave identically (every field, services in order). */
int rsv_config_equal(const resolver_config *a, const resolver_config *b);
/* 1 if a and b name the same DNS servers, in the same order. */
int rsv_config_dns_equal(const resolver_config *a, const resolver_config *b);

/* Fills r with the defaults of one registration (owns no memory). */
void rsv_registration_default(rsv_registration_config *r);
/* Checks and fills one registration from loose parts (the CLI's and the
 * library's path in; the config file uses the same checks): `format` NULL
 * for gozero, `ttl_ms` 0 for the default, `weight` 0 for 1, `zone`,
 * `metadata` (a JSON object of strings) and `key` NULL for none.  0 or
 * RESOLVER_ERR_INVALID with a reason in why, or NOMEM.  On success *out owns
 * copies (free with rsv_registration_clear). */
int rsv_registration_build(rsv_registration_config *out, const char *service, const char *address,
                           const char *format, uint64_t ttl_ms, uint32_t weight, const char *zone,
                           const char *metadata, const char *key, char *why, size_t whylen);
int rsv_registration_copy(rsv_registration_config *dst, const rsv_registration_config *src);
void rsv_registration_clear(rsv_registration_config *r);
int rsv_registration_equal(const rsv_registration_config *a, const rsv_registration_config *b);

/* Names as written in the configuration ("round_robin", "h2c").  An
 * out-of-range value gives "unknown".  The parsers return 0 or
 * RESOLVER_ERR_INVALID. */
const char *rsv_policy_name(rsv_policy p);
int rsv_policy_parse(const char *name, rsv_policy *out);
const char *rsv_protocol_name(rsv_protocol p);
int rsv_protocol_parse(const char *name, rsv_protocol *out);

/* Fills o with the built-in defaults (the README's configuration block); owns no memory. */
void rsv_service_options_default(rsv_service_options *o);
/* Deep copy of options (health_grpc_service duplicated).  dst is overwritten
 * without being cleared first.  0 or NOMEM (dst then owns nothing). */
int rsv_service_options_copy(rsv_service_options *dst, const rsv_service_options *src);
/* Frees what o owns and zeroes it. */
void rsv_service_options_clear(rsv_service_options *o);
/* 1 if a and b are the same options (used on reload to keep what is unchanged). */
int rsv_service_options_equal(const rsv_service_options *a, const rsv_service_options *b);

#endif
