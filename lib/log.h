/* log.h - levelled logging; the public knobs are in resolver.h. */
#ifndef RESOLVER_LOG_H
#define RESOLVER_LOG_H

#include "resolver.h"

/* printf-style; one line per call, no trailing newline needed. */
void resolver_log(resolver_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int resolver_log_enabled(resolver_log_level level);

#define LOG_ERROR(...) resolver_log(RESOLVER_LOG_ERROR, __VA_ARGS__)
#define LOG_WARN(...) resolver_log(RESOLVER_LOG_WARN, __VA_ARGS__)
#define LOG_INFO(...) resolver_log(RESOLVER_LOG_INFO, __VA_ARGS__)
#define LOG_DEBUG(...)                                                                             \
    do {                                                                                           \
        if (resolver_log_enabled(RESOLVER_LOG_DEBUG))                                              \
            resolver_log(RESOLVER_LOG_DEBUG, __VA_ARGS__);                                         \
    } while (0)

#endif
