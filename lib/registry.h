/*
 * registry.h - decoding the values that service registries put in etcd.
 *
 * Formats (doc/design.md, Registry formats): go-zero ("host:port"), etcd naming endpoints
 * ({"Op":0,"Addr":..,"Metadata":..}), Kratos ({"endpoints":["grpc://.."]}),
 * Kitex ({"network":"tcp","address":..,"weight":..}) and native
 * ({"address":..,"weight":..,"zone":..,"metadata":{..}}).  AUTO detects the
 * format from the value.  Pure functions: no I/O, no global state.
 */
#ifndef RSV_REGISTRY_H
#define RSV_REGISTRY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    RSV_FORMAT_AUTO = 0,
    RSV_FORMAT_GOZERO,
    RSV_FORMAT_ETCD_NAMING,
    RSV_FORMAT_KRATOS,
    RSV_FORMAT_KITEX,
    RSV_FORMAT_NATIVE
} rsv_format;

#define RESOLVER_HOST_MAX 256
#define RSV_ZONE_MAX 64
/* Metadata longer than this (as compact JSON) is not kept: the instance
 * is, without it. */
#define RSV_METADATA_MAX 4096

/* The registry's metadata of one endpoint (Kratos "metadata", Kitex "tags",
 * etcd naming "Metadata", native "metadata"): a JSON object as compact text
 * with its keys sorted, so that two equal objects have equal text.
 * Immutable once made; shared by reference count (any thread), so that an
 * instance may take new metadata while picks still point at the old. */
typedef struct {
    atomic_uint refs;
    char text[];
} rsv_metadata;

/* A new rsv_metadata holding `text` (len bytes), one reference; NULL when
 * out of memory. */
rsv_metadata *rsv_metadata_new(const char *text, size_t len);
static inline rsv_metadata *rsv_metadata_ref(rsv_metadata *m)
{
    if (m)
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}
/* Drops one reference (NULL is ignored); the last frees it. */
void rsv_metadata_unref(rsv_metadata *m);
/* Takes void * to serve as a free function (rsv_hazard_retire). */
void rsv_metadata_unref_void(void *m);
/* Same text, or both NULL. */
int rsv_metadata_equal(const rsv_metadata *a, const rsv_metadata *b);

typedef struct {
    char host[RESOLVER_HOST_MAX]; /* "10.0.0.1", "::1" (no brackets), "svc.local" */
    uint16_t port;
    char address[300];       /* canonical "host:port" or "[v6]:port" */
    uint32_t weight;         /* 1 if the format has none; 0 is turned into 1 */
    char zone[RSV_ZONE_MAX]; /* "" if none */
    int tls;                 /* 1: grpcs:// or Kratos isSecure */
    int is_delete;           /* 1: etcd naming Op=1 (remove this address) */
    rsv_format format;       /* the format that decoded it */
    /* NULL: none (or an empty object).  The endpoint holds one reference:
     * rsv_endpoint_clear drops it; a copy of the struct takes its own
     * (rsv_metadata_ref).  In an instance it is swapped by the owner
     * while pickers read it (instance.h). */
    _Atomic(rsv_metadata *) metadata;
} rsv_endpoint;

/* Drops the endpoint's metadata reference (after rsv_registry_decode,
 * which may make one).  The rest of the endpoint owns nothing. */
void rsv_endpoint_clear(rsv_endpoint *ep);

/* Decodes one value (`value` need not be NUL-terminated); out->metadata is
 * set when the value has any (the caller then owns a reference: see
 * rsv_endpoint_clear), never on failure.  `key` is used for
 * nothing but may be used for detection later.  Returns 0 or
 * RESOLVER_ERR_DECODE with a reason (no key, no value in it: the caller adds
 * the key) in why[0..whylen).  Never reads past value[len). */
int rsv_registry_decode(rsv_format format, const char *value, size_t len, rsv_endpoint *out,
                        char *why, size_t whylen);

/* Splits "host:port", "[v6]:port" into out->host/port/address.  0 or
 * RESOLVER_ERR_DECODE with a reason. */
int rsv_address_parse(const char *text, size_t len, rsv_endpoint *out, char *why, size_t whylen);

const char *rsv_format_name(rsv_format f);
int rsv_format_parse(const char *name, rsv_format *out);

#endif
