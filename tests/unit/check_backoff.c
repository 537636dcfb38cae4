/*
 * check_backoff.c - gRPC connection backoff (pure) and subchannels against
 * real peers: in-test listeners and tests/integration/h2server ($H2SERVER;
 * those tests are skipped when it is unset).
 *
 * Every child process is recorded and killed by PID in teardown; children
 * also get PR_SET_PDEATHSIG, because in CK_FORK mode a failed assertion
 * _exits the test process without running teardown.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "backoff.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "subchannel.h"

/* Generous: the suite also runs under valgrind. */
#define SLACK_MS 1500

static const rsv_backoff_config grpc_defaults = {1000, 1.6, 0.2, 120000};

/* ---- pure backoff ---- */

START_TEST(test_backoff_first_delay)
{
    rsv_backoff b;
    rsv_backoff_init(&b, &grpc_defaults);
    ck_assert_uint_eq(rsv_backoff_next(&b, 0.5), 1000);
    rsv_backoff_init(&b, &grpc_defaults);
    ck_assert_uint_eq(rsv_backoff_next(&b, 0.0), 800);
    rsv_backoff_init(&b, &grpc_defaults);
    uint64_t hi = rsv_backoff_next(&b, 0.999999);
    ck_assert(hi >= 1199 && hi <= 1200);
}
END_TEST

START_TEST(test_backoff_growth_and_cap)
{
    rsv_backoff b;
    rsv_backoff_init(&b, &grpc_defaults);
    double expect = 1000;
    int capped = 0;
    for (int i = 0; i < 40; i++) {
        uint64_t d = rsv_backoff_next(&b, 0.5);
        ck_assert_msg(d + 1 >= (uint64_t)expect && d <= (uint64_t)expect + 1,
                      "attempt %d: %llu, expected %.1f", i, (unsigned long long)d, expect);
        expect = expect * 1.6 > 120000 ? 120000 : expect * 1.6;
        capped += d == 120000;
    }
    ck_assert_int_gt(capped, 20);
    /* At the cap the jitter still applies: 120 s +- 20 %. */
    ck_assert_uint_eq(rsv_backoff_next(&b, 0.0), 96000);
    uint64_t hi = rsv_backoff_next(&b, 0.999999);
    ck_assert(hi >= 143999 && hi <= 144000);
}
END_TEST

START_TEST(test_backoff_reset)
{
    rsv_backoff b;
    rsv_backoff_init(&b, &grpc_defaults);
    for (int i = 0; i < 10; i++)
        rsv_backoff_next(&b, 0.5);
    ck_assert(b.current_ms > 10000);
    rsv_backoff_reset(&b);
    ck_assert_uint_eq(rsv_backoff_next(&b, 0.5), 1000);
    ck_assert_uint_eq(rsv_backoff_next(&b, 0.5), 1600);
}
END_TEST

START_TEST(test_backoff_jitter_bounds)
{
    rsv_backoff b;
    rsv_backoff_init(&b, &grpc_defaults);
    unsigned seed = 12345;
    for (int i = 0; i < 1000; i++) {
        double cur = b.current_ms;
        double r = (double)rand_r(&seed) / ((double)RAND_MAX + 1.0);
        uint64_t d = rsv_backoff_next(&b, r);
        ck_assert(d + 1 >= (uint64_t)(cur * 0.8) && d <= (uint64_t)(cur * 1.2) + 1);
        if (i % 50 == 49)
            rsv_backoff_reset(&b);
    }
}
END_TEST

START_TEST(test_backoff_sanitized)
{
    rsv_backoff_config zero = {0, 0.0, -1.0, 0};
    rsv_backoff b;
    rsv_backoff_init(&b, &zero);
    ck_assert_uint_eq(rsv_backoff_next(&b, 0.0), 1000); /* no jitter */
    ck_assert_uint_eq(rsv_backoff_next(&b, 0.9), 1600);
    rsv_backoff_config small = {50, 1.6, 0.2, 10}; /* max below initial */
    rsv_backoff_init(&b, &small);
    rsv_backoff_next(&b, 0.5);
    ck_assert_uint_eq(rsv_backoff_next(&b, 0.5), 50);
}
END_TEST

START_TEST(test_state_names)
{
    ck_assert_str_eq(rsv_state_name(RSV_STATE_IDLE), "IDLE");
    ck_assert_str_eq(rsv_state_name(RSV_STATE_CONNECTING), "CONNECTING");
    ck_assert_str_eq(rsv_state_name(RSV_STATE_READY), "READY");
    ck_assert_str_eq(rsv_state_name(RSV_STATE_TRANSIENT_FAILURE), "TRANSIENT_FAILURE");
    ck_assert_str_eq(rsv_state_name(RSV_STATE_SHUTDOWN), "SHUTDOWN");
    ck_assert_str_eq(rsv_state_name((rsv_state)42), "UNKNOWN");
}
END_TEST

/* ---- fixture for subchannel tests ---- */

#define MAX_CHILDREN 4
#define MAX_FDS 16
#define MAX_EVENTS 256

typedef struct {
    rsv_loop *loop;
    rsv_subchannel *sc;
    rsv_state states[MAX_EVENTS];
    uint64_t at[MAX_EVENTS];
    int n;
    rsv_state delete_on;   /* delete the subchannel from its callback on entering this */
    rsv_state shutdown_on; /* shut it down from its callback on entering this */
    int deleted;
    pid_t children[MAX_CHILDREN];
    int n_children;
    int fds[MAX_FDS]; /* listeners and accepted sockets, closed in teardown */
    int n_fds;
    char warn[512]; /* the last WARN logged */
    /* The in-test TLS server: a thread serving one connection at a time. */
    int tls_lfd;
    SSL_CTX *tls_ctx;
    pthread_t tls_thread;
    int tls_running;
    char cert_file[256];
} fixture;

static fixture f;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void log_handler(resolver_log_level level, const char *line, void *arg)
{
    if (level == RESOLVER_LOG_WARN)
        snprintf(f.warn, sizeof(f.warn), "%s", line);
    if (getenv("CHECK_DEBUG"))
        fprintf(stderr, "[%llu] %s\n", (unsigned long long)mono_ms(), line);
}

static void setup(void)
{
    memset(&f, 0, sizeof(f));
    f.delete_on = (rsv_state)-1;
    f.shutdown_on = (rsv_state)-1;
    resolver_log_set_handler(log_handler, NULL);
    resolver_log_set_level(getenv("CHECK_DEBUG") ? RESOLVER_LOG_DEBUG : RESOLVER_LOG_WARN);
    f.loop = rsv_loop_new();
    ck_assert_ptr_nonnull(f.loop);
}

static void teardown(void)
{
    if (!f.deleted)
        rsv_subchannel_del(f.sc); /* also ends the TLS server's connection */
    if (f.tls_running) {
        shutdown(f.tls_lfd, SHUT_RDWR); /* wakes the blocked accept() */
        pthread_join(f.tls_thread, NULL);
    }
    SSL_CTX_free(f.tls_ctx);
    if (f.cert_file[0])
        unlink(f.cert_file);
    unsetenv("SSL_CERT_FILE");
    for (int i = 0; i < f.n_fds; i++) {
        rsv_loop_unwatch(f.loop, f.fds[i]);
        close(f.fds[i]);
    }
    for (int i = 0; i < f.n_children; i++) {
        kill(f.children[i], SIGKILL); /* also ends a SIGSTOPped child */
        waitpid(f.children[i], NULL, 0);
    }
    rsv_loop_del(f.loop);
    resolver_log_set_handler(NULL, NULL);
}

static void keep_fd(int fd)
{
    ck_assert_int_lt(f.n_fds, MAX_FDS);
    f.fds[f.n_fds++] = fd;
}

static void state_cb(rsv_subchannel *sc, rsv_state old_state, rsv_state new_state, void *arg)
{
    ck_assert_ptr_eq(sc, f.sc);
    ck_assert_int_eq(old_state, f.n ? f.states[f.n - 1] : RSV_STATE_IDLE);
    ck_assert_int_eq(rsv_subchannel_state(sc), new_state);
    if (f.n < MAX_EVENTS) {
        f.states[f.n] = new_state;
        f.at[f.n] = mono_ms();
        f.n++;
    }
    if (new_state == f.shutdown_on)
        rsv_subchannel_shutdown(sc); /* nests a SHUTDOWN report */
    if (new_state == f.delete_on) {
        rsv_subchannel_del(sc); /* rule 2 of subchannel.h */
        f.deleted = 1;
    }
}

typedef int (*predicate)(void);

/* Runs the loop until `done` holds or `ms` pass; returns done(). */
static int run_until(predicate done, uint64_t ms)
{
    uint64_t end = mono_ms() + ms;
    while (!done() && mono_ms() < end)
        rsv_loop_run_once(f.loop, 10);
    return done();
}

static void run_for(uint64_t ms)
{
    uint64_t end = mono_ms() + ms;
    while (mono_ms() < end)
        rsv_loop_run_once(f.loop, 10);
}

static int count(rsv_state s)
{
    int n = 0;
    for (int i = 0; i < f.n; i++)
        n += f.states[i] == s;
    return n;
}

static int last_is(rsv_state s)
{
    return f.n > 0 && f.states[f.n - 1] == s;
}

static int is_ready(void)
{
    return last_is(RSV_STATE_READY);
}

static int is_tf(void)
{
    return last_is(RSV_STATE_TRANSIENT_FAILURE);
}

static int had_tf(void)
{
    return count(RSV_STATE_TRANSIENT_FAILURE) >= 1;
}

static int five_tf(void)
{
    return count(RSV_STATE_TRANSIENT_FAILURE) >= 5;
}

static int deleted(void)
{
    return f.deleted;
}

static rsv_service_options test_opts(rsv_protocol protocol)
{
    rsv_service_options o;
    memset(&o, 0, sizeof(o));
    o.protocol = protocol;
    o.keepalive_time_ms = 30000;
    o.keepalive_timeout_ms = 10000;
    o.connect_timeout_ms = 20000;
    o.backoff = (rsv_backoff_config){50, 1.6, 0.2, 2000};
    return o;
}

static void start(uint16_t port, const rsv_service_options *o)
{
    f.sc = rsv_subchannel_new(f.loop, NULL, "127.0.0.1", port, o, state_cb, NULL);
    ck_assert_ptr_nonnull(f.sc);
    ck_assert_int_eq(rsv_subchannel_state(f.sc), RSV_STATE_IDLE);
    rsv_subchannel_connect(f.sc);
    ck_assert_int_eq(f.n, 1);
    ck_assert_int_eq(f.states[0], RSV_STATE_CONNECTING);
}

/* A loopback socket bound to port 0; listening if asked.  Not listening,
 * it holds a port that refuses connections. */
static int tcp_socket(int do_listen, uint16_t *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    keep_fd(fd);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, len), 0);
    if (do_listen)
        ck_assert_int_eq(listen(fd, 16), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static void accept_and_close(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0)
        close(c);
}

static int alpn_select_h2(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned inlen, void *arg)
{
    static const unsigned char h2[] = {2, 'h', '2'};
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, h2, sizeof(h2), in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static void accept_and_keep(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0)
        keep_fd(c);
}

/* ---- an in-test TLS server ---- */

/* A self-signed certificate for IP 127.0.0.1, written to f.cert_file so
 * that SSL_CERT_FILE can make the subchannel trust it; the server context
 * goes to f.tls_ctx. */
static void make_tls_server_ctx(int alpn_h2)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ck_assert(key && x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"check_backoff", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
    X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    ck_assert(san && bc && X509_add_ext(x, san, -1) && X509_add_ext(x, bc, -1));
    X509_EXTENSION_free(san);
    X509_EXTENSION_free(bc);
    ck_assert(X509_sign(x, key, EVP_sha256()) > 0);

    const char *tmp = getenv("TMPDIR");
    snprintf(f.cert_file, sizeof(f.cert_file), "%s/check_backoff.%d.pem", tmp ? tmp : "/tmp",
             (int)getpid());
    FILE *pem = fopen(f.cert_file, "w");
    ck_assert_ptr_nonnull(pem);
    ck_assert(PEM_write_X509(pem, x));
    fclose(pem);

    f.tls_ctx = SSL_CTX_new(TLS_server_method());
    ck_assert(f.tls_ctx && SSL_CTX_use_certificate(f.tls_ctx, x) == 1 &&
              SSL_CTX_use_PrivateKey(f.tls_ctx, key) == 1);
    if (alpn_h2)
        SSL_CTX_set_alpn_select_cb(f.tls_ctx, alpn_select_h2, NULL);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* Serves connections one at a time: TLS handshake, an empty SETTINGS frame
 * (a valid server preface), then reads until the client goes away.  No
 * Check assertions here: this is not the test's thread. */
static void *tls_server_main(void *arg)
{
    static const unsigned char settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    for (;;) {
        int fd = accept(f.tls_lfd, NULL, NULL);
        if (fd < 0)
            break;
        SSL *ssl = SSL_new(f.tls_ctx);
        if (ssl && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1 &&
            SSL_write(ssl, settings, sizeof(settings)) == sizeof(settings)) {
            char buf[4096];
            while (SSL_read(ssl, buf, sizeof(buf)) > 0) {
            }
        }
        SSL_free(ssl);
        close(fd);
        ERR_clear_error();
    }
    ERR_clear_error();
    OPENSSL_thread_stop();
    return NULL;
}

static uint16_t start_tls_server(int alpn_h2)
{
    uint16_t port;
    make_tls_server_ctx(alpn_h2);
    f.tls_lfd = tcp_socket(1, &port);
    fcntl(f.tls_lfd, F_SETFL, 0); /* the server thread blocks */
    ck_assert_int_eq(pthread_create(&f.tls_thread, NULL, tls_server_main, NULL), 0);
    f.tls_running = 1;
    return port;
}

START_TEST(test_h2_tls_ready)
{
    uint16_t port = start_tls_server(1);
    setenv("SSL_CERT_FILE", f.cert_file, 1); /* read by the default verify paths */
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2);
    start(port, &o);
    ck_assert_msg(run_until(is_ready, 5000), "last_error: %s",
                  rsv_subchannel_stats_get(f.sc)->last_error);
    ck_assert_str_eq(rsv_subchannel_stats_get(f.sc)->last_error, "");
    rsv_subchannel_shutdown(f.sc); /* GOAWAY + close_notify */
    ck_assert(last_is(RSV_STATE_SHUTDOWN));
}
END_TEST

START_TEST(test_h2_tls_untrusted)
{
    uint16_t port = start_tls_server(1);
    setenv("SSL_CERT_FILE", "/nonexistent", 1); /* trust nothing */
    setenv("SSL_CERT_DIR", "/nonexistent", 1);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2);
    start(port, &o);
    ck_assert(run_until(is_tf, 5000));
    unsetenv("SSL_CERT_DIR");
    const char *err = rsv_subchannel_stats_get(f.sc)->last_error;
    ck_assert_msg(strstr(err, "certificate verify failed"), "last_error: %s", err);
}
END_TEST

START_TEST(test_h2_tls_without_alpn)
{
    uint16_t port = start_tls_server(0);
    setenv("SSL_CERT_FILE", f.cert_file, 1);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2);
    start(port, &o);
    ck_assert(run_until(is_tf, 5000));
    ck_assert_str_eq(rsv_subchannel_stats_get(f.sc)->last_error,
                     "TLS: the server did not select ALPN h2");
}
END_TEST

/* ---- h2server children ---- */

static const char *h2server(void)
{
    const char *bin = getenv("H2SERVER");
    return bin && *bin ? bin : NULL;
}

#define SKIP_WITHOUT_H2SERVER()                                                                    \
    do {                                                                                           \
        if (!h2server()) {                                                                         \
            fprintf(stderr, "%s: skipped, H2SERVER is not set\n", __func__);                       \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Starts h2server with `args` (NULL-terminated) on a free port; returns
 * the port.  The child dies with us even if teardown never runs. */
static uint16_t spawn_h2server(const char *const *args, pid_t *pid_out)
{
    char portfile[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(portfile, sizeof(portfile), "%s/check_backoff.%d.%d.port", tmp ? tmp : "/tmp",
             (int)getpid(), f.n_children);
    unlink(portfile);
    const char *argv[32];
    int n = 0;
    argv[n++] = h2server();
    for (; *args && n < 26; args++)
        argv[n++] = *args;
    argv[n++] = "--port-file";
    argv[n++] = portfile;
    argv[n++] = "0";
    argv[n] = NULL;

    ck_assert_int_lt(f.n_children, MAX_CHILDREN);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    f.children[f.n_children++] = pid;
    if (pid_out)
        *pid_out = pid;

    unsigned port = 0;
    for (int i = 0; i < 500 && !port; i++) { /* 5 s */
        FILE *pf = fopen(portfile, "r");
        if (pf) {
            if (fscanf(pf, "%u", &port) != 1)
                port = 0;
            fclose(pf);
        }
        if (!port)
            usleep(10000);
    }
    unlink(portfile);
    ck_assert_msg(port > 0 && port < 65536, "h2server did not start");
    return (uint16_t)port;
}

/* ---- subchannel tests ---- */

START_TEST(test_accept_then_close_is_failure)
{
    uint16_t port;
    int lfd = tcp_socket(1, &port);
    ck_assert_int_eq(rsv_loop_watch(f.loop, lfd, RSV_LOOP_READ, accept_and_close, NULL), 0);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    start(port, &o);
    ck_assert(run_until(is_tf, 2000));
    const rsv_subchannel_stats *st = rsv_subchannel_stats_get(f.sc);
    /* The preface may reach the closed socket first, which then resets. */
    ck_assert_msg(strcmp(st->last_error, "connection closed by peer") == 0 ||
                      strstr(st->last_error, "Connection reset by peer") ||
                      strstr(st->last_error, "Broken pipe"),
                  "last_error: %s", st->last_error);
    ck_assert_uint_ge(st->connect_attempts, 1);
    ck_assert_int_eq(count(RSV_STATE_READY), 0);
}
END_TEST

START_TEST(test_refused_retries_with_growing_gaps)
{
    uint16_t port;
    tcp_socket(0, &port); /* bound, not listening: connections are refused */
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    start(port, &o);
    ck_assert(run_until(five_tf, 5000));
    const rsv_subchannel_stats *st = rsv_subchannel_stats_get(f.sc);
    ck_assert_str_eq(st->last_error, "connect: Connection refused");
    ck_assert_uint_ge(st->connect_attempts, 5);
    ck_assert_uint_ge(st->reconnects, 4);
    ck_assert_uint_eq(st->transitions, (uint64_t)f.n);

    /* Gaps between attempts: 50 ms * 1.6^k, +-20 % jitter. */
    uint64_t starts[16];
    int ns = 0;
    for (int i = 0; i < f.n && ns < 16; i++) {
        if (f.states[i] == RSV_STATE_CONNECTING)
            starts[ns++] = f.at[i];
        else
            ck_assert_int_eq(f.states[i], RSV_STATE_TRANSIENT_FAILURE);
    }
    ck_assert_int_ge(ns, 5);
    double expect = 50;
    for (int k = 0; k + 1 < ns && k < 4; k++) {
        uint64_t gap = starts[k + 1] - starts[k];
        ck_assert_msg(gap + 3 >= (uint64_t)(expect * 0.8), "gap %d: %llu ms, expected ~%.0f", k,
                      (unsigned long long)gap, expect);
        ck_assert_msg(gap <= (uint64_t)(expect * 1.2) + SLACK_MS / 3,
                      "gap %d: %llu ms, expected ~%.0f", k, (unsigned long long)gap, expect);
        expect *= 1.6;
    }
    ck_assert_uint_gt(starts[4] - starts[3], starts[1] - starts[0]);
}
END_TEST

START_TEST(test_tcp_ready_then_shutdown)
{
    uint16_t port;
    int lfd = tcp_socket(1, &port);
    ck_assert_int_eq(rsv_loop_watch(f.loop, lfd, RSV_LOOP_READ, accept_and_keep, NULL), 0);
    rsv_service_options o = test_opts(RSV_PROTOCOL_TCP);
    start(port, &o);
    ck_assert(run_until(is_ready, 2000));
    const rsv_subchannel_stats *st = rsv_subchannel_stats_get(f.sc);
    ck_assert_str_eq(st->last_error, "");
    ck_assert_uint_eq(st->connect_attempts, 1);
    ck_assert_int_eq(st->rtt_last_us, -1);
    run_for(100);
    ck_assert_int_eq(f.n, 2);   /* CONNECTING, READY: nothing since */
    rsv_subchannel_probe(f.sc); /* a no-op for protocol tcp */
    ck_assert_uint_eq(st->pings_sent, 0);
    rsv_subchannel_shutdown(f.sc);
    ck_assert(last_is(RSV_STATE_SHUTDOWN));
    rsv_subchannel_shutdown(f.sc); /* reported once */
    rsv_subchannel_connect(f.sc);  /* no-op after SHUTDOWN */
    run_for(100);
    ck_assert_int_eq(f.n, 3);
}
END_TEST

static int tcp_reconnected(void)
{
    return count(RSV_STATE_READY) >= 2;
}

START_TEST(test_tcp_peer_close_reconnects_at_once)
{
    uint16_t port;
    int lfd = tcp_socket(1, &port);
    ck_assert_int_eq(rsv_loop_watch(f.loop, lfd, RSV_LOOP_READ, accept_and_keep, NULL), 0);
    rsv_service_options o = test_opts(RSV_PROTOCOL_TCP);
    o.backoff.initial_ms = 5000; /* a backoff wait would fail the test */
    start(port, &o);
    ck_assert(run_until(is_ready, 2000));
    run_for(150); /* long enough to earn a penalty-free reconnect */
    ck_assert_int_eq(f.n_fds, 2);
    close(f.fds[1]); /* the accepted connection: a clean EOF at the client */
    f.n_fds = 1;
    uint64_t t0 = mono_ms();
    ck_assert(run_until(tcp_reconnected, 2000));
    ck_assert_uint_lt(mono_ms() - t0, 1000);
    ck_assert_int_eq(count(RSV_STATE_TRANSIENT_FAILURE), 0);
    ck_assert_int_eq(f.states[2], RSV_STATE_CONNECTING);
    ck_assert_uint_eq(rsv_subchannel_stats_get(f.sc)->reconnects, 1);
    ck_assert_str_eq(rsv_subchannel_stats_get(f.sc)->last_error, "");
}
END_TEST

/* Time from the first CONNECTING to the first TRANSIENT_FAILURE against a
 * peer that accepts and never sends SETTINGS. */
static uint64_t silent_peer_timeout(uint64_t connect_timeout_ms, uint64_t initial_backoff_ms)
{
    uint16_t port;
    int lfd = tcp_socket(1, &port);
    ck_assert_int_eq(rsv_loop_watch(f.loop, lfd, RSV_LOOP_READ, accept_and_keep, NULL), 0);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    o.connect_timeout_ms = connect_timeout_ms;
    o.backoff.initial_ms = initial_backoff_ms;
    start(port, &o);
    ck_assert(run_until(had_tf, 3000));
    ck_assert_str_eq(rsv_subchannel_stats_get(f.sc)->last_error,
                     "timed out waiting for the server's SETTINGS");
    return f.at[1] - f.at[0];
}

START_TEST(test_connect_timeout)
{
    /* connect_timeout_ms longer than the backoff: it rules.  Loop time is
     * read once per iteration, so a deadline may land a few ms early as
     * seen from the callback's timestamps (more under valgrind). */
    uint64_t took = silent_peer_timeout(200, 50);
    ck_assert_msg(took >= 180 && took < 200 + SLACK_MS, "%llu ms", (unsigned long long)took);
}
END_TEST

START_TEST(test_connect_timeout_at_least_backoff)
{
    /* gRPC: an attempt may take max(backoff deadline, now + connect timeout). */
    uint64_t took = silent_peer_timeout(100, 500);
    ck_assert_msg(took >= 380 && took < 600 + SLACK_MS, "%llu ms", (unsigned long long)took);
}
END_TEST

START_TEST(test_delete_from_callback)
{
    uint16_t port;
    tcp_socket(0, &port);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    f.delete_on = RSV_STATE_TRANSIENT_FAILURE;
    start(port, &o);
    ck_assert(run_until(deleted, 2000));
    run_for(200); /* no timer of the deleted subchannel may fire */
}
END_TEST

START_TEST(test_delete_from_ready_callback)
{
    uint16_t port;
    int lfd = tcp_socket(1, &port);
    ck_assert_int_eq(rsv_loop_watch(f.loop, lfd, RSV_LOOP_READ, accept_and_keep, NULL), 0);
    rsv_service_options o = test_opts(RSV_PROTOCOL_TCP);
    f.delete_on = RSV_STATE_READY;
    start(port, &o);
    ck_assert(run_until(deleted, 2000));
    run_for(100);
}
END_TEST

START_TEST(test_h2_tls_refused)
{
    /* The TLS path starts only after TCP connects; a refused port must still
     * fail cleanly and keep retrying. */
    uint16_t port;
    tcp_socket(0, &port);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2);
    start(port, &o);
    ck_assert(run_until(is_tf, 2000));
    ck_assert_str_eq(rsv_subchannel_stats_get(f.sc)->last_error, "connect: Connection refused");
}
END_TEST

START_TEST(test_h2_tls_against_plaintext)
{
    /* A peer that accepts and closes during the TLS handshake. */
    uint16_t port;
    int lfd = tcp_socket(1, &port);
    ck_assert_int_eq(rsv_loop_watch(f.loop, lfd, RSV_LOOP_READ, accept_and_close, NULL), 0);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2);
    start(port, &o);
    ck_assert(run_until(is_tf, 3000));
    const char *err = rsv_subchannel_stats_get(f.sc)->last_error;
    ck_assert_msg(strncmp(err, "TLS handshake: ", 15) == 0, "last_error: %s", err);
}
END_TEST

/* ---- against h2server ---- */

START_TEST(test_h2c_ready)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {"--name", "alpha", NULL};
    uint16_t port = spawn_h2server(args, NULL);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    start(port, &o);
    ck_assert(run_until(is_ready, 3000));
    const rsv_subchannel_stats *st = rsv_subchannel_stats_get(f.sc);
    ck_assert_uint_gt(st->bytes_in, 0);
    ck_assert_uint_gt(st->bytes_out, 24); /* preface + SETTINGS */
    ck_assert_uint_eq(st->connect_attempts, 1);
    ck_assert_str_eq(st->last_error, "");
    rsv_subchannel_shutdown(f.sc); /* GOAWAY, close, SHUTDOWN */
    ck_assert(last_is(RSV_STATE_SHUTDOWN));
    run_for(100);
    ck_assert_int_eq(f.n, 3);
}
END_TEST

static int two_acks(void)
{
    return rsv_subchannel_stats_get(f.sc)->pings_acked >= 2;
}

static int three_acks(void)
{
    return rsv_subchannel_stats_get(f.sc)->pings_acked >= 3;
}

START_TEST(test_keepalive_rtt)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {NULL};
    uint16_t port = spawn_h2server(args, NULL);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    o.keepalive_time_ms = 100;
    o.keepalive_timeout_ms = 1000;
    start(port, &o);
    ck_assert(run_until(is_ready, 3000));
    const rsv_subchannel_stats *st = rsv_subchannel_stats_get(f.sc);
    ck_assert_int_eq(st->rtt_last_us, -1);
    uint64_t t0 = mono_ms();
    ck_assert(run_until(two_acks, 3000));
    ck_assert_uint_ge(mono_ms() - t0, 150); /* PINGs come every keepalive_time, not sooner */
    ck_assert_int_ge(st->rtt_last_us, 0);
    ck_assert_int_lt(st->rtt_last_us, 1000000);
    ck_assert_int_ge(st->rtt_smoothed_us, 0);
    ck_assert_uint_ge(st->pings_sent, st->pings_acked);

    /* A probe PINGs at once unless a PING is in flight. */
    uint64_t sent = st->pings_sent;
    int in_flight = st->pings_sent > st->pings_acked;
    rsv_subchannel_probe(f.sc);
    ck_assert_uint_eq(st->pings_sent, sent + (in_flight ? 0 : 1));
    rsv_subchannel_probe(f.sc); /* one in flight now: no second PING */
    ck_assert_uint_eq(st->pings_sent, sent + (in_flight ? 0 : 1));
    ck_assert(run_until(three_acks, 3000));
    ck_assert(last_is(RSV_STATE_READY));
    ck_assert_int_eq(f.n, 2);
}
END_TEST

START_TEST(test_stopped_server_fails_keepalive)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {NULL};
    pid_t pid;
    uint16_t port = spawn_h2server(args, &pid);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    o.keepalive_time_ms = 200;
    o.keepalive_timeout_ms = 200;
    start(port, &o);
    ck_assert(run_until(is_ready, 3000));
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    uint64_t t0 = mono_ms();
    ck_assert(run_until(is_tf, 200 + 200 + SLACK_MS));
    uint64_t took = mono_ms() - t0;
    ck_assert_msg(took >= 200, "failed after %llu ms", (unsigned long long)took);
    ck_assert_str_eq(rsv_subchannel_stats_get(f.sc)->last_error, "keepalive ping timeout");
}
END_TEST

static int reconnected_ready(void)
{
    return count(RSV_STATE_READY) >= 2 && last_is(RSV_STATE_READY);
}

/* GOAWAY NO_ERROR after `args`' trigger: READY -> CONNECTING -> READY with
 * no TRANSIENT_FAILURE and no backoff wait. */
static void check_goaway_reconnect(const char *const *args)
{
    uint16_t port = spawn_h2server(args, NULL);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    o.backoff.initial_ms = 5000; /* a backoff wait would fail the test */
    start(port, &o);
    ck_assert(run_until(is_ready, 3000));
    ck_assert(run_until(reconnected_ready, 3000));
    ck_assert_int_eq(count(RSV_STATE_TRANSIENT_FAILURE), 0);
    ck_assert_int_eq(f.states[2], RSV_STATE_CONNECTING);
    ck_assert_uint_lt(f.at[3] - f.at[2], 1000);
    const rsv_subchannel_stats *st = rsv_subchannel_stats_get(f.sc);
    ck_assert_uint_ge(st->goaways, 1);
    ck_assert_uint_ge(st->reconnects, 1);
    ck_assert_str_eq(st->last_error, "");
}

START_TEST(test_goaway_no_error_reconnects)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {"--goaway-after", "300", NULL};
    check_goaway_reconnect(args);
}
END_TEST

START_TEST(test_idle_close_reconnects)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {"--idle-close", "300", NULL};
    check_goaway_reconnect(args);
}
END_TEST

/* grpcio's idle close: GOAWAY INTERNAL_ERROR (2) on a connection without
 * streams.  No stream was lost, so it is a clean end like NO_ERROR. */
START_TEST(test_goaway_error_without_streams_reconnects)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {"--idle-close", "300", "--goaway-code", "2", NULL};
    check_goaway_reconnect(args);
}
END_TEST

/* The same code while the health Watch is open and covered by the GOAWAY's
 * last_stream_id: processed, clean. */
START_TEST(test_goaway_error_streams_processed_reconnects)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {"--goaway-after", "300", "--goaway-code", "2", NULL};
    uint16_t port = spawn_h2server(args, NULL);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    o.backoff.initial_ms = 5000; /* a backoff wait would fail the test */
    o.health_grpc_service = "";
    start(port, &o);
    ck_assert(run_until(is_ready, 3000));
    ck_assert(run_until(reconnected_ready, 3000));
    ck_assert_int_eq(count(RSV_STATE_TRANSIENT_FAILURE), 0);
    ck_assert_str_eq(rsv_subchannel_stats_get(f.sc)->last_error, "");
}
END_TEST

/* last_stream_id 0 while the Watch (stream 1) is open: the server dropped
 * a stream it had received, so the end is a failure (backoff). */
START_TEST(test_goaway_error_stream_lost_is_failure)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {
        "--goaway-after", "300", "--goaway-code", "2", "--goaway-last-id", "0", NULL};
    uint16_t port = spawn_h2server(args, NULL);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    o.health_grpc_service = "";
    start(port, &o);
    ck_assert(run_until(is_ready, 3000));
    ck_assert(run_until(had_tf, 3000));
    ck_assert_str_eq(rsv_subchannel_stats_get(f.sc)->last_error,
                     "GOAWAY INTERNAL_ERROR \"max_age\" from server");
}
END_TEST

START_TEST(test_too_many_pings)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {"--min-ping-interval", "10000", "--ping-strikes", "1", NULL};
    uint16_t port = spawn_h2server(args, NULL);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    o.keepalive_time_ms = 50;
    start(port, &o);
    ck_assert(run_until(is_ready, 3000));
    /* The connection was READY long enough for its attempt deadline to pass:
     * TRANSIENT_FAILURE is followed by CONNECTING at once. */
    ck_assert(run_until(had_tf, 3000));
    const rsv_subchannel_stats *st = rsv_subchannel_stats_get(f.sc);
    ck_assert_str_eq(st->last_error, "GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\" from server");
    ck_assert_uint_ge(st->goaways, 1);
    ck_assert_msg(strstr(f.warn, "too_many_pings") && strstr(f.warn, "using 100 ms"), "warn: %s",
                  f.warn);
}
END_TEST

static int many_attempts(void)
{
    return rsv_subchannel_stats_get(f.sc)->connect_attempts >= 4;
}

START_TEST(test_max_connection_age_stays_ready)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {NULL};
    uint16_t port = spawn_h2server(args, NULL);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    o.max_connection_age_ms = 200;
    start(port, &o);
    ck_assert(run_until(is_ready, 3000));
    ck_assert(run_until(many_attempts, 5000));
    run_for(50);
    /* Connections were replaced, the state never left READY. */
    ck_assert_int_eq(f.n, 2);
    ck_assert(last_is(RSV_STATE_READY));
    ck_assert_uint_eq(rsv_subchannel_stats_get(f.sc)->reconnects, 0);
}
END_TEST

START_TEST(test_h2c_shutdown_from_ready_callback)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {"--goaway-after", "100", NULL};
    uint16_t port = spawn_h2server(args, NULL);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    o.keepalive_time_ms = 20;
    f.shutdown_on = RSV_STATE_READY;
    start(port, &o);
    ck_assert(run_until(is_ready, 3000) || last_is(RSV_STATE_SHUTDOWN));
    run_for(300); /* no keepalive, GOAWAY or reconnect may follow */
    ck_assert_int_eq(f.n, 3);
    ck_assert(last_is(RSV_STATE_SHUTDOWN));
    ck_assert_uint_eq(rsv_subchannel_stats_get(f.sc)->pings_sent, 0);
}
END_TEST

START_TEST(test_h2c_delete_from_ready_callback)
{
    SKIP_WITHOUT_H2SERVER();
    const char *args[] = {NULL};
    uint16_t port = spawn_h2server(args, NULL);
    rsv_service_options o = test_opts(RSV_PROTOCOL_H2C);
    f.delete_on = RSV_STATE_READY; /* inside the SETTINGS handling */
    start(port, &o);
    ck_assert(run_until(deleted, 3000));
    run_for(100);
}
END_TEST

static Suite *backoff_suite(void)
{
    Suite *s = suite_create("backoff");
    TCase *tc = tcase_create("backoff");
    tcase_add_test(tc, test_backoff_first_delay);
    tcase_add_test(tc, test_backoff_growth_and_cap);
    tcase_add_test(tc, test_backoff_reset);
    tcase_add_test(tc, test_backoff_jitter_bounds);
    tcase_add_test(tc, test_backoff_sanitized);
    tcase_add_test(tc, test_state_names);
    suite_add_tcase(s, tc);

    TCase *sub = tcase_create("subchannel");
    tcase_add_checked_fixture(sub, setup, teardown);
    tcase_set_timeout(sub, 30);
    tcase_add_test(sub, test_accept_then_close_is_failure);
    tcase_add_test(sub, test_refused_retries_with_growing_gaps);
    tcase_add_test(sub, test_tcp_ready_then_shutdown);
    tcase_add_test(sub, test_tcp_peer_close_reconnects_at_once);
    tcase_add_test(sub, test_connect_timeout);
    tcase_add_test(sub, test_connect_timeout_at_least_backoff);
    tcase_add_test(sub, test_delete_from_callback);
    tcase_add_test(sub, test_delete_from_ready_callback);
    tcase_add_test(sub, test_h2_tls_refused);
    tcase_add_test(sub, test_h2_tls_against_plaintext);
    tcase_add_test(sub, test_h2_tls_ready);
    tcase_add_test(sub, test_h2_tls_untrusted);
    tcase_add_test(sub, test_h2_tls_without_alpn);
    suite_add_tcase(s, sub);

    TCase *h2 = tcase_create("h2server");
    tcase_add_checked_fixture(h2, setup, teardown);
    tcase_set_timeout(h2, 30);
    tcase_add_test(h2, test_h2c_ready);
    tcase_add_test(h2, test_keepalive_rtt);
    tcase_add_test(h2, test_stopped_server_fails_keepalive);
    tcase_add_test(h2, test_goaway_no_error_reconnects);
    tcase_add_test(h2, test_idle_close_reconnects);
    tcase_add_test(h2, test_goaway_error_without_streams_reconnects);
    tcase_add_test(h2, test_goaway_error_streams_processed_reconnects);
    tcase_add_test(h2, test_goaway_error_stream_lost_is_failure);
    tcase_add_test(h2, test_too_many_pings);
    tcase_add_test(h2, test_max_connection_age_stays_ready);
    tcase_add_test(h2, test_h2c_delete_from_ready_callback);
    tcase_add_test(h2, test_h2c_shutdown_from_ready_callback);
    suite_add_tcase(s, h2);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    SRunner *sr = srunner_create(backoff_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
