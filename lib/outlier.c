/* outlier.c - see outlier.h. */
#include <stdio.h>
#include <string.h>
#include "outlier.h"

/* A rule tripped: eject, unless ejection is off, the instance is ejected
 * already or the service's cap is reached. */
static rsv_outlier_decision eject(const rsv_service_options *o, const rsv_outlier_counts *c,
                                  const char *why)
{
    rsv_outlier_decision d;
    memset(&d, 0, sizeof(d));
    if (c->ejected || o->outlier.max_ejection_percent == 0)
        return d;
    size_t max = c->service_total * o->outlier.max_ejection_percent / 100;
    if (max < 1)
        max = 1;
    snprintf(d.why, sizeof(d.why), "%s", why);
    if (c->service_ejected >= max) {
        d.action = RSV_OUTLIER_HELD;
        d.max_ejected = max;
        return d;
    }
    d.action = RSV_OUTLIER_EJECT;
    d.times_ejected = c->times_ejected + 1;
    d.ms = o->outlier.base_ejection_ms * d.times_ejected;
    if (d.ms > o->outlier.max_ejection_ms)
        d.ms = o->outlier.max_ejection_ms;
    return d;
}

rsv_outlier_decision rsv_outlier_after_call(const rsv_service_options *o,
                                            const rsv_outlier_counts *c)
{
    uint32_t limit = o->outlier.consecutive_failures;
    if (limit && c->consecutive_failures >= limit) {
        char why[64];
        snprintf(why, sizeof(why), "%u consecutive failures", c->consecutive_failures);
        return eject(o, c, why);
    }
    rsv_outlier_decision none;
    memset(&none, 0, sizeof(none));
    return none;
}

rsv_outlier_decision rsv_outlier_after_interval(const rsv_service_options *o,
                                                const rsv_outlier_counts *c)
{
    uint32_t pct = o->outlier.failure_percent;
    if (pct && c->interval_requests >= o->outlier.min_requests &&
        c->interval_failures * 100 >= (uint64_t)pct * c->interval_requests) {
        char why[96];
        snprintf(why, sizeof(why), "%llu of %llu calls failed in the last interval",
                 (unsigned long long)c->interval_failures,
                 (unsigned long long)c->interval_requests);
        return eject(o, c, why);
    }
    rsv_outlier_decision d;
    memset(&d, 0, sizeof(d));
    if (!c->ejected && c->times_ejected > 0 && c->interval_failures == 0) {
        d.action = RSV_OUTLIER_FORGIVE;
        d.times_ejected = c->times_ejected - 1;
    }
    return d;
}

int rsv_outlier_ejection_over(uint64_t now_ms, uint64_t ejected_until_ms)
{
    return now_ms >= ejected_until_ms;
}
