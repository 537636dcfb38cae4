/*
 * dns.c - asynchronous name resolution with c-ares (see dns.h).
 *
 * Shape:
 *  - One c-ares channel per rsv_dns.  Its socket-state callback turns
 *    into loop watchers (io_cb -> ares_process_fd); after every call into
 *    c-ares, arm_timer asks ares_timeout for its next deadline.
 *  - One entry per name, in `names`: the current answer (refcounted: a
 *    delivery in progress keeps it while a new query replaces it), the
 *    lookups waiting, and whether a query runs.  An entry with a query
 *    running is never freed (c-ares holds it as the callback argument);
 *    others are swept once expired and unwatched.
 *  - Answers reach lookups only from the `deliver` timer (0 ms): c-ares may
 *    answer inside ares_getaddrinfo (a name from /etc/hosts), and lookup
 *    callbacks then never run inside a call into c-ares or inside
 *    rsv_dns_lookup_start (dns.h rule 2).
 *  - Lists are circular with a sentinel, so a lookup unlinks itself without
 *    knowing which list holds it (an entry's, or a delivery's batch).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <ares.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dns.h"
#include "log.h"
#include "resolver.h"
#include "strmap.h"

/* Expired, unwatched entries are swept when the map has grown past this
 * since the last sweep (names come from etcd values: bounded by the
 * instances, but a churning registry leaves old ones behind). */
#define SWEEP_MIN 64

typedef struct link {
    struct link *prev, *next;
} link;

typedef struct {
    int refs;
    int status; /* 0 or RESOLVER_ERR_NOT_FOUND / _TIMEOUT / _IO */
    char error[96];
    size_t n;
    struct sockaddr_storage addrs[DNS_ADDRS_MAX];
} answer;

typedef struct entry entry;

struct rsv_dns_lookup {
    link node; /* first: a link * is a lookup * */
    rsv_dns *dns;
    rsv_dns_cb cb;
    void *arg;
};

struct entry {
    rsv_dns *dns;
    char *name;
    link waiters;
    answer *ans;         /* NULL until the first query ends */
    uint64_t expires_ms; /* ans is fresh until then */
    int querying;        /* a c-ares query holds this entry */
    int pending;         /* on dns->due: waiters to be answered */
    entry *due_next;
};

struct rsv_dns {
    rsv_loop *loop;
    ares_channel channel;
    rsv_timer *timer;   /* c-ares' next timeout */
    rsv_timer *deliver; /* answers to waiters, soon */
    rsv_strmap names;   /* name -> entry */
    size_t swept_len;   /* names.len after the last sweep */
    entry *due;         /* entries with answers for waiters */
    int destroying;     /* ares_destroy is calling back */
    rsv_dns_stats stats;
};

static void list_init(link *l)
{
    l->prev = l->next = l;
}

static int list_empty(const link *l)
{
    return l->next == l;
}

static void list_unlink(link *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    list_init(n);
}

static void list_push(link *head, link *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

/* Moves every node of `from` to the empty `to`. */
static void list_move(link *from, link *to)
{
    list_init(to);
    if (list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    list_init(from);
}

static void answer_unref(answer *a)
{
    if (a && --a->refs == 0)
        free(a);
}

/* ---- c-ares on the loop ---- */

static void arm_timer(rsv_dns *dns)
{
    struct timeval tv, *tvp = ares_timeout(dns->channel, NULL, &tv);
    if (!tvp) {
        rsv_timer_stop(dns->timer);
        return;
    }
    /* Round up: a timer that fires a little early would find nothing due
     * and spin until it is. */
    uint64_t ms = (uint64_t)tvp->tv_sec * 1000u + ((uint64_t)tvp->tv_usec + 999u) / 1000u;
    rsv_timer_start(dns->timer, ms);
}

static void io_cb(rsv_loop *loop, int fd, unsigned events, void *arg)
{
    rsv_dns *dns = arg;
    int err = (events & RSV_LOOP_ERROR) != 0;
    ares_process_fd(dns->channel, (events & RSV_LOOP_READ) || err ? fd : ARES_SOCKET_BAD,
                    (events & RSV_LOOP_WRITE) || err ? fd : ARES_SOCKET_BAD);
    arm_timer(dns);
}

static void timer_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_dns *dns = arg;
    ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_timer(dns);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    rsv_dns *dns = data;
    unsigned ev = (readable ? RSV_LOOP_READ : 0) | (writable ? RSV_LOOP_WRITE : 0);
    if (ev == 0) {
        rsv_loop_unwatch(dns->loop, fd); /* c-ares closes it next */
        return;
    }
    if (rsv_loop_watch(dns->loop, fd, ev, io_cb, dns) != 0) {
        static rsv_log_limit lim = {0};
        /* The query then ends by its timeout. */
        LOG_WARN_LIMITED(&lim, "dns: cannot watch a c-ares socket");
    }
}

/* ---- servers ---- */

/* Splits "IPv4", "IPv4:PORT", "IPv6" or "[IPv6]:PORT".  Returns 0 with the
 * address in host (NUL-terminated) and the port (0: none), or -1. */
static int server_split(const char *s, char *host, size_t hostlen, unsigned *port)
{
    const char *end = NULL, *colon = NULL;
    unsigned char tmp[sizeof(struct in6_addr)];
    size_t n;
    int bracketed = s[0] == '[';
    *port = 0;
    if (bracketed) {
        s++;
        end = strchr(s, ']');
        if (!end || (end[1] && end[1] != ':'))
            return -1;
        colon = end[1] ? end + 1 : NULL;
    } else {
        colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL; /* a bare IPv6 address */
        end = colon ? colon : s + strlen(s);
    }
    n = (size_t)(end - s);
    if (n == 0 || n >= hostlen)
        return -1;
    memcpy(host, s, n);
    host[n] = '\0';
    if (colon) {
        char *stop;
        unsigned long p = strtoul(colon + 1, &stop, 10);
        if (!colon[1] || *stop || p == 0 || p > 65535 || colon[1] == '+' || colon[1] == '-')
            return -1;
        *port = (unsigned)p;
    }
    if (inet_pton(AF_INET, host, tmp) == 1)
        return bracketed ? -1 : 0; /* "[1.2.3.4]" is not a form we take */
    return inet_pton(AF_INET6, host, tmp) == 1 ? 0 : -1;
}

int rsv_dns_server_valid(const char *server)
{
    char host[INET6_ADDRSTRLEN + 1];
    unsigned port;
    return server && server_split(server, host, sizeof(host), &port) == 0;
}

/* The servers as c-ares' CSV ("1.2.3.4:53,[::1]:5353"); NULL if none or on
 * error (*bad set when a server is malformed). */
static char *servers_csv(const rsv_dns_options *o, int *bad)
{
    size_t cap = 1, len = 0;
    *bad = 0;
    for (size_t i = 0; i < o->n_servers; i++)
        cap += strlen(o->servers[i]) + 16;
    char *csv = malloc(cap);
    if (!csv)
        return NULL;
    csv[0] = '\0';
    for (size_t i = 0; i < o->n_servers; i++) {
        char host[INET6_ADDRSTRLEN + 1];
        unsigned port;
        if (server_split(o->servers[i], host, sizeof(host), &port) != 0) {
            *bad = 1;
            free(csv);
            return NULL;
        }
        int v6 = strchr(host, ':') != NULL;
        len += (size_t)snprintf(csv + len, cap - len, "%s%s%s%s:%u", len ? "," : "", v6 ? "[" : "",
                                host, v6 ? "]" : "", port ? port : 53);
    }
    return csv;
}

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_status = ARES_SUCCESS;

static void library_init(void)
{
    /* Process-wide and not thread-safe in c-ares; once, and never cleaned
     * up (on Linux it holds nothing). */
    library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

/* A channel for `o`, NULL on failure (*bad: a malformed server). */
static ares_channel channel_new(rsv_dns *dns, const rsv_dns_options *o, int *bad)
{
    struct ares_options ao;
    int mask = ARES_OPT_SOCK_STATE_CB;
    ares_channel ch = NULL;
    *bad = 0;
    memset(&ao, 0, sizeof(ao));
    ao.sock_state_cb = sock_state_cb;
    ao.sock_state_cb_data = dns;
    if (o && o->timeout_ms) {
        ao.timeout = o->timeout_ms > 60000 ? 60000 : (int)o->timeout_ms;
        mask |= ARES_OPT_TIMEOUTMS;
    }
    if (o && o->tries) {
        ao.tries = o->tries > 10 ? 10 : (int)o->tries;
        mask |= ARES_OPT_TRIES;
    }
    if (ares_init_options(&ch, &ao, mask) != ARES_SUCCESS)
        return NULL;
    if (o && o->n_servers > 0) {
        char *csv = servers_csv(o, bad);
        int rc = csv ? ares_set_servers_ports_csv(ch, csv) : ARES_ENOMEM;
        free(csv);
        if (rc != ARES_SUCCESS) {
            *bad = *bad || rc == ARES_EBADSTR;
            ares_destroy(ch);
            return NULL;
        }
    }
    return ch;
}

/* ---- answers ---- */

static int status_of(int ares_status)
{
    switch (ares_status) {
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME:
        return RESOLVER_ERR_NOT_FOUND;
    case ARES_ETIMEOUT:
        return RESOLVER_ERR_TIMEOUT;
    case ARES_ENOMEM:
        return RESOLVER_ERR_NOMEM;
    default:
        return RESOLVER_ERR_IO;
    }
}

/* An answer from c-ares' result; NULL when out of memory.  The TTL kept is
 * the smallest of the records (*ttl_ms). */
static answer *answer_from(int status, struct ares_addrinfo *res, uint64_t *ttl_ms)
{
    answer *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->refs = 1;
    int64_t ttl = DNS_TTL_MAX_S;
    if (status == ARES_SUCCESS && res) {
        for (struct ares_addrinfo_node *n = res->nodes; n && a->n < DNS_ADDRS_MAX; n = n->ai_next) {
            if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
                n->ai_addrlen > (ares_socklen_t)sizeof(a->addrs[0]))
                continue;
            memcpy(&a->addrs[a->n], n->ai_addr, n->ai_addrlen);
            a->n++;
            if (n->ai_ttl < ttl)
                ttl = n->ai_ttl < 0 ? 0 : n->ai_ttl;
        }
        if (a->n == 0)
            status = ARES_ENODATA;
    }
    if (status != ARES_SUCCESS) {
        a->status = status_of(status);
        snprintf(a->error, sizeof(a->error), "%s", ares_strerror(status));
        *ttl_ms = a->status == RESOLVER_ERR_NOT_FOUND ? DNS_NEGATIVE_TTL_MS : 0;
        return a;
    }
    *ttl_ms = (uint64_t)ttl * 1000u;
    return a;
}

static void schedule(entry *e)
{
    rsv_dns *dns = e->dns;
    if (e->pending || list_empty(&e->waiters))
        return;
    e->pending = 1;
    e->due_next = dns->due;
    dns->due = e;
    rsv_timer_start(dns->deliver, 0);
}

static void query_start(entry *e);

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    entry *e = arg;
    rsv_dns *dns = e->dns;
    uint64_t ttl_ms = 0;
    e->querying = 0;
    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
        ares_freeaddrinfo(res);
        /* A channel replaced by rsv_dns_configure: ask the new one.
         * (At rsv_dns_del the entries are freed after this.) */
        if (!dns->destroying)
            query_start(e);
        return;
    }
    answer *a = answer_from(status, res, &ttl_ms);
    ares_freeaddrinfo(res);
    if (!a) {
        static rsv_log_limit lim = {0};
        LOG_WARN_LIMITED(&lim, "dns %s: out of memory for the answer", e->name);
        return; /* the waiters stay; the next lookup asks again */
    }
    if (a->status != 0) {
        dns->stats.failures++;
        LOG_DEBUG("dns %s: %s", e->name, a->error);
    } else {
        LOG_DEBUG("dns %s: %zu addresses, kept %llu ms", e->name, a->n, (unsigned long long)ttl_ms);
    }
    answer_unref(e->ans);
    e->ans = a;
    e->expires_ms = rsv_loop_now(dns->loop) + ttl_ms;
    schedule(e);
}

static void query_start(entry *e)
{
    rsv_dns *dns = e->dns;
    /* c-ares sorts the addresses (RFC 6724) unless told ARES_AI_NOSORT. */
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    e->querying = 1;
    dns->stats.queries++;
    ares_getaddrinfo(dns->channel, e->name, NULL, &hints, on_addrinfo, e);
    if (!dns->destroying)
        arm_timer(dns);
}

/* The waiters of every due entry get its answer. */
static void deliver_cb(rsv_loop *loop, rsv_timer *t, void *arg)
{
    rsv_dns *dns = arg;
    entry *due = dns->due;
    dns->due = NULL;
    while (due) {
        entry *e = due;
        due = e->due_next;
        e->pending = 0;
        answer *a = e->ans;
        link batch;
        if (!a)
            continue; /* cannot happen: scheduled only with an answer */
        list_move(&e->waiters, &batch);
        a->refs++; /* a callback may start a query that replaces it */
        /* e may be swept by a lookup inside a callback: not touched below. */
        while (!list_empty(&batch)) {
            rsv_dns_lookup *l = (rsv_dns_lookup *)batch.next;
            list_unlink(&l->node);
            rsv_dns_cb cb = l->cb;
            void *cb_arg = l->arg;
            free(l);
            cb(a->status, a->addrs, a->n, a->error, cb_arg);
        }
        answer_unref(a);
    }
}

/* ---- entries ---- */

static void entry_free(entry *e)
{
    answer_unref(e->ans);
    free(e->name);
    free(e);
}

/* Drops expired entries nobody waits for. */
static void sweep(rsv_dns *dns)
{
    uint64_t now = rsv_loop_now(dns->loop);
    size_t n = 0;
    entry **gone = malloc(dns->names.len * sizeof(*gone));
    if (!gone)
        return;
    void *v;
    for (size_t pos = 0; rsv_strmap_next(&dns->names, &pos, NULL, &v);) {
        entry *e = v;
        if (!e->querying && !e->pending && list_empty(&e->waiters) && e->expires_ms <= now)
            gone[n++] = e;
    }
    for (size_t i = 0; i < n; i++) {
        rsv_strmap_remove(&dns->names, gone[i]->name);
        entry_free(gone[i]);
    }
    free(gone);
    dns->swept_len = dns->names.len;
}

static entry *entry_get(rsv_dns *dns, const char *name)
{
    entry *e = rsv_strmap_get(&dns->names, name);
    if (e)
        return e;
    if (dns->names.len >= dns->swept_len + SWEEP_MIN)
        sweep(dns);
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->dns = dns;
    list_init(&e->waiters);
    if (!(e->name = strdup(name)) || rsv_strmap_put(&dns->names, name, e, NULL) != 0) {
        free(e->name);
        free(e);
        return NULL;
    }
    return e;
}

/* ---- public API ---- */

rsv_dns *rsv_dns_new(rsv_loop *loop, const rsv_dns_options *opts)
{
    int bad;
    pthread_once(&library_once, library_init);
    if (!loop || library_status != ARES_SUCCESS)
        return NULL;
    rsv_dns *dns = calloc(1, sizeof(*dns));
    if (!dns)
        return NULL;
    dns->loop = loop;
    dns->timer = rsv_timer_new(loop, timer_cb, dns);
    dns->deliver = rsv_timer_new(loop, deliver_cb, dns);
    if (!dns->timer || !dns->deliver || !(dns->channel = channel_new(dns, opts, &bad))) {
        rsv_timer_del(dns->timer);
        rsv_timer_del(dns->deliver);
        free(dns);
        return NULL;
    }
    return dns;
}

int rsv_dns_configure(rsv_dns *dns, const rsv_dns_options *opts)
{
    int bad;
    ares_channel ch = channel_new(dns, opts, &bad);
    if (!ch)
        return bad ? RESOLVER_ERR_INVALID : RESOLVER_ERR_NOMEM;
    ares_channel old = dns->channel;
    dns->channel = ch;
    /* Its queries end with ARES_EDESTRUCTION: on_addrinfo asks `ch`. */
    ares_destroy(old);
    arm_timer(dns);
    /* Other servers may answer otherwise: forget what the old ones said. */
    void *v;
    for (size_t pos = 0; rsv_strmap_next(&dns->names, &pos, NULL, &v);)
        ((entry *)v)->expires_ms = 0;
    return 0;
}

void rsv_dns_del(rsv_dns *dns)
{
    if (!dns)
        return;
    dns->destroying = 1;
    ares_destroy(dns->channel); /* calls on_addrinfo for every query */
    rsv_timer_del(dns->timer);
    rsv_timer_del(dns->deliver);
    void *v;
    for (size_t pos = 0; rsv_strmap_next(&dns->names, &pos, NULL, &v);) {
        entry *e = v;
        while (!list_empty(&e->waiters)) {
            link *l = e->waiters.next;
            list_unlink(l);
            free(l);
        }
        entry_free(e);
    }
    rsv_strmap_clear(&dns->names);
    free(dns);
}

rsv_dns_lookup *rsv_dns_lookup_start(rsv_dns *dns, const char *name, rsv_dns_cb cb, void *arg)
{
    entry *e = entry_get(dns, name);
    if (!e)
        return NULL;
    rsv_dns_lookup *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL; /* e stays, empty: swept later */
    l->dns = dns;
    l->cb = cb;
    l->arg = arg;
    list_push(&e->waiters, &l->node);
    if (e->querying) {
        dns->stats.joined++;
    } else if (e->ans && rsv_loop_now(dns->loop) < e->expires_ms) {
        dns->stats.cache_hits++;
        schedule(e);
    } else {
        query_start(e); /* may answer at once (/etc/hosts): then schedules */
    }
    return l;
}

void rsv_dns_cancel(rsv_dns_lookup *l)
{
    if (!l)
        return;
    list_unlink(&l->node);
    free(l);
}

const rsv_dns_stats *rsv_dns_stats_get(const rsv_dns *dns)
{
    return &dns->stats;
}
