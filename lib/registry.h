/*
 * registry.h - decoding the values that service registries put in etcd.
 *
 * Formats (PRODUCT.md): go-zero ("host:port"), etcd naming endpoints
 * ({"Op":0,"Addr":..,"Metadata":..}), Kratos ({"endpoints":["grpc://.."]}),
 * Kitex ({"network":"tcp","address":..,"weight":..}) and native
 * ({"address":..,"weight":..,"zone":..,"metadata":{..}}).  AUTO detects the
 * format from the value.  Pure functions: no I/O, no global state.
 */
#ifndef RESOLVER_REGISTRY_H
#define RESOLVER_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    RESOLVER_FORMAT_AUTO = 0,
    RESOLVER_FORMAT_GOZERO,
    RESOLVER_FORMAT_ETCD_NAMING,
    RESOLVER_FORMAT_KRATOS,
    RESOLVER_FORMAT_KITEX,
    RESOLVER_FORMAT_NATIVE
} resolver_format;

#define RESOLVER_HOST_MAX 256
#define RESOLVER_ZONE_MAX 64

typedef struct {
    char host[RESOLVER_HOST_MAX]; /* "10.0.0.1", "::1" (no brackets), "svc.local" */
    uint16_t port;
    char address[300];            /* canonical "host:port" or "[v6]:port" */
    uint32_t weight;              /* 1 if the format has none; 0 is turned into 1 */
    char zone[RESOLVER_ZONE_MAX]; /* "" if none */
    int tls;                      /* 1: grpcs:// or Kratos isSecure */
    int is_delete;                /* 1: etcd naming Op=1 (remove this address) */
    resolver_format format;       /* the format that decoded it */
} resolver_endpoint;

/* Decodes one value (`value` need not be NUL-terminated).  `key` is used for
 * nothing but may be used for detection later.  Returns 0 or
 * RESOLVER_ERR_DECODE with a reason (no key, no value in it: the caller adds
 * the key) in why[0..whylen).  Never reads past value[len). */
int resolver_registry_decode(resolver_format format, const char *value, size_t len,
                             resolver_endpoint *out, char *why, size_t whylen);

/* Splits "host:port", "[v6]:port" into out->host/port/address.  0 or
 * RESOLVER_ERR_DECODE with a reason. */
int resolver_address_parse(const char *text, size_t len, resolver_endpoint *out, char *why,
                           size_t whylen);

const char *resolver_format_name(resolver_format f);
int resolver_format_parse(const char *name, resolver_format *out);

#endif
