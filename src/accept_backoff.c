/* accept_backoff.c - see accept_backoff.h. */
#include <errno.h>
#include <string.h>
#include "accept_backoff.h"

static void on_resume(rsv_loop *loop, rsv_timer *t, void *arg)
{
    accept_backoff *b = arg;
    if (rsv_loop_watch(loop, b->fd, RSV_LOOP_READ, b->on_accept, b->arg) != 0)
        rsv_timer_start(t, ACCEPT_BACKOFF_MS); /* try again later */
}

int accept_backoff_init(accept_backoff *b, resolver_engine *engine, rsv_listener which, int fd,
                        rsv_io_cb on_accept, void *arg)
{
    memset(b, 0, sizeof(*b));
    b->engine = engine;
    b->which = which;
    b->fd = fd;
    b->on_accept = on_accept;
    b->arg = arg;
    b->timer = rsv_timer_new(rsv_engine_loop(engine), on_resume, b);
    return b->timer ? 0 : -1;
}

void accept_backoff_clear(accept_backoff *b)
{
    rsv_timer_del(b->timer);
    b->timer = NULL;
}

int accept_backoff_failed(accept_backoff *b, int err)
{
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
        return 0;
    rsv_loop_unwatch(rsv_engine_loop(b->engine), b->fd);
    rsv_timer_start(b->timer, ACCEPT_BACKOFF_MS);
    rsv_engine_count_accept_backoff(b->engine, b->which);
    LOG_WARN_LIMITED(&b->lim,
                     "%s: cannot accept a connection: %s; not accepting for %d ms (raise the "
                     "open-files limit, or look for a client that holds many connections)",
                     rsv_listener_name(b->which), strerror(err), ACCEPT_BACKOFF_MS);
    return 1;
}
