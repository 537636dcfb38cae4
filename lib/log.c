/* log.c - levelled logging to stderr or a host-supplied handler. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "log.h"

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Process-wide settings; written before engines start (resolver.h says so),
 * read by every thread, so plain variables are enough. */
static resolver_log_level current_level = RESOLVER_LOG_INFO;
static resolver_log_fn handler;
static void *handler_arg;

void resolver_log_set_level(resolver_log_level level)
{
    if (level >= RESOLVER_LOG_ERROR && level <= RESOLVER_LOG_DEBUG)
        current_level = level;
}

void resolver_log_set_handler(resolver_log_fn fn, void *arg)
{
    handler = fn;
    handler_arg = arg;
}

int resolver_log_level_parse(const char *name, resolver_log_level *out)
{
    if (!name || !out)
        return RESOLVER_ERR_INVALID;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (resolver_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = RESOLVER_LOG_WARN;
        return 0;
    }
    return RESOLVER_ERR_INVALID;
}

int resolver_log_enabled(resolver_log_level level)
{
    return level <= current_level;
}

static void log_line(resolver_log_level level, char *line);

void resolver_log(resolver_log_level level, const char *fmt, ...)
{
    if (!resolver_log_enabled(level))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log_line(level, line);
}

static unsigned long long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000u + (unsigned long long)ts.tv_nsec / 1000000u;
}

int resolver_log_limited(resolver_log_limit *lim, resolver_log_level level, const char *fmt, ...)
{
    if (!resolver_log_enabled(level))
        return 0;
    unsigned long long now = monotonic_ms();
    unsigned long long next = atomic_load_explicit(&lim->next_ms, memory_order_relaxed);
    if (now < next || !atomic_compare_exchange_strong(&lim->next_ms, &next,
                                                      now + RESOLVER_LOG_LIMIT_MS)) {
        atomic_fetch_add_explicit(&lim->suppressed, 1, memory_order_relaxed);
        return 0;
    }
    unsigned long long dropped = atomic_exchange(&lim->suppressed, 0);
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (dropped && n >= 0 && (size_t)n < sizeof(line))
        snprintf(line + n, sizeof(line) - (size_t)n, " (%llu more like this since the last one)",
                 dropped);
    log_line(level, line);
    return 1;
}

static void log_line(resolver_log_level level, char *line)
{
    /* One event is one line: newlines inside a message would let a hostile
     * etcd value forge log lines. */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (handler) {
        handler(level, line, handler_arg);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            level_names[level], line);
}
