/*
 * example_embedded.c - libresolver's engine inside a C program, driven
 * from the program's own poll() loop (no daemon, no thread).
 *
 *   example_embedded ETCD_URL SERVICE [N]
 *
 * Watches SERVICE in etcd (go-zero convention: keys under "SERVICE/"),
 * runs the engine until an instance of it is READY (told by the engine's
 * watch callback, not by polling picks) or 10 s pass, then prints N picks
 * (default 3), one address per line, reporting each one done.
 *
 * Exit status: 0 ok, 1 usage or bad argument, 3 no READY instance before
 * the deadline, 4 any other error.
 *
 * Only <resolver.h> and system headers: build it against the installed
 * library with
 *   cc example_embedded.c $(pkg-config --cflags --libs libresolver)
 */
#include <poll.h>
#include <resolver.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { EXIT_USAGE = 1, EXIT_NO_INSTANCE = 3, EXIT_OTHER = 4 };
enum { DEADLINE_MS = 10000 };

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int create_engine(const char *etcd_url, resolver_engine **out)
{
    resolver_config *cfg;
    int rc = resolver_config_new_default(&cfg);
    if (rc != 0)
        return rc;
    rc = resolver_config_set_endpoints(cfg, etcd_url);
    if (rc != 0) {
        resolver_config_free(cfg);
        return rc;
    }
    return resolver_engine_new(out, cfg); /* takes cfg, even on failure */
}

/* One turn of the host's loop: wait for the engine's fd or its next timer,
 * but never past `deadline`, then let the engine do its work.  A real
 * program would poll its own fds in the same call. */
static int drive_once(resolver_engine *engine, int64_t deadline)
{
    int timeout = resolver_engine_timeout(engine);
    int64_t left = deadline - now_ms();
    if (left < 0)
        left = 0;
    if (timeout < 0 || timeout > left)
        timeout = (int)left;
    struct pollfd pfd = {.fd = resolver_engine_fd(engine), .events = POLLIN};
    if (poll(&pfd, 1, timeout) < 0)
        return RESOLVER_ERR_IO;
    return resolver_engine_process(engine);
}

/* The watch callback, on the engine's thread (here: inside
 * resolver_engine_process).  It only notes that a pick may now succeed:
 * picking is left to the loop, outside the engine's own updates. */
static void on_event(void *arg, const resolver_event *ev)
{
    int *ready = arg;
    if (ev->type == RESOLVER_EVENT_INSTANCE_STATE && ev->state == RESOLVER_STATE_READY)
        *ready = 1;
}

/* Drives the engine until `service` has a READY instance.  The first pick
 * of a service the configuration does not list starts its discovery and
 * answers RESOLVER_ERR_NO_INSTANCE; the watch then says when an instance
 * of it turns READY, and the pick is tried again. */
static int wait_for_pick(resolver_engine *engine, const char *service, resolver_pick_result *pick)
{
    int64_t deadline = now_ms() + DEADLINE_MS;
    int ready = 0;
    resolver_watch *watch;
    int rc = resolver_engine_watch(engine, service, on_event, &ready, &watch);
    if (rc != 0)
        return rc;
    for (;;) {
        ready = 0;
        rc = resolver_engine_pick(engine, service, NULL, pick);
        if (rc == 0 || (rc != RESOLVER_ERR_NO_INSTANCE && rc != RESOLVER_ERR_NONE_READY))
            break;
        while (!ready && now_ms() < deadline) {
            int prc = drive_once(engine, deadline);
            if (prc != 0) {
                rc = prc;
                break;
            }
        }
        if (!ready)
            break; /* the deadline, or the engine failed */
    }
    resolver_watch_free(watch);
    return rc;
}

static int pick_n(resolver_engine *engine, const char *service, long n)
{
    resolver_pick_result pick;
    int rc = wait_for_pick(engine, service, &pick);
    for (long i = 0; rc == 0; i++) {
        printf("%s\n", pick.address);
        /* The call itself is left out; report success with no latency. */
        rc = resolver_engine_done(engine, pick.ticket, 0, RESOLVER_LATENCY_UNKNOWN);
        if (rc != 0 || i + 1 == n)
            break;
        rc = resolver_engine_pick(engine, service, NULL, &pick);
    }
    if (rc != 0)
        fprintf(stderr, "example_embedded: %s: %s\n", service, resolver_strerror(rc));
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "Usage: example_embedded ETCD_URL SERVICE [N]\n");
        return EXIT_USAGE;
    }
    long n = argc == 4 ? strtol(argv[3], NULL, 10) : 3;
    if (n < 1) {
        fprintf(stderr, "example_embedded: N must be a positive number\n");
        return EXIT_USAGE;
    }
    /* The engine logs to stderr at "info" by default; an example keeps its
     * output to what it was asked for. */
    resolver_log_set_level(RESOLVER_LOG_WARN);
    resolver_engine *engine;
    int rc = create_engine(argv[1], &engine);
    if (rc != 0) {
        fprintf(stderr, "example_embedded: %s: %s\n", argv[1], resolver_strerror(rc));
        return rc == RESOLVER_ERR_INVALID || rc == RESOLVER_ERR_CONFIG ? EXIT_USAGE : EXIT_OTHER;
    }
    rc = pick_n(engine, argv[2], n);
    resolver_engine_free(engine);
    if (rc == RESOLVER_ERR_NO_INSTANCE || rc == RESOLVER_ERR_NONE_READY)
        return EXIT_NO_INSTANCE;
    return rc == 0 ? 0 : EXIT_OTHER;
}
