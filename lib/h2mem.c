/* h2mem.c - see h2mem.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "h2mem.h"

/* nghttp2's allocator for one connection.  An idle client session holds a
 * 16 KiB output buffer of which frames touch the first page, and a 4 KiB
 * stream table that stays all zeros without streams; from malloc they cost
 * their pages (and calloc's memset) in RSS all the same.  Blocks of
 * H2_BIG_BLOCK bytes or more get anonymous pages of their own instead
 * (zero-filled, so calloc needs no memset), which cost RSS only once
 * written: about 4 KiB less RSS per idle subchannel.  Smaller blocks, and big
 * ones beyond H2_BIG_BLOCKS at a time or when mmap fails, use malloc.  The
 * rsv_h2mem is the user data; nghttp2_session_del frees through here
 * before it goes. */
static void *h2_big_alloc(rsv_h2mem *c, size_t n)
{
    if (n < H2_BIG_BLOCK)
        return NULL;
    for (int i = 0; i < H2_BIG_BLOCKS; i++) {
        if (c->big[i].p)
            continue;
        size_t page = 4096, len = (n + page - 1) / page * page;
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        c->big[i].p = p;
        c->big[i].len = len;
        return p;
    }
    return NULL;
}

static int h2_big_index(const rsv_h2mem *c, const void *p)
{
    for (int i = 0; p && i < H2_BIG_BLOCKS; i++)
        if (c->big[i].p == p)
            return i;
    return -1;
}

static void *h2_mem_malloc(size_t n, void *user)
{
    void *p = h2_big_alloc(user, n);
    return p ? p : malloc(n);
}

static void h2_mem_free(void *p, void *user)
{
    rsv_h2mem *c = user;
    int i = h2_big_index(c, p);
    if (i < 0) {
        free(p);
        return;
    }
    munmap(p, c->big[i].len);
    c->big[i].p = NULL;
}

static void *h2_mem_calloc(size_t n, size_t size, void *user)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = h2_big_alloc(user, n * size); /* fresh pages are zeros */
    return p ? p : calloc(n, size);
}

static void *h2_mem_realloc(void *p, size_t n, void *user)
{
    rsv_h2mem *c = user;
    int i = h2_big_index(c, p);
    if (i < 0)
        return realloc(p, n); /* a malloc block stays one (its size is malloc's secret) */
    if (n <= c->big[i].len)
        return p;
    void *q = h2_mem_malloc(n, c);
    if (!q)
        return NULL;
    memcpy(q, p, c->big[i].len);
    h2_mem_free(p, c);
    return q;
}

nghttp2_mem rsv_h2mem_allocator(rsv_h2mem *m)
{
    return (nghttp2_mem){m, h2_mem_malloc, h2_mem_free, h2_mem_calloc, h2_mem_realloc};
}

void rsv_h2mem_release(rsv_h2mem *m)
{
    for (int i = 0; i < H2_BIG_BLOCKS; i++)
        if (m->big[i].p)
            munmap(m->big[i].p, m->big[i].len);
}
