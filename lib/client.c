/*
 * client.c - blocking client of resolverd's socket (resolver.h, client.h).
 * One request in flight at a time; each call waits at most the client's
 * timeout.  Not thread-safe: one client per thread.
 *
 * Replies carry no request id: they match requests by order only.  So a
 * request that did not get its whole reply (timeout, error, short read)
 * leaves the connection out of step, and the connection is dropped; the
 * next request connects again.  Tickets the daemon tied to the dropped
 * connection are released by the daemon when it sees the close.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "client.h"
#include "clock.h"

#define DEFAULT_SOCKET "/run/resolverd/resolverd.sock"
/* A reply line grows the buffer up to this (INSTANCES of a service with
 * 100,000 instances is ~40 MiB); anything longer is a protocol error. */
#define REPLY_MAX ((size_t)256 << 20)
#define BUF_INITIAL 16384

struct resolver_client {
    int fd; /* -1: dropped after a failed request, reconnect on the next */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int timeout_ms;
    char *buf;       /* grows for long replies, up to REPLY_MAX */
    size_t cap;      /* bytes allocated at buf */
    size_t len;      /* bytes in buf */
    size_t consumed; /* bytes of buf handed out as the last line */
    char last_error[512];
    char address[RESOLVER_ADDRESS_MAX]; /* the last pick's: valid until the next call */
};

const char *rsv_client_default_path(const char *path)
{
    if (path && *path)
        return path;
    const char *env = getenv("RESOLVER_SOCKET");
    return env && *env ? env : DEFAULT_SOCKET;
}

/* Opens c->fd on c->path.  0 or RESOLVER_ERR_CONNECT (last_error says why). */
static int client_open(resolver_client *c)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, c->path, sizeof(addr.sun_path));
    c->len = c->consumed = 0;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        snprintf(c->last_error, sizeof(c->last_error), "%s: %s", c->path, strerror(errno));
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        return RESOLVER_ERR_CONNECT;
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    return 0;
}

/* After a request that failed half-way: whatever arrives later on this
 * connection answers a request the caller gave up on. */
static void client_drop(resolver_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->len = c->consumed = 0;
}

int resolver_client_connect(const char *path, int timeout_ms, resolver_client **out)
{
    if (!out)
        return RESOLVER_ERR_INVALID;
    path = rsv_client_default_path(path);
    resolver_client *c = calloc(1, sizeof(*c));
    if (!c)
        return RESOLVER_ERR_NOMEM;
    if (strlen(path) >= sizeof(c->path)) {
        free(c);
        return RESOLVER_ERR_INVALID;
    }
    strcpy(c->path, path);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    c->cap = BUF_INITIAL;
    c->buf = malloc(c->cap);
    if (!c->buf) {
        free(c);
        return RESOLVER_ERR_NOMEM;
    }
    if (client_open(c) != 0) {
        free(c->buf);
        free(c);
        return RESOLVER_ERR_CONNECT;
    }
    *out = c;
    return 0;
}

void resolver_client_free(resolver_client *c)
{
    if (!c)
        return;
    client_drop(c);
    free(c->buf);
    free(c);
}

const char *resolver_client_last_error(const resolver_client *c)
{
    return c ? c->last_error : "";
}

static int64_t now_ms(void)
{
    return (int64_t)rsv_clock_ms();
}

static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int left = deadline < 0 ? -1 : (int)(deadline - now_ms());
        if (deadline >= 0 && left < 0)
            left = 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left);
        if (n > 0)
            return 0;
        if (n == 0)
            return RESOLVER_ERR_TIMEOUT;
        if (errno != EINTR)
            return RESOLVER_ERR_IO;
    }
}

static int send_all(resolver_client *c, const char *data, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return errno == EPIPE || errno == ECONNRESET ? RESOLVER_ERR_CLOSED : RESOLVER_ERR_IO;
        int rc = wait_fd(c->fd, POLLOUT, deadline);
        if (rc)
            return rc;
    }
    return 0;
}

/* Doubles the buffer: RESOLVER_ERR_PROTOCOL past REPLY_MAX (a reply longer
 * than we accept), RESOLVER_ERR_NOMEM. */
static int grow_buffer(resolver_client *c)
{
    if (c->cap >= REPLY_MAX)
        return RESOLVER_ERR_PROTOCOL;
    char *b = realloc(c->buf, c->cap * 2);
    if (!b)
        return RESOLVER_ERR_NOMEM;
    c->buf = b;
    c->cap *= 2;
    return 0;
}

/* Returns the next complete line from the buffer, reading as needed. */
static int read_line(resolver_client *c, int64_t deadline, char **line)
{
    /* Drop the line handed out last time. */
    memmove(c->buf, c->buf + c->consumed, c->len - c->consumed);
    c->len -= c->consumed;
    c->consumed = 0;
    size_t scanned = 0; /* no newline before this: a long reply is scanned once */
    for (;;) {
        char *nl = memchr(c->buf + scanned, '\n', c->len - scanned);
        if (nl) {
            *nl = '\0';
            c->consumed = (size_t)(nl - c->buf) + 1;
            *line = c->buf;
            return 0;
        }
        scanned = c->len;
        if (c->len == c->cap - 1) {
            int rc = grow_buffer(c);
            if (rc)
                return rc;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - 1 - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n == 0)
            return RESOLVER_ERR_CLOSED;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return RESOLVER_ERR_IO;
        int rc = wait_fd(c->fd, POLLIN, deadline);
        if (rc)
            return rc;
    }
}

static int read_reply(resolver_client *c, int64_t deadline, rsv_proto_reply *reply)
{
    char *line;
    int rc = read_line(c, deadline, &line);
    if (rc)
        return rc;
    if (rsv_proto_parse_reply(line, reply) != 0)
        return RESOLVER_ERR_PROTOCOL;
    if (reply->kind == RSV_REPLY_ERR)
        snprintf(c->last_error, sizeof(c->last_error), "%s", reply->payload);
    return 0;
}

int rsv_client_request(resolver_client *c, const char *line, rsv_proto_reply *reply)
{
    if (!c || !line || !reply)
        return RESOLVER_ERR_INVALID;
    c->last_error[0] = '\0';
    int64_t deadline = now_ms() + c->timeout_ms;
    size_t len = strlen(line);
    char stack[RSV_PROTO_LINE_MAX];
    if (len + 1 >= sizeof(stack))
        return RESOLVER_ERR_INVALID;
    memcpy(stack, line, len);
    stack[len] = '\n';
    if (c->fd < 0 && client_open(c) != 0)
        return RESOLVER_ERR_CONNECT;
    int rc = send_all(c, stack, len + 1, deadline);
    if (!rc)
        rc = read_reply(c, deadline, reply);
    if (rc)
        client_drop(c);
    return rc;
}

/* ---- the generic request (resolver.h) ---- */

_Static_assert(RESOLVER_REQUEST_MAX == RSV_PROTO_LINE_MAX, "resolver.h states the line limit");

const char *resolver_client_socket_path(const char *path)
{
    return rsv_client_default_path(path);
}

/* The JSON payload of an OK or EVENT reply as a new string. */
static int payload_copy(const rsv_proto_reply *reply, char **json)
{
    *json = strdup(reply->payload);
    return *json ? 0 : RESOLVER_ERR_NOMEM;
}

int resolver_client_request(resolver_client *c, const char *const *argv, int *answer, char **json)
{
    if (json)
        *json = NULL;
    if (answer)
        *answer = 0;
    if (!c || !argv || !argv[0] || !*argv[0] || !answer)
        return RESOLVER_ERR_INVALID;
    char line[RSV_PROTO_LINE_MAX];
    size_t used = 0;
    for (size_t i = 0; argv[i]; i++) {
        if (i > 0) {
            if (used + 2 >= sizeof(line))
                return RESOLVER_ERR_INVALID;
            line[used++] = ' ';
        }
        size_t need = rsv_proto_escape(argv[i], line + used, sizeof(line) - used);
        if (need >= sizeof(line) - used)
            return RESOLVER_ERR_INVALID;
        used += need;
    }
    line[used] = '\0';
    rsv_proto_reply reply;
    int rc = rsv_client_request(c, line, &reply);
    if (rc)
        return rc;
    if (reply.kind == RSV_REPLY_ERR) {
        *answer = rsv_proto_error_from_word(reply.code);
        return 0;
    }
    if (reply.kind != RSV_REPLY_OK)
        return RESOLVER_ERR_PROTOCOL;
    return json ? payload_copy(&reply, json) : 0;
}

int resolver_client_next_event(resolver_client *c, int timeout_ms, char **json)
{
    if (json)
        *json = NULL;
    if (!c || !json)
        return RESOLVER_ERR_INVALID;
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        rsv_proto_reply reply;
        int rc = c->fd < 0 ? RESOLVER_ERR_CLOSED : read_reply(c, deadline, &reply);
        if (rc)
            return rc;
        if (reply.kind == RSV_REPLY_EVENT)
            return payload_copy(&reply, json);
    }
}

static int error_of(const rsv_proto_reply *r)
{
    return r->kind == RSV_REPLY_ERR ? rsv_proto_error_from_word(r->code) : RESOLVER_ERR_PROTOCOL;
}

int resolver_client_pick(resolver_client *c, const char *service, const char *key,
                         resolver_pick_result *out)
{
    if (!c || !service || !*service || !out)
        return RESOLVER_ERR_INVALID;
    char line[RSV_PROTO_LINE_MAX], esc_service[1024], esc_key[2048];
    if (rsv_proto_escape(service, esc_service, sizeof(esc_service)) >= sizeof(esc_service))
        return RESOLVER_ERR_INVALID;
    int n = snprintf(line, sizeof(line), "PICK %s", esc_service);
    if (key) {
        if (rsv_proto_escape(key, esc_key, sizeof(esc_key)) >= sizeof(esc_key))
            return RESOLVER_ERR_INVALID;
        snprintf(line + n, sizeof(line) - (size_t)n, " key=%s", esc_key);
    }
    rsv_proto_reply reply;
    int rc = rsv_client_request(c, line, &reply);
    if (rc)
        return rc;
    if (reply.kind != RSV_REPLY_OK)
        return error_of(&reply);
    json_t *o = json_loads(reply.payload, 0, NULL);
    const char *address = NULL;
    json_int_t ticket = 0;
    if (!o || json_unpack(o, "{s:s, s:I}", "address", &address, "ticket", &ticket) != 0) {
        json_decref(o);
        return RESOLVER_ERR_PROTOCOL;
    }
    snprintf(c->address, sizeof(c->address), "%s", address);
    out->address = c->address;
    out->ticket = (uint64_t)ticket;
    out->zone = ""; /* not in the daemon's reply */
    out->weight = 0;
    out->tls = 0;
    out->metadata = NULL;
    json_decref(o);
    return 0;
}

int resolver_client_done(resolver_client *c, uint64_t ticket, resolver_outcome outcome,
                         uint32_t latency_ms)
{
    if (outcome != RESOLVER_OUTCOME_OK && outcome != RESOLVER_OUTCOME_FAILED)
        return RESOLVER_ERR_INVALID;
    int failed = outcome == RESOLVER_OUTCOME_FAILED;
    if (!c)
        return RESOLVER_ERR_INVALID;
    char line[128], latency[32] = "";
    if (latency_ms != RESOLVER_LATENCY_UNKNOWN)
        snprintf(latency, sizeof(latency), " latency_ms=%" PRIu32, latency_ms);
    snprintf(line, sizeof(line), "DONE %" PRIu64 "%s%s", ticket, failed ? " fail=1" : "", latency);
    rsv_proto_reply reply;
    int rc = rsv_client_request(c, line, &reply);
    if (rc)
        return rc;
    return reply.kind == RSV_REPLY_OK ? 0 : error_of(&reply);
}

int resolver_client_free_wait(resolver_client *c)
{
    if (!c)
        return RESOLVER_ERR_INVALID;
    int rc = 0;
    if (c->fd >= 0 && shutdown(c->fd, SHUT_WR) == 0) {
        int64_t deadline = now_ms() + c->timeout_ms;
        char scratch[4096];
        for (;;) {
            ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0);
            if (n == 0)
                break; /* the daemon closed: the connection's tickets are gone */
            if (n > 0 || errno == EINTR)
                continue;
            if (errno != EAGAIN) {
                rc = errno == ECONNRESET ? 0 : RESOLVER_ERR_IO;
                break;
            }
            if ((rc = wait_fd(c->fd, POLLIN, deadline)) != 0)
                break;
        }
    }
    resolver_client_free(c);
    return rc;
}
