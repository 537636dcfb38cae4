/*
 * picker.h - an immutable snapshot of a service's pickable instances and
 * its policy's tables.  Built by the engine thread whenever the set of
 * READY, non-draining, non-ejected instances changes; read by any thread
 * without locks (the engine publishes it through an atomic pointer and frees
 * replaced ones through hazard pointers, see hazard.h).
 *
 * Policies (doc/design.md, Policies): pick_first, round_robin, random,
 * weighted_round_robin (gRPC's static stride scheduler: smooth, lock-free,
 * proportional to weight), least_request (power of `choice_count` choices
 * over outstanding picks), ring_hash (XXH64 ring, 128 points per unit of
 * weight, at most 4096 points; when one of N instances leaves only its own
 * keys, ~1/N, move), least_latency (the cheapest of `choice_count`
 * distinct instances, cost = latency average x (outstanding + 1), the
 * average at least 0.5 ms: Linkerd's peak-EWMA, see
 * rsv_instance_latency_sample in instance.h).
 */
#ifndef RSV_PICKER_H
#define RSV_PICKER_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "instance.h"

typedef struct rsv_picker rsv_picker;

#define RSV_RING_MIN 1024
#define RSV_RING_MAX 4096

/* Builds a picker over `instances` (copied; each gets a reference that
 * rsv_picker_free drops).  NULL on allocation failure. */
rsv_picker *rsv_picker_new(rsv_policy policy, uint32_t choice_count, uint32_t max_outstanding,
                           rsv_instance *const *instances, size_t n);
/* Engine thread only (it may free instances). */
void rsv_picker_free(void *picker);

/* Any thread.  Returns an instance with outstanding and refs incremented,
 * or NULL when the picker is empty or every candidate is at
 * max_outstanding.  `key` is used by ring_hash (NULL: a random point). */
rsv_instance *rsv_picker_pick(rsv_picker *p, const char *key);
size_t rsv_picker_size(const rsv_picker *p);
/* Why an empty picker is empty: the error a pick returns and its message,
 * computed by the engine when it builds the picker (so that picking threads
 * never look at engine state). */
void rsv_picker_set_reason(rsv_picker *p, int error, const char *reason);
int rsv_picker_reason(const rsv_picker *p, const char **reason);
/* The service's ticket_timeout_ms when the picker was built: picking
 * threads read the options they need here, in the snapshot, never in the
 * service (a reload rewrites those on the engine thread).  Set it before
 * publishing, as the reason. */
void rsv_picker_set_ticket_timeout(rsv_picker *p, uint64_t ms);
uint64_t rsv_picker_ticket_timeout(const rsv_picker *p);
uint32_t rsv_picker_max_outstanding(const rsv_picker *p);
/* least_latency: the service's latency_decay_ms when the picker was built
 * (an average idle for that long counts for 1/e of itself).  Set it before
 * publishing. */
void rsv_picker_set_latency_decay(rsv_picker *p, uint64_t ms);

rsv_policy rsv_picker_policy(const rsv_picker *p);

/* XXH64 (seed 0..), exposed for tests. */
uint64_t rsv_xxh64(const void *data, size_t len, uint64_t seed);

#endif
