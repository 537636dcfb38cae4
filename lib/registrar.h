/*
 * registrar.h - publishing local instances in etcd under a lease, the way
 * each framework's own registry writes them, and never staying gone.
 *
 * One job: for every registration, grant a lease, put the key with it, keep
 * the lease alive (every third of its TTL), and after each keepalive check
 * that the key is still ours (a range of the key: a delete or overwrite by
 * someone else is put back).  Any loss (keepalive says TTL 0, etcd silent
 * for longer than the TTL, another cluster id) grants a new lease and puts
 * again as soon as etcd answers; failures retry with a backoff capped at
 * REGISTRAR_RETRY_MAX_MS, forever.  Leaving deletes the key, revokes the
 * lease, then keeps the registration LEAVING for deregister_grace_ms so
 * that a caller can wait for remote callers to stop picking it.
 *
 * Keys and values (rsv_registration_render): go-zero PREFIX<lease id>
 * -> host:port; etcd_naming PREFIX<host:port> -> {"Op":0,"Addr":..,
 * "Metadata":..}; kratos /microservices/NAME/<address> -> its instance JSON;
 * kitex kitex/registry-etcd/NAME/<host:port> -> {"network":"tcp",..};
 * native PREFIX<address> -> {"address":..,"weight":..}.  The instance id of
 * kratos and native keys is the address, so that a restart overwrites its
 * own key instead of leaving a second one.
 *
 * Rules:
 *  1. Loop-thread only.
 *  2. rsv_registrar_del cancels everything and deletes nothing: keys
 *     then expire with their leases (what a crash does).  Leave first for a
 *     clean exit.
 *  3. A registration is identified by (service, address); adding it again
 *     updates it in place (same lease when the TTL is the same).
 *  4. Health gating (health_check set, like Consul's agent): a subchannel to
 *     the address with gRPC health checking; the key is deleted when it
 *     turns TRANSIENT_FAILURE (connection failed, or not SERVING) and put
 *     again when it is READY.  The lease is kept alive meanwhile (state
 *     UNHEALTHY).
 */
#ifndef RSV_REGISTRAR_H
#define RSV_REGISTRAR_H

#include <jansson.h>
#include <stdint.h>
#include "config.h"
#include "dns.h"
#include "etcd.h"
#include "loop.h"

typedef struct rsv_registrar rsv_registrar;

/* NULL on allocation failure. */
/* `dns` (borrowed) resolves host names of health-checked registrations. */
rsv_registrar *rsv_registrar_new(rsv_loop *loop, rsv_etcd *etcd, rsv_dns *dns, uint64_t grace_ms);
void rsv_registrar_del(rsv_registrar *r);
void rsv_registrar_set_grace(rsv_registrar *r, uint64_t grace_ms);

/* Starts (or updates) publishing `spec` (copied).  `prefix` is the
 * service's configured prefix; `opts` (NULL: the defaults) the connection
 * options of a health-checked registration's subchannel.  `from_config`:
 * the registration belongs to the configuration (a reload that drops it
 * deregisters it).  0, NOMEM or CLOSED (everything is leaving). */
int rsv_registrar_add(rsv_registrar *r, const rsv_registration_config *spec, const char *prefix,
                      const rsv_service_options *opts, int from_config);
/* Begins leaving one registration.  0 or NOT_FOUND (none, or already leaving). */
int rsv_registrar_remove(rsv_registrar *r, const char *service, const char *address);
/* Begins leaving every one; later adds answer CLOSED. */
void rsv_registrar_leave_all(rsv_registrar *r);
/* Deregisters the configuration's registrations that `cfg` no longer lists
 * (runtime ones stay); the caller adds cfg's. */
void rsv_registrar_forget_config(rsv_registrar *r, const resolver_config *cfg);
/* Registrations still listed (LEAVING ones included until their grace ends). */
size_t rsv_registrar_count(const rsv_registrar *r);
/* resolver_engine_registration_list's answer (service, address: filters,
 * NULL for any; the address compared in its canonical form). */
int rsv_registrar_list(rsv_registrar *r, const char *service, const char *address,
                       resolver_registration_info **out, size_t *n);

/* The key and value `spec` is written as with lease `lease` (go-zero keys
 * carry it).  Pure.  0 or NOMEM; free both. */
int rsv_registration_render(const rsv_registration_config *spec, const char *prefix, int64_t lease,
                            char **key, char **value);

#endif
