/*
 * metrics_text.h - the Prometheus text exposition of resolverd (its
 * /metrics and METRICS): the engine read through its public introspection,
 * the daemon's listeners, the process.  Engine thread only.
 */
#ifndef RSV_METRICS_TEXT_H
#define RSV_METRICS_TEXT_H

#include <resolver.h>

/* Per-instance series (resolver_instance_*) are written for at most this
 * many instances of each service, the first by address, so that a service
 * with thousands of instances cannot flood the scraper;
 * resolver_instance_series_omitted{service} counts the others.  Documented
 * in resolverd(8) and the README. */
#define RSV_METRICS_INSTANCES_MAX 50

/* The whole exposition (format 0.0.4), malloc'd; NULL when out of memory. */
char *rsv_metrics_text(resolver_engine *e);

#endif
