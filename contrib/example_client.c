/*
 * example_client.c - libresolver's daemon client in a C program.
 *
 *   example_client SOCKET SERVICE [N]
 *
 * Asks resolverd (listening on SOCKET) N times (default 3) which instance
 * of SERVICE to call, "calls" it (a TCP connect stands in for a real RPC),
 * and reports the outcome and the measured latency with
 * resolver_client_done, so that least_request and outlier detection see
 * real figures.  Prints one line per pick:
 *
 *   ADDRESS ticket=T latency_ms=L ok|failed
 *
 * Exit status, as resolverctl's: 0 ok, 1 usage, 2 cannot reach the daemon,
 * 3 no instance, 4 any other error.
 *
 * Only <resolver.h> and system headers: build it against the installed
 * library with
 *   cc example_client.c $(pkg-config --cflags --libs libresolver)
 */
#include <netdb.h>
#include <resolver.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_USAGE = 1, EXIT_UNREACHABLE = 2, EXIT_NO_INSTANCE = 3, EXIT_OTHER = 4 };

static int exit_code_for(int err)
{
    switch (err) {
    case RESOLVER_ERR_NO_INSTANCE:
    case RESOLVER_ERR_NONE_READY:
    case RESOLVER_ERR_NOT_FOUND:
        return EXIT_NO_INSTANCE;
    case RESOLVER_ERR_INVALID:
        return EXIT_USAGE;
    case RESOLVER_ERR_CONNECT:
    case RESOLVER_ERR_CLOSED:
    case RESOLVER_ERR_TIMEOUT:
    case RESOLVER_ERR_IO:
        return EXIT_UNREACHABLE;
    default:
        return EXIT_OTHER;
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Splits "host:port" or "[v6]:port" (what a pick returns) in place. */
static int split_address(char *address, char **host, char **port)
{
    char *colon = strrchr(address, ':');
    if (!colon)
        return -1;
    *colon = '\0';
    *port = colon + 1;
    *host = address;
    if (address[0] == '[' && colon > address + 1 && colon[-1] == ']') {
        colon[-1] = '\0';
        *host = address + 1;
    }
    return 0;
}

/* Stands in for the real call: opens a TCP connection to the instance.
 * Returns 0 on success. */
static int call_instance(const char *address)
{
    char buf[RESOLVER_ADDRESS_MAX];
    char *host, *port;
    snprintf(buf, sizeof(buf), "%s", address);
    if (split_address(buf, &host, &port) != 0)
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    int rc = -1;
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd >= 0) {
        /* Linux bounds a blocking connect by the send timeout. */
        struct timeval tv = {.tv_sec = 1};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        rc = connect(fd, res->ai_addr, res->ai_addrlen);
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

/* One pick, one call, one done.  Returns 0 or a resolver_error. */
static int pick_call_done(resolver_client *client, const char *service)
{
    resolver_pick_result pick;
    int rc = resolver_client_pick(client, service, NULL, &pick);
    if (rc != 0) {
        const char *why = resolver_client_last_error(client);
        fprintf(stderr, "example_client: pick %s: %s%s%s\n", service, resolver_strerror(rc),
                *why ? ": " : "", why);
        return rc;
    }
    uint64_t start = now_ms();
    int failed = call_instance(pick.address) != 0;
    uint64_t latency = now_ms() - start;
    printf("%s ticket=%llu latency_ms=%llu %s\n", pick.address, (unsigned long long)pick.ticket,
           (unsigned long long)latency, failed ? "failed" : "ok");
    /* Always report: an unreported ticket counts as outstanding until
     * ticket_timeout_ms, and skews least_request. */
    rc = resolver_client_done(
        client, pick.ticket, failed ? RESOLVER_OUTCOME_FAILED : RESOLVER_OUTCOME_OK,
        latency >= RESOLVER_LATENCY_UNKNOWN ? RESOLVER_LATENCY_UNKNOWN - 1 : (uint32_t)latency);
    if (rc != 0)
        fprintf(stderr, "example_client: done %llu: %s\n", (unsigned long long)pick.ticket,
                resolver_strerror(rc));
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "Usage: example_client SOCKET SERVICE [N]\n");
        return EXIT_USAGE;
    }
    long n = argc == 4 ? strtol(argv[3], NULL, 10) : 3;
    if (n < 1) {
        fprintf(stderr, "example_client: N must be a positive number\n");
        return EXIT_USAGE;
    }
    resolver_client *client;
    int rc = resolver_client_connect(argv[1], 2000, &client);
    if (rc != 0) {
        fprintf(stderr, "example_client: cannot reach resolverd at %s: %s\n", argv[1],
                resolver_strerror(rc));
        return exit_code_for(rc);
    }
    for (long i = 0; i < n && rc == 0; i++)
        rc = pick_call_done(client, argv[2]);
    resolver_client_free(client);
    return rc == 0 ? 0 : exit_code_for(rc);
}
