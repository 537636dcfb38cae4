/*
 * inbox.c - work other threads hand to the loop thread: a lock-free stack
 * pushed by any thread, taken and applied by the loop thread in the order
 * posted.  It is only the queue: what a message means (a ticket to track,
 * one to release, a service to discover) is the business of the function
 * its caller hands it (engine.c's for the drain, tickets.c's for a take
 * that tracks tickets), so it calls neither directory.c nor tickets.c.
 */
#include <stdlib.h>
#include "engine_internal.h"

int rsv_on_loop_thread(resolver_engine *e)
{
    return atomic_load(&e->loop_thread_known) && pthread_equal(e->loop_thread, pthread_self());
}

void rsv_mark_loop_thread(resolver_engine *e)
{
    if (!atomic_load(&e->loop_thread_known)) {
        e->loop_thread = pthread_self();
        atomic_store(&e->loop_thread_known, 1);
    }
}

/* Any thread: hands work to the loop thread (Treiber stack + wakeup).
 * Only the message that finds the stack empty wakes the loop: the others
 * ride on that wakeup, which has not been acted on yet (the loop reads the
 * eventfd before it takes the whole stack, so a push after the take finds
 * it empty and wakes again).  One write(2) per burst, not per pick. */
void rsv_inbox_post(resolver_engine *e, rsv_engine_msg *m)
{
    rsv_engine_msg *head = atomic_load(&e->inbox);
    do {
        m->next = head;
    } while (!atomic_compare_exchange_weak(&e->inbox, &head, m));
    if (!head)
        rsv_loop_wakeup(e->loop);
}

/* Loop thread: moves what other threads posted to the `taken` list, in the
 * order posted.  With `early`, each message is offered to it on the way: one
 * it applied (returning 1) is freed, the rest waits for rsv_inbox_drain,
 * which a wakeup then guarantees.  tickets.c's tracks tickets this way (and
 * only them: tracking calls back into nothing, so it is safe from inside
 * any callback, such as a done called by a listener). */
void rsv_inbox_take(resolver_engine *e, rsv_inbox_early_fn *early)
{
    rsv_engine_msg *m = atomic_exchange(&e->inbox, NULL), *ordered = NULL;
    while (m) { /* the stack is newest first: reverse it */
        rsv_engine_msg *next = m->next;
        m->next = ordered;
        ordered = m;
        m = next;
    }
    int left = 0;
    while ((m = ordered)) {
        ordered = m->next;
        if (early && early(e, m)) {
            free(m);
            continue;
        }
        m->next = NULL;
        *e->taken_tail = m;
        e->taken_tail = &m->next;
        left = 1;
    }
    if (early && left)
        rsv_loop_wakeup(e->loop);
}

/* Loop thread: applies what other threads posted, in the order posted,
 * with `apply` (engine.c's), freeing each message after. */
void rsv_inbox_drain(resolver_engine *e, rsv_inbox_apply_fn *apply)
{
    rsv_inbox_take(e, NULL);
    rsv_engine_msg *m;
    /* One at a time off the head: a callback inside apply may append. */
    while ((m = e->taken)) {
        e->taken = m->next;
        if (!e->taken)
            e->taken_tail = &e->taken;
        apply(e, m);
        free(m);
    }
}
