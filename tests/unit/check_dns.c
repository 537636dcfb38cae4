/*
 * check_dns.c - dns.h (c-ares on the loop, the TTL cache) and dial.h (happy
 * eyeballs) against a fake DNS server on this test's own loop: a UDP
 * socket on 127.0.0.1 that answers "dual.test" (A 127.0.0.1, AAAA ::1,
 * TTL f.ttl) and never answers anything else.  No other DNS server is
 * asked: the resolver is configured with this one only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "dial.h"
#include "dns.h"
#include "log.h"
#include "loop.h"
#include "subchannel.h"

#define MAX_FDS 16
#define MAX_CALLS 16

typedef struct {
    int status;
    size_t n;
    struct sockaddr_storage addrs[DNS_ADDRS_MAX];
    char error[128];
    uint64_t at;
} call;

static struct {
    rsv_loop *loop;
    rsv_dns *dns;
    int dns_fd;
    uint16_t dns_port;
    uint32_t ttl;
    int queries_a, queries_aaaa, queries_other;
    call calls[MAX_CALLS];
    int n_calls;
    int inside; /* set while the test is inside a call that must not call back */
    int called_inside;
    rsv_dns_lookup *cancel_in_cb; /* the callback cancels this */
    /* dial results */
    int dial_fd;
    int dial_done;
    char dial_error[128];
    uint64_t dial_at;
    int fds[MAX_FDS];
    int n_fds;
    /* subchannel */
    rsv_state states[32];
    int n_states;
} f;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void keep_fd(int fd)
{
    ck_assert_int_lt(f.n_fds, MAX_FDS);
    f.fds[f.n_fds++] = fd;
}

/* ---- the fake DNS server ---- */

static size_t put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

/* Answers dual.test A/AAAA; ignores every other name. */
static void dns_server_cb(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    uint8_t q[512], out[600];
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&peer, &plen);
    if (n < 12)
        return;
    char name[256];
    size_t i = 12, k = 0;
    while (i < (size_t)n && q[i] != 0 && k + q[i] + 1 < sizeof(name)) {
        size_t len = q[i++];
        if (i + len > (size_t)n)
            return;
        if (k)
            name[k++] = '.';
        memcpy(name + k, q + i, len);
        k += len;
        i += len;
    }
    name[k] = '\0';
    if (i + 5 > (size_t)n)
        return;
    i++; /* the root label */
    unsigned qtype = (unsigned)q[i] << 8 | q[i + 1];
    size_t qend = i + 4;
    if (strcmp(name, "dual.test") != 0) {
        f.queries_other++;
        return; /* never answered */
    }
    if (qtype == 1)
        f.queries_a++;
    else if (qtype == 28)
        f.queries_aaaa++;
    memcpy(out, q, qend);
    out[2] = 0x81; /* QR, RD */
    out[3] = 0x80; /* RA, NOERROR */
    size_t o = qend;
    int an = 0;
    if (qtype == 1 || qtype == 28) {
        an = 1;
        o += put16(out + o, 0xc00c); /* the name: a pointer to the question */
        o += put16(out + o, qtype);
        o += put16(out + o, 1);
        o += put16(out + o, f.ttl >> 16);
        o += put16(out + o, f.ttl & 0xffff);
        if (qtype == 1) {
            o += put16(out + o, 4);
            inet_pton(AF_INET, "127.0.0.1", out + o);
            o += 4;
        } else {
            o += put16(out + o, 16);
            inet_pton(AF_INET6, "::1", out + o);
            o += 16;
        }
    }
    put16(out + 6, (unsigned)an);
    put16(out + 8, 0);
    put16(out + 10, 0);
    (void)sendto(fd, out, o, 0, (struct sockaddr *)&peer, plen);
}

static void dns_server_start(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    f.dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(f.dns_fd, 0);
    ck_assert_int_eq(bind(f.dns_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(getsockname(f.dns_fd, (struct sockaddr *)&sin, &len), 0);
    f.dns_port = ntohs(sin.sin_port);
    ck_assert_int_eq(rsv_loop_watch(f.loop, f.dns_fd, RSV_LOOP_READ, dns_server_cb, NULL), 0);
}

static void setup(void)
{
    memset(&f, 0, sizeof(f));
    f.ttl = 60;
    f.dial_fd = -1;
    resolver_log_set_level(getenv("CHECK_DEBUG") ? RESOLVER_LOG_DEBUG : RESOLVER_LOG_ERROR);
    f.loop = rsv_loop_new();
    ck_assert_ptr_nonnull(f.loop);
    dns_server_start();
    char server[32];
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)f.dns_port);
    const char *servers[] = {server};
    /* Short: the unanswered name must time out within a test. */
    rsv_dns_options o = {servers, 1, 200, 2};
    f.dns = rsv_dns_new(f.loop, &o);
    ck_assert_ptr_nonnull(f.dns);
}

static void teardown(void)
{
    rsv_dns_del(f.dns);
    if (f.dial_fd >= 0)
        close(f.dial_fd);
    for (int i = 0; i < f.n_fds; i++)
        close(f.fds[i]);
    rsv_loop_unwatch(f.loop, f.dns_fd);
    close(f.dns_fd);
    rsv_loop_del(f.loop);
}

typedef int (*predicate)(void);

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

/* ---- lookups ---- */

static void lookup_cb(int status, const struct sockaddr_storage *addrs, size_t n, const char *error,
                      void *arg)
{
    if (f.inside)
        f.called_inside = 1;
    ck_assert_int_lt(f.n_calls, MAX_CALLS);
    call *c = &f.calls[f.n_calls++];
    c->status = status;
    c->n = n;
    c->at = mono_ms();
    for (size_t i = 0; i < n && i < DNS_ADDRS_MAX; i++)
        c->addrs[i] = addrs[i];
    snprintf(c->error, sizeof(c->error), "%s", error ? error : "");
    if (f.cancel_in_cb) {
        rsv_dns_cancel(f.cancel_in_cb);
        f.cancel_in_cb = NULL;
    }
}

static rsv_dns_lookup *lookup(const char *name)
{
    f.inside = 1;
    rsv_dns_lookup *l = rsv_dns_lookup_start(f.dns, name, lookup_cb, NULL);
    f.inside = 0;
    ck_assert_ptr_nonnull(l);
    return l;
}

static int one_call(void)
{
    return f.n_calls >= 1;
}

static int two_calls(void)
{
    return f.n_calls >= 2;
}

static int three_calls(void)
{
    return f.n_calls >= 3;
}

static int has_addr(const call *c, int family, const char *text)
{
    for (size_t i = 0; i < c->n; i++) {
        char buf[INET6_ADDRSTRLEN];
        const void *a = family == AF_INET
                            ? (const void *)&((const struct sockaddr_in *)&c->addrs[i])->sin_addr
                            : (const void *)&((const struct sockaddr_in6 *)&c->addrs[i])->sin6_addr;
        if (c->addrs[i].ss_family == family && inet_ntop(family, a, buf, sizeof(buf)) &&
            strcmp(buf, text) == 0)
            return 1;
    }
    return 0;
}

START_TEST(test_lookup_gives_both_families)
{
    lookup("dual.test");
    ck_assert_int_eq(f.n_calls, 0);
    ck_assert(run_until(one_call, 2000));
    ck_assert_int_eq(f.called_inside, 0);
    ck_assert_int_eq(f.calls[0].status, 0);
    ck_assert_uint_eq(f.calls[0].n, 2);
    ck_assert(has_addr(&f.calls[0], AF_INET, "127.0.0.1"));
    ck_assert(has_addr(&f.calls[0], AF_INET6, "::1"));
    ck_assert_int_eq(f.queries_a, 1);
    ck_assert_int_eq(f.queries_aaaa, 1);
}
END_TEST

START_TEST(test_answers_kept_for_their_ttl)
{
    f.ttl = 1;
    lookup("dual.test");
    ck_assert(run_until(one_call, 2000));
    /* Within the TTL: from the cache, and still not inside the call. */
    lookup("dual.test");
    ck_assert_int_eq(f.n_calls, 1);
    ck_assert(run_until(two_calls, 500));
    ck_assert_int_eq(f.called_inside, 0);
    ck_assert_int_eq(f.calls[1].status, 0);
    ck_assert_uint_eq(f.calls[1].n, 2);
    ck_assert_int_eq(f.queries_a, 1);
    ck_assert_uint_eq(rsv_dns_stats_get(f.dns)->cache_hits, 1);
    /* After it: asked again. */
    run_for(1100);
    lookup("dual.test");
    ck_assert(run_until(three_calls, 2000));
    ck_assert_int_eq(f.calls[2].status, 0);
    ck_assert_int_eq(f.queries_a, 2);
    ck_assert_int_eq(f.queries_aaaa, 2);
}
END_TEST

START_TEST(test_lookups_of_a_name_share_one_query)
{
    lookup("dual.test");
    lookup("dual.test");
    lookup("dual.test");
    ck_assert(run_until(three_calls, 2000));
    ck_assert_int_eq(f.queries_a, 1);
    ck_assert_int_eq(f.queries_aaaa, 1);
    ck_assert_uint_eq(rsv_dns_stats_get(f.dns)->joined, 2);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(f.calls[i].status, 0);
}
END_TEST

START_TEST(test_unanswered_name_times_out_without_blocking)
{
    uint64_t t0 = mono_ms();
    lookup("never.test");
    ck_assert_uint_lt(mono_ms() - t0, 50); /* the call itself does not wait */
    ck_assert(run_until(one_call, 3000));
    ck_assert_int_eq(f.calls[0].status, RESOLVER_ERR_TIMEOUT);
    ck_assert_str_eq(f.calls[0].error, "Timeout while contacting DNS servers");
    ck_assert_int_gt(f.queries_other, 0);
    ck_assert_uint_eq(rsv_dns_stats_get(f.dns)->failures, 1);
    /* A timeout is not kept: the next lookup asks again. */
    int before = f.queries_other;
    lookup("never.test");
    run_for(50);
    ck_assert_int_gt(f.queries_other, before);
}
END_TEST

START_TEST(test_cancelled_lookup_is_not_called_and_its_answer_kept)
{
    rsv_dns_lookup *l = lookup("dual.test");
    rsv_dns_cancel(l);
    run_for(300);
    ck_assert_int_eq(f.n_calls, 0);
    ck_assert_int_eq(f.queries_a, 1); /* the query still ran */
    lookup("dual.test");
    ck_assert(run_until(one_call, 500));
    ck_assert_int_eq(f.queries_a, 1);
    ck_assert_uint_eq(rsv_dns_stats_get(f.dns)->cache_hits, 1);
}
END_TEST

START_TEST(test_callback_cancels_another_waiter)
{
    lookup("dual.test");
    f.cancel_in_cb = lookup("dual.test");
    lookup("dual.test");
    ck_assert(run_until(two_calls, 2000));
    run_for(100);
    ck_assert_int_eq(f.n_calls, 2); /* the second one was cancelled by the first's callback */
}
END_TEST

/* /etc/hosts answers inside ares_getaddrinfo: still never inside the call. */
START_TEST(test_hosts_file_answer_not_inside_the_call)
{
    lookup("localhost");
    ck_assert_int_eq(f.n_calls, 0);
    ck_assert(run_until(one_call, 2000));
    ck_assert_int_eq(f.called_inside, 0);
    ck_assert_int_eq(f.calls[0].status, 0);
    ck_assert(has_addr(&f.calls[0], AF_INET, "127.0.0.1"));
}
END_TEST

START_TEST(test_server_syntax)
{
    ck_assert(rsv_dns_server_valid("127.0.0.1"));
    ck_assert(rsv_dns_server_valid("127.0.0.1:5353"));
    ck_assert(rsv_dns_server_valid("::1"));
    ck_assert(rsv_dns_server_valid("[::1]:53"));
    ck_assert(rsv_dns_server_valid("[fe80::1]"));
    ck_assert(!rsv_dns_server_valid(""));
    ck_assert(!rsv_dns_server_valid("dns.example"));
    ck_assert(!rsv_dns_server_valid("127.0.0.1:"));
    ck_assert(!rsv_dns_server_valid("127.0.0.1:0"));
    ck_assert(!rsv_dns_server_valid("127.0.0.1:65536"));
    ck_assert(!rsv_dns_server_valid("[127.0.0.1]:53"));
    ck_assert(!rsv_dns_server_valid("[::1]x"));
    ck_assert(!rsv_dns_server_valid("::1:53x"));
}
END_TEST

START_TEST(test_configure_switches_servers)
{
    lookup("dual.test");
    ck_assert(run_until(one_call, 2000));
    /* The same server again, as a reload would: the cache is forgotten. */
    char server[32];
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)f.dns_port);
    const char *servers[] = {server};
    rsv_dns_options o = {servers, 1, 200, 2};
    lookup("dual.test"); /* answered from the cache, soon */
    ck_assert_int_eq(rsv_dns_configure(f.dns, &o), 0);
    ck_assert(run_until(two_calls, 2000));
    lookup("dual.test");
    ck_assert(run_until(three_calls, 2000));
    ck_assert_int_eq(f.queries_a, 2);
    const char *bad[] = {"not-an-ip"};
    rsv_dns_options b = {bad, 1, 0, 0};
    ck_assert_int_eq(rsv_dns_configure(f.dns, &b), RESOLVER_ERR_INVALID);
}
END_TEST

/* A reload while a query runs: it is asked again of the new servers. */
START_TEST(test_configure_requeries_in_flight)
{
    lookup("never.test");
    run_for(20);
    char server[32];
    snprintf(server, sizeof(server), "127.0.0.1:%u", (unsigned)f.dns_port);
    const char *servers[] = {server};
    rsv_dns_options o = {servers, 1, 200, 2};
    int before = f.queries_other;
    ck_assert_int_eq(rsv_dns_configure(f.dns, &o), 0);
    run_for(20);
    ck_assert_int_gt(f.queries_other, before);
    ck_assert_int_eq(f.n_calls, 0);
    ck_assert(run_until(one_call, 3000));
    ck_assert_int_eq(f.calls[0].status, RESOLVER_ERR_TIMEOUT);
}
END_TEST

/* ---- dial ---- */

static void dial_cb(int fd, const char *error, void *arg)
{
    if (f.inside)
        f.called_inside = 1;
    f.dial_done = 1;
    f.dial_fd = fd;
    f.dial_at = mono_ms();
    snprintf(f.dial_error, sizeof(f.dial_error), "%s", error ? error : "");
}

static int dialed(void)
{
    return f.dial_done;
}

static rsv_dial *dial(rsv_dns *dns, const char *host, uint16_t port)
{
    f.inside = 1;
    rsv_dial *d = rsv_dial_start(f.loop, dns, host, port, dial_cb, NULL);
    f.inside = 0;
    ck_assert_ptr_nonnull(d);
    return d;
}

/* A listening socket on loopback (IPv4 or IPv6), port in *port. */
static int listener(int family, int backlog, uint16_t *port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*in4);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        len = sizeof(*in6);
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    if (*port) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (family == AF_INET)
            ((struct sockaddr_in *)&ss)->sin_port = htons(*port);
        else
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons(*port);
    }
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, len), 0);
    if (backlog >= 0)
        ck_assert_int_eq(listen(fd, backlog), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
    keep_fd(fd);
    return fd;
}

static void addr_of(struct sockaddr_storage *ss, int family, uint16_t port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in4->sin_port = htons(port);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons(port);
    }
}

/* A port on [::1] whose connects hang: backlog 0, its one slot taken, so
 * further SYNs are dropped (no RST) and a connect waits. */
static uint16_t blackhole_v6(void)
{
    uint16_t port = 0;
    listener(AF_INET6, 0, &port);
    struct sockaddr_storage ss;
    addr_of(&ss, AF_INET6, port);
    for (int i = 0; i < 2; i++) {
        int c = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(c, 0);
        (void)connect(c, (struct sockaddr *)&ss, sizeof(struct sockaddr_in6));
        keep_fd(c);
    }
    usleep(100000);
    return port;
}

/* A loopback port nothing listens on (bound, so nobody else takes it). */
static uint16_t refusing_port(void)
{
    uint16_t port = 0;
    listener(AF_INET, -1, &port);
    return port;
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int peer_is(int fd, int family)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    return getpeername(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == family;
}

START_TEST(test_interleave)
{
    struct sockaddr_storage a[5];
    int fam[5] = {AF_INET6, AF_INET6, AF_INET6, AF_INET, AF_INET};
    for (int i = 0; i < 5; i++)
        addr_of(&a[i], fam[i], (uint16_t)(i + 1));
    rsv_dial_interleave(a, 5);
    /* v6 1, v4 4, v6 2, v4 5, v6 3 */
    const int want_family[5] = {AF_INET6, AF_INET, AF_INET6, AF_INET, AF_INET6};
    const int want_port[5] = {1, 4, 2, 5, 3};
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(a[i].ss_family, want_family[i]);
        uint16_t p = a[i].ss_family == AF_INET ? ((struct sockaddr_in *)&a[i])->sin_port
                                               : ((struct sockaddr_in6 *)&a[i])->sin6_port;
        ck_assert_int_eq(ntohs(p), want_port[i]);
    }
}
END_TEST

START_TEST(test_dial_numeric_skips_dns)
{
    uint16_t port = 0;
    listener(AF_INET, 8, &port);
    dial(f.dns, "127.0.0.1", port);
    ck_assert(run_until(dialed, 2000));
    ck_assert_int_eq(f.called_inside, 0);
    ck_assert_int_ge(f.dial_fd, 0);
    ck_assert_uint_eq(rsv_dns_stats_get(f.dns)->queries, 0);
    ck_assert_int_eq(f.queries_a + f.queries_aaaa + f.queries_other, 0);
    close(f.dial_fd);
    /* IPv6 literal, and without any resolver at all. */
    f.dial_fd = -1;
    f.dial_done = 0;
    uint16_t p6 = 0;
    listener(AF_INET6, 8, &p6);
    dial(NULL, "::1", p6);
    ck_assert(run_until(dialed, 2000));
    ck_assert_int_ge(f.dial_fd, 0);
    ck_assert(peer_is(f.dial_fd, AF_INET6));
}
END_TEST

START_TEST(test_dial_name_without_resolver)
{
    dial(NULL, "dual.test", 80);
    ck_assert_int_eq(f.dial_done, 0);
    ck_assert(run_until(dialed, 500));
    ck_assert_int_eq(f.called_inside, 0);
    ck_assert_int_eq(f.dial_fd, -1);
    ck_assert_str_eq(f.dial_error, "resolve dual.test: no DNS resolver here");
}
END_TEST

/* dual.test is ::1 and 127.0.0.1; only 127.0.0.1 listens. */
START_TEST(test_dial_tries_every_address)
{
    uint16_t port = 0;
    listener(AF_INET, 8, &port); /* nothing is on [::1] at that port */
    dial(f.dns, "dual.test", port);
    ck_assert(run_until(dialed, 2000));
    ck_assert_msg(f.dial_fd >= 0, "%s", f.dial_error);
    ck_assert(peer_is(f.dial_fd, AF_INET));
}
END_TEST

START_TEST(test_dial_unresolvable)
{
    int fds = open_fds();
    dial(f.dns, "never.test", 80);
    ck_assert(run_until(dialed, 3000));
    ck_assert_int_eq(f.dial_fd, -1);
    ck_assert_str_eq(f.dial_error, "resolve never.test: Timeout while contacting DNS servers");
    run_for(20);
    ck_assert_int_le(open_fds(), fds + 1); /* c-ares may keep its UDP socket */
}
END_TEST

/* The first address hangs: the second starts DIAL_STAGGER_MS later and
 * wins; the first is closed. */
START_TEST(test_dial_stagger)
{
    struct sockaddr_storage a[2];
    uint16_t ok = 0;
    listener(AF_INET, 8, &ok);
    addr_of(&a[0], AF_INET6, blackhole_v6());
    addr_of(&a[1], AF_INET, ok);
    int fds = open_fds();
    rsv_loop_update_time(f.loop); /* the stagger counts from the loop's clock */
    uint64_t t0 = mono_ms();
    f.inside = 1;
    rsv_dial *d = rsv_dial_addrs(f.loop, a, 2, dial_cb, NULL);
    f.inside = 0;
    ck_assert_ptr_nonnull(d);
    run_for(100);
    ck_assert_int_eq(f.dial_done, 0);
    ck_assert_uint_eq(rsv_dial_attempts(d), 1);
    ck_assert(run_until(dialed, 2000));
    uint64_t took = f.dial_at - t0;
    ck_assert_msg(took >= DIAL_STAGGER_MS - 10 && took < 1000, "connected after %llu ms",
                  (unsigned long long)took);
    ck_assert_int_ge(f.dial_fd, 0);
    ck_assert(peer_is(f.dial_fd, AF_INET));
    ck_assert_int_eq(open_fds(), fds + 1); /* the winner only: the hung attempt is closed */
}
END_TEST

/* A refused attempt starts the next at once, not after the stagger. */
START_TEST(test_dial_failure_moves_on_at_once)
{
    struct sockaddr_storage a[2];
    uint16_t ok = 0;
    listener(AF_INET, 8, &ok);
    addr_of(&a[0], AF_INET, refusing_port());
    addr_of(&a[1], AF_INET, ok);
    uint64_t t0 = mono_ms();
    ck_assert_ptr_nonnull(rsv_dial_addrs(f.loop, a, 2, dial_cb, NULL));
    ck_assert(run_until(dialed, 2000));
    ck_assert_int_ge(f.dial_fd, 0);
    ck_assert_uint_lt(f.dial_at - t0, DIAL_STAGGER_MS - 50);
}
END_TEST

START_TEST(test_dial_all_fail)
{
    struct sockaddr_storage a[2];
    addr_of(&a[0], AF_INET, refusing_port());
    addr_of(&a[1], AF_INET, refusing_port());
    int fds = open_fds();
    ck_assert_ptr_nonnull(rsv_dial_addrs(f.loop, a, 2, dial_cb, NULL));
    ck_assert(run_until(dialed, 2000));
    ck_assert_int_eq(f.dial_fd, -1);
    ck_assert_str_eq(f.dial_error, "connect: Connection refused (all 2 addresses)");
    ck_assert_int_eq(open_fds(), fds);
    f.dial_done = 0;
    ck_assert_ptr_nonnull(rsv_dial_addrs(f.loop, a, 1, dial_cb, NULL));
    ck_assert(run_until(dialed, 2000));
    ck_assert_str_eq(f.dial_error, "connect: Connection refused");
}
END_TEST

START_TEST(test_dial_cancel)
{
    struct sockaddr_storage a[2];
    addr_of(&a[0], AF_INET6, blackhole_v6());
    addr_of(&a[1], AF_INET6, blackhole_v6());
    int fds = open_fds();
    rsv_dial *d = rsv_dial_addrs(f.loop, a, 2, dial_cb, NULL);
    run_for(300); /* both attempts started */
    ck_assert_uint_eq(rsv_dial_attempts(d), 2);
    ck_assert_int_eq(open_fds(), fds + 2);
    rsv_dial_cancel(d);
    ck_assert_int_eq(open_fds(), fds);
    run_for(100);
    ck_assert_int_eq(f.dial_done, 0);
    /* Cancelled while resolving: no call either. */
    d = dial(f.dns, "never.test", 80);
    ck_assert(rsv_dial_resolving(d));
    rsv_dial_cancel(d);
    run_for(600);
    ck_assert_int_eq(f.dial_done, 0);
}
END_TEST

/* ---- a subchannel to a name that never resolves ---- */

static void sc_cb(rsv_subchannel *sc, rsv_state old_state, rsv_state new_state, void *arg)
{
    if (f.n_states < 32)
        f.states[f.n_states++] = new_state;
}

static int sc_failed_twice(void)
{
    int n = 0;
    for (int i = 0; i < f.n_states; i++)
        n += f.states[i] == RSV_STATE_TRANSIENT_FAILURE;
    return n >= 2;
}

START_TEST(test_subchannel_unresolvable_backs_off)
{
    rsv_service_options o;
    memset(&o, 0, sizeof(o));
    o.protocol = RSV_PROTOCOL_H2C;
    o.connect_timeout_ms = 300;
    o.backoff = (rsv_backoff_config){300, 1.6, 0.0, 2000};
    rsv_subchannel *sc = rsv_subchannel_new(f.loop, f.dns, "never.test", 80, &o, sc_cb, NULL);
    ck_assert_ptr_nonnull(sc);
    uint64_t t0 = mono_ms();
    rsv_subchannel_connect(sc);
    ck_assert(run_until(sc_failed_twice, 3000));
    /* Attempt 1 waits out its deadline (300 ms), attempt 2 waits for max(that
     * deadline, now + 480 ms of backoff) first. */
    ck_assert_uint_ge(mono_ms() - t0, 600);
    const rsv_subchannel_stats *st = rsv_subchannel_stats_get(sc);
    /* The deadline, or c-ares' own timeout of the query attempt 2 joined. */
    ck_assert_msg(strncmp(st->last_error, "resolve never.test: ", 20) == 0, "%s", st->last_error);
    ck_assert_uint_eq(st->connect_attempts, 2);
    rsv_subchannel_del(sc);
}
END_TEST

static Suite *dns_suite(void)
{
    Suite *s = suite_create("dns");
    TCase *tc = tcase_create("dns");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_lookup_gives_both_families);
    tcase_add_test(tc, test_answers_kept_for_their_ttl);
    tcase_add_test(tc, test_lookups_of_a_name_share_one_query);
    tcase_add_test(tc, test_unanswered_name_times_out_without_blocking);
    tcase_add_test(tc, test_cancelled_lookup_is_not_called_and_its_answer_kept);
    tcase_add_test(tc, test_callback_cancels_another_waiter);
    tcase_add_test(tc, test_hosts_file_answer_not_inside_the_call);
    tcase_add_test(tc, test_server_syntax);
    tcase_add_test(tc, test_configure_switches_servers);
    tcase_add_test(tc, test_configure_requeries_in_flight);
    suite_add_tcase(s, tc);
    TCase *dl = tcase_create("dial");
    tcase_add_checked_fixture(dl, setup, teardown);
    tcase_set_timeout(dl, 20);
    tcase_add_test(dl, test_interleave);
    tcase_add_test(dl, test_dial_numeric_skips_dns);
    tcase_add_test(dl, test_dial_name_without_resolver);
    tcase_add_test(dl, test_dial_tries_every_address);
    tcase_add_test(dl, test_dial_unresolvable);
    tcase_add_test(dl, test_dial_stagger);
    tcase_add_test(dl, test_dial_failure_moves_on_at_once);
    tcase_add_test(dl, test_dial_all_fail);
    tcase_add_test(dl, test_dial_cancel);
    tcase_add_test(dl, test_subchannel_unresolvable_backs_off);
    suite_add_tcase(s, dl);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dns_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
