/*
 * etcdproto.h - etcd v3 JSON gateway messages, as bytes in and structs out.
 *
 * No I/O.  Facts (doc/design.md, etcd gateway): keys and values are base64; int64 fields
 * are JSON strings (numbers accepted too); zero values are omitted (a PUT
 * event has no "type", DELETE has "type":"DELETE").  A watch response is a
 * stream of {"result":{...}} objects separated by newlines; a stream error
 * arrives as {"error":{...}} possibly without a trailing newline.
 */
#ifndef RSV_ETCDPROTO_H
#define RSV_ETCDPROTO_H

#include <stddef.h>
#include <stdint.h>

typedef enum { RSV_KV_PUT = 0, RSV_KV_DELETE = 1 } rsv_kv_type;

typedef struct {
    rsv_kv_type type;
    char *key; /* decoded, NUL-terminated (binary-safe with key_len) */
    size_t key_len;
    char *value; /* decoded, NUL-terminated; "" for DELETE */
    size_t value_len;
    int64_t create_revision, mod_revision, version, lease;
} rsv_kv;

/* One message of a watch stream. */
typedef struct {
    int is_error;   /* {"error":{...}}: only error_code/error_message set */
    int error_code; /* gRPC code */
    const char *error_message;
    int64_t revision;    /* result.header.revision (0 if absent) */
    uint64_t cluster_id; /* result.header.cluster_id (0 if absent) */
    int64_t watch_id;
    int created;  /* result.created */
    int canceled; /* result.canceled */
    int64_t compact_revision;
    const char *cancel_reason;
    rsv_kv *events; /* PUT/DELETE events, in order */
    size_t n_events;
} rsv_watch_message;

/* Called once per complete message; `msg` and its strings are valid only
 * during the call.  Return 0 to go on, non-zero to stop feeding (feed then
 * returns that value). */
typedef int (*rsv_watch_message_cb)(void *arg, const rsv_watch_message *msg);

typedef struct rsv_watch_parser rsv_watch_parser;

/* `max_message` bounds a single message (bytes); 0 means 64 MiB. */
rsv_watch_parser *rsv_watch_parser_new(size_t max_message, rsv_watch_message_cb cb, void *arg);
void rsv_watch_parser_del(rsv_watch_parser *p);
/* Feeds bytes as they arrive, split anywhere.  Returns 0, the callback's
 * non-zero value, RESOLVER_ERR_DECODE (a message that is not valid JSON or
 * not a watch message; the parser skips it and stays usable) or
 * RESOLVER_ERR_LIMIT (message longer than max_message). */
int rsv_watch_parser_feed(rsv_watch_parser *p, const char *data, size_t len);
/* With `on`, the first message feed cannot use (DECODE, LIMIT, NOMEM) ends
 * the feed: nothing after it is delivered and the rest of the chunk is
 * dropped (the next feed starts clean), so that a caller that must not
 * skip a message (its events would be lost while later ones advance the
 * revision) can abandon the stream right there.  Off by default. */
void rsv_watch_parser_stop_at_error(rsv_watch_parser *p, int on);
/* End of stream: parses what is left without a trailing newline. */
int rsv_watch_parser_finish(rsv_watch_parser *p);
/* A short description of the last decode error ("" if none). */
const char *rsv_watch_parser_error(const rsv_watch_parser *p);

/* A complete /v3/kv/range response body. */
typedef struct {
    int64_t revision;    /* header.revision */
    uint64_t cluster_id; /* header.cluster_id (0 if absent) */
    rsv_kv *kvs;         /* type is PUT */
    size_t n_kvs;
    int more;
    int64_t count;
} rsv_range_result;

/* Parses a range body.  0, RESOLVER_ERR_DECODE (why filled) or NOMEM.  On
 * success free with rsv_range_result_clear. */
int rsv_range_parse(const char *body, size_t len, rsv_range_result *out, char *why, size_t whylen);
void rsv_range_result_clear(rsv_range_result *r);

/* Parses an {"error":..,"code":N,"message":..} body (any gateway error) or
 * {"token":".."} of /v3/auth/authenticate: 0 and a malloc'd token, else
 * RESOLVER_ERR_DECODE. */
int rsv_auth_parse(const char *body, size_t len, char **token);

/* etcd's own words from an error body, for logs: {"error":..,"message":..,
 * "code":N} (unary calls) or {"error":{"grpc_code":N,"message":..}} (a
 * stream's error) become "MESSAGE (gRPC code N NAME)"; any other body its
 * first printable bytes ("empty body" when there are none).  `out` is always
 * NUL-terminated (size > 0).  Returns 1 when the body was etcd's JSON. */
int rsv_etcd_error_text(const char *body, size_t len, char *out, size_t size);

/* Request bodies, malloc'd, NUL-terminated; NULL on allocation failure.
 * range_end is the prefix end (prefix with its last byte + 1). */
char *rsv_range_request(const char *prefix, size_t prefix_len, int64_t revision, int64_t limit,
                        const char *start_key, size_t start_key_len);
/* Whether the prefix changed after a revision, as etcd 3.4 really answers
 * it: a keys_only range at `revision` (0: the latest) with limit 1 and
 * min_mod_revision.  In the answer, kvs holds at most one key, modified at
 * or after min_mod_revision and still present at `revision`; count is every
 * key under the prefix at `revision` (etcd ignores the mod_revision filters
 * when counting, doc/design.md, etcd gateway), so a delete shows as a smaller count.
 * etcd reads every key of the prefix to answer it. */
char *rsv_range_changed_request(const char *prefix, size_t prefix_len, int64_t revision,
                                int64_t min_mod_revision);
char *rsv_watch_request(const char *prefix, size_t prefix_len, int64_t start_revision,
                        int progress_notify);

/* Base64 (standard alphabet, padding).  encode: malloc'd NUL-terminated.
 * decode: malloc'd, NUL-terminated, *out_len set; NULL on bad input. */
char *rsv_base64_encode(const void *data, size_t len);
char *rsv_base64_decode(const char *text, size_t len, size_t *out_len);

#endif
