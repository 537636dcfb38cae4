/*
 * pick_bench - the socket pick path beside a bare AF_UNIX echo server that
 * answers the same request with a reply of the same size, in the same run.
 *
 *   pick_bench SOCKET SERVICE [N] [CLIENTS]
 *
 * Prints, one figure per line ("name value unit"):
 *   echo_rtt_us / pick_rtt_us          mean round trip, one request at a time
 *   echo_pipelined_rps / pick_pipelined_rps   requests per second, 64 in flight
 *   clients_ok / clients_errors        CLIENTS connections picking at once
 * Asserts nothing; exit 1 only if the daemon cannot be reached.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
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

static double pipelined_rps(const char *path, const char *req, int n, int depth)
{
    int fd = connect_unix(path);
    if (fd < 0)
        return -1;
    size_t len = strlen(req);
    char *batch = malloc(len * (size_t)depth);
    for (int i = 0; i < depth; i++)
        memcpy(batch + len * (size_t)i, req, len);
    double t0 = now_s();
    for (int done = 0; done < n; done += depth)
        if (write_all(fd, batch, len * (size_t)depth) != 0 || read_lines(fd, depth, NULL) != 0)
            break;
    double t = now_s() - t0;
    free(batch);
    close(fd);
    return n / t;
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
    pthread_t acceptor;
    pthread_create(&acceptor, NULL, echo_accept, &es);

    printf("request_bytes %zu bytes\nreply_bytes %zu bytes\n", strlen(req), es.reply_len);
    printf("echo_rtt_us %.2f us\n", rtt_us(echo_path, req, n));
    printf("pick_rtt_us %.2f us\n", rtt_us(sock, req, n));
    printf("echo_pipelined_rps %.0f req/s\n", pipelined_rps(echo_path, req, n * 5, 64));
    printf("pick_pipelined_rps %.0f req/s\n", pipelined_rps(sock, req, n * 5, 64));

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
    unlink(echo_path);
    return 0;
}
