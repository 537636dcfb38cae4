/* fuzz_config.c - libFuzzer target for the JSON configuration parser.
 *
 * Beyond "does not crash", it checks the round trip: whatever loads must be
 * written by rsv_config_to_json as text that loads back into an equal
 * configuration, since resolverd --check-config prints exactly that. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/config.h" /* by path: no other config.h may shadow it */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(const resolver_config *cfg)
{
    char *json = NULL, err[256];
    resolver_config *again = NULL;
    if (rsv_config_to_json(cfg, &json) != 0)
        abort();
    if (resolver_config_load_string(json, &again, err, sizeof(err)) != 0 ||
        !rsv_config_equal(cfg, again))
        abort();
    free(json);
    resolver_config_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), err[256];
    resolver_config *cfg = NULL;
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (resolver_config_load_string(text, &cfg, err, sizeof(err)) == 0) {
        check_round_trip(cfg);
        resolver_config_free(cfg);
    } else if (cfg || !memchr(err, '\0', sizeof(err))) {
        abort(); /* failure must leave no config and a terminated message */
    }
    free(text);
    return 0;
}
