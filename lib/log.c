/* log.c - levelled logging to stderr or a host-supplied handler.
 *
 * On stderr a line is "TIMESTAMP LEVEL message", except when stderr is the
 * systemd journal's stream ($JOURNAL_STREAM names its device:inode, as
 * systemd.exec(5) says to check): then "<N>LEVEL message", N the syslog
 * priority journald reads from the prefix (so `journalctl -p warning` works),
 * and no timestamp (the journal keeps its own). */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include "clock.h"
#include "log.h"

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* syslog priorities of the levels: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const int level_priorities[] = {3, 4, 6, 7};

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

int rsv_log_enabled(resolver_log_level level)
{
    return level <= current_level;
}

static void log_line(resolver_log_level level, char *line);

static void vlog(resolver_log_level level, const char *fmt, va_list ap)
{
    char line[2048];
    vsnprintf(line, sizeof(line), fmt, ap);
    log_line(level, line);
}

void rsv_log(resolver_log_level level, const char *fmt, ...)
{
    if (!rsv_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void resolver_log(resolver_log_level level, const char *fmt, ...)
{
    if (!fmt || !rsv_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

int resolver_log_enabled(resolver_log_level level)
{
    return rsv_log_enabled(level);
}

static int vlog_limited(rsv_log_limit *lim, resolver_log_level level, const char *fmt, va_list ap)
{
    if (!rsv_log_enabled(level))
        return 0;
    unsigned long long now = rsv_clock_ms();
    unsigned long long next = atomic_load_explicit(&lim->next_ms, memory_order_relaxed);
    if (now < next ||
        !atomic_compare_exchange_strong(&lim->next_ms, &next, now + RSV_LOG_LIMIT_MS)) {
        atomic_fetch_add_explicit(&lim->suppressed, 1, memory_order_relaxed);
        return 0;
    }
    unsigned long long dropped = atomic_exchange(&lim->suppressed, 0);
    char line[2048];
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    if (dropped && n >= 0 && (size_t)n < sizeof(line))
        snprintf(line + n, sizeof(line) - (size_t)n, " (%llu more like this since the last one)",
                 dropped);
    log_line(level, line);
    return 1;
}

int rsv_log_limited(rsv_log_limit *lim, resolver_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vlog_limited(lim, level, fmt, ap);
    va_end(ap);
    return rc;
}

/* The public limiter is storage of the same size and alignment as the
 * internal one (zero: no line yet, none suppressed). */
_Static_assert(sizeof(resolver_log_limit) == sizeof(rsv_log_limit) &&
                   _Alignof(resolver_log_limit) >= _Alignof(rsv_log_limit),
               "resolver_log_limit holds an rsv_log_limit");

int resolver_log_limited(resolver_log_limit *lim, resolver_log_level level, const char *fmt, ...)
{
    if (!lim || !fmt)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    int rc = vlog_limited((rsv_log_limit *)(void *)lim, level, fmt, ap);
    va_end(ap);
    return rc;
}

/* Checked at each line rather than once: it costs an fstat, lines are few
 * (the repeated ones are rate-limited), and it stays right when a host
 * redirects stderr after starting. */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    char end;
    if (!js || sscanf(js, "%llu:%llu%c", &dev, &ino, &end) != 2)
        return 0;
    struct stat st;
    if (fstat(fileno(stderr), &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
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
    if (stderr_is_journal()) {
        fprintf(stderr, "<%d>%-5s %s\n", level_priorities[level], level_names[level], line);
        return;
    }
    struct timespec ts;
    rsv_clock_wall(&ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            level_names[level], line);
}
