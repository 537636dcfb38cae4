/*
 * h2mem.h - the nghttp2 allocator of one connection (connection.c): blocks
 * of H2_BIG_BLOCK bytes or more get anonymous pages of their own, which
 * cost RSS only once written (see h2mem.c).
 *
 * Close rule: a value embedded in its connection; rsv_h2mem_release, after
 * nghttp2_session_del, unmaps what is left.  No callbacks.
 */
#ifndef RSV_H2MEM_H
#define RSV_H2MEM_H

#include <stddef.h>
#include <nghttp2/nghttp2.h>

#define H2_BIG_BLOCK 4096
#define H2_BIG_BLOCKS 4

typedef struct {
    struct {
        void *p;
        size_t len;
    } big[H2_BIG_BLOCKS];
} rsv_h2mem;

/* The allocator to give nghttp2_session_client_new3 (user data: m). */
nghttp2_mem rsv_h2mem_allocator(rsv_h2mem *m);
void rsv_h2mem_release(rsv_h2mem *m);

#endif
