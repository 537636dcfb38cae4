/*
 * metrics.h - the Prometheus text exposition of an engine (the daemon's
 * /metrics and METRICS).  Loop-thread only: it reads engine, service and
 * etcd state the way the introspection verbs do.
 */
#ifndef RESOLVER_METRICS_H
#define RESOLVER_METRICS_H

#include "engine.h"

/* The whole exposition (format 0.0.4), malloc'd; NULL when out of memory. */
char *resolver_metrics_text(resolver_engine *e);

#endif
