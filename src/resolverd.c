/*
 * resolverd - the per-host daemon: runs the engine and serves picks and
 * introspection on a Unix socket.  See resolverd(8).
 */
#include "autoconfig.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <resolver.h>
#include "cfgval.h"
#include "daemon_log.h"
#include "metrics_http.h"
#include "server.h"

typedef struct {
    const char *config_file;
    const char *etcd;
    const char *socket;
    const char *log_level;
    int check_config;
    int quiet; /* --check-config without the effective configuration on stdout */
} options;

typedef struct {
    options opts;
    resolver_engine *engine;
    rsv_server *server;
    rsv_metrics_http *metrics; /* NULL unless metrics.listen is set */
    int sigfd;
    int stopping;
    int leaving; /* SIGTERM: deregistering before the drain */
    resolver_timer *drain_timer;
    uint64_t drain_deadline;
    char *config_path; /* absolute, for STATUS; NULL without -c */
    struct {
        int done; /* 0: no reload yet */
        int ok;
        char error[512];
        struct timespec when; /* CLOCK_REALTIME */
    } last_reload;
} daemon_state;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: resolverd [-c FILE] [--etcd URL[,URL...]] [--socket PATH] [--log-level LEVEL]\n"
            "       resolverd --check-config [--quiet] -c FILE\n"
            "\n"
            "Watches services in etcd, keeps an HTTP/2 connection to each instance, and\n"
            "answers \"which instance should I call?\" on a Unix socket (see resolverctl).\n"
            "\n"
            "  -c, --config FILE      JSON configuration (see resolverd(8)); flags override it\n"
            "      --etcd URLS        etcd endpoints, comma-separated (etcd.endpoints)\n"
            "  -s, --socket PATH      Unix socket to serve (socket.path)\n"
            "      --log-level LEVEL  error, warn, info (default) or debug\n"
            "      --check-config     validate the configuration and what start needs (files,\n"
            "                         groups, addresses, the socket directory), print the\n"
            "                         effective configuration, and exit (1: a problem)\n"
            "  -q, --quiet            with --check-config: print only problems\n"
            "  -h, --help             this text\n"
            "  -V, --version          print the version\n"
            "\n"
            "Signals: SIGHUP reloads the configuration; SIGTERM and SIGINT stop gracefully.\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    enum { OPT_ETCD = 256, OPT_LOG_LEVEL, OPT_CHECK };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"etcd", required_argument, NULL, OPT_ETCD},
        {"socket", required_argument, NULL, 's'},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:s:qhV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config_file = optarg;
            break;
        case OPT_ETCD:
            o->etcd = optarg;
            break;
        case 's':
            o->socket = optarg;
            break;
        case OPT_LOG_LEVEL:
            o->log_level = optarg;
            break;
        case OPT_CHECK:
            o->check_config = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("resolverd %s\n", PACKAGE_VERSION);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "resolverd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Loads the file (or the defaults) and applies the command-line overrides. */
static int load_config(const options *o, resolver_config **out, char *err, size_t errlen)
{
    int rc = o->config_file ? resolver_config_load_file(o->config_file, out, err, errlen)
                            : resolver_config_new_default(out);
    if (rc != 0) {
        if (!o->config_file)
            snprintf(err, errlen, "%s", resolver_strerror(rc));
        return rc;
    }
    if (o->etcd && (rc = resolver_config_set_endpoints(*out, o->etcd)) != 0) {
        snprintf(err, errlen, "--etcd: \"%s\" is not a list of http:// or https:// URLs", o->etcd);
        goto fail;
    }
    if (o->socket) {
        char msg[512];
        rc = resolver_config_set(*out, "socket.path", o->socket, msg, sizeof(msg));
        if (rc != 0) {
            snprintf(err, errlen, "--socket: %s", msg);
            goto fail;
        }
    }
    return 0;
fail:
    resolver_config_free(*out);
    *out = NULL;
    return rc;
}

/* systemd's notify protocol without libsystemd: one datagram to
 * $NOTIFY_SOCKET ('@' means the abstract namespace). */
static void sd_notify_text(const char *text)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof(addr.sun_path))
        return;
    memcpy(addr.sun_path, path, len);
    if (addr.sun_path[0] == '@')
        addr.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    ssize_t rc = sendto(fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&addr,
                        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    (void)rc;
    close(fd);
}

static int reload(void *arg, char *err, size_t errlen)
{
    daemon_state *d = arg;
    sd_notify_text("RELOADING=1");
    resolver_config *cfg;
    int rc = load_config(&d->opts, &cfg, err, errlen);
    if (rc == 0 && d->server && rsv_server_reconfigure(d->server, cfg, err, errlen) != 0) {
        resolver_config_free(cfg);
        rc = RESOLVER_ERR_CONFIG;
    }
    if (rc != 0) {
        LOG_ERROR("reload failed, keeping the running configuration: %s", err);
    } else {
        rc = resolver_engine_reload(d->engine, cfg, err, errlen);
        if (rc == 0 && d->server)
            rsv_server_config_applied(d->server);
    }
    d->last_reload.done = 1;
    d->last_reload.ok = rc == 0;
    snprintf(d->last_reload.error, sizeof(d->last_reload.error), "%s", rc == 0 ? "" : err);
    clock_gettime(CLOCK_REALTIME, &d->last_reload.when);
    char status[640];
    snprintf(status, sizeof(status), "READY=1\nSTATUS=serving%s%.500s",
             rc ? "; reload failed: " : "", rc ? err : "");
    sd_notify_text(status);
    return rc;
}

/* The daemon's part of STATUS (doc/protocol.md). */
static void add_status(void *arg, json_t *j)
{
    daemon_state *d = arg;
    json_object_set_new(j, "version", json_string(PACKAGE_VERSION));
    json_object_set_new(j, "pid", json_integer((json_int_t)getpid()));
    json_object_set_new(j, "config_file",
                        d->config_path ? json_string(d->config_path) : json_null());
    if (!d->last_reload.done) {
        json_object_set_new(j, "last_reload", json_null());
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    char when[32];
    gmtime_r(&d->last_reload.when.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    double ago = (double)(now.tv_sec - d->last_reload.when.tv_sec) +
                 (double)(now.tv_nsec - d->last_reload.when.tv_nsec) / 1e9;
    json_object_set_new(j, "last_reload",
                        json_pack("{s:b, s:s, s:s, s:I, s:f}", "ok", d->last_reload.ok, "error",
                                  d->last_reload.error, "time", when, "time_unix",
                                  (json_int_t)d->last_reload.when.tv_sec, "ago_s",
                                  (double)(long long)(ago * 1000) / 1000));
}

static void begin_drain(daemon_state *d)
{
    resolver_loop *loop = resolver_engine_loop(d->engine);
    sd_notify_text("STATUS=draining");
    rsv_server_stop_picks(d->server);
    resolver_engine_shutdown(d->engine);
    d->drain_deadline = resolver_loop_now(loop) + resolver_engine_max_drain_ms(d->engine);
    resolver_timer_start(d->drain_timer, 0);
}

static void on_signal(resolver_loop *loop, int fd, unsigned events, void *arg)
{
    daemon_state *d = arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            char err[512];
            /* The audit of an admin action, as for RELOAD (src/server.c). */
            LOG_INFO("SIGHUP from uid %u pid %u: reloading the configuration", si.ssi_uid,
                     si.ssi_pid);
            reload(d, err, sizeof(err));
        } else if (!d->stopping) {
            d->stopping = 1;
            sd_notify_text("STOPPING=1\nSTATUS=deregistering");
            /* Our keys go first, and remote callers get deregister_grace_ms
             * to stop picking us, before anything closes. */
            size_t n = resolver_engine_registrations(d->engine);
            if (n > 0) {
                LOG_INFO("%s: stopping: deregistering %zu instance%s first, then draining (a "
                         "second signal stops at once)",
                         strsignal((int)si.ssi_signo), n, n == 1 ? "" : "s");
                d->leaving = 1;
                resolver_engine_deregister_all(d->engine);
                resolver_timer_start(d->drain_timer, 0);
            } else {
                LOG_INFO("%s: stopping: draining every instance (a second signal stops at once)",
                         strsignal((int)si.ssi_signo));
                begin_drain(d);
            }
        } else {
            LOG_WARN("%s again: stopping without waiting for the drain",
                     strsignal((int)si.ssi_signo));
            resolver_engine_stop(d->engine);
        }
    }
}

/* During a graceful stop: done when every instance has closed (their picks
 * reported done over the socket, or their drain timed out). */
static void on_drain_check(resolver_loop *loop, resolver_timer *t, void *arg)
{
    daemon_state *d = arg;
    if (d->leaving) { /* deregistering: keys deleted, then the grace */
        if (resolver_engine_registrations(d->engine) == 0) {
            d->leaving = 0;
            begin_drain(d);
        } else {
            resolver_timer_start(t, 20);
        }
        return;
    }
    if (resolver_engine_drained(d->engine) || resolver_loop_now(loop) >= d->drain_deadline) {
        resolver_engine_stop(d->engine);
        return;
    }
    resolver_timer_start(t, 50);
}

/* One fd per client, per subchannel and per etcd watch: the default soft
 * limit of 1024 is too low for a host daemon; take what the hard limit
 * allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            LOG_WARN("cannot raise the open-files limit: %s", strerror(errno));
    }
}

static int setup_signals(daemon_state *d)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    d->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (d->sigfd < 0)
        return -1;
    d->drain_timer = resolver_timer_new(resolver_engine_loop(d->engine), on_drain_check, d);
    if (!d->drain_timer)
        return -1;
    return resolver_loop_watch(resolver_engine_loop(d->engine), d->sigfd, RESOLVER_FD_READ,
                               on_signal, d);
}

/* ---- what would fail at start (--check-config) and the socket directory ---- */

/* The directory part of path ("." for a bare name) into dir. */
static void dir_of(const char *path, char *dir, size_t n)
{
    snprintf(dir, n, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, n, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
}

/* Makes the missing directories of dir, as `mkdir -p` with mode 0755 for
 * each one it creates (whatever the umask: clients must reach the socket
 * inside).  0, or -1 with a message naming the key. */
static int make_dirs(const char *key, const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        snprintf(err, errlen, "%s: %s is not a directory", key, dir);
        return -1;
    }
    if (errno != ENOENT && errno != ENOTDIR) {
        snprintf(err, errlen, "%s: directory %s: %s", key, dir, strerror(errno));
        return -1;
    }
    char parent[PATH_MAX];
    dir_of(dir, parent, sizeof(parent));
    if (strcmp(parent, dir) != 0 && make_dirs(key, parent, err, errlen) != 0)
        return -1;
    if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || chmod(dir, 0755) != 0) {
        snprintf(err, errlen, "%s: the directory %s is missing and cannot be made: %s", key, dir,
                 strerror(errno));
        return -1;
    }
    LOG_INFO("%s: made the missing directory %s (mode 0755)", key, dir);
    return 0;
}

/* What make_dirs would meet, without making anything: the nearest existing
 * ancestor must be a directory this process may write into. */
static int dirs_makeable(const char *dir, char *why, size_t n)
{
    char d[PATH_MAX];
    snprintf(d, sizeof(d), "%s", dir);
    struct stat st;
    while (stat(d, &st) != 0) {
        if (errno != ENOENT && errno != ENOTDIR) {
            snprintf(why, n, "%s: %s", d, strerror(errno));
            return -1;
        }
        char parent[PATH_MAX];
        dir_of(d, parent, sizeof(parent));
        if (strcmp(parent, d) == 0)
            break;
        snprintf(d, sizeof(d), "%s", parent);
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, n, "%s is not a directory", d);
        return -1;
    }
    if (strcmp(d, dir) != 0 && access(d, W_OK | X_OK) != 0) {
        snprintf(why, n, "%s is missing and cannot be made in %s: %s", dir, d, strerror(errno));
        return -1;
    }
    if (strcmp(d, dir) == 0 && access(d, W_OK | X_OK) != 0) {
        snprintf(why, n, "cannot create files in %s: %s", d, strerror(errno));
        return -1;
    }
    return 0;
}

typedef struct {
    const char *origin;
    int problems;
} check_ctx;

static void problem(check_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(check_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "resolverd: %s: ", c->origin);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    c->problems++;
}

static void check_readable(check_ctx *c, const char *key, const char *file)
{
    if (!file || !*file)
        return;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        problem(c, "%s: cannot read \"%s\": %s", key, file, strerror(errno));
        return;
    }
    close(fd);
}

static void check_group(check_ctx *c, const char *key, const char *group)
{
    if (group && *group && !getgrnam(group))
        problem(c, "%s: no such group \"%s\" (groupadd --system %s, or fix the name)", key, group,
                group);
}

/* metrics.listen as start resolves it: HOST:PORT, [V6]:PORT or :PORT. */
static void check_listen(check_ctx *c, const char *key, const char *listen_addr)
{
    if (!listen_addr || !*listen_addr)
        return;
    char host[300];
    snprintf(host, sizeof(host), "%s", listen_addr);
    char *colon = strrchr(host, ':');
    if (!colon) {
        problem(c, "%s: \"%s\" is not HOST:PORT or :PORT", key, listen_addr);
        return;
    }
    *colon = '\0';
    const char *port = colon + 1, *h = host;
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        h = host + 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(*h ? h : "127.0.0.1", port, &hints, &res);
    if (gai != 0)
        problem(c, "%s: \"%s\": %s", key, listen_addr, gai_strerror(gai));
    freeaddrinfo(res);
}

static void check_cache_file(check_ctx *c, const char *file)
{
    if (!file || !*file)
        return;
    char dir[PATH_MAX], why[PATH_MAX + 128];
    dir_of(file, dir, sizeof(dir));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        problem(c, "cache_file: the directory %s of \"%s\" does not exist", dir, file);
    else if (dirs_makeable(dir, why, sizeof(why)) != 0)
        problem(c, "cache_file: \"%s\": %s (it is written next to itself, then renamed)", file,
                why);
    else if (access(file, F_OK) == 0)
        check_readable(c, "cache_file", file);
}

/* Everything start would refuse beyond the file's syntax, as far as it can
 * be known without starting: each problem printed, naming its key. */
static int check_start(const resolver_config *cfg, const char *origin)
{
    check_ctx c = {origin, 0};
    static const char *const keys[] = {"etcd.password_file", "etcd.ca_file",       "etcd.cert_file",
                                       "etcd.key_file",      "etcd.username",      "cache_file",
                                       "socket.group",       "socket.admin_group", "metrics.listen",
                                       "socket.path"};
    enum {
        PASSWORD_FILE,
        CA_FILE,
        CERT_FILE,
        KEY_FILE,
        USERNAME,
        CACHE_FILE,
        GROUP,
        ADMIN_GROUP,
        LISTEN,
        PATH,
        N_KEYS
    };
    char *v[N_KEYS];
    int nomem = 0;
    for (int i = 0; i < N_KEYS; i++)
        nomem |= !(v[i] = rsv_cfg_string(cfg, keys[i]));
    if (nomem) {
        problem(&c, "out of memory");
    } else {
        for (int i = PASSWORD_FILE; i <= KEY_FILE; i++)
            check_readable(&c, keys[i], v[i]);
        if (*v[PASSWORD_FILE] && !*v[USERNAME])
            problem(&c, "etcd.password_file: set without etcd.username");
        check_cache_file(&c, v[CACHE_FILE]);
        check_group(&c, "socket.group", v[GROUP]);
        check_group(&c, "socket.admin_group", v[ADMIN_GROUP]);
        check_listen(&c, "metrics.listen", v[LISTEN]);
        char dir[PATH_MAX], why[PATH_MAX + 128];
        dir_of(v[PATH], dir, sizeof(dir));
        if (dirs_makeable(dir, why, sizeof(why)) != 0)
            problem(&c, "socket.path: \"%s\": %s", v[PATH], why);
    }
    for (int i = 0; i < N_KEYS; i++)
        free(v[i]);
    return c.problems;
}

static int check_config(const options *o)
{
    char err[1024] = "";
    resolver_config *cfg;
    if (!o->config_file) {
        fprintf(stderr, "resolverd: --check-config needs -c FILE\n");
        return 1;
    }
    if (load_config(o, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "resolverd: %s\n", err);
        return 1;
    }
    int problems = check_start(cfg, o->config_file);
    if (problems == 0) {
        char *text = NULL;
        if (!o->quiet && resolver_config_get(cfg, "", &text) == 0)
            printf("%s\n", text);
        free(text);
        size_t n = rsv_cfg_count(cfg, "services");
        fprintf(stderr, "resolverd: %s: configuration OK (%zu service%s)\n", o->config_file, n,
                n == 1 ? "" : "s");
    } else {
        fprintf(stderr, "resolverd: %s: %d problem%s: resolverd would not start\n", o->config_file,
                problems, problems == 1 ? "" : "s");
    }
    resolver_config_free(cfg);
    return problems ? 1 : 0;
}

/* The optional Prometheus listener (metrics.listen; "" leaves it off).  It
 * is bound once at start: a reload does not move it. */
static int start_metrics(daemon_state *d, char *err, size_t errlen)
{
    char *addr = rsv_cfg_string(resolver_engine_config(d->engine), "metrics.listen");
    if (!addr) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (*addr)
        d->metrics = rsv_metrics_http_new(d->engine, addr, err, errlen);
    int rc = !*addr || d->metrics ? 0 : -1;
    free(addr);
    return rc;
}

int main(int argc, char **argv)
{
    daemon_state d = {.sigfd = -1};
    if (parse_args(argc, argv, &d.opts) != 0)
        return 1;
    if (d.opts.log_level) {
        resolver_log_level level;
        if (resolver_log_level_parse(d.opts.log_level, &level) != 0) {
            fprintf(stderr,
                    "resolverd: --log-level: \"%s\" is not one of error, warn, info, "
                    "debug\n",
                    d.opts.log_level);
            return 1;
        }
        resolver_log_set_level(level);
    }
    if (d.opts.check_config)
        return check_config(&d.opts);

    char err[1024] = "";
    resolver_config *cfg;
    if (load_config(&d.opts, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "resolverd: %s\n", err);
        return 1;
    }
    char sockdir[PATH_MAX];
    char *sockpath = rsv_cfg_string(cfg, "socket.path");
    dir_of(sockpath ? sockpath : "", sockdir, sizeof(sockdir));
    free(sockpath);
    if (make_dirs("socket.path", sockdir, err, sizeof(err)) != 0) {
        fprintf(stderr, "resolverd: %s\n", err);
        resolver_config_free(cfg);
        return 1;
    }
    raise_fd_limit();
    int rc = resolver_engine_new(&d.engine, cfg);
    if (rc != 0) {
        fprintf(stderr, "resolverd: cannot start the engine: %s\n", resolver_strerror(rc));
        return 1;
    }
    d.server = rsv_server_new(d.engine, resolver_engine_config(d.engine), NULL, err, sizeof(err));
    if (d.server) {
        rsv_server_set_reload(d.server, reload, &d);
        rsv_server_set_status(d.server, add_status, &d);
    }
    if (!d.server || setup_signals(&d) != 0) {
        fprintf(stderr, "resolverd: %s\n", d.server ? strerror(errno) : err);
        rsv_server_del(d.server);
        resolver_timer_free(d.drain_timer);
        resolver_engine_free(d.engine);
        return 1;
    }
    if (start_metrics(&d, err, sizeof(err)) != 0) {
        fprintf(stderr, "resolverd: %s\n", err);
        rsv_server_del(d.server);
        resolver_timer_free(d.drain_timer);
        resolver_engine_free(d.engine);
        close(d.sigfd);
        return 1;
    }
    if (d.opts.config_file)
        d.config_path = realpath(d.opts.config_file, NULL);
    const resolver_config *c = resolver_engine_config(d.engine);
    char *path = rsv_cfg_string(c, "socket.path"), *etcd = rsv_cfg_string(c, "etcd.endpoints[0]");
    size_t n_services = rsv_cfg_count(c, "services");
    LOG_INFO("resolverd %s serving %s; etcd %s%s; %zu service%s configured", PACKAGE_VERSION,
             path ? path : "?", etcd ? etcd : "?",
             rsv_cfg_count(c, "etcd.endpoints") > 1 ? " (and others)" : "", n_services,
             n_services == 1 ? "" : "s");
    free(path);
    free(etcd);
    sd_notify_text("READY=1\nSTATUS=serving");
    rc = resolver_engine_run(d.engine);
    rsv_metrics_http_del(d.metrics);
    rsv_server_del(d.server);
    resolver_timer_free(d.drain_timer);
    resolver_engine_free(d.engine);
    close(d.sigfd);
    free(d.config_path);
    LOG_INFO("resolverd stopped");
    return rc == 0 ? 0 : 1;
}
