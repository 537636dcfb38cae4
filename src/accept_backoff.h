/*
 * accept_backoff.h - what resolverd's listeners (the Unix socket, the
 * metrics port) do when accept4 fails for want of a descriptor or memory
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM).  The connection stays in the backlog,
 * so a level-triggered listener is readable again at once: without a pause
 * the loop spins at 100 % CPU until a descriptor frees up.  The listener is
 * unwatched for ACCEPT_BACKOFF_MS, each pause is counted
 * (resolver_accept_backoffs_total) and warned about, rate-limited.
 * Engine thread only.
 */
#ifndef RSV_ACCEPT_BACKOFF_H
#define RSV_ACCEPT_BACKOFF_H

#include <stdint.h>
#include <resolver.h>

#define ACCEPT_BACKOFF_MS 100

/* The daemon's listeners, as resolver_accept_backoffs_total labels them. */
typedef enum { RSV_LISTENER_SOCKET, RSV_LISTENER_METRICS, RSV_LISTENER_COUNT } rsv_listener;
const char *rsv_listener_name(rsv_listener which); /* "socket", "metrics" */
/* The pauses of `which` since the start. */
uint64_t rsv_accept_backoffs(rsv_listener which);

typedef struct {
    resolver_loop *loop;
    rsv_listener which;
    int fd;                   /* the listening socket */
    resolver_fd_fn on_accept; /* watched again after the pause */
    void *arg;
    resolver_timer *timer;
    resolver_log_limit lim;
} accept_backoff;

/* 0, or -1 when out of memory. */
int accept_backoff_init(accept_backoff *b, resolver_engine *engine, rsv_listener which, int fd,
                        resolver_fd_fn on_accept, void *arg);
void accept_backoff_clear(accept_backoff *b);
/* After accept4 failed with `err`: 1 if the listener is paused now (end the
 * accept burst), 0 for errors that need no pause (EAGAIN, a connection
 * aborted before it was accepted). */
int accept_backoff_failed(accept_backoff *b, int err);

#endif
