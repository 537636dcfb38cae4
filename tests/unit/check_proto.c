/* check_proto.c - the line protocol's pure functions (lib/proto.c). */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "proto.h"
#include "wire.h"
#include "resolver.h"

START_TEST(split_tokens)
{
    char line[] = "PICK  user.rpc\tkey=abc  detach=1 ";
    rsv_proto_request req;
    const char *why;
    ck_assert_int_eq(rsv_proto_split(line, &req, &why), 0);
    ck_assert_int_eq(req.argc, 4);
    ck_assert_str_eq(req.argv[0], "PICK");
    ck_assert_str_eq(req.argv[1], "user.rpc");
    ck_assert_str_eq(rsv_proto_option(&req, 2, "key"), "abc");
    ck_assert_str_eq(rsv_proto_option(&req, 2, "detach"), "1");
    ck_assert_ptr_null(rsv_proto_option(&req, 2, "ke"));
    ck_assert_ptr_null(rsv_proto_option(&req, 2, "fail"));
}
END_TEST

START_TEST(split_rejects_bad_input)
{
    rsv_proto_request req;
    const char *why;
    char empty[] = "   ";
    ck_assert_int_eq(rsv_proto_split(empty, &req, &why), RESOLVER_ERR_PROTOCOL);
    ck_assert_str_eq(why, "empty request");
    char bad_escape[] = "PICK a%zz";
    ck_assert_int_eq(rsv_proto_split(bad_escape, &req, &why), RESOLVER_ERR_PROTOCOL);
    char short_escape[] = "PICK a%4";
    ck_assert_int_eq(rsv_proto_split(short_escape, &req, &why), RESOLVER_ERR_PROTOCOL);
    char nul_escape[] = "PICK a%00b";
    ck_assert_int_eq(rsv_proto_split(nul_escape, &req, &why), RESOLVER_ERR_PROTOCOL);
    char control[] = "PICK a\001b";
    ck_assert_int_eq(rsv_proto_split(control, &req, &why), RESOLVER_ERR_PROTOCOL);
    char many[200] = "V";
    for (int i = 0; i < RSV_PROTO_MAX_ARGS; i++)
        strcat(many, " x");
    ck_assert_int_eq(rsv_proto_split(many, &req, &why), RESOLVER_ERR_PROTOCOL);
    ck_assert_str_eq(why, "too many arguments");
}
END_TEST

/* RSV_PROTO_MAX_ARGS counts every token, the verb included
 * (doc/protocol.md, Limits). */
START_TEST(split_counts_the_verb)
{
    rsv_proto_request req;
    const char *why;
    char most[200] = "V";
    for (int i = 0; i < RSV_PROTO_MAX_ARGS - 1; i++)
        strcat(most, " x");
    ck_assert_int_eq(rsv_proto_split(most, &req, &why), 0);
    ck_assert_int_eq(req.argc, RSV_PROTO_MAX_ARGS);
}
END_TEST

static void assert_dumps(double value, const char *want)
{
    json_t *j = json_pack("{s:f}", "v", value);
    char *text = rsv_proto_json_dumps(j, JSON_COMPACT);
    char expected[64];
    snprintf(expected, sizeof(expected), "{\"v\":%s}", want);
    ck_assert_str_eq(text, expected);
    free(text);
    json_decref(j);
}

/* Reals as the daemon computes them (milliseconds / 1000.0, microseconds /
 * 1000.0) print as their short decimal, and large ones keep every digit:
 * 17 digits would print 12.279999999999999, 9 would cut an uptime of 30
 * days to the 10 ms. */
START_TEST(json_reals_short_and_whole)
{
    assert_dumps(12280 / 1000.0, "12.28");
    assert_dumps(0.1 * 3, "0.3");
    assert_dumps(50 / 1000.0, "0.05");
    assert_dumps(2592000123 / 1000.0, "2592000.123");
    assert_dumps(31536000001 / 1000.0, "31536000.001");
}
END_TEST

START_TEST(escape_round_trip)
{
    const char *inputs[] = {"plain", "with space", "100%", "a=b", "tab\there", "\x7f\x01", "é"};
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        char esc[64], line[80];
        size_t need = rsv_proto_escape(inputs[i], esc, sizeof(esc));
        ck_assert_uint_lt(need, sizeof(esc));
        ck_assert_ptr_null(strchr(esc, ' '));
        ck_assert_ptr_null(strchr(esc, '='));
        snprintf(line, sizeof(line), "PICK %s", esc);
        rsv_proto_request req;
        const char *why;
        ck_assert_int_eq(rsv_proto_split(line, &req, &why), 0);
        ck_assert_int_eq(req.argc, 2);
        ck_assert_str_eq(req.argv[1], inputs[i]);
    }
}
END_TEST

START_TEST(escape_truncates_whole_escapes)
{
    char out[5];
    size_t need = rsv_proto_escape("ab cd", out, sizeof(out));
    ck_assert_uint_eq(need, 7);
    ck_assert_str_eq(out, "ab"); /* "%20" does not fit whole after "ab" */
    ck_assert_uint_eq(rsv_proto_escape("xyz", NULL, 0), 3);
}
END_TEST

START_TEST(parse_replies)
{
    rsv_proto_reply r;
    char ok[] = "OK {\"address\":\"127.0.0.1:1\"}";
    ck_assert_int_eq(rsv_proto_parse_reply(ok, &r), 0);
    ck_assert_int_eq(r.kind, RSV_REPLY_OK);
    ck_assert_str_eq(r.payload, "{\"address\":\"127.0.0.1:1\"}");
    char bare_ok[] = "OK";
    ck_assert_int_eq(rsv_proto_parse_reply(bare_ok, &r), 0);
    ck_assert_str_eq(r.payload, "{}");
    char err[] = "ERR none_ready none ready for x: 2 CONNECTING";
    ck_assert_int_eq(rsv_proto_parse_reply(err, &r), 0);
    ck_assert_int_eq(r.kind, RSV_REPLY_ERR);
    ck_assert_str_eq(r.code, "none_ready");
    ck_assert_str_eq(r.payload, "none ready for x: 2 CONNECTING");
    ck_assert_int_eq(rsv_proto_error_from_word(r.code), RESOLVER_ERR_NONE_READY);
    char ev[] = "EVENT {}";
    ck_assert_int_eq(rsv_proto_parse_reply(ev, &r), 0);
    ck_assert_int_eq(r.kind, RSV_REPLY_EVENT);
    char junk[] = "OKAY";
    ck_assert_int_eq(rsv_proto_parse_reply(junk, &r), RESOLVER_ERR_PROTOCOL);
    char empty[] = "";
    ck_assert_int_eq(rsv_proto_parse_reply(empty, &r), RESOLVER_ERR_PROTOCOL);
}
END_TEST

START_TEST(error_words_round_trip)
{
    int errs[] = {RESOLVER_ERR_NO_INSTANCE, RESOLVER_ERR_NONE_READY, RESOLVER_ERR_NOT_FOUND,
                  RESOLVER_ERR_DENIED,      RESOLVER_ERR_LIMIT,      RESOLVER_ERR_INVALID};
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
        ck_assert_int_eq(rsv_proto_error_from_word(resolver_error_word(errs[i])), errs[i]);
    ck_assert_str_eq(resolver_error_word(12345), "internal");
    ck_assert_str_eq(resolver_strerror(RESOLVER_ERR_NONE_READY), "no instance is ready");
    ck_assert_str_eq(resolver_strerror(-1), "unknown error");
}
END_TEST

static Suite *proto_suite(void)
{
    Suite *s = suite_create("proto");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, split_tokens);
    tcase_add_test(tc, split_rejects_bad_input);
    tcase_add_test(tc, split_counts_the_verb);
    tcase_add_test(tc, json_reals_short_and_whole);
    tcase_add_test(tc, escape_round_trip);
    tcase_add_test(tc, escape_truncates_whole_escapes);
    tcase_add_test(tc, parse_replies);
    tcase_add_test(tc, error_words_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(proto_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
