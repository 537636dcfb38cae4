/*
 * resolverctl - command-line client of resolverd.  See resolverctl(1).
 * Exit codes: 0 ok, 1 usage, 2 cannot reach the daemon, 3 no instance or
 * not found, 4 any other error the daemon reports.
 */
#include "autoconfig.h"
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <jansson.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "resolver.h"

enum { EXIT_OK = 0, EXIT_USAGE = 1, EXIT_UNREACHABLE = 2, EXIT_NOT_FOUND = 3, EXIT_ERROR = 4 };

typedef struct {
    const char *socket; /* as resolved: -s, $RESOLVER_SOCKET or the default */
    int json;
    int timeout_ms;
    const char *key;
    int fail;
    int hold;
    const char *latency;
    /* register */
    const char *format, *ttl_ms, *zone, *weight, *etcd_key, *metadata, *health_check;
} ctl_options;

typedef struct {
    const char *name;
    int min_args, max_args;
    const char *args;
    const char *help;
    int (*run)(resolver_client *c, const ctl_options *o, char **args);
} ctl_verb;

static const ctl_verb *find_ctl_verb(const char *name);

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: resolverctl [-s SOCKET] [--json] [--timeout MS] VERB [ARGS]\n"
            "\n"
            "Verbs:\n"
            "  pick SERVICE [--key K] [--hold]  print host:port of an instance (exit 3: none);\n"
            "                             --hold keeps the pick and prints host:port TICKET\n"
            "  done TICKET [--fail] [--latency-ms N]  report the outcome of a held pick\n"
            "  services                   one row per service\n"
            "  instances SERVICE          one row per instance\n"
            "  status                     version, config, etcd endpoint, revision, counts\n"
            "  watch [SERVICE]            a timestamped line per change, until interrupted\n"
            "  drain SERVICE ADDRESS      stop new picks of an instance (admin)\n"
            "  undrain SERVICE ADDRESS    undo drain (admin)\n"
            "  register SERVICE ADDRESS [--format F] [--ttl-ms N] [--zone Z] [--weight W]\n"
            "           [--etcd-key K] [--metadata JSON] [--health-check GRPC_SERVICE]\n"
            "                             publish a local instance in etcd (admin; kept\n"
            "                             across restarts only with cache_file)\n"
            "  deregister SERVICE ADDRESS delete its key, then LEAVING for the grace (admin)\n"
            "  registrations              one row per registered instance\n"
            "  metrics                    Prometheus text exposition\n"
            "  reload                     reload resolverd's configuration (admin)\n"
            "  ping                       check that resolverd answers\n"
            "\n"
            "Options:\n"
            "  -s, --socket PATH  daemon socket (default $RESOLVER_SOCKET or "
            "/run/resolverd/resolverd.sock)\n"
            "  -j, --json         print one JSON document (read verbs)\n"
            "  -t, --timeout MS   wait at most MS for each answer (default 5000)\n"
            "  -h, --help         this text; `resolverctl VERB --help` for one verb\n"
            "  -V, --version      print the version\n"
            "\n"
            "Exit codes: 0 ok, 1 usage, 2 cannot reach the daemon, 3 no instance or not found,\n"
            "4 other errors.\n");
}

static int exit_code_for(int err)
{
    switch (err) {
    case RESOLVER_ERR_NO_INSTANCE:
    case RESOLVER_ERR_NONE_READY:
    case RESOLVER_ERR_NOT_FOUND:
        return EXIT_NOT_FOUND;
    case RESOLVER_ERR_INVALID:
        return EXIT_USAGE;
    case RESOLVER_ERR_CONNECT:
    case RESOLVER_ERR_CLOSED:
    case RESOLVER_ERR_TIMEOUT:
    case RESOLVER_ERR_IO:
        return EXIT_UNREACHABLE;
    default:
        return EXIT_ERROR;
    }
}

static const char *plural(long long n)
{
    return n == 1 ? "" : "s";
}

/* ---- why the daemon cannot be reached ---- */

static const char *file_kind(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISREG(m))
        return "a regular file";
    if (S_ISFIFO(m))
        return "a FIFO";
    return "not a socket";
}

/* Permission denied on the socket itself: say who may connect. */
static void explain_denied(const char *path, char *why, size_t n)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, n, "permission denied");
        return;
    }
    struct group *g = getgrgid(st.st_gid);
    struct passwd *pw = getpwuid(st.st_uid);
    char group[64], owner[64];
    if (g)
        snprintf(group, sizeof(group), "%s", g->gr_name);
    else
        snprintf(group, sizeof(group), "%u", (unsigned)st.st_gid);
    if (pw)
        snprintf(owner, sizeof(owner), "%s", pw->pw_name);
    else
        snprintf(owner, sizeof(owner), "%u", (unsigned)st.st_uid);
    unsigned mode = (unsigned)st.st_mode & 0777;
    if (mode & 020)
        snprintf(why, n,
                 "permission denied: the socket is %s:%s mode %04o; be in group \"%s\" "
                 "(socket.group), then log in again, or run as root",
                 owner, group, mode, group);
    else
        snprintf(why, n,
                 "permission denied: the socket is %s:%s mode %04o, so only %s and root may "
                 "connect (widen socket.mode and set socket.group)",
                 owner, group, mode, owner);
}

/* Finds out why connecting to path failed, in words an operator can act
 * on: the client library only says "cannot connect". */
static void explain_unreachable(const char *path, char *why, size_t n)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir)
            *slash = '\0';
        else
            snprintf(dir, sizeof(dir), "%s", slash ? "/" : ".");
        if (e == ENOENT && stat(dir, &st) != 0)
            snprintf(why, n,
                     "no such file or directory (%.200s does not exist): resolverd is not running, "
                     "or serves another path (-s PATH or $RESOLVER_SOCKET)",
                     dir);
        else if (e == ENOENT)
            snprintf(why, n,
                     "no such file: resolverd is not running, or serves another path "
                     "(-s PATH or $RESOLVER_SOCKET)");
        else if (e == EACCES)
            snprintf(why, n, "permission denied: cannot enter the directory %.200s", dir);
        else
            snprintf(why, n, "%s", strerror(e));
        return;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(why, n, "not a socket (%s)", file_kind(st.st_mode));
        return;
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = fd < 0 ? -1 : connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (rc == 0)
        snprintf(why, n, "the connection failed, and a second attempt succeeded: try again");
    else if (e == EACCES || e == EPERM)
        explain_denied(path, why, n);
    else if (e == ECONNREFUSED)
        snprintf(why, n,
                 "connection refused: a stale socket, nothing listens on it (resolverd stopped "
                 "without removing it, or is not running)");
    else if (e == EAGAIN)
        snprintf(why, n, "resolverd accepts no more connections (its backlog is full: busy?)");
    else
        snprintf(why, n, "%s", strerror(e));
}

static const char *socket_path; /* for messages: the path in use */
static int request_timeout_ms;

/* A request's words, for resolver_client_request: the verb, its arguments
 * and NAME=VALUE options (escaped by the library). */
enum { REQ_WORDS_MAX = 16 };
typedef struct {
    const char *argv[REQ_WORDS_MAX + 1];
    char *owned[REQ_WORDS_MAX];
    int argc, nowned;
} req_words;

static void word(req_words *w, const char *s)
{
    if (w->argc < REQ_WORDS_MAX)
        w->argv[w->argc++] = s;
}

/* Adds NAME=VALUE when value is set. */
static void option(req_words *w, const char *name, const char *value)
{
    if (!value || w->nowned == REQ_WORDS_MAX)
        return;
    size_t n = strlen(name) + strlen(value) + 2;
    char *s = malloc(n);
    if (!s) {
        fprintf(stderr, "resolverctl: out of memory\n");
        exit(EXIT_ERROR);
    }
    snprintf(s, n, "%s=%s", name, value);
    w->owned[w->nowned++] = s;
    word(w, s);
}

static void words_free(req_words *w)
{
    for (int i = 0; i < w->nowned; i++)
        free(w->owned[i]);
}

/* Sends a request and returns the parsed JSON payload of an OK reply; on
 * an ERR reply prints the daemon's message and sets *exit_code. */
static json_t *request(resolver_client *c, const char *const *argv, int *exit_code)
{
    int answer = 0;
    char *text = NULL;
    int rc = resolver_client_request(c, argv, &answer, &text);
    if (rc == RESOLVER_ERR_INVALID) {
        const char *longest = argv[0];
        for (size_t i = 1; argv[i]; i++)
            if (strlen(argv[i]) > strlen(longest))
                longest = argv[i];
        fprintf(stderr, "resolverctl: argument too long: %.40s...\n", longest);
        *exit_code = EXIT_USAGE;
        return NULL;
    }
    if (rc != 0) {
        char why[512];
        if (rc == RESOLVER_ERR_TIMEOUT)
            snprintf(why, sizeof(why),
                     "timeout: no answer within %d ms (resolverd is stopped or overloaded; "
                     "see --timeout)",
                     request_timeout_ms);
        else if (rc == RESOLVER_ERR_CLOSED)
            snprintf(why, sizeof(why), "it closed the connection (shutting down?)");
        else if (rc == RESOLVER_ERR_CONNECT)
            explain_unreachable(socket_path, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "%s", resolver_strerror(rc));
        fprintf(stderr, "resolverctl: cannot reach resolverd at %s: %s\n", socket_path, why);
        *exit_code = EXIT_UNREACHABLE;
        return NULL;
    }
    if (answer != 0) {
        fprintf(stderr, "resolverctl: %s\n", resolver_client_last_error(c));
        *exit_code = exit_code_for(answer);
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    free(text);
    if (!j) {
        fprintf(stderr, "resolverctl: bad reply from resolverd: %s\n", jerr.text);
        *exit_code = EXIT_ERROR;
    }
    return j;
}

/* request() of a verb alone. */
static json_t *request_verb(resolver_client *c, const char *verb, int *exit_code)
{
    const char *argv[] = {verb, NULL};
    return request(c, argv, exit_code);
}

/* Reals as the daemon writes them: 15 significant digits, so that every
 * double it computes prints as its short decimal (12.28, not
 * 12.279999999999999). */
#define JSON_FLAGS (JSON_ENCODE_ANY | JSON_REAL_PRECISION(15))

static void print_json(json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_FLAGS);
    if (text)
        printf("%s\n", text);
    free(text);
}

static const char *json_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static long long json_int(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* ---- tables: columns as wide as their widest cell ---- */

enum { TABLE_COLS_MAX = 12 };

typedef struct {
    size_t ncols;
    const char *align; /* 'l' or 'r' per column */
    char **cells;      /* row-major, the header first */
    size_t n, cap;
} table;

static char *cellf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *cellf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    if (!s) {
        fprintf(stderr, "resolverctl: out of memory\n");
        exit(EXIT_ERROR);
    }
    return s;
}

/* Adds one row of t->ncols cells (const char *), copied. */
static void table_row(table *t, ...)
{
    if (t->n + t->ncols > t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64 * t->ncols;
        t->cells = realloc(t->cells, t->cap * sizeof(*t->cells));
        if (!t->cells) {
            fprintf(stderr, "resolverctl: out of memory\n");
            exit(EXIT_ERROR);
        }
    }
    va_list ap;
    va_start(ap, t);
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[t->n++] = cellf("%s", va_arg(ap, const char *));
    va_end(ap);
}

/* Display width: a UTF-8 sequence counts as one column. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* Prints and frees the table; the last column is not padded. */
static void table_print(table *t)
{
    size_t width[TABLE_COLS_MAX] = {0};
    for (size_t i = 0; i < t->n; i++) {
        size_t w = text_width(t->cells[i]);
        if (w > width[i % t->ncols])
            width[i % t->ncols] = w;
    }
    for (size_t i = 0; i < t->n; i++) {
        size_t col = i % t->ncols, pad = width[col] - text_width(t->cells[i]);
        int last = col == t->ncols - 1;
        if (t->align[col] == 'r')
            printf("%*s%s", (int)pad, "", t->cells[i]);
        else
            printf("%s%*s", t->cells[i], last ? 0 : (int)pad, "");
        fputs(last ? "\n" : "  ", stdout);
        free(t->cells[i]);
    }
    free(t->cells);
}

/* "2h 3m 4s", "1.5s": a duration a person reads at a glance. */
static void format_duration(double s, char *buf, size_t n)
{
    if (s < 60) {
        snprintf(buf, n, "%.1fs", s);
        return;
    }
    long long t = (long long)s;
    if (t < 3600)
        snprintf(buf, n, "%lldm %llds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(buf, n, "%lldh %lldm %llds", t / 3600, t % 3600 / 60, t % 60);
    else
        snprintf(buf, n, "%lldd %lldh %lldm", t / 86400, t % 86400 / 3600, t % 3600 / 60);
}

/* ---- verbs ---- */

static int run_pick(resolver_client *c, const ctl_options *o, char **args)
{
    req_words w = {0};
    word(&w, "PICK");
    word(&w, args[0]);
    option(&w, "key", o->key);
    /* A held pick must outlive this process: detach its ticket from the
     * connection, so `resolverctl done` can release it later.  Otherwise the
     * ticket belongs to the connection, and closing it releases the pick. */
    if (o->hold)
        word(&w, "detach=1");
    int code = EXIT_OK;
    json_t *j = request(c, w.argv, &code);
    words_free(&w);
    if (!j)
        return code;
    if (!o->hold)
        json_object_del(j, "ticket"); /* released when the connection closes */
    if (o->json)
        print_json(j);
    else if (o->hold)
        printf("%s %lld\n", json_str(j, "address"), json_int(j, "ticket"));
    else
        printf("%s\n", json_str(j, "address"));
    json_decref(j);
    return EXIT_OK;
}

static int run_done(resolver_client *c, const ctl_options *o, char **args)
{
    req_words w = {0};
    word(&w, "DONE");
    word(&w, args[0]);
    if (o->fail)
        word(&w, "fail=1");
    option(&w, "latency_ms", o->latency);
    int code = EXIT_OK;
    json_t *j = request(c, w.argv, &code);
    words_free(&w);
    if (j && o->json)
        print_json(j);
    json_decref(j);
    return code;
}

/* request() for a read verb shown as a table: with --json the reply is
 * printed here and NULL returned with *exit_code EXIT_OK; otherwise the
 * payload is returned for the caller's table. */
static json_t *request_for_table(resolver_client *c, const ctl_options *o, const char *const *argv,
                                 int *exit_code)
{
    json_t *j = request(c, argv, exit_code);
    if (j && o->json) {
        print_json(j);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A service with no instance has no aggregate state of its own (the
 * engine's says TRANSIENT_FAILURE): say what it is. */
static const char *service_state(json_t *s)
{
    if (json_int(s, "instances") > 0)
        return json_str(s, "state");
    return json_is_false(json_object_get(s, "synced")) ? "discovering" : "no instances";
}

static int run_services(resolver_client *c, const ctl_options *o, char **args)
{
    int code = EXIT_OK;
    json_t *j = request_for_table(c, o, (const char *[]){"SERVICES", NULL}, &code);
    if (!j)
        return code;
    table t = {.ncols = 9, .align = "lllrrrrrr"};
    table_row(&t, "SERVICE", "POLICY", "STATE", "TOTAL", "READY", "CONN", "FAIL", "DRAIN",
              "REVISION");
    size_t i;
    json_t *s;
    json_array_foreach(j, i, s)
    {
        json_t *st = json_object_get(s, "states");
        char *n[6] = {
            cellf("%lld", json_int(s, "instances")),
            cellf("%lld", json_int(st, "READY")),
            cellf("%lld", json_int(st, "CONNECTING") + json_int(st, "IDLE")),
            cellf("%lld", json_int(st, "TRANSIENT_FAILURE")),
            cellf("%lld", json_int(st, "DRAINING")),
            cellf("%lld", json_int(s, "revision")),
        };
        table_row(&t, json_str(s, "name"), json_str(s, "policy"), service_state(s), n[0], n[1],
                  n[2], n[3], n[4], n[5]);
        for (size_t k = 0; k < 6; k++)
            free(n[k]);
    }
    table_print(&t);
    if (i == 0)
        printf("(no services: none configured, none picked yet)\n");
    json_decref(j);
    return EXIT_OK;
}

static char *rtt_cell(json_t *inst)
{
    json_t *rtt = json_object_get(inst, "rtt_ms");
    return json_is_number(rtt) ? cellf("%.2fms", json_number_value(rtt)) : cellf("-");
}

static int run_instances(resolver_client *c, const ctl_options *o, char **args)
{
    const char *argv[] = {"INSTANCES", args[0], NULL};
    int code = EXIT_OK;
    json_t *j = request_for_table(c, o, argv, &code);
    if (!j)
        return code;
    table t = {.ncols = 9, .align = "lllrrrrrl"};
    table_row(&t, "ADDRESS", "STATE", "HEALTH", "WEIGHT", "OUTSTANDING", "RTT", "RECONNECTS",
              "LAST-CHANGE", "LAST-ERROR");
    size_t i;
    json_t *inst;
    json_array_foreach(j, i, inst)
    {
        char ago[32];
        format_duration(json_number_value(json_object_get(inst, "since_change_s")), ago,
                        sizeof(ago));
        char *n[5] = {
            cellf("%lld", json_int(inst, "weight")),
            cellf("%lld", json_int(inst, "outstanding")),
            rtt_cell(inst),
            cellf("%lld", json_int(inst, "reconnects")),
            cellf("%s ago", ago),
        };
        /* "-": health checking off, or no answer yet on this connection. */
        const char *health = json_str(inst, "health");
        const char *err = json_str(inst, "last_error");
        table_row(&t, json_str(inst, "address"), json_str(inst, "state"), *health ? health : "-",
                  n[0], n[1], n[2], n[3], n[4], *err ? err : "-");
        for (size_t k = 0; k < 5; k++)
            free(n[k]);
    }
    table_print(&t);
    if (i == 0)
        printf("(no instances of %s)\n", args[0]);
    json_decref(j);
    return EXIT_OK;
}

static void print_reload(json_t *j)
{
    json_t *r = json_object_get(j, "last_reload");
    if (!json_is_object(r)) {
        printf("last reload:       never (running the configuration read at start)\n");
        return;
    }
    char ago[32];
    format_duration(json_number_value(json_object_get(r, "ago_s")), ago, sizeof(ago));
    if (json_is_true(json_object_get(r, "ok")))
        printf("last reload:       ok, %s ago (%s)\n", ago, json_str(r, "time"));
    else
        printf("last reload:       FAILED %s ago (%s), still running the previous "
               "configuration: %s\n",
               ago, json_str(r, "time"), json_str(r, "error"));
}

/* Host names of instances (lib/dns.c); a daemon without the counters
 * prints nothing. */
static void print_dns(json_t *d)
{
    if (!json_is_object(d))
        return;
    long long q = json_int(d, "queries"), f = json_int(d, "failures");
    printf("dns:               %lld quer%s (%lld failed), %lld answered from the cache, "
           "%lld joined a query in flight\n",
           q, q == 1 ? "y" : "ies", f, json_int(d, "cache_hits"), json_int(d, "joined"));
}

static void print_status(json_t *j)
{
    json_t *heard = json_object_get(j, "etcd_last_heard_s");
    char heard_text[48] = "never", uptime[32];
    if (json_is_number(heard)) {
        format_duration(json_number_value(heard), heard_text, sizeof(heard_text) - 4);
        strcat(heard_text, " ago");
    }
    format_duration(json_number_value(json_object_get(j, "uptime_s")), uptime, sizeof(uptime));
    const char *cfg = json_str(j, "config_file");
    printf("resolverd:         %s, pid %lld\n",
           *json_str(j, "version") ? json_str(j, "version") : "?", json_int(j, "pid"));
    printf("config:            %s\n", *cfg ? cfg : "(none: defaults and flags)");
    print_reload(j);
    long long eps = json_int(j, "etcd_endpoints"), fo = json_int(j, "etcd_failovers");
    long long cc = json_int(j, "etcd_cluster_changes");
    printf("etcd endpoint:     %s (%lld configured, %lld failover%s, %lld cluster change%s)\n",
           json_str(j, "etcd_endpoint"), eps, fo, plural(fo), cc, plural(cc));
    long long conns = json_int(j, "etcd_connections"), streams = json_int(j, "etcd_streams");
    printf("etcd connections:  %lld, %s, %lld stream%s (%lld watch%s)", conns,
           json_is_true(json_object_get(j, "etcd_http2")) ? "HTTP/2" : "HTTP/1.1", streams,
           plural(streams), json_int(j, "etcd_watch_streams"),
           json_int(j, "etcd_watch_streams") == 1 ? "" : "es");
    if (conns > 0)
        printf(", %.1f per connection", (double)streams / (double)conns);
    printf("\n");
    printf("etcd revision:     %lld\n", json_int(j, "revision"));
    printf("etcd last heard:   %s\n", heard_text);
    printf("uptime:            %s\n", uptime);
    printf("services:          %lld (%lld on demand)%s\n", json_int(j, "services"),
           json_int(j, "on_demand_services"),
           json_int(j, "stale_services") ? " STALE: serving the cache_file until etcd answers"
                                         : "");
    printf("instances:         %lld (%lld ready)\n", json_int(j, "instances"),
           json_int(j, "ready"));
    long long fails = json_int(j, "pick_failures");
    printf("picks:             %lld (%lld failed)\n", json_int(j, "picks"), fails);
    printf("tickets:           %lld outstanding, %lld leaked\n", json_int(j, "tickets_outstanding"),
           json_int(j, "tickets_leaked"));
    printf("clients:           %lld\n", json_int(j, "clients"));
    print_dns(json_object_get(j, "dns"));
}

static int run_status(resolver_client *c, const ctl_options *o, char **args)
{
    int code = EXIT_OK;
    json_t *j = request_verb(c, "STATUS", &code);
    if (!j)
        return code;
    if (o->json)
        print_json(j);
    else
        print_status(j);
    json_decref(j);
    return EXIT_OK;
}

static double now_s(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int run_ping(resolver_client *c, const ctl_options *o, char **args)
{
    int code = EXIT_OK;
    double t0 = now_s(CLOCK_MONOTONIC);
    json_t *j = request_verb(c, "PING", &code);
    if (!j)
        return code;
    double ms = (now_s(CLOCK_MONOTONIC) - t0) * 1000;
    if (o->json) {
        json_object_set_new(j, "rtt_ms", json_real((double)(long long)(ms * 1000) / 1000));
        print_json(j);
    } else {
        printf("resolverd at %s answers (%.2f ms)\n", socket_path, ms);
    }
    json_decref(j);
    return EXIT_OK;
}

static int run_metrics(resolver_client *c, const ctl_options *o, char **args)
{
    int code = EXIT_OK;
    json_t *j = request_verb(c, "METRICS", &code);
    if (!j)
        return code;
    if (o->json)
        print_json(j);
    else
        fputs(json_str(j, "text"), stdout);
    json_decref(j);
    return EXIT_OK;
}

/* "2026-05-04 12:34:56.789" local time (text), or RFC 3339 UTC (JSON). */
static void timestamp(int utc, char *buf, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    if (utc)
        gmtime_r(&ts.tv_sec, &tm);
    else
        localtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof(base), utc ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf, n, "%.24s.%03d%s", base, (int)(ts.tv_nsec / 1000000), utc ? "Z" : "");
}

/* A watched service the daemon does not know yet: say so, and discover it
 * as its first pick would (the pick's ticket goes with the connection). */
static void discover_for_watch(const ctl_options *o, const char *service)
{
    resolver_client *c;
    if (resolver_client_connect(socket_path, o->timeout_ms, &c) != 0)
        return;
    const char *instances[] = {"INSTANCES", service, NULL};
    int answer = 0;
    if (resolver_client_request(c, instances, &answer, NULL) == 0 &&
        answer == RESOLVER_ERR_NOT_FOUND) {
        fprintf(stderr,
                "resolverctl: %s is not known yet (not configured, never picked): discovering "
                "it under the etcd prefix %s/\n",
                service, service);
        const char *pick[] = {"PICK", service, NULL};
        resolver_client_request(c, pick, &answer, NULL);
    }
    resolver_client_free_wait(c);
}

/* Columns grow to the widest value seen so far, so lines stay aligned. */
static void print_event(json_t *ev)
{
    static int w_service = 16, w_event = 7, w_address = 21;
    char ts[40];
    timestamp(0, ts, sizeof(ts));
    const char *f[3] = {json_str(ev, "service"), json_str(ev, "event"), json_str(ev, "address")};
    int *w[3] = {&w_service, &w_event, &w_address};
    for (int i = 0; i < 3; i++)
        if ((int)text_width(f[i]) > *w[i])
            *w[i] = (int)text_width(f[i]);
    printf("%s  %-*s  %-*s  %-*s  %s\n", ts, w_service, f[0], w_event, f[1], w_address, f[2],
           json_str(ev, "state"));
}

static int run_watch(resolver_client *c, const ctl_options *o, char **args)
{
    const char *argv[] = {"WATCH", args[0] ? args[0] : "*", NULL};
    int code = EXIT_OK;
    json_t *j = request(c, argv, &code);
    if (!j)
        return code;
    json_decref(j);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (args[0] && strcmp(args[0], "*") != 0)
        discover_for_watch(o, args[0]);
    for (;;) {
        char *text = NULL;
        int rc = resolver_client_next_event(c, -1, &text);
        if (rc != 0) {
            fprintf(stderr, "resolverctl: watch ended: %s\n", resolver_strerror(rc));
            return EXIT_UNREACHABLE;
        }
        json_t *ev = json_loads(text, 0, NULL);
        free(text);
        if (!ev)
            continue;
        if (o->json) {
            char ts[40];
            timestamp(1, ts, sizeof(ts));
            json_object_set_new(ev, "time", json_string(ts));
            char *line = json_dumps(ev, JSON_COMPACT | JSON_FLAGS);
            if (line)
                printf("%s\n", line);
            free(line);
        } else {
            print_event(ev);
        }
        json_decref(ev);
    }
}

static int run_drain_verb(resolver_client *c, const ctl_options *o, char **args, const char *verb)
{
    const char *argv[] = {verb, args[0], args[1], NULL};
    int code = EXIT_OK;
    json_t *j = request(c, argv, &code);
    if (j && o->json)
        print_json(j);
    json_decref(j);
    return code;
}

static int run_drain(resolver_client *c, const ctl_options *o, char **args)
{
    return run_drain_verb(c, o, args, "DRAIN");
}

static int run_undrain(resolver_client *c, const ctl_options *o, char **args)
{
    return run_drain_verb(c, o, args, "UNDRAIN");
}

static int run_register(resolver_client *c, const ctl_options *o, char **args)
{
    req_words w = {0};
    word(&w, "REGISTER");
    word(&w, args[0]);
    word(&w, args[1]);
    option(&w, "format", o->format);
    option(&w, "ttl_ms", o->ttl_ms);
    option(&w, "zone", o->zone);
    option(&w, "weight", o->weight);
    option(&w, "key", o->etcd_key);
    option(&w, "metadata", o->metadata);
    option(&w, "health_check", o->health_check);
    int code = EXIT_OK;
    json_t *j = request(c, w.argv, &code);
    words_free(&w);
    if (j && o->json)
        print_json(j);
    else if (j && json_is_true(json_object_get(j, "persisted")))
        printf("registering %s %s (%s; kept in cache_file: registered again at restart)\n",
               json_str(j, "service"), json_str(j, "address"), json_str(j, "format"));
    else if (j)
        printf("registering %s %s (%s; not persisted: lost at restart unless listed in the "
               "configuration's \"register\" or cache_file is set)\n",
               json_str(j, "service"), json_str(j, "address"), json_str(j, "format"));
    json_decref(j);
    return code;
}

static int run_deregister(resolver_client *c, const ctl_options *o, char **args)
{
    return run_drain_verb(c, o, args, "DEREGISTER");
}

static int run_registrations(resolver_client *c, const ctl_options *o, char **args)
{
    int code = EXIT_OK;
    json_t *j = request_for_table(c, o, (const char *[]){"REGISTRATIONS", NULL}, &code);
    if (!j)
        return code;
    table t = {.ncols = 7, .align = "lllllrl"};
    table_row(&t, "SERVICE", "ADDRESS", "FORMAT", "KEY", "LEASE", "TTL-LEFT", "STATE");
    size_t i;
    json_t *r;
    json_array_foreach(j, i, r)
    {
        json_t *left = json_object_get(r, "ttl_left_ms");
        char *ttl = json_is_integer(left) ? cellf("%.1fs", (double)json_integer_value(left) / 1000)
                                          : cellf("-");
        const char *key = json_str(r, "key");
        const char *lease = json_str(r, "lease_id");
        table_row(&t, json_str(r, "service"), json_str(r, "address"), json_str(r, "format"),
                  *key ? key : "-", strcmp(lease, "0") ? lease : "-", ttl, json_str(r, "state"));
        free(ttl);
    }
    table_print(&t);
    if (i == 0)
        printf("(no registrations)\n");
    json_decref(j);
    return EXIT_OK;
}

static int run_reload(resolver_client *c, const ctl_options *o, char **args)
{
    int code = EXIT_OK;
    json_t *j = request_verb(c, "RELOAD", &code);
    if (j && o->json)
        print_json(j);
    json_decref(j);
    return code;
}

static const ctl_verb ctl_verbs[] = {
    {"pick", 1, 1, "SERVICE [--key K] [--hold]",
     "Print host:port of a READY instance of SERVICE; the pick is released at once.\n"
     "--hold keeps it: prints host:port TICKET (--json: {\"address\":..,\"ticket\":..}),\n"
     "and the ticket stays outstanding until `resolverctl done TICKET` or ticket_timeout_ms.",
     run_pick},
    {"done", 1, 1, "TICKET [--fail] [--latency-ms N]",
     "Report the outcome of the pick that returned TICKET (from pick --hold).", run_done},
    {"services", 0, 0, "", "List services: policy, aggregate state, instances by state.",
     run_services},
    {"instances", 1, 1, "SERVICE",
     "List the instances of SERVICE: address, state, health (gRPC health check), weight, "
     "outstanding picks, ping RTT, "
     "reconnects, last change.",
     run_instances},
    {"status", 0, 0, "",
     "Show version, pid, config file, last reload, the etcd endpoint in use, revision, last "
     "contact, uptime, counts.",
     run_status},
    {"watch", 0, 1, "[SERVICE]",
     "Print a timestamped line per instance change until interrupted; a SERVICE not known yet "
     "is discovered.",
     run_watch},
    {"drain", 2, 2, "SERVICE ADDRESS", "Stop new picks of ADDRESS (admin).", run_drain},
    {"undrain", 2, 2, "SERVICE ADDRESS", "Undo a drain (admin).", run_undrain},
    {"register", 2, 2,
     "SERVICE ADDRESS [--format F] [--ttl-ms N] [--zone Z] [--weight W] [--etcd-key K] "
     "[--metadata JSON] [--health-check GRPC_SERVICE]",
     "Publish ADDRESS as an instance of SERVICE in etcd under a lease that resolverd keeps\n"
     "alive and restores after any loss (admin).  F: gozero (default), etcd_naming, kratos,\n"
     "kitex, native.  --health-check (\"\" for the whole server): the key exists only while\n"
     "gRPC health checking of ADDRESS answers SERVING.  With cache_file set it is kept\n"
     "there and registered again at the next start (until deregistered); without, it is\n"
     "lost at restart unless listed in \"register\".",
     run_register},
    {"deregister", 2, 2, "SERVICE ADDRESS",
     "Delete the key of a registration and revoke its lease; it stays LEAVING for\n"
     "deregister_grace_ms (admin).",
     run_deregister},
    {"registrations", 0, 0, "",
     "List registrations: service, address, format, key, lease, TTL left, state\n"
     "(REGISTERED, PENDING, UNHEALTHY, LEAVING).",
     run_registrations},
    {"metrics", 0, 0, "", "Print Prometheus text exposition.", run_metrics},
    {"reload", 0, 0, "", "Reload resolverd's configuration, as SIGHUP (admin).", run_reload},
    {"ping", 0, 0, "", "Check that resolverd answers; prints the round trip.", run_ping},
};

static const ctl_verb *find_ctl_verb(const char *name)
{
    for (size_t i = 0; i < sizeof(ctl_verbs) / sizeof(ctl_verbs[0]); i++)
        if (strcmp(ctl_verbs[i].name, name) == 0)
            return &ctl_verbs[i];
    return NULL;
}

int main(int argc, char **argv)
{
    enum {
        OPT_KEY = 256,
        OPT_FAIL,
        OPT_LATENCY,
        OPT_HOLD,
        OPT_FORMAT,
        OPT_TTL,
        OPT_ZONE,
        OPT_WEIGHT,
        OPT_ETCD_KEY,
        OPT_METADATA,
        OPT_HEALTH
    };
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'},
        {"key", required_argument, NULL, OPT_KEY},
        {"fail", no_argument, NULL, OPT_FAIL},
        {"hold", no_argument, NULL, OPT_HOLD},
        {"latency-ms", required_argument, NULL, OPT_LATENCY},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"ttl-ms", required_argument, NULL, OPT_TTL},
        {"zone", required_argument, NULL, OPT_ZONE},
        {"weight", required_argument, NULL, OPT_WEIGHT},
        {"etcd-key", required_argument, NULL, OPT_ETCD_KEY},
        {"metadata", required_argument, NULL, OPT_METADATA},
        {"health-check", required_argument, NULL, OPT_HEALTH},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    ctl_options o = {.timeout_ms = 5000};
    int help = 0, ch;
    while ((ch = getopt_long(argc, argv, "s:jt:hV", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            o.socket = optarg;
            break;
        case 'j':
            o.json = 1;
            break;
        case 't':
            o.timeout_ms = atoi(optarg);
            break;
        case OPT_KEY:
            o.key = optarg;
            break;
        case OPT_FAIL:
            o.fail = 1;
            break;
        case OPT_HOLD:
            o.hold = 1;
            break;
        case OPT_LATENCY:
            o.latency = optarg;
            break;
        case OPT_FORMAT:
            o.format = optarg;
            break;
        case OPT_TTL:
            o.ttl_ms = optarg;
            break;
        case OPT_ZONE:
            o.zone = optarg;
            break;
        case OPT_WEIGHT:
            o.weight = optarg;
            break;
        case OPT_ETCD_KEY:
            o.etcd_key = optarg;
            break;
        case OPT_METADATA:
            o.metadata = optarg;
            break;
        case OPT_HEALTH:
            o.health_check = optarg;
            break;
        case 'h':
            help = 1;
            break;
        case 'V':
            printf("resolverctl %s\n", PACKAGE_VERSION);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(help ? stdout : stderr);
        return help ? EXIT_OK : EXIT_USAGE;
    }
    const ctl_verb *v = find_ctl_verb(argv[optind]);
    if (!v) {
        fprintf(stderr, "resolverctl: unknown verb \"%s\" (see resolverctl --help)\n",
                argv[optind]);
        return EXIT_USAGE;
    }
    if (help) {
        printf("Usage: resolverctl [-s SOCKET] [--json] %s %s\n\n%s\n", v->name, v->args, v->help);
        return EXIT_OK;
    }
    int nargs = argc - optind - 1;
    if (nargs < v->min_args || nargs > v->max_args) {
        fprintf(stderr, "Usage: resolverctl %s %s\n", v->name, v->args);
        return EXIT_USAGE;
    }
    if (o.timeout_ms <= 0) {
        fprintf(stderr, "resolverctl: --timeout must be a positive number of milliseconds\n");
        return EXIT_USAGE;
    }
    o.socket = socket_path = resolver_client_socket_path(o.socket);
    request_timeout_ms = o.timeout_ms;
    resolver_client *c;
    int rc = resolver_client_connect(o.socket, o.timeout_ms, &c);
    if (rc != 0) {
        char why[512];
        if (rc == RESOLVER_ERR_CONNECT)
            explain_unreachable(o.socket, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "%s", resolver_strerror(rc));
        fprintf(stderr, "resolverctl: cannot reach resolverd at %s: %s\n", o.socket, why);
        return rc == RESOLVER_ERR_INVALID ? EXIT_USAGE : EXIT_UNREACHABLE;
    }
    char *args[3] = {NULL, NULL, NULL};
    for (int i = 0; i < nargs; i++)
        args[i] = argv[optind + 1 + i];
    signal(SIGPIPE, SIG_IGN);
    int code = v->run(c, &o, args);
    /* Waiting for the daemon to close its end means the tickets this
     * connection owned (a pick without --hold) are released on return. */
    resolver_client_free_wait(c);
    return code;
}
