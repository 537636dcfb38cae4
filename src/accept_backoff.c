/* accept_backoff.c - see accept_backoff.h. */
#include <errno.h>
#include <string.h>
#include "accept_backoff.h"

static void on_resume(resolver_loop *loop, resolver_timer *t, void *arg)
{
    accept_backoff *b = arg;
    if (resolver_loop_watch(loop, b->fd, RESOLVER_LOOP_READ, b->on_accept, b->arg) != 0)
        resolver_timer_start(t, ACCEPT_BACKOFF_MS); /* try again later */
}

int accept_backoff_init(accept_backoff *b, resolver_engine *engine, resolver_listener which, int fd,
                        resolver_io_cb on_accept, void *arg)
{
    memset(b, 0, sizeof(*b));
    b->engine = engine;
    b->which = which;
    b->fd = fd;
    b->on_accept = on_accept;
    b->arg = arg;
    b->timer = resolver_timer_new(resolver_engine_loop(engine), on_resume, b);
    return b->timer ? 0 : -1;
}

void accept_backoff_clear(accept_backoff *b)
{
    resolver_timer_del(b->timer);
    b->timer = NULL;
}

int accept_backoff_failed(accept_backoff *b, int err)
{
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
        return 0;
    resolver_loop_unwatch(resolver_engine_loop(b->engine), b->fd);
    resolver_timer_start(b->timer, ACCEPT_BACKOFF_MS);
    resolver_engine_count_accept_backoff(b->engine, b->which);
    LOG_WARN_LIMITED(&b->lim,
                     "%s: cannot accept a connection: %s; not accepting for %d ms (raise the "
                     "open-files limit, or look for a client that holds many connections)",
                     resolver_listener_name(b->which), strerror(err), ACCEPT_BACKOFF_MS);
    return 1;
}
