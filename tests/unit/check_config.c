/* check_config.c - the JSON configuration: defaults, inheritance, every
 * kind of bad input, endpoints, and the effective config round trip. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

/* By path: a stale autoconf config.h in a build tree must not shadow it. */
#include "../../lib/config.h"

/* The configurations below are written with ' for " to stay readable. */
static char *dq(const char *s)
{
    char *copy = strdup(s);
    ck_assert_ptr_nonnull(copy);
    for (char *p = copy; *p; p++)
        if (*p == '\'')
            *p = '"';
    return copy;
}

static resolver_config *load_ok(const char *text)
{
    char err[512] = "", *json = dq(text);
    resolver_config *cfg = NULL;
    int rc = resolver_config_load_string(json, &cfg, err, sizeof(err));
    ck_assert_msg(rc == 0, "load failed (%d): %s\n%s", rc, err, json);
    ck_assert_ptr_nonnull(cfg);
    free(json);
    return cfg;
}

/* Loads text that must be rejected with a message containing `want`. */
static void load_bad(const char *text, const char *want)
{
    char err[512] = "", *json = dq(text), *expect = dq(want);
    resolver_config *cfg = (resolver_config *)&err; /* must be reset to NULL */
    int rc = resolver_config_load_string(json, &cfg, err, sizeof(err));
    ck_assert_msg(rc == RESOLVER_ERR_CONFIG, "%s: rc %d, err \"%s\"", json, rc, err);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(err, expect), "%s:\n  got  \"%s\"\n  want \"%s\"", json, err, expect);
    free(json);
    free(expect);
}

static void assert_default_options(const rsv_service_options *o)
{
    ck_assert_int_eq(o->format, RSV_FORMAT_AUTO);
    ck_assert_int_eq(o->policy, RSV_POLICY_ROUND_ROBIN);
    ck_assert_int_eq(o->protocol, RSV_PROTOCOL_H2C);
    ck_assert_uint_eq(o->keepalive_time_ms, 30000);
    ck_assert_uint_eq(o->keepalive_timeout_ms, 10000);
    ck_assert_uint_eq(o->connect_timeout_ms, 20000);
    ck_assert_uint_eq(o->backoff.initial_ms, 1000);
    ck_assert_double_eq(o->backoff.multiplier, 1.6);
    ck_assert_double_eq(o->backoff.jitter, 0.2);
    ck_assert_uint_eq(o->backoff.max_ms, 120000);
    ck_assert_uint_eq(o->drain_timeout_ms, 30000);
    ck_assert_uint_eq(o->max_connection_age_ms, 0);
    ck_assert_uint_eq(o->ticket_timeout_ms, 60000);
    ck_assert_uint_eq(o->max_outstanding, 0);
    ck_assert_ptr_null(o->health_grpc_service);
    ck_assert_uint_eq(o->self_preservation_percent, 50);
    ck_assert_uint_eq(o->self_preservation_max_ms, 300000);
    ck_assert_uint_eq(o->latency_decay_ms, 10000);
}

static void assert_defaults(const resolver_config *cfg)
{
    ck_assert_uint_eq(cfg->etcd.n_endpoints, 1);
    ck_assert_str_eq(cfg->etcd.endpoints[0], "http://127.0.0.1:2379");
    ck_assert_str_eq(cfg->etcd.username, "");
    ck_assert_str_eq(cfg->etcd.password_file, "");
    ck_assert_str_eq(cfg->etcd.ca_file, "");
    ck_assert_str_eq(cfg->etcd.cert_file, "");
    ck_assert_str_eq(cfg->etcd.key_file, "");
    ck_assert_uint_eq(cfg->etcd.dial_timeout_ms, 2000);
    ck_assert_str_eq(cfg->socket.path, "/run/resolverd/resolverd.sock");
    ck_assert_uint_eq(cfg->socket.mode, 0660);
    ck_assert_str_eq(cfg->socket.group, "");
    ck_assert_str_eq(cfg->socket.admin_group, "");
    ck_assert_uint_eq(cfg->socket.max_detached_tickets, 10000);
    ck_assert_str_eq(cfg->metrics.listen, "");
    ck_assert_str_eq(cfg->zone, "");
    ck_assert_str_eq(cfg->cache_file, "");
    ck_assert_uint_eq(cfg->on_demand_services_max, 256);
    assert_default_options(&cfg->defaults);
    ck_assert_uint_eq(cfg->n_services, 0);
}

/* A configuration in the layout of the README's block (an earlier form of it). */
static const char product_example[] =
    "{\n"
    "  \"etcd\":     { \"endpoints\": [\"http://127.0.0.1:2379\"], \"username\": \"\", "
    "\"password_file\": \"\",\n"
    "                \"ca_file\": \"\", \"cert_file\": \"\", \"key_file\": \"\", "
    "\"dial_timeout_ms\": 2000 },\n"
    "  \"socket\":   { \"path\": \"/run/resolverd/resolverd.sock\", \"mode\": \"0660\", "
    "\"group\": \"\", \"admin_group\": \"\" },\n"
    "  \"metrics\":  { \"listen\": \"\" },\n"
    "  \"zone\": \"\", \"cache_file\": \"\", \"on_demand_services_max\": 256,\n"
    "  \"defaults\": { \"format\": \"auto\", \"policy\": \"round_robin\", \"protocol\": "
    "\"h2c\",\n"
    "                \"keepalive_time_ms\": 30000, \"keepalive_timeout_ms\": 10000,\n"
    "                \"connect_timeout_ms\": 20000,\n"
    "                \"backoff\": { \"initial_ms\": 1000, \"multiplier\": 1.6, \"jitter\": 0.2, "
    "\"max_ms\": 120000 },\n"
    "                \"drain_timeout_ms\": 30000, \"max_connection_age_ms\": 0,\n"
    "                \"ticket_timeout_ms\": 60000, \"max_outstanding\": 0,\n"
    "                \"health_check\": { \"grpc_service\": null } },\n"
    "  \"services\": [ { \"name\": \"user.rpc\", \"prefix\": \"user.rpc/\", \"policy\": "
    "\"least_request\" } ]\n"
    "}\n";

/* Services listed before the defaults they inherit; every option set. */
static const char overrides[] =
    "{'services': ["
    "  {'name': 'user.rpc', 'policy': 'least_request', 'backoff': {'max_ms': 60000},"
    "   'health_check': {'grpc_service': null}},"
    "  {'name': 'order.rpc', 'prefix': '/microservices/order/', 'format': 'kratos',"
    "   'policy': 'ring_hash', 'protocol': 'h2', 'keepalive_time_ms': 5000,"
    "   'keepalive_timeout_ms': 2000, 'connect_timeout_ms': 3000,"
    "   'backoff': {'initial_ms': 100, 'multiplier': 2, 'jitter': 0, 'max_ms': 5000},"
    "   'drain_timeout_ms': 1000, 'max_connection_age_ms': 600000, 'ticket_timeout_ms': 9000,"
    "   'max_outstanding': 100, 'health_check': {'grpc_service': 'order.v1.Order'}},"
    "  {'name': 'pay', 'health_check': {}}"
    " ],"
    " 'defaults': {'policy': 'random', 'protocol': 'tcp', 'keepalive_time_ms': 10,"
    "  'backoff': {'initial_ms': 500, 'jitter': 1}, 'max_outstanding': 7,"
    "  'health_check': {'grpc_service': ''}},"
    " 'etcd': {'endpoints': ['https://e1:2379', 'https://[::1]:2379/', 'http://E3'],"
    "  'username': 'resolver', 'password_file': '/etc/resolverd/etcd.pass',"
    "  'ca_file': '/ca.pem', 'cert_file': '/c.pem', 'key_file': '/k.pem',"
    "  'dial_timeout_ms': 500},"
    " 'socket': {'path': '/tmp/r.sock', 'mode': 384, 'group': 'app', 'admin_group': 'ops'},"
    " 'metrics': {'listen': ':9464'}, 'zone': 'eu-1a', 'cache_file': '/var/cache/r.json',"
    " 'on_demand_services_max': 0}";

/* ---- loading ---------------------------------------------------------- */

START_TEST(test_empty_object_is_all_defaults)
{
    resolver_config *cfg = load_ok("{}");
    assert_defaults(cfg);
    resolver_config_free(cfg);
    cfg = load_ok("{'etcd': {}, 'socket': {}, 'metrics': {}, 'defaults': {'backoff': {},"
                  " 'health_check': {}}, 'services': []}");
    assert_defaults(cfg);
    ck_assert_ptr_null(rsv_config_find_service(cfg, "user.rpc"));
    resolver_config_free(cfg);
}
END_TEST

START_TEST(test_new_default_equals_empty_object)
{
    resolver_config *a = NULL, *b = load_ok("{}");
    ck_assert_int_eq(resolver_config_new_default(&a), 0);
    assert_defaults(a);
    ck_assert(rsv_config_equal(a, b));
    ck_assert_int_eq(resolver_config_new_default(NULL), RESOLVER_ERR_INVALID);
    resolver_config_free(a);
    resolver_config_free(b);
    resolver_config_free(NULL);
}
END_TEST

START_TEST(test_product_example)
{
    char err[256];
    resolver_config *cfg = NULL;
    ck_assert_int_eq(resolver_config_load_string(product_example, &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(err, "");
    /* Every value in the example is a default, except for the service. */
    ck_assert_uint_eq(cfg->n_services, 1);
    const rsv_service_config *s = rsv_config_find_service(cfg, "user.rpc");
    ck_assert_ptr_eq(s, &cfg->services[0]);
    ck_assert_str_eq(s->name, "user.rpc");
    ck_assert_str_eq(s->prefix, "user.rpc/");
    ck_assert_int_eq(s->options.policy, RSV_POLICY_LEAST_REQUEST);
    rsv_service_options o;
    ck_assert_int_eq(rsv_service_options_copy(&o, &s->options), 0);
    o.policy = RSV_POLICY_ROUND_ROBIN;
    assert_default_options(&o);
    rsv_service_options_clear(&o);
    cfg->n_services = 0; /* the rest must be exactly the defaults */
    assert_defaults(cfg);
    cfg->n_services = 1;
    resolver_config_free(cfg);
}
END_TEST

START_TEST(test_overrides_and_inheritance)
{
    resolver_config *cfg = load_ok(overrides);
    /* etcd: trailing '/' dropped, scheme case kept */
    ck_assert_uint_eq(cfg->etcd.n_endpoints, 3);
    ck_assert_str_eq(cfg->etcd.endpoints[0], "https://e1:2379");
    ck_assert_str_eq(cfg->etcd.endpoints[1], "https://[::1]:2379");
    ck_assert_str_eq(cfg->etcd.endpoints[2], "http://E3");
    ck_assert_str_eq(cfg->etcd.username, "resolver");
    ck_assert_str_eq(cfg->etcd.password_file, "/etc/resolverd/etcd.pass");
    ck_assert_str_eq(cfg->etcd.ca_file, "/ca.pem");
    ck_assert_str_eq(cfg->etcd.cert_file, "/c.pem");
    ck_assert_str_eq(cfg->etcd.key_file, "/k.pem");
    ck_assert_uint_eq(cfg->etcd.dial_timeout_ms, 500);
    ck_assert_str_eq(cfg->socket.path, "/tmp/r.sock");
    ck_assert_uint_eq(cfg->socket.mode, 0600); /* 384 as a JSON integer */
    ck_assert_str_eq(cfg->socket.group, "app");
    ck_assert_str_eq(cfg->socket.admin_group, "ops");
    ck_assert_str_eq(cfg->metrics.listen, ":9464");
    ck_assert_str_eq(cfg->zone, "eu-1a");
    ck_assert_str_eq(cfg->cache_file, "/var/cache/r.json");
    ck_assert_uint_eq(cfg->on_demand_services_max, 0);

    const rsv_service_options *d = &cfg->defaults;
    ck_assert_int_eq(d->policy, RSV_POLICY_RANDOM);
    ck_assert_int_eq(d->protocol, RSV_PROTOCOL_TCP);
    ck_assert_uint_eq(d->keepalive_time_ms, 10);
    ck_assert_uint_eq(d->backoff.initial_ms, 500);
    ck_assert_double_eq(d->backoff.multiplier, 1.6); /* untouched backoff fields stay */
    ck_assert_double_eq(d->backoff.jitter, 1.0);
    ck_assert_uint_eq(d->backoff.max_ms, 120000);
    ck_assert_uint_eq(d->max_outstanding, 7);
    ck_assert_str_eq(d->health_grpc_service, "");

    ck_assert_uint_eq(cfg->n_services, 3);
    /* user.rpc: its own policy and max_ms, everything else from defaults */
    const rsv_service_config *u = rsv_config_find_service(cfg, "user.rpc");
    ck_assert_ptr_nonnull(u);
    ck_assert_str_eq(u->prefix, "user.rpc/");
    ck_assert_int_eq(u->options.policy, RSV_POLICY_LEAST_REQUEST);
    ck_assert_int_eq(u->options.protocol, RSV_PROTOCOL_TCP);
    ck_assert_uint_eq(u->options.keepalive_time_ms, 10);
    ck_assert_uint_eq(u->options.backoff.initial_ms, 500);
    ck_assert_double_eq(u->options.backoff.multiplier, 1.6);
    ck_assert_double_eq(u->options.backoff.jitter, 1.0);
    ck_assert_uint_eq(u->options.backoff.max_ms, 60000);
    ck_assert_uint_eq(u->options.max_outstanding, 7);
    ck_assert_ptr_null(u->options.health_grpc_service); /* null turns it off */
    ck_assert_uint_eq(u->options.connect_timeout_ms, 20000);

    /* order.rpc: every option overridden */
    const rsv_service_config *o = rsv_config_find_service(cfg, "order.rpc");
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(o->prefix, "/microservices/order/");
    ck_assert_int_eq(o->options.format, RSV_FORMAT_KRATOS);
    ck_assert_int_eq(o->options.policy, RSV_POLICY_RING_HASH);
    ck_assert_int_eq(o->options.protocol, RSV_PROTOCOL_H2);
    ck_assert_uint_eq(o->options.keepalive_time_ms, 5000);
    ck_assert_uint_eq(o->options.keepalive_timeout_ms, 2000);
    ck_assert_uint_eq(o->options.connect_timeout_ms, 3000);
    ck_assert_uint_eq(o->options.backoff.initial_ms, 100);
    ck_assert_double_eq(o->options.backoff.multiplier, 2.0);
    ck_assert_double_eq(o->options.backoff.jitter, 0.0);
    ck_assert_uint_eq(o->options.backoff.max_ms, 5000);
    ck_assert_uint_eq(o->options.drain_timeout_ms, 1000);
    ck_assert_uint_eq(o->options.max_connection_age_ms, 600000);
    ck_assert_uint_eq(o->options.ticket_timeout_ms, 9000);
    ck_assert_uint_eq(o->options.max_outstanding, 100);
    ck_assert_str_eq(o->options.health_grpc_service, "order.v1.Order");

    /* pay: nothing of its own, so exactly the defaults ({} keeps health) */
    const rsv_service_config *p = rsv_config_find_service(cfg, "pay");
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p->prefix, "pay/");
    ck_assert(rsv_service_options_equal(&p->options, d));
    ck_assert_ptr_ne(p->options.health_grpc_service, d->health_grpc_service); /* own copy */

    ck_assert_ptr_null(rsv_config_find_service(cfg, "nope"));
    ck_assert_ptr_null(rsv_config_find_service(cfg, NULL));
    resolver_config_free(cfg);
}
END_TEST

/* self_preservation_* under defaults, overridden per service; 0 is allowed
 * (off) for the percentage. */
START_TEST(test_self_preservation_keys)
{
    resolver_config *cfg =
        load_ok("{'defaults': {'self_preservation_percent': 70, 'self_preservation_max_ms': 1000},"
                " 'services': [{'name': 'a'}, {'name': 'b', 'self_preservation_percent': 0,"
                " 'self_preservation_max_ms': 86400000}]}");
    const rsv_service_config *a = rsv_config_find_service(cfg, "a");
    const rsv_service_config *b = rsv_config_find_service(cfg, "b");
    ck_assert_uint_eq(a->options.self_preservation_percent, 70);
    ck_assert_uint_eq(a->options.self_preservation_max_ms, 1000);
    ck_assert_uint_eq(b->options.self_preservation_percent, 0);
    ck_assert_uint_eq(b->options.self_preservation_max_ms, 86400000);
    ck_assert(!rsv_service_options_equal(&a->options, &b->options));
    resolver_config_free(cfg);
}
END_TEST

START_TEST(test_mode_forms)
{
    static const struct {
        const char *json;
        unsigned mode;
    } cases[] = {
        {"{'socket': {'mode': '0660'}}", 0660}, {"{'socket': {'mode': '660'}}", 0660},
        {"{'socket': {'mode': '0777'}}", 0777}, {"{'socket': {'mode': '0'}}", 0},
        {"{'socket': {'mode': 432}}", 0660},    {"{'socket': {'mode': 0}}", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        resolver_config *cfg = load_ok(cases[i].json);
        ck_assert_uint_eq(cfg->socket.mode, cases[i].mode);
        resolver_config_free(cfg);
    }
}
END_TEST

START_TEST(test_accepted_edge_values)
{
    resolver_config *cfg =
        load_ok("{'defaults': {'backoff': {'initial_ms': 5, 'max_ms': 5, 'multiplier': 1,"
                " 'jitter': 0}, 'max_outstanding': 4294967295, 'ticket_timeout_ms': 86400000},"
                " 'on_demand_services_max': 4294967295, 'metrics': {'listen': '[::1]:9100'},"
                " 'services': [{'name': 'a/b\\u00e9', 'prefix': 'x'}]}");
    ck_assert_uint_eq(cfg->defaults.backoff.max_ms, 5);
    ck_assert_uint_eq(cfg->defaults.max_outstanding, 4294967295u);
    ck_assert_uint_eq(cfg->defaults.ticket_timeout_ms, 86400000ull);
    ck_assert_uint_eq(cfg->on_demand_services_max, 4294967295u);
    ck_assert_str_eq(cfg->services[0].name, "a/b\xc3\xa9");
    resolver_config_free(cfg);
    cfg = load_ok("{'socket': {'max_detached_tickets': 0}}");
    ck_assert_uint_eq(cfg->socket.max_detached_tickets, 0);
    resolver_config_free(cfg);
}
END_TEST

/* ---- bad input: every one is RESOLVER_ERR_CONFIG naming the key -------- */

static const struct {
    const char *json, *want;
} bad[] = {
    /* unknown keys, at every level */
    {"{'zoen': ''}", "unknown key 'zoen' (did you mean 'zone'?)"},
    {"{'etcd': {'endpoint': ['http://a:1']}}", "unknown key 'etcd.endpoint'"},
    {"{'socket': {'perm': '0660'}}", "unknown key 'socket.perm'"},
    {"{'metrics': {'port': 9}}", "unknown key 'metrics.port'"},
    {"{'defaults': {'keepalive_tme_ms': 5}}",
     "unknown key 'defaults.keepalive_tme_ms' (did you mean 'keepalive_time_ms'?)"},
    {"{'defaults': {'name': 'x'}}", "unknown key 'defaults.name'"},
    {"{'defaults': {'backoff': {'max': 5}}}", "unknown key 'defaults.backoff.max'"},
    {"{'defaults': {'health_check': {'service': 'x'}}}",
     "unknown key 'defaults.health_check.service'"},
    {"{'services': [{'name': 'a', 'polcy': 'random'}]}", "unknown key 'services[0].polcy'"},
    {"{'services': [{'name': 'a'}, {'name': 'b', 'backoff': {'jiter': 0}}]}",
     "unknown key 'services[1].backoff.jiter'"},
    {"{'services': [{'name': 'a', 'health_check': {'x': 1}}]}",
     "unknown key 'services[0].health_check.x'"},
    /* near misses: a missing unit, another naming convention, a value */
    {"{'defaults': {'backoff': {'initial': 5}}}",
     "unknown key 'defaults.backoff.initial' (did you mean 'initial_ms'?)"},
    {"{'services': [{'name': 'a', 'backoff': {'max': 5}}]}",
     "unknown key 'services[0].backoff.max' (did you mean 'max_ms'?)"},
    {"{'defaults': {'keepaliveTimeMs': 5}}",
     "unknown key 'defaults.keepaliveTimeMs' (did you mean 'keepalive_time_ms'?)"},
    {"{'defaults': {'drain-timeout-ms': 5}}",
     "unknown key 'defaults.drain-timeout-ms' (did you mean 'drain_timeout_ms'?)"},
    {"{'etcd': {'password': 'x'}}", "unknown key 'etcd.password' (did you mean 'password_file'?)"},
    {"{'socket': {'admin': 'wheel'}}", "unknown key 'socket.admin' (did you mean 'admin_group'?)"},
    {"{'metrics': {'listen_address': ':9'}}", "unknown key 'metrics.listen_address'"},
    /* a known key one level off */
    {"{'defaults': {'initial_ms': 5}}",
     "unknown key 'defaults.initial_ms' (did you mean 'defaults.backoff.initial_ms'?)"},
    {"{'services': [{'name': 'a', 'grpc_service': ''}]}",
     "unknown key 'services[0].grpc_service' (did you mean "
     "'services[0].health_check.grpc_service'?)"},
    {"{'policy': 'random'}", "unknown key 'policy' (did you mean 'defaults.policy'?)"},
    {"{'listen': ':9100'}", "unknown key 'listen' (did you mean 'metrics.listen'?)"},
    {"{'endpoints': ['http://a:1']}", "unknown key 'endpoints' (did you mean 'etcd.endpoints'?)"},
    {"{'services': [{'name': 'a', 'policy': 'round-robin'}]}",
     "services[0].policy: unknown policy 'round-robin' (did you mean 'round_robin'? expected one "
     "of: "},
    /* wrong types */
    {"{'etcd': []}", "etcd: expected an object, got an array"},
    {"{'socket': 1}", "socket: expected an object, got 1"},
    {"{'metrics': null}", "metrics: expected an object, got null"},
    {"{'etcd': {'endpoints': 'http://a:1'}}",
     "etcd.endpoints: expected an array of URLs, got 'http://a:1'"},
    {"{'etcd': {'endpoints': ['http://a:1', 5]}}",
     "etcd.endpoints[1]: expected a URL string, got 5"},
    {"{'etcd': {'dial_timeout_ms': '2s'}}", "etcd.dial_timeout_ms: expected an integer, got '2s'"},
    {"{'etcd': {'username': true}}", "etcd.username: expected a string, got true"},
    {"{'etcd': {'password_file': false}}", "etcd.password_file: expected a string, got false"},
    {"{'socket': {'group': 0}}", "socket.group: expected a string, got 0"},
    {"{'socket': {'max_detached_tickets': -1}}",
     "socket.max_detached_tickets: must be >= 0, got -1"},
    {"{'socket': {'max_detached_tickets': 100000001}}",
     "socket.max_detached_tickets: must be <= 100000000, got 100000001"},
    {"{'zone': null}", "zone: expected a string, got null"},
    {"{'cache_file': []}", "cache_file: expected a string, got an array"},
    {"{'on_demand_services_max': 1.5}", "on_demand_services_max: expected an integer, got 1.5"},
    {"{'on_demand_services_max': '1'}", "on_demand_services_max: expected an integer, got '1'"},
    {"{'defaults': []}", "defaults: expected an object, got an array"},
    {"{'defaults': {'keepalive_time_ms': 1000.0}}",
     "defaults.keepalive_time_ms: expected an integer, got 1000"},
    {"{'defaults': {'policy': 1}}", "defaults.policy: expected a string, got 1"},
    {"{'defaults': {'backoff': {'multiplier': '2'}}}",
     "defaults.backoff.multiplier: expected a number, got '2'"},
    {"{'defaults': {'backoff': []}}", "defaults.backoff: expected an object, got an array"},
    {"{'defaults': {'health_check': null}}", "defaults.health_check: expected an object, got null"},
    {"{'defaults': {'health_check': {'grpc_service': 5}}}",
     "defaults.health_check.grpc_service: expected a string or null, got 5"},
    {"{'defaults': {'backoff': {'jitter': null}}}",
     "defaults.backoff.jitter: expected a number, got null"},
    {"{'defaults': {'backoff': {'max_ms': 1e6}}}",
     "defaults.backoff.max_ms: expected an integer, got 1e+06"},
    {"{'socket': {'path': {}}}", "socket.path: expected a string, got an object"},
    {"{'socket': {'admin_group': 1}}", "socket.admin_group: expected a string, got 1"},
    {"{'services': {}}", "services: expected an array, got an object"},
    {"{'services': ['a']}", "services[0]: expected an object, got 'a'"},
    {"{'services': [{'name': 1}]}", "services[0].name: expected a string, got 1"},
    {"{'metrics': {'listen': 9100}}", "metrics.listen: expected a string, got 9100"},
    {"{'services': [{'name': 'a', 'max_outstanding': true}]}",
     "services[0].max_outstanding: expected an integer, got true"},
    /* enumerations */
    {"{'services': [{'name': 'a', 'policy': 'fastest'}]}",
     "services[0].policy: unknown policy 'fastest' (expected one of: round_robin, pick_first, "
     "weighted_round_robin, least_request, ring_hash, random, least_latency)"},
    {"{'services': [{'name': 'a', 'policy': 'least-latency'}]}",
     "services[0].policy: unknown policy 'least-latency' (did you mean 'least_latency'?"},
    {"{'defaults': {'latency_decay_ms': 5}}", "defaults.latency_decay_ms: must be >= 10, got 5"},
    {"{'defaults': {'latency_decay': 500}}",
     "unknown key 'defaults.latency_decay' (did you mean 'latency_decay_ms'?)"},
    {"{'defaults': {'protocol': 'h3'}}",
     "defaults.protocol: unknown protocol 'h3' (did you mean 'h2'? expected one of: h2c, h2, tcp)"},
    {"{'defaults': {'policy': 'Round_Robin'}}", "defaults.policy: unknown policy 'Round_Robin'"},
    {"{'defaults': {'format': 'consul'}}",
     "defaults.format: unknown format 'consul' (expected one of: auto, "},
    /* ranges */
    {"{'defaults': {'keepalive_time_ms': 5}}", "defaults.keepalive_time_ms: must be >= 10, got 5"},
    {"{'defaults': {'keepalive_timeout_ms': 0}}",
     "defaults.keepalive_timeout_ms: must be > 0, got 0"},
    {"{'defaults': {'connect_timeout_ms': -1}}",
     "defaults.connect_timeout_ms: must be > 0, got -1"},
    {"{'services': [{'name': 'a', 'drain_timeout_ms': 0}]}",
     "services[0].drain_timeout_ms: must be > 0, got 0"},
    {"{'services': [{'name': 'a', 'ticket_timeout_ms': 0}]}",
     "services[0].ticket_timeout_ms: must be > 0, got 0"},
    {"{'defaults': {'max_connection_age_ms': -1}}",
     "defaults.max_connection_age_ms: must be >= 0, got -1"},
    {"{'defaults': {'max_outstanding': 4294967296}}",
     "defaults.max_outstanding: must be <= 4294967295, got 4294967296"},
    {"{'defaults': {'self_preservation_percent': 101}}",
     "defaults.self_preservation_percent: must be <= 100, got 101"},
    {"{'services': [{'name': 'a', 'self_preservation_max_ms': 0}]}",
     "services[0].self_preservation_max_ms: must be > 0, got 0"},
    {"{'defaults': {'self_preservation_max_ms': 86400001}}",
     "defaults.self_preservation_max_ms: must be <= 86400000 (24 h), got 86400001"},
    {"{'defaults': {'self_preservation_percnt': 10}}",
     "unknown key 'defaults.self_preservation_percnt' (did you mean 'self_preservation_percent'?)"},
    {"{'defaults': {'drain_timeout_ms': 99999999999999}}",
     "defaults.drain_timeout_ms: must be <= 86400000 (24 h), got 99999999999999"},
    /* 2^32 + 1: once truncated into TCP_USER_TIMEOUT as 1 ms */
    {"{'defaults': {'keepalive_timeout_ms': 4294967297}}",
     "defaults.keepalive_timeout_ms: must be <= 86400000 (24 h), got 4294967297"},
    {"{'etcd': {'dial_timeout_ms': 0}}", "etcd.dial_timeout_ms: must be > 0, got 0"},
    {"{'on_demand_services_max': -1}", "on_demand_services_max: must be >= 0, got -1"},
    {"{'on_demand_services_max': 4294967296}", "on_demand_services_max: must be <= 4294967295"},
    {"{'defaults': {'backoff': {'multiplier': 0.5}}}",
     "defaults.backoff.multiplier: must be >= 1.0, got 0.5"},
    {"{'defaults': {'backoff': {'multiplier': 1000}}}",
     "defaults.backoff.multiplier: must be <= 100, got 1000"},
    {"{'defaults': {'backoff': {'jitter': 1.5}}}",
     "defaults.backoff.jitter: must be between 0 and 1, got 1.5"},
    {"{'defaults': {'backoff': {'jitter': -0.1}}}",
     "defaults.backoff.jitter: must be between 0 and 1, got -0.1"},
    {"{'defaults': {'backoff': {'initial_ms': 0}}}",
     "defaults.backoff.initial_ms: must be > 0, got 0"},
    {"{'defaults': {'backoff': {'initial_ms': 5000, 'max_ms': 1000}}}",
     "defaults.backoff.max_ms: must be >= initial_ms (5000), got 1000"},
    {"{'defaults': {'backoff': {'initial_ms': 200000}}}",
     "defaults.backoff.initial_ms: must be <= max_ms (120000), got 200000"},
    {"{'services': [{'name': 'a', 'backoff': {'max_ms': 500}}]}",
     "services[0].backoff.max_ms: must be >= initial_ms (1000), got 500"},
    {"{'services': [{'name': 'a', 'backoff': {'max_ms': 1500}}],"
     " 'defaults': {'backoff': {'initial_ms': 2000}}}",
     "services[0].backoff.max_ms: must be >= initial_ms (2000), got 1500"},
    /* socket */
    {"{'socket': {'mode': '0999'}}", "socket.mode: '0999' is not an octal mode such as '0660'"},
    {"{'socket': {'mode': 'rw-rw----'}}", "socket.mode: 'rw-rw----' is not an octal mode"},
    {"{'socket': {'mode': ''}}", "socket.mode: '' is not an octal mode"},
    {"{'socket': {'mode': '-660'}}", "socket.mode: '-660' is not an octal mode"},
    {"{'socket': {'mode': '01777'}}", "socket.mode: must be at most 0777, got '01777'"},
    {"{'socket': {'mode': 660}}", "socket.mode: must be in 0..511 (0..0777 in octal), got 660"},
    {"{'socket': {'mode': -1}}", "socket.mode: must be in 0..511"},
    {"{'socket': {'mode': true}}",
     "socket.mode: expected an octal string such as '0660', got true"},
    {"{'socket': {'path': ''}}", "socket.path: must not be empty"},
    {"{'socket': {'path': "
     "'/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock'}}",
     "socket.path: '/run/aaaa"},
    {"{'socket': {'path': "
     "'/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock'}}",
     "is too long for a Unix socket (150 bytes, at most 107)"},
    /* etcd URLs */
    {"{'etcd': {'endpoints': ['http://a:1', 'ftp://x']}}",
     "etcd.endpoints[1]: 'ftp://x' is not an http:// or https:// URL"},
    {"{'etcd': {'endpoints': ['localhost:2379']}}",
     "etcd.endpoints[0]: 'localhost:2379' is not an http:// or https:// URL"},
    {"{'etcd': {'endpoints': ['']}}", "etcd.endpoints[0]: '' is not an http:// or https:// URL"},
    {"{'etcd': {'endpoints': ['http://:2379']}}",
     "etcd.endpoints[0]: 'http://:2379' is not a valid URL: missing host"},
    {"{'etcd': {'endpoints': ['http://']}}", "etcd.endpoints[0]: 'http://' is not a valid URL"},
    {"{'etcd': {'endpoints': ['http://a:0']}}", "'http://a:0' is not a valid URL: port"},
    {"{'etcd': {'endpoints': ['http://a:65536']}}", "'http://a:65536' is not a valid URL: port"},
    {"{'etcd': {'endpoints': ['http://a:']}}", "'http://a:' is not a valid URL: port"},
    {"{'etcd': {'endpoints': ['http://a:12x']}}", "'http://a:12x' is not a valid URL: port"},
    {"{'etcd': {'endpoints': ['http://a:2379/v3']}}", "'http://a:2379/v3' is not a valid URL"},
    {"{'etcd': {'endpoints': ['http://a:2379?x=1']}}", "is not a valid URL"},
    {"{'etcd': {'endpoints': ['http://u:p@a:2379']}}", "is not a valid URL: user names go in"},
    {"{'etcd': {'endpoints': ['http://::1:2379']}}", "IPv6 addresses need brackets"},
    {"{'etcd': {'endpoints': ['http://[::1:2379']}}", "unterminated"},
    {"{'etcd': {'endpoints': ['http://[]:2379']}}", "empty IPv6 address"},
    {"{'etcd': {'endpoints': ['http://[::1]x']}}", "unexpected text after"},
    {"{'etcd': {'endpoints': ['http://[zz]:1']}}", "invalid IPv6 address"},
    {"{'etcd': {'endpoints': ['http://a b:1']}}", "'http://a b:1' is not a valid URL: invalid"},
    {"{'etcd': {'endpoints': []}}", "etcd.endpoints: must list at least one URL"},
    {"{'etcd': {'cert_file': '/c.pem'}}", "etcd.cert_file: set without etcd.key_file"},
    {"{'etcd': {'key_file': '/k.pem'}}", "etcd.key_file: set without etcd.cert_file"},
    {"{'metrics': {'listen': 'nohost'}}", "metrics.listen: 'nohost' is not HOST:PORT"},
    {"{'dns': []}", "dns: expected an object, got an array"},
    {"{'dns': {'server': []}}", "unknown key 'dns.server' (did you mean 'servers'?)"},
    {"{'dns': {'servers': '10.0.0.53'}}", "dns.servers: expected an array of addresses"},
    {"{'dns': {'servers': [53]}}", "dns.servers[0]: expected an address string, got 53"},
    {"{'dns': {'servers': ['10.0.0.53', 'ns.example']}}",
     "dns.servers[1]: 'ns.example' is not IP, IP:PORT or [IPv6]:PORT"},
    {"{'dns': {'servers': ['10.0.0.53:99999']}}", "dns.servers[0]: '10.0.0.53:99999' is not IP"},
    {"{'metrics': {'listen': '0.0.0.0:99999'}}",
     "metrics.listen: '0.0.0.0:99999' is not HOST:PORT"},
    {"{'zone': 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'}",
     "zone: 'aaaa"},
    /* services */
    {"{'services': [{'name': 'a'}, {'name': 'b'}, {'name': 'a'}]}",
     "services[2].name: duplicate service 'a' (see services[0])"},
    {"{'services': [{'prefix': 'x/'}]}", "services[0]: missing required key 'name'"},
    {"{'services': [{'name': ''}]}", "services[0].name: invalid service name ''"},
    {"{'services': [{'name': 'user rpc'}]}", "services[0].name: invalid service name 'user rpc'"},
    {"{'services': [{'name': 'a\\tb'}]}", "services[0].name: invalid service name 'a?b'"},
    {"{'services': [{'name': 'a', 'prefix': ''}]}", "services[0].prefix: must not be empty"},
    {"{'services': [{'name': 'a', 'prefix': 5}]}", "services[0].prefix: expected a string, got 5"},
    /* JSON itself */
    {"{'zone': 'a', 'zone': 'b'}", "invalid JSON at line 1, column"},
    {"{'zone': 'a', 'zone': 'b'}", "duplicate object key"},
    {"[]", "configuration: expected a JSON object, got an array"},
    {"", "invalid JSON at line 1"},
    {"{", "invalid JSON at line 1"},
    {"{'zone': 'a',}", "invalid JSON at line 1"},
    {"{} {}", "invalid JSON"},
    {"{'zone': 'a\\u0000b'}", "invalid JSON"},
};

START_TEST(test_bad_input)
{
    load_bad(bad[_i].json, bad[_i].want);
}
END_TEST

/* ---- every duration key is bounded ---------------------------------- */

/* Every key ending in "_ms" in the effective configuration, found by
 * walking what rsv_config_to_json writes, so that a duration key added
 * later is covered without being listed here. */
typedef struct {
    char path[128]; /* "services[0].backoff.max_ms", as messages name it */
    json_t *parent; /* the object holding it, inside the walked document */
    const char *key;
} ms_key;

static size_t find_ms_keys(json_t *v, const char *path, ms_key *out, size_t n, size_t cap)
{
    const char *key;
    json_t *x;
    size_t i;
    char p[128];
    if (json_is_array(v)) {
        json_array_foreach(v, i, x)
        {
            snprintf(p, sizeof(p), "%s[%zu]", path, i);
            n = find_ms_keys(x, p, out, n, cap);
        }
    }
    if (!json_is_object(v))
        return n;
    json_object_foreach(v, key, x)
    {
        snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", key);
        size_t len = strlen(key);
        if (len > 3 && strcmp(key + len - 3, "_ms") == 0 && json_is_integer(x)) {
            ck_assert_uint_lt(n, cap);
            snprintf(out[n].path, sizeof(out[n].path), "%s", p);
            out[n].parent = v;
            out[n].key = key;
            n++;
        }
        n = find_ms_keys(x, p, out, n, cap);
    }
    return n;
}

/* Loads doc with k set to ms (and, for the backoff's initial_ms, max_ms too:
 * it must not exceed it).  Returns the rc; on success *cfg is the config. */
static int load_with_ms(json_t *doc, const ms_key *k, json_int_t ms, resolver_config **cfg,
                        char *err, size_t errlen)
{
    json_t *saved = json_deep_copy(json_object_get(k->parent, k->key));
    json_t *saved_max = NULL;
    json_object_set_new(k->parent, k->key, json_integer(ms));
    if (strcmp(k->key, "initial_ms") == 0) {
        saved_max = json_deep_copy(json_object_get(k->parent, "max_ms"));
        json_object_set_new(k->parent, "max_ms", json_integer(ms));
    }
    char *text = json_dumps(doc, 0);
    ck_assert_ptr_nonnull(text);
    *cfg = NULL;
    int rc = resolver_config_load_string(text, cfg, err, errlen);
    free(text);
    json_object_set_new(k->parent, k->key, saved);
    if (saved_max)
        json_object_set_new(k->parent, "max_ms", saved_max);
    return rc;
}

/* The value at `path` in cfg's effective configuration. */
static json_int_t effective_ms(const resolver_config *cfg, const ms_key *k, size_t index,
                               size_t n_keys)
{
    char *json = NULL;
    ck_assert_int_eq(rsv_config_to_json(cfg, &json), 0);
    json_t *doc = json_loads(json, 0, NULL);
    free(json);
    ck_assert_ptr_nonnull(doc);
    ms_key *keys = calloc(n_keys, sizeof(*keys));
    ck_assert_uint_eq(find_ms_keys(doc, "", keys, 0, n_keys), n_keys);
    ck_assert_str_eq(keys[index].path, k->path);
    json_int_t v = json_integer_value(json_object_get(keys[index].parent, keys[index].key));
    free(keys);
    json_decref(doc);
    return v;
}

/* ---- etcd files under systemd's $CREDENTIALS_DIRECTORY ---------------- */

START_TEST(test_credentials_directory)
{
    unsetenv("CREDENTIALS_DIRECTORY");
    load_bad("{'etcd': {'password_file': '$CREDENTIALS_DIRECTORY/pw'}}",
             "etcd.password_file: '$CREDENTIALS_DIRECTORY/pw' names $CREDENTIALS_DIRECTORY, which "
             "is not set");
    resolver_config *cfg = load_ok("{'etcd': {'password_file': 'pw'}}");
    ck_assert_str_eq(cfg->etcd.password_file, "pw"); /* relative to the working directory */
    resolver_config_free(cfg);

    setenv("CREDENTIALS_DIRECTORY", "/run/credentials/resolverd.service", 1);
    cfg = load_ok("{'etcd': {'username': 'u', 'password_file': 'etcd-password', 'ca_file': "
                  "'/etc/ssl/ca.pem', 'cert_file': '${CREDENTIALS_DIRECTORY}/c.pem', "
                  "'key_file': '$CREDENTIALS_DIRECTORY/k.pem'}}");
    ck_assert_str_eq(cfg->etcd.password_file, "/run/credentials/resolverd.service/etcd-password");
    ck_assert_str_eq(cfg->etcd.ca_file, "/etc/ssl/ca.pem"); /* absolute: as written */
    ck_assert_str_eq(cfg->etcd.cert_file, "/run/credentials/resolverd.service/c.pem");
    ck_assert_str_eq(cfg->etcd.key_file, "/run/credentials/resolverd.service/k.pem");
    ck_assert_str_eq(cfg->etcd.username, "u"); /* not a file */
    resolver_config_free(cfg);
    unsetenv("CREDENTIALS_DIRECTORY");
}
END_TEST

START_TEST(test_duration_bounds)
{
    enum { CAP = 64 };
    const json_int_t max = (json_int_t)RSV_DURATION_MAX_MS;
    ck_assert_int_eq(max, 86400000); /* 24 h, as the documentation says */
    resolver_config *base = load_ok("{'services': [{'name': 'a'}], "
                                    "'register': [{'service': 'a', 'address': '127.0.0.1:1'}]}");
    char *json = NULL, err[512];
    ck_assert_int_eq(rsv_config_to_json(base, &json), 0);
    resolver_config_free(base);
    json_t *doc = json_loads(json, 0, NULL);
    free(json);
    ck_assert_ptr_nonnull(doc);
    ms_key keys[CAP];
    size_t n = find_ms_keys(doc, "", keys, 0, CAP);
    /* etcd.dial_timeout_ms, then 11 in defaults and 11 in the service */
    ck_assert_uint_ge(n, 23);
    for (size_t i = 0; i < n; i++) {
        static const json_int_t too_big[] = {86400001, 4294967297, 31536000000};
        for (size_t j = 0; j < sizeof(too_big) / sizeof(too_big[0]); j++) {
            resolver_config *cfg;
            char want[256];
            int rc = load_with_ms(doc, &keys[i], too_big[j], &cfg, err, sizeof(err));
            ck_assert_msg(rc == RESOLVER_ERR_CONFIG, "%s = %lld accepted", keys[i].path,
                          (long long)too_big[j]);
            ck_assert_ptr_null(cfg);
            snprintf(want, sizeof(want), "%s: must be <= 86400000 (24 h), got %lld", keys[i].path,
                     (long long)too_big[j]);
            ck_assert_msg(strstr(err, want), "got \"%s\"\nwant \"%s\"", err, want);
        }
        resolver_config *cfg;
        int rc = load_with_ms(doc, &keys[i], max, &cfg, err, sizeof(err));
        ck_assert_msg(rc == 0, "%s = %lld rejected: %s", keys[i].path, (long long)max, err);
        ck_assert_int_eq(effective_ms(cfg, &keys[i], i, n), max);
        resolver_config_free(cfg);
    }
    json_decref(doc);
}
END_TEST

static void assert_round_trip(resolver_config *cfg);

/* ---- "register" and deregister_grace_ms (issue 14) -------------------- */

START_TEST(test_register_defaults)
{
    resolver_config *cfg = load_ok("{}");
    ck_assert_uint_eq(cfg->n_registrations, 0);
    ck_assert_uint_eq(cfg->deregister_grace_ms, 2000);
    resolver_config_free(cfg);
    cfg = load_ok("{'deregister_grace_ms': 0, 'register': [{'service': 'user.rpc', 'address': "
                  "'LocalHost:8080'}, {'service': 'b', 'address': '[::1]:9', 'format': 'native', "
                  "'ttl_ms': 1000, 'weight': 7, 'zone': 'z1', 'metadata': {'v': '2', 'a': '1'}, "
                  "'key': 'custom/k', 'health_check': {'grpc_service': 'b.v1'}}]}");
    ck_assert_uint_eq(cfg->deregister_grace_ms, 0);
    ck_assert_uint_eq(cfg->n_registrations, 2);
    const rsv_registration_config *r = &cfg->registrations[0];
    ck_assert_str_eq(r->service, "user.rpc");
    ck_assert_str_eq(r->address, "localhost:8080"); /* canonical */
    ck_assert_int_eq(r->format, RSV_FORMAT_GOZERO);
    ck_assert_uint_eq(r->ttl_ms, 10000);
    ck_assert_uint_eq(r->weight, 1);
    ck_assert_str_eq(r->zone, "");
    ck_assert_str_eq(r->metadata, "");
    ck_assert_str_eq(r->key, "");
    r = &cfg->registrations[1];
    ck_assert_str_eq(r->address, "[::1]:9");
    ck_assert_int_eq(r->format, RSV_FORMAT_NATIVE);
    ck_assert_uint_eq(r->ttl_ms, 1000);
    ck_assert_uint_eq(r->weight, 7);
    ck_assert_str_eq(r->zone, "z1");
    ck_assert_str_eq(r->metadata, "{\"a\":\"1\",\"v\":\"2\"}"); /* sorted, compact */
    ck_assert_str_eq(r->key, "custom/k");
    ck_assert_str_eq(r->health_check, "b.v1");
    ck_assert_ptr_null(cfg->registrations[0].health_check);
    assert_round_trip(cfg);
    resolver_config_free(cfg);
}
END_TEST

START_TEST(test_register_errors)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"{'register': {}}", "register: expected an array, got an object"},
        {"{'register': [5]}", "register[0]: expected an object, got 5"},
        {"{'register': [{'address': '127.0.0.1:1'}]}",
         "register[0]: missing required key 'service'"},
        {"{'register': [{'service': 'a'}]}", "register[0]: missing required key 'address'"},
        {"{'register': [{'service': 'a b', 'address': '127.0.0.1:1'}]}",
         "register[0].service: invalid service name 'a b'"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1'}]}",
         "register[0].address: '127.0.0.1': missing port"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'format': 'auto'}]}",
         "register[0].format: 'auto': 'auto' reads any format but cannot write one"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'format': 'nacos'}]}",
         "register[0].format: 'nacos': not one of gozero, etcd_naming, kratos, kitex, native"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'ttl_ms': 999}]}",
         "register[0].ttl_ms: must be >= 1000, got 999"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'ttl_ms': 86400001}]}",
         "register[0].ttl_ms: must be <= 86400000 (24 h), got 86400001"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'weight': 0}]}",
         "register[0].weight: must be > 0, got 0"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'weight': 1000001}]}",
         "register[0].weight: must be <= 1000000, got 1000001"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'metadata': {'w': 1}}]}",
         "register[0].metadata: every value must be a string"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'metadata': []}]}",
         "register[0].metadata: expected an object of strings"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'key': ''}]}",
         "register[0].key: must not be empty"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'tll_ms': 5000}]}",
         "unknown key 'register[0].tll_ms' (did you mean 'ttl_ms'?)"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'health_check': 5}]}",
         "register[0].health_check: expected an object, got 5"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1', 'health_check': "
         "{'grpc_servic': ''}}]}",
         "unknown key 'register[0].health_check.grpc_servic' (did you mean 'grpc_service'?)"},
        {"{'register': [{'service': 'a', 'address': '127.0.0.1:1'}, {'service': 'a', "
         "'address': '127.0.0.1:1'}]}",
         "register[1]: duplicate of register[0] (a 127.0.0.1:1)"},
        {"{'deregister_grace_ms': -1}", "deregister_grace_ms: must be >= 0, got -1"},
        {"{'deregister_grace_ms': 86400001}",
         "deregister_grace_ms: must be <= 86400000 (24 h), got 86400001"},
        {"{'deregister_grace': 1}",
         "unknown key 'deregister_grace' (did you mean 'deregister_grace_ms'?)"},
        {"{'registr': []}", "unknown key 'registr' (did you mean 'register'?)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        load_bad(cases[i].text, cases[i].want);
}
END_TEST

START_TEST(test_registration_build)
{
    rsv_registration_config r;
    char why[256];
    ck_assert_int_eq(rsv_registration_build(&r, "s", "127.0.0.1:80", "kitex", 0, 0, NULL, "{}",
                                            NULL, why, sizeof(why)),
                     0);
    ck_assert_int_eq(r.format, RSV_FORMAT_KITEX);
    ck_assert_uint_eq(r.ttl_ms, 10000);
    ck_assert_uint_eq(r.weight, 1);
    ck_assert_str_eq(r.metadata, "");
    rsv_registration_config copy;
    ck_assert_int_eq(rsv_registration_copy(&copy, &r), 0);
    ck_assert(rsv_registration_equal(&copy, &r));
    rsv_registration_clear(&copy);
    rsv_registration_clear(&r);
    static const struct {
        const char *service, *address, *format;
        uint64_t ttl;
        uint32_t weight;
        const char *metadata, *want;
    } cases[] = {
        {"", "127.0.0.1:80", NULL, 0, 0, NULL, "service: invalid service name"},
        {"s", NULL, NULL, 0, 0, NULL, "address: missing"},
        {"s", "x", NULL, 0, 0, NULL, "address: missing port"},
        {"s", "127.0.0.1:80", "auto", 0, 0, NULL, "format: "},
        {"s", "127.0.0.1:80", NULL, 999, 0, NULL, "ttl_ms: must be 1000..86400000"},
        {"s", "127.0.0.1:80", NULL, 0, 1000001, NULL, "weight: must be 1..1000000"},
        {"s", "127.0.0.1:80", NULL, 0, 0, "{\"a\":1}", "metadata: every value must be a string"},
        {"s", "127.0.0.1:80", NULL, 0, 0, "{", "metadata: not JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_int_eq(rsv_registration_build(&r, cases[i].service, cases[i].address,
                                                cases[i].format, cases[i].ttl, cases[i].weight,
                                                NULL, cases[i].metadata, NULL, why, sizeof(why)),
                         RESOLVER_ERR_INVALID);
        ck_assert_msg(strstr(why, cases[i].want), "%zu: got \"%s\" want \"%s\"", i, why,
                      cases[i].want);
    }
}
END_TEST

START_TEST(test_ms_to_int)
{
    ck_assert_int_eq(rsv_ms_to_int(0), 0);
    ck_assert_int_eq(rsv_ms_to_int(RSV_DURATION_MAX_MS), 86400000);
    ck_assert_int_eq(rsv_ms_to_int(4294967297ull), INT_MAX); /* not 1 */
    ck_assert_int_eq(rsv_ms_to_int(UINT64_MAX), INT_MAX);
}
END_TEST

START_TEST(test_json_error_position)
{
    char err[256];
    resolver_config *cfg = NULL;
    const char *text = "{\n  \"zone\": \"a\",\n  oops\n}\n";
    ck_assert_int_eq(resolver_config_load_string(text, &cfg, err, sizeof(err)),
                     RESOLVER_ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(err, "invalid JSON at line 3, column "), "%s", err);
}
END_TEST

START_TEST(test_control_characters_in_messages)
{
    char err[256];
    resolver_config *cfg = NULL;
    /* A key holding a newline must not split the message into two log lines. */
    ck_assert_int_eq(resolver_config_load_string("{\"a\\nb\": 1}", &cfg, err, sizeof(err)),
                     RESOLVER_ERR_CONFIG);
    ck_assert_str_eq(err, "unknown key \"a?b\"");
}
END_TEST

START_TEST(test_error_buffer)
{
    char err[12];
    resolver_config *cfg = NULL;
    memset(err, 'x', sizeof(err));
    ck_assert_int_eq(resolver_config_load_string("{\"zoen\": 1}", &cfg, err, sizeof(err)),
                     RESOLVER_ERR_CONFIG);
    ck_assert_uint_eq(strlen(err), sizeof(err) - 1); /* truncated, terminated */
    ck_assert_int_eq(strncmp(err, "unknown key", sizeof(err) - 1), 0);
    ck_assert_int_eq(resolver_config_load_string("{\"zoen\": 1}", &cfg, NULL, 0),
                     RESOLVER_ERR_CONFIG);
    err[0] = 'x';
    ck_assert_int_eq(resolver_config_load_string("{\"zoen\": 1}", &cfg, err, 0),
                     RESOLVER_ERR_CONFIG);
    ck_assert_int_eq(err[0], 'x'); /* errlen 0: nothing written */
    /* success clears a stale message */
    ck_assert_int_eq(resolver_config_load_string("{}", &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(err, "");
    resolver_config_free(cfg);
}
END_TEST

START_TEST(test_bad_arguments)
{
    char err[64];
    resolver_config *cfg = NULL;
    ck_assert_int_eq(resolver_config_load_string(NULL, &cfg, err, sizeof(err)),
                     RESOLVER_ERR_INVALID);
    ck_assert_int_eq(resolver_config_load_string("{}", NULL, err, sizeof(err)),
                     RESOLVER_ERR_INVALID);
    ck_assert_int_eq(resolver_config_load_file(NULL, &cfg, err, sizeof(err)), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(resolver_config_load_file("/x", NULL, err, sizeof(err)), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(rsv_config_to_json(NULL, NULL), RESOLVER_ERR_INVALID);
}
END_TEST

/* ---- files ------------------------------------------------------------ */

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/check_config_XXXXXX");
    ck_assert_ptr_nonnull(path);
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t n = strlen(text);
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

START_TEST(test_load_file)
{
    char err[512];
    resolver_config *cfg = NULL;
    char *path = write_temp(product_example);
    ck_assert_int_eq(resolver_config_load_file(path, &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg->services[0].name, "user.rpc");
    resolver_config_free(cfg);
    unlink(path);
    free(path);

    /* errors in a file name the file */
    path = write_temp("{\n  \"defaults\": {\"policy\": \"fastest\"}\n}\n");
    ck_assert_int_eq(resolver_config_load_file(path, &cfg, err, sizeof(err)), RESOLVER_ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_int_eq(strncmp(err, path, strlen(path)), 0);
    ck_assert_msg(strstr(err, ": defaults.policy: unknown policy \"fastest\""), "%s", err);
    unlink(path);
    free(path);

    path = write_temp("{\n\n  \"zone\" \"a\"\n}\n");
    ck_assert_int_eq(resolver_config_load_file(path, &cfg, err, sizeof(err)), RESOLVER_ERR_CONFIG);
    ck_assert_msg(strstr(err, ": invalid JSON at line 3, column "), "%s", err);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(test_missing_file)
{
    char err[512], want[512];
    resolver_config *cfg = (resolver_config *)&err;
    const char *path = "/nonexistent/resolverd.json";
    errno = 0;
    ck_assert_int_eq(resolver_config_load_file(path, &cfg, err, sizeof(err)), RESOLVER_ERR_IO);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_ptr_null(cfg);
    snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
    ck_assert_str_eq(err, want);

    ck_assert_int_eq(resolver_config_load_file("/tmp", &cfg, err, sizeof(err)), RESOLVER_ERR_IO);
    ck_assert_int_eq(errno, EISDIR);
    snprintf(want, sizeof(want), "/tmp: %s", strerror(EISDIR));
    ck_assert_str_eq(err, want);
}
END_TEST

/* contrib/resolverd.json documents every key: it must load and round-trip. */
START_TEST(test_contrib_example)
{
    char path[1024], err[512];
    const char *top = getenv("abs_top_srcdir"); /* set by make check */
    if (top)
        snprintf(path, sizeof(path), "%s/contrib/resolverd.json", top);
    else /* run by hand from the source directory's build dir */
        snprintf(path, sizeof(path), "%s", "../contrib/resolverd.json");
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "check_config: %s not found, example not checked\n", path);
        return;
    }
    resolver_config *cfg = NULL;
    ck_assert_msg(resolver_config_load_file(path, &cfg, err, sizeof(err)) == 0, "%s", err);
    const rsv_service_config *u = rsv_config_find_service(cfg, "user.rpc");
    ck_assert_ptr_nonnull(u);
    ck_assert_int_eq(u->options.policy, RSV_POLICY_LEAST_REQUEST);
    ck_assert_ptr_nonnull(rsv_config_find_service(cfg, "order.rpc"));
    resolver_config_free(cfg);
}
END_TEST

/* ---- endpoints -------------------------------------------------------- */

START_TEST(test_set_endpoints)
{
    resolver_config *cfg = NULL;
    ck_assert_int_eq(resolver_config_new_default(&cfg), 0);
    ck_assert_int_eq(resolver_config_set_endpoints(
                         cfg, "http://10.0.0.1:2379, https://etcd-2:2379/ ,http://[::1]"),
                     0);
    ck_assert_uint_eq(cfg->etcd.n_endpoints, 3);
    ck_assert_str_eq(cfg->etcd.endpoints[0], "http://10.0.0.1:2379");
    ck_assert_str_eq(cfg->etcd.endpoints[1], "https://etcd-2:2379");
    ck_assert_str_eq(cfg->etcd.endpoints[2], "http://[::1]");

    static const char *const bad_lists[] = {
        "",
        ",",
        "http://a:1,",
        ",http://a:1",
        "http://a:1,,http://b:1",
        "ftp://a",
        "http://a:1,b:2",
        "http://a:1 http://b:1",
        "http://a:99999",
        "http://a/x",
        "http://\xc3\xa9:1",
    };
    for (size_t i = 0; i < sizeof(bad_lists) / sizeof(bad_lists[0]); i++) {
        ck_assert_msg(resolver_config_set_endpoints(cfg, bad_lists[i]) == RESOLVER_ERR_CONFIG,
                      "accepted \"%s\"", bad_lists[i]);
        ck_assert_uint_eq(cfg->etcd.n_endpoints, 3); /* unchanged on error */
        ck_assert_str_eq(cfg->etcd.endpoints[2], "http://[::1]");
    }
    ck_assert_int_eq(resolver_config_set_endpoints(cfg, NULL), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(resolver_config_set_endpoints(NULL, "http://a:1"), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(resolver_config_set_endpoints(cfg, "HTTPS://one"), 0);
    ck_assert_uint_eq(cfg->etcd.n_endpoints, 1);
    ck_assert_str_eq(cfg->etcd.endpoints[0], "HTTPS://one");
    resolver_config_free(cfg);
}
END_TEST

/* ---- built in code: resolver_config_set, _add_service, _remove_service -- */

static char *to_json(const resolver_config *cfg)
{
    char *json = NULL;
    ck_assert_int_eq(rsv_config_to_json(cfg, &json), 0);
    return json;
}

static void set_ok(resolver_config *cfg, const char *key, const char *value)
{
    char err[512] = "x", *v = dq(value);
    int rc = resolver_config_set(cfg, key, v, err, sizeof(err));
    ck_assert_msg(rc == 0, "set %s = %s: rc %d, %s", key, v, rc, err);
    ck_assert_str_eq(err, "");
    free(v);
}

START_TEST(test_set_keys)
{
    resolver_config *cfg = NULL;
    ck_assert_int_eq(resolver_config_new_default(&cfg), 0);
    set_ok(cfg, "etcd.dial_timeout_ms", "1000");
    set_ok(cfg, "etcd.endpoints", "['http://10.0.0.1:2379', 'https://etcd-2:2379/']");
    set_ok(cfg, "etcd", "{'cert_file': '/c.pem', 'key_file': '/k.pem'}");
    set_ok(cfg, "socket.path", "/tmp/x.sock"); /* not JSON: a string */
    set_ok(cfg, "socket.mode", "0600");        /* not JSON either */
    set_ok(cfg, "socket.max_detached_tickets", " 7 ");
    set_ok(cfg, "zone", "1");                    /* a number where a string goes */
    set_ok(cfg, "cache_file", "'/var/cache/r'"); /* a JSON string */
    set_ok(cfg, "defaults.policy", "least_request");
    set_ok(cfg, "defaults.backoff", "{'initial_ms': 500}"); /* over what it holds */
    set_ok(cfg, "defaults.backoff.jitter", "0.1");
    set_ok(cfg, "defaults.health_check.grpc_service", "''");
    set_ok(cfg, "dns.servers", "['127.0.0.1:5353']");
    set_ok(cfg, "register", "[{'service': 'me', 'address': '127.0.0.1:80'}]");
    set_ok(cfg, "deregister_grace_ms", "0");
    set_ok(cfg, "on_demand_services_max", "3");
    set_ok(cfg, "services", "[{'name': 'a'}, {'name': 'b', 'policy': 'random'}]");
    set_ok(cfg, "services[1].choice_count", "3");
    set_ok(cfg, "services[0]", "{'prefix': 'x/'}");
    ck_assert_uint_eq(cfg->etcd.dial_timeout_ms, 1000);
    ck_assert_uint_eq(cfg->etcd.n_endpoints, 2);
    ck_assert_str_eq(cfg->etcd.endpoints[1], "https://etcd-2:2379");
    ck_assert_str_eq(cfg->socket.path, "/tmp/x.sock");
    ck_assert_uint_eq(cfg->socket.mode, 0600);
    ck_assert_str_eq(cfg->zone, "1");
    ck_assert_int_eq(cfg->defaults.policy, RSV_POLICY_LEAST_REQUEST);
    ck_assert_uint_eq(cfg->defaults.backoff.initial_ms, 500);
    ck_assert_uint_eq(cfg->defaults.backoff.max_ms, 120000);

    /* The same configuration as a file loads into an equal one. */
    resolver_config *file = load_ok(
        "{'etcd': {'dial_timeout_ms': 1000, 'endpoints': ['http://10.0.0.1:2379', "
        "'https://etcd-2:2379'], 'cert_file': '/c.pem', 'key_file': '/k.pem'},"
        " 'socket': {'path': '/tmp/x.sock', 'mode': '0600', 'max_detached_tickets': 7},"
        " 'zone': '1', 'cache_file': '/var/cache/r', 'on_demand_services_max': 3,"
        " 'defaults': {'policy': 'least_request', 'backoff': {'initial_ms': 500, 'jitter': 0.1},"
        "   'health_check': {'grpc_service': ''}},"
        " 'dns': {'servers': ['127.0.0.1:5353']}, 'deregister_grace_ms': 0,"
        " 'register': [{'service': 'me', 'address': '127.0.0.1:80'}],"
        " 'services': [{'name': 'a', 'prefix': 'x/'},"
        "              {'name': 'b', 'policy': 'random', 'choice_count': 3}]}");
    char *a = to_json(cfg), *b = to_json(file);
    ck_assert_str_eq(a, b);
    ck_assert(rsv_config_equal(cfg, file));
    free(a);
    free(b);
    resolver_config_free(file);
    resolver_config_free(cfg);
}
END_TEST

/* A key set in code fails with the message the same key gets in a file,
 * and leaves the configuration as it was. */
START_TEST(test_set_errors)
{
    static const struct {
        const char *key, *value, *file;
    } cases[] = {
        {"etcd.dial_timeout_ms", "0", "{'etcd': {'dial_timeout_ms': 0}}"},
        {"etcd.dial_timeout_ms", "abc", "{'etcd': {'dial_timeout_ms': 'abc'}}"},
        {"etcd.dial_timeout_ms", "[1]", "{'etcd': {'dial_timeout_ms': [1]}}"},
        {"etcd.dial_timeout", "1", "{'etcd': {'dial_timeout': 1}}"},
        {"etcd.cert_file", "/c.pem", "{'etcd': {'cert_file': '/c.pem'}}"},
        {"etcd.endpoints", "[]", "{'etcd': {'endpoints': []}}"},
        {"etcd.endpoints", "http://a:1", "{'etcd': {'endpoints': 'http://a:1'}}"},
        {"defaults.polcy", "random", "{'defaults': {'polcy': 'random'}}"},
        {"defaults.policy", "round_robn", "{'defaults': {'policy': 'round_robn'}}"},
        {"defaults.backoff.max_ms", "500", "{'defaults': {'backoff': {'max_ms': 500}}}"},
        {"defaults.initial_ms", "5", "{'defaults': {'initial_ms': 5}}"},
        {"policy", "random", "{'policy': 'random'}"},
        {"socket.mode", "999", "{'socket': {'mode': 999}}"},
        {"socket.mode", "0999", "{'socket': {'mode': '0999'}}"},
        {"socket", "5", "{'socket': 5}"},
        {"zone", "[1]", "{'zone': [1]}"},
        {"nope", "1", "{'nope': 1}"},
        {"services", "[{'name': 'a'}, {'name': 'a'}]",
         "{'services': [{'name': 'a'}, {'name': 'a'}]}"},
        {"register", "[{'service': 's'}]", "{'register': [{'service': 's'}]}"},
    };
    resolver_config *cfg = NULL;
    ck_assert_int_eq(resolver_config_new_default(&cfg), 0);
    ck_assert_int_eq(resolver_config_add_service(cfg, "kept", "{'policy': 'random'}", NULL, 0),
                     RESOLVER_ERR_CONFIG); /* ' is not JSON's quote */
    ck_assert_int_eq(resolver_config_add_service(cfg, "kept", NULL, NULL, 0), 0);
    char *before = to_json(cfg);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512] = "", want[512] = "", *value = dq(cases[i].value), *file = dq(cases[i].file);
        resolver_config *other = NULL;
        ck_assert_int_eq(resolver_config_load_string(file, &other, want, sizeof(want)),
                         RESOLVER_ERR_CONFIG);
        int rc = resolver_config_set(cfg, cases[i].key, value, err, sizeof(err));
        ck_assert_msg(rc == RESOLVER_ERR_CONFIG, "%s = %s: rc %d", cases[i].key, value, rc);
        ck_assert_str_eq(err, want);
        char *after = to_json(cfg);
        ck_assert_str_eq(after, before);
        free(after);
        free(value);
        free(file);
    }

    /* What a file cannot say. */
    char err[512];
    static const char *const bad_keys[] = {"",           ".",           "etcd.",
                                           ".etcd",      "etcd..x",     "services[",
                                           "services[]", "services[x]", "services[0"};
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++)
        ck_assert_msg(resolver_config_set(cfg, bad_keys[i], "1", err, sizeof(err)) ==
                          RESOLVER_ERR_INVALID,
                      "key \"%s\" accepted", bad_keys[i]);
    ck_assert_int_eq(resolver_config_set(cfg, "services[1].policy", "random", err, sizeof(err)),
                     RESOLVER_ERR_CONFIG);
    ck_assert_str_eq(err, "services[1]: no such element (the list has 1)");
    ck_assert_int_eq(resolver_config_set(cfg, "zone[0]", "a", err, sizeof(err)),
                     RESOLVER_ERR_CONFIG);
    ck_assert_str_eq(err, "zone[0]: no such element (the list has 0)");
    ck_assert_int_eq(resolver_config_set(cfg, "etcd", "{\"dial_timeout_ms\":", err, sizeof(err)),
                     RESOLVER_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "etcd: invalid JSON at column"));
    ck_assert_int_eq(resolver_config_set(cfg, "zone", "\xff", err, sizeof(err)),
                     RESOLVER_ERR_CONFIG);
    ck_assert_str_eq(err, "zone: the value is not UTF-8 text");
    ck_assert_int_eq(resolver_config_set(NULL, "zone", "a", err, sizeof(err)),
                     RESOLVER_ERR_INVALID);
    ck_assert_int_eq(resolver_config_set(cfg, NULL, "a", err, sizeof(err)), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(resolver_config_set(cfg, "zone", NULL, NULL, 0), RESOLVER_ERR_INVALID);
    char *after = to_json(cfg);
    ck_assert_str_eq(after, before);
    free(after);
    free(before);
    resolver_config_free(cfg);
}
END_TEST

START_TEST(test_add_remove_service)
{
    resolver_config *cfg = NULL;
    char err[512], *opts;
    ck_assert_int_eq(resolver_config_new_default(&cfg), 0);
    set_ok(cfg, "defaults.keepalive_time_ms", "15000");
    opts = dq("{'policy': 'least_request', 'backoff': {'max_ms': 5000}}");
    ck_assert_int_eq(resolver_config_add_service(cfg, "user.rpc", opts, err, sizeof(err)), 0);
    free(opts);
    opts = dq("{'name': 'order.rpc', 'prefix': '/svc/order/'}");
    ck_assert_int_eq(resolver_config_add_service(cfg, NULL, opts, err, sizeof(err)), 0);
    ck_assert_int_eq(resolver_config_add_service(cfg, "order.rpc", opts, err, sizeof(err)),
                     RESOLVER_ERR_CONFIG);
    ck_assert_str_eq(err, "services[2].name: duplicate service \"order.rpc\" (see services[1])");
    ck_assert_int_eq(resolver_config_add_service(cfg, "pay", opts, err, sizeof(err)),
                     RESOLVER_ERR_INVALID);
    ck_assert_str_eq(err, "services[2].name: the options name another service than \"pay\"");
    free(opts);
    ck_assert_int_eq(resolver_config_add_service(cfg, "pay", NULL, err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg->n_services, 3);

    resolver_config *file =
        load_ok("{'defaults': {'keepalive_time_ms': 15000}, 'services': ["
                "{'name': 'user.rpc', 'policy': 'least_request', 'backoff': {'max_ms': 5000}},"
                "{'name': 'order.rpc', 'prefix': '/svc/order/'}, {'name': 'pay'}]}");
    ck_assert(rsv_config_equal(cfg, file));
    resolver_config_free(file);
    const rsv_service_config *u = rsv_config_find_service(cfg, "user.rpc");
    ck_assert_str_eq(u->prefix, "user.rpc/");
    ck_assert_uint_eq(u->options.keepalive_time_ms, 15000);
    ck_assert_uint_eq(u->options.backoff.max_ms, 5000);

    /* The file's messages, with the new element's path. */
    static const struct {
        const char *name, *options, *file;
    } bad_options[] = {
        {"x", "{'policy': 'fast'}",
         "{'services': [{'name': 'a'}, {'name': 'b'}, {'name': 'c'}, {'name': 'x', 'policy': "
         "'fast'}]}"},
        {"x", "{'polcy': 'random'}",
         "{'services': [{'name': 'a'}, {'name': 'b'}, {'name': 'c'}, {'name': 'x', 'polcy': "
         "'random'}]}"},
        {"x", "{'prefix': ''}",
         "{'services': [{'name': 'a'}, {'name': 'b'}, {'name': 'c'}, {'name': 'x', 'prefix': "
         "''}]}"},
        {"x y", "", "{'services': [{'name': 'a'}, {'name': 'b'}, {'name': 'c'}, {'name': 'x y'}]}"},
        {NULL, "5", "{'services': [{'name': 'a'}, {'name': 'b'}, {'name': 'c'}, 5]}"},
        {NULL, "{'prefix': 'p/'}",
         "{'services': [{'name': 'a'}, {'name': 'b'}, {'name': 'c'}, {'prefix': 'p/'}]}"},
    };
    char *before = to_json(cfg);
    for (size_t i = 0; i < sizeof(bad_options) / sizeof(bad_options[0]); i++) {
        char want[512] = "", *o = dq(bad_options[i].options), *fixed = dq(bad_options[i].file);
        resolver_config *other = NULL;
        ck_assert_int_eq(resolver_config_load_string(fixed, &other, want, sizeof(want)),
                         RESOLVER_ERR_CONFIG);
        ck_assert_int_eq(resolver_config_add_service(cfg, bad_options[i].name, o, err, sizeof(err)),
                         RESOLVER_ERR_CONFIG);
        ck_assert_str_eq(err, want);
        char *after = to_json(cfg);
        ck_assert_str_eq(after, before);
        free(after);
        free(o);
        free(fixed);
    }
    free(before);
    ck_assert_int_eq(resolver_config_add_service(cfg, "x", "{", err, sizeof(err)),
                     RESOLVER_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "services[3]: invalid JSON at column"));
    ck_assert_int_eq(resolver_config_add_service(NULL, "x", NULL, err, sizeof(err)),
                     RESOLVER_ERR_INVALID);
    ck_assert_int_eq(resolver_config_add_service(cfg, NULL, NULL, err, sizeof(err)),
                     RESOLVER_ERR_INVALID);

    ck_assert_int_eq(resolver_config_remove_service(cfg, "order.rpc"), 0);
    ck_assert_int_eq(resolver_config_remove_service(cfg, "order.rpc"), RESOLVER_ERR_NOT_FOUND);
    ck_assert_int_eq(resolver_config_remove_service(cfg, NULL), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(resolver_config_remove_service(NULL, "pay"), RESOLVER_ERR_INVALID);
    ck_assert_uint_eq(cfg->n_services, 2);
    ck_assert_str_eq(cfg->services[1].name, "pay");
    set_ok(cfg, "services[1].policy", "random");
    ck_assert_int_eq(rsv_config_find_service(cfg, "pay")->options.policy, RSV_POLICY_RANDOM);
    ck_assert_int_eq(resolver_config_remove_service(cfg, "user.rpc"), 0);
    ck_assert_int_eq(resolver_config_remove_service(cfg, "pay"), 0);
    ck_assert_uint_eq(cfg->n_services, 0);
    ck_assert_int_eq(resolver_config_add_service(cfg, "again", NULL, err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg->n_services, 1);
    resolver_config_free(cfg);
}
END_TEST

/* ---- the effective configuration as JSON ------------------------------ */

static void assert_round_trip(resolver_config *cfg)
{
    char *json = NULL, err[512];
    resolver_config *again = NULL;
    ck_assert_int_eq(rsv_config_to_json(cfg, &json), 0);
    ck_assert_ptr_nonnull(json);
    ck_assert_msg(resolver_config_load_string(json, &again, err, sizeof(err)) == 0, "%s\n%s", err,
                  json);
    ck_assert_msg(rsv_config_equal(cfg, again), "round trip differs:\n%s", json);
    /* and the text is a fixed point */
    char *json2 = NULL;
    ck_assert_int_eq(rsv_config_to_json(again, &json2), 0);
    ck_assert_str_eq(json, json2);
    free(json);
    free(json2);
    resolver_config_free(again);
}

START_TEST(test_to_json_round_trip)
{
    resolver_config *cfg = load_ok(overrides);
    assert_round_trip(cfg);
    resolver_config_free(cfg);
    cfg = load_ok("{}");
    assert_round_trip(cfg);
    /* odd reals and a string that did not come from JSON */
    cfg->defaults.backoff.multiplier = 4.0 / 3.0;
    cfg->defaults.backoff.jitter = 0.1;
    free(cfg->zone);
    cfg->zone = strdup("z\"one\n");
    assert_round_trip(cfg);
    resolver_config_free(cfg);
}
END_TEST

START_TEST(test_dns_servers)
{
    resolver_config *cfg = load_ok("{}");
    ck_assert_uint_eq(cfg->dns.n_servers, 0); /* the system's */
    resolver_config *with =
        load_ok("{'dns': {'servers': ['10.0.0.53', '[fd00::53]:5353', '::1', '127.0.0.1:53']}}");
    ck_assert_uint_eq(with->dns.n_servers, 4);
    ck_assert_str_eq(with->dns.servers[0], "10.0.0.53");
    ck_assert_str_eq(with->dns.servers[1], "[fd00::53]:5353");
    ck_assert_str_eq(with->dns.servers[2], "::1");
    ck_assert_str_eq(with->dns.servers[3], "127.0.0.1:53");
    ck_assert(!rsv_config_dns_equal(cfg, with));
    ck_assert(!rsv_config_equal(cfg, with));
    assert_round_trip(with);
    char *json = NULL;
    ck_assert_int_eq(rsv_config_to_json(cfg, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"dns\": {\n    \"servers\": []\n  }"));
    free(json);
    resolver_config *again = load_ok("{'dns': {'servers': ['10.0.0.53', '[fd00::53]:5353', "
                                     "'::1', '127.0.0.1:53']}}");
    ck_assert(rsv_config_dns_equal(with, again));
    resolver_config_free(again);
    resolver_config_free(with);
    resolver_config_free(cfg);
}
END_TEST

START_TEST(test_to_json_content)
{
    resolver_config *cfg = load_ok(overrides);
    char *json = NULL;
    ck_assert_int_eq(rsv_config_to_json(cfg, &json), 0);
    ck_assert_ptr_null(strstr(json, "\"password\"")); /* never a secret */
    ck_assert_ptr_nonnull(strstr(json, "\"password_file\": \"/etc/resolverd/etcd.pass\""));
    ck_assert_ptr_nonnull(strstr(json, "\"mode\": \"0600\""));
    ck_assert_ptr_nonnull(strstr(json, "\"multiplier\": 1.6,")); /* not 1.6000000000000001 */
    ck_assert_ptr_nonnull(strstr(json, "\"policy\": \"least_request\""));
    ck_assert_ptr_nonnull(strstr(json, "\"grpc_service\": null"));
    ck_assert_ptr_nonnull(strstr(json, "\"grpc_service\": \"order.v1.Order\""));
    free(json);
    resolver_config_free(cfg);

    /* a string set directly that is not UTF-8 is written, not an error */
    ck_assert_int_eq(resolver_config_new_default(&cfg), 0);
    free(cfg->zone);
    cfg->zone = strdup("caf\xe9");
    ck_assert_int_eq(rsv_config_to_json(cfg, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"zone\": \"caf?\""));
    free(json);
    resolver_config_free(cfg);
}
END_TEST

/* ---- helpers ---------------------------------------------------------- */

START_TEST(test_names)
{
    static const char *const policies[] = {"pick_first",    "round_robin", "weighted_round_robin",
                                           "least_request", "ring_hash",   "random",
                                           "least_latency"};
    for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
        rsv_policy p;
        ck_assert_int_eq(rsv_policy_parse(policies[i], &p), 0);
        ck_assert_str_eq(rsv_policy_name(p), policies[i]);
    }
    static const char *const protocols[] = {"h2c", "h2", "tcp"};
    for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++) {
        rsv_protocol p;
        ck_assert_int_eq(rsv_protocol_parse(protocols[i], &p), 0);
        ck_assert_str_eq(rsv_protocol_name(p), protocols[i]);
    }
    rsv_policy p;
    rsv_protocol q;
    ck_assert_int_eq(rsv_policy_parse("fastest", &p), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(rsv_policy_parse(NULL, &p), RESOLVER_ERR_INVALID);
    ck_assert_int_eq(rsv_protocol_parse("h3", &q), RESOLVER_ERR_INVALID);
    ck_assert_str_eq(rsv_policy_name((rsv_policy)99), "unknown");
    ck_assert_str_eq(rsv_protocol_name((rsv_protocol)99), "unknown");
}
END_TEST

START_TEST(test_options_copy_clear_equal)
{
    rsv_service_options a, b;
    rsv_service_options_default(&a);
    assert_default_options(&a);
    a.health_grpc_service = strdup("svc");
    ck_assert_int_eq(rsv_service_options_copy(&b, &a), 0);
    ck_assert_ptr_ne(a.health_grpc_service, b.health_grpc_service);
    ck_assert(rsv_service_options_equal(&a, &b));
    b.backoff.jitter = 0.3;
    ck_assert(!rsv_service_options_equal(&a, &b));
    b.backoff.jitter = a.backoff.jitter;
    free(b.health_grpc_service);
    b.health_grpc_service = NULL;
    ck_assert(!rsv_service_options_equal(&a, &b));
    rsv_service_options_clear(&a);
    ck_assert_ptr_null(a.health_grpc_service);
    rsv_service_options_clear(&b);
    rsv_service_options_clear(NULL);
}
END_TEST

START_TEST(test_service_name_valid)
{
    char long_name[RSV_SERVICE_NAME_MAX + 2];
    ck_assert(rsv_service_name_valid("user.rpc"));
    ck_assert(rsv_service_name_valid("/microservices/user"));
    ck_assert(!rsv_service_name_valid(""));
    ck_assert(!rsv_service_name_valid(NULL));
    ck_assert(!rsv_service_name_valid("a b"));
    ck_assert(!rsv_service_name_valid("a\x7f"));
    /* Names become metric labels and JSON strings: nothing to escape. */
    ck_assert(!rsv_service_name_valid("q\"}"));
    ck_assert(!rsv_service_name_valid("a\\b"));
    ck_assert(!rsv_service_name_valid("evil\nresolver_tickets_leaked_total 1"));
    ck_assert(rsv_service_name_valid("caf\xc3\xa9"));
    ck_assert(!rsv_service_name_valid("caf\xc3"));          /* truncated */
    ck_assert(!rsv_service_name_valid("\xc0\xaf"));         /* overlong '/' */
    ck_assert(!rsv_service_name_valid("\xed\xa0\x80"));     /* a surrogate */
    ck_assert(!rsv_service_name_valid("\xf4\x90\x80\x80")); /* past U+10FFFF */
    ck_assert(rsv_service_name_valid("\xf0\x9f\x98\x80"));
    ck_assert(rsv_service_name_valid("kitex.echo-v2_x:1@zone"));
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    ck_assert(!rsv_service_name_valid(long_name));
    long_name[RSV_SERVICE_NAME_MAX] = '\0';
    ck_assert(rsv_service_name_valid(long_name));
}
END_TEST

START_TEST(test_config_equal)
{
    resolver_config *a = load_ok(overrides), *b = load_ok(overrides);
    ck_assert(rsv_config_equal(a, b));
    b->socket.mode = 0666;
    ck_assert(!rsv_config_equal(a, b));
    b->socket.mode = a->socket.mode;
    b->services[1].options.max_outstanding++;
    ck_assert(!rsv_config_equal(a, b));
    b->services[1].options.max_outstanding--;
    free(b->etcd.endpoints[1]);
    b->etcd.endpoints[1] = strdup("http://other:2379");
    ck_assert(!rsv_config_equal(a, b));
    free(b->etcd.endpoints[1]);
    b->etcd.endpoints[1] = strdup(a->etcd.endpoints[1]);
    b->n_services--;
    ck_assert(!rsv_config_equal(a, b));
    b->n_services++;
    ck_assert(rsv_config_equal(a, b));
    resolver_config_free(a);
    resolver_config_free(b);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    tcase_add_test(tc, test_empty_object_is_all_defaults);
    tcase_add_test(tc, test_new_default_equals_empty_object);
    tcase_add_test(tc, test_product_example);
    tcase_add_test(tc, test_overrides_and_inheritance);
    tcase_add_test(tc, test_mode_forms);
    tcase_add_test(tc, test_self_preservation_keys);
    tcase_add_test(tc, test_accepted_edge_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_loop_test(tc, test_bad_input, 0, (int)(sizeof(bad) / sizeof(bad[0])));
    tcase_add_test(tc, test_duration_bounds);
    tcase_add_test(tc, test_credentials_directory);
    tcase_add_test(tc, test_ms_to_int);
    tcase_add_test(tc, test_register_defaults);
    tcase_add_test(tc, test_register_errors);
    tcase_add_test(tc, test_registration_build);
    tcase_add_test(tc, test_json_error_position);
    tcase_add_test(tc, test_control_characters_in_messages);
    tcase_add_test(tc, test_error_buffer);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_add_test(tc, test_load_file);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_contrib_example);
    suite_add_tcase(s, tc);

    tc = tcase_create("endpoints");
    tcase_add_test(tc, test_set_endpoints);
    tcase_add_test(tc, test_set_keys);
    tcase_add_test(tc, test_set_errors);
    tcase_add_test(tc, test_add_remove_service);
    suite_add_tcase(s, tc);

    tc = tcase_create("json");
    tcase_add_test(tc, test_to_json_round_trip);
    tcase_add_test(tc, test_to_json_content);
    tcase_add_test(tc, test_dns_servers);
    suite_add_tcase(s, tc);

    tc = tcase_create("helpers");
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_options_copy_clear_equal);
    tcase_add_test(tc, test_service_name_valid);
    tcase_add_test(tc, test_config_equal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
