/*
 * backoff.h - one retry backoff for every module that retries: gRPC's
 * connection backoff (initial delay, multiplier, jitter, cap).  Pure: no
 * clock, no randomness of its own (the caller passes a uniform draw), so it
 * is tested alone (tests/unit/check_backoff.c).
 *
 * Users and their numbers (initial / multiplier / jitter / max):
 *   subchannel reconnects   the service's options (1000 / 1.6 / 0.2 / 120000)
 *   health check retries    1000 / 2 / 0 / 10000       (health.c)
 *   etcd watch retries      uniform in [r/2, r] for r = 100, 200, ... 5000,
 *                           i.e. 75 / 2 / 1/3 / 3750   (discovery.c)
 *   etcd authentication     500 / 2 / 0 / 30000        (etcd.c)
 *   registrations           100 / 2 / 0 / 500          (registrar.c)
 * A jitter of 0 makes rsv_backoff_next return exactly initial, initial *
 * multiplier, ... up to max.
 *
 * Close rule: a plain value; nothing to end, no callbacks, no memory.
 */
#ifndef RSV_BACKOFF_H
#define RSV_BACKOFF_H

#include <stdint.h>

typedef struct {
    uint64_t initial_ms; /* 1000 */
    double multiplier;   /* 1.6 */
    double jitter;       /* 0.2: uniform in [-jitter, +jitter] */
    uint64_t max_ms;     /* 120000 */
} rsv_backoff_config;

typedef struct {
    rsv_backoff_config cfg;
    double current_ms; /* the next un-jittered backoff */
} rsv_backoff;

/* Copies cfg (zeros and out-of-range values replaced by sane ones) and
 * resets. */
void rsv_backoff_init(rsv_backoff *b, const rsv_backoff_config *cfg);
/* The next delay is the initial one again. */
void rsv_backoff_reset(rsv_backoff *b);
/* Returns the delay for this attempt (jittered: uniform in current *
 * [1 - jitter, 1 + jitter)) and advances: current = min(current *
 * multiplier, max).  `random01` is a uniform draw in [0,1) (random.h). */
uint64_t rsv_backoff_next(rsv_backoff *b, double random01);

#endif
