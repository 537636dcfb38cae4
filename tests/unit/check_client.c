/* check_client.c - the C client's framing against a fake daemon on a Unix
 * socket (lib/client.c): a reply that comes after the client gave up must
 * not answer the next request. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "client.h"
#include "resolver.h"

typedef struct {
    int listen_fd;
    int connections;
} fake_server;

/* The server thread is joined by fake_stop: with CK_FORK=no (the valgrind
 * run) every test shares one process, and a thread left running would read
 * the fake_server of a returned test's stack. */

/* Answers each line of one connection: "PICK slow" after 300 ms with ticket
 * 1, anything else at once with ticket 2. */
static void serve_connection(int fd)
{
    char buf[4096];
    size_t len = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - len - 1, 0);
        if (n <= 0)
            return;
        len += (size_t)n;
        char *nl;
        while ((nl = memchr(buf, '\n', len))) {
            *nl = '\0';
            int slow = strcmp(buf, "PICK slow") == 0;
            if (slow)
                usleep(300000);
            char reply[128];
            int r =
                snprintf(reply, sizeof(reply), "OK {\"address\":\"10.0.0.%d:1\",\"ticket\":%d}\n",
                         slow ? 1 : 2, slow ? 1 : 2);
            if (send(fd, reply, (size_t)r, MSG_NOSIGNAL) != r)
                return;
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, buf + used, len - used);
            len -= used;
        }
    }
}

static void *fake_main(void *arg)
{
    fake_server *f = arg;
    for (;;) {
        int fd = accept(f->listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL;
        __atomic_add_fetch(&f->connections, 1, __ATOMIC_SEQ_CST);
        serve_connection(fd);
        close(fd);
    }
}

static int fake_start(fake_server *f, char *path, size_t pathlen, pthread_t *th)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(path, pathlen, "%s/check_client.%d.sock", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    unlink(path);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strcpy(addr.sun_path, path);
    f->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    f->connections = 0;
    if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        listen(f->listen_fd, 8) != 0)
        return -1;
    return pthread_create(th, NULL, fake_main, f) != 0 ? -1 : 0;
}

/* Stops accepting (shutdown wakes a blocked accept; close alone does not),
 * waits for the thread and removes the socket.  The client must have closed
 * its connections first, or the thread waits in recv. */
static void fake_stop(fake_server *f, pthread_t th, const char *path)
{
    shutdown(f->listen_fd, SHUT_RDWR);
    pthread_join(th, NULL);
    close(f->listen_fd);
    unlink(path);
}

START_TEST(timeout_does_not_shift_replies)
{
    fake_server f;
    char path[108];
    pthread_t th;
    ck_assert_int_eq(fake_start(&f, path, sizeof(path), &th), 0);
    resolver_client *c;
    ck_assert_int_eq(resolver_client_connect(path, 100, &c), 0);
    resolver_pick_result r;
    ck_assert_int_eq(resolver_client_pick(c, "slow", NULL, &r), RESOLVER_ERR_TIMEOUT);
    usleep(400000); /* the late reply to the slow pick has arrived by now */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(resolver_client_pick(c, "fast", NULL, &r), 0);
        ck_assert_str_eq(r.address, "10.0.0.2:1");
        ck_assert_uint_eq(r.ticket, 2);
    }
    /* One connection for the timed-out request, one after it. */
    ck_assert_int_eq(__atomic_load_n(&f.connections, __ATOMIC_SEQ_CST), 2);
    resolver_client_free(c);
    fake_stop(&f, th, path);
}
END_TEST

START_TEST(reconnect_fails_cleanly)
{
    fake_server f;
    char path[108];
    pthread_t th;
    ck_assert_int_eq(fake_start(&f, path, sizeof(path), &th), 0);
    resolver_client *c;
    ck_assert_int_eq(resolver_client_connect(path, 100, &c), 0);
    resolver_pick_result r;
    ck_assert_int_eq(resolver_client_pick(c, "slow", NULL, &r), RESOLVER_ERR_TIMEOUT);
    /* The daemon is gone: the next call says so instead of reading the
     * stale connection. */
    fake_stop(&f, th, path);
    ck_assert_int_eq(resolver_client_pick(c, "fast", NULL, &r), RESOLVER_ERR_CONNECT);
    ck_assert_ptr_nonnull(strstr(resolver_client_last_error(c), path));
    resolver_client_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("client");
    TCase *tc = tcase_create("framing");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, timeout_does_not_shift_replies);
    tcase_add_test(tc, reconnect_fails_cleanly);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
