/*
 * clock.h - the one place the library reads a clock.  Monotonic time for
 * every deadline, timer and latency (never wall time: it jumps); wall time
 * only for timestamps people read (log lines, the "last change" metric).
 * static inline: the pick path reads the coarse clock per pick, and a call
 * out of line would be a cost of its own.
 *
 * Close rule: functions only; no state, no memory.  Thread-safe.
 */
#ifndef RSV_CLOCK_H
#define RSV_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in ms and us. */
static inline uint64_t rsv_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t rsv_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* CLOCK_MONOTONIC_COARSE in us: the last tick (1-4 ms old), a few ns to
 * read (no vDSO time arithmetic); for latency averages on the pick path. */
static inline uint64_t rsv_clock_coarse_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* CLOCK_REALTIME, for timestamps only. */
static inline void rsv_clock_wall(struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
}

#endif
