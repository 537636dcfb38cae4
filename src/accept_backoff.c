/* accept_backoff.c - see accept_backoff.h. */
#include <errno.h>
#include <string.h>
#include "accept_backoff.h"
#include "daemon_log.h"

/* Engine thread only, as every listener: plain counters. */
static uint64_t backoffs[RSV_LISTENER_COUNT];

const char *rsv_listener_name(rsv_listener which)
{
    return which == RSV_LISTENER_SOCKET ? "socket" : "metrics";
}

uint64_t rsv_accept_backoffs(rsv_listener which)
{
    return which < RSV_LISTENER_COUNT ? backoffs[which] : 0;
}

static void on_resume(resolver_loop *loop, resolver_timer *t, void *arg)
{
    accept_backoff *b = arg;
    if (resolver_loop_watch(loop, b->fd, RESOLVER_FD_READ, b->on_accept, b->arg) != 0)
        resolver_timer_start(t, ACCEPT_BACKOFF_MS); /* try again later */
}

int accept_backoff_init(accept_backoff *b, resolver_engine *engine, rsv_listener which, int fd,
                        resolver_fd_fn on_accept, void *arg)
{
    memset(b, 0, sizeof(*b));
    b->loop = resolver_engine_loop(engine);
    b->which = which;
    b->fd = fd;
    b->on_accept = on_accept;
    b->arg = arg;
    b->timer = resolver_timer_new(b->loop, on_resume, b);
    return b->timer ? 0 : -1;
}

void accept_backoff_clear(accept_backoff *b)
{
    resolver_timer_free(b->timer);
    b->timer = NULL;
}

int accept_backoff_failed(accept_backoff *b, int err)
{
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
        return 0;
    resolver_loop_unwatch(b->loop, b->fd);
    resolver_timer_start(b->timer, ACCEPT_BACKOFF_MS);
    backoffs[b->which]++;
    LOG_WARN_LIMITED(&b->lim,
                     "%s: cannot accept a connection: %s; not accepting for %d ms (raise the "
                     "open-files limit, or look for a client that holds many connections)",
                     rsv_listener_name(b->which), strerror(err), ACCEPT_BACKOFF_MS);
    return 1;
}
