/*
 * metrics_text.c - see metrics_text.h.  Everything is read through the
 * engine's public introspection (resolver_engine_services, _instances,
 * _status, _ready) and the daemon's own listener counters.  The text is built in one growing
 * buffer; an allocation failure anywhere makes the whole answer NULL rather than a truncated
 * exposition.  Every family gets its HELP and TYPE lines even when it has no sample, so that
 * `promtool check metrics` has nothing to say about the text whatever the daemon's state.
 */
#include "autoconfig.h"
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "accept_backoff.h"
#include "metrics_text.h"
#include "procinfo.h"

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
 * quote and newline escaped.  Service names and addresses cannot hold them
 * (see check_service_name, registry.c); this keeps the exposition
 * well-formed regardless.  Room for a service name or an address. */
#define LABEL_MAX 300 /* RESOLVER_ADDRESS_MAX, and more than a service name's 255 bytes */
typedef struct {
    char text[2 * LABEL_MAX + 1];
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

/* A sample value: integers as integers (counters), the rest with the 15
 * significant digits a double holds (a timestamp needs 13). */
static void value(text_buf *t, double v)
{
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        text_append(t, " %.0f\n", v);
    else
        text_append(t, " %.15g\n", v);
}

/* One service as the exposition sees it: its label and at most
 * RSV_METRICS_INSTANCES_MAX of its instances (the first by address). */
typedef struct {
    const resolver_service_info *svc;
    label_value name;
    resolver_instance_info *inst;
    size_t n_inst, shown;
    label_value *addr; /* [shown] */
} svc_view;

typedef struct {
    resolver_service_info *services;
    svc_view *v;
    size_t n;
    int failed;
} view_set;

static void views_free(view_set *vs)
{
    for (size_t i = 0; vs->v && i < vs->n; i++) {
        resolver_instance_info_free(vs->v[i].inst, vs->v[i].n_inst);
        free(vs->v[i].addr);
    }
    free(vs->v);
    resolver_service_info_free(vs->services, vs->n);
}

static int view_fill(svc_view *v, resolver_engine *e, const resolver_service_info *svc)
{
    v->svc = svc;
    escape_label(&v->name, svc->name);
    if (resolver_engine_instances(e, svc->name, &v->inst, &v->n_inst) != 0)
        return -1;
    v->shown = v->n_inst < RSV_METRICS_INSTANCES_MAX ? v->n_inst : RSV_METRICS_INSTANCES_MAX;
    v->addr = calloc(v->shown + 1, sizeof(*v->addr));
    if (!v->addr)
        return -1;
    for (size_t j = 0; j < v->shown; j++)
        escape_label(&v->addr[j], v->inst[j].address);
    return 0;
}

static void views_build(view_set *vs, resolver_engine *e)
{
    if (resolver_engine_services(e, &vs->services, &vs->n) != 0) {
        vs->n = 0;
        vs->failed = 1;
        return;
    }
    vs->v = calloc(vs->n + 1, sizeof(*vs->v));
    if (!vs->v) {
        vs->failed = 1;
        return;
    }
    for (size_t i = 0; i < vs->n; i++)
        if (view_fill(&vs->v[i], e, &vs->services[i]) != 0)
            vs->failed = 1;
}

/* ---- per service ---- */

typedef double (*service_get)(const resolver_service_info *svc);

static double svc_picks(const resolver_service_info *s)
{
    return (double)s->picks;
}
static double svc_pick_failures(const resolver_service_info *s)
{
    return (double)s->pick_failures;
}
static double svc_decode_errors(const resolver_service_info *s)
{
    return (double)s->decode_errors;
}
static double svc_ejections(const resolver_service_info *s)
{
    return (double)s->ejections;
}
static double svc_stale(const resolver_service_info *s)
{
    return (double)s->states[RESOLVER_STATE_STALE];
}
static double svc_self_preservation_active(const resolver_service_info *s)
{
    return s->states[RESOLVER_STATE_STALE] > 0;
}
static double svc_self_preservation_events(const resolver_service_info *s)
{
    return (double)s->self_preservation_events;
}
static double svc_synced(const resolver_service_info *s)
{
    return s->synced;
}
static double svc_resumes(const resolver_service_info *s)
{
    return (double)s->watch_resumes;
}
static double svc_silence_resets(const resolver_service_info *s)
{
    return (double)s->watch_silence_resets;
}
static double svc_resyncs(const resolver_service_info *s)
{
    return (double)s->watch_resyncs;
}

static const struct {
    const char *name, *type, *help;
    service_get get;
} service_families[] = {
    {"resolver_picks_total", "counter", "Picks answered with an instance.", svc_picks},
    {"resolver_pick_failures_total", "counter",
     "Picks answered with an error (each pick counted once, by its outcome).", svc_pick_failures},
    {"resolver_decode_errors_total", "counter",
     "etcd values that could not be decoded into an instance.", svc_decode_errors},
    {"resolver_ejections_total", "counter", "Instances ejected by outlier detection.",
     svc_ejections},
    {"resolver_instances_stale", "gauge",
     "Instances etcd removed that self-preservation keeps serving (STALE).", svc_stale},
    {"resolver_self_preservation_active", "gauge",
     "1 while self-preservation keeps at least one STALE instance of the service.",
     svc_self_preservation_active},
    {"resolver_self_preservation_total", "counter",
     "Times etcd deletions would have taken the service below self_preservation_percent of its "
     "READY instances of the last 10 s, and removed instances were kept as STALE.",
     svc_self_preservation_events},
    {"resolver_service_synced", "gauge",
     "1 once the first listing of the service's prefix came from etcd.", svc_synced},
    {"resolver_watch_resumes_total", "counter",
     "Times the watch of the service's prefix was started again (from the last revision seen) "
     "after its stream ended or an attempt failed.",
     svc_resumes},
    {"resolver_watch_silence_resets_total", "counter",
     "Watch streams abandoned because they stayed silent while the prefix changed in etcd.",
     svc_silence_resets},
    {"resolver_watch_resyncs_total", "counter",
     "Fresh ranges of the prefix after a gap a resumed watch cannot fill (compaction, another "
     "cluster).",
     svc_resyncs},
};

static void per_service(text_buf *t, const view_set *vs)
{
    for (size_t f = 0; f < sizeof(service_families) / sizeof(service_families[0]); f++) {
        family(t, service_families[f].name, service_families[f].type, service_families[f].help);
        for (size_t i = 0; i < vs->n; i++) {
            text_append(t, "%s{service=\"%s\"}", service_families[f].name, vs->v[i].name.text);
            value(t, service_families[f].get(vs->v[i].svc));
        }
    }
    family(t, "resolver_instances", "gauge", "Known instances by connection state.");
    /* DRAINING: the instances draining whatever their connection's state;
     * the others by that state (a STALE one counts as READY: it serves). */
    static const resolver_state counted[5] = {
        RESOLVER_STATE_IDLE, RESOLVER_STATE_CONNECTING, RESOLVER_STATE_READY,
        RESOLVER_STATE_TRANSIENT_FAILURE, RESOLVER_STATE_DRAINING};
    for (size_t i = 0; i < vs->n; i++)
        for (int s = 0; s < 5; s++)
            text_append(t, "resolver_instances{service=\"%s\",state=\"%s\"} %zu\n",
                        vs->v[i].name.text, resolver_state_name(counted[s]),
                        vs->v[i].svc->states[counted[s]]);
    char help[160];
    snprintf(help, sizeof(help),
             "Instances left out of the resolver_instance_* series (at most %d per service are "
             "listed, the first by address).",
             RSV_METRICS_INSTANCES_MAX);
    family(t, "resolver_instance_series_omitted", "gauge", help);
    for (size_t i = 0; i < vs->n; i++)
        text_append(t, "resolver_instance_series_omitted{service=\"%s\"} %zu\n", vs->v[i].name.text,
                    vs->v[i].n_inst - vs->v[i].shown);
}

static void latency_histograms(text_buf *t, const view_set *vs)
{
    const char *name = "resolver_done_latency_seconds";
    family(t, name, "histogram",
           "Pick-to-done durations clients reported (done latency_ms), by service.");
    for (size_t i = 0; i < vs->n; i++) {
        const resolver_service_info *h = vs->v[i].svc;
        const char *svc = vs->v[i].name.text;
        for (size_t b = 0; b < RESOLVER_LATENCY_BUCKETS; b++)
            text_append(t, "%s_bucket{service=\"%s\",le=\"%g\"} %" PRIu64 "\n", name, svc,
                        (double)h->latency_bounds_us[b] / 1e6, h->latency_le[b]);
        text_append(t, "%s_bucket{service=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name, svc,
                    h->latency_count);
        text_append(t, "%s_sum{service=\"%s\"} %.3f\n", name, svc,
                    (double)h->latency_sum_ms / 1000.0);
        text_append(t, "%s_count{service=\"%s\"} %" PRIu64 "\n", name, svc, h->latency_count);
    }
}

/* ---- per instance ---- */

static double wall_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef double (*instance_get)(const resolver_instance_info *inst, double wall_now_s);

static double inst_outstanding(const resolver_instance_info *i, double now)
{
    return (double)i->outstanding;
}
static double inst_picks(const resolver_instance_info *i, double now)
{
    return (double)i->picks;
}
static double inst_failures(const resolver_instance_info *i, double now)
{
    return (double)i->failures;
}
static double inst_reconnects(const resolver_instance_info *i, double now)
{
    return i->connected ? (double)i->reconnects : NAN;
}
/* In seconds from the microseconds the connection measured (rtt_ms is
 * them / 1000, so llround gives them back exactly). */
static double inst_rtt(const resolver_instance_info *i, double now)
{
    return i->connected && i->rtt_ms >= 0 ? (double)llround(i->rtt_ms * 1000.0) / 1e6 : NAN;
}
static double inst_ejected(const resolver_instance_info *i, double now)
{
    return i->ejected;
}
static double inst_ejections(const resolver_instance_info *i, double now)
{
    return i->times_ejected;
}
static double inst_weight(const resolver_instance_info *i, double now)
{
    return i->weight;
}
static double inst_last_change(const resolver_instance_info *i, double now)
{
    return now - i->since_change_s;
}

/* A NAN from a getter leaves the sample out (not known, e.g. no PING
 * answered yet). */
static const struct {
    const char *name, *type, *help;
    instance_get get;
} instance_families[] = {
    {"resolver_instance_outstanding", "gauge", "Picks of the instance not yet reported done.",
     inst_outstanding},
    {"resolver_instance_picks_total", "counter", "Picks answered with the instance.", inst_picks},
    {"resolver_instance_failures_total", "counter",
     "Picks of the instance reported done as failed.", inst_failures},
    {"resolver_instance_reconnects_total", "counter",
     "Times the instance's connection went back to CONNECTING after the first attempt.",
     inst_reconnects},
    {"resolver_instance_ping_rtt_seconds", "gauge",
     "Round-trip time of the last HTTP/2 PING the instance answered.", inst_rtt},
    {"resolver_instance_ejected", "gauge", "1 while outlier detection has the instance ejected.",
     inst_ejected},
    {"resolver_instance_ejections_total", "counter",
     "Times outlier detection ejected the instance.", inst_ejections},
    {"resolver_instance_weight", "gauge", "The instance's weight from etcd.", inst_weight},
    {"resolver_instance_last_change_timestamp_seconds", "gauge",
     "When the instance last changed state (or was ejected, drained, added), in seconds since the "
     "Unix epoch.",
     inst_last_change},
};

static void per_instance(text_buf *t, const view_set *vs, double now)
{
    /* Every state an instance shows but SHUTDOWN (an instance gone). */
    static const resolver_state shown[6] = {
        RESOLVER_STATE_IDLE,     RESOLVER_STATE_CONNECTING,
        RESOLVER_STATE_READY,    RESOLVER_STATE_TRANSIENT_FAILURE,
        RESOLVER_STATE_DRAINING, RESOLVER_STATE_STALE};
    family(t, "resolver_instance_state", "gauge",
           "1 for the instance's current state, 0 for the others.");
    for (size_t i = 0; i < vs->n; i++)
        for (size_t j = 0; j < vs->v[i].shown; j++) {
            resolver_state cur = vs->v[i].inst[j].state;
            for (int s = 0; s < 6; s++)
                text_append(t,
                            "resolver_instance_state{service=\"%s\",address=\"%s\",state=\"%s\"} "
                            "%d\n",
                            vs->v[i].name.text, vs->v[i].addr[j].text,
                            resolver_state_name(shown[s]), cur == shown[s]);
        }
    for (size_t f = 0; f < sizeof(instance_families) / sizeof(instance_families[0]); f++) {
        family(t, instance_families[f].name, instance_families[f].type, instance_families[f].help);
        for (size_t i = 0; i < vs->n; i++)
            for (size_t j = 0; j < vs->v[i].shown; j++) {
                double v = instance_families[f].get(&vs->v[i].inst[j], now);
                if (isnan(v))
                    continue;
                text_append(t, "%s{service=\"%s\",address=\"%s\"}", instance_families[f].name,
                            vs->v[i].name.text, vs->v[i].addr[j].text);
                value(t, v);
            }
    }
}

/* ---- the engine, etcd, the process ---- */

static void engine_families(text_buf *t, resolver_engine *e)
{
    resolver_status *st = NULL;
    if (resolver_engine_status(e, &st) != 0) {
        t->failed = 1;
        return;
    }
    family(t, "resolver_tickets_outstanding", "gauge", "Tickets picked and not yet done.");
    text_append(t, "resolver_tickets_outstanding %zu\n", st->tickets_outstanding);
    family(t, "resolver_tickets_leaked_total", "counter",
           "Tickets released by ticket_timeout_ms because nobody reported them done.");
    text_append(t, "resolver_tickets_leaked_total %" PRIu64 "\n", st->tickets_leaked);
    family(t, "resolver_accept_backoffs_total", "counter",
           "Times a listener paused because accept failed (EMFILE, ENFILE, ENOBUFS, ENOMEM).");
    for (int l = 0; l < RSV_LISTENER_COUNT; l++)
        text_append(t, "resolver_accept_backoffs_total{listener=\"%s\"} %" PRIu64 "\n",
                    rsv_listener_name((rsv_listener)l), rsv_accept_backoffs((rsv_listener)l));
    family(t, "resolver_etcd_revision", "gauge", "The newest etcd revision seen.");
    text_append(t, "resolver_etcd_revision %" PRId64 "\n", st->revision);
    family(t, "resolver_etcd_last_heard_timestamp_seconds", "gauge",
           "When etcd last answered, in seconds since the Unix epoch (absent: never).");
    if (st->etcd_last_heard_s >= 0)
        text_append(t, "resolver_etcd_last_heard_timestamp_seconds %.3f\n",
                    wall_now_s() - st->etcd_last_heard_s);
    family(t, "resolver_etcd_failovers_total", "counter",
           "Times the etcd endpoint in use was given up for the next one.");
    text_append(t, "resolver_etcd_failovers_total %" PRIu64 "\n", st->etcd_failovers);
    family(t, "resolver_etcd_authentications_total", "counter",
           "Tokens fetched from etcd (auth configured).");
    text_append(t, "resolver_etcd_authentications_total %" PRIu64 "\n", st->etcd_authentications);
    family(t, "resolver_etcd_cluster_changes_total", "counter",
           "Times another etcd cluster (replaced, or restored from a backup) answered behind the "
           "endpoints; every prefix was resynced.");
    text_append(t, "resolver_etcd_cluster_changes_total %" PRIu64 "\n", st->etcd_cluster_changes);
    family(t, "resolver_etcd_connections", "gauge",
           "Open TCP connections to etcd (over https one HTTP/2 connection per member carries "
           "every request; over http each watch holds its own).");
    text_append(t, "resolver_etcd_connections %zu\n", st->etcd_connections);
    family(t, "resolver_etcd_streams", "gauge",
           "Requests running on those connections (HTTP/2 streams over https), by kind.");
    text_append(t, "resolver_etcd_streams{kind=\"watch\"} %zu\n", st->etcd_watch_streams);
    text_append(t, "resolver_etcd_streams{kind=\"other\"} %zu\n",
                st->etcd_streams - st->etcd_watch_streams);
    resolver_status_free(st);
    char why[512];
    int ready = resolver_engine_ready(e, why, sizeof(why));
    family(t, "resolver_ready", "gauge", "1 when /ready answers 200 (see resolverd(8)).");
    text_append(t, "resolver_ready %d\n", ready);
    family(t, "resolver_build_info", "gauge", "The version of the running resolverd, always 1.");
    text_append(t, "resolver_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
}

/* What Prometheus' client libraries export as process_*; a figure that
 * cannot be read is left out. */
static void process_families(text_buf *t)
{
    rsv_procinfo p;
    rsv_procinfo_read(&p);
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } figures[] = {
        {"process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.",
         offsetof(rsv_procinfo, cpu_seconds)},
        {"process_open_fds", "gauge", "Number of open file descriptors.",
         offsetof(rsv_procinfo, open_fds)},
        {"process_max_fds", "gauge", "Maximum number of open file descriptors.",
         offsetof(rsv_procinfo, max_fds)},
        {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
         offsetof(rsv_procinfo, resident_bytes)},
        {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
         offsetof(rsv_procinfo, virtual_bytes)},
        {"process_start_time_seconds", "gauge",
         "Start time of the process since unix epoch in seconds.",
         offsetof(rsv_procinfo, start_time_s)},
    };
    for (size_t i = 0; i < sizeof(figures) / sizeof(figures[0]); i++) {
        double v = *(const double *)((const char *)&p + figures[i].offset);
        family(t, figures[i].name, figures[i].type, figures[i].help);
        if (v < 0)
            continue;
        if (strcmp(figures[i].name, "process_cpu_seconds_total") == 0 ||
            strcmp(figures[i].name, "process_start_time_seconds") == 0)
            text_append(t, "%s %.2f\n", figures[i].name, v);
        else
            text_append(t, "%s %.0f\n", figures[i].name, v);
    }
}

char *rsv_metrics_text(resolver_engine *e)
{
    text_buf t = {0};
    view_set vs = {0};
    views_build(&vs, e);
    t.failed = vs.failed;
    per_service(&t, &vs);
    latency_histograms(&t, &vs);
    per_instance(&t, &vs, wall_now_s());
    views_free(&vs);
    engine_families(&t, e);
    process_families(&t);
    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    return t.buf;
}
