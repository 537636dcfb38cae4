/*
 * inbox.c - work other threads hand to the loop thread (a ticket to track,
 * a ticket to release, a service to discover): a lock-free stack pushed by
 * any thread, taken and applied by the loop thread in the order posted.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "engine_internal.h"
#include "log.h"

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

static uint64_t name_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h ? h : 1; /* 0 marks a free slot */
}

/* Any thread: asks the loop thread to discover `name`, unless a request for
 * it is in flight already.  0 when one is in flight (now or before), -1 when
 * none could be posted (every slot of its hash taken by other names, or no
 * memory): the caller's next pick tries again. */
int rsv_inbox_post_discover(resolver_engine *e, const char *name)
{
    uint64_t h = name_hash(name);
    size_t slot = SIZE_MAX;
    for (size_t i = 0; i < RSV_DISCOVER_PROBES && slot == SIZE_MAX; i++) {
        size_t at = (size_t)((h + i) % RSV_DISCOVER_SLOTS);
        uint_fast64_t cur = atomic_load(&e->discovering[at]);
        if (cur == h)
            return 0;
        if (cur == 0 && atomic_compare_exchange_strong(&e->discovering[at], &cur, h))
            slot = at;
        else if (cur == h) /* another thread claimed it for this name first */
            return 0;
    }
    if (slot == SIZE_MAX)
        return -1;
    size_t len = strlen(name) + 1;
    rsv_engine_msg *m = calloc(1, sizeof(*m) + len);
    if (!m) {
        atomic_store(&e->discovering[slot], 0);
        return -1;
    }
    m->type = RSV_MSG_DISCOVER;
    m->id = slot;
    memcpy(m->name, name, len);
    rsv_inbox_post(e, m);
    return 0;
}

/* Loop thread: moves what other threads posted to the `taken` list, in the
 * order posted.  With track_tickets, tickets are tracked on the way (and
 * only they: tracking calls back into nothing, so it is safe from inside
 * any callback, such as a done called by a listener); the rest waits for
 * rsv_inbox_drain, which a wakeup then guarantees. */
void rsv_inbox_take(resolver_engine *e, int track_tickets)
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
        if (track_tickets && m->type == RSV_MSG_TICKET) {
            rsv_ticket_track(e, m->ticket);
            free(m);
            continue;
        }
        m->next = NULL;
        *e->taken_tail = m;
        e->taken_tail = &m->next;
        left = 1;
    }
    if (track_tickets && left)
        rsv_loop_wakeup(e->loop);
}

static void apply_msg(resolver_engine *e, rsv_engine_msg *m)
{
    static rsv_log_limit discover_log;
    char why[256];
    int err;
    switch (m->type) {
    case RSV_MSG_TICKET:
        rsv_ticket_track(e, m->ticket);
        break;
    case RSV_MSG_DONE:
        if (rsv_done_on_loop(e, m->id, m->failed, m->latency_ms) != 0)
            e->done_unknown++;
        break;
    case RSV_MSG_DISCOVER:
        if (!rsv_find_or_discover(e, m->name, why, sizeof(why), &err))
            LOG_WARN_LIMITED(&discover_log, "%s", why);
        /* After the directory names it: a pick that then misses it again
         * posts anew, and finds it done. */
        atomic_store(&e->discovering[m->id], 0);
        break;
    }
}

/* Loop thread: applies what other threads posted, in the order posted. */
void rsv_inbox_drain(rsv_loop *loop, void *arg)
{
    resolver_engine *e = arg;
    (void)loop;
    rsv_inbox_take(e, 0);
    rsv_engine_msg *m;
    /* One at a time off the head: a callback inside apply_msg may append. */
    while ((m = e->taken)) {
        e->taken = m->next;
        if (!e->taken)
            e->taken_tail = &e->taken;
        apply_msg(e, m);
        free(m);
    }
}
