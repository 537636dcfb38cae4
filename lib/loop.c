/*
 * loop.c - epoll + a binary min-heap of timers + an eventfd for wakeups.
 *
 * Sized after Redis' ae.c: read it in one sitting.  The rules callers rely
 * on are in loop.h.  Implementation notes:
 *  - Watchers live in an array indexed by fd.  epoll's user data carries the
 *    fd and the watch's generation; an event whose generation no longer
 *    matches (the fd was unwatched, perhaps closed and reused, earlier in the
 *    same iteration) is dropped.  That is what makes removal from inside
 *    callbacks safe.
 *  - Timers are caller-owned objects holding their heap index, so stop and
 *    restart are O(log n) without searching.
 *  - Due timers are collected by deadline <= now at the start of the timer
 *    phase; a timer (re)started from a callback for 0 ms gets deadline = now
 *    and would fire in the same phase, so the phase runs at most as many
 *    timers as were due when it began (rule 4).
 *  - Armed before-sleep hooks sit on a circular list with a sentinel in the
 *    loop; the hook phase moves the whole list aside first, so hooks armed
 *    during the phase wait for the next one (rule 6), and a hook disarmed
 *    or freed during the phase simply leaves whichever list it is on.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include "clock.h"
#include "loop.h"
#include "resolver.h"

#define MAX_EVENTS 256
#define WAKEUP_TAG UINT64_MAX

typedef struct {
    rsv_io_cb cb;
    void *arg;
    unsigned events; /* 0: not watched */
    uint32_t generation;
} watcher;

struct resolver_timer {
    rsv_loop *loop;
    rsv_timer_cb cb;
    void *arg;
    uint64_t deadline;
    uint64_t seq; /* start order: ties fire first-started first */
    size_t index; /* position in the heap; SIZE_MAX when not armed */
};

struct rsv_sleep_hook {
    rsv_loop *loop;
    rsv_sleep_hook_cb cb;
    void *arg;
    rsv_sleep_hook *prev, *next; /* NULL when not armed */
};

struct resolver_loop {
    int epfd;
    int wakefd;
    watcher *watchers;
    size_t n_watchers;
    uint32_t next_generation;
    rsv_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    uint64_t now;
    /* Set by any thread or a signal handler: a lock-free atomic is both
     * thread-safe and async-signal-safe (sig_atomic_t is only the latter). */
    atomic_int stop;
    void (*wakeup_cb)(rsv_loop *, void *);
    void *wakeup_arg;
    rsv_sleep_hook armed;   /* sentinel of the armed hooks */
    rsv_sleep_hook running; /* sentinel of the hooks of the current phase */
};

static void hook_list_init(rsv_sleep_hook *head)
{
    head->prev = head->next = head;
}

static int hook_list_empty(const rsv_sleep_hook *head)
{
    return head->next == head;
}

rsv_loop *rsv_loop_new(void)
{
    rsv_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        goto fail_loop;
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wakefd < 0)
        goto fail_epoll;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKEUP_TAG};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) != 0)
        goto fail_wake;
    loop->next_generation = 1;
    loop->now = rsv_clock_ms();
    hook_list_init(&loop->armed);
    hook_list_init(&loop->running);
    return loop;

fail_wake:
    close(loop->wakefd);
fail_epoll:
    close(loop->epfd);
fail_loop:
    free(loop);
    return NULL;
}

void rsv_loop_del(rsv_loop *loop)
{
    if (!loop)
        return;
    close(loop->wakefd);
    close(loop->epfd);
    free(loop->watchers);
    /* Timers are owned by their creators; any still armed just lose their
     * heap. */
    for (size_t i = 0; i < loop->heap_len; i++)
        loop->heap[i]->index = SIZE_MAX;
    free(loop->heap);
    while (!hook_list_empty(&loop->armed))
        rsv_sleep_hook_disarm(loop->armed.next);
    free(loop);
}

static int grow_watchers(rsv_loop *loop, int fd)
{
    if ((size_t)fd < loop->n_watchers)
        return 0;
    size_t n = loop->n_watchers ? loop->n_watchers : 64;
    while (n <= (size_t)fd)
        n *= 2;
    watcher *w = realloc(loop->watchers, n * sizeof(*w));
    if (!w)
        return RESOLVER_ERR_NOMEM;
    memset(w + loop->n_watchers, 0, (n - loop->n_watchers) * sizeof(*w));
    loop->watchers = w;
    loop->n_watchers = n;
    return 0;
}

static uint32_t epoll_mask(unsigned events)
{
    uint32_t m = 0;
    if (events & RSV_LOOP_READ)
        m |= EPOLLIN | EPOLLRDHUP;
    if (events & RSV_LOOP_WRITE)
        m |= EPOLLOUT;
    return m;
}

int rsv_loop_watch(rsv_loop *loop, int fd, unsigned events, rsv_io_cb cb, void *arg)
{
    if (fd < 0 || fd >= (1 << 24) || !cb)
        return RESOLVER_ERR_INVALID;
    events &= RSV_LOOP_READ | RSV_LOOP_WRITE;
    if (events == 0) {
        rsv_loop_unwatch(loop, fd);
        return 0;
    }
    int rc = grow_watchers(loop, fd);
    if (rc)
        return rc;
    watcher *w = &loop->watchers[fd];
    int op = w->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (op == EPOLL_CTL_ADD)
        w->generation = loop->next_generation++;
    struct epoll_event ev = {.events = epoll_mask(events),
                             .data.u64 = ((uint64_t)w->generation << 32) | (uint32_t)fd};
    if (epoll_ctl(loop->epfd, op, fd, &ev) != 0) {
        /* MOD on an fd the kernel forgot (closed and reopened behind our
         * back) must become an ADD; the reverse for a stale ADD. */
        if (op == EPOLL_CTL_MOD && errno == ENOENT) {
            /* A new file behind the old number: a new watch, so events
             * still pending for the old file must not match it (rule 3). */
            op = EPOLL_CTL_ADD;
            w->generation = loop->next_generation++;
            ev.data.u64 = ((uint64_t)w->generation << 32) | (uint32_t)fd;
        } else if (op == EPOLL_CTL_ADD && errno == EEXIST)
            op = EPOLL_CTL_MOD;
        else
            return RESOLVER_ERR_IO;
        if (epoll_ctl(loop->epfd, op, fd, &ev) != 0)
            return RESOLVER_ERR_IO;
    }
    w->cb = cb;
    w->arg = arg;
    w->events = events;
    return 0;
}

void rsv_loop_unwatch(rsv_loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->n_watchers || loop->watchers[fd].events == 0)
        return;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    watcher *w = &loop->watchers[fd];
    w->events = 0;
    w->cb = NULL;
    w->arg = NULL;
    w->generation = 0; /* pending events of this watch no longer match */
}

/* ---- timer heap ---- */

static int timer_before(const rsv_timer *a, const rsv_timer *b)
{
    if (a->deadline != b->deadline)
        return a->deadline < b->deadline;
    return a->seq < b->seq;
}

static void heap_set(rsv_loop *loop, size_t i, rsv_timer *t)
{
    loop->heap[i] = t;
    t->index = i;
}

static void heap_up(rsv_loop *loop, size_t i)
{
    rsv_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(rsv_loop *loop, size_t i)
{
    rsv_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t))
            break;
        heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    heap_set(loop, i, t);
}

static void heap_remove(rsv_loop *loop, rsv_timer *t)
{
    size_t i = t->index;
    t->index = SIZE_MAX;
    loop->heap_len--;
    if (i == loop->heap_len)
        return;
    rsv_timer *moved = loop->heap[loop->heap_len];
    heap_set(loop, i, moved);
    heap_up(loop, i);
    heap_down(loop, moved->index);
}

rsv_timer *rsv_timer_new(rsv_loop *loop, rsv_timer_cb cb, void *arg)
{
    rsv_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->loop = loop;
    t->cb = cb;
    t->arg = arg;
    t->index = SIZE_MAX;
    return t;
}

void rsv_timer_stop(rsv_timer *t)
{
    if (t && t->index != SIZE_MAX)
        heap_remove(t->loop, t);
}

void rsv_timer_start(rsv_timer *t, uint64_t ms)
{
    rsv_loop *loop = t->loop;
    rsv_timer_stop(t);
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        rsv_timer **h = realloc(loop->heap, cap * sizeof(*h));
        if (!h) {
            /* Cannot arm: fire "soon" is impossible too.  Leave it stopped;
             * callers treat timers as best effort only when memory is gone. */
            return;
        }
        loop->heap = h;
        loop->heap_cap = cap;
    }
    /* Saturate: a huge delay means "never", not a wrapped-around "now". */
    t->deadline = ms > UINT64_MAX - loop->now ? UINT64_MAX : loop->now + ms;
    t->seq = loop->timer_seq++;
    loop->heap_len++;
    heap_set(loop, loop->heap_len - 1, t);
    heap_up(loop, loop->heap_len - 1);
}

int rsv_timer_active(const rsv_timer *t)
{
    return t && t->index != SIZE_MAX;
}

void rsv_timer_del(rsv_timer *t)
{
    if (!t)
        return;
    rsv_timer_stop(t);
    free(t);
}

/* ---- before-sleep hooks ---- */

rsv_sleep_hook *rsv_sleep_hook_new(rsv_loop *loop, rsv_sleep_hook_cb cb, void *arg)
{
    rsv_sleep_hook *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->loop = loop;
    h->cb = cb;
    h->arg = arg;
    return h;
}

void rsv_sleep_hook_arm(rsv_sleep_hook *h)
{
    if (h->next)
        return;
    rsv_sleep_hook *head = &h->loop->armed;
    h->prev = head->prev;
    h->next = head;
    head->prev->next = h;
    head->prev = h;
}

void rsv_sleep_hook_disarm(rsv_sleep_hook *h)
{
    if (!h || !h->next)
        return;
    h->prev->next = h->next;
    h->next->prev = h->prev;
    h->prev = h->next = NULL;
}

int rsv_sleep_hook_armed(const rsv_sleep_hook *h)
{
    return h && h->next != NULL;
}

void rsv_sleep_hook_del(rsv_sleep_hook *h)
{
    if (!h)
        return;
    rsv_sleep_hook_disarm(h);
    free(h);
}

static void run_sleep_hooks(rsv_loop *loop)
{
    if (hook_list_empty(&loop->armed))
        return;
    rsv_sleep_hook *run = &loop->running;
    run->next = loop->armed.next;
    run->prev = loop->armed.prev;
    run->next->prev = run;
    run->prev->next = run;
    hook_list_init(&loop->armed);
    while (!hook_list_empty(run)) {
        rsv_sleep_hook *h = run->next;
        rsv_sleep_hook_disarm(h); /* first: the callback may arm it again, or free it */
        h->cb(loop, h, h->arg);
    }
}

/* ---- running ---- */

uint64_t rsv_loop_now(const rsv_loop *loop)
{
    return loop->now;
}

uint64_t rsv_loop_update_time(rsv_loop *loop)
{
    loop->now = rsv_clock_ms();
    return loop->now;
}

int rsv_loop_fd(const rsv_loop *loop)
{
    return loop->epfd;
}

int rsv_loop_timeout(const rsv_loop *loop)
{
    if (!hook_list_empty(&loop->armed))
        return 0; /* rule 6: the hooks' iteration does not wait */
    if (loop->heap_len == 0)
        return -1;
    uint64_t now = rsv_clock_ms();
    uint64_t deadline = loop->heap[0]->deadline;
    if (deadline <= now)
        return 0;
    uint64_t left = deadline - now;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

static void drain_wakeup(rsv_loop *loop)
{
    uint64_t v;
    while (read(loop->wakefd, &v, sizeof(v)) > 0) {
    }
    if (loop->wakeup_cb)
        loop->wakeup_cb(loop, loop->wakeup_arg);
}

static void dispatch_io(rsv_loop *loop, const struct epoll_event *ev)
{
    if (ev->data.u64 == WAKEUP_TAG) {
        drain_wakeup(loop);
        return;
    }
    int fd = (int)(uint32_t)ev->data.u64;
    uint32_t generation = (uint32_t)(ev->data.u64 >> 32);
    if ((size_t)fd >= loop->n_watchers)
        return;
    watcher *w = &loop->watchers[fd];
    if (w->events == 0 || w->generation != generation)
        return; /* removed or replaced earlier in this iteration (rule 2, 3) */
    unsigned events = 0;
    if (ev->events & (EPOLLIN | EPOLLRDHUP))
        events |= RSV_LOOP_READ;
    if (ev->events & EPOLLOUT)
        events |= RSV_LOOP_WRITE;
    if (ev->events & (EPOLLERR | EPOLLHUP))
        events |= RSV_LOOP_ERROR;
    w->cb(loop, fd, events, w->arg);
}

static void run_timers(rsv_loop *loop)
{
    uint64_t now = loop->now;
    /* Only timers started before this phase may fire in it (rule 4). */
    uint64_t seq_limit = loop->timer_seq;
    while (loop->heap_len > 0) {
        rsv_timer *t = loop->heap[0];
        if (t->deadline > now || t->seq >= seq_limit)
            break;
        heap_remove(loop, t);
        t->cb(loop, t, t->arg);
    }
}

int rsv_loop_run_once(rsv_loop *loop, int timeout_ms)
{
    struct epoll_event events[MAX_EVENTS];
    int wait_ms = rsv_loop_timeout(loop);
    if (timeout_ms >= 0 && (wait_ms < 0 || timeout_ms < wait_ms))
        wait_ms = timeout_ms;
    int n = epoll_wait(loop->epfd, events, MAX_EVENTS, wait_ms);
    if (n < 0 && errno != EINTR)
        return RESOLVER_ERR_IO;
    loop->now = rsv_clock_ms();
    for (int i = 0; i < n; i++)
        dispatch_io(loop, &events[i]);
    run_timers(loop);
    run_sleep_hooks(loop);
    return 0;
}

int rsv_loop_run(rsv_loop *loop)
{
    /* The flag is cleared on the way out, not on the way in: a stop that
     * arrives before the run starts (a signal during start-up) must not be
     * lost. */
    int rc = 0;
    while (!atomic_load(&loop->stop)) {
        rc = rsv_loop_run_once(loop, -1);
        if (rc)
            break;
    }
    atomic_store(&loop->stop, 0);
    return rc;
}

void rsv_loop_stop(rsv_loop *loop)
{
    atomic_store(&loop->stop, 1);
    uint64_t one = 1;
    /* Async-signal-safe: a write to an eventfd. */
    ssize_t rc = write(loop->wakefd, &one, sizeof(one));
    (void)rc;
}

void rsv_loop_wakeup(rsv_loop *loop)
{
    uint64_t one = 1;
    ssize_t rc = write(loop->wakefd, &one, sizeof(one));
    (void)rc;
}

void rsv_loop_set_wakeup(rsv_loop *loop, void (*cb)(rsv_loop *, void *), void *arg)
{
    loop->wakeup_cb = cb;
    loop->wakeup_arg = arg;
}

/* ---- the public face (resolver.h): the same loop and timers ---- */

_Static_assert(RESOLVER_FD_READ == RSV_LOOP_READ && RESOLVER_FD_WRITE == RSV_LOOP_WRITE &&
                   RESOLVER_FD_ERROR == RSV_LOOP_ERROR,
               "the public event bits are the loop's");

int resolver_loop_watch(resolver_loop *loop, int fd, unsigned events, resolver_fd_fn fn, void *arg)
{
    if (!loop)
        return RESOLVER_ERR_INVALID;
    return rsv_loop_watch(loop, fd, events, fn, arg);
}

void resolver_loop_unwatch(resolver_loop *loop, int fd)
{
    if (loop)
        rsv_loop_unwatch(loop, fd);
}

uint64_t resolver_loop_now(const resolver_loop *loop)
{
    return loop ? rsv_loop_now(loop) : 0;
}

resolver_timer *resolver_timer_new(resolver_loop *loop, resolver_timer_fn fn, void *arg)
{
    return loop && fn ? rsv_timer_new(loop, fn, arg) : NULL;
}

void resolver_timer_start(resolver_timer *timer, uint64_t ms)
{
    if (timer)
        rsv_timer_start(timer, ms);
}

void resolver_timer_stop(resolver_timer *timer)
{
    rsv_timer_stop(timer);
}

void resolver_timer_free(resolver_timer *timer)
{
    rsv_timer_del(timer);
}
