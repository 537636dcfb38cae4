/* client.h - internal extras of the daemon client, for resolverctl. */
#ifndef RSV_CLIENT_H
#define RSV_CLIENT_H

#include "proto.h"
#include "resolver.h"

/* Sends one request line (without newline; tokens already escaped) and
 * reads one reply line into *reply (pointing into the client's buffer,
 * valid until the next call).  0, TIMEOUT, CLOSED, PROTOCOL or IO. */
int rsv_client_request(resolver_client *c, const char *line, rsv_proto_reply *reply);
/* Reads the next line (watch events).  timeout_ms < 0: wait forever. */
int rsv_client_read_reply(resolver_client *c, int timeout_ms, rsv_proto_reply *reply);
/* Shuts writing and waits (at most the client's timeout) for the daemon
 * to close its end, then frees the client.  The daemon closes only after
 * it released the tickets the connection owned, so on return 0 they are
 * released.  0, TIMEOUT or IO (the client is freed either way). */
int rsv_client_close_wait(resolver_client *c);
/* The socket path the client would use for `path` (NULL: env or default). */
const char *rsv_client_default_path(const char *path);

#endif
