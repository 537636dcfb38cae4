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
 * first write, all signals blocked, joined by resolver_engine_del), so that
 * the fsync never holds up the engine.  Calls from several threads:
 * resolver_engine_pick and resolver_engine_done may be called from any thread, concurrently, while
 * another thread drives the engine; picks take no lock (they read an
 * immutable snapshot that the engine republishes) and never wait for the
 * engine.
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

/* ---- embedded engine ------------------------------------------------- */

typedef struct resolver_engine resolver_engine;

/* Longest address a pick returns, "[v6]:port" included, NUL included. */
#define RESOLVER_ADDRESS_MAX 300

typedef struct {
    char address[RESOLVER_ADDRESS_MAX]; /* "host:port" or "[v6]:port" */
    uint64_t ticket;                    /* pass to resolver_engine_done */
} resolver_pick_result;

/* Creates an engine.  Takes ownership of `cfg` in every case (it is freed on
 * failure too).  Starts no thread and does no I/O: discovery begins at the
 * first resolver_engine_process or resolver_engine_run. */
RESOLVER_API int resolver_engine_new(resolver_engine **out, resolver_config *cfg);
/* Closes every connection and frees the engine (with cache_file set, after
 * writing the last state to it).  Not while another thread is inside
 * resolver_engine_run: call resolver_engine_stop and join first. */
RESOLVER_API void resolver_engine_del(resolver_engine *engine);

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

/* Reports the outcome of a pick and releases its ticket; failures feed
 * outlier detection and make the subchannel probe its connection at once.
 * `latency_ms` (the time from pick to done, or RESOLVER_LATENCY_UNKNOWN)
 * goes into the service's resolver_done_latency_seconds histogram and the
 * instance's latency average (the least_latency policy).
 * Returns 0 or RESOLVER_ERR_NOT_FOUND.  Any thread; on the thread driving
 * the engine NOT_FOUND means unknown or already released, on other threads
 * only "never issued" (a double release is then ignored). */
RESOLVER_API int resolver_engine_done(resolver_engine *engine, uint64_t ticket, int failed,
                                      uint32_t latency_ms);

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
 * (or before it first runs).  Not persisted: list it in the configuration
 * to have it registered at every start. */
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
 * then stop.  resolver_engine_del without that leaves every key to expire
 * with its lease, as a crash does. */
RESOLVER_API size_t resolver_engine_registrations(resolver_engine *engine);

/* ---- daemon client --------------------------------------------------- */

typedef struct resolver_client resolver_client;

/* Connects to resolverd's socket at `path` (NULL: $RESOLVER_SOCKET, else
 * /run/resolverd/resolverd.sock).  Every call on the client waits at most
 * `timeout_ms` (<= 0: 5000).  One client per thread; a client is not
 * thread-safe.  Returns 0 or RESOLVER_ERR_CONNECT / NOMEM / INVALID. */
RESOLVER_API int resolver_client_connect(const char *path, int timeout_ms, resolver_client **out);
/* Same as resolver_engine_pick, through the daemon.  Errors also include
 * RESOLVER_ERR_TIMEOUT, RESOLVER_ERR_CLOSED, RESOLVER_ERR_PROTOCOL,
 * RESOLVER_ERR_IO and RESOLVER_ERR_CONNECT.  After any of these the
 * connection is closed (a late reply must not answer the next request) and
 * the next call connects again; tickets of the closed connection are
 * released by the daemon, so their done answers RESOLVER_ERR_NOT_FOUND. */
RESOLVER_API int resolver_client_pick(resolver_client *client, const char *service, const char *key,
                                      resolver_pick_result *out);
/* Same as resolver_engine_done, through the daemon; with latency_ms
 * RESOLVER_LATENCY_UNKNOWN the DONE line carries no latency_ms. */
RESOLVER_API int resolver_client_done(resolver_client *client, uint64_t ticket, int failed,
                                      uint32_t latency_ms);
/* The daemon's last error message for this client ("" if none); valid
 * until the next call on the client. */
RESOLVER_API const char *resolver_client_last_error(const resolver_client *client);
/* Closes the connection; tickets it took and did not release are released
 * by the daemon. */
RESOLVER_API void resolver_client_close(resolver_client *client);

#ifdef __cplusplus
}
#endif
#endif /* RESOLVER_H */
