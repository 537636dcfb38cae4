/*
 * etcdproto.c - etcd v3 JSON gateway messages, as bytes in and structs out.
 *
 * Everything here reads bytes from the network: each field is type-checked,
 * int64s are parsed by hand (the gateway sends them as strings) and a bad
 * message is reported and skipped, never trusted halfway.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "etcdproto.h"
#include "resolver.h"

#define DEFAULT_MAX_MESSAGE ((size_t)64 * 1024 * 1024)

static void set_text(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_text(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* ---- base64 ------------------------------------------------------------ */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *rsv_base64_encode(const void *data, size_t len)
{
    const unsigned char *in = data;
    if (!in && len)
        return NULL;
    if (len > (SIZE_MAX - 8) / 4 * 3)
        return NULL;
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Padding is optional (a trailing group of 2 or 3 characters decodes as it
 * would padded) but, when present, must complete the last group of 4. */
char *rsv_base64_decode(const char *text, size_t len, size_t *out_len)
{
    if (!text && len)
        return NULL;
    size_t pad = 0;
    if (len >= 1 && text[len - 1] == '=') {
        pad = 1;
        if (len >= 2 && text[len - 2] == '=')
            pad = 2;
    }
    if (pad && len % 4 != 0)
        return NULL;
    size_t n = len - pad;
    if (n % 4 == 1)
        return NULL;
    size_t size = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    unsigned char *out = malloc(size + 1), *o = out;
    if (!out)
        return NULL;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(text[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *o = '\0';
    if (out_len)
        *out_len = size;
    return (char *)out;
}

/* ---- JSON field helpers ------------------------------------------------ */

/* "123", "-5" (what the gateway sends for int64) into *out; no sign but '-',
 * no spaces, no overflow. */
static int parse_int64_text(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len)
        return -1;
    uint64_t v = 0;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    /* -(INT64_MIN) does not fit in int64: negate in unsigned arithmetic. */
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* "18446744073709551615" at most: digits only, no overflow. */
static int parse_uint64_text(const char *s, size_t len, uint64_t *out)
{
    if (len == 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* A uint64 member (header.cluster_id, often above INT64_MAX): absent or
 * null is 0; a string or a non-negative JSON integer. */
static int get_uint64(json_t *obj, const char *name, uint64_t *out)
{
    json_t *v = json_object_get(obj, name);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v))
        return parse_uint64_text(json_string_value(v), json_string_length(v), out);
    return -1;
}

/* An int64 member: absent or null is 0; a string or a JSON integer. */
static int get_int64(json_t *obj, const char *name, int64_t *out)
{
    json_t *v = json_object_get(obj, name);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v))
        return parse_int64_text(json_string_value(v), json_string_length(v), out);
    return -1;
}

static int get_bool(json_t *obj, const char *name, int *out)
{
    json_t *v = json_object_get(obj, name);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return -1;
    *out = json_is_true(v);
    return 0;
}

/* A string member, "" when absent; NULL if it is of another type. */
static const char *get_string(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return "";
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A base64 member decoded; absent means empty (zero values are omitted). */
static int get_b64(json_t *obj, const char *name, char **out, size_t *out_len)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    *out_len = 0;
    if (v && !json_is_null(v) && !json_is_string(v))
        return -1;
    const char *s = v && json_is_string(v) ? json_string_value(v) : "";
    size_t len = v && json_is_string(v) ? json_string_length(v) : 0;
    *out = rsv_base64_decode(s, len, out_len);
    return *out ? 0 : -1;
}

static void kv_clear(rsv_kv *kv)
{
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof(*kv));
}

static void kvs_free(rsv_kv *kvs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kv_clear(&kvs[i]);
    free(kvs);
}

/* One mvccpb.KeyValue: {"key","value","create_revision","mod_revision",
 * "version","lease"}. */
static int decode_kv(json_t *obj, rsv_kv *kv, char *why, size_t whylen)
{
    if (!json_is_object(obj)) {
        set_text(why, whylen, "kv is not an object");
        return RESOLVER_ERR_DECODE;
    }
    if (get_b64(obj, "key", &kv->key, &kv->key_len) != 0) {
        set_text(why, whylen, "bad base64 in kv.key");
        goto fail;
    }
    if (get_b64(obj, "value", &kv->value, &kv->value_len) != 0) {
        set_text(why, whylen, "bad base64 in kv.value");
        goto fail;
    }
    if (get_int64(obj, "create_revision", &kv->create_revision) ||
        get_int64(obj, "mod_revision", &kv->mod_revision) ||
        get_int64(obj, "version", &kv->version) || get_int64(obj, "lease", &kv->lease)) {
        set_text(why, whylen, "bad integer in kv");
        goto fail;
    }
    return 0;
fail:
    kv_clear(kv);
    return RESOLVER_ERR_DECODE;
}

/* An array of kvs (range) or of events (watch): `events` says which. */
static int decode_kv_array(json_t *arr, int events, rsv_kv **out, size_t *n_out, char *why,
                           size_t whylen)
{
    *out = NULL;
    *n_out = 0;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr)) {
        set_text(why, whylen, "%s is not an array", events ? "events" : "kvs");
        return RESOLVER_ERR_DECODE;
    }
    size_t n = json_array_size(arr), i;
    if (n == 0)
        return 0;
    rsv_kv *kvs = calloc(n, sizeof(*kvs));
    if (!kvs)
        return RESOLVER_ERR_NOMEM;
    json_t *item;
    int rc = 0;
    json_array_foreach(arr, i, item)
    {
        json_t *kv = item;
        if (events) {
            const char *type = get_string(item, "type");
            if (!type || (strcmp(type, "") != 0 && strcmp(type, "PUT") != 0 &&
                          strcmp(type, "DELETE") != 0)) {
                set_text(why, whylen, "unknown event type");
                rc = RESOLVER_ERR_DECODE;
                goto fail;
            }
            kvs[i].type = strcmp(type, "DELETE") == 0 ? RSV_KV_DELETE : RSV_KV_PUT;
            kv = json_object_get(item, "kv");
        }
        rsv_kv_type type = kvs[i].type;
        if ((rc = decode_kv(kv, &kvs[i], why, whylen)) != 0)
            goto fail;
        kvs[i].type = type;
    }
    *out = kvs;
    *n_out = n;
    return 0;
fail:
    kvs_free(kvs, n);
    return rc;
}

/* Gateway errors: {"error":{"grpc_code":N,"message":..}} on a stream,
 * {"error":"..","code":N,"message":".."} (grpc-gateway v1) on a unary call,
 * {"code":N,"message":".."} (grpc-gateway v2).  1 if `root` is one of them. */
static int decode_error(json_t *root, int *code, const char **message)
{
    json_t *err = json_object_get(root, "error");
    json_t *src = json_is_object(err) ? err : root;
    if (!err && !(json_object_get(root, "code") && json_object_get(root, "message")))
        return 0;
    if (err && !json_is_object(err) && !json_is_string(err))
        return 0;
    json_t *c = json_object_get(src, "grpc_code");
    if (!json_is_integer(c))
        c = json_object_get(src, "code");
    *code = json_is_integer(c) ? (int)json_integer_value(c) : 0;
    const char *m = get_string(src, "message");
    if ((!m || !*m) && json_is_string(err))
        m = json_string_value(err);
    *message = m ? m : "";
    return 1;
}

/* ---- watch messages ---------------------------------------------------- */

static int decode_result(json_t *res, rsv_watch_message *m, char *why, size_t whylen)
{
    json_t *header = json_object_get(res, "header");
    if (header && !json_is_object(header) && !json_is_null(header)) {
        set_text(why, whylen, "header is not an object");
        return RESOLVER_ERR_DECODE;
    }
    if (get_int64(header, "revision", &m->revision) ||
        get_uint64(header, "cluster_id", &m->cluster_id) ||
        get_int64(res, "watch_id", &m->watch_id) ||
        get_int64(res, "compact_revision", &m->compact_revision)) {
        set_text(why, whylen, "bad integer in watch result");
        return RESOLVER_ERR_DECODE;
    }
    if (get_bool(res, "created", &m->created) || get_bool(res, "canceled", &m->canceled)) {
        set_text(why, whylen, "bad boolean in watch result");
        return RESOLVER_ERR_DECODE;
    }
    if (!(m->cancel_reason = get_string(res, "cancel_reason"))) {
        set_text(why, whylen, "cancel_reason is not a string");
        return RESOLVER_ERR_DECODE;
    }
    return decode_kv_array(json_object_get(res, "events"), 1, &m->events, &m->n_events, why,
                           whylen);
}

static int decode_watch_message(json_t *root, rsv_watch_message *m, char *why, size_t whylen)
{
    memset(m, 0, sizeof(*m));
    m->error_message = "";
    m->cancel_reason = "";
    if (!json_is_object(root)) {
        set_text(why, whylen, "message is not a JSON object");
        return RESOLVER_ERR_DECODE;
    }
    json_t *res = json_object_get(root, "result");
    if (json_is_object(res))
        return decode_result(res, m, why, whylen);
    if (decode_error(root, &m->error_code, &m->error_message)) {
        m->is_error = 1;
        return 0;
    }
    set_text(why, whylen, "neither result nor error");
    return RESOLVER_ERR_DECODE;
}

/* ---- the watch stream parser ------------------------------------------- */

/* Messages are found by scanning bytes, not by waiting for newlines: an
 * error object arrives without one, and objects may come back to back.  The
 * scanner tracks string/escape state and bracket depth, so a complete
 * top-level object is handed on as soon as its last byte arrives, and bytes
 * are looked at once however the stream is split.  A newline inside an
 * object means it was cut short (the gateway never pretty-prints and JSON
 * strings cannot hold raw newlines): it is reported and the parser resyncs
 * there. */
enum parser_state {
    ST_IDLE,    /* between messages */
    ST_MESSAGE, /* inside an object */
    ST_SKIP     /* discarding until a newline (garbage or over-long message) */
};

struct rsv_watch_parser {
    size_t max;
    rsv_watch_message_cb cb;
    void *arg;
    char *buf;
    size_t len, cap;
    enum parser_state state;
    size_t depth;
    int in_string, escape;
    int stop_at_error; /* a message it cannot use ends the feed */
    char err[160];
};

rsv_watch_parser *rsv_watch_parser_new(size_t max_message, rsv_watch_message_cb cb, void *arg)
{
    if (!cb)
        return NULL;
    rsv_watch_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->max = max_message ? max_message : DEFAULT_MAX_MESSAGE;
    p->cb = cb;
    p->arg = arg;
    return p;
}

void rsv_watch_parser_stop_at_error(rsv_watch_parser *p, int on)
{
    if (p)
        p->stop_at_error = on;
}

void rsv_watch_parser_del(rsv_watch_parser *p)
{
    if (!p)
        return;
    free(p->buf);
    free(p);
}

const char *rsv_watch_parser_error(const rsv_watch_parser *p)
{
    return p ? p->err : "";
}

/* Parses the buffered object and calls back.  Returns DECODE / NOMEM for a
 * message it could not use, else 0 with the callback's value in *cb_rc. */
static int deliver(rsv_watch_parser *p, int *cb_rc)
{
    json_error_t jerr;
    json_t *root = json_loadb(p->buf, p->len, 0, &jerr);
    if (!root) {
        set_text(p->err, sizeof(p->err), "not JSON: %s", jerr.text);
        return RESOLVER_ERR_DECODE;
    }
    rsv_watch_message m;
    int rc = decode_watch_message(root, &m, p->err, sizeof(p->err));
    if (rc == RESOLVER_ERR_NOMEM)
        set_text(p->err, sizeof(p->err), "out of memory");
    if (rc == 0)
        *cb_rc = p->cb(p->arg, &m);
    kvs_free(m.events, m.n_events);
    json_decref(root);
    return rc;
}

static int buf_append(rsv_watch_parser *p, const char *data, size_t n)
{
    if (n > p->max - p->len) {
        set_text(p->err, sizeof(p->err), "message longer than %zu bytes", p->max);
        return RESOLVER_ERR_LIMIT;
    }
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->len + n)
            cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        char *b = realloc(p->buf, cap);
        if (!b) {
            set_text(p->err, sizeof(p->err), "out of memory");
            return RESOLVER_ERR_NOMEM;
        }
        p->buf = b;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, data, n);
    p->len += n;
    return 0;
}

/* Scans data[0..len) of a message in progress.  Returns how many bytes
 * belong to it; *done is 1 if they end it (closing bracket), -1 if a newline
 * cut it short (the newline is not counted), 0 if more is needed. */
static size_t scan_message(rsv_watch_parser *p, const char *data, size_t len, int *done)
{
    *done = 0;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c == '\n') {
            *done = -1;
            return i;
        }
        if (p->in_string) {
            if (p->escape)
                p->escape = 0;
            else if (c == '\\')
                p->escape = 1;
            else if (c == '"')
                p->in_string = 0;
        } else if (c == '"') {
            p->in_string = 1;
        } else if (c == '{' || c == '[') {
            p->depth++;
        } else if ((c == '}' || c == ']') && --p->depth == 0) {
            *done = 1;
            return i + 1;
        }
    }
    return len;
}

/* One huge message (a big initial batch of events) should not pin its
 * buffer for the life of the stream. */
#define KEEP_BUFFER_MAX ((size_t)1024 * 1024)

static void start_message(rsv_watch_parser *p)
{
    if (p->cap > KEEP_BUFFER_MAX) {
        free(p->buf);
        p->buf = NULL;
        p->cap = 0;
    }
    p->state = ST_MESSAGE;
    p->len = 0;
    p->depth = 0;
    p->in_string = 0;
    p->escape = 0;
}

/* Keeps the first problem of a feed for its return value while going on
 * with the messages after it. */
static void note(int *first, int rc)
{
    if (*first == 0)
        *first = rc;
}

/* Handles the bytes of a message in progress; returns how many it used.
 * *stop is set to the callback's non-zero value. */
static size_t feed_message(rsv_watch_parser *p, const char *data, size_t len, int *first, int *stop)
{
    int done;
    size_t used = scan_message(p, data, len, &done);
    int rc = buf_append(p, data, used);
    if (rc) {
        note(first, rc);
        /* An over-long message is skipped up to its newline; if this chunk
         * already holds the newline, the scan consumed up to it. */
        p->state = done == -1 ? ST_IDLE : ST_SKIP;
        return done == -1 ? used + 1 : used;
    }
    if (done == -1) {
        set_text(p->err, sizeof(p->err), "truncated message (newline inside)");
        note(first, RESOLVER_ERR_DECODE);
        p->state = ST_IDLE;
        return used + 1;
    }
    if (done == 1) {
        p->state = ST_IDLE;
        rc = deliver(p, stop);
        if (rc)
            note(first, rc);
    }
    return used;
}

int rsv_watch_parser_feed(rsv_watch_parser *p, const char *data, size_t len)
{
    if (!p || (!data && len))
        return RESOLVER_ERR_INVALID;
    int first = 0, stop = 0;
    size_t i = 0;
    while (i < len && !stop && !(first && p->stop_at_error)) {
        char c = data[i];
        switch (p->state) {
        case ST_IDLE:
            if (c == '{') {
                start_message(p);
            } else {
                i++;
                if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
                    set_text(p->err, sizeof(p->err), "garbage between messages");
                    note(&first, RESOLVER_ERR_DECODE);
                    p->state = ST_SKIP;
                }
            }
            break;
        case ST_SKIP: {
            const char *nl = memchr(data + i, '\n', len - i);
            i = nl ? (size_t)(nl - data) + 1 : len;
            if (nl)
                p->state = ST_IDLE;
            break;
        }
        case ST_MESSAGE:
            i += feed_message(p, data + i, len - i, &first, &stop);
            break;
        }
    }
    if (stop || (first && p->stop_at_error)) {
        /* The caller is going away from this stream; what is left of the
         * chunk is dropped, and the next feed starts clean. */
        p->state = ST_IDLE;
        p->len = 0;
        return stop ? stop : first;
    }
    return first;
}

int rsv_watch_parser_finish(rsv_watch_parser *p)
{
    if (!p)
        return RESOLVER_ERR_INVALID;
    int rc = 0;
    if (p->state == ST_MESSAGE) {
        set_text(p->err, sizeof(p->err), "truncated message at end of stream");
        rc = RESOLVER_ERR_DECODE;
    }
    /* Ready for another stream; the buffer is kept for reuse. */
    p->state = ST_IDLE;
    p->len = 0;
    return rc;
}

/* ---- range and auth ---------------------------------------------------- */

void rsv_range_result_clear(rsv_range_result *r)
{
    if (!r)
        return;
    kvs_free(r->kvs, r->n_kvs);
    memset(r, 0, sizeof(*r));
}

static int decode_range(json_t *root, rsv_range_result *out, char *why, size_t whylen)
{
    int code;
    const char *message;
    if (!json_is_object(root)) {
        set_text(why, whylen, "range response is not a JSON object");
        return RESOLVER_ERR_DECODE;
    }
    if (!json_object_get(root, "header") && decode_error(root, &code, &message)) {
        set_text(why, whylen, "etcd error %d: %s", code, message);
        return RESOLVER_ERR_DECODE;
    }
    /* etcd always sends a header; without its revision the watch that
     * follows the range could not start at the right place. */
    json_t *header = json_object_get(root, "header");
    if (!json_is_object(header)) {
        set_text(why, whylen, "missing header");
        return RESOLVER_ERR_DECODE;
    }
    if (get_int64(header, "revision", &out->revision) ||
        get_uint64(header, "cluster_id", &out->cluster_id) ||
        get_int64(root, "count", &out->count)) {
        set_text(why, whylen, "bad integer in range response");
        return RESOLVER_ERR_DECODE;
    }
    if (get_bool(root, "more", &out->more)) {
        set_text(why, whylen, "bad boolean in range response");
        return RESOLVER_ERR_DECODE;
    }
    return decode_kv_array(json_object_get(root, "kvs"), 0, &out->kvs, &out->n_kvs, why, whylen);
}

int rsv_range_parse(const char *body, size_t len, rsv_range_result *out, char *why, size_t whylen)
{
    set_text(why, whylen, "%s", "");
    if (!out)
        return RESOLVER_ERR_INVALID;
    memset(out, 0, sizeof(*out));
    if (!body && len)
        return RESOLVER_ERR_INVALID;
    json_error_t jerr;
    json_t *root = json_loadb(body ? body : "", len, 0, &jerr);
    if (!root) {
        set_text(why, whylen, "not JSON: %s", jerr.text);
        return RESOLVER_ERR_DECODE;
    }
    int rc = decode_range(root, out, why, whylen);
    if (rc == RESOLVER_ERR_NOMEM)
        set_text(why, whylen, "out of memory");
    if (rc)
        rsv_range_result_clear(out);
    json_decref(root);
    return rc;
}

/* The token goes into an HTTP header as is: anything but visible ASCII
 * could split or forge headers. */
static int token_ok(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

int rsv_auth_parse(const char *body, size_t len, char **token)
{
    if (!token)
        return RESOLVER_ERR_INVALID;
    *token = NULL;
    if (!body && len)
        return RESOLVER_ERR_INVALID;
    json_t *root = json_loadb(body ? body : "", len, 0, NULL);
    int rc = RESOLVER_ERR_DECODE;
    json_t *t = json_object_get(root, "token");
    if (json_is_string(t) && token_ok(json_string_value(t), json_string_length(t))) {
        *token = strdup(json_string_value(t));
        rc = *token ? 0 : RESOLVER_ERR_NOMEM;
    }
    json_decref(root);
    return rc;
}

/* ---- error bodies ------------------------------------------------------ */

static const char *grpc_code_name(json_int_t code)
{
    static const char *const names[] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
    return code >= 0 && code < (json_int_t)(sizeof(names) / sizeof(names[0])) ? names[code] : "";
}

/* A body that is not etcd's: its printable bytes, so that a proxy's HTML
 * page or binary junk cannot garble the log line. */
static void printable_prefix(const char *body, size_t len, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < size; i++) {
        unsigned char c = (unsigned char)body[i];
        if (c == '\n' || c == '\r' || c == '\t')
            c = ' ';
        if (c == ' ' && (n == 0 || out[n - 1] == ' '))
            continue; /* collapse runs of blanks */
        out[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    if (n == 0)
        snprintf(out, size, "empty body");
}

int rsv_etcd_error_text(const char *body, size_t len, char *out, size_t size)
{
    if (!out || size == 0)
        return 0;
    out[0] = '\0';
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *err = json_object_get(root, "error");
    json_t *holder = json_is_object(err) ? err : root; /* the stream shape nests it */
    json_t *msg = json_object_get(holder, "message");
    json_t *code = json_object_get(holder, json_is_object(err) ? "grpc_code" : "code");
    if (!json_is_string(msg) && json_is_string(err))
        msg = err;
    int etcds = json_is_string(msg);
    if (etcds && json_is_integer(code)) {
        const char *name = grpc_code_name(json_integer_value(code));
        snprintf(out, size, "%s (gRPC code %lld%s%s)", json_string_value(msg),
                 (long long)json_integer_value(code), name[0] ? " " : "", name);
    } else if (etcds)
        snprintf(out, size, "%s", json_string_value(msg));
    else
        printable_prefix(body ? body : "", body ? len : 0, out, size);
    json_decref(root);
    return etcds;
}

/* ---- request bodies ---------------------------------------------------- */

/* The end of the range covering every key that starts with `prefix`: the
 * prefix with its last byte + 1, trailing 0xff bytes dropped first (as
 * clientv3.GetPrefixRangeEnd).  An empty or all-0xff prefix gives "\0",
 * which etcd reads as "to the end of the keyspace". */
static char *prefix_end_b64(const char *prefix, size_t len)
{
    size_t n = len;
    while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
        n--;
    if (n == 0)
        return rsv_base64_encode("", 1);
    unsigned char *end = malloc(n);
    if (!end)
        return NULL;
    memcpy(end, prefix, n);
    end[n - 1]++;
    char *b64 = rsv_base64_encode(end, n);
    free(end);
    return b64;
}

/* The first key: etcd rejects an empty key, and "\0" is the lowest key. */
static char *key_b64(const char *key, size_t len)
{
    return len ? rsv_base64_encode(key, len) : rsv_base64_encode("", 1);
}

static char *format_body(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* vasprintf is a GNU extension: measure, then print. */
static char *format_body(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ,"name":"N" when v > 0 (zero values are omitted, as the gateway does). */
static void int64_member(char *buf, size_t len, const char *name, int64_t v)
{
    buf[0] = '\0';
    if (v > 0)
        snprintf(buf, len, ",\"%s\":\"%" PRId64 "\"", name, v);
}

/* The body shared by every request on a key range: HEAD, then the key
 * (key_src, base64) and the prefix's range_end, then TAIL (the members
 * that differ and the closing braces).  NULL on allocation failure. */
static char *key_range_body(const char *head, const char *key_src, size_t key_len,
                            const char *prefix, size_t prefix_len, const char *tail)
{
    char *key = key_b64(key_src, key_len);
    char *end = prefix_end_b64(prefix, prefix_len);
    char *body = key && end
                     ? format_body("%s\"key\":\"%s\",\"range_end\":\"%s\"%s", head, key, end, tail)
                     : NULL;
    free(key);
    free(end);
    return body;
}

char *rsv_range_request(const char *prefix, size_t prefix_len, int64_t revision, int64_t limit,
                        const char *start_key, size_t start_key_len)
{
    if ((!prefix && prefix_len) || (!start_key && start_key_len))
        return NULL;
    char rev[64], lim[64], tail[160];
    int64_member(rev, sizeof(rev), "revision", revision);
    int64_member(lim, sizeof(lim), "limit", limit);
    snprintf(tail, sizeof(tail), "%s%s,\"serializable\":false}", rev, lim);
    return start_key_len ? key_range_body("{", start_key, start_key_len, prefix, prefix_len, tail)
                         : key_range_body("{", prefix, prefix_len, prefix, prefix_len, tail);
}

char *rsv_range_changed_request(const char *prefix, size_t prefix_len, int64_t revision,
                                int64_t min_mod_revision)
{
    if (!prefix && prefix_len)
        return NULL;
    /* Not count_only: etcd ignores the mod_revision filters when counting
     * (doc/design.md, etcd gateway), but applies them to the keys it returns. */
    char rev[64], min[64], tail[200];
    int64_member(rev, sizeof(rev), "revision", revision);
    int64_member(min, sizeof(min), "min_mod_revision", min_mod_revision);
    snprintf(tail, sizeof(tail), "%s%s,\"limit\":\"1\",\"keys_only\":true}", rev, min);
    return key_range_body("{", prefix, prefix_len, prefix, prefix_len, tail);
}

char *rsv_watch_request(const char *prefix, size_t prefix_len, int64_t start_revision,
                        int progress_notify)
{
    if (!prefix && prefix_len)
        return NULL;
    char rev[64], tail[160];
    int64_member(rev, sizeof(rev), "start_revision", start_revision);
    snprintf(tail, sizeof(tail), "%s%s}}", rev, progress_notify ? ",\"progress_notify\":true" : "");
    return key_range_body("{\"create_request\":{", prefix, prefix_len, prefix, prefix_len, tail);
}
