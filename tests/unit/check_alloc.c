/*
 * check_alloc.c - the library under an allocator that fails the n-th
 * allocation, for every n.
 *
 * This program defines malloc, calloc, realloc, free (and the strdup and
 * aligned families) itself; they forward to glibc's __libc_* entry points.
 * The library is linked in statically (libresolver_core.la is a
 * convenience library) and jansson, libcurl, nghttp2, OpenSSL and glibc
 * itself resolve malloc to the executable's, so every allocation made in
 * this process goes through the wrappers.  Armed with n, the n-th
 * allocation after arming returns NULL (once: later ones succeed, so the
 * cleanup paths run as they would in real life).  While a case runs, every
 * pointer allocated is remembered in a fixed table (no allocation of our
 * own) and forgotten when freed: what is left at the end is a leak, and
 * where it was allocated is printed.
 *
 * Each case (a constructor or a decoder, with whatever it needs to free)
 * runs once to warm up (one-time initialisation: curl, OpenSSL, jansson's
 * hash seed), once unarmed, then with n = 1, 2, ... until a run completes
 * without reaching allocation n.  Every armed run must leak nothing and
 * either return an error code of resolver.h or succeed with exactly the
 * result of the unarmed run (some callers recover: glibc's qsort and stdio
 * fall back to unbuffered ways, the engine keeps its old picker); success
 * with a different result is a failure, except for jansson's lexer (see
 * run_case).  The counts of each outcome are printed per case.
 *
 * Nothing stays armed between tests (CK_FORK=no runs them in one process):
 * each case disarms before its assertions.  valgrind replaces malloc in the
 * executable too unless run with --soname-synonyms=somalloc=nouserintercepts;
 * without it the program notices that its wrappers are bypassed and exits
 * 77 (skipped).  Under ASan (gcc, libasan) the wrappers take precedence
 * over ASan's allocator, which then sees none of these allocations.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cache.h"
#include "config.h"
#include "etcdproto.h"
#include "picker.h"
#include "registry.h"
#include "instance.h"
#include "resolver.h"

/* ---- the allocator ---- */

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t size);

#define LIVE_SLOTS (1u << 16) /* power of two; far above what one case keeps */
#define TOMB ((void *)1)

static atomic_flag lock = ATOMIC_FLAG_INIT;
/* To see who makes allocation N of a case: CK_FORK=no gdb -ex 'break must_fail
 * if current_case != 0 && fail_at == N && counted == N - 1 && $_streq(current_case,
 * "NAME")' -ex run -ex bt tests/unit/check_alloc */
static const char *volatile current_case;
static long fail_at;      /* 0: disarmed; else the allocation number that fails */
static long counted;      /* allocations since armed */
static int hit;           /* the armed allocation was reached */
static void *fail_caller; /* the code that made the allocation that failed */
static int tracking;      /* remember live pointers */
static size_t n_live;     /* pointers remembered and not yet freed */
static int live_overflow;
static void *live[LIVE_SLOTS];
static void *live_by[LIVE_SLOTS]; /* who allocated it: for the leak report */

static void acquire(void)
{
    while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire))
        ;
}

static void release(void)
{
    atomic_flag_clear_explicit(&lock, memory_order_release);
}

static size_t slot_of(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= 0xed5ad4bbu;
    x ^= x >> 11;
    return (size_t)x & (LIVE_SLOTS - 1);
}

/* Under the lock. */
static void remember(void *p, void *caller)
{
    if (!tracking || !p)
        return;
    size_t i = slot_of(p);
    for (size_t probes = 0; probes < LIVE_SLOTS; probes++, i = (i + 1) & (LIVE_SLOTS - 1)) {
        if (live[i] == NULL || live[i] == TOMB) {
            live[i] = p;
            live_by[i] = caller;
            n_live++;
            return;
        }
    }
    live_overflow = 1;
}

/* Under the lock.  1 if p was remembered. */
static int forget(void *p)
{
    if (!p || n_live == 0)
        return 0;
    size_t i = slot_of(p);
    for (size_t probes = 0; probes < LIVE_SLOTS && live[i];
         probes++, i = (i + 1) & (LIVE_SLOTS - 1)) {
        if (live[i] == p) {
            live[i] = TOMB;
            n_live--;
            return 1;
        }
    }
    return 0;
}

/* 1 if this allocation must fail; `caller` is remembered then.  Under the
 * lock. */
static int must_fail(void *caller)
{
    if (!fail_at)
        return 0;
    if (++counted == fail_at) {
        hit = 1;
        fail_caller = caller;
        return 1;
    }
    return 0;
}

/* `caller`: the code that asked (for the reports). */
static void *alloc_from(size_t size, void *caller)
{
    acquire();
    void *p = must_fail(caller) ? NULL : __libc_malloc(size);
    remember(p, caller);
    release();
    if (!p)
        errno = ENOMEM;
    return p;
}

void *malloc(size_t size)
{
    return alloc_from(size, __builtin_return_address(0));
}

void *calloc(size_t n, size_t size)
{
    acquire();
    void *p = must_fail(__builtin_return_address(0)) ? NULL : __libc_calloc(n, size);
    remember(p, __builtin_return_address(0));
    release();
    if (!p)
        errno = ENOMEM;
    return p;
}

void *realloc(void *old, size_t size)
{
    if (!old)
        return alloc_from(size, __builtin_return_address(0));
    if (size == 0) {
        free(old);
        return NULL;
    }
    acquire();
    void *p = must_fail(__builtin_return_address(0)) ? NULL : __libc_realloc(old, size);
    /* Memory of the case moves with its block; memory from before the case
     * stays the caller's wherever it moves. */
    if (p && forget(old))
        remember(p, __builtin_return_address(0));
    release();
    if (!p)
        errno = ENOMEM;
    return p;
}

void free(void *p)
{
    if (!p)
        return;
    acquire();
    forget(p);
    __libc_free(p);
    release();
}

char *strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = alloc_from(n, __builtin_return_address(0));
    return p ? memcpy(p, s, n) : NULL;
}

char *strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *p = alloc_from(n + 1, __builtin_return_address(0));
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* The aligned family, so that no allocation of this process comes from
 * another allocator (under ASan that one would be ASan's, and our free
 * would be handed its memory). */
static void *aligned(size_t align, size_t size)
{
    acquire();
    void *p = must_fail(__builtin_return_address(0)) ? NULL : __libc_memalign(align, size);
    remember(p, __builtin_return_address(0));
    release();
    return p;
}

int posix_memalign(void **out, size_t align, size_t size)
{
    void *p = aligned(align, size);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t size)
{
    void *p = aligned(align, size);
    if (!p)
        errno = ENOMEM;
    return p;
}

void *memalign(size_t align, size_t size); /* <malloc.h> would declare ours twice */
void *memalign(size_t align, size_t size)
{
    return aligned_alloc(align, size);
}

void *valloc(size_t size)
{
    return aligned_alloc((size_t)sysconf(_SC_PAGESIZE), size);
}

/* Starts counting: allocation n fails (0: none) and live pointers are
 * tracked from now on. */
static void arm(long n)
{
    acquire();
    memset(live, 0, sizeof(live));
    n_live = 0;
    live_overflow = 0;
    counted = 0;
    hit = 0;
    fail_caller = NULL;
    fail_at = n;
    tracking = 1;
    release();
}

/* Stops counting; returns the number of pointers allocated since arm() and
 * still live, and whether allocation n was reached. */
static size_t disarm(int *was_hit)
{
    acquire();
    fail_at = 0;
    tracking = 0;
    *was_hit = hit;
    size_t n = n_live;
    if (live_overflow)
        n = (size_t)-1;
    release();
    return n;
}

/* ---- the driver ---- */

typedef int (*alloc_case)(void *arg);

/* What a case returns when the call succeeded but its result differs from
 * the one of an unarmed run (data lost or changed, a reference not
 * dropped): never a resolver.h code. */
#define CASE_WRONG 1

static int is_resolver_error(int rc)
{
    return rc <= -500 && rc >= -599;
}

/* 1 if the code that called the failed allocation is in the shared object
 * whose file name contains `lib`. */
static int failed_in(const char *lib)
{
    Dl_info info;
    return fail_caller && dladdr(fail_caller, &info) && info.dli_fname &&
           strstr(info.dli_fname, lib) != NULL;
}

/* Prints where the allocations still live after a run were made:
 * `addr2line -f -e FILE OFFSET` names the function. */
static void report_leaks(const char *name, long n)
{
    int shown = 0;
    for (size_t i = 0; i < LIVE_SLOTS && shown < 10; i++) {
        if (!live[i] || live[i] == TOMB)
            continue;
        Dl_info info;
        if (dladdr(live_by[i], &info) && info.dli_fname)
            fprintf(stderr, "# %s, allocation %ld failed: %p still allocated, made at %s+0x%lx\n",
                    name, n, live[i], info.dli_fname,
                    (unsigned long)((char *)live_by[i] - (char *)info.dli_fbase));
        else
            fprintf(stderr, "# %s, allocation %ld failed: %p still allocated, made at %p\n", name,
                    n, live[i], live_by[i]);
        shown++;
    }
}

typedef struct {
    long allocations; /* allocations one run makes */
    long errors;      /* armed runs that returned an error */
    long recovered;   /* armed runs that succeeded with the right result */
    long jansson;     /* armed runs that jansson's lexer got wrong (see below) */
} case_stats;

/* Runs fn once to warm up, once unarmed (it must return `expect` and leak
 * nothing), then with allocation 1, 2, ... failing until a run does not
 * reach the armed allocation.  An armed run must return an error of
 * resolver.h, or succeed with the right result (the caller recovered:
 * glibc's qsort and stdio fall back when their buffer cannot be had), and
 * leak nothing.
 *
 * One exception, outside our control: jansson's lexer (2.14, load.c
 * lex_save) ignores the failure to grow its token buffer and drops the
 * byte, so json_loadb may succeed with one character of a long token
 * missing.  Such a run (wrong result, the failed allocation made by
 * libjansson) is counted and skipped.  When the dropped byte is the
 * closing quote of a string token, lex_scan_string reads and writes past
 * its buffers, so no input of these tests holds a JSON string whose raw
 * length with its quotes is 16, 32, 64 ... bytes (jansson_safe). */
static case_stats run_case(const char *name, alloc_case fn, void *arg, int expect)
{
    case_stats st = {0, 0, 0, 0};
    int was_hit;
    current_case = name;
    /* One-time initialisations (curl, OpenSSL, jansson's hash seed) stay
     * allocated for the life of the process: not in the window. */
    int rc = fn(arg);
    ck_assert_msg(rc == expect, "%s: returned %d (%s), expected %d", name, rc,
                  rc == CASE_WRONG ? "wrong result" : resolver_strerror(rc), expect);
    arm(0);
    rc = fn(arg);
    size_t leaked = disarm(&was_hit);
    ck_assert_msg(rc == expect, "%s: returned %d, then %d", name, expect, rc);
    ck_assert_msg(leaked == 0, "%s: %zu allocations leaked without any failure", name, leaked);
    for (long n = 1;; n++) {
        arm(n);
        rc = fn(arg);
        leaked = disarm(&was_hit);
        ck_assert_msg(leaked != (size_t)-1, "%s: the live-pointer table overflowed", name);
        if (leaked)
            report_leaks(name, n);
        ck_assert_msg(leaked == 0, "%s: allocation %ld failed: %zu allocations leaked (rc %d)",
                      name, n, leaked, rc);
        if (!was_hit) {
            ck_assert_msg(rc == expect, "%s: unarmed run returned %d, then %d", name, expect, rc);
            st.allocations = n - 1;
            break;
        }
        if (is_resolver_error(rc))
            st.errors++;
        else if (rc == expect)
            st.recovered++;
        else if (rc == CASE_WRONG && failed_in("libjansson"))
            st.jansson++;
        else
            ck_abort_msg("%s: allocation %ld failed but it returned %d (%s)", name, n, rc,
                         rc == CASE_WRONG ? "success with a wrong result" : "not an error code");
    }
    current_case = NULL;
    fprintf(stderr,
            "# %s: %ld allocations, each failed once: %ld errors, %ld recovered, "
            "%ld jansson lexer skips; no leak\n",
            name, st.allocations, st.errors, st.recovered, st.jansson);
    return st;
}

/* Fails the test if `json` holds a string token that jansson's lexer would
 * overrun when the growth of its token buffer fails (see run_case). */
static void jansson_safe(const char *what, const char *json)
{
    for (const char *p = json; *p; p++) {
        if (*p != '"')
            continue;
        const char *q = p + 1;
        while (*q && *q != '"')
            q += *q == '\\' && q[1] ? 2 : 1;
        size_t len = (size_t)(q - p) + 1; /* with both quotes */
        ck_assert_msg(len < 16 || (len & (len - 1)) != 0,
                      "%s: the string at offset %zu is %zu bytes with its quotes; jansson's "
                      "lexer overruns its buffer on such a token when an allocation fails "
                      "(see run_case): change the test input",
                      what, (size_t)(p - json), len);
        if (!*q)
            break;
        p = q;
    }
}

/* ---- the cases ---- */

/* Every key of the README's configuration, services overriding defaults. */
static const char *full_config =
    "{\n"
    "  \"etcd\": { \"endpoints\": [\"http://127.0.0.1:2379\", \"http://10.1.2.3:2379\"],\n"
    "            \"username\": \"u\", \"password_file\": \"/etc/rd/etcd.pw\", \"ca_file\": \"\",\n"
    "            \"cert_file\": \"\", \"key_file\": \"\", \"dial_timeout_ms\": 2000 },\n"
    "  \"socket\": { \"path\": \"/tmp/x.sock\", \"mode\": \"0660\", \"group\": \"\", "
    "\"admin_group\": \"\" },\n"
    "  \"metrics\": { \"listen\": \"\" },\n"
    "  \"zone\": \"a\", \"cache_file\": \"\", \"on_demand_services_max\": 256,\n"
    "  \"defaults\": { \"format\": \"auto\", \"policy\": \"round_robin\", \"protocol\": \"h2c\",\n"
    "                \"keepalive_time_ms\": 30000, \"keepalive_timeout_ms\": 10000,\n"
    "                \"connect_timeout_ms\": 20000,\n"
    "                \"backoff\": { \"initial_ms\": 1000, \"multiplier\": 1.6, \"jitter\": 0.2,\n"
    "                             \"max_ms\": 120000 },\n"
    "                \"drain_timeout_ms\": 30000, \"max_connection_age_ms\": 0,\n"
    "                \"ticket_timeout_ms\": 60000, \"max_outstanding\": 0,\n"
    "                \"health_check\": { \"grpc_service\": null } },\n"
    "  \"services\": [\n"
    "    { \"name\": \"user.rpc\", \"prefix\": \"user.rpc/\", \"policy\": \"least_request\" },\n"
    "    { \"name\": \"order.rpc\", \"policy\": \"weighted_round_robin\", \"max_outstanding\": "
    "100,\n"
    "      \"backoff\": { \"max_ms\": 30000 }, \"drain_timeout_ms\": 10000,\n"
    "      \"health_check\": { \"grpc_service\": \"order\" } },\n"
    "    { \"name\": \"ring\", \"policy\": \"ring_hash\", \"format\": \"kitex\" },\n"
    "    { \"name\": \"first\", \"policy\": \"pick_first\", \"protocol\": \"tcp\" },\n"
    "    { \"name\": \"rand\", \"policy\": \"random\", \"format\": \"native\" }\n"
    "  ]\n"
    "}\n";

static int case_config_load(void *arg)
{
    const resolver_config *want = arg;
    resolver_config *cfg = NULL;
    char err[256];
    int rc = resolver_config_load_string(full_config, &cfg, err, sizeof(err));
    if (rc == 0) {
        if (!rsv_config_equal(cfg, want))
            rc = CASE_WRONG;
        resolver_config_free(cfg);
    } else if (cfg) {
        rc = CASE_WRONG; /* an error must leave *out NULL */
    }
    return rc;
}

static int case_config_default(void *arg)
{
    (void)arg;
    resolver_config *cfg = NULL;
    int rc = resolver_config_new_default(&cfg);
    if (rc != 0)
        return cfg ? CASE_WRONG : rc;
    rc = resolver_config_set_endpoints(cfg, "http://10.0.0.1:2379, http://10.0.0.2:2379,"
                                            "http://10.0.0.3:2379");
    if (rc == 0 && (cfg->etcd.n_endpoints != 3 ||
                    strcmp(cfg->etcd.endpoints[1], "http://10.0.0.2:2379") != 0 ||
                    strcmp(cfg->etcd.endpoints[2], "http://10.0.0.3:2379") != 0))
        rc = CASE_WRONG;
    /* A failed set_endpoints leaves the old list. */
    if (rc != 0 && (cfg->etcd.n_endpoints != 1 ||
                    strcmp(cfg->etcd.endpoints[0], "http://127.0.0.1:2379") != 0))
        rc = CASE_WRONG;
    resolver_config_free(cfg);
    return rc;
}

/* A configuration built in code: each failed call leaves it as it was. */
static int case_config_build(void *arg)
{
    (void)arg;
    resolver_config *cfg = NULL;
    char err[256];
    int rc = resolver_config_new_default(&cfg);
    if (rc != 0)
        return cfg ? CASE_WRONG : rc;
    if ((rc = resolver_config_set(cfg, "etcd.dial_timeout_ms", "1000", err, sizeof(err))) != 0) {
        if (cfg->etcd.dial_timeout_ms != 2000)
            rc = CASE_WRONG;
        goto out;
    }
    if ((rc = resolver_config_set(cfg, "zone", "1", err, sizeof(err))) != 0) {
        if (strcmp(cfg->zone, "") != 0 || cfg->etcd.dial_timeout_ms != 1000)
            rc = CASE_WRONG;
        goto out;
    }
    if ((rc = resolver_config_add_service(cfg, "a", "{\"policy\": \"random\"}", err,
                                          sizeof(err))) != 0) {
        if (cfg->n_services != 0 || strcmp(cfg->zone, "1") != 0)
            rc = CASE_WRONG;
        goto out;
    }
    if ((rc = resolver_config_set(cfg, "services[0].choice_count", "3", err, sizeof(err))) != 0) {
        if (cfg->n_services != 1 || cfg->services[0].options.choice_count != 2)
            rc = CASE_WRONG;
        goto out;
    }
    if ((rc = resolver_config_add_service(cfg, "b", NULL, err, sizeof(err))) != 0) {
        if (cfg->n_services != 1)
            rc = CASE_WRONG;
        goto out;
    }
    rc = resolver_config_remove_service(cfg, "a");
    if (rc == 0 && (cfg->n_services != 1 || strcmp(cfg->services[0].name, "b") != 0 ||
                    cfg->etcd.dial_timeout_ms != 1000 || strcmp(cfg->zone, "1") != 0))
        rc = CASE_WRONG;
out:
    resolver_config_free(cfg);
    return rc;
}

static int case_config_to_json(void *arg)
{
    resolver_config *cfg = arg; /* loaded before arming */
    char *json = NULL;
    int rc = rsv_config_to_json(cfg, &json);
    if (rc == 0) {
        resolver_config *back = NULL;
        char err[256];
        rc = resolver_config_load_string(json, &back, err, sizeof(err));
        if (rc == 0 && !rsv_config_equal(cfg, back))
            rc = CASE_WRONG;
        resolver_config_free(back);
    } else if (json) {
        rc = CASE_WRONG;
    }
    free(json);
    return rc;
}

typedef struct {
    rsv_format format;
    const char *value;
} registry_input;

typedef struct {
    const registry_input *in;
    rsv_endpoint want; /* decoded unarmed */
} registry_case;

static const registry_input registry_inputs[] = {
    {RSV_FORMAT_GOZERO, "10.0.0.1:9001"},
    {RSV_FORMAT_AUTO, "[::1]:9001"},
    {RSV_FORMAT_ETCD_NAMING, "{\"Op\":0,\"Addr\":\"10.0.0.1:9001\",\"Metadata\":null}"},
    {RSV_FORMAT_AUTO, "{\"Op\":0,\"Addr\":\"10.0.0.1:9001\",\"Metadata\":{\"a\":[1,2]}}"},
    {RSV_FORMAT_KRATOS,
     "{\"id\":\"abc\",\"name\":\"user\",\"version\":\"v1\",\"metadata\":{\"k\":\"v\"},"
     "\"endpoints\":[\"http://10.0.0.1:8000\",\"grpc://10.0.0.1:9000\"]}"},
    {RSV_FORMAT_AUTO,
     "{\"id\":\"abc\",\"name\":\"user\",\"endpoints\":[\"grpcs://10.0.0.1:9000\"]}"},
    {RSV_FORMAT_KITEX,
     "{\"network\":\"tcp\",\"address\":\"10.0.0.1:9001\",\"weight\":10,\"tags\":{\"a\":\"b\"}}"},
    {RSV_FORMAT_NATIVE,
     "{\"address\":\"10.0.0.1:9001\",\"weight\":10,\"zone\":\"a\",\"metadata\":{\"x\":1}}"},
    {RSV_FORMAT_AUTO, "{\"address\":\"10.0.0.1:9001\",\"weight\":3}"},
};

static int endpoint_equal(const rsv_endpoint *a, const rsv_endpoint *b)
{
    return strcmp(a->host, b->host) == 0 && a->port == b->port &&
           strcmp(a->address, b->address) == 0 && a->weight == b->weight &&
           strcmp(a->zone, b->zone) == 0 && a->tls == b->tls && a->is_delete == b->is_delete &&
           a->format == b->format &&
           rsv_metadata_equal(atomic_load(&a->metadata), atomic_load(&b->metadata));
}

static int case_registry(void *arg)
{
    const registry_case *c = arg;
    rsv_endpoint ep;
    char why[256];
    memset(&ep, 0, sizeof(ep));
    int rc = rsv_registry_decode(c->in->format, c->in->value, strlen(c->in->value), &ep, why,
                                 sizeof(why));
    if (rc == 0 && !endpoint_equal(&ep, &c->want))
        rc = CASE_WRONG;
    rsv_endpoint_clear(&ep);
    return rc;
}

/* Keys and values base64 as the gateway sends them: svc/1 -> 10.0.0.1:9001,
 * svc/2 -> 10.0.0.2:9001 (with a lease), svc/3 -> {"address":"10.0.0.3:9001"}. */
static const char *range_body =
    "{\"header\":{\"cluster_id\":\"1484163906896517\",\"member_id\":\"1027665774393\","
    "\"revision\":\"42\",\"raft_term\":\"3\"},\"kvs\":["
    "{\"key\":\"c3ZjLzE=\",\"create_revision\":\"5\",\"mod_revision\":\"5\",\"version\":\"1\","
    "\"value\":\"MTAuMC4wLjE6OTAwMQ==\"},"
    "{\"key\":\"c3ZjLzI=\",\"create_revision\":\"6\",\"mod_revision\":\"7\",\"version\":\"2\","
    "\"value\":\"MTAuMC4wLjI6OTAwMQ==\",\"lease\":\"7587869981229590045\"},"
    "{\"key\":\"c3ZjLzM=\",\"create_revision\":\"8\",\"mod_revision\":\"8\",\"version\":\"1\","
    "\"value\":\"eyJhZGRyZXNzIjoiMTAuMC4wLjM6OTAwMSJ9\"}],\"count\":\"3\"}";

static int kv_equal(const rsv_kv *a, const rsv_kv *b)
{
    return a->type == b->type && a->key_len == b->key_len &&
           memcmp(a->key, b->key, a->key_len) == 0 && a->value_len == b->value_len &&
           memcmp(a->value, b->value, a->value_len) == 0 &&
           a->create_revision == b->create_revision && a->mod_revision == b->mod_revision &&
           a->version == b->version && a->lease == b->lease;
}

static int case_range(void *arg)
{
    const rsv_range_result *want = arg;
    rsv_range_result r;
    char why[256];
    int rc = rsv_range_parse(range_body, strlen(range_body), &r, why, sizeof(why));
    if (rc != 0)
        return rc;
    if (r.n_kvs != want->n_kvs || r.revision != want->revision || r.more != want->more ||
        r.count != want->count)
        rc = CASE_WRONG;
    for (size_t i = 0; rc == 0 && i < r.n_kvs; i++)
        if (!kv_equal(&r.kvs[i], &want->kvs[i]))
            rc = CASE_WRONG;
    rsv_range_result_clear(&r);
    return rc;
}

/* A watch stream: created, a PUT, two DELETEs in one message (a lease that
 * expires), a progress notification, a compaction cancel, and an error
 * without a trailing newline. */
static const char *watch_stream =
    "{\"result\":{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\",\"revision\":\"42\","
    "\"raft_term\":\"3\"},\"created\":true}}\n"
    "{\"result\":{\"header\":{\"revision\":\"43\"},\"events\":[{\"kv\":{\"key\":\"c3ZjLzE=\","
    "\"create_revision\":\"43\",\"mod_revision\":\"43\",\"version\":\"1\","
    "\"value\":\"MTAuMC4wLjE6OTAwMQ==\"}}]}}\n"
    "{\"result\":{\"header\":{\"revision\":\"44\"},\"events\":[{\"type\":\"DELETE\",\"kv\":{"
    "\"key\":\"c3ZjLzE=\",\"mod_revision\":\"44\"}},{\"type\":\"DELETE\",\"kv\":{"
    "\"key\":\"c3ZjLzI=\",\"mod_revision\":\"44\"}}]}}\n"
    "{\"result\":{\"header\":{\"revision\":\"50\"}}}\n"
    "{\"result\":{\"header\":{\"revision\":\"51\"},\"canceled\":true,\"compact_revision\":\"45\","
    "\"cancel_reason\":\"mvcc: required revision has been compacted\"}}\n"
    "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"etcdserver: no leader\","
    "\"http_status\":\"Service Unavailable\"}}";

/* FNV-1a over what a consumer of the parser sees. */
static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
    return s ? fnv(h, s, strlen(s) + 1) : fnv(h, "\xff", 1);
}

static uint64_t fnv_i64(uint64_t h, int64_t v)
{
    return fnv(h, &v, sizeof(v));
}

typedef struct {
    int messages;
    uint64_t digest;
} watch_seen;

static int on_watch(void *arg, const rsv_watch_message *m)
{
    watch_seen *w = arg;
    uint64_t h = w->digest;
    h = fnv_i64(h, m->is_error);
    h = fnv_i64(h, m->error_code);
    h = fnv_str(h, m->error_message);
    h = fnv_i64(h, m->revision);
    h = fnv_i64(h, m->watch_id);
    h = fnv_i64(h, m->created);
    h = fnv_i64(h, m->canceled);
    h = fnv_i64(h, m->compact_revision);
    h = fnv_str(h, m->cancel_reason);
    for (size_t i = 0; i < m->n_events; i++) {
        const rsv_kv *kv = &m->events[i];
        h = fnv_i64(h, kv->type);
        h = fnv(h, kv->key, kv->key_len);
        h = fnv(h, kv->value, kv->value_len);
        h = fnv_i64(h, kv->mod_revision);
        h = fnv_i64(h, kv->create_revision);
    }
    w->digest = h;
    w->messages++;
    return 0;
}

typedef struct {
    size_t chunk;
    int messages; /* of an unarmed run */
    uint64_t digest;
} watch_input;

static int watch_run(size_t chunk, watch_seen *seen)
{
    seen->messages = 0;
    seen->digest = 0xcbf29ce484222325ull;
    rsv_watch_parser *p = rsv_watch_parser_new(0, on_watch, seen);
    if (!p)
        return RESOLVER_ERR_NOMEM;
    int rc = 0, r;
    size_t len = strlen(watch_stream);
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        r = rsv_watch_parser_feed(p, watch_stream + off, n);
        if (r != 0 && rc == 0)
            rc = r;
    }
    r = rsv_watch_parser_finish(p);
    if (r != 0 && rc == 0)
        rc = r;
    rsv_watch_parser_del(p);
    return rc;
}

static int case_watch(void *arg)
{
    const watch_input *in = arg;
    watch_seen seen;
    int rc = watch_run(in->chunk, &seen);
    /* A parser that reports success must have delivered everything. */
    if (rc == 0 && (seen.messages != in->messages || seen.digest != in->digest))
        rc = CASE_WRONG;
    return rc;
}

typedef struct {
    char *range, *watch, *b64;
} built;

static void built_free(built *b)
{
    free(b->range);
    free(b->watch);
    free(b->b64);
}

static int build(built *b)
{
    b->range = rsv_range_request("svc/", 4, 42, 1000, "svc/1", 5);
    b->watch = rsv_watch_request("svc/", 4, 43, 1);
    b->b64 = rsv_base64_encode("svc/\xff", 5);
    return b->range && b->watch && b->b64 ? 0 : RESOLVER_ERR_NOMEM;
}

static int case_requests(void *arg)
{
    const built *want = arg;
    built got;
    int rc = build(&got);
    size_t n = 0;
    char *back = rc == 0 ? rsv_base64_decode(got.b64, strlen(got.b64), &n) : NULL;
    if (rc == 0 && !back)
        rc = RESOLVER_ERR_NOMEM;
    if (rc == 0 && (strcmp(got.range, want->range) != 0 || strcmp(got.watch, want->watch) != 0 ||
                    strcmp(got.b64, want->b64) != 0 || n != 5 || memcmp(back, "svc/\xff", 5)))
        rc = CASE_WRONG;
    free(back);
    built_free(&got);
    return rc;
}

static int case_auth(void *arg)
{
    (void)arg;
    static const char body[] = "{\"header\":{\"revision\":\"5\"},\"token\":\"abc.def.ghi\"}";
    char *token = NULL;
    int rc = rsv_auth_parse(body, strlen(body), &token);
    if (rc == 0 && (!token || strcmp(token, "abc.def.ghi") != 0))
        rc = CASE_WRONG;
    free(token);
    return rc;
}

static const char cache_doc[] =
    "{\"version\":1,\"services\":{\"user.rpc\":{\"prefix\":\"user.rpc/\",\"revision\":7,"
    "\"kvs\":[{\"key\":\"user.rpc/1\",\"address\":\"10.0.0.1:9001\",\"weight\":1,"
    "\"zone\":\"a\",\"tls\":false},{\"key\":\"user.rpc/2\",\"address\":\"[::1]:9002\"}]},"
    "\"b\":{\"prefix\":\"b/\",\"revision\":3,\"kvs\":[{\"key\":\"b/x\",\"address\":"
    "\"10.0.0.2:80\",\"weight\":5}]}}}";

typedef struct {
    const char *path;
    int entries;
    uint64_t digest;
} cache_seen;

static void on_cache_entry(void *arg, const char *service, const char *prefix, const char *key,
                           const rsv_endpoint *ep)
{
    cache_seen *c = arg;
    uint64_t h = fnv_str(c->digest, service);
    h = fnv_str(h, prefix);
    h = fnv_str(h, key);
    h = fnv_str(h, ep->address);
    h = fnv_str(h, ep->zone);
    h = fnv_i64(h, ep->weight);
    c->digest = fnv_i64(h, ep->tls);
    c->entries++;
}

static int cache_run(const char *path, cache_seen *seen)
{
    seen->path = path;
    seen->entries = 0;
    seen->digest = 0xcbf29ce484222325ull;
    size_t skipped = 0;
    char err[256];
    int rc = rsv_cache_read(path, on_cache_entry, seen, &skipped, err, sizeof(err));
    return rc == 0 && skipped ? CASE_WRONG : rc;
}

static int case_cache(void *arg)
{
    const cache_seen *want = arg;
    cache_seen got;
    int rc = cache_run(want->path, &got);
    if (rc == 0 && (got.entries != want->entries || got.digest != want->digest))
        rc = CASE_WRONG;
    return rc;
}

static const char *engine_config =
    "{ \"etcd\": { \"endpoints\": [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"] },\n"
    "  \"socket\": { \"path\": \"/nonexistent/rd.sock\" },\n"
    "  \"services\": [ { \"name\": \"a\" }, { \"name\": \"b\", \"policy\": \"ring_hash\" },\n"
    "                  { \"name\": \"c\", \"policy\": \"least_request\", \"prefix\": \"/c/\" } ] }";

static int case_engine(void *arg)
{
    (void)arg;
    resolver_config *cfg = NULL;
    char err[256];
    int rc = resolver_config_load_string(engine_config, &cfg, err, sizeof(err));
    if (rc != 0)
        return rc;
    resolver_engine *e = NULL;
    rc = resolver_engine_new(&e, cfg); /* owns cfg from here on, failed or not */
    if (rc != 0)
        return e ? CASE_WRONG : rc;
    resolver_engine_free(e);
    return 0;
}

/* Instances are made outside the allocator's window (before run_case: not
 * armed, not remembered), as the engine's would be. */
static rsv_instance *new_instance(const char *address, uint32_t weight)
{
    rsv_endpoint ep = {.weight = weight};
    snprintf(ep.address, sizeof(ep.address), "%s", address);
    rsv_instance *inst = rsv_instance_new(&ep, NULL);
    ck_assert_ptr_nonnull(inst);
    return inst;
}

typedef struct {
    rsv_policy policy;
    rsv_instance *inst[5];
    const rsv_instance *want; /* ring_hash: where "some-key" lands */
} picker_input;

static int case_picker(void *arg)
{
    picker_input *in = arg;
    rsv_picker *p = rsv_picker_new(in->policy, 2, 0, in->inst, 5);
    int rc = p ? 0 : RESOLVER_ERR_NOMEM;
    if (p) {
        rsv_instance *got = rsv_picker_pick(p, "some-key");
        if (!got || rsv_picker_size(p) != 5 || (in->want && got != in->want))
            rc = CASE_WRONG;
        if (in->policy == RSV_POLICY_RING_HASH && !in->want)
            in->want = got;
        if (got) {
            atomic_fetch_sub(&got->outstanding, 1);
            atomic_fetch_sub(&got->refs, 1);
        }
        rsv_picker_free(p);
    }
    for (int i = 0; i < 5; i++)
        if (atomic_load(&in->inst[i]->refs) != 1)
            rc = CASE_WRONG; /* a reference taken and not dropped */
    return rc;
}

static int case_client(void *arg)
{
    resolver_client *c = NULL;
    int rc = resolver_client_connect(arg, 100, &c);
    if (rc == 0)
        resolver_client_free(c);
    else if (c)
        rc = CASE_WRONG;
    return rc;
}

/* ---- tests ---- */

START_TEST(allocator_works)
{
    /* The wrappers themselves: the armed allocation fails once, live
     * pointers are counted, strdup goes through them. */
    int was_hit;
    arm(2);
    void *a = malloc(10);
    char *b = strdup("hello");
    void *c = calloc(2, 8);
    size_t live_now = disarm(&was_hit);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(was_hit, 1);
    ck_assert_uint_eq(live_now, 2);
    arm(0);
    free(a);
    void *d = realloc(c, 4096);
    ck_assert_ptr_nonnull(d);
    free(d);
    ck_assert_uint_eq(disarm(&was_hit), 0);
    ck_assert_int_eq(was_hit, 0);
    /* Memory from before the window, freed inside it, is not counted. */
    void *old = malloc(16);
    arm(0);
    free(old);
    ck_assert_uint_eq(disarm(&was_hit), 0);
    /* The guard of the inputs against jansson's overrun. */
    jansson_safe("full_config", full_config);
    jansson_safe("engine_config", engine_config);
    jansson_safe("range_body", range_body);
    jansson_safe("watch_stream", watch_stream);
    jansson_safe("cache_doc", cache_doc);
    for (size_t i = 0; i < sizeof(registry_inputs) / sizeof(registry_inputs[0]); i++)
        jansson_safe("registry input", registry_inputs[i].value);
}
END_TEST

START_TEST(config_load_string)
{
    resolver_config *want = NULL;
    char err[256];
    jansson_safe("full_config", full_config);
    ck_assert_int_eq(resolver_config_load_string(full_config, &want, err, sizeof(err)), 0);
    ck_assert_uint_eq(want->n_services, 5);
    case_stats st = run_case("resolver_config_load_string", case_config_load, want, 0);
    resolver_config_free(want);
    ck_assert_int_gt(st.allocations, 10);
    ck_assert_int_gt(st.errors, 0);
}
END_TEST

START_TEST(config_default_endpoints)
{
    case_stats st =
        run_case("resolver_config_new_default+set_endpoints", case_config_default, NULL, 0);
    ck_assert_int_gt(st.errors, 3);
}
END_TEST

START_TEST(config_build)
{
    case_stats st =
        run_case("resolver_config_set+add_service+remove_service", case_config_build, NULL, 0);
    ck_assert_int_gt(st.errors, 10);
}
END_TEST

START_TEST(config_to_json)
{
    resolver_config *cfg = NULL;
    char err[256], *json = NULL;
    ck_assert_int_eq(resolver_config_load_string(full_config, &cfg, err, sizeof(err)), 0);
    ck_assert_int_eq(rsv_config_to_json(cfg, &json), 0);
    jansson_safe("rsv_config_to_json output", json);
    free(json);
    case_stats st = run_case("rsv_config_to_json", case_config_to_json, cfg, 0);
    resolver_config_free(cfg);
    ck_assert_int_gt(st.errors, 10);
}
END_TEST

START_TEST(registry_decode)
{
    registry_case c;
    memset(&c, 0, sizeof(c));
    c.in = &registry_inputs[_i];
    char name[64], why[256];
    jansson_safe("registry input", c.in->value);
    ck_assert_int_eq(rsv_registry_decode(c.in->format, c.in->value, strlen(c.in->value), &c.want,
                                         why, sizeof(why)),
                     0);
    snprintf(name, sizeof(name), "rsv_registry_decode #%d (%s)", _i,
             rsv_format_name(c.want.format));
    run_case(name, case_registry, &c, 0);
    rsv_endpoint_clear(&c.want);
}
END_TEST

START_TEST(range_parse)
{
    rsv_range_result want;
    char why[256];
    jansson_safe("range_body", range_body);
    ck_assert_int_eq(rsv_range_parse(range_body, strlen(range_body), &want, why, sizeof(why)), 0);
    ck_assert_uint_eq(want.n_kvs, 3);
    case_stats st = run_case("rsv_range_parse", case_range, &want, 0);
    rsv_range_result_clear(&want);
    ck_assert_int_gt(st.errors, 3);
}
END_TEST

START_TEST(watch_parser)
{
    static const size_t chunks[] = {1, 7, 64, 100000};
    watch_input in = {chunks[_i], 0, 0};
    watch_seen seen;
    jansson_safe("watch_stream", watch_stream);
    ck_assert_int_eq(watch_run(in.chunk, &seen), 0);
    ck_assert_int_eq(seen.messages, 6);
    in.messages = seen.messages;
    in.digest = seen.digest;
    char name[64];
    snprintf(name, sizeof(name), "watch parser, %zu-byte chunks", chunks[_i]);
    case_stats st = run_case(name, case_watch, &in, 0);
    ck_assert_int_gt(st.errors, 3);
}
END_TEST

START_TEST(request_builders)
{
    built want;
    ck_assert_int_eq(build(&want), 0);
    case_stats st = run_case("range/watch requests, base64", case_requests, &want, 0);
    built_free(&want);
    ck_assert_int_gt(st.errors, 3);
}
END_TEST

START_TEST(auth_parse)
{
    case_stats st = run_case("rsv_auth_parse", case_auth, NULL, 0);
    ck_assert_int_gt(st.errors, 1);
}
END_TEST

START_TEST(cache_read)
{
    char path[] = "/tmp/check_alloc_cache.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, cache_doc, sizeof(cache_doc) - 1), (int)(sizeof(cache_doc) - 1));
    close(fd);
    jansson_safe("cache_doc", cache_doc);
    cache_seen want;
    int rc = cache_run(path, &want);
    case_stats st = {0, 0, 0, 0};
    if (rc == 0 && want.entries == 3)
        st = run_case("rsv_cache_read", case_cache, &want, 0);
    unlink(path);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(want.entries, 3);
    ck_assert_int_gt(st.errors, 3);
}
END_TEST

static void discard_log(resolver_log_level level, const char *line, void *arg)
{
    (void)level;
    (void)line;
    (void)arg;
}

START_TEST(engine_new_del)
{
    jansson_safe("engine_config", engine_config);
    /* The engine logs each service it starts, and each allocation failure
     * it recovers from ("keeping the old picker"): thousands of lines. */
    resolver_log_set_handler(discard_log, NULL);
    case_stats st = run_case("resolver_engine_new+resolver_engine_free", case_engine, NULL, 0);
    resolver_log_set_handler(NULL, NULL);
    ck_assert_int_gt(st.errors, 10);
}
END_TEST

START_TEST(picker_new)
{
    static const rsv_policy policies[] = {
        RSV_POLICY_ROUND_ROBIN,   RSV_POLICY_PICK_FIRST, RSV_POLICY_WEIGHTED_ROUND_ROBIN,
        RSV_POLICY_LEAST_REQUEST, RSV_POLICY_RING_HASH,  RSV_POLICY_RANDOM};
    picker_input in = {.policy = policies[_i], .want = NULL};
    for (int i = 0; i < 5; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.0.0.%d:9000", i + 1);
        in.inst[i] = new_instance(addr, (uint32_t)(i + 1));
    }
    char name[64];
    snprintf(name, sizeof(name), "rsv_picker_new(%s)", rsv_policy_name(policies[_i]));
    case_stats st = run_case(name, case_picker, &in, 0);
    for (int i = 0; i < 5; i++)
        rsv_instance_unref(in.inst[i]);
    ck_assert_int_gt(st.errors, 0);
}
END_TEST

START_TEST(client_connect)
{
    char path[64];
    snprintf(path, sizeof(path), "/nonexistent-dir-%ld/rd.sock", (long)getpid());
    run_case("resolver_client_connect (no daemon)", case_client, path, RESOLVER_ERR_CONNECT);
}
END_TEST

static Suite *alloc_suite(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("failing allocations");
    /* Thousands of runs of the engine constructor under valgrind. */
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, allocator_works);
    tcase_add_test(tc, config_load_string);
    tcase_add_test(tc, config_default_endpoints);
    tcase_add_test(tc, config_build);
    tcase_add_test(tc, config_to_json);
    tcase_add_loop_test(tc, registry_decode, 0,
                        (int)(sizeof(registry_inputs) / sizeof(registry_inputs[0])));
    tcase_add_test(tc, range_parse);
    tcase_add_loop_test(tc, watch_parser, 0, 4);
    tcase_add_test(tc, request_builders);
    tcase_add_test(tc, auth_parse);
    tcase_add_test(tc, cache_read);
    tcase_add_test(tc, engine_new_del);
    tcase_add_loop_test(tc, picker_new, 0, 6);
    tcase_add_test(tc, client_connect);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* glibc loads the time zone once, on the first gmtime_r (the library's
     * log lines): keep that out of the cases' windows. */
    time_t t0 = 0;
    struct tm tm;
    tzset();
    gmtime_r(&t0, &tm);
    /* Are our wrappers the process's allocator?  Not under valgrind, which
     * replaces malloc in the executable too unless told otherwise. */
    /* Through a pointer: a direct call may be inlined into our own code. */
    void *(*volatile allocate)(size_t) = malloc;
    int was_hit;
    arm(1);
    void *probe = allocate(1);
    disarm(&was_hit);
    if (probe) {
        free(probe);
        printf("# SKIP: this program's malloc is not in use (under valgrind, run it with "
               "--soname-synonyms=somalloc=nouserintercepts)\n");
        return 77;
    }
    SRunner *sr = srunner_create(alloc_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
