/*
 * metrics.c - see metrics.h.  The text is built in one growing buffer; an
 * allocation failure anywhere makes the whole answer NULL rather than a
 * truncated exposition.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "etcd.h"
#include "metrics.h"

typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} text_buf;

static void text_append(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_append(text_buf *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->cap - t->len;
        int n = t->buf ? vsnprintf(t->buf + t->len, room, fmt, ap) : -1;
        va_end(ap);
        if (n >= 0 && (size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (n >= 0 && cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = 1;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

/* A label value as the Prometheus text format wants it: backslash, double
 * quote and newline escaped.  Service names cannot hold them (see
 * check_service_name); this keeps the exposition well-formed regardless. */
typedef struct {
    char text[2 * RESOLVER_SERVICE_NAME_MAX + 1];
} label_value;

static const char *escape_label(label_value *lv, const char *in)
{
    size_t o = 0;
    for (; *in && o + 2 < sizeof(lv->text); in++) {
        char c = *in;
        if (c == '\\' || c == '"' || c == '\n') {
            lv->text[o++] = '\\';
            c = c == '\n' ? 'n' : c;
        }
        lv->text[o++] = c;
    }
    lv->text[o] = '\0';
    return lv->text;
}

/* The HELP and TYPE lines of one metric family. */
static void family(text_buf *t, const char *name, const char *type, const char *help)
{
    text_append(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

char *resolver_metrics_text(resolver_engine *e)
{
    text_buf t = {0};
    uint64_t now = resolver_loop_update_time(resolver_engine_loop(e));
    uint64_t heard = resolver_etcd_last_heard(resolver_engine_etcd(e));
    static const char *const states[5] = {"IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE",
                                          "DRAINING"};
    resolver_engine_counters c;
    resolver_engine_counters_get(e, &c);
    size_t n;
    resolver_service **all = resolver_engine_sorted_services(e, &n);
    label_value *names = calloc(n + 1, sizeof(*names));
    for (size_t i = 0; all && names && i < n; i++)
        escape_label(&names[i], resolver_service_name(all[i]));
    if (!names) {
        n = 0;
        t.failed = 1;
    }
    family(&t, "resolver_picks_total", "counter", "Picks answered with an instance.");
    for (size_t i = 0; all && i < n; i++)
        text_append(&t, "resolver_picks_total{service=\"%s\"} %" PRIu64 "\n", names[i].text,
                    resolver_service_counters_get(all[i])->picks);
    family(&t, "resolver_pick_failures_total", "counter",
           "Picks answered with an error (each pick counted once, by its outcome).");
    for (size_t i = 0; all && i < n; i++)
        text_append(&t, "resolver_pick_failures_total{service=\"%s\"} %" PRIu64 "\n", names[i].text,
                    resolver_service_counters_get(all[i])->pick_failures);
    family(&t, "resolver_instances", "gauge", "Known instances by connection state.");
    for (size_t i = 0; all && i < n; i++) {
        size_t counts[5];
        resolver_service_state_counts(all[i], counts);
        for (int s = 0; s < 5; s++)
            text_append(&t, "resolver_instances{service=\"%s\",state=\"%s\"} %zu\n", names[i].text,
                        states[s], counts[s]);
    }
    family(&t, "resolver_decode_errors_total", "counter",
           "etcd values that could not be decoded into an instance.");
    for (size_t i = 0; all && i < n; i++)
        text_append(&t, "resolver_decode_errors_total{service=\"%s\"} %" PRIu64 "\n", names[i].text,
                    resolver_service_counters_get(all[i])->decode_errors);
    free(names);
    free(all);
    family(&t, "resolver_tickets_outstanding", "gauge", "Tickets picked and not yet done.");
    text_append(&t, "resolver_tickets_outstanding %zu\n", c.tickets_outstanding);
    family(&t, "resolver_tickets_leaked_total", "counter",
           "Tickets released by ticket_timeout_ms because nobody reported them done.");
    text_append(&t, "resolver_tickets_leaked_total %" PRIu64 "\n", c.tickets_leaked);
    family(&t, "resolver_etcd_revision", "gauge", "The newest etcd revision seen.");
    text_append(&t, "resolver_etcd_revision %" PRId64 "\n", resolver_engine_revision(e));
    family(&t, "resolver_accept_backoffs_total", "counter",
           "Times a listener paused because accept failed (EMFILE, ENFILE, ENOBUFS, ENOMEM).");
    for (int l = 0; l < RESOLVER_LISTENER_COUNT; l++)
        text_append(&t, "resolver_accept_backoffs_total{listener=\"%s\"} %" PRIu64 "\n",
                    resolver_listener_name((resolver_listener)l), c.accept_backoffs[l]);
    family(&t, "resolver_etcd_last_heard_seconds", "gauge",
           "Seconds since etcd last answered (-1: never).");
    text_append(&t, "resolver_etcd_last_heard_seconds %.3f\n",
                heard ? (double)(now - heard) / 1000.0 : -1.0);
    family(&t, "resolver_etcd_cluster_changes_total", "counter",
           "Times another etcd cluster (replaced, or restored from a backup) answered behind the "
           "endpoints; every prefix was resynced.");
    text_append(&t, "resolver_etcd_cluster_changes_total %" PRIu64 "\n",
                resolver_etcd_cluster_changes(resolver_engine_etcd(e)));
    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    return t.buf;
}
