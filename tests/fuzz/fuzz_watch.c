/* fuzz_watch.c - the watch stream parser on arbitrary bytes.
 *
 * data[0] picks where the stream is split in two, the message size limit
 * and whether the callback asks to stop; its lowest bit whether the parser
 * stops at a bad message; the rest is the stream.  Every
 * message handed to the callback is read in full, so that a bad pointer or
 * length in it shows up under ASan. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "etcdproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    int stop_every; /* 0: never ask to stop */
    int count;
    size_t sum; /* keeps the reads below from being optimised away */
} fuzz_state;

static int on_message(void *arg, const rsv_watch_message *m)
{
    fuzz_state *st = arg;
    st->count++;
    st->sum += strlen(m->error_message) + strlen(m->cancel_reason) + (size_t)m->cluster_id;
    for (size_t i = 0; i < m->n_events; i++) {
        const rsv_kv *kv = &m->events[i];
        for (size_t j = 0; j <= kv->key_len; j++)
            st->sum += (unsigned char)kv->key[j];
        for (size_t j = 0; j <= kv->value_len; j++)
            st->sum += (unsigned char)kv->value[j];
    }
    return st->stop_every && st->count % st->stop_every == 0 ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    fuzz_state st = {.stop_every = (ctl & 0x80) ? 2 : 0};
    /* Small limits make the over-long path reachable. */
    size_t max = (ctl & 0x40) ? 32 + (size_t)(ctl & 0x3f) * 8 : 0;
    size_t split = len ? (size_t)(ctl & 0x3f) * len / 63 : 0;
    rsv_watch_parser *p = rsv_watch_parser_new(max, on_message, &st);
    if (!p)
        return 0;
    rsv_watch_parser_stop_at_error(p, ctl & 1);
    rsv_watch_parser_feed(p, s, split);
    rsv_watch_parser_feed(p, s + split, len - split);
    rsv_watch_parser_finish(p);
    rsv_watch_parser_error(p);
    /* The same parser, reused byte by byte over a short prefix. */
    for (size_t i = 0; i < len && i < 64; i++)
        rsv_watch_parser_feed(p, s + i, 1);
    rsv_watch_parser_finish(p);
    rsv_watch_parser_del(p);
    return 0;
}
