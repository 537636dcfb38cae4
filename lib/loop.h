/*
 * loop.h - the engine's event loop: epoll, a timer heap, fd watchers.
 *
 * Rules (numbered so that callers can cite them):
 *  1. Not thread-safe.  Every function runs on the loop's thread, except
 *     resolver_loop_wakeup and resolver_loop_stop, which any thread (or a
 *     signal handler) may call.
 *  2. A watcher or timer may be removed, changed or freed from inside any
 *     callback, its own included; a removed watcher gets no further call even
 *     if its fd was already reported ready in the current iteration.
 *  3. An fd closed and reused inside one iteration is not confused with the
 *     old one: each watch carries a generation number.
 *  4. Timers fire in deadline order (ties: in start order); a timer started
 *     for 0 ms means "soon": it fires after the current callback returns,
 *     never recursively inside the call that starts it, and a timer phase
 *     never runs timers started during that same phase.
 *  5. Time is CLOCK_MONOTONIC in milliseconds, read once per iteration.
 *  Limits: fds must be < 1<<24; at most 256 fd events per iteration (the rest
 *  come in the next one, epoll is level-triggered).
 */
#ifndef RESOLVER_LOOP_H
#define RESOLVER_LOOP_H

#include <stdint.h>

typedef struct resolver_loop resolver_loop;
typedef struct resolver_timer resolver_timer;

enum {
    RESOLVER_LOOP_READ = 1,
    RESOLVER_LOOP_WRITE = 2,
    RESOLVER_LOOP_ERROR = 4 /* EPOLLERR or EPOLLHUP; reported even if not asked for */
};

typedef void (*resolver_io_cb)(resolver_loop *loop, int fd, unsigned events, void *arg);
typedef void (*resolver_timer_cb)(resolver_loop *loop, resolver_timer *timer, void *arg);

/* Returns NULL on allocation or epoll/eventfd failure. */
resolver_loop *resolver_loop_new(void);
/* Frees the loop.  Watchers are dropped; timers must have been freed. */
void resolver_loop_del(resolver_loop *loop);

/* Watches `fd` for `events` (READ|WRITE), replacing any previous watch of
 * the same fd.  events == 0 is the same as resolver_loop_unwatch.
 * Returns 0, RESOLVER_ERR_NOMEM or RESOLVER_ERR_IO. */
int resolver_loop_watch(resolver_loop *loop, int fd, unsigned events, resolver_io_cb cb, void *arg);
/* Stops watching `fd` (no error if it was not watched).  Call it before
 * closing the fd. */
void resolver_loop_unwatch(resolver_loop *loop, int fd);

/* Timers are objects owned by the caller: new, start/stop any number of
 * times, del.  NULL on allocation failure. */
resolver_timer *resolver_timer_new(resolver_loop *loop, resolver_timer_cb cb, void *arg);
/* (Re)arms the timer to fire once, `ms` milliseconds from the loop's now. */
void resolver_timer_start(resolver_timer *timer, uint64_t ms);
void resolver_timer_stop(resolver_timer *timer);
int resolver_timer_active(const resolver_timer *timer);
/* Stops and frees; NULL is accepted. */
void resolver_timer_del(resolver_timer *timer);

/* Monotonic milliseconds, as of the start of the current iteration. */
uint64_t resolver_loop_now(const resolver_loop *loop);
/* Re-reads the clock (for code that measures inside one iteration). */
uint64_t resolver_loop_update_time(resolver_loop *loop);

/* For hosts that drive the loop: the epoll fd (readable when there is work)
 * and the milliseconds until the next timer (-1: none, 0: due now). */
int resolver_loop_fd(const resolver_loop *loop);
int resolver_loop_timeout(const resolver_loop *loop);
/* One iteration: waits at most `timeout_ms` (-1 forever, 0 not at all) for
 * fd events, dispatches them, then runs due timers.  Returns 0 or
 * RESOLVER_ERR_IO. */
int resolver_loop_run_once(resolver_loop *loop, int timeout_ms);
/* Iterates until resolver_loop_stop. */
int resolver_loop_run(resolver_loop *loop);
/* Makes resolver_loop_run return after the current iteration.  Any thread,
 * async-signal-safe. */
void resolver_loop_stop(resolver_loop *loop);
/* Wakes a loop blocked in epoll_wait and calls `cb` on the loop's thread
 * (set once with resolver_loop_set_wakeup).  Any thread, async-signal-safe. */
void resolver_loop_wakeup(resolver_loop *loop);
void resolver_loop_set_wakeup(resolver_loop *loop, void (*cb)(resolver_loop *, void *), void *arg);

#endif
