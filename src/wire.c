/* wire.c - see wire.h and doc/protocol.md. */
#include <jansson.h>
#include <string.h>
#include "wire.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Unescapes in place; fails on a bad escape or an escaped NUL (tokens are C
 * strings). */
static int unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        int hi = hex_value(r[1]), lo = hi < 0 ? -1 : hex_value(r[2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -1;
        *w++ = (char)(hi * 16 + lo);
        r += 2;
    }
    *w = '\0';
    return 0;
}

int rsv_proto_split(char *line, rsv_proto_request *req, const char **why)
{
    /* One pass over the line: tokens are cut, control characters refused,
     * and only tokens holding a '%' are unescaped (a pick has none). */
    req->argc = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        if (req->argc == RSV_PROTO_MAX_ARGS) {
            *why = "too many arguments";
            return RESOLVER_ERR_PROTOCOL;
        }
        char *token = p;
        int escaped = 0;
        for (; *p && *p != ' ' && *p != '\t'; p++) {
            unsigned char c = (unsigned char)*p;
            if (c < 0x20 || c == 0x7f) {
                *why = "control character in request (escape it as %XX)";
                return RESOLVER_ERR_PROTOCOL;
            }
            escaped |= c == '%';
        }
        if (*p)
            *p++ = '\0';
        if (escaped && unescape(token) != 0) {
            *why = "bad %XX escape";
            return RESOLVER_ERR_PROTOCOL;
        }
        req->argv[req->argc++] = token;
    }
    if (req->argc == 0) {
        *why = "empty request";
        return RESOLVER_ERR_PROTOCOL;
    }
    return 0;
}

const char *rsv_proto_option(const rsv_proto_request *req, int from, const char *name)
{
    size_t n = strlen(name);
    for (int i = from; i < req->argc; i++)
        if (strncmp(req->argv[i], name, n) == 0 && req->argv[i][n] == '=')
            return req->argv[i] + n + 1;
    return NULL;
}

char *rsv_proto_json_dumps(const json_t *j, size_t flags)
{
    return json_dumps(j, flags | JSON_REAL_PRECISION(15));
}
