/*
 * loop.h - the engine's event loop: epoll, a timer heap, fd watchers.
 *
 * Rules (numbered so that callers can cite them):
 *  1. Not thread-safe.  Every function runs on the loop's thread, except
 *     rsv_loop_wakeup and rsv_loop_stop, which any thread (or a
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
 *  6. Before-sleep hooks (Redis ae.c's beforesleep): an armed hook runs
 *     once, at the end of the iteration it was armed in, after that
 *     iteration's fd events and timers and before the loop waits again, in
 *     the order they were armed.  Arming an armed hook does nothing, so any
 *     number of changes in one iteration cost one call: work that must be
 *     done after a change but only once per burst of them (a service's
 *     picker) arms a hook instead of doing it at each change.  A hook armed
 *     outside an iteration (before rsv_loop_run, or by a host between
 *     rsv_loop_run_once calls) runs at the end of the next one, which then
 *     does not wait (rsv_loop_timeout says 0); one armed while the hooks
 *     run, its own included, runs at the end of the next iteration, which
 *     does not wait either (no hook runs twice in one phase).
 *  Limits: fds must be < 1<<24; at most 256 fd events per iteration (the rest
 *  come in the next one, epoll is level-triggered).
 */
#ifndef RSV_LOOP_H
#define RSV_LOOP_H

#include <stdint.h>

/* The same types as resolver.h's resolver_loop and resolver_timer: the
 * public loop calls (resolver_loop_watch, resolver_timer_*) are these. */
typedef struct resolver_loop rsv_loop;
typedef struct resolver_timer rsv_timer;

enum {
    RSV_LOOP_READ = 1,
    RSV_LOOP_WRITE = 2,
    RSV_LOOP_ERROR = 4 /* EPOLLERR or EPOLLHUP; reported even if not asked for */
};

typedef void (*rsv_io_cb)(rsv_loop *loop, int fd, unsigned events, void *arg);
typedef void (*rsv_timer_cb)(rsv_loop *loop, rsv_timer *timer, void *arg);

/* Returns NULL on allocation or epoll/eventfd failure. */
rsv_loop *rsv_loop_new(void);
/* Frees the loop.  Watchers are dropped; timers and hooks must have been
 * freed. */
void rsv_loop_del(rsv_loop *loop);

/* Watches `fd` for `events` (READ|WRITE), replacing any previous watch of
 * the same fd.  events == 0 is the same as rsv_loop_unwatch.
 * Returns 0, RESOLVER_ERR_NOMEM or RESOLVER_ERR_IO. */
int rsv_loop_watch(rsv_loop *loop, int fd, unsigned events, rsv_io_cb cb, void *arg);
/* Stops watching `fd` (no error if it was not watched).  Call it before
 * closing the fd. */
void rsv_loop_unwatch(rsv_loop *loop, int fd);

/* Timers are objects owned by the caller: new, start/stop any number of
 * times, del.  NULL on allocation failure. */
rsv_timer *rsv_timer_new(rsv_loop *loop, rsv_timer_cb cb, void *arg);
/* (Re)arms the timer to fire once, `ms` milliseconds from the loop's now. */
void rsv_timer_start(rsv_timer *timer, uint64_t ms);
void rsv_timer_stop(rsv_timer *timer);
int rsv_timer_active(const rsv_timer *timer);
/* Stops and frees; NULL is accepted. */
void rsv_timer_del(rsv_timer *timer);

/* Before-sleep hooks (rule 6) are objects owned by the caller, like
 * timers: new, arm any number of times, del.  NULL on allocation failure. */
typedef struct rsv_sleep_hook rsv_sleep_hook;
typedef void (*rsv_sleep_hook_cb)(rsv_loop *loop, rsv_sleep_hook *hook, void *arg);
rsv_sleep_hook *rsv_sleep_hook_new(rsv_loop *loop, rsv_sleep_hook_cb cb, void *arg);
void rsv_sleep_hook_arm(rsv_sleep_hook *hook);
void rsv_sleep_hook_disarm(rsv_sleep_hook *hook);
int rsv_sleep_hook_armed(const rsv_sleep_hook *hook);
/* Disarms and frees; NULL is accepted. */
void rsv_sleep_hook_del(rsv_sleep_hook *hook);

/* Monotonic milliseconds, as of the start of the current iteration. */
uint64_t rsv_loop_now(const rsv_loop *loop);
/* Re-reads the clock (for code that measures inside one iteration). */
uint64_t rsv_loop_update_time(rsv_loop *loop);

/* For hosts that drive the loop: the epoll fd (readable when there is work)
 * and the milliseconds until the next timer (-1: none, 0: due now, or a
 * before-sleep hook is armed). */
int rsv_loop_fd(const rsv_loop *loop);
int rsv_loop_timeout(const rsv_loop *loop);
/* One iteration: waits at most `timeout_ms` (-1 forever, 0 not at all) for
 * fd events (not at all while a hook is armed), dispatches them, runs due
 * timers, then the armed before-sleep hooks.  Returns 0 or
 * RESOLVER_ERR_IO. */
int rsv_loop_run_once(rsv_loop *loop, int timeout_ms);
/* Iterates until rsv_loop_stop. */
int rsv_loop_run(rsv_loop *loop);
/* Makes rsv_loop_run return after the current iteration.  Any thread,
 * async-signal-safe. */
void rsv_loop_stop(rsv_loop *loop);
/* Wakes a loop blocked in epoll_wait and calls `cb` on the loop's thread
 * (set once with rsv_loop_set_wakeup).  Any thread, async-signal-safe. */
void rsv_loop_wakeup(rsv_loop *loop);
void rsv_loop_set_wakeup(rsv_loop *loop, void (*cb)(rsv_loop *, void *), void *arg);

#endif
