/*
 * histogram.c - see histogram.h.
 */
#include "histogram.h"

const uint64_t rsv_histogram_bounds_us[RSV_HISTOGRAM_BUCKETS] = {
    1000,   2500,   5000,    10000,   25000,   50000,   100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000};

void rsv_histogram_observe(rsv_histogram *h, uint32_t ms)
{
    uint64_t us = (uint64_t)ms * 1000;
    h->count++;
    h->sum_ms += ms;
    for (size_t i = 0; i < RSV_HISTOGRAM_BUCKETS; i++) {
        if (us <= rsv_histogram_bounds_us[i]) {
            h->buckets[i]++;
            return;
        }
    }
}

uint64_t rsv_histogram_cumulative(const rsv_histogram *h, size_t i)
{
    uint64_t n = 0;
    for (size_t b = 0; b <= i && b < RSV_HISTOGRAM_BUCKETS; b++)
        n += h->buckets[b];
    return n;
}
