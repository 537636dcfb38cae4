/*
 * instance.h - one address of a service, as pickers, tickets and the
 * service share it: its endpoint, its reference count, the counters picks
 * update (outstanding, picks) and least_latency's average.
 *
 * Close rule (numbered so that callers can cite them):
 *  1. rsv_instance_new returns an instance holding one reference, the
 *     creator's.  There is no close call: the last rsv_instance_unref ends
 *     it.  rsv_instance_ref (any thread) takes another reference on an
 *     instance the caller already holds one of; every holder (the owner,
 *     each picker that lists it, each pick handed out) drops its own.
 *  2. At the last unref the owner's `on_free` runs (if set), on the thread
 *     of that unref, then the memory goes.  No other callback ever runs
 *     from this module.  An owner whose on_free touches thread-bound
 *     objects (service.c: loop timers, a subchannel) unrefs on that thread
 *     only.
 *  3. Fields marked (any) are read and written by picking threads, through
 *     atomics; the rest is written by the owner only, and read by pickers
 *     only while one is built (rsv_picker_new: endpoint.address and weight),
 *     on the owner's thread.
 *  4. endpoint.address never changes after creation.
 *  5. endpoint.metadata (any) is the exception to rule 3: the owner swaps
 *     it (atomic exchange) and retires the old one through its hazard
 *     domain (rsv_metadata_unref_void); a picking thread loads it under
 *     RESOLVER_HAZARD_METADATA and takes a reference of its own (the pick's
 *     ticket holds it), so a pick's metadata outlives any later change.
 *     The instance holds one reference, dropped at its end.
 *
 * The service (service.c) is the owner in the library; tests and benchmarks
 * make instances with no service at all.  The fields after `on_free` are
 * the service's per-instance state: zero for an instance it does not own.
 */
#ifndef RSV_INSTANCE_H
#define RSV_INSTANCE_H

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include "log.h"
#include "registry.h"

struct rsv_service;
struct rsv_subchannel;
struct resolver_timer;

typedef struct rsv_instance rsv_instance;
typedef void (*rsv_instance_free_cb)(rsv_instance *inst);

struct rsv_instance {
    rsv_endpoint endpoint;
    atomic_uint refs;           /* (any) */
    atomic_uint outstanding;    /* (any) picks not yet released */
    atomic_uint_fast64_t picks; /* (any) */
    /* (any) least_latency's peak-EWMA of done latencies: the average in ms
     * as the bits of a double, and the coarse monotonic microsecond of its
     * last sample (0: no sample yet). */
    atomic_uint_fast64_t latency_ewma_bits, latency_sampled_us;
    rsv_instance_free_cb on_free; /* rule 2; NULL: nothing to release */

    /* ---- the service's (service.c), engine thread only ---- */
    struct rsv_service *service; /* NULL once detached (removed and closed) */
    unsigned n_keys;             /* etcd keys naming this address */
    struct rsv_subchannel *sc;   /* NULL once closed */
    int draining;                /* no new picks; closes when outstanding reaches 0 */
    int unkeyed_in_batch;        /* lost its last key in the current batch */
    int operator_drained;        /* drained by `resolverctl drain` */
    int stale;                   /* removed from etcd, kept by self-preservation */
    uint64_t stale_since_ms;
    struct resolver_timer
        *stale_timer; /* self_preservation_max_ms; 0 ms once the connection failed */
    uint64_t failures;
    uint64_t added_ms, last_change_ms;
    struct resolver_timer *drain_timer;
    /* outlier detection (outlier.h) */
    uint32_t consecutive_failures;
    uint64_t interval_requests, interval_failures;
    int ejected;
    uint32_t times_ejected;
    uint64_t ejected_until_ms;
    struct resolver_timer *eject_timer;
    /* What the log said of it ("in service" = READY and not ejected): one
     * warn line when it leaves, one info line when it is back, at most one
     * of each per RSV_LOG_LIMIT_MS and cause (`flap_log`: the connection's
     * state, `eject_log`: ejections). */
    int out_state;         /* OUT_* in service.c */
    uint64_t out_since_ms; /* when it left service (or was added) */
    char clean_end[128];   /* the cause of a clean end, until the reconnect's outcome */
    rsv_log_limit flap_log, eject_log;
};

/* A new instance for `ep` (copied), one reference held (rule 1), nothing
 * outstanding, no latency sample.  NULL when out of memory. */
rsv_instance *rsv_instance_new(const rsv_endpoint *ep, rsv_instance_free_cb on_free);

/* Rule 1.  Inline: every pick takes one. */
static inline void rsv_instance_ref(rsv_instance *inst)
{
    atomic_fetch_add_explicit(&inst->refs, 1, memory_order_relaxed);
}
/* Rule 2: at zero, on_free then free. */
void rsv_instance_unref(rsv_instance *inst);

/* ---- least_latency's average ----
 *
 * Any thread, lock-free: a latency reported for a pick of `inst` into its
 * peak-EWMA.  A sample above the average replaces it at once (a backend
 * turning slow is avoided from its first slow answer); a lower one pulls it
 * down by 1 - exp(-dt / decay_ms), dt the time since the previous sample,
 * so recovery takes about decay_ms whatever the rate of dones.  A picking
 * thread lets the average of an instance that gets no samples fade towards
 * 0 in the same way, so an instance avoided for being slow is tried again
 * after a few decay_ms.  decay_ms 0 means the default, 10 s. */
void rsv_instance_latency_sample(rsv_instance *inst, uint32_t ms, uint64_t decay_ms);
/* The same at a given time of rsv_latency_clock_us (never 0), so that
 * tests state the intervals instead of sleeping through them. */
void rsv_instance_latency_sample_at(rsv_instance *inst, uint32_t ms, uint64_t decay_ms,
                                    uint64_t now_us);
/* The clock of the averages: CLOCK_MONOTONIC_COARSE in microseconds
 * (a few ns to read; its tick of 1-4 ms is small beside decay_ms); never 0. */
uint64_t rsv_latency_clock_us(void);

#define RSV_LATENCY_DEFAULT_DECAY_MS 10000

/* exp(-dt / decay): the weight left to what was known dt ago. */
static inline double rsv_latency_decay_weight(uint64_t dt_us, uint64_t decay_ms)
{
    if (decay_ms == 0)
        decay_ms = RSV_LATENCY_DEFAULT_DECAY_MS;
    return exp(-(double)dt_us / ((double)decay_ms * 1000.0));
}

/* The average a pick at `now_us` (rsv_latency_clock_us) sees, in ms; 0
 * without samples.  Inline: least_latency reads it for each candidate. */
static inline double rsv_instance_latency_estimate(const rsv_instance *inst, uint64_t now_us,
                                                   uint64_t decay_ms)
{
    uint64_t sampled = atomic_load_explicit(&inst->latency_sampled_us, memory_order_relaxed);
    if (sampled == 0)
        return 0.0;
    uint64_t bits = atomic_load_explicit(&inst->latency_ewma_bits, memory_order_relaxed);
    double avg;
    memcpy(&avg, &bits, sizeof(avg));
    return now_us > sampled ? avg * rsv_latency_decay_weight(now_us - sampled, decay_ms) : avg;
}

#endif
