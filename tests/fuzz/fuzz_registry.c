/* fuzz_registry.c - registry value decoders on arbitrary bytes.
 *
 * data[0] picks the format (rsv_format values 0..5; larger values wrap
 * around); the rest is the value, passed without a NUL terminator so that
 * ASan sees any read past its end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "registry.h"
#include "resolver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    rsv_format f = (rsv_format)(data[0] % (RSV_FORMAT_NATIVE + 1));
    size_t len = size - 1;
    /* An exact-size copy: libFuzzer's buffer may be followed by readable
     * bytes, a fresh allocation is not. */
    char *value = malloc(len ? len : 1);
    if (!value)
        return 0;
    memcpy(value, data + 1, len);
    rsv_endpoint ep;
    char why[128];
    int rc = rsv_registry_decode(f, value, len, &ep, why, sizeof(why));
    if (rc == 0) {
        /* A decoded address must parse again to itself. */
        rsv_endpoint again;
        if (rsv_address_parse(ep.address, strlen(ep.address), &again, why, sizeof(why)) != 0 ||
            strcmp(again.address, ep.address) != 0 || ep.weight == 0)
            abort();
        /* Metadata, when kept, is a JSON object's text within its bound. */
        rsv_metadata *m = atomic_load(&ep.metadata);
        if (m && (m->text[0] != '{' || strlen(m->text) > RSV_METADATA_MAX))
            abort();
        rsv_endpoint_clear(&ep);
    } else if (rc != RESOLVER_ERR_DECODE || why[0] == '\0') {
        abort();
    }
    rsv_address_parse(value, len, &ep, why, 1);
    free(value);
    return 0;
}
