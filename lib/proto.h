/*
 * proto.h - the daemon's line protocol (doc/protocol.md), shared by the
 * server, the CLI and the C client.  Pure functions, no I/O.
 *
 * Request:  VERB [ARG...]\n   tokens separated by spaces; %XX escapes any
 *           byte (space, '%', '=' in values, control characters).
 * Reply:    OK <json>\n | ERR <code> <message>\n | EVENT <json>\n (watch)
 */
#ifndef RSV_PROTO_H
#define RSV_PROTO_H

#include <stddef.h>

#define RSV_PROTO_LINE_MAX 4096
#define RSV_PROTO_MAX_ARGS 16

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

/* Writes `in` escaped for one token into out[0..outlen) (NUL-terminated).
 * Returns the length the escaped text needs (excluding NUL); if that is >=
 * outlen the output was truncated. */
size_t rsv_proto_escape(const char *in, char *out, size_t outlen);

typedef enum { RSV_REPLY_OK, RSV_REPLY_ERR, RSV_REPLY_EVENT } rsv_reply_kind;

typedef struct {
    rsv_reply_kind kind;
    const char *code;    /* ERR only */
    const char *payload; /* OK/EVENT: the JSON text; ERR: the message */
} rsv_proto_reply;

/* Parses one reply line in place.  0 or RESOLVER_ERR_PROTOCOL. */
int rsv_proto_parse_reply(char *line, rsv_proto_reply *reply);

/* The JSON text of an OK or EVENT payload (and of what resolverctl prints):
 * json_dumps with `flags` and 15 significant digits, enough for every
 * double the daemon computes (seconds with milliseconds for a year and
 * more) to print as its short decimal (12.28, not 12.279999999999999).
 * NULL when out of memory; free() it. */
struct json_t;
char *rsv_proto_json_dumps(const struct json_t *j, size_t flags);

/* resolver_error <-> the protocol's error words ("no_instance", ...). */
const char *rsv_proto_error_word(int err);
int rsv_proto_error_from_word(const char *word);

#endif
