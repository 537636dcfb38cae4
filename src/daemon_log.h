/*
 * daemon_log.h - resolverd's logging: the library's public resolver_log
 * (one handler, one format for the daemon's lines and the engine's).
 */
#ifndef RSV_DAEMON_LOG_H
#define RSV_DAEMON_LOG_H

#include <resolver.h>

#define LOG_ERROR(...) resolver_log(RESOLVER_LOG_ERROR, __VA_ARGS__)
#define LOG_WARN(...) resolver_log(RESOLVER_LOG_WARN, __VA_ARGS__)
#define LOG_INFO(...) resolver_log(RESOLVER_LOG_INFO, __VA_ARGS__)
#define LOG_DEBUG(...)                                                                             \
    do {                                                                                           \
        if (resolver_log_enabled(RESOLVER_LOG_DEBUG))                                              \
            resolver_log(RESOLVER_LOG_DEBUG, __VA_ARGS__);                                         \
    } while (0)
#define LOG_WARN_LIMITED(lim, ...) resolver_log_limited((lim), RESOLVER_LOG_WARN, __VA_ARGS__)

#endif
