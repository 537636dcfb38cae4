/* log.h - levelled logging; the public knobs are in resolver.h. */
#ifndef RSV_LOG_H
#define RSV_LOG_H

#include "resolver.h"

/* printf-style; one line per call, no trailing newline needed. */
void rsv_log(resolver_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int rsv_log_enabled(resolver_log_level level);

/* A rate limiter for one repeated cause (a leaked ticket, an etcd retry, an
 * EMFILE...): at most one line per RSV_LOG_LIMIT_MS, the rest counted;
 * the next line that gets through ends with "(N more like this since the
 * last one)".  Zero-initialise it (static or in a struct); safe from any thread
 * (lock-free: two threads racing at a window's start may both print).  The
 * clock is CLOCK_MONOTONIC, read only when the level is enabled. */
#define RSV_LOG_LIMIT_MS 10000
typedef struct rsv_log_limit {
    _Atomic unsigned long long next_ms;    /* monotonic ms when the next line may go */
    _Atomic unsigned long long suppressed; /* lines dropped since the last one */
} rsv_log_limit;

/* Logs through `lim`; returns 1 when the line was written, 0 when it was
 * counted as suppressed (or the level is off). */
int rsv_log_limited(rsv_log_limit *lim, resolver_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_WARN_LIMITED(lim, ...) rsv_log_limited((lim), RESOLVER_LOG_WARN, __VA_ARGS__)
#define LOG_ERROR_LIMITED(lim, ...) rsv_log_limited((lim), RESOLVER_LOG_ERROR, __VA_ARGS__)

#define LOG_ERROR(...) rsv_log(RESOLVER_LOG_ERROR, __VA_ARGS__)
#define LOG_WARN(...) rsv_log(RESOLVER_LOG_WARN, __VA_ARGS__)
#define LOG_INFO(...) rsv_log(RESOLVER_LOG_INFO, __VA_ARGS__)
#define LOG_DEBUG(...)                                                                             \
    do {                                                                                           \
        if (rsv_log_enabled(RESOLVER_LOG_DEBUG))                                                   \
            rsv_log(RESOLVER_LOG_DEBUG, __VA_ARGS__);                                              \
    } while (0)

#endif
