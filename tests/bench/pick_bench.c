/*
 * pick_bench - the socket pick path beside a bare AF_UNIX echo server that
 * answers the same request with a reply of the same size, in the same run.
 *
 *   pick_bench SOCKET SERVICE [N] [CLIENTS]
 *
 * Prints, one figure per line ("name value unit"):
 *   echo_rtt_us / pick_rtt_us          mean round trip, one request at a time
 *   echo_pipelined_rps / pick_pipelined_rps   requests per second, 64 in
 *                                      flight: 64 PICKs, then their 64 DONEs
 *   clients_ok / clients_errors        CLIENTS connections picking at once
 * Asserts nothing; exit 1 only if the daemon cannot be reached.
 *
 * The echo server is a process of its own, as the daemon is: with its
 * threads in this process a round trip was a switch between threads of one
 * address space, cheaper than between processes (no change of page
 * tables), and the baseline was not the same kind of round trip.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_unix(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until `lines` newlines arrived; counts replies starting "OK". */
static int read_lines(int fd, int lines, int *ok)
{
    char buf[65536];
    int seen = 0, at_line_start = 1;
    while (seen < lines) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        for (ssize_t i = 0; i < n; i++) {
            if (at_line_start && ok && buf[i] == 'O')
                (*ok)++;
            at_line_start = buf[i] == '\n';
            seen += at_line_start;
        }
    }
    return 0;
}

/* ---- the baseline: an echo server replying with `reply` per line ---- */

typedef struct {
    int listen_fd;
    char reply[512];
    size_t reply_len;
} echo_server;

static void *echo_conn(void *arg)
{
    echo_server *es = ((void **)arg)[0];
    int fd = (int)(intptr_t)((void **)arg)[1];
    free(arg);
    char in[65536];
    char *out = malloc(es->reply_len * 4096);
    for (;;) {
        ssize_t n = read(fd, in, sizeof(in));
        if (n <= 0)
            break;
        size_t replies = 0;
        for (ssize_t i = 0; i < n; i++)
            if (in[i] == '\n')
                memcpy(out + es->reply_len * replies++, es->reply, es->reply_len);
        if (replies && write_all(fd, out, es->reply_len * replies) != 0)
            break;
    }
    free(out);
    close(fd);
    return NULL;
}

static void *echo_accept(void *arg)
{
    echo_server *es = arg;
    for (;;) {
        int fd = accept(es->listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL;
        void **ctx = malloc(2 * sizeof(void *));
        ctx[0] = es;
        ctx[1] = (void *)(intptr_t)fd;
        pthread_t t;
        pthread_create(&t, NULL, echo_conn, ctx);
        pthread_detach(t);
    }
}

/* ---- measurements ---- */

static double rtt_us(const char *path, const char *req, int n)
{
    int fd = connect_unix(path);
    if (fd < 0)
        return -1;
    size_t len = strlen(req);
    double t0 = now_s();
    for (int i = 0; i < n; i++)
        if (write_all(fd, req, len) != 0 || read_lines(fd, 1, NULL) != 0)
            break;
    double t = now_s() - t0;
    close(fd);
    return t / n * 1e6;
}

/* Reads `lines` replies and takes the ticket out of each ("ticket":N; 0
 * when there is none, as from the echo server). */
static int read_tickets(int fd, int lines, unsigned long long *tickets)
{
    static char buf[1 << 20];
    size_t have = 0;
    int seen = 0;
    while (seen < lines) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        have += (size_t)n;
        buf[have] = '\0';
        char *line = buf, *nl;
        while (seen < lines && (nl = strchr(line, '\n'))) {
            *nl = '\0';
            const char *t = strstr(line, "\"ticket\":");
            tickets[seen++] = t ? strtoull(t + 9, NULL, 10) : 0;
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
    }
    return 0;
}

/* Requests per second with `depth` in flight: a batch of PICKs, then a
 * batch of DONEs for the tickets they returned, as a client that reports
 * its calls does (tickets outstanding stay at `depth`; detached picks never
 * reported would pile up in the daemon by the million and measure its
 * ticket table's cache misses instead).  PICKs and DONEs both count. */
static double pipelined_rps(const char *path, const char *req, int n, int depth)
{
    int fd = connect_unix(path);
    if (fd < 0)
        return -1;
    size_t len = strlen(req);
    char *batch = malloc(len * (size_t)depth), *dones = malloc(32 * (size_t)depth);
    unsigned long long *tickets = calloc((size_t)depth, sizeof(*tickets));
    for (int i = 0; i < depth; i++)
        memcpy(batch + len * (size_t)i, req, len);
    double t0 = now_s();
    int done;
    for (done = 0; done < n; done += 2 * depth) {
        if (write_all(fd, batch, len * (size_t)depth) != 0 || read_tickets(fd, depth, tickets) != 0)
            break;
        size_t dlen = 0;
        for (int i = 0; i < depth; i++)
            dlen += (size_t)sprintf(dones + dlen, "DONE %llu\n", tickets[i]);
        if (write_all(fd, dones, dlen) != 0 || read_lines(fd, depth, NULL) != 0)
            break;
    }
    double t = now_s() - t0;
    free(batch);
    free(dones);
    free(tickets);
    close(fd);
    return done / t;
}

typedef struct {
    const char *path, *req;
    int picks, ok, errors;
} client_job;

static void *client_run(void *arg)
{
    client_job *j = arg;
    int fd = connect_unix(j->path);
    if (fd < 0) {
        j->errors = j->picks;
        return NULL;
    }
    for (int i = 0; i < j->picks; i++) {
        int ok = 0;
        if (write_all(fd, j->req, strlen(j->req)) != 0 || read_lines(fd, 1, &ok) != 0) {
            j->errors += j->picks - i;
            break;
        }
        j->ok += ok;
        j->errors += !ok;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pick_bench SOCKET SERVICE [N] [CLIENTS]\n");
        return 1;
    }
    const char *sock = argv[1];
    int n = argc > 3 ? atoi(argv[3]) : 20000;
    int clients = argc > 4 ? atoi(argv[4]) : 1000;
    char req[256];
    snprintf(req, sizeof(req), "PICK %s detach=1\n", argv[2]);

    /* One real pick fixes the reply size the echo server must match. */
    int fd = connect_unix(sock);
    if (fd < 0) {
        fprintf(stderr, "pick_bench: cannot connect to %s\n", sock);
        return 1;
    }
    echo_server es = {0};
    write_all(fd, req, strlen(req));
    ssize_t got = read(fd, es.reply, sizeof(es.reply) - 1);
    close(fd);
    if (got <= 0 || strncmp(es.reply, "OK", 2) != 0) {
        fprintf(stderr, "pick_bench: the first pick failed: %.*s\n", (int)(got > 0 ? got : 0),
                es.reply);
        return 1;
    }
    es.reply_len = (size_t)got;

    char echo_path[108];
    snprintf(echo_path, sizeof(echo_path), "%s.echo", sock);
    unlink(echo_path);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", echo_path);
    es.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (bind(es.listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        listen(es.listen_fd, 1024) != 0) {
        perror("echo server");
        return 1;
    }
    fflush(stdout);
    pid_t echo_pid = fork();
    if (echo_pid < 0) {
        perror("fork");
        return 1;
    }
    if (echo_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives the benchmark */
        echo_accept(&es);
        _exit(0);
    }
    close(es.listen_fd);

    printf("request_bytes %zu bytes\nreply_bytes %zu bytes\n", strlen(req), es.reply_len);
    printf("echo_rtt_us %.2f us\n", rtt_us(echo_path, req, n));
    printf("pick_rtt_us %.2f us\n", rtt_us(sock, req, n));
    /* Tickets owned by the connection, as the C client's are. */
    char owned[256];
    snprintf(owned, sizeof(owned), "PICK %s\n", argv[2]);
    printf("echo_pipelined_rps %.0f req/s\n", pipelined_rps(echo_path, owned, n * 10, 64));
    printf("pick_pipelined_rps %.0f req/s\n", pipelined_rps(sock, owned, n * 10, 64));

    client_job *jobs = calloc((size_t)clients, sizeof(*jobs));
    pthread_t *threads = calloc((size_t)clients, sizeof(*threads));
    int ok = 0, errors = 0;
    double t0 = now_s();
    for (int i = 0; i < clients; i++) {
        jobs[i] = (client_job){sock, req, 20, 0, 0};
        pthread_create(&threads[i], NULL, client_run, &jobs[i]);
    }
    for (int i = 0; i < clients; i++) {
        pthread_join(threads[i], NULL);
        ok += jobs[i].ok;
        errors += jobs[i].errors;
    }
    printf("clients %d connections\nclients_ok %d picks\nclients_errors %d picks\n"
           "clients_seconds %.2f s\n",
           clients, ok, errors, now_s() - t0);
    free(jobs);
    free(threads);
    kill(echo_pid, SIGKILL);
    waitpid(echo_pid, NULL, 0);
    unlink(echo_path);
    return 0;
}
