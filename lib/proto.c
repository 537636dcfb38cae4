/* proto.c - see proto.h and doc/protocol.md: the client half. */
#include <string.h>
#include "proto.h"
#include "resolver.h"

size_t rsv_proto_escape(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t need = 0, written = 0;
    int full = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        char buf[3] = {(char)*p, 0, 0};
        size_t n = 1;
        if (*p <= 0x20 || *p == 0x7f || *p == '%' || *p == '=') {
            buf[0] = '%';
            buf[1] = hex[*p >> 4];
            buf[2] = hex[*p & 15];
            n = 3;
        }
        /* Never write half an escape: stop at the first token that does
         * not fit whole. */
        if (!full && written + n < outlen) {
            memcpy(out + written, buf, n);
            written += n;
        } else {
            full = 1;
        }
        need += n;
    }
    if (outlen > 0)
        out[written] = '\0';
    return need;
}

int rsv_proto_parse_reply(char *line, rsv_proto_reply *reply)
{
    memset(reply, 0, sizeof(*reply));
    if (strncmp(line, "OK", 2) == 0 && (line[2] == ' ' || line[2] == '\0')) {
        reply->kind = RSV_REPLY_OK;
        reply->payload = line[2] ? line + 3 : "{}";
        return 0;
    }
    if (strncmp(line, "EVENT ", 6) == 0) {
        reply->kind = RSV_REPLY_EVENT;
        reply->payload = line + 6;
        return 0;
    }
    if (strncmp(line, "ERR ", 4) == 0) {
        reply->kind = RSV_REPLY_ERR;
        char *code = line + 4;
        char *sp = strchr(code, ' ');
        if (sp)
            *sp = '\0';
        reply->code = code;
        reply->payload = sp ? sp + 1 : "";
        return 0;
    }
    return RESOLVER_ERR_PROTOCOL;
}

static const struct {
    int err;
    const char *word;
} error_words[] = {
    {RESOLVER_ERR_INVALID, "usage"},         {RESOLVER_ERR_NO_INSTANCE, "no_instance"},
    {RESOLVER_ERR_NONE_READY, "none_ready"}, {RESOLVER_ERR_NOT_FOUND, "not_found"},
    {RESOLVER_ERR_LIMIT, "limit"},           {RESOLVER_ERR_DENIED, "denied"},
    {RESOLVER_ERR_CLOSED, "closed"},         {RESOLVER_ERR_PROTOCOL, "protocol"},
    {RESOLVER_ERR_CONFIG, "config"},         {RESOLVER_ERR_NOMEM, "nomem"},
    {RESOLVER_ERR_TIMEOUT, "timeout"},
};

const char *resolver_error_word(int code)
{
    for (size_t i = 0; i < sizeof(error_words) / sizeof(error_words[0]); i++)
        if (error_words[i].err == code)
            return error_words[i].word;
    return "internal";
}

int rsv_proto_error_from_word(const char *word)
{
    for (size_t i = 0; i < sizeof(error_words) / sizeof(error_words[0]); i++)
        if (strcmp(error_words[i].word, word) == 0)
            return error_words[i].err;
    return RESOLVER_ERR_INTERNAL;
}
