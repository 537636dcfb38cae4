/*
 * histogram.h - a fixed-bucket latency histogram in milliseconds, for the
 * pick-to-done durations clients report (`DONE ... latency_ms=N`).  The
 * bucket bounds are Prometheus' default ones with 1 ms and 2.5 ms in
 * front.  Not thread-safe: the engine thread observes and reads.
 */
#ifndef RSV_HISTOGRAM_H
#define RSV_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

#define RSV_HISTOGRAM_BUCKETS 13

/* The upper bounds (inclusive) in microseconds, ascending; +Inf is implied. */
extern const uint64_t rsv_histogram_bounds_us[RSV_HISTOGRAM_BUCKETS];

typedef struct {
    uint64_t buckets[RSV_HISTOGRAM_BUCKETS]; /* per bucket, not cumulative */
    uint64_t count;                          /* every observation (the +Inf bucket) */
    uint64_t sum_ms;
} rsv_histogram;

void rsv_histogram_observe(rsv_histogram *h, uint32_t ms);
/* Observations at or below bucket i's bound (cumulative, as exposed). */
uint64_t rsv_histogram_cumulative(const rsv_histogram *h, size_t i);

#endif
