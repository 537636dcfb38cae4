/* check_registry.c - registry value decoders, address parsing, format names. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../lib/config.h"
#include "registrar.h"
#include "registry.h"
#include "resolver.h"

/* Decodes a NUL-terminated value; the reason lands in `why`. */
static int decode(rsv_format f, const char *value, rsv_endpoint *ep, char *why)
{
    return rsv_registry_decode(f, value, strlen(value), ep, why, 128);
}

/* Asserts that `value` is refused with a reason, in the given format. */
static void assert_bad(rsv_format f, const char *value, size_t len)
{
    rsv_endpoint ep;
    char why[128] = "";
    int rc = rsv_registry_decode(f, value, len, &ep, why, sizeof(why));
    ck_assert_msg(rc == RESOLVER_ERR_DECODE, "format %s accepted '%.*s'", rsv_format_name(f),
                  (int)len, value);
    ck_assert_msg(why[0] != '\0', "no reason for '%.*s'", (int)len, value);
}

static void assert_bad_str(rsv_format f, const char *value)
{
    assert_bad(f, value, strlen(value));
}

/* ---- go-zero ----------------------------------------------------------- */

START_TEST(test_gozero_plain)
{
    rsv_endpoint ep;
    char why[128];
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, "10.0.0.1:9001", &ep, why), 0);
    ck_assert_str_eq(ep.host, "10.0.0.1");
    ck_assert_uint_eq(ep.port, 9001);
    ck_assert_str_eq(ep.address, "10.0.0.1:9001");
    ck_assert_uint_eq(ep.weight, 1);
    ck_assert_str_eq(ep.zone, "");
    ck_assert_int_eq(ep.tls, 0);
    ck_assert_int_eq(ep.is_delete, 0);
    ck_assert_int_eq(ep.format, RSV_FORMAT_GOZERO);
}
END_TEST

START_TEST(test_gozero_trim)
{
    rsv_endpoint ep;
    char why[128];
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, " \t10.0.0.1:9001\r\n", &ep, why), 0);
    ck_assert_str_eq(ep.address, "10.0.0.1:9001");
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, "\n10.0.0.2:80\n", &ep, why), 0);
    ck_assert_str_eq(ep.address, "10.0.0.2:80");
    ck_assert_int_eq(ep.format, RSV_FORMAT_GOZERO);
}
END_TEST

START_TEST(test_gozero_not_nul_terminated)
{
    /* The value is a slice of a larger buffer: nothing past len is read. */
    const char buf[] = "10.0.0.1:90019999";
    rsv_endpoint ep;
    char why[128];
    ck_assert_int_eq(rsv_registry_decode(RSV_FORMAT_GOZERO, buf, 13, &ep, why, 128), 0);
    ck_assert_str_eq(ep.address, "10.0.0.1:9001");
}
END_TEST

/* ---- addresses --------------------------------------------------------- */

START_TEST(test_ipv6)
{
    rsv_endpoint ep;
    char why[128];
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, "[::1]:9000", &ep, why), 0);
    ck_assert_str_eq(ep.host, "::1");
    ck_assert_uint_eq(ep.port, 9000);
    ck_assert_str_eq(ep.address, "[::1]:9000");
    /* Canonical form: zeros compressed, lower case. */
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, "[2001:DB8:0:0:0:0:0:1]:443", &ep, why), 0);
    ck_assert_str_eq(ep.host, "2001:db8::1");
    ck_assert_str_eq(ep.address, "[2001:db8::1]:443");
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, "{\"address\":\"[fe80::2]:1\"}", &ep, why), 0);
    ck_assert_str_eq(ep.address, "[fe80::2]:1");
}
END_TEST

START_TEST(test_hostnames)
{
    rsv_endpoint ep;
    char why[128];
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, "user-svc.default.svc.cluster.local:8080", &ep, why),
                     0);
    ck_assert_str_eq(ep.host, "user-svc.default.svc.cluster.local");
    ck_assert_uint_eq(ep.port, 8080);
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, "LocalHost:1", &ep, why), 0);
    ck_assert_str_eq(ep.address, "localhost:1");
    /* Underscores: not RFC 1123, but docker-compose names use them. */
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, "my_service:9000", &ep, why), 0);
    ck_assert_str_eq(ep.address, "my_service:9000");
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, "a.b.:65535", &ep, why), 0);
    ck_assert_str_eq(ep.address, "a.b.:65535");
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, "3com.example:7", &ep, why), 0);

    /* 63-character labels, 253 characters in all: the longest valid name. */
    char name[300];
    memset(name, 'a', 253);
    name[63] = name[127] = name[191] = '.';
    strcpy(name + 253, ":1");
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, name, &ep, why), 0);
    ck_assert_uint_eq(strlen(ep.host), 253);
}
END_TEST

START_TEST(test_port_bounds)
{
    rsv_endpoint ep;
    char why[128];
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, "h:1", &ep, why), 0);
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, "h:65535", &ep, why), 0);
    ck_assert_uint_eq(ep.port, 65535);
    ck_assert_int_eq(decode(RSV_FORMAT_GOZERO, "h:00080", &ep, why), 0);
    ck_assert_str_eq(ep.address, "h:80");
    assert_bad_str(RSV_FORMAT_GOZERO, "h:0");
    assert_bad_str(RSV_FORMAT_GOZERO, "h:65536");
    assert_bad_str(RSV_FORMAT_GOZERO, "h:99999999999999999999999");
    assert_bad_str(RSV_FORMAT_GOZERO, "h:-1");
    assert_bad_str(RSV_FORMAT_GOZERO, "h:+1");
    assert_bad_str(RSV_FORMAT_GOZERO, "h:80a");
    assert_bad_str(RSV_FORMAT_GOZERO, "h:");
}
END_TEST

static const char *const bad_addresses[] = {
    "",
    "   ",
    "10.0.0.1",
    "10.0.0.1:",
    ":9000",
    "::1:9000",
    "[::1]",
    "[::1]9000",
    "[::1:9000",
    "[]:9000",
    "[10.0.0.1]:80",
    "[::g]:80",
    "256.0.0.1:80",
    "10.0.0:80",
    "1.2.3.4.5:80",
    "010.0.0.1:80",
    "12345:80",
    "host name:80",
    "-host:80",
    "host-:80",
    "a..b:80",
    ".a:80",
    "a.b..:80",
    "hôst:80",
    "h\x01:80",
    "h:80\x7f",
    "host:80/path",
    "grpc://10.0.0.1:80",
    "user@host:80",
    "10.0.0.1:80 10.0.0.2:80",
};

START_TEST(test_bad_addresses)
{
    assert_bad_str(RSV_FORMAT_GOZERO, bad_addresses[_i]);
    /* The same addresses inside JSON are refused the same way. */
    char json[256];
    snprintf(json, sizeof(json), "{\"address\":\"%s\"}", bad_addresses[_i]);
    assert_bad_str(RSV_FORMAT_NATIVE, json);
}
END_TEST

START_TEST(test_embedded_nul)
{
    assert_bad(RSV_FORMAT_GOZERO, "10.0.0.1\0:80", 12);
    assert_bad(RSV_FORMAT_GOZERO, "10.0.0.1:80\0", 12);
    assert_bad(RSV_FORMAT_AUTO, "10.0.0.1:8\0", 11);
    /* JSON escapes of NUL and of control characters. */
    assert_bad_str(RSV_FORMAT_NATIVE, "{\"address\":\"10.0.0.1\\u0000:80\"}");
    assert_bad_str(RSV_FORMAT_NATIVE, "{\"address\":\"10.0.0.1:80\\u0000\"}");
    assert_bad_str(RSV_FORMAT_NATIVE, "{\"address\":\"10.0.0.1:80\\n\"}");
    /* A raw NUL inside the JSON text. */
    assert_bad(RSV_FORMAT_AUTO, "{\"address\":\"1.2.3.4:5\"}\0", 24);
}
END_TEST

START_TEST(test_too_long)
{
    char v[1200];
    memset(v, 'a', sizeof(v));
    memcpy(v + sizeof(v) - 3, ":80", 3);
    assert_bad(RSV_FORMAT_GOZERO, v, sizeof(v));
    /* 254 characters: one too many for a host name. */
    char name[300];
    memset(name, 'a', 254);
    for (int i = 50; i < 254; i += 50)
        name[i] = '.';
    strcpy(name + 254, ":80");
    assert_bad_str(RSV_FORMAT_GOZERO, name);
    /* A 64-character label. */
    char label[80];
    memset(label, 'b', 64);
    strcpy(label + 64, ":80");
    assert_bad_str(RSV_FORMAT_GOZERO, label);
}
END_TEST

START_TEST(test_address_parse_direct)
{
    rsv_endpoint ep;
    memset(&ep, 0, sizeof(ep));
    ep.weight = 7;
    char why[64];
    ck_assert_int_eq(rsv_address_parse("[::ffff:10.0.0.1]:5", 19, &ep, why, sizeof(why)), 0);
    ck_assert_str_eq(ep.host, "::ffff:10.0.0.1");
    ck_assert_uint_eq(ep.weight, 7); /* only host/port/address are written */
    /* A failure leaves the endpoint as it was. */
    ck_assert_int_eq(rsv_address_parse("x", 1, &ep, why, sizeof(why)), RESOLVER_ERR_DECODE);
    ck_assert_str_eq(why, "missing port");
    ck_assert_str_eq(ep.address, "[::ffff:10.0.0.1]:5");
    ck_assert_int_eq(rsv_address_parse(NULL, 0, &ep, why, sizeof(why)), RESOLVER_ERR_DECODE);
    /* A tiny or absent reason buffer is fine. */
    ck_assert_int_eq(rsv_address_parse("x", 1, &ep, why, 1), RESOLVER_ERR_DECODE);
    ck_assert_str_eq(why, "");
    ck_assert_int_eq(rsv_address_parse("x", 1, &ep, NULL, 0), RESOLVER_ERR_DECODE);
}
END_TEST

/* ---- etcd naming ------------------------------------------------------- */

START_TEST(test_etcd_naming)
{
    rsv_endpoint ep;
    char why[128];
    ck_assert_int_eq(decode(RSV_FORMAT_ETCD_NAMING,
                            "{\"Op\":0,\"Addr\":\"10.0.0.1:9001\",\"Metadata\":null}", &ep, why),
                     0);
    ck_assert_str_eq(ep.address, "10.0.0.1:9001");
    ck_assert_int_eq(ep.is_delete, 0);
    ck_assert_uint_eq(ep.weight, 1);
    ck_assert_int_eq(ep.format, RSV_FORMAT_ETCD_NAMING);

    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, "{\"Op\":1,\"Addr\":\"10.0.0.1:9001\"}", &ep, why), 0);
    ck_assert_int_eq(ep.is_delete, 1);
    ck_assert_int_eq(ep.format, RSV_FORMAT_ETCD_NAMING);

    /* etcd v3.5's endpoints manager writes no Op at all. */
    ck_assert_int_eq(
        decode(RSV_FORMAT_AUTO, "{\"Addr\":\"[::1]:50051\",\"Metadata\":{\"weight\":3}}", &ep, why),
        0);
    ck_assert_int_eq(ep.is_delete, 0);
    ck_assert_str_eq(ep.address, "[::1]:50051");
    ck_assert_str_eq(ep.metadata->text, "{\"weight\":3}");
    rsv_endpoint_clear(&ep);

    assert_bad_str(RSV_FORMAT_ETCD_NAMING, "{\"Op\":2,\"Addr\":\"10.0.0.1:9001\"}");
    assert_bad_str(RSV_FORMAT_ETCD_NAMING, "{\"Op\":\"0\",\"Addr\":\"10.0.0.1:9001\"}");
    assert_bad_str(RSV_FORMAT_ETCD_NAMING, "{\"Op\":0}");
    assert_bad_str(RSV_FORMAT_ETCD_NAMING, "{\"Addr\":9001}");
    assert_bad_str(RSV_FORMAT_ETCD_NAMING, "{\"Addr\":\"10.0.0.1\"}");
    assert_bad_str(RSV_FORMAT_ETCD_NAMING, "10.0.0.1:9001");
}
END_TEST

/* ---- Kratos ------------------------------------------------------------ */

START_TEST(test_kratos)
{
    rsv_endpoint ep;
    char why[128];
    const char *v = "{\"id\":\"a1\",\"name\":\"user\",\"version\":\"v1\",\"metadata\":{},"
                    "\"endpoints\":[\"http://10.0.0.1:8000\",\"grpc://10.0.0.1:9000\"]}";
    ck_assert_int_eq(decode(RSV_FORMAT_KRATOS, v, &ep, why), 0);
    ck_assert_str_eq(ep.address, "10.0.0.1:9000");
    ck_assert_int_eq(ep.tls, 0);
    ck_assert_int_eq(ep.format, RSV_FORMAT_KRATOS);
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, v, &ep, why), 0);
    ck_assert_int_eq(ep.format, RSV_FORMAT_KRATOS);

    ck_assert_int_eq(decode(RSV_FORMAT_AUTO,
                            "{\"endpoints\":[\"grpcs://svc.example:443\",\"grpc://10.0.0.1:1\"]}",
                            &ep, why),
                     0);
    ck_assert_str_eq(ep.address, "svc.example:443");
    ck_assert_int_eq(ep.tls, 1);

    ck_assert_int_eq(decode(RSV_FORMAT_AUTO,
                            "{\"endpoints\":[\"grpc://10.0.0.2:9000?isSecure=true\"]}", &ep, why),
                     0);
    ck_assert_str_eq(ep.address, "10.0.0.2:9000");
    ck_assert_int_eq(ep.tls, 1);
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO,
                            "{\"endpoints\":[\"grpc://10.0.0.2:9000?a=b&isSecure=false\"]}", &ep,
                            why),
                     0);
    ck_assert_int_eq(ep.tls, 0);
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO,
                            "{\"endpoints\":[\"GRPC://[::1]:9000/x?a=b&isSecure=1#f\"]}", &ep, why),
                     0);
    ck_assert_str_eq(ep.address, "[::1]:9000");
    ck_assert_int_eq(ep.tls, 1);

    /* Kratos' weight is a string in metadata; a bad one is ignored as
     * Kratos does. */
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO,
                            "{\"metadata\":{\"weight\":\"20\"},\"endpoints\":[\"grpc://h:1\"]}",
                            &ep, why),
                     0);
    rsv_endpoint_clear(&ep);
    ck_assert_uint_eq(ep.weight, 20);
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO,
                            "{\"metadata\":{\"weight\":\"x\"},\"endpoints\":[\"grpc://h:1\"]}", &ep,
                            why),
                     0);
    rsv_endpoint_clear(&ep);
    ck_assert_uint_eq(ep.weight, 1);

    assert_bad_str(RSV_FORMAT_KRATOS, "{\"endpoints\":[\"http://10.0.0.1:8000\"]}");
    assert_bad_str(RSV_FORMAT_KRATOS, "{\"endpoints\":[]}");
    assert_bad_str(RSV_FORMAT_KRATOS, "{\"endpoints\":[1,null,{}]}");
    assert_bad_str(RSV_FORMAT_KRATOS, "{\"endpoints\":\"grpc://10.0.0.1:9000\"}");
    assert_bad_str(RSV_FORMAT_KRATOS, "{\"name\":\"user\"}");
    assert_bad_str(RSV_FORMAT_KRATOS, "{\"endpoints\":[\"grpc://\"]}");
    assert_bad_str(RSV_FORMAT_KRATOS, "{\"endpoints\":[\"grpc://10.0.0.1\"]}");
    assert_bad_str(RSV_FORMAT_KRATOS, "{\"endpoints\":[\"grpc://u@10.0.0.1:1\"]}");
    assert_bad_str(RSV_FORMAT_KRATOS, "{\"endpoints\":[\"grpc:/10.0.0.1:1\"]}");
    char why2[128];
    ck_assert_int_eq(decode(RSV_FORMAT_KRATOS, "{\"endpoints\":[\"http://h:1\"]}", &ep, why2),
                     RESOLVER_ERR_DECODE);
    ck_assert_str_eq(why2, "no grpc:// endpoint");
}
END_TEST

/* ---- Kitex ------------------------------------------------------------- */

START_TEST(test_kitex)
{
    rsv_endpoint ep;
    char why[128];
    const char *v = "{\"network\":\"tcp\",\"address\":\"10.0.0.1:9001\",\"weight\":10,\"tags\":{}}";
    ck_assert_int_eq(decode(RSV_FORMAT_KITEX, v, &ep, why), 0);
    ck_assert_str_eq(ep.address, "10.0.0.1:9001");
    ck_assert_uint_eq(ep.weight, 10);
    ck_assert_int_eq(ep.format, RSV_FORMAT_KITEX);
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, v, &ep, why), 0);
    ck_assert_int_eq(ep.format, RSV_FORMAT_KITEX);

    /* network may be left out when the format is named. */
    ck_assert_int_eq(decode(RSV_FORMAT_KITEX, "{\"address\":\"h:2\"}", &ep, why), 0);
    ck_assert_uint_eq(ep.weight, 1);

    assert_bad_str(RSV_FORMAT_KITEX, "{\"network\":\"unix\",\"address\":\"/tmp/s:1\"}");
    assert_bad_str(RSV_FORMAT_KITEX, "{\"network\":\"udp\",\"address\":\"h:1\"}");
    assert_bad_str(RSV_FORMAT_KITEX, "{\"network\":6,\"address\":\"h:1\"}");
    assert_bad_str(RSV_FORMAT_KITEX, "{\"network\":\"tcp\\u0000x\",\"address\":\"h:1\"}");
    assert_bad_str(RSV_FORMAT_KITEX, "{\"network\":\"tcp\"}");
    assert_bad_str(RSV_FORMAT_KITEX, "{\"network\":\"tcp\",\"address\":\"h:1\",\"weight\":-1}");
    char why2[128];
    ck_assert_int_eq(
        decode(RSV_FORMAT_AUTO, "{\"network\":\"udp\",\"address\":\"h:1\"}", &ep, why2),
        RESOLVER_ERR_DECODE);
    ck_assert_str_eq(why2, "network must be tcp");
}
END_TEST

/* ---- native ------------------------------------------------------------ */

START_TEST(test_native)
{
    rsv_endpoint ep;
    char why[128];
    const char *v = "{\"address\":\"10.0.0.1:9001\",\"weight\":10,\"zone\":\"a\","
                    "\"metadata\":{\"k\":\"v\"}}";
    ck_assert_int_eq(decode(RSV_FORMAT_NATIVE, v, &ep, why), 0);
    ck_assert_str_eq(ep.address, "10.0.0.1:9001");
    ck_assert_uint_eq(ep.weight, 10);
    ck_assert_str_eq(ep.zone, "a");
    ck_assert_int_eq(ep.format, RSV_FORMAT_NATIVE);
    rsv_endpoint_clear(&ep);
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, v, &ep, why), 0);
    ck_assert_int_eq(ep.format, RSV_FORMAT_NATIVE);
    rsv_endpoint_clear(&ep);

    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, "  {\"address\":\"h:3\",\"zone\":null}  ", &ep, why),
                     0);
    ck_assert_str_eq(ep.zone, "");

    char zone[200];
    snprintf(zone, sizeof(zone), "{\"address\":\"h:3\",\"zone\":\"%064d\"}", 0);
    assert_bad_str(RSV_FORMAT_NATIVE, zone);
    assert_bad_str(RSV_FORMAT_NATIVE, "{\"address\":\"h:3\",\"zone\":7}");
    assert_bad_str(RSV_FORMAT_NATIVE, "{\"address\":\"h:3\",\"zone\":\"a\\nb\"}");
    assert_bad_str(RSV_FORMAT_NATIVE, "{\"weight\":3}");
    assert_bad_str(RSV_FORMAT_NATIVE, "{\"address\":null}");
    assert_bad_str(RSV_FORMAT_NATIVE, "{\"address\":[\"h:3\"]}");
}
END_TEST

/* ---- weights ----------------------------------------------------------- */

START_TEST(test_weights)
{
    rsv_endpoint ep;
    char why[128];
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, "{\"address\":\"h:1\",\"weight\":0}", &ep, why), 0);
    ck_assert_uint_eq(ep.weight, 1);
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, "{\"address\":\"h:1\",\"weight\":null}", &ep, why), 0);
    ck_assert_uint_eq(ep.weight, 1);
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, "{\"address\":\"h:1\",\"weight\":1000000}", &ep, why),
                     0);
    ck_assert_uint_eq(ep.weight, 1000000);

    static const char *const bad[] = {"-1",
                                      "1000001",
                                      "1.5",
                                      "\"10\"",
                                      "true",
                                      "[]",
                                      "{}",
                                      "1e3",
                                      "99999999999999999999",
                                      "-9223372036854775808"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char v[128];
        snprintf(v, sizeof(v), "{\"address\":\"h:1\",\"weight\":%s}", bad[i]);
        assert_bad_str(RSV_FORMAT_NATIVE, v);
        snprintf(v, sizeof(v), "{\"network\":\"tcp\",\"address\":\"h:1\",\"weight\":%s}", bad[i]);
        assert_bad_str(RSV_FORMAT_AUTO, v);
    }
    char why2[128];
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, "{\"address\":\"h:1\",\"weight\":-3}", &ep, why2),
                     RESOLVER_ERR_DECODE);
    ck_assert_str_eq(why2, "weight must be a positive integer");
}
END_TEST

/* ---- auto detection ---------------------------------------------------- */

START_TEST(test_auto_detection)
{
    static const struct {
        const char *value;
        rsv_format format;
    } cases[] = {
        {"10.0.0.1:9001", RSV_FORMAT_GOZERO},
        {"{\"Op\":0,\"Addr\":\"10.0.0.1:9001\",\"Metadata\":null}", RSV_FORMAT_ETCD_NAMING},
        {"{\"endpoints\":[\"grpc://10.0.0.1:9000\"]}", RSV_FORMAT_KRATOS},
        {"{\"network\":\"tcp\",\"address\":\"10.0.0.1:9001\"}", RSV_FORMAT_KITEX},
        {"{\"address\":\"10.0.0.1:9001\",\"weight\":2}", RSV_FORMAT_NATIVE},
        /* Kitex and native both have address and weight: network decides. */
        {"{\"address\":\"10.0.0.1:9001\",\"weight\":2,\"tags\":{}}", RSV_FORMAT_NATIVE},
        {"{\"address\":\"10.0.0.1:9001\",\"network\":\"tcp\",\"zone\":\"z\"}", RSV_FORMAT_KITEX},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rsv_endpoint ep;
        char why[128];
        ck_assert_msg(decode(RSV_FORMAT_AUTO, cases[i].value, &ep, why) == 0, "%s: %s",
                      cases[i].value, why);
        ck_assert_int_eq(ep.format, cases[i].format);
        ck_assert_uint_eq(ep.port, strstr(cases[i].value, "9000") ? 9000 : 9001);
    }
}
END_TEST

START_TEST(test_auto_bad)
{
    static const char *const bad[] = {
        "",
        "{",
        "{}",
        "{\"id\":\"x\"}",
        "{\"address\":",
        "{\"address\":\"h:1\"} trailing",
        "[\"10.0.0.1:9001\"]",
        "\"10.0.0.1:9001\"",
        "null",
        "{\"address\":\"h:1\",\"address\":\"h:2\"",
        "{\"endpoints\":[\"http://h:1\"]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_bad_str(RSV_FORMAT_AUTO, bad[i]);
    rsv_endpoint ep;
    char why[128];
    ck_assert_int_eq(decode(RSV_FORMAT_AUTO, "{\"x\":", &ep, why), RESOLVER_ERR_DECODE);
    ck_assert_msg(strncmp(why, "not JSON: ", 10) == 0, "why = %s", why);
}
END_TEST

START_TEST(test_json_formats_reject_plain)
{
    static const rsv_format json_formats[] = {RSV_FORMAT_ETCD_NAMING, RSV_FORMAT_KRATOS,
                                              RSV_FORMAT_KITEX, RSV_FORMAT_NATIVE};
    for (size_t i = 0; i < 4; i++) {
        assert_bad_str(json_formats[i], "10.0.0.1:9001");
        assert_bad_str(json_formats[i], "");
        assert_bad_str(json_formats[i], "[]");
    }
    assert_bad_str(RSV_FORMAT_GOZERO, "{\"address\":\"10.0.0.1:9001\"}");
}
END_TEST

START_TEST(test_bad_arguments)
{
    rsv_endpoint ep;
    char why[32];
    ck_assert_int_eq(rsv_registry_decode(RSV_FORMAT_AUTO, NULL, 0, &ep, why, sizeof(why)),
                     RESOLVER_ERR_DECODE);
    ck_assert_int_eq(rsv_registry_decode(RSV_FORMAT_AUTO, "h:1", 3, NULL, why, sizeof(why)),
                     RESOLVER_ERR_DECODE);
    ck_assert_int_eq(rsv_registry_decode((rsv_format)42, "{}", 2, &ep, why, sizeof(why)),
                     RESOLVER_ERR_DECODE);
    ck_assert_str_ne(why, "");
    /* A reason longer than the buffer is cut, not overflowed. */
    char small[4] = "xxx";
    ck_assert_int_eq(rsv_registry_decode(RSV_FORMAT_AUTO, "h", 1, &ep, small, 4),
                     RESOLVER_ERR_DECODE);
    ck_assert_uint_eq(strlen(small), 3);
}
END_TEST

/* Every prefix of valid values is either decoded or refused with a reason
 * (this is where reading past len would show, under valgrind/ASan). */
START_TEST(test_prefixes_never_crash)
{
    static const char *const values[] = {
        "{\"Op\":1,\"Addr\":\"[2001:db8::1]:9001\",\"Metadata\":null}",
        "{\"endpoints\":[\"grpcs://svc.example:443?isSecure=true\"]}",
        "{\"network\":\"tcp\",\"address\":\"10.0.0.1:9001\",\"weight\":10,\"tags\":{}}",
        "{\"address\":\"10.0.0.1:9001\",\"weight\":10,\"zone\":\"a\",\"metadata\":{}}",
        "[fe80::1]:65535",
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        size_t n = strlen(values[i]);
        for (size_t len = 0; len <= n; len++) {
            char *copy = malloc(len ? len : 1);
            memcpy(copy, values[i], len);
            for (int f = RSV_FORMAT_AUTO; f <= RSV_FORMAT_NATIVE; f++) {
                rsv_endpoint ep;
                char why[128] = "";
                int rc = rsv_registry_decode((rsv_format)f, copy, len, &ep, why, 128);
                ck_assert(rc == 0 || (rc == RESOLVER_ERR_DECODE && why[0]));
                if (rc == 0)
                    rsv_endpoint_clear(&ep);
            }
            free(copy);
        }
    }
}
END_TEST

/* ---- metadata ---------------------------------------------------------- */

/* The text of the metadata `value` decodes to in `f` (NULL: none); the
 * endpoint's reference is dropped after the copy. */
static char *metadata_of(rsv_format f, const char *value)
{
    rsv_endpoint ep;
    char why[128];
    ck_assert_msg(decode(f, value, &ep, why) == 0, "%s: %s", value, why);
    rsv_metadata *m = atomic_load(&ep.metadata);
    char *text = m ? strdup(m->text) : NULL;
    rsv_endpoint_clear(&ep);
    ck_assert_ptr_null(atomic_load(&ep.metadata));
    return text;
}

static void assert_metadata(rsv_format f, const char *value, const char *want)
{
    char *got = metadata_of(f, value);
    if (want)
        ck_assert_msg(got && strcmp(got, want) == 0, "%s: metadata %s, want %s", value,
                      got ? got : "(none)", want);
    else
        ck_assert_msg(!got, "%s: metadata %s, want none", value, got);
    free(got);
}

START_TEST(test_metadata)
{
    /* Each format's own member, compact with sorted keys. */
    assert_metadata(RSV_FORMAT_AUTO,
                    "{\"Op\":0,\"Addr\":\"10.0.0.1:1\",\"Metadata\":{\"z\":\"1\", \"a\": [1, 2]}}",
                    "{\"a\":[1,2],\"z\":\"1\"}");
    assert_metadata(RSV_FORMAT_AUTO,
                    "{\"metadata\":{\"version\":\"v2\",\"weight\":\"4\"},"
                    "\"endpoints\":[\"grpc://h:1\"]}",
                    "{\"version\":\"v2\",\"weight\":\"4\"}");
    assert_metadata(RSV_FORMAT_AUTO,
                    "{\"network\":\"tcp\",\"address\":\"h:1\",\"tags\":{\"env\":\"prod\"}}",
                    "{\"env\":\"prod\"}");
    assert_metadata(RSV_FORMAT_NATIVE, "{\"address\":\"h:1\",\"metadata\":{\"k\":\"v\"}}",
                    "{\"k\":\"v\"}");
    /* Only the format's member counts: Kitex has no "metadata", native no "tags". */
    assert_metadata(RSV_FORMAT_KITEX, "{\"address\":\"h:1\",\"metadata\":{\"k\":\"v\"}}", NULL);
    assert_metadata(RSV_FORMAT_NATIVE, "{\"address\":\"h:1\",\"tags\":{\"k\":\"v\"}}", NULL);
    /* None: go-zero, absent, null, empty, not an object. */
    assert_metadata(RSV_FORMAT_AUTO, "10.0.0.1:1", NULL);
    assert_metadata(RSV_FORMAT_AUTO, "{\"address\":\"h:1\"}", NULL);
    assert_metadata(RSV_FORMAT_AUTO, "{\"Addr\":\"h:1\",\"Metadata\":null}", NULL);
    assert_metadata(RSV_FORMAT_AUTO, "{\"address\":\"h:1\",\"metadata\":{}}", NULL);
    assert_metadata(RSV_FORMAT_AUTO, "{\"Addr\":\"h:1\",\"Metadata\":\"text\"}", NULL);
    assert_metadata(RSV_FORMAT_AUTO, "{\"address\":\"h:1\",\"metadata\":[1]}", NULL);

    /* Too long: the instance is kept, without it. */
    size_t big = RSV_METADATA_MAX + 100;
    char *v = malloc(big + 64);
    int n = snprintf(v, big + 64, "{\"address\":\"h:1\",\"metadata\":{\"k\":\"");
    memset(v + n, 'x', big);
    strcpy(v + n + big, "\"}}");
    assert_metadata(RSV_FORMAT_NATIVE, v, NULL);
    /* Just fits: {"k":"xx..."} of RSV_METADATA_MAX bytes. */
    strcpy(v + n + RSV_METADATA_MAX - 8, "\"}}");
    char *got = metadata_of(RSV_FORMAT_NATIVE, v);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(strlen(got), RSV_METADATA_MAX);
    free(got);
    free(v);

    /* A refused value makes none. */
    rsv_endpoint ep;
    char why[128];
    ck_assert_int_eq(decode(RSV_FORMAT_NATIVE,
                            "{\"address\":\"h:1\",\"weight\":-1,\"metadata\":{\"k\":\"v\"}}", &ep,
                            why),
                     RESOLVER_ERR_DECODE);
    ck_assert_ptr_null(atomic_load(&ep.metadata));

    /* Shared by reference count; equality by text. */
    rsv_metadata *a = rsv_metadata_new("{\"k\":1}", 7), *b = rsv_metadata_new("{\"k\":1}", 7);
    ck_assert(rsv_metadata_equal(a, b) && rsv_metadata_equal(NULL, NULL));
    ck_assert(!rsv_metadata_equal(a, NULL) && !rsv_metadata_equal(NULL, b));
    ck_assert_ptr_eq(rsv_metadata_ref(a), a);
    rsv_metadata_unref(a);
    ck_assert_str_eq(a->text, "{\"k\":1}"); /* still one reference */
    rsv_metadata_unref(a);
    rsv_metadata_unref_void(b);
    rsv_metadata_unref(NULL);
    rsv_endpoint_clear(NULL);
}
END_TEST

/* ---- format names ------------------------------------------------------ */

START_TEST(test_format_names)
{
    static const char *const names[] = {"auto",   "gozero", "etcd_naming",
                                        "kratos", "kitex",  "native"};
    for (int i = 0; i < 6; i++) {
        rsv_format f;
        ck_assert_str_eq(rsv_format_name((rsv_format)i), names[i]);
        ck_assert_int_eq(rsv_format_parse(names[i], &f), 0);
        ck_assert_int_eq(f, i);
    }
    rsv_format f = RSV_FORMAT_AUTO;
    ck_assert_int_eq(rsv_format_parse("go-zero", &f), 0);
    ck_assert_int_eq(f, RSV_FORMAT_GOZERO);
    ck_assert_int_eq(rsv_format_parse("nacos", &f), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(rsv_format_parse("", &f), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(rsv_format_parse(NULL, &f), RESOLVER_ERR_INVALID);
    ck_assert_str_eq(rsv_format_name((rsv_format)99), "unknown");
    ck_assert_str_eq(rsv_format_name((rsv_format)-1), "unknown");
}
END_TEST

/* ---- what the registrar writes decodes back (issue 14) ---------------- */

typedef struct {
    const char *format, *address, *zone, *metadata;
    uint32_t weight;
    const char *key, *value;
} written_case;

static const written_case written[] = {
    {"gozero", "10.0.0.1:8080", NULL, NULL, 0, "svc/7587", "10.0.0.1:8080"},
    {"gozero", "[::1]:9", NULL, NULL, 0, "svc/7587", "[::1]:9"},
    {"etcd_naming", "10.0.0.1:8080", NULL, NULL, 0, "svc/10.0.0.1:8080",
     "{\"Op\":0,\"Addr\":\"10.0.0.1:8080\",\"Metadata\":null}"},
    {"etcd_naming", "10.0.0.1:8080", NULL, "{\"v\":\"1\"}", 0, "svc/10.0.0.1:8080",
     "{\"Op\":0,\"Addr\":\"10.0.0.1:8080\",\"Metadata\":{\"v\":\"1\"}}"},
    {"kratos", "10.0.0.1:8080", NULL, NULL, 5, "/microservices/svc/10.0.0.1:8080",
     "{\"id\":\"10.0.0.1:8080\",\"name\":\"svc\",\"version\":\"\",\"metadata\":{\"weight\":"
     "\"5\"},\"endpoints\":[\"grpc://10.0.0.1:8080\"]}"},
    {"kratos", "[fd00::1]:9", NULL, NULL, 0, "/microservices/svc/[fd00::1]:9",
     "{\"id\":\"[fd00::1]:9\",\"name\":\"svc\",\"version\":\"\",\"metadata\":{},"
     "\"endpoints\":[\"grpc://[fd00::1]:9\"]}"},
    {"kitex", "10.0.0.1:8080", NULL, "{\"env\":\"prod\"}", 3,
     "kitex/registry-etcd/svc/10.0.0.1:8080",
     "{\"network\":\"tcp\",\"address\":\"10.0.0.1:8080\",\"weight\":3,\"tags\":{\"env\":"
     "\"prod\"}}"},
    {"native", "10.0.0.1:8080", "z1", "{\"a\":\"b\"}", 2, "svc/10.0.0.1:8080",
     "{\"address\":\"10.0.0.1:8080\",\"weight\":2,\"zone\":\"z1\",\"metadata\":{\"a\":\"b\"}}"},
    {"native", "host.example:1", NULL, NULL, 0, "svc/host.example:1",
     "{\"address\":\"host.example:1\",\"weight\":1}"},
};

START_TEST(test_written_decodes_back)
{
    const written_case *w = &written[_i];
    rsv_registration_config spec;
    char why[256], *key, *value;
    ck_assert_int_eq(rsv_registration_build(&spec, "svc", w->address, w->format, 0, w->weight,
                                            w->zone, w->metadata, NULL, why, sizeof(why)),
                     0);
    ck_assert_int_eq(rsv_registration_render(&spec, "svc/", 7587, &key, &value), 0);
    ck_assert_str_eq(key, w->key);
    ck_assert_str_eq(value, w->value);
    /* Our own reader, in the format and detecting it, sees the same instance. */
    for (int detect = 0; detect < 2; detect++) {
        rsv_endpoint ep;
        ck_assert_int_eq(rsv_registry_decode(detect ? RSV_FORMAT_AUTO : spec.format, value,
                                             strlen(value), &ep, why, sizeof(why)),
                         0);
        ck_assert_int_eq(ep.format, spec.format);
        ck_assert_str_eq(ep.address, spec.address);
        ck_assert_uint_eq(ep.weight,
                          spec.format == RSV_FORMAT_GOZERO || spec.format == RSV_FORMAT_ETCD_NAMING
                              ? 1
                              : spec.weight);
        ck_assert_str_eq(ep.zone, spec.format == RSV_FORMAT_NATIVE ? spec.zone : "");
        ck_assert_int_eq(ep.is_delete, 0);
        /* The metadata given, as the registry holds it (Kratos keeps the
         * weight there too). */
        rsv_metadata *m = atomic_load(&ep.metadata);
        if (spec.format == RSV_FORMAT_KRATOS && w->weight > 1)
            ck_assert_str_eq(m->text, "{\"weight\":\"5\"}");
        else if (w->metadata)
            ck_assert_str_eq(m->text, w->metadata);
        else
            ck_assert_ptr_null(m);
        rsv_endpoint_clear(&ep);
    }
    free(key);
    free(value);
    rsv_registration_clear(&spec);
}
END_TEST

START_TEST(test_written_key_override)
{
    rsv_registration_config spec;
    char why[256], *key, *value;
    ck_assert_int_eq(rsv_registration_build(&spec, "svc", "10.0.0.1:1", "kitex", 0, 0, NULL, NULL,
                                            "my/own/key", why, sizeof(why)),
                     0);
    ck_assert_int_eq(rsv_registration_render(&spec, "svc/", 1, &key, &value), 0);
    ck_assert_str_eq(key, "my/own/key");
    free(key);
    free(value);
    rsv_registration_clear(&spec);
}
END_TEST

static Suite *registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("formats");
    tcase_add_test(tc, test_gozero_plain);
    tcase_add_test(tc, test_gozero_trim);
    tcase_add_test(tc, test_gozero_not_nul_terminated);
    tcase_add_test(tc, test_etcd_naming);
    tcase_add_test(tc, test_kratos);
    tcase_add_test(tc, test_kitex);
    tcase_add_test(tc, test_native);
    tcase_add_test(tc, test_weights);
    tcase_add_test(tc, test_auto_detection);
    tcase_add_test(tc, test_auto_bad);
    tcase_add_test(tc, test_json_formats_reject_plain);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_prefixes_never_crash);
    tcase_add_test(tc, test_metadata);
    tcase_add_test(tc, test_format_names);
    suite_add_tcase(s, tc);

    TCase *addr = tcase_create("addresses");
    tcase_add_test(addr, test_ipv6);
    tcase_add_test(addr, test_hostnames);
    tcase_add_test(addr, test_port_bounds);
    tcase_add_loop_test(addr, test_bad_addresses, 0,
                        (int)(sizeof(bad_addresses) / sizeof(bad_addresses[0])));
    tcase_add_test(addr, test_embedded_nul);
    tcase_add_test(addr, test_too_long);
    tcase_add_test(addr, test_address_parse_direct);
    suite_add_tcase(s, addr);

    TCase *wr = tcase_create("written");
    tcase_add_loop_test(wr, test_written_decodes_back, 0,
                        (int)(sizeof(written) / sizeof(written[0])));
    tcase_add_test(wr, test_written_key_override);
    suite_add_tcase(s, wr);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(registry_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
