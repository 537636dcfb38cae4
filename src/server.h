/*
 * server.h - resolverd's Unix socket server: the line protocol of
 * doc/protocol.md on the engine's loop.  Engine thread only.
 */
#ifndef RSV_SERVER_H
#define RSV_SERVER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <resolver.h>

typedef struct rsv_server rsv_server;

typedef struct {
    size_t max_clients;            /* 1024 */
    size_t max_line;               /* RESOLVER_REQUEST_MAX */
    size_t max_tickets_per_client; /* 10000 */
    size_t max_output;             /* bytes queued for a client that does not read: 1 MiB */
    uint64_t idle_timeout_ms;      /* 300000; watchers are exempt */
    uint64_t fresh_wait_ms;        /* how long a first pick waits for discovery: 2000 */
} rsv_server_limits;

void rsv_server_limits_default(rsv_server_limits *l);

/* Binds cfg->socket (path, mode, group) and starts accepting.  On failure
 * returns NULL with a message in err. */
rsv_server *rsv_server_new(resolver_engine *engine, const resolver_config *cfg,
                           const rsv_server_limits *limits, char *err, size_t errlen);
/* Closes every client and the socket, and unlinks it. */
void rsv_server_del(rsv_server *s);

/* The RELOAD verb calls this (the daemon reloads as on SIGHUP).  Returns 0
 * or an error with a message in err. */
typedef int (*rsv_server_reload_cb)(void *arg, char *err, size_t errlen);
void rsv_server_set_reload(rsv_server *s, rsv_server_reload_cb cb, void *arg);

/* Applies what a reload may change in the server: socket.admin_group is
 * resolved to a gid again (path, mode and group stay as bound).  Clients
 * connected before keep the admin right they were given at connect.  0, or
 * -1 with a message in err (the old group stays in force). */
int rsv_server_reconfigure(rsv_server *s, const resolver_config *cfg, char *err, size_t errlen);
/* After the engine took a new configuration: what the server reads of the
 * engine's (socket.max_detached_tickets) is read again. */
void rsv_server_config_applied(rsv_server *s);

/* STATUS replies with the engine's status plus what this adds (the
 * daemon's version, pid, config file, last reload). */
typedef void (*rsv_server_status_cb)(void *arg, json_t *status);
void rsv_server_set_status(rsv_server *s, rsv_server_status_cb cb, void *arg);

/* Stops accepting picks (graceful shutdown): PICK answers "closed". */
void rsv_server_stop_picks(rsv_server *s);

#endif
