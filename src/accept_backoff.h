/*
 * accept_backoff.h - what resolverd's listeners (the Unix socket, the
 * metrics port) do when accept4 fails for want of a descriptor or memory
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM).  The connection stays in the backlog,
 * so a level-triggered listener is readable again at once: without a pause
 * the loop spins at 100 % CPU until a descriptor frees up.  The listener is
 * unwatched for ACCEPT_BACKOFF_MS, each pause is counted
 * (resolver_accept_backoffs_total) and warned about, rate-limited.
 * Loop-thread only.
 */
#ifndef RSV_ACCEPT_BACKOFF_H
#define RSV_ACCEPT_BACKOFF_H

#include "engine.h"
#include "log.h"
#include "loop.h"

#define ACCEPT_BACKOFF_MS 100

typedef struct {
    resolver_engine *engine;
    rsv_listener which;
    int fd;              /* the listening socket */
    rsv_io_cb on_accept; /* watched again after the pause */
    void *arg;
    rsv_timer *timer;
    rsv_log_limit lim;
} accept_backoff;

/* 0, or -1 when out of memory. */
int accept_backoff_init(accept_backoff *b, resolver_engine *engine, rsv_listener which, int fd,
                        rsv_io_cb on_accept, void *arg);
void accept_backoff_clear(accept_backoff *b);
/* After accept4 failed with `err`: 1 if the listener is paused now (end the
 * accept burst), 0 for errors that need no pause (EAGAIN, a connection
 * aborted before it was accepted). */
int accept_backoff_failed(accept_backoff *b, int err);

#endif
