/*
 * h2sink.c - the smallest HTTP/2 peer that keeps many client connections
 * READY, for tests/bench/subchannel_bench.sh: it listens on COUNT loopback
 * addresses (one socket each, all on PORT), and on every connection sends
 * an empty SETTINGS frame, ACKs the client's SETTINGS, answers PINGs and
 * ignores everything else.  No nghttp2, no streams: enough for a client's
 * handshake and keepalive, a few hundred bytes per connection here.
 *
 * Usage: h2sink FIRST COUNT PORT
 *   Listens on the addresses h2sink_addr(FIRST) .. h2sink_addr(FIRST+COUNT-1):
 *   index i is 127.(10 + i / 62500).((i / 250) % 250).(1 + i % 250), so
 *   10,000 addresses span 127.10.0.1 .. 127.10.39.250 (all of 127.0.0.0/8 is
 *   loopback on Linux: nothing to configure, nothing leaves the host).
 *   Prints "ready" on stdout once every socket listens.
 *   --print-addrs FIRST COUNT PORT: prints the "ADDR:PORT" list and exits.
 * SIGTERM/SIGINT: exit 0.  Linux only (epoll, accept4).
 *
 * Build: cc -O2 -o h2sink h2sink.c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define PREFACE_LEN 24
#define MAX_EVENTS 512

typedef struct {
    int fd;
    int listener;
    uint32_t preface_left;
    uint8_t hdr[9];
    uint8_t hdr_have;
    uint8_t type, flags;
    uint32_t left;   /* payload bytes of the current frame still to read */
    uint8_t ping[8]; /* a PING payload being collected */
    uint8_t ping_have;
} sock;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void addr_of(unsigned i, char *buf, size_t len)
{
    snprintf(buf, len, "127.%u.%u.%u", 10 + i / 62500, (i / 250) % 250, 1 + i % 250);
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    /* Tiny frames into an idle socket: a short write would mean a client
     * that does not read, and this sink does not care about that one. */
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void frame(int fd, uint8_t type, uint8_t flags, const uint8_t *payload, uint32_t len)
{
    uint8_t buf[9 + 8];
    buf[0] = (uint8_t)(len >> 16);
    buf[1] = (uint8_t)(len >> 8);
    buf[2] = (uint8_t)len;
    buf[3] = type;
    buf[4] = flags;
    memset(buf + 5, 0, 4);
    if (len)
        memcpy(buf + 9, payload, len);
    send_all(fd, buf, 9 + len);
}

/* Returns 0, or -1 to close. */
static int on_bytes(sock *s, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (s->preface_left) {
            size_t k = n < s->preface_left ? n : s->preface_left;
            s->preface_left -= (uint32_t)k;
            p += k;
            n -= k;
            continue;
        }
        if (s->hdr_have < 9) {
            s->hdr[s->hdr_have++] = *p++;
            n--;
            if (s->hdr_have < 9)
                continue;
            s->left = (uint32_t)s->hdr[0] << 16 | (uint32_t)s->hdr[1] << 8 | s->hdr[2];
            s->type = s->hdr[3];
            s->flags = s->hdr[4];
            s->ping_have = 0;
            if (s->type == 4 && !(s->flags & 1))
                frame(s->fd, 4, 1, NULL, 0); /* SETTINGS ACK */
            if (s->type == 7)
                return -1; /* GOAWAY: the client is leaving */
            if (s->left > 0)
                continue;
            s->hdr_have = 0;
            continue;
        }
        size_t k = n < s->left ? n : s->left;
        if (s->type == 6 && !(s->flags & 1)) {
            for (size_t i = 0; i < k && s->ping_have < 8; i++)
                s->ping[s->ping_have++] = p[i];
        }
        s->left -= (uint32_t)k;
        p += k;
        n -= k;
        if (s->left == 0) {
            if (s->type == 6 && !(s->flags & 1) && s->ping_have == 8)
                frame(s->fd, 6, 1, s->ping, 8); /* PING ACK */
            s->hdr_have = 0;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--print-addrs") == 0) {
        unsigned first = (unsigned)atoi(argv[2]), count = (unsigned)atoi(argv[3]);
        char a[32];
        for (unsigned i = first; i < first + count; i++) {
            addr_of(i, a, sizeof(a));
            printf("%s:%s\n", a, argv[4]);
        }
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: h2sink FIRST COUNT PORT | h2sink --print-addrs FIRST COUNT PORT\n");
        return 1;
    }
    unsigned first = (unsigned)atoi(argv[1]), count = (unsigned)atoi(argv[2]);
    int port = atoi(argv[3]);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 1;
    }
    for (unsigned i = first; i < first + count; i++) {
        char a[32];
        addr_of(i, a, sizeof(a));
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, a, &sin.sin_addr);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
        if (fd < 0) {
            perror("socket");
            return 1;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 128) != 0) {
            fprintf(stderr, "h2sink: %s:%d: %s\n", a, port, strerror(errno));
            return 1;
        }
        sock *s = calloc(1, sizeof(*s));
        s->fd = fd;
        s->listener = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    printf("ready\n");
    fflush(stdout);
    struct epoll_event evs[MAX_EVENTS];
    uint8_t buf[16384];
    while (!stop) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, 200);
        for (int i = 0; i < n; i++) {
            sock *s = evs[i].data.ptr;
            if (s->listener) {
                for (;;) {
                    int c = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0)
                        break;
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    sock *cs = calloc(1, sizeof(*cs));
                    cs->fd = c;
                    cs->preface_left = PREFACE_LEN;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = cs};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                    frame(c, 4, 0, NULL, 0); /* the server preface: SETTINGS */
                }
                continue;
            }
            ssize_t r = recv(s->fd, buf, sizeof(buf), 0);
            if (r > 0 && on_bytes(s, buf, (size_t)r) == 0)
                continue;
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            close(s->fd); /* EOF, error, GOAWAY */
            free(s);
        }
    }
    return 0;
}
