/*
 * picker.h - an immutable snapshot of a service's pickable instances and
 * its policy's tables.  Built by the engine thread whenever the set of
 * READY, non-draining, non-ejected instances changes; read by any thread
 * without locks (the engine publishes it through an atomic pointer and frees
 * replaced ones through hazard pointers, see hazard.h).
 *
 * Policies (DESIGN.md §2): pick_first, round_robin, random,
 * weighted_round_robin (gRPC's static stride scheduler: smooth, lock-free,
 * proportional to weight), least_request (power of `choice_count` choices
 * over outstanding picks), ring_hash (XXH64 ring, 128 points per unit of
 * weight, at most 4096 points; when one of N instances leaves only its own
 * keys, ~1/N, move).
 */
#ifndef RESOLVER_PICKER_H
#define RESOLVER_PICKER_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"

struct resolver_instance;

typedef struct resolver_picker resolver_picker;

#define RESOLVER_RING_MIN 1024
#define RESOLVER_RING_MAX 4096

/* Builds a picker over `instances` (copied; each gets a reference that
 * resolver_picker_free drops).  NULL on allocation failure. */
resolver_picker *resolver_picker_new(resolver_policy policy, uint32_t choice_count,
                                     uint32_t max_outstanding,
                                     struct resolver_instance *const *instances, size_t n);
/* Engine thread only (it may free instances). */
void resolver_picker_free(void *picker);

/* Any thread.  Returns an instance with outstanding and refs incremented,
 * or NULL when the picker is empty or every candidate is at
 * max_outstanding.  `key` is used by ring_hash (NULL: a random point). */
struct resolver_instance *resolver_picker_pick(resolver_picker *p, const char *key);
size_t resolver_picker_size(const resolver_picker *p);
/* Why an empty picker is empty: the error a pick returns and its message,
 * computed by the engine when it builds the picker (so that picking threads
 * never look at engine state). */
void resolver_picker_set_reason(resolver_picker *p, int error, const char *reason);
int resolver_picker_reason(const resolver_picker *p, const char **reason);
/* The service's ticket_timeout_ms when the picker was built: picking
 * threads read the options they need here, in the snapshot, never in the
 * service (a reload rewrites those on the engine thread).  Set it before
 * publishing, as the reason. */
void resolver_picker_set_ticket_timeout(resolver_picker *p, uint64_t ms);
uint64_t resolver_picker_ticket_timeout(const resolver_picker *p);
uint32_t resolver_picker_max_outstanding(const resolver_picker *p);
resolver_policy resolver_picker_policy(const resolver_picker *p);

/* XXH64 (seed 0..), exposed for tests. */
uint64_t resolver_xxh64(const void *data, size_t len, uint64_t seed);

#endif
