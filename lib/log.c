/* log.c - levelled logging to stderr or a host-supplied handler. */
#include <stdarg.h>
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

void resolver_log(resolver_log_level level, const char *fmt, ...)
{
    if (!resolver_log_enabled(level))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
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
