/* check_etcdproto.c - base64, the watch stream parser, range/auth bodies and
 * request builders. */
#include <check.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "etcdproto.h"
#include "resolver.h"

/* ---- base64 ------------------------------------------------------------ */

static const struct {
    const char *plain, *b64;
} rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

START_TEST(test_base64_vectors)
{
    for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        char *e = rsv_base64_encode(rfc4648[i].plain, strlen(rfc4648[i].plain));
        ck_assert_str_eq(e, rfc4648[i].b64);
        free(e);
        size_t n = 99;
        char *d = rsv_base64_decode(rfc4648[i].b64, strlen(rfc4648[i].b64), &n);
        ck_assert_ptr_nonnull(d);
        ck_assert_uint_eq(n, strlen(rfc4648[i].plain));
        ck_assert_str_eq(d, rfc4648[i].plain);
        free(d);
    }
}
END_TEST

START_TEST(test_base64_unpadded)
{
    size_t n;
    char *d = rsv_base64_decode("Zg", 2, &n);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(d, "f");
    free(d);
    d = rsv_base64_decode("Zm9vYmE", 7, &n);
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(d, "fooba");
    free(d);
}
END_TEST

START_TEST(test_base64_bad)
{
    static const char *const bad[] = {
        "Z",         "Zg=",    "Z===", "====", "=",     "Zg==Zg==",         "Zm9v=", "Zg=a",
        "Zm9v YmFy", "Zm9v\n", "Zm-v", "Zm_v", "Zm9v!", "\xc3\xa9\xc3\xa9", "Zm9vY"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = 0;
        char *d = rsv_base64_decode(bad[i], strlen(bad[i]), &n);
        ck_assert_msg(d == NULL, "accepted '%s'", bad[i]);
    }
    /* An embedded NUL is a bad character, not an end. */
    ck_assert_ptr_null(rsv_base64_decode("Zm\0v", 4, NULL));
    ck_assert_ptr_null(rsv_base64_decode(NULL, 4, NULL));
    char *d = rsv_base64_decode(NULL, 0, NULL);
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(d, "");
    free(d);
}
END_TEST

START_TEST(test_base64_binary_roundtrip)
{
    unsigned char data[300];
    srand(42);
    for (size_t len = 0; len <= sizeof(data); len++) {
        for (size_t i = 0; i < len; i++)
            data[i] = (unsigned char)(len < 256 ? i : (size_t)rand());
        char *e = rsv_base64_encode(data, len);
        ck_assert_ptr_nonnull(e);
        ck_assert_uint_eq(strlen(e), (len + 2) / 3 * 4);
        size_t n = 12345;
        char *d = rsv_base64_decode(e, strlen(e), &n);
        ck_assert_ptr_nonnull(d);
        ck_assert_uint_eq(n, len);
        ck_assert_int_eq(memcmp(d, data, len), 0);
        ck_assert_int_eq(d[len], '\0');
        free(d);
        free(e);
    }
}
END_TEST

/* ---- watch stream ------------------------------------------------------ */

/* Every message is written down as one line of text, so that a stream fed
 * in any split can be compared with the same stream fed at once. */
typedef struct {
    char text[16384];
    size_t len;
    int count;
    int stop_at; /* return 7 from this message (1-based), 0: never */
} recorder;

static void rec_printf(recorder *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void rec_printf(recorder *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->text + r->len, sizeof(r->text) - r->len, fmt, ap);
    va_end(ap);
    ck_assert(n >= 0 && (size_t)n < sizeof(r->text) - r->len);
    r->len += (size_t)n;
}

static int record(void *arg, const rsv_watch_message *m)
{
    recorder *r = arg;
    r->count++;
    if (m->is_error) {
        rec_printf(r, "E code=%d msg=%s\n", m->error_code, m->error_message);
    } else {
        rec_printf(r,
                   "R rev=%" PRId64 " wid=%" PRId64 " created=%d canceled=%d compact=%" PRId64
                   " reason=%s n=%zu",
                   m->revision, m->watch_id, m->created, m->canceled, m->compact_revision,
                   m->cancel_reason, m->n_events);
        for (size_t i = 0; i < m->n_events; i++) {
            const rsv_kv *kv = &m->events[i];
            ck_assert_int_eq(kv->key[kv->key_len], '\0');
            ck_assert_int_eq(kv->value[kv->value_len], '\0');
            rec_printf(
                r, " %s %s(%zu)=%s(%zu) c=%" PRId64 " m=%" PRId64 " v=%" PRId64 " l=%" PRId64,
                kv->type == RSV_KV_DELETE ? "DEL" : "PUT", kv->key, kv->key_len, kv->value,
                kv->value_len, kv->create_revision, kv->mod_revision, kv->version, kv->lease);
        }
        rec_printf(r, "\n");
    }
    return r->count == r->stop_at ? 7 : 0;
}

#define HDR                                                                                        \
    "\"header\":{\"cluster_id\":\"14841639068965178418\",\"member_id\":"                           \
    "\"10276657743932975437\",\"raft_term\":\"2\","

/* What etcd 3.4's gateway sends for: watch created, a PUT with a lease, a
 * DELETE, a progress notification, a compaction cancel, then a stream error
 * (which comes without a newline). */
static const char stream[] =
    "{\"result\":{" HDR "\"revision\":\"5\"},\"created\":true}}\n"
    "{\"result\":{" HDR "\"revision\":\"6\"},\"events\":[{\"kv\":{\"key\":\"dXNlci5ycGMvMQ==\","
    "\"create_revision\":\"6\",\"mod_revision\":\"6\",\"version\":\"1\",\"value\":"
    "\"MTAuMC4wLjE6OTAwMQ==\",\"lease\":\"7587869981229590045\"}}]}}\n"
    "{\"result\":{" HDR "\"revision\":\"7\"},\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":"
    "\"dXNlci5ycGMvMQ==\",\"mod_revision\":\"7\"}}]}}\n"
    "{\"result\":{" HDR "\"revision\":\"9\"}}}\n"
    "{\"result\":{" HDR "\"revision\":\"12\"},\"watch_id\":\"1\",\"canceled\":true,"
    "\"compact_revision\":\"10\",\"cancel_reason\":\"mvcc: required revision has been "
    "compacted\"}}\n"
    "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"etcdserver: no leader\","
    "\"http_status\":\"Service Unavailable\"}}";

static const char stream_expected[] =
    "R rev=5 wid=0 created=1 canceled=0 compact=0 reason= n=0\n"
    "R rev=6 wid=0 created=0 canceled=0 compact=0 reason= n=1 PUT user.rpc/1(10)=10.0.0.1:9001(13)"
    " c=6 m=6 v=1 l=7587869981229590045\n"
    "R rev=7 wid=0 created=0 canceled=0 compact=0 reason= n=1 DEL user.rpc/1(10)=(0) c=0 m=7 v=0 "
    "l=0\n"
    "R rev=9 wid=0 created=0 canceled=0 compact=0 reason= n=0\n"
    "R rev=12 wid=1 created=0 canceled=1 compact=10 reason=mvcc: required revision has been "
    "compacted n=0\n"
    "E code=14 msg=etcdserver: no leader\n";

static rsv_watch_parser *new_parser(recorder *r, size_t max)
{
    memset(r, 0, sizeof(*r));
    rsv_watch_parser *p = rsv_watch_parser_new(max, record, r);
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(rsv_watch_parser_error(p), "");
    return p;
}

START_TEST(test_watch_whole)
{
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    ck_assert_int_eq(rsv_watch_parser_feed(p, stream, strlen(stream)), 0);
    /* The error without a newline is delivered as soon as it is complete. */
    ck_assert_int_eq(r.count, 6);
    ck_assert_int_eq(rsv_watch_parser_finish(p), 0);
    ck_assert_str_eq(r.text, stream_expected);
    rsv_watch_parser_del(p);
}
END_TEST

START_TEST(test_watch_byte_by_byte)
{
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    for (size_t i = 0; i < strlen(stream); i++)
        ck_assert_int_eq(rsv_watch_parser_feed(p, stream + i, 1), 0);
    ck_assert_int_eq(rsv_watch_parser_finish(p), 0);
    ck_assert_str_eq(r.text, stream_expected);
    rsv_watch_parser_del(p);
}
END_TEST

START_TEST(test_watch_random_splits)
{
    size_t len = strlen(stream);
    srand(1234);
    for (int round = 0; round < 300; round++) {
        recorder r;
        rsv_watch_parser *p = new_parser(&r, 0);
        size_t i = 0;
        while (i < len) {
            size_t n = (size_t)rand() % 64;
            if (n > len - i)
                n = len - i;
            /* Empty feeds are allowed too. */
            ck_assert_int_eq(rsv_watch_parser_feed(p, stream + i, n), 0);
            i += n;
        }
        ck_assert_int_eq(rsv_watch_parser_finish(p), 0);
        ck_assert_str_eq(r.text, stream_expected);
        rsv_watch_parser_del(p);
    }
}
END_TEST

START_TEST(test_watch_concatenated)
{
    static const char two[] = "{\"result\":{\"header\":{\"revision\":\"3\"}}}"
                              "{\"result\":{\"header\":{\"revision\":4}}}  \r\n"
                              "\r\n{\"result\":{\"header\":{\"revision\":\"5\"}}}";
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    ck_assert_int_eq(rsv_watch_parser_feed(p, two, strlen(two)), 0);
    ck_assert_int_eq(rsv_watch_parser_finish(p), 0);
    ck_assert_int_eq(r.count, 3);
    ck_assert_str_eq(r.text, "R rev=3 wid=0 created=0 canceled=0 compact=0 reason= n=0\n"
                             "R rev=4 wid=0 created=0 canceled=0 compact=0 reason= n=0\n"
                             "R rev=5 wid=0 created=0 canceled=0 compact=0 reason= n=0\n");
    rsv_watch_parser_del(p);
}
END_TEST

START_TEST(test_watch_strings_with_brackets)
{
    /* Brackets, escaped quotes and backslashes inside strings must not
     * confuse the search for the end of the object. */
    static const char msg[] = "{\"result\":{\"header\":{\"revision\":\"8\"},\"cancel_reason\":"
                              "\"a}b]c{\\\"d\\\\\"}}\n";
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    for (size_t i = 0; i < strlen(msg); i++)
        ck_assert_int_eq(rsv_watch_parser_feed(p, msg + i, 1), 0);
    ck_assert_int_eq(r.count, 1);
    ck_assert_str_eq(r.text,
                     "R rev=8 wid=0 created=0 canceled=0 compact=0 reason=a}b]c{\"d\\ n=0\n");
    rsv_watch_parser_del(p);
}
END_TEST

START_TEST(test_watch_error_shapes)
{
    static const char errs[] =
        /* grpc-gateway v1 flat shape */
        "{\"error\":\"etcdserver: mvcc: required revision has been compacted\",\"code\":11,"
        "\"message\":\"etcdserver: mvcc: required revision has been compacted\"}\n"
        /* the flat shape with only the error string */
        "{\"error\":\"etcdserver: request timed out\",\"code\":14}\n"
        /* grpc-gateway v2 status */
        "{\"code\":16,\"message\":\"etcdserver: invalid auth token\",\"details\":[]}\n"
        /* the stream shape, last, without newline */
        "{\"error\":{\"grpc_code\":1,\"http_code\":408,\"message\":\"context canceled\","
        "\"http_status\":\"Request Timeout\"}}";
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    ck_assert_int_eq(rsv_watch_parser_feed(p, errs, strlen(errs)), 0);
    ck_assert_int_eq(rsv_watch_parser_finish(p), 0);
    ck_assert_str_eq(r.text, "E code=11 msg=etcdserver: mvcc: required revision has been "
                             "compacted\n"
                             "E code=14 msg=etcdserver: request timed out\n"
                             "E code=16 msg=etcdserver: invalid auth token\n"
                             "E code=1 msg=context canceled\n");
    rsv_watch_parser_del(p);
}
END_TEST

START_TEST(test_watch_binary_key)
{
    /* key "a\0b" (YQBi), value of 0xff bytes (//8=) */
    static const char msg[] = "{\"result\":{\"header\":{\"revision\":\"2\"},\"events\":[{\"type\":"
                              "\"PUT\",\"kv\":{\"key\":\"YQBi\",\"value\":\"//8=\"}}]}}\n";
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    ck_assert_int_eq(rsv_watch_parser_feed(p, msg, strlen(msg)), 0);
    ck_assert_str_eq(r.text, "R rev=2 wid=0 created=0 canceled=0 compact=0 reason= n=1 "
                             "PUT a(3)=\xff\xff(2) c=0 m=0 v=0 l=0\n");
    rsv_watch_parser_del(p);
}
END_TEST

START_TEST(test_watch_garbage_then_good)
{
    static const char in[] = "<html>502 Bad Gateway</html>\n"
                             "{\"result\":{\"header\":{\"revision\":\"3\"}}}\n";
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    ck_assert_int_eq(rsv_watch_parser_feed(p, in, strlen(in)), RESOLVER_ERR_DECODE);
    ck_assert_str_ne(rsv_watch_parser_error(p), "");
    ck_assert_int_eq(r.count, 1);
    ck_assert_str_eq(r.text, "R rev=3 wid=0 created=0 canceled=0 compact=0 reason= n=0\n");
    /* Still usable afterwards. */
    ck_assert_int_eq(rsv_watch_parser_feed(p, in + 29, strlen(in) - 29), 0);
    ck_assert_int_eq(r.count, 2);
    rsv_watch_parser_del(p);
}
END_TEST

/* Each of these is one bad line; the good line after it must still come. */
static const char *const bad_messages[] = {
    "{\"result\":{]}",
    "{\"result\":{\"header\":{\"revision\":\"abc\"}}}",
    "{\"result\":{\"header\":{\"revision\":\" 5\"}}}",
    "{\"result\":{\"header\":{\"revision\":\"9223372036854775808\"}}}",
    "{\"result\":{\"header\":{\"revision\":1.5}}}",
    "{\"result\":{\"header\":[]}}",
    "{\"result\":{\"created\":\"true\"}}",
    "{\"result\":{\"cancel_reason\":5}}",
    "{\"result\":{\"events\":{}}}",
    "{\"result\":{\"events\":[{\"type\":\"PATCH\",\"kv\":{\"key\":\"YQ==\"}}]}}",
    "{\"result\":{\"events\":[{\"type\":1,\"kv\":{\"key\":\"YQ==\"}}]}}",
    "{\"result\":{\"events\":[{\"kv\":{\"key\":\"Y===\"}}]}}",
    "{\"result\":{\"events\":[{\"kv\":{\"key\":\"YQ==\",\"value\":\"*\"}}]}}",
    "{\"result\":{\"events\":[{\"kv\":{\"key\":5}}]}}",
    "{\"result\":{\"events\":[{\"kv\":{\"key\":\"YQ==\",\"mod_revision\":\"x\"}}]}}",
    "{\"result\":{\"events\":[{\"kv\":\"a\"}]}}",
    "{\"result\":{\"events\":[{}]}}",
    "{\"result\":{\"events\":[{\"kv\":{\"key\":\"YQ==\"}},7]}}",
    "{\"foo\":1}",
    "{}",
    "{\"result\":\"x\"}",
    "{\"error\":5}",
    "[1,2]",
    "\"text\"",
    "}",
    "{\"a\":\"\\u0000\"}",
    "{\"a\":\"\xff\xfe\"}",
    "{\"result\":{\"header\":{\"revision\":\"1\"}",
    "{\"result\":{\"header\":{\"cluster_id\":\"18446744073709551616\"}}}",
    "{\"result\":{\"header\":{\"cluster_id\":\"-1\"}}}",
    "{\"result\":{\"header\":{\"cluster_id\":-1}}}",
    "{\"result\":{\"header\":{\"cluster_id\":\"0x1\"}}}",
};

START_TEST(test_watch_bad_message)
{
    static const char good[] = "{\"result\":{\"header\":{\"revision\":\"3\"}}}\n";
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    char in[512];
    snprintf(in, sizeof(in), "%s\n%s", bad_messages[_i], good);
    ck_assert_int_eq(rsv_watch_parser_feed(p, in, strlen(in)), RESOLVER_ERR_DECODE);
    ck_assert_msg(rsv_watch_parser_error(p)[0] != '\0', "no reason for %s", bad_messages[_i]);
    ck_assert_int_eq(r.count, 1);
    ck_assert_str_eq(r.text, "R rev=3 wid=0 created=0 canceled=0 compact=0 reason= n=0\n");
    /* Split byte by byte the result is the same. */
    recorder r2;
    rsv_watch_parser *p2 = new_parser(&r2, 0);
    int decode_errors = 0;
    for (size_t i = 0; i < strlen(in); i++) {
        int rc = rsv_watch_parser_feed(p2, in + i, 1);
        ck_assert(rc == 0 || rc == RESOLVER_ERR_DECODE);
        decode_errors += rc != 0;
    }
    ck_assert_int_ge(decode_errors, 1);
    ck_assert_str_eq(r2.text, r.text);
    rsv_watch_parser_del(p);
    rsv_watch_parser_del(p2);
}
END_TEST

static uint64_t seen_cluster;

static int keep_cluster(void *arg, const rsv_watch_message *m)
{
    seen_cluster = m->cluster_id;
    return record(arg, m);
}

/* header.cluster_id is a uint64, mostly above INT64_MAX. */
START_TEST(test_watch_cluster_id)
{
    recorder r = {0};
    rsv_watch_parser *p = rsv_watch_parser_new(0, keep_cluster, &r);
    static const char big[] = "{\"result\":{" HDR "\"revision\":\"5\"},\"created\":true}}\n";
    ck_assert_int_eq(rsv_watch_parser_feed(p, big, strlen(big)), 0);
    ck_assert_uint_eq(seen_cluster, 14841639068965178418ull);
    static const char max[] =
        "{\"result\":{\"header\":{\"cluster_id\":\"18446744073709551615\"}}}\n";
    ck_assert_int_eq(rsv_watch_parser_feed(p, max, strlen(max)), 0);
    ck_assert_uint_eq(seen_cluster, UINT64_MAX);
    static const char num[] = "{\"result\":{\"header\":{\"cluster_id\":42}}}\n";
    ck_assert_int_eq(rsv_watch_parser_feed(p, num, strlen(num)), 0);
    ck_assert_uint_eq(seen_cluster, 42);
    static const char none[] = "{\"result\":{\"header\":{\"revision\":\"5\"}}}\n";
    ck_assert_int_eq(rsv_watch_parser_feed(p, none, strlen(none)), 0);
    ck_assert_uint_eq(seen_cluster, 0);
    ck_assert_int_eq(r.count, 4);
    rsv_watch_parser_del(p);
}
END_TEST

/* stop_at_error: a message that cannot be used ends the feed, so nothing
 * after it (a later revision) is delivered; the next feed starts clean. */
START_TEST(test_watch_stop_at_error)
{
    static const char good5[] = "{\"result\":{\"header\":{\"revision\":\"5\"}}}\n";
    static const char good7[] = "{\"result\":{\"header\":{\"revision\":\"7\"}}}\n";
    static const char good8[] = "{\"result\":{\"header\":{\"revision\":\"8\"}}}\n";
    for (size_t b = 0; b < sizeof(bad_messages) / sizeof(bad_messages[0]); b++) {
        char in[1024];
        snprintf(in, sizeof(in), "%s%s\n%s", good5, bad_messages[b], good7);
        recorder r = {0};
        rsv_watch_parser *p = new_parser(&r, 0);
        rsv_watch_parser_stop_at_error(p, 1);
        ck_assert_int_eq(rsv_watch_parser_feed(p, in, strlen(in)), RESOLVER_ERR_DECODE);
        ck_assert_msg(r.count == 1, "%d messages delivered around %s", r.count, bad_messages[b]);
        ck_assert_str_eq(r.text, "R rev=5 wid=0 created=0 canceled=0 compact=0 reason= n=0\n");
        ck_assert_str_ne(rsv_watch_parser_error(p), "");
        ck_assert_int_eq(rsv_watch_parser_feed(p, good8, strlen(good8)), 0);
        ck_assert_int_eq(r.count, 2);
        rsv_watch_parser_del(p);
    }
    /* Over the size limit: the same, the long message's rest not waited for. */
    recorder r = {0};
    rsv_watch_parser *p = new_parser(&r, 64);
    rsv_watch_parser_stop_at_error(p, 1);
    char in[512];
    snprintf(in, sizeof(in), "%s{\"result\":{\"cancel_reason\":\"%0100d\"}}\n%s", good5, 0, good7);
    ck_assert_int_eq(rsv_watch_parser_feed(p, in, strlen(in)), RESOLVER_ERR_LIMIT);
    ck_assert_int_eq(r.count, 1);
    ck_assert_int_eq(rsv_watch_parser_feed(p, good8, strlen(good8)), 0);
    ck_assert_int_eq(r.count, 2);
    /* Off again: the old behaviour, the good message after a bad one comes. */
    rsv_watch_parser_stop_at_error(p, 0);
    snprintf(in, sizeof(in), "%s\n%s", bad_messages[0], good7);
    ck_assert_int_eq(rsv_watch_parser_feed(p, in, strlen(in)), RESOLVER_ERR_DECODE);
    ck_assert_int_eq(r.count, 3);
    rsv_watch_parser_del(p);
}
END_TEST

START_TEST(test_watch_int64_bounds)
{
    static const char in[] =
        "{\"result\":{\"header\":{\"revision\":\"9223372036854775807\"},\"watch_id\":\"-1\","
        "\"compact_revision\":\"-9223372036854775808\"}}\n";
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    ck_assert_int_eq(rsv_watch_parser_feed(p, in, strlen(in)), 0);
    ck_assert_str_eq(r.text, "R rev=9223372036854775807 wid=-1 created=0 canceled=0 "
                             "compact=-9223372036854775808 reason= n=0\n");
    rsv_watch_parser_del(p);
}
END_TEST

START_TEST(test_watch_too_long)
{
    static const char good[] = "{\"result\":{\"header\":{\"revision\":\"3\"}}}\n";
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 64);
    /* One chunk: the long message, its newline and a good one. */
    char in[512];
    snprintf(in, sizeof(in), "{\"result\":{\"cancel_reason\":\"%0100d\"}}\n%s", 0, good);
    ck_assert_int_eq(rsv_watch_parser_feed(p, in, strlen(in)), RESOLVER_ERR_LIMIT);
    ck_assert_str_ne(rsv_watch_parser_error(p), "");
    ck_assert_int_eq(r.count, 1);

    /* Byte by byte: LIMIT once, the rest of the long line dropped quietly. */
    int limits = 0;
    for (size_t i = 0; i < strlen(in); i++) {
        int rc = rsv_watch_parser_feed(p, in + i, 1);
        ck_assert(rc == 0 || rc == RESOLVER_ERR_LIMIT);
        limits += rc == RESOLVER_ERR_LIMIT;
    }
    ck_assert_int_eq(limits, 1);
    ck_assert_int_eq(r.count, 2);

    /* Exactly max_message bytes is allowed. */
    char exact[65];
    snprintf(exact, sizeof(exact), "{\"result\":{\"cancel_reason\":\"%033d\"}}", 0);
    ck_assert_uint_eq(strlen(exact), 64);
    ck_assert_int_eq(rsv_watch_parser_feed(p, exact, 64), 0);
    ck_assert_int_eq(r.count, 3);
    rsv_watch_parser_del(p);
}
END_TEST

START_TEST(test_watch_truncated_at_finish)
{
    static const char in[] = "{\"result\":{\"header\":{\"revision\":\"3\"}}}\n{\"result\":{\"hea";
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    ck_assert_int_eq(rsv_watch_parser_feed(p, in, strlen(in)), 0);
    ck_assert_int_eq(r.count, 1);
    ck_assert_int_eq(rsv_watch_parser_finish(p), RESOLVER_ERR_DECODE);
    ck_assert_str_ne(rsv_watch_parser_error(p), "");
    /* finish leaves a parser ready for the next stream. */
    ck_assert_int_eq(rsv_watch_parser_feed(p, in, (size_t)(strchr(in, '\n') - in + 1)), 0);
    ck_assert_int_eq(r.count, 2);
    ck_assert_int_eq(rsv_watch_parser_finish(p), 0);
    ck_assert_int_eq(rsv_watch_parser_finish(p), 0);
    rsv_watch_parser_del(p);
}
END_TEST

START_TEST(test_watch_newline_inside)
{
    /* A message cut by a newline is reported; the parser resyncs there. */
    static const char in[] =
        "{\"result\":{\"header\":\n{\"result\":{\"header\":{\"revision\":\"4\"}}}\n";
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    ck_assert_int_eq(rsv_watch_parser_feed(p, in, strlen(in)), RESOLVER_ERR_DECODE);
    ck_assert_str_eq(r.text, "R rev=4 wid=0 created=0 canceled=0 compact=0 reason= n=0\n");
    rsv_watch_parser_del(p);
}
END_TEST

START_TEST(test_watch_callback_stop)
{
    recorder r;
    rsv_watch_parser *p = new_parser(&r, 0);
    r.stop_at = 2;
    ck_assert_int_eq(rsv_watch_parser_feed(p, stream, strlen(stream)), 7);
    ck_assert_int_eq(r.count, 2);
    /* The parser can start again on a new stream. */
    r.stop_at = 0;
    ck_assert_int_eq(rsv_watch_parser_feed(p, stream, strlen(stream)), 0);
    ck_assert_int_eq(r.count, 8);
    rsv_watch_parser_del(p);
}
END_TEST

static int count_events(void *arg, const rsv_watch_message *m)
{
    size_t *n = arg;
    *n += m->n_events;
    if (m->n_events)
        ck_assert_int_eq(m->events[m->n_events - 1].mod_revision, (int64_t)m->n_events);
    return 0;
}

START_TEST(test_watch_big_message)
{
    size_t cap = 200000, len = 0;
    char *in = malloc(cap);
    len += (size_t)snprintf(in, cap, "{\"result\":{\"header\":{\"revision\":\"900\"},\"events\":[");
    for (int i = 0; i < 1000; i++)
        len += (size_t)snprintf(in + len, cap - len,
                                "%s{\"kv\":{\"key\":\"a2V5\",\"value\":\"MTAuMC4wLjE6OTAwMQ==\","
                                "\"mod_revision\":\"%d\"}}",
                                i ? "," : "", i + 1);
    len += (size_t)snprintf(in + len, cap - len, "]}}\n");
    size_t n = 0;
    rsv_watch_parser *p = rsv_watch_parser_new(0, count_events, &n);
    ck_assert_int_eq(rsv_watch_parser_feed(p, in, len / 2), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rsv_watch_parser_feed(p, in + len / 2, len - len / 2), 0);
    ck_assert_uint_eq(n, 1000);
    rsv_watch_parser_del(p);
    free(in);
}
END_TEST

/* Sums reason lengths and revisions: enough to see which messages came. */
static int sum_sizes(void *arg, const rsv_watch_message *m)
{
    size_t *sum = arg;
    *sum += strlen(m->cancel_reason) + (size_t)m->revision;
    return 0;
}

START_TEST(test_watch_huge_then_small)
{
    /* A 2 MiB message, then small ones: the big buffer is let go of. */
    size_t big = 2 * 1024 * 1024;
    char *in = malloc(big + 64);
    int n = snprintf(in, 64, "{\"result\":{\"cancel_reason\":\"");
    memset(in + n, 'x', big);
    strcpy(in + n + big, "\"}}\n");
    size_t sum = 0;
    rsv_watch_parser *p = rsv_watch_parser_new(0, sum_sizes, &sum);
    ck_assert_int_eq(rsv_watch_parser_feed(p, in, strlen(in)), 0);
    ck_assert_uint_eq(sum, big);
    static const char small[] = "{\"result\":{\"header\":{\"revision\":\"3\"}}}\n";
    ck_assert_int_eq(rsv_watch_parser_feed(p, small, strlen(small)), 0);
    ck_assert_int_eq(rsv_watch_parser_feed(p, small, strlen(small)), 0);
    ck_assert_uint_eq(sum, big + 6);
    rsv_watch_parser_del(p);
    free(in);
}
END_TEST

START_TEST(test_watch_bad_arguments)
{
    recorder r;
    ck_assert_ptr_null(rsv_watch_parser_new(0, NULL, NULL));
    rsv_watch_parser *p = new_parser(&r, 0);
    ck_assert_int_eq(rsv_watch_parser_feed(p, NULL, 3), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(rsv_watch_parser_feed(p, NULL, 0), 0);
    ck_assert_int_eq(rsv_watch_parser_feed(NULL, "x", 1), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(rsv_watch_parser_finish(NULL), RESOLVER_ERR_INVALID);
    ck_assert_str_eq(rsv_watch_parser_error(NULL), "");
    rsv_watch_parser_del(NULL);
    rsv_watch_parser_del(p);
}
END_TEST

/* ---- range ------------------------------------------------------------- */

START_TEST(test_range_parse)
{
    static const char body[] =
        "{\"header\":{\"cluster_id\":\"14841639068965178418\",\"member_id\":"
        "\"10276657743932975437\",\"revision\":\"5\",\"raft_term\":\"2\"},\"kvs\":[{\"key\":"
        "\"dXNlci5ycGMvMQ==\",\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\","
        "\"value\":\"MTAuMC4wLjE6OTAwMQ==\",\"lease\":\"7587869981229590045\"},{\"key\":"
        "\"dXNlci5ycGMvMg==\",\"create_revision\":\"3\",\"mod_revision\":\"5\",\"version\":\"2\","
        "\"value\":\"MTAuMC4wLjI6OTAwMQ==\"}],\"more\":true,\"count\":\"3\"}";
    rsv_range_result r;
    char why[128];
    ck_assert_int_eq(rsv_range_parse(body, strlen(body), &r, why, sizeof(why)), 0);
    ck_assert_int_eq(r.revision, 5);
    ck_assert_int_eq(r.more, 1);
    ck_assert_int_eq(r.count, 3);
    ck_assert_uint_eq(r.n_kvs, 2);
    ck_assert_str_eq(r.kvs[0].key, "user.rpc/1");
    ck_assert_str_eq(r.kvs[0].value, "10.0.0.1:9001");
    ck_assert_int_eq(r.kvs[0].lease, 7587869981229590045LL);
    ck_assert_int_eq(r.kvs[0].type, RSV_KV_PUT);
    ck_assert_str_eq(r.kvs[1].key, "user.rpc/2");
    ck_assert_uint_eq(r.kvs[1].value_len, 13);
    ck_assert_int_eq(r.kvs[1].create_revision, 3);
    ck_assert_int_eq(r.kvs[1].mod_revision, 5);
    ck_assert_int_eq(r.kvs[1].version, 2);
    rsv_range_result_clear(&r);
    ck_assert_ptr_null(r.kvs);
    ck_assert_uint_eq(r.n_kvs, 0);
    rsv_range_result_clear(&r);
}
END_TEST

START_TEST(test_range_empty)
{
    static const char body[] = "{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\",\"revision\":"
                               "\"17\",\"raft_term\":\"2\"}}";
    rsv_range_result r;
    char why[128];
    ck_assert_int_eq(rsv_range_parse(body, strlen(body), &r, why, sizeof(why)), 0);
    ck_assert_int_eq(r.revision, 17);
    ck_assert_uint_eq(r.cluster_id, 1);
    ck_assert_uint_eq(r.n_kvs, 0);
    ck_assert_ptr_null(r.kvs);
    ck_assert_int_eq(r.more, 0);
    ck_assert_int_eq(r.count, 0);
    rsv_range_result_clear(&r);
}
END_TEST

static const char *const bad_ranges[] = {
    "",
    "not json",
    "[]",
    "{}",
    "{\"header\":5}",
    "{\"header\":{\"revision\":\"x\"}}",
    "{\"header\":{\"revision\":\"5\"},\"kvs\":{}}",
    "{\"header\":{\"revision\":\"5\"},\"kvs\":[5]}",
    "{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":\"@@@@\"}]}",
    "{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":\"YQ==\"},{\"key\":\"YQ==\",\"value\":1}]}",
    "{\"header\":{\"revision\":\"5\"},\"more\":\"yes\"}",
    "{\"header\":{\"revision\":\"5\"},\"count\":[]}",
    "{\"header\":{\"revision\":\"5\"}} x",
    "{\"header\":{\"revision\":\"5\",\"cluster_id\":\"x\"}}",
    "{\"header\":{\"revision\":\"5\",\"cluster_id\":\"99999999999999999999\"}}",
    "{\"error\":\"etcdserver: user name is empty\",\"code\":3,\"message\":\"etcdserver: user name "
    "is empty\"}",
};

START_TEST(test_range_bad)
{
    rsv_range_result r;
    char why[128] = "";
    const char *body = bad_ranges[_i];
    ck_assert_int_eq(rsv_range_parse(body, strlen(body), &r, why, sizeof(why)),
                     RESOLVER_ERR_DECODE);
    ck_assert_msg(why[0] != '\0', "no reason for %s", body);
    ck_assert_ptr_null(r.kvs);
    ck_assert_uint_eq(r.n_kvs, 0);
    rsv_range_result_clear(&r);
}
END_TEST

START_TEST(test_range_error_reason)
{
    static const char body[] = "{\"error\":\"etcdserver: user name is empty\",\"code\":3,"
                               "\"message\":\"etcdserver: user name is empty\"}";
    rsv_range_result r;
    char why[128];
    ck_assert_int_eq(rsv_range_parse(body, strlen(body), &r, why, sizeof(why)),
                     RESOLVER_ERR_DECODE);
    ck_assert_str_eq(why, "etcd error 3: etcdserver: user name is empty");
    ck_assert_int_eq(rsv_range_parse(NULL, 0, &r, NULL, 0), RESOLVER_ERR_DECODE);
    ck_assert_int_eq(rsv_range_parse(NULL, 5, &r, why, sizeof(why)), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(rsv_range_parse("{}", 2, NULL, why, sizeof(why)), RESOLVER_ERR_INVALID);
}
END_TEST

/* ---- error bodies -------------------------------------------------------- */

static int error_text(const char *body, char *out, size_t size)
{
    return rsv_etcd_error_text(body, strlen(body), out, size);
}

START_TEST(test_error_text)
{
    char out[256];
    /* A unary call's error, as etcd 3.5's gateway sends it. */
    ck_assert_int_eq(error_text("{\"error\":\"etcdserver: authentication failed, invalid user ID "
                                "or password\",\"code\":3,\"message\":\"etcdserver: "
                                "authentication failed, invalid user ID or password\"}",
                                out, sizeof(out)),
                     1);
    ck_assert_str_eq(out, "etcdserver: authentication failed, invalid user ID or password (gRPC "
                          "code 3 INVALID_ARGUMENT)");
    /* A stream's error. */
    ck_assert_int_eq(error_text("{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":"
                                "\"etcdserver: no leader\",\"http_status\":\"Service "
                                "Unavailable\"}}",
                                out, sizeof(out)),
                     1);
    ck_assert_str_eq(out, "etcdserver: no leader (gRPC code 14 UNAVAILABLE)");
    /* Only "error" (older gateways), an unknown code. */
    ck_assert_int_eq(error_text("{\"error\":\"bad thing\",\"code\":99}", out, sizeof(out)), 1);
    ck_assert_str_eq(out, "bad thing (gRPC code 99)");
    ck_assert_int_eq(error_text("{\"message\":\"just this\"}", out, sizeof(out)), 1);
    ck_assert_str_eq(out, "just this");
    /* Not etcd's: printable bytes only, blanks collapsed. */
    ck_assert_int_eq(error_text("<html>\r\n  <b>503</b>\x01\n</html>\n", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "<html> <b>503</b>? </html>");
    ck_assert_int_eq(error_text("", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "empty body");
    ck_assert_int_eq(rsv_etcd_error_text(NULL, 0, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "empty body");
    ck_assert_int_eq(error_text("{\"error\":{\"grpc_code\":\"x\"}}", out, sizeof(out)), 0);
    /* Truncated to the room given, always terminated. */
    ck_assert_int_eq(error_text("{\"message\":\"0123456789\"}", out, 5), 1);
    ck_assert_str_eq(out, "0123");
    ck_assert_int_eq(error_text("0123456789", out, 5), 0);
    ck_assert_str_eq(out, "0123");
}
END_TEST

/* ---- auth -------------------------------------------------------------- */

START_TEST(test_auth_parse)
{
    static const char ok[] = "{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\",\"revision\":"
                             "\"9\",\"raft_term\":\"2\"},\"token\":\"ZGnRAhVFWbvhGkCP.28\"}";
    char *token = (char *)1;
    ck_assert_int_eq(rsv_auth_parse(ok, strlen(ok), &token), 0);
    ck_assert_str_eq(token, "ZGnRAhVFWbvhGkCP.28");
    free(token);

    static const char *const bad[] = {
        "{\"error\":\"etcdserver: authentication failed, invalid user ID or password\","
        "\"code\":3,\"message\":\"etcdserver: authentication failed, invalid user ID or "
        "password\"}",
        "{\"token\":\"\"}",
        "{\"token\":5}",
        "{\"token\":\"abc\\r\\nX-Injected: 1\"}",
        "{\"token\":\"a b\"}",
        "{\"token\":\"a\\u0000b\"}",
        "{\"token\":\"\xc3\xa9\"}",
        "[\"token\"]",
        "token",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        token = (char *)1;
        ck_assert_int_eq(rsv_auth_parse(bad[i], strlen(bad[i]), &token), RESOLVER_ERR_DECODE);
        ck_assert_ptr_null(token);
    }
    ck_assert_int_eq(rsv_auth_parse(ok, strlen(ok), NULL), RESOLVER_ERR_INVALID);
}
END_TEST

/* ---- request builders -------------------------------------------------- */

/* Decodes the base64 member `name` of `obj` into a malloc'd buffer. */
static char *b64_member(json_t *obj, const char *name, size_t *len)
{
    json_t *v = json_object_get(obj, name);
    ck_assert_msg(json_is_string(v), "no %s", name);
    char *d = rsv_base64_decode(json_string_value(v), json_string_length(v), len);
    ck_assert_ptr_nonnull(d);
    return d;
}

static void check_range(const char *body, const char *key, size_t key_len, const char *end,
                        size_t end_len)
{
    json_error_t err;
    json_t *root = json_loads(body, 0, &err);
    ck_assert_msg(root != NULL, "%s: %s", body, err.text);
    size_t n;
    char *k = b64_member(root, "key", &n);
    ck_assert_uint_eq(n, key_len);
    ck_assert_int_eq(memcmp(k, key, n), 0);
    char *e = b64_member(root, "range_end", &n);
    ck_assert_uint_eq(n, end_len);
    ck_assert_int_eq(memcmp(e, end, n), 0);
    ck_assert(json_is_false(json_object_get(root, "serializable")));
    free(k);
    free(e);
    json_decref(root);
}

START_TEST(test_range_request)
{
    char *b = rsv_range_request("user.rpc/", 9, 0, 0, NULL, 0);
    ck_assert_str_eq(b, "{\"key\":\"dXNlci5ycGMv\",\"range_end\":\"dXNlci5ycGMw\","
                        "\"serializable\":false}");
    check_range(b, "user.rpc/", 9, "user.rpc0", 9);
    free(b);

    b = rsv_range_request("user.rpc/", 9, 5, 100, "user.rpc/7\0", 11);
    check_range(b, "user.rpc/7\0", 11, "user.rpc0", 9);
    json_t *root = json_loads(b, 0, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(root, "revision")), "5");
    ck_assert_str_eq(json_string_value(json_object_get(root, "limit")), "100");
    json_decref(root);
    free(b);

    /* Trailing 0xff bytes are dropped before the increment. */
    b = rsv_range_request("a\xff\xff", 3, 0, 0, NULL, 0);
    check_range(b, "a\xff\xff", 3, "b", 1);
    free(b);
    b = rsv_range_request("a\xfe", 2, 0, 0, NULL, 0);
    check_range(b, "a\xfe", 2, "a\xff", 2);
    free(b);
    /* No end to increment: "\0", all keys from `key` on. */
    b = rsv_range_request("\xff\xff", 2, 0, 0, NULL, 0);
    check_range(b, "\xff\xff", 2, "", 1);
    free(b);
    b = rsv_range_request("", 0, 0, 0, NULL, 0);
    ck_assert_str_eq(b, "{\"key\":\"AA==\",\"range_end\":\"AA==\",\"serializable\":false}");
    free(b);
    b = rsv_range_request(NULL, 0, -3, -1, NULL, 0);
    ck_assert_str_eq(b, "{\"key\":\"AA==\",\"range_end\":\"AA==\",\"serializable\":false}");
    free(b);
    /* Binary prefix with a NUL inside. */
    b = rsv_range_request("p\0q", 3, 0, 0, NULL, 0);
    check_range(b, "p\0q", 3, "p\0r", 3);
    free(b);
    ck_assert_ptr_null(rsv_range_request(NULL, 3, 0, 0, NULL, 0));
    ck_assert_ptr_null(rsv_range_request("a", 1, 0, 0, NULL, 2));
}
END_TEST

START_TEST(test_watch_request)
{
    char *b = rsv_watch_request("user.rpc/", 9, 6, 1);
    ck_assert_str_eq(b, "{\"create_request\":{\"key\":\"dXNlci5ycGMv\",\"range_end\":"
                        "\"dXNlci5ycGMw\",\"start_revision\":\"6\",\"progress_notify\":true}}");
    json_t *root = json_loads(b, 0, NULL);
    ck_assert_ptr_nonnull(root);
    json_t *cr = json_object_get(root, "create_request");
    size_t n;
    char *k = b64_member(cr, "key", &n);
    ck_assert_str_eq(k, "user.rpc/");
    free(k);
    json_decref(root);
    free(b);

    b = rsv_watch_request("svc/", 4, 0, 0);
    ck_assert_str_eq(b, "{\"create_request\":{\"key\":\"c3ZjLw==\",\"range_end\":\"c3ZjMA==\"}}");
    free(b);
    b = rsv_watch_request("", 0, 9223372036854775807LL, 1);
    ck_assert_str_eq(b, "{\"create_request\":{\"key\":\"AA==\",\"range_end\":\"AA==\","
                        "\"start_revision\":\"9223372036854775807\",\"progress_notify\":true}}");
    free(b);
    ck_assert_ptr_null(rsv_watch_request(NULL, 1, 0, 0));
}
END_TEST

START_TEST(test_range_changed_request)
{
    char *b = rsv_range_changed_request("svc/", 4, 42, 11);
    ck_assert_str_eq(b, "{\"key\":\"c3ZjLw==\",\"range_end\":\"c3ZjMA==\",\"revision\":\"42\","
                        "\"min_mod_revision\":\"11\",\"limit\":\"1\",\"keys_only\":true}");
    ck_assert_ptr_null(strstr(b, "count_only")); /* etcd would ignore the filter */
    free(b);
    b = rsv_range_changed_request("svc/", 4, 0, 0); /* no bounds */
    ck_assert_str_eq(b, "{\"key\":\"c3ZjLw==\",\"range_end\":\"c3ZjMA==\",\"limit\":\"1\","
                        "\"keys_only\":true}");
    free(b);
    ck_assert_ptr_null(rsv_range_changed_request(NULL, 1, 0, 0));
    /* The answer to it: "count" is omitted when zero. */
    rsv_range_result r;
    char why[64];
    const char *answer = "{\"header\":{\"revision\":\"42\"},\"count\":\"3\"}";
    ck_assert_int_eq(rsv_range_parse(answer, strlen(answer), &r, why, sizeof(why)), 0);
    ck_assert_int_eq(r.count, 3);
    ck_assert_uint_eq(r.n_kvs, 0);
    rsv_range_result_clear(&r);
    answer = "{\"header\":{\"revision\":\"42\"}}";
    ck_assert_int_eq(rsv_range_parse(answer, strlen(answer), &r, why, sizeof(why)), 0);
    ck_assert_int_eq(r.count, 0);
    rsv_range_result_clear(&r);
}
END_TEST

static Suite *etcdproto_suite(void)
{
    Suite *s = suite_create("etcdproto");
    TCase *b64 = tcase_create("base64");
    tcase_add_test(b64, test_base64_vectors);
    tcase_add_test(b64, test_base64_unpadded);
    tcase_add_test(b64, test_base64_bad);
    tcase_add_test(b64, test_base64_binary_roundtrip);
    suite_add_tcase(s, b64);

    TCase *w = tcase_create("watch");
    tcase_add_test(w, test_watch_whole);
    tcase_add_test(w, test_watch_byte_by_byte);
    tcase_add_test(w, test_watch_random_splits);
    tcase_add_test(w, test_watch_concatenated);
    tcase_add_test(w, test_watch_strings_with_brackets);
    tcase_add_test(w, test_watch_error_shapes);
    tcase_add_test(w, test_watch_binary_key);
    tcase_add_test(w, test_watch_garbage_then_good);
    tcase_add_loop_test(w, test_watch_bad_message, 0,
                        (int)(sizeof(bad_messages) / sizeof(bad_messages[0])));
    tcase_add_test(w, test_watch_int64_bounds);
    tcase_add_test(w, test_watch_cluster_id);
    tcase_add_test(w, test_watch_stop_at_error);
    tcase_add_test(w, test_watch_too_long);
    tcase_add_test(w, test_watch_truncated_at_finish);
    tcase_add_test(w, test_watch_newline_inside);
    tcase_add_test(w, test_watch_callback_stop);
    tcase_add_test(w, test_watch_big_message);
    tcase_add_test(w, test_watch_huge_then_small);
    tcase_add_test(w, test_watch_bad_arguments);
    suite_add_tcase(s, w);

    TCase *r = tcase_create("range_auth_requests");
    tcase_add_test(r, test_range_parse);
    tcase_add_test(r, test_range_empty);
    tcase_add_loop_test(r, test_range_bad, 0, (int)(sizeof(bad_ranges) / sizeof(bad_ranges[0])));
    tcase_add_test(r, test_range_error_reason);
    tcase_add_test(r, test_auth_parse);
    tcase_add_test(r, test_error_text);
    tcase_add_test(r, test_range_request);
    tcase_add_test(r, test_watch_request);
    tcase_add_test(r, test_range_changed_request);
    suite_add_tcase(s, r);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(etcdproto_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
