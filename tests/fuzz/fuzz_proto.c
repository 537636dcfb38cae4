/* fuzz_proto.c - the socket protocol's request splitter and reply parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "proto.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > RSV_PROTO_LINE_MAX)
        return 0;
    char *line = malloc(size + 1);
    if (!line)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    char *copy = strdup(line);
    rsv_proto_request req;
    const char *why;
    if (rsv_proto_split(line, &req, &why) == 0) {
        rsv_proto_option(&req, 1, "key");
        /* Every token must survive escape + split unchanged. */
        for (int i = 0; i < req.argc; i++) {
            char esc[RSV_PROTO_LINE_MAX * 3 + 1];
            rsv_proto_escape(req.argv[i], esc, sizeof(esc));
            rsv_proto_request again;
            if (rsv_proto_split(esc, &again, &why) != 0 || again.argc != 1 ||
                strcmp(again.argv[0], req.argv[i]) != 0)
                abort();
        }
    }
    rsv_proto_reply reply;
    if (copy)
        rsv_proto_parse_reply(copy, &reply);
    free(copy);
    free(line);
    return 0;
}
