/*
 * resolver.h - libresolver's one public header.
 *
 * libresolver finds the instances of a service in etcd, keeps one HTTP/2
 * subchannel per instance, and answers "which instance should I call?".
 * It is used in two ways:
 *
 *   1. Embedded engine (resolver_engine_*): the engine runs inside your
 *      process, either driven from your own event loop (resolver_engine_fd,
 *      resolver_engine_timeout, resolver_engine_process) or by
 *      resolver_engine_run on a thread you give it.
 *   2. Daemon client (resolver_client_*): talk to a running resolverd over
 *      its Unix socket (see doc/protocol.md).
 *
 * Errors: every function that can fail returns 0 or a negative
 * resolver_error; resolver_strerror() turns it into text.
 *
 * Threading: unless a function says otherwise, an object may be used by one
 * thread at a time.  The library starts no thread and does no I/O except
 * inside the calls documented to do so, with one exception: with cache_file
 * set, an engine writes that file from a thread of its own (started at the
 * first write, all signals blocked, joined by resolver_engine_free), so that
 * the fsync never holds up the engine.  Calls from several threads:
 * resolver_engine_pick, resolver_engine_pick_ex, resolver_engine_pick_wait and
 * resolver_engine_done may be called from any thread, concurrently, while
 * another thread drives the engine; picks take no lock (they read an
 * immutable snapshot that the engine republishes) and never wait for the
 * engine (resolver_engine_pick_wait waits for a READY instance, not for a
 * lock).  Every other resolver_engine_* function is for the thread that
 * drives the engine ("the engine thread"), and callbacks run there.
 *
 * Destroying: every object the library creates ends with its *_free
 * function (resolver_config_free, resolver_engine_free,
 * resolver_client_free, resolver_watch_free, resolver_pick_waiter_free,
 * resolver_service_info_free, resolver_instance_info_free,
 * resolver_status_free, resolver_registration_info_free, resolver_timer_free);
 * each accepts NULL.
 */
#ifndef RESOLVER_H
#define RESOLVER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RESOLVER_API __attribute__((visibility("default")))
#else
#define RESOLVER_API
#endif

/* ---- version --------------------------------------------------------- */

/* The version of this header (configure checks that it is the package's). */
#define RESOLVER_VERSION_MAJOR 0
#define RESOLVER_VERSION_MINOR 1
#define RESOLVER_VERSION_PATCH 0

/* The version of the library actually loaded, "MAJOR.MINOR.PATCH"; static,
 * never NULL.  It may differ from the macros above when a program runs
 * against a newer library than it was built with. */
RESOLVER_API const char *resolver_version(void);

/* ---- errors ---------------------------------------------------------- */

/* All error codes are negative and lie in [-599, -500]. */
typedef enum {
    RESOLVER_OK = 0,
    RESOLVER_ERR_NOMEM = -500,       /* an allocation failed */
    RESOLVER_ERR_INVALID = -501,     /* a bad argument (NULL, empty, malformed) */
    RESOLVER_ERR_CONFIG = -502,      /* the configuration is invalid */
    RESOLVER_ERR_IO = -503,          /* a system call failed; errno is kept */
    RESOLVER_ERR_DECODE = -504,      /* input could not be decoded */
    RESOLVER_ERR_NO_INSTANCE = -505, /* the service has no known instance */
    RESOLVER_ERR_NONE_READY = -506,  /* instances are known but none is READY */
    RESOLVER_ERR_NOT_FOUND = -507,   /* no such service, instance or ticket */
    RESOLVER_ERR_PROTOCOL = -508,    /* the peer broke the protocol */
    RESOLVER_ERR_CONNECT = -509,     /* cannot reach the daemon */
    RESOLVER_ERR_TIMEOUT = -510,     /* the operation timed out */
    RESOLVER_ERR_LIMIT = -511,       /* a configured limit was reached */
    RESOLVER_ERR_DENIED = -512,      /* the caller may not do this */
    RESOLVER_ERR_CLOSED = -513,      /* the object is shutting down */
    RESOLVER_ERR_INTERNAL = -514     /* a bug: please report it */
} resolver_error;

/* Returns a static English description of `code`; never NULL. */
RESOLVER_API const char *resolver_strerror(int code);
/* The word the daemon's protocol writes for `code` after "ERR "
 * ("none_ready", "usage", ...; doc/protocol.md), "internal" for a code
 * without one.  Static; never NULL. */
RESOLVER_API const char *resolver_error_word(int code);

/* ---- logging --------------------------------------------------------- */

typedef enum {
    RESOLVER_LOG_ERROR = 0,
    RESOLVER_LOG_WARN = 1,
    RESOLVER_LOG_INFO = 2,
    RESOLVER_LOG_DEBUG = 3
} resolver_log_level;

/* Receives one formatted line (no trailing newline).  `line` is valid only
 * during the call.  Called on the thread that logs. */
typedef void (*resolver_log_fn)(resolver_log_level level, const char *line, void *arg);

/* Messages above `level` are dropped.  Default RESOLVER_LOG_INFO.
 * Process-wide; set it before starting engines. */
RESOLVER_API void resolver_log_set_level(resolver_log_level level);
/* Replaces the default handler (stderr, one line per event with time and
 * level).  NULL restores the default.  Process-wide. */
RESOLVER_API void resolver_log_set_handler(resolver_log_fn fn, void *arg);
/* Parses "error", "warn", "info" or "debug".  Returns 0 or RESOLVER_ERR_INVALID. */
RESOLVER_API int resolver_log_level_parse(const char *name, resolver_log_level *out);

#if defined(__GNUC__)
#define RESOLVER_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define RESOLVER_PRINTF(fmt, args)
#endif

/* Writes one line through the handler above, as the library's own lines
 * are written, when `level` is enabled (printf-style, no trailing newline
 * needed; newlines inside become spaces).  Any thread. */
RESOLVER_API void resolver_log(resolver_log_level level, const char *fmt, ...)
    RESOLVER_PRINTF(2, 3);
/* 1 when lines of `level` are written: test it before computing costly
 * arguments of a debug line. */
RESOLVER_API int resolver_log_enabled(resolver_log_level level);

/* A rate limiter for one repeated cause (an accept failing with EMFILE, a
 * refused peer): at most one line per 10 s goes through it, the others are
 * counted, and the next line that goes through ends with "(N more like this
 * since the last one)".  Zero-initialise it (static storage, or
 * RESOLVER_LOG_LIMIT_INIT); it may be shared by threads (lock-free: two
 * threads racing at a window's start may both write).  Its contents are
 * the library's. */
typedef struct {
    uint64_t priv[2];
} resolver_log_limit;
#define RESOLVER_LOG_LIMIT_INIT                                                                    \
    {                                                                                              \
        {                                                                                          \
            0, 0                                                                                   \
        }                                                                                          \
    }
/* resolver_log through `lim`: returns 1 when the line was written, 0 when
 * it was counted as suppressed or the level is off.  Any thread. */
RESOLVER_API int resolver_log_limited(resolver_log_limit *lim, resolver_log_level level,
                                      const char *fmt, ...) RESOLVER_PRINTF(3, 4);

/* ---- configuration --------------------------------------------------- */

/* A parsed configuration (the JSON document of the README, defaults filled
 * in).  Opaque. */
typedef struct resolver_config resolver_config;

/* Parse a JSON configuration from a file or a string.  On success *out owns
 * a new config (free it with resolver_config_free, or hand it to
 * resolver_engine_new).  On failure returns RESOLVER_ERR_CONFIG,
 * RESOLVER_ERR_IO or RESOLVER_ERR_NOMEM and, when `err` is not NULL, writes a
 * message naming the bad key and value into err[0..errlen). */
RESOLVER_API int resolver_config_load_file(const char *path, resolver_config **out, char *err,
                                           size_t errlen);
RESOLVER_API int resolver_config_load_string(const char *json, resolver_config **out, char *err,
                                             size_t errlen);
/* A configuration with every default and no services. */
RESOLVER_API int resolver_config_new_default(resolver_config **out);
/* Replaces the etcd endpoints with a comma-separated list of URLs. */
RESOLVER_API int resolver_config_set_endpoints(resolver_config *cfg, const char *csv);
RESOLVER_API void resolver_config_free(resolver_config *cfg);

/* Building a configuration in code (before it goes to resolver_engine_new,
 * which takes it over).  Each call gives the same checks and the same
 * messages as the same key in a file, and a call that fails leaves cfg as
 * it was.  `err`, when not NULL, receives the message (err[0..errlen)).
 *
 * resolver_config_set sets one key.  `key` is its path in the file's
 * document, components joined by '.', a list element by its index:
 * "etcd.dial_timeout_ms", "defaults.backoff", "socket.mode", "zone",
 * "services[0].policy", "register".  `value` is JSON ("1000",
 * "[\"http://10.0.0.1:2379\"]", "{\"initial_ms\": 500}"); text that is not
 * JSON, or a number, true, false or null where the key takes a string, is
 * that text as a string ("/run/x.sock", "0660", a zone named "1").  An object
 * applies its keys over what the key holds, as in a file; a list is replaced
 * whole.  Keys checked together are set together: "etcd" with both
 * cert_file and key_file.  A service takes the defaults as they are when it
 * is added, so set "defaults.*" first.  Returns 0, RESOLVER_ERR_CONFIG (an
 * unknown key, a bad value, an index past the list), RESOLVER_ERR_INVALID
 * (NULL cfg, key or value, or a malformed key) or RESOLVER_ERR_NOMEM. */
RESOLVER_API int resolver_config_set(resolver_config *cfg, const char *key, const char *value,
                                     char *err, size_t errlen);
/* Appends a service to "services": `name` and `options`, the JSON object of
 * a "services" element (its per-service options and "prefix"; NULL or ""
 * for none).  `name` may be NULL when options holds "name"; naming another
 * service there is RESOLVER_ERR_INVALID.  Messages name the new element's
 * path ("services[2].policy: ...").  Returns 0, RESOLVER_ERR_CONFIG (a bad
 * option, a duplicate or invalid name), RESOLVER_ERR_INVALID or
 * RESOLVER_ERR_NOMEM. */
RESOLVER_API int resolver_config_add_service(resolver_config *cfg, const char *name,
                                             const char *options, char *err, size_t errlen);
/* Removes the service `name` from "services" (later ones move up by one).
 * Returns 0, RESOLVER_ERR_NOT_FOUND or RESOLVER_ERR_INVALID (NULL). */
RESOLVER_API int resolver_config_remove_service(resolver_config *cfg, const char *name);
/* Reads one key of cfg: *json receives its value as JSON text (free()
 * it), defaults filled in, as the effective configuration has it:
 * "\"/run/resolverd/resolverd.sock\"" for "socket.path", "1000", "[...]"
 * for a list.  `key` is a path as for resolver_config_set
 * ("etcd.endpoints[0]", "services", "services[1].policy"); a string is
 * quoted and escaped as JSON, and socket.mode is its octal text
 * ("\"0660\"").  NULL or "" reads the whole configuration, indented by two
 * spaces (what resolverd --check-config prints).  Returns 0,
 * RESOLVER_ERR_NOT_FOUND (no such key, an index past the list),
 * RESOLVER_ERR_INVALID (NULL cfg or json, a malformed key) or
 * RESOLVER_ERR_NOMEM. */
RESOLVER_API int resolver_config_get(const resolver_config *cfg, const char *key, char **json);

/* ---- embedded engine ------------------------------------------------- */

typedef struct resolver_engine resolver_engine;

/* Longest address a pick returns, "[v6]:port" included, NUL included: a
 * size for buffers that copy one (the result itself points to it). */
#define RESOLVER_ADDRESS_MAX 300

/* A pick's answer.  The strings belong to the library: from
 * resolver_engine_pick* they stay valid until the ticket is released (done,
 * its owner released, or expired as leaked after ticket_timeout_ms); from
 * resolver_client_pick until the next call on that client. */
typedef struct {
    const char *address; /* "host:port" or "[v6]:port" */
    uint64_t ticket;     /* pass to resolver_engine_done */
    const char *zone;    /* the instance's zone from the registry, "" none */
    uint32_t weight;     /* the registry's weight (1 when it gives none); 0: not known */
    int tls;             /* 1: the registry says the instance expects TLS (grpcs://, isSecure) */
    /* The registry's metadata of the instance (Kratos "metadata", Kitex
     * "tags", etcd naming "Metadata", native "metadata") as a compact JSON
     * object with sorted keys, e.g. {"version":"v2"}; NULL when it has
     * none.  Valid as long as the other strings: a later change of the
     * instance's metadata does not touch the one a pick returned. */
    const char *metadata;
} resolver_pick_result;

/* Creates an engine.  Takes ownership of `cfg` in every case (it is freed on
 * failure too).  Starts no thread and does no I/O: discovery begins at the
 * first resolver_engine_process or resolver_engine_run. */
RESOLVER_API int resolver_engine_new(resolver_engine **out, resolver_config *cfg);
/* Closes every connection and frees the engine (with cache_file set, after
 * writing the last state to it).  Not while another thread is inside
 * resolver_engine_run or resolver_engine_pick_wait: call
 * resolver_engine_stop and join first.  Watches and waiting picks still
 * registered are freed without a callback; tickets still outstanding are
 * released.  NULL is ignored. */
RESOLVER_API void resolver_engine_free(resolver_engine *engine);
/* The configuration the engine runs with (resolver_engine_new's, or the
 * last successful resolver_engine_reload's), for resolver_config_get.  The
 * engine's: valid until the next reload, not to be freed.  Engine thread. */
RESOLVER_API const resolver_config *resolver_engine_config(const resolver_engine *engine);

/* Driving the engine from the host's loop: poll resolver_engine_fd() for
 * readability with a timeout of resolver_engine_timeout() milliseconds (-1:
 * none), then call resolver_engine_process().  Never blocks. */
RESOLVER_API int resolver_engine_fd(resolver_engine *engine);
RESOLVER_API int resolver_engine_timeout(resolver_engine *engine);
RESOLVER_API int resolver_engine_process(resolver_engine *engine);
/* Runs the engine until resolver_engine_stop.  resolver_engine_stop may be
 * called from any thread or a signal handler. */
RESOLVER_API int resolver_engine_run(resolver_engine *engine);
RESOLVER_API void resolver_engine_stop(resolver_engine *engine);

/* ---- the engine's loop: the host's own descriptors and timers -------- */

/* The engine's event loop, for a host that serves descriptors of its own
 * beside the engine (resolverd's socket and metrics listener): they are
 * then waited for with the engine's, by resolver_engine_run or by the
 * host's poll of resolver_engine_fd.  Every call below is for the engine
 * thread, callbacks run there, and a watch or timer may be changed or
 * freed from inside any callback (its own included): a watch removed gets
 * no further call even when its descriptor was already reported ready. */
typedef struct resolver_loop resolver_loop;
typedef struct resolver_timer resolver_timer;

/* Events of resolver_loop_watch; RESOLVER_FD_ERROR (the peer hung up, an
 * error) is reported even when not asked for. */
#define RESOLVER_FD_READ 1u
#define RESOLVER_FD_WRITE 2u
#define RESOLVER_FD_ERROR 4u

typedef void (*resolver_fd_fn)(resolver_loop *loop, int fd, unsigned events, void *arg);
typedef void (*resolver_timer_fn)(resolver_loop *loop, resolver_timer *timer, void *arg);

/* The engine's loop; it lives as long as the engine.  NULL for NULL. */
RESOLVER_API resolver_loop *resolver_engine_loop(resolver_engine *engine);
/* Calls `fn` when `fd` is ready for `events` (level-triggered; the fd is
 * not made non-blocking).  Watching a watched fd again replaces its events,
 * fn and arg (cheap when nothing changed is the caller's to avoid).  0,
 * RESOLVER_ERR_INVALID or RESOLVER_ERR_IO (epoll refused it). */
RESOLVER_API int resolver_loop_watch(resolver_loop *loop, int fd, unsigned events,
                                     resolver_fd_fn fn, void *arg);
/* Stops watching `fd` (before closing it).  An fd not watched is ignored. */
RESOLVER_API void resolver_loop_unwatch(resolver_loop *loop, int fd);
/* The loop's time: CLOCK_MONOTONIC in milliseconds, read once per
 * iteration. */
RESOLVER_API uint64_t resolver_loop_now(const resolver_loop *loop);

/* A one-shot timer, not armed; NULL when out of memory.  Ended by
 * resolver_timer_free (which accepts NULL), before the engine goes. */
RESOLVER_API resolver_timer *resolver_timer_new(resolver_loop *loop, resolver_timer_fn fn,
                                                void *arg);
/* Arms the timer for `ms` from the loop's time (again: moved).  0 ms is
 * "soon": after the current callback returns, never inside this call. */
RESOLVER_API void resolver_timer_start(resolver_timer *timer, uint64_t ms);
/* Disarms it (a disarmed timer is ignored). */
RESOLVER_API void resolver_timer_stop(resolver_timer *timer);
RESOLVER_API void resolver_timer_free(resolver_timer *timer);

/* Picks a READY, non-draining, non-ejected instance of `service` with the
 * service's policy (key: for ring_hash; may be NULL) and returns its address
 * and a ticket in *out.  Returns 0, RESOLVER_ERR_NO_INSTANCE,
 * RESOLVER_ERR_NONE_READY, RESOLVER_ERR_LIMIT (too many services),
 * RESOLVER_ERR_CLOSED (shutting down) or RESOLVER_ERR_INVALID.  A service
 * not in the configuration is discovered on first use (prefix
 * "service/"); the first pick then answers RESOLVER_ERR_NO_INSTANCE until
 * discovery has run, and once on_demand_services_max services are
 * discovered that way, a pick of another answers RESOLVER_ERR_LIMIT.  Any thread (see Threading
 * above).  Every successful pick must be ended with resolver_engine_done, or its ticket is released
 * as leaked after ticket_timeout_ms. */
RESOLVER_API int resolver_engine_pick(resolver_engine *engine, const char *service, const char *key,
                                      resolver_pick_result *out);
/* A latency_ms for resolver_engine_done and resolver_client_done that says
 * "not measured": the pick is released without a latency observation. */
#define RESOLVER_LATENCY_UNKNOWN UINT32_MAX

/* How the call made with a pick went.  Values may be added; a done with a
 * value this library does not know answers RESOLVER_ERR_INVALID. */
typedef enum {
    RESOLVER_OUTCOME_OK = 0,    /* the call succeeded */
    RESOLVER_OUTCOME_FAILED = 1 /* the call failed (feeds outlier detection) */
} resolver_outcome;

/* Reports the outcome of a pick and releases its ticket; failures feed
 * outlier detection and make the subchannel probe its connection at once.
 * `latency_ms` (the time from pick to done, or RESOLVER_LATENCY_UNKNOWN)
 * goes into the service's resolver_done_latency_seconds histogram and the
 * instance's latency average (the least_latency policy).
 * Returns 0, RESOLVER_ERR_NOT_FOUND or RESOLVER_ERR_INVALID (an unknown
 * outcome).  Any thread; on the thread driving the engine NOT_FOUND means
 * unknown or already released, on other threads only "never issued" (a
 * double release is then ignored). */
RESOLVER_API int resolver_engine_done(resolver_engine *engine, uint64_t ticket,
                                      resolver_outcome outcome, uint32_t latency_ms);

/* ---- picks with options: owners, reasons, waiting -------------------- */

/* The tickets taken on behalf of one party (a connection, a user), released
 * together by resolver_engine_release_owner when it goes.  The host embeds
 * it, initialised with RESOLVER_OWNER_INIT, and must release it before its
 * memory goes.  `uid` and `pid` name the party picking now (the host may
 * set them before each pick: one owner may serve several processes); each
 * ticket keeps a copy, so that a leaked ticket's warning names who picked
 * it (-1: in-process, no peer).  `count` is read-only; `priv` is the
 * library's.  Engine thread only. */
typedef struct {
    long uid, pid;
    size_t count; /* outstanding tickets of this owner */
    void *priv;
} resolver_owner;
#define RESOLVER_OWNER_INIT                                                                        \
    {                                                                                              \
        -1, -1, 0, NULL                                                                            \
    }

/* Flags of resolver_pick_options. */
/* A waiting pick waits only while the service is new to the engine: not
 * yet listed by etcd, or its instances in their first connection attempts
 * (CONNECTING or IDLE); otherwise it answers at once, as a plain pick.
 * resolverd's PICK waits so. */
#define RESOLVER_PICK_WAIT_FRESH 1u

typedef struct {
    const char *key;       /* ring_hash's key, or NULL */
    resolver_owner *owner; /* whose the ticket is; NULL: nobody's (done or timeout ends it) */
    unsigned flags;        /* RESOLVER_PICK_* */
} resolver_pick_options;

/* resolver_engine_pick with options (NULL: none) and the reason of a
 * failure: why[0..whylen) receives a message such as "none ready for
 * svc: 2 CONNECTING, 1 TRANSIENT_FAILURE" (the states listed) when `why`
 * is not NULL.  Same errors.  Any thread, except that an `owner` is the
 * engine thread's only. */
RESOLVER_API int resolver_engine_pick_ex(resolver_engine *engine, const char *service,
                                         const resolver_pick_options *opts,
                                         resolver_pick_result *out, char *why, size_t whylen);

/* A pick that waits, on a thread that is not the engine's, until an
 * instance can be picked, the pick fails for good, or `timeout_ms` passes;
 * the engine thread wakes it when the service's pickable instances change
 * (no polling).  The last failure is returned with its reason (why, as
 * resolver_engine_pick_ex); RESOLVER_ERR_NO_INSTANCE, _NONE_READY and
 * _LIMIT (every instance at max_outstanding, or on_demand_services_max)
 * are waited out, every other error returns at once.  RESOLVER_ERR_INVALID
 * on the engine thread (it would wait for itself) or with an owner.
 * Another thread must drive the engine meanwhile. */
RESOLVER_API int resolver_engine_pick_wait(resolver_engine *engine, const char *service,
                                           const resolver_pick_options *opts, uint32_t timeout_ms,
                                           resolver_pick_result *out, char *why, size_t whylen);

typedef struct resolver_pick_waiter resolver_pick_waiter;
/* A waiting pick's end, on the engine thread: rc 0 with the result, or the
 * error and its reason (`why` valid during the call).  The waiter is over
 * once this is called: it must not be freed then. */
typedef void (*resolver_pick_fn)(void *arg, int rc, const resolver_pick_result *result,
                                 const char *why);
/* Returned by resolver_engine_pick_async when the pick waits. */
#define RESOLVER_PICK_PENDING 1
/* The engine thread's waiting pick.  Tries at once: returns 0 with *out
 * filled, or an error with why filled, and then never calls `fn`.  When
 * the pick may still succeed (the errors resolver_engine_pick_wait waits
 * out; with RESOLVER_PICK_WAIT_FRESH only while the service is new), it
 * returns RESOLVER_PICK_PENDING with *waiter set (may be NULL: then it
 * cannot be cancelled) and `fn` is called once, from the engine's loop and
 * never from inside this call, when a pick succeeds, fails for good, or
 * `timeout_ms` passes (with the last failure).  A pick that is retried
 * counts once in the failure counters, by its outcome.  Errors as
 * resolver_engine_pick_ex, and RESOLVER_ERR_NOMEM. */
RESOLVER_API int resolver_engine_pick_async(resolver_engine *engine, const char *service,
                                            const resolver_pick_options *opts, uint32_t timeout_ms,
                                            resolver_pick_fn fn, void *arg,
                                            resolver_pick_result *out, char *why, size_t whylen,
                                            resolver_pick_waiter **waiter);
/* Cancels a pending waiting pick: `fn` will not be called.  Only before
 * `fn` was called; NULL is ignored.  Engine thread. */
RESOLVER_API void resolver_pick_waiter_free(resolver_pick_waiter *waiter);

/* Releases every ticket of `owner` (as done with RESOLVER_OUTCOME_OK and no
 * latency).  Engine thread. */
RESOLVER_API void resolver_engine_release_owner(resolver_engine *engine, resolver_owner *owner);
/* The owner an outstanding ticket was picked for (*owner NULL: none), so
 * that a host lets only its owner report it done.  0 or
 * RESOLVER_ERR_NOT_FOUND.  Engine thread. */
RESOLVER_API int resolver_engine_ticket_owner(resolver_engine *engine, uint64_t ticket,
                                              resolver_owner **owner);

/* ---- instance states and watching them ------------------------------ */

typedef enum {
    RESOLVER_STATE_IDLE = 0,
    RESOLVER_STATE_CONNECTING = 1,
    RESOLVER_STATE_READY = 2,
    RESOLVER_STATE_TRANSIENT_FAILURE = 3,
    RESOLVER_STATE_SHUTDOWN = 4, /* closed */
    RESOLVER_STATE_DRAINING = 5, /* no new picks; closes when its picks are done */
    RESOLVER_STATE_STALE = 6,    /* removed from etcd, kept serving by self-preservation */
    RESOLVER_STATE_COUNT = 7
} resolver_state;

/* "IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE", "SHUTDOWN",
 * "DRAINING", "STALE"; "?" for another value.  Static. */
RESOLVER_API const char *resolver_state_name(resolver_state state);

typedef enum {
    RESOLVER_EVENT_INSTANCE_ADDED = 0,   /* etcd listed a new address */
    RESOLVER_EVENT_INSTANCE_REMOVED = 1, /* it left etcd: draining, or closed at once */
    RESOLVER_EVENT_INSTANCE_STATE = 2,   /* its state changed */
    RESOLVER_EVENT_INSTANCE_DRAINED = 3, /* closed: its drain is over; its last event */
    RESOLVER_EVENT_SERVICE_SYNCED = 4    /* the service's first listing from etcd is applied */
} resolver_event_type;

/* One event; valid during the callback only. */
typedef struct {
    resolver_event_type type;
    const char *service;
    const char *address;  /* the instance ("host:port"); NULL for SERVICE_SYNCED */
    resolver_state state; /* the instance's state now */
    size_t outstanding;   /* its picks not yet done */
} resolver_event;

typedef void (*resolver_watch_fn)(void *arg, const resolver_event *event);
typedef struct resolver_watch resolver_watch;

/* Calls `fn` on the engine thread for every event of `service` (NULL: of
 * every service), from inside the engine's updates: `fn` may pick, done,
 * and free watches (its own included), but must not free the engine.
 * *out is the handle that resolver_watch_free ends.  0,
 * RESOLVER_ERR_INVALID or RESOLVER_ERR_NOMEM.  Engine thread. */
RESOLVER_API int resolver_engine_watch(resolver_engine *engine, const char *service,
                                       resolver_watch_fn fn, void *arg, resolver_watch **out);
/* Unregisters: `fn` is not called again.  NULL is ignored.  Engine thread. */
RESOLVER_API void resolver_watch_free(resolver_watch *watch);

/* ---- operator actions and graceful stop ----------------------------- */

/* Operator drain: the instance takes no new picks and closes once its
 * picks are done (or drain_timeout_ms passes).  0, RESOLVER_ERR_NOT_FOUND
 * (no such service or instance) or RESOLVER_ERR_INVALID.  Engine thread. */
RESOLVER_API int resolver_engine_drain(resolver_engine *engine, const char *service,
                                       const char *address);
/* Undoes an operator drain.  0, RESOLVER_ERR_NOT_FOUND, or
 * RESOLVER_ERR_INVALID (the instance is not drained by an operator). */
RESOLVER_API int resolver_engine_undrain(resolver_engine *engine, const char *service,
                                         const char *address);
/* Replaces the configuration; takes `cfg` in every case.  Services added,
 * removed or given new options, subchannels of instances that stay kept;
 * keys only a restart applies keep their old value (each logged as a
 * warning).  0, RESOLVER_ERR_INVALID or RESOLVER_ERR_NOMEM, with a message
 * in err[0..errlen) when err is not NULL.  Engine thread. */
RESOLVER_API int resolver_engine_reload(resolver_engine *engine, resolver_config *cfg, char *err,
                                        size_t errlen);
/* Begins a graceful stop: picks fail with RESOLVER_ERR_CLOSED and every
 * instance drains.  Drive the engine until resolver_engine_drained answers
 * 1 or resolver_engine_max_drain_ms passes, then stop.  Engine thread. */
RESOLVER_API void resolver_engine_shutdown(resolver_engine *engine);
/* 1 once no instance is left (after resolver_engine_shutdown), else 0. */
RESOLVER_API int resolver_engine_drained(resolver_engine *engine);
/* The longest drain_timeout_ms of the configuration. */
RESOLVER_API uint64_t resolver_engine_max_drain_ms(const resolver_engine *engine);
/* Readiness (resolverd's /ready): 1 when etcd answered within the last 10 s
 * (while any service is watched) and every configured service has its
 * first listing; 0 while not or when shutting down.  why[0..whylen) says
 * which ("ready" when 1).  Engine thread. */
RESOLVER_API int resolver_engine_ready(resolver_engine *engine, char *why, size_t whylen);

/* ---- introspection ----------------------------------------------------- */

/* How many buckets a service's latency histogram has. */
#define RESOLVER_LATENCY_BUCKETS 13

/* Every array and string below belongs to the caller once returned and is
 * freed, whole, by the matching *_free (which accepts NULL).  Engine
 * thread; a snapshot, not updated afterwards. */

typedef struct {
    char *name;
    char *prefix;         /* its etcd prefix */
    char *policy;         /* "round_robin", ... */
    resolver_state state; /* the aggregate (gRPC's): READY if any READY, ... */
    int synced;           /* 1 once etcd listed it */
    int64_t revision;     /* the etcd revision it has applied */
    size_t instances;
    /* Instances per state (READY counts the STALE ones too: they serve). */
    size_t states[RESOLVER_STATE_COUNT];
    uint64_t picks, pick_failures, decode_errors;
    uint64_t ejections;                /* by outlier detection */
    uint64_t self_preservation_events; /* etcd deletions held back as STALE */
    /* The watch of its prefix: started again after its stream ended or an
     * attempt failed; streams abandoned as silent while the prefix
     * changed; fresh ranges after a gap a resumed watch cannot fill. */
    uint64_t watch_resumes, watch_silence_resets, watch_resyncs;
    /* The latencies resolver_engine_done reported (RESOLVER_LATENCY_UNKNOWN
     * ones left out): latency_le[i] of them took at most
     * latency_bounds_us[i] (ascending; cumulative, as Prometheus exposes a
     * histogram); latency_count of them in all, latency_sum_ms together. */
    uint64_t latency_bounds_us[RESOLVER_LATENCY_BUCKETS];
    uint64_t latency_le[RESOLVER_LATENCY_BUCKETS];
    uint64_t latency_count, latency_sum_ms;
} resolver_service_info;

/* The services sorted by name into *out (n of them).  0 or
 * RESOLVER_ERR_NOMEM / RESOLVER_ERR_INVALID. */
RESOLVER_API int resolver_engine_services(resolver_engine *engine, resolver_service_info **out,
                                          size_t *n);
RESOLVER_API void resolver_service_info_free(resolver_service_info *info, size_t n);

typedef struct {
    char *address;
    char *zone; /* "" none */
    resolver_state state;
    uint32_t weight;
    int tls;
    char *metadata;     /* as resolver_pick_result's (a copy); NULL none */
    unsigned keys;      /* etcd keys naming it (0: STALE or draining) */
    size_t outstanding; /* picks not yet done */
    uint64_t picks, failures;
    int operator_drained, ejected;
    uint32_t times_ejected;
    double since_change_s; /* since its last state change */
    double rtt_ms;         /* the last PING's round trip; < 0: none yet or closed */
    uint64_t reconnects, connect_attempts;
    char *last_error; /* "" none */
    char *health;     /* the health check's state, "" without one */
    int stale;        /* kept by self-preservation after etcd removed it */
    /* 1 while it has a connection (a subchannel); without one, as after it
     * closed, rtt_ms is < 0, reconnects and connect_attempts 0, last_error
     * and health "" */
    int connected;
} resolver_instance_info;

/* The instances of `service` sorted by address.  0, RESOLVER_ERR_NOT_FOUND
 * (no such service), RESOLVER_ERR_NOMEM or RESOLVER_ERR_INVALID. */
RESOLVER_API int resolver_engine_instances(resolver_engine *engine, const char *service,
                                           resolver_instance_info **out, size_t *n);
RESOLVER_API void resolver_instance_info_free(resolver_instance_info *info, size_t n);

typedef struct {
    char *etcd_endpoint; /* the member in use */
    size_t etcd_endpoints;
    double etcd_last_heard_s; /* < 0: never */
    uint64_t etcd_failovers, etcd_cluster_changes;
    int64_t revision; /* the highest any service applied */
    double uptime_s;
    size_t services, on_demand_services, stale_services;
    size_t instances, ready;
    size_t tickets_outstanding;
    uint64_t tickets_leaked, picks, pick_failures, cache_writes;
    uint64_t dns_queries, dns_cache_hits, dns_joined, dns_failures;
    uint64_t etcd_authentications; /* tokens fetched (auth configured) */
    /* Open TCP connections to etcd and the requests on them (watch streams
     * among them); etcd_http2 1 when the member in use is https, where
     * they share one HTTP/2 connection per member. */
    size_t etcd_connections, etcd_streams, etcd_watch_streams;
    int etcd_http2;
} resolver_status;

/* The engine's status (what `resolverctl status` shows).  0,
 * RESOLVER_ERR_NOMEM or RESOLVER_ERR_INVALID. */
RESOLVER_API int resolver_engine_status(resolver_engine *engine, resolver_status **out);
RESOLVER_API void resolver_status_free(resolver_status *status);

/* ---- registering local instances ------------------------------------ */

/* One local instance to publish in etcd, as the configuration's "register"
 * list does (README: "Registering instances").  Every string is copied;
 * NULL and 0 mean the default. */
typedef struct {
    const char *service;  /* required */
    const char *address;  /* required: "host:port" or "[v6]:port" */
    const char *format;   /* "gozero" (default), "etcd_naming", "kratos", "kitex", "native" */
    uint64_t ttl_ms;      /* lease TTL, 1000..86400000, default 10000 (whole seconds in etcd) */
    uint32_t weight;      /* 1..1000000, default 1 */
    const char *zone;     /* native format only */
    const char *metadata; /* a JSON object of strings, or NULL */
    const char *key;      /* overrides the format's key, or NULL */
    /* Health gating: NULL none; "" the server's overall gRPC health, else
     * a gRPC service name.  The key then exists only while a connection to
     * the address with gRPC health checking is READY (SERVING). */
    const char *health_check;
} resolver_registration;

/* Publishes `reg` under a lease kept alive by the engine as it runs, put
 * back after any loss (lease expired or revoked, key deleted, etcd down
 * longer than the TTL, etcd replaced), never given up.  Registering the
 * same service and address again updates it.  Returns 0,
 * RESOLVER_ERR_INVALID (a bad field, described in err[0..errlen) when err
 * is not NULL), RESOLVER_ERR_NOMEM or RESOLVER_ERR_CLOSED (after
 * resolver_engine_deregister_all).  On the thread that drives the engine
 * (or before it first runs).  With the configuration's cache_file set it is
 * kept there and registered again by the next engine that reads the file,
 * until deregistered; without, list it in the configuration to have it
 * registered at every start. */
RESOLVER_API int resolver_engine_register(resolver_engine *engine, const resolver_registration *reg,
                                          char *err, size_t errlen);
/* Begins the graceful leave of one registration: its key is deleted and
 * its lease revoked as the engine runs, then it stays listed (LEAVING) for
 * deregister_grace_ms so that remote callers stop picking it before the
 * instance stops.  Returns 0 or RESOLVER_ERR_NOT_FOUND.  Same thread rule. */
RESOLVER_API int resolver_engine_deregister(resolver_engine *engine, const char *service,
                                            const char *address);
/* The same for every registration (before a stop); later registers answer
 * RESOLVER_ERR_CLOSED. */
RESOLVER_API void resolver_engine_deregister_all(resolver_engine *engine);
/* Registrations still listed, LEAVING ones included until their grace ends:
 * after resolver_engine_deregister_all, drive the engine until this is 0,
 * then stop.  resolver_engine_free without that leaves every key to expire
 * with its lease, as a crash does. */
RESOLVER_API size_t resolver_engine_registrations(resolver_engine *engine);

/* One registration as the engine keeps it (what `resolverctl
 * registrations` lists).  Freed with resolver_registration_info_free. */
typedef struct {
    char *service;
    char *address;       /* canonical: "host:port", "[v6]:port" */
    char *format;        /* "gozero", "etcd_naming", "kratos", "kitex", "native" */
    char *key;           /* its etcd key ("" not yet known) */
    int64_t lease;       /* its lease id, 0 none */
    int64_t ttl_left_ms; /* until the lease expires unless kept alive; < 0: no lease */
    char *state;         /* "PENDING", "REGISTERED", "UNHEALTHY" (health gating), "LEAVING" */
    int from_config;     /* 1: the configuration's "register" list; 0: registered at run time */
    uint64_t registered_count; /* times its key was put */
} resolver_registration_info;

/* The registrations, sorted by service then address, into *out (n of
 * them); `service` and `address` (either may be NULL) keep only those of
 * that service and that address (compared canonical: "[::1]:80" and the
 * address as registered match).  0, RESOLVER_ERR_NOMEM or
 * RESOLVER_ERR_INVALID.  Engine thread. */
RESOLVER_API int resolver_engine_registration_list(resolver_engine *engine, const char *service,
                                                   const char *address,
                                                   resolver_registration_info **out, size_t *n);
RESOLVER_API void resolver_registration_info_free(resolver_registration_info *info, size_t n);

/* ---- daemon client --------------------------------------------------- */

typedef struct resolver_client resolver_client;

/* Connects to resolverd's socket at `path` (NULL: $RESOLVER_SOCKET, else
 * /run/resolverd/resolverd.sock).  Every call on the client waits at most
 * `timeout_ms` (<= 0: 5000).  One client per thread; a client is not
 * thread-safe.  Returns 0 or RESOLVER_ERR_CONNECT / NOMEM / INVALID. */
RESOLVER_API int resolver_client_connect(const char *path, int timeout_ms, resolver_client **out);
/* Same as resolver_engine_pick, through the daemon (the result's zone is
 * "", weight 0, tls 0 and metadata NULL: the daemon's reply does not carry them).  Errors also
 * include RESOLVER_ERR_TIMEOUT, RESOLVER_ERR_CLOSED, RESOLVER_ERR_PROTOCOL, RESOLVER_ERR_IO and
 * RESOLVER_ERR_CONNECT.  After any of these the connection is closed (a late reply must not answer
 * the next request) and the next call connects again; tickets of the closed connection are released
 * by the daemon, so their done answers RESOLVER_ERR_NOT_FOUND. */
RESOLVER_API int resolver_client_pick(resolver_client *client, const char *service, const char *key,
                                      resolver_pick_result *out);
/* Same as resolver_engine_done, through the daemon; with latency_ms
 * RESOLVER_LATENCY_UNKNOWN the DONE line carries no latency_ms. */
RESOLVER_API int resolver_client_done(resolver_client *client, uint64_t ticket,
                                      resolver_outcome outcome, uint32_t latency_ms);
/* The daemon's last error message for this client ("" if none); valid
 * until the next call on the client. */
RESOLVER_API const char *resolver_client_last_error(const resolver_client *client);
/* Closes the connection and frees the client; tickets it took and did not
 * release are released by the daemon.  NULL is ignored. */
RESOLVER_API void resolver_client_free(resolver_client *client);
/* resolver_client_free that first waits (at most the client's timeout)
 * for the daemon to close its end: it does so only once it has released
 * the tickets the connection owned, so on return 0 they are released.
 * Frees the client either way.  Returns 0, RESOLVER_ERR_TIMEOUT,
 * RESOLVER_ERR_IO or RESOLVER_ERR_INVALID (NULL). */
RESOLVER_API int resolver_client_free_wait(resolver_client *client);
/* The socket path resolver_client_connect uses for `path`: path itself when
 * set, else $RESOLVER_SOCKET, else /run/resolverd/resolverd.sock.  Static
 * or path or the environment's storage: do not free it. */
RESOLVER_API const char *resolver_client_socket_path(const char *path);

/* The longest request line of the protocol, escapes included. */
#define RESOLVER_REQUEST_MAX 4096
/* One request of the daemon's line protocol (doc/protocol.md) for what the
 * calls above do not cover (STATUS, SERVICES, DRAIN, WATCH ...).  argv is
 * the verb, its arguments and NAME=VALUE options, NULL-terminated; the call
 * escapes each.  Returns 0 when the daemon answered: *answer is 0 for OK,
 * with *json (when json is not NULL; free() it) the reply's JSON text, or
 * the RESOLVER_ERR_* the daemon answered, its message in
 * resolver_client_last_error and *json NULL.  Otherwise no answer came:
 * RESOLVER_ERR_TIMEOUT, CLOSED, PROTOCOL, IO or CONNECT (the connection is
 * closed as after a pick), RESOLVER_ERR_INVALID (NULL client, argv or
 * answer, an empty verb, a line over RESOLVER_REQUEST_MAX) or NOMEM. */
RESOLVER_API int resolver_client_request(resolver_client *client, const char *const *argv,
                                         int *answer, char **json);
/* After an answered WATCH request: the next event's JSON text in *json
 * (free() it), waiting at most timeout_ms (< 0: for ever).  Returns 0,
 * RESOLVER_ERR_TIMEOUT, CLOSED, PROTOCOL, IO, NOMEM or INVALID. */
RESOLVER_API int resolver_client_next_event(resolver_client *client, int timeout_ms, char **json);

#ifdef __cplusplus
}
#endif
#endif /* RESOLVER_H */
