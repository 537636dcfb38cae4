/*
 * proto.h - the client half of the daemon's line protocol
 * (doc/protocol.md): escaping a request's tokens and parsing replies, for
 * lib/client.c.  The server half is resolverd's (src/wire.h).  Pure
 * functions, no I/O.
 *
 * Request:  VERB [ARG...]\n   tokens separated by spaces; %XX escapes any
 *           byte (space, '%', '=' in values, control characters).
 * Reply:    OK <json>\n | ERR <code> <message>\n | EVENT <json>\n (watch)
 */
#ifndef RSV_PROTO_H
#define RSV_PROTO_H

#include <stddef.h>

#define RSV_PROTO_LINE_MAX 4096

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

/* The resolver_error of one of the protocol's error words ("no_instance",
 * ...); RESOLVER_ERR_INTERNAL for another. */
int rsv_proto_error_from_word(const char *word);

#endif
