/*
 * wire.h - the server half of resolverd's line protocol (doc/protocol.md):
 * splitting a request line, its options, the error words of replies, the
 * JSON text of payloads.  The client half (escaping, reply parsing) is the
 * library's, behind resolver_client_request.  Pure functions, no I/O.
 *
 * Request:  VERB [ARG...]\n   tokens separated by spaces; %XX escapes any
 *           byte (space, '%', '=' in values, control characters).
 * Reply:    OK <json>\n | ERR <code> <message>\n | EVENT <json>\n (watch)
 */
#ifndef RSV_WIRE_H
#define RSV_WIRE_H

#include <stddef.h>
#include <resolver.h>

/* The longest request line (resolver.h's RESOLVER_REQUEST_MAX), and the
 * most tokens a request has, the verb included (doc/protocol.md's Limits,
 * checked by test_docs). */
#define RSV_PROTO_LINE_MAX 4096
#define RSV_PROTO_MAX_ARGS 16
_Static_assert(RSV_PROTO_LINE_MAX == RESOLVER_REQUEST_MAX, "the client's limit is the server's");

typedef struct {
    int argc;
    char *argv[RSV_PROTO_MAX_ARGS]; /* point into the line */
} rsv_proto_request;

/* Splits `line` (NUL-terminated, no newline) in place and unescapes each
 * token.  Returns 0, or RESOLVER_ERR_PROTOCOL with *why set to a static
 * message (empty line, too many arguments, bad escape, NUL byte). */
int rsv_proto_split(char *line, rsv_proto_request *req, const char **why);

/* The value of option NAME=VALUE among argv[from..argc), or NULL. */
const char *rsv_proto_option(const rsv_proto_request *req, int from, const char *name);

/* The JSON text of an OK or EVENT payload: json_dumps with `flags` and 15
 * significant digits, enough for every double the daemon computes (seconds
 * with milliseconds for a year and more) to print as its short decimal
 * (12.28, not 12.279999999999999).  NULL when out of memory; free() it. */
struct json_t;
char *rsv_proto_json_dumps(const struct json_t *j, size_t flags);

#endif
