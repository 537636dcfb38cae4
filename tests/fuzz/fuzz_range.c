/* fuzz_range.c - range and auth bodies, base64 and request builders on
 * arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "etcdproto.h"
#include "resolver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whatever the bytes, encode then decode gives them back. */
static void base64_roundtrip(const char *s, size_t len)
{
    char *e = rsv_base64_encode(s, len);
    if (!e)
        return;
    size_t n = 0;
    char *d = rsv_base64_decode(e, strlen(e), &n);
    if (!d || n != len || memcmp(d, s, len) != 0 || d[n] != '\0')
        abort();
    free(d);
    free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy so that ASan catches reads past the end. */
    char *s = malloc(size ? size : 1);
    if (!s)
        return 0;
    memcpy(s, data, size);

    rsv_range_result r;
    char why[128];
    int rc = rsv_range_parse(s, size, &r, why, sizeof(why));
    if (rc == 0) {
        for (size_t i = 0; i < r.n_kvs; i++)
            if (r.kvs[i].key[r.kvs[i].key_len] != '\0' ||
                r.kvs[i].value[r.kvs[i].value_len] != '\0')
                abort();
    } else if (rc == RESOLVER_ERR_DECODE && why[0] == '\0') {
        abort();
    }
    rsv_range_result_clear(&r);

    char *token = NULL;
    if (rsv_auth_parse(s, size, &token) == 0 && (!token || !token[0]))
        abort();
    free(token);

    size_t n = 0;
    free(rsv_base64_decode(s, size, &n));
    base64_roundtrip(s, size);

    /* The input as a prefix: the request bodies must stay valid JSON-ish
     * strings (no raw bytes of the key leak into them). */
    char *b = rsv_range_request(s, size, (int64_t)size, 10, NULL, 0);
    if (b &&
        strspn(b, "{}\":,_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=") !=
            strlen(b))
        abort();
    free(b);
    free(rsv_watch_request(s, size, (int64_t)size, size & 1));
    free(s);
    return 0;
}
