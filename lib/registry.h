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

typedef struct {
    char host[RESOLVER_HOST_MAX]; /* "10.0.0.1", "::1" (no brackets), "svc.local" */
    uint16_t port;
    char address[300];       /* canonical "host:port" or "[v6]:port" */
    uint32_t weight;         /* 1 if the format has none; 0 is turned into 1 */
    char zone[RSV_ZONE_MAX]; /* "" if none */
    int tls;                 /* 1: grpcs:// or Kratos isSecure */
    int is_delete;           /* 1: etcd naming Op=1 (remove this address) */
    rsv_format format;       /* the format that decoded it */
} rsv_endpoint;

/* Decodes one value (`value` need not be NUL-terminated).  `key` is used for
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
