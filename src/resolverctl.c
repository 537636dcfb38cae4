/*
 * resolverctl - command-line client of resolverd.  See resolverctl(1).
 * Exit codes: 0 ok, 1 usage, 2 cannot reach the daemon, 3 no instance or
 * not found, 4 any other error the daemon reports.
 */
#include "autoconfig.h"
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "client.h"
#include "proto.h"
#include "resolver.h"

enum { EXIT_OK = 0, EXIT_USAGE = 1, EXIT_UNREACHABLE = 2, EXIT_NOT_FOUND = 3, EXIT_ERROR = 4 };

typedef struct {
    const char *socket;
    int json;
    int timeout_ms;
    const char *key;
    int fail;
    const char *latency;
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
            "  pick SERVICE [--key K]     print host:port of an instance (exit 3: none)\n"
            "  done TICKET [--fail] [--latency-ms N]  report the outcome of a pick\n"
            "  services                   one row per service\n"
            "  instances SERVICE          one row per instance\n"
            "  status                     etcd endpoint, revision, uptime, counts\n"
            "  watch [SERVICE]            a line per change, until interrupted\n"
            "  drain SERVICE ADDRESS      stop new picks of an instance (admin)\n"
            "  undrain SERVICE ADDRESS    undo drain (admin)\n"
            "  metrics                    Prometheus text exposition\n"
            "  reload                     reload resolverd's configuration (admin)\n"
            "\n"
            "Options:\n"
            "  -s, --socket PATH  daemon socket (default $RESOLVER_SOCKET or "
            "/run/resolverd/resolverd.sock)\n"
            "  -j, --json         print one JSON document (read verbs)\n"
            "  -t, --timeout MS   wait at most MS for each answer (default 5000)\n"
            "  -h, --help         this text; `resolverctl VERB --help` for one verb\n"
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

/* Sends a request and returns the parsed JSON payload of an OK reply; on
 * an ERR reply prints the daemon's message and sets *exit_code. */
static json_t *request(resolver_client *c, const char *line, int *exit_code)
{
    resolver_proto_reply reply;
    int rc = resolver_client_request(c, line, &reply);
    if (rc != 0) {
        fprintf(stderr, "resolverctl: no answer from resolverd: %s\n", resolver_strerror(rc));
        *exit_code = EXIT_UNREACHABLE;
        return NULL;
    }
    if (reply.kind == RESOLVER_REPLY_ERR) {
        fprintf(stderr, "resolverctl: %s\n", reply.payload);
        *exit_code = exit_code_for(resolver_proto_error_from_word(reply.code));
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_loads(reply.payload, JSON_DECODE_ANY, &jerr);
    if (!j) {
        fprintf(stderr, "resolverctl: bad reply from resolverd: %s\n", jerr.text);
        *exit_code = EXIT_ERROR;
    }
    return j;
}

static void print_json(json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (text)
        printf("%s\n", text);
    free(text);
}

/* Escapes one argument for the protocol; the result is static storage
 * reused by the next call with the same slot. */
static const char *esc(const char *arg, int slot)
{
    static char buf[3][RESOLVER_PROTO_LINE_MAX];
    if (resolver_proto_escape(arg, buf[slot], sizeof(buf[slot])) >= sizeof(buf[slot])) {
        fprintf(stderr, "resolverctl: argument too long: %.40s...\n", arg);
        exit(EXIT_USAGE);
    }
    return buf[slot];
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

/* ---- verbs ---- */

static int run_pick(resolver_client *c, const ctl_options *o, char **args)
{
    char line[RESOLVER_PROTO_LINE_MAX * 3];
    /* CLI tickets must outlive this process: detach them from the
     * connection, so `resolverctl done` can release them later. */
    snprintf(line, sizeof(line), "PICK %s%s%s detach=1", esc(args[0], 0), o->key ? " key=" : "",
             o->key ? esc(o->key, 1) : "");
    int code = EXIT_OK;
    json_t *j = request(c, line, &code);
    if (!j)
        return code;
    if (o->json)
        print_json(j);
    else
        printf("%s\n", json_str(j, "address"));
    json_decref(j);
    return EXIT_OK;
}

static int run_done(resolver_client *c, const ctl_options *o, char **args)
{
    char line[RESOLVER_PROTO_LINE_MAX * 3];
    snprintf(line, sizeof(line), "DONE %s%s%s%s", esc(args[0], 0), o->fail ? " fail=1" : "",
             o->latency ? " latency_ms=" : "", o->latency ? esc(o->latency, 1) : "");
    int code = EXIT_OK;
    json_t *j = request(c, line, &code);
    if (j && o->json)
        print_json(j);
    json_decref(j);
    return code;
}

static int run_services(resolver_client *c, const ctl_options *o, char **args)
{
    int code = EXIT_OK;
    json_t *j = request(c, "SERVICES", &code);
    if (!j)
        return code;
    if (o->json) {
        print_json(j);
    } else {
        printf("%-28s %-20s %-18s %5s %5s %5s %5s %5s %8s\n", "SERVICE", "POLICY", "STATE", "TOTAL",
               "READY", "CONN", "FAIL", "DRAIN", "REVISION");
        size_t i;
        json_t *s;
        json_array_foreach(j, i, s)
        {
            json_t *st = json_object_get(s, "states");
            printf("%-28s %-20s %-18s %5lld %5lld %5lld %5lld %5lld %8lld\n", json_str(s, "name"),
                   json_str(s, "policy"), json_str(s, "state"), json_int(s, "instances"),
                   json_int(st, "READY"), json_int(st, "CONNECTING") + json_int(st, "IDLE"),
                   json_int(st, "TRANSIENT_FAILURE"), json_int(st, "DRAINING"),
                   json_int(s, "revision"));
        }
    }
    json_decref(j);
    return EXIT_OK;
}

static void format_rtt(json_t *inst, char *buf, size_t len)
{
    json_t *rtt = json_object_get(inst, "rtt_ms");
    if (json_is_number(rtt))
        snprintf(buf, len, "%.2fms", json_number_value(rtt));
    else
        snprintf(buf, len, "-");
}

static int run_instances(resolver_client *c, const ctl_options *o, char **args)
{
    char line[RESOLVER_PROTO_LINE_MAX * 3];
    snprintf(line, sizeof(line), "INSTANCES %s", esc(args[0], 0));
    int code = EXIT_OK;
    json_t *j = request(c, line, &code);
    if (!j)
        return code;
    if (o->json) {
        print_json(j);
    } else {
        printf("%-30s %-18s %-15s %6s %11s %9s %10s %12s  %s\n", "ADDRESS", "STATE", "HEALTH",
               "WEIGHT", "OUTSTANDING", "RTT", "RECONNECTS", "LAST-CHANGE", "LAST-ERROR");
        size_t i;
        json_t *inst;
        json_array_foreach(j, i, inst)
        {
            char rtt[32], since[32];
            format_rtt(inst, rtt, sizeof(rtt));
            snprintf(since, sizeof(since), "%.1fs ago",
                     json_number_value(json_object_get(inst, "since_change_s")));
            /* "-": health checking off, or no answer yet on this connection. */
            const char *health = json_str(inst, "health");
            printf("%-30s %-18s %-15s %6lld %11lld %9s %10lld %12s  %s\n",
                   json_str(inst, "address"), json_str(inst, "state"), *health ? health : "-",
                   json_int(inst, "weight"), json_int(inst, "outstanding"), rtt,
                   json_int(inst, "reconnects"), since, json_str(inst, "last_error"));
        }
    }
    json_decref(j);
    return EXIT_OK;
}

static int run_status(resolver_client *c, const ctl_options *o, char **args)
{
    int code = EXIT_OK;
    json_t *j = request(c, "STATUS", &code);
    if (!j)
        return code;
    if (o->json) {
        print_json(j);
    } else {
        json_t *heard = json_object_get(j, "etcd_last_heard_s");
        char heard_text[32] = "never";
        if (json_is_number(heard))
            snprintf(heard_text, sizeof(heard_text), "%.1fs ago", json_number_value(heard));
        printf("etcd endpoint:     %s (%lld configured, %lld failovers)\n",
               json_str(j, "etcd_endpoint"), json_int(j, "etcd_endpoints"),
               json_int(j, "etcd_failovers"));
        printf("etcd revision:     %lld\n", json_int(j, "revision"));
        printf("etcd last heard:   %s\n", heard_text);
        printf("uptime:            %.0fs\n", json_number_value(json_object_get(j, "uptime_s")));
        printf("services:          %lld (%lld on demand)%s\n", json_int(j, "services"),
               json_int(j, "on_demand_services"),
               json_int(j, "stale_services") ? " STALE: serving the cache_file until etcd answers"
                                             : "");
        printf("instances:         %lld (%lld ready)\n", json_int(j, "instances"),
               json_int(j, "ready"));
        printf("picks:             %lld (%lld failed)\n", json_int(j, "picks"),
               json_int(j, "pick_failures"));
        printf("tickets:           %lld outstanding, %lld leaked\n",
               json_int(j, "tickets_outstanding"), json_int(j, "tickets_leaked"));
        printf("clients:           %lld\n", json_int(j, "clients"));
    }
    json_decref(j);
    return EXIT_OK;
}

static int run_metrics(resolver_client *c, const ctl_options *o, char **args)
{
    int code = EXIT_OK;
    json_t *j = request(c, "METRICS", &code);
    if (!j)
        return code;
    if (o->json)
        print_json(j);
    else
        fputs(json_str(j, "text"), stdout);
    json_decref(j);
    return EXIT_OK;
}

static int run_watch(resolver_client *c, const ctl_options *o, char **args)
{
    char line[RESOLVER_PROTO_LINE_MAX * 3];
    snprintf(line, sizeof(line), "WATCH %s", args[0] ? esc(args[0], 0) : "*");
    int code = EXIT_OK;
    json_t *j = request(c, line, &code);
    if (!j)
        return code;
    json_decref(j);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (;;) {
        resolver_proto_reply reply;
        int rc = resolver_client_read_reply(c, -1, &reply);
        if (rc != 0) {
            fprintf(stderr, "resolverctl: watch ended: %s\n", resolver_strerror(rc));
            return EXIT_UNREACHABLE;
        }
        if (reply.kind != RESOLVER_REPLY_EVENT)
            continue;
        if (o->json) {
            printf("%s\n", reply.payload);
            continue;
        }
        json_t *ev = json_loads(reply.payload, 0, NULL);
        if (ev)
            printf("%-20s %-8s %-30s %s\n", json_str(ev, "service"), json_str(ev, "event"),
                   json_str(ev, "address"), json_str(ev, "state"));
        json_decref(ev);
    }
}

static int run_drain_verb(resolver_client *c, const ctl_options *o, char **args, const char *verb)
{
    char line[RESOLVER_PROTO_LINE_MAX * 3];
    snprintf(line, sizeof(line), "%s %s %s", verb, esc(args[0], 0), esc(args[1], 1));
    int code = EXIT_OK;
    json_t *j = request(c, line, &code);
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

static int run_reload(resolver_client *c, const ctl_options *o, char **args)
{
    int code = EXIT_OK;
    json_t *j = request(c, "RELOAD", &code);
    if (j && o->json)
        print_json(j);
    json_decref(j);
    return code;
}

static const ctl_verb ctl_verbs[] = {
    {"pick", 1, 1, "SERVICE [--key K]", "Print host:port of a READY instance of SERVICE.",
     run_pick},
    {"done", 1, 1, "TICKET [--fail] [--latency-ms N]",
     "Report the outcome of the pick that returned TICKET (from pick --json).", run_done},
    {"services", 0, 0, "", "List services: policy, aggregate state, instances by state.",
     run_services},
    {"instances", 1, 1, "SERVICE",
     "List the instances of SERVICE: address, state, health (gRPC health check), weight, "
     "outstanding picks, ping RTT, "
     "reconnects, last change.",
     run_instances},
    {"status", 0, 0, "", "Show the etcd endpoint in use, revision, last contact, uptime, counts.",
     run_status},
    {"watch", 0, 1, "[SERVICE]", "Print a line per instance change until interrupted.", run_watch},
    {"drain", 2, 2, "SERVICE ADDRESS", "Stop new picks of ADDRESS (admin).", run_drain},
    {"undrain", 2, 2, "SERVICE ADDRESS", "Undo a drain (admin).", run_undrain},
    {"metrics", 0, 0, "", "Print Prometheus text exposition.", run_metrics},
    {"reload", 0, 0, "", "Reload resolverd's configuration, as SIGHUP (admin).", run_reload},
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
    enum { OPT_KEY = 256, OPT_FAIL, OPT_LATENCY };
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'},
        {"key", required_argument, NULL, OPT_KEY},
        {"fail", no_argument, NULL, OPT_FAIL},
        {"latency-ms", required_argument, NULL, OPT_LATENCY},
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
        case OPT_LATENCY:
            o.latency = optarg;
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
    resolver_client *c;
    int rc = resolver_client_connect(o.socket, o.timeout_ms, &c);
    if (rc != 0) {
        fprintf(stderr, "resolverctl: cannot reach resolverd at %s: %s\n",
                resolver_client_default_path(o.socket),
                rc == RESOLVER_ERR_CONNECT ? "not running, or no permission"
                                           : resolver_strerror(rc));
        return rc == RESOLVER_ERR_INVALID ? EXIT_USAGE : EXIT_UNREACHABLE;
    }
    char *args[3] = {NULL, NULL, NULL};
    for (int i = 0; i < nargs; i++)
        args[i] = argv[optind + 1 + i];
    signal(SIGPIPE, SIG_IGN);
    int code = v->run(c, &o, args);
    resolver_client_close(c);
    return code;
}
