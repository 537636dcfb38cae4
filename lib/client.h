/* client.h - the daemon client's request primitive, under the public calls. */
#ifndef RSV_CLIENT_H
#define RSV_CLIENT_H

#include "proto.h"
#include "resolver.h"

/* Sends one request line (without newline; tokens already escaped) and
 * reads one reply line into *reply (pointing into the client's buffer,
 * valid until the next call).  0, TIMEOUT, CLOSED, PROTOCOL or IO. */
int rsv_client_request(resolver_client *c, const char *line, rsv_proto_reply *reply);
/* The socket path the client would use for `path` (NULL: env or default). */
const char *rsv_client_default_path(const char *path);

#endif
