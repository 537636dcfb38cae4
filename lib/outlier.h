/*
 * outlier.h - outlier detection's decisions, as a pure module: counts in,
 * decisions out.  No timers, no logging, no instance: the service
 * (service.c) keeps the counts per instance, asks here after each call and
 * at the end of each interval, and applies what it is told (marks the
 * instance ejected, starts its timer, logs, publishes a picker).
 *
 * The rules (Envoy's outlier detection, as the options in config.h name them):
 *  - consecutive_failures: that many failed calls in a row eject.
 *  - failure_percent: an interval (interval_ms) with at least min_requests
 *    calls of which at least failure_percent % failed ejects.
 *  - An ejection lasts base_ejection_ms times the number of times the
 *    instance was ejected (this one included), at most max_ejection_ms.  An
 *    interval without failures while not ejected takes one off that number.
 *  - At most max_ejection_percent % of the service's instances are ejected
 *    at once, but one instance may always be; 0 turns ejection off.
 *  - An instance already ejected is not ejected again.
 */
#ifndef RSV_OUTLIER_H
#define RSV_OUTLIER_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"

/* One instance's counts, and its service's. */
typedef struct {
    uint32_t consecutive_failures; /* failed calls in a row, the last one included */
    uint64_t interval_requests;    /* calls ended in the current interval */
    uint64_t interval_failures;    /* of which failed */
    uint32_t times_ejected;        /* the ejections the next one's duration counts */
    int ejected;                   /* 1: ejected now */
    size_t service_ejected;        /* instances of the service ejected now */
    size_t service_total;          /* instances of the service */
} rsv_outlier_counts;

typedef enum {
    RSV_OUTLIER_NONE = 0, /* nothing to do */
    RSV_OUTLIER_EJECT,    /* eject for `ms`; times_ejected becomes `times_ejected` */
    RSV_OUTLIER_HELD,     /* a rule tripped, but max_ejection_percent is reached */
    RSV_OUTLIER_FORGIVE   /* a healthy interval: times_ejected becomes `times_ejected` */
} rsv_outlier_action;

typedef struct {
    rsv_outlier_action action;
    uint64_t ms;            /* EJECT: how long the ejection lasts */
    uint32_t times_ejected; /* EJECT, FORGIVE: the new count */
    size_t max_ejected;     /* HELD: the cap that was reached */
    char why[96];           /* EJECT, HELD: the rule that tripped, in words */
} rsv_outlier_decision;

/* After a call of the instance ended, its outcome already in `c`. */
rsv_outlier_decision rsv_outlier_after_call(const rsv_service_options *o,
                                            const rsv_outlier_counts *c);
/* At the end of an interval, before its counts start again from 0. */
rsv_outlier_decision rsv_outlier_after_interval(const rsv_service_options *o,
                                                const rsv_outlier_counts *c);
/* Whether an ejection that lasts until `ejected_until_ms` is over at
 * `now_ms`: then the instance returns, its consecutive failures forgotten. */
int rsv_outlier_ejection_over(uint64_t now_ms, uint64_t ejected_until_ms);

#endif
