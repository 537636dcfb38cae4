/*
 * hazard.c - see hazard.h.  The thread registry is a linked list of records
 * that is only ever appended to (records are reused, never freed until
 * exit), so readers and the scanner can walk it without locks.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include "hazard.h"
#include "resolver.h"

typedef struct record {
    _Atomic(void *) slot[RESOLVER_HAZARD_SLOTS];
    atomic_int in_use;
    struct record *next; /* immutable once published */
} record;

typedef struct retired {
    void *ptr;
    rsv_hazard_free_fn free_fn;
    struct retired *next;
} retired;

static _Atomic(record *) records;
static pthread_key_t record_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static __thread record *my_record;
/* Retired objects of one writer (an engine), touched only by its thread. */
struct rsv_hazard_domain {
    retired *list;
    size_t count;
};

static void release_record(void *arg)
{
    record *r = arg;
    for (int i = 0; i < RESOLVER_HAZARD_SLOTS; i++)
        atomic_store(&r->slot[i], NULL);
    atomic_store(&r->in_use, 0);
}

static void make_key(void)
{
    pthread_key_create(&record_key, release_record);
}

static record *acquire_record(void)
{
    pthread_once(&key_once, make_key);
    for (record *r = atomic_load(&records); r; r = r->next) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&r->in_use, &expected, 1))
            return r;
    }
    record *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    atomic_store(&r->in_use, 1);
    record *head = atomic_load(&records);
    do {
        r->next = head;
    } while (!atomic_compare_exchange_weak(&records, &head, r));
    return r;
}

static int ensure_record(void)
{
    if (!my_record) {
        my_record = acquire_record();
        if (!my_record)
            return RESOLVER_ERR_NOMEM;
        pthread_setspecific(record_key, my_record);
    }
    return 0;
}

int rsv_hazard_set(int slot, void *ptr)
{
    if (ensure_record() != 0)
        return RESOLVER_ERR_NOMEM;
    atomic_store(&my_record->slot[slot], ptr);
    return 0;
}

void *rsv_hazard_protect(int slot, _Atomic(void *) *src)
{
    if (ensure_record() != 0)
        return NULL;
    void *p = atomic_load(src);
    for (;;) {
        atomic_store(&my_record->slot[slot], p);
        /* Re-read: if it changed between the load and the store, the writer
         * may already have scanned without seeing us. */
        void *again = atomic_load(src);
        if (again == p)
            return p;
        p = again;
    }
}

void rsv_hazard_clear(int slot)
{
    if (my_record)
        atomic_store(&my_record->slot[slot], NULL);
}

static int protected_by_anyone(void *ptr)
{
    for (record *r = atomic_load(&records); r; r = r->next)
        for (int i = 0; i < RESOLVER_HAZARD_SLOTS; i++)
            if (atomic_load(&r->slot[i]) == ptr)
                return 1;
    return 0;
}

void rsv_hazard_scan(rsv_hazard_domain *d)
{
    retired **pp = &d->list;
    while (*pp) {
        retired *r = *pp;
        if (protected_by_anyone(r->ptr)) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        r->free_fn(r->ptr);
        free(r);
        d->count--;
    }
}

int rsv_hazard_retire(rsv_hazard_domain *d, void *ptr, rsv_hazard_free_fn free_fn)
{
    if (!ptr)
        return 0;
    retired *r = malloc(sizeof(*r));
    if (!r) {
        /* No memory to defer: wait for readers (they hold pointers for the
         * length of one pick). */
        while (protected_by_anyone(ptr))
            sched_yield();
        free_fn(ptr);
        return RESOLVER_ERR_NOMEM;
    }
    r->ptr = ptr;
    r->free_fn = free_fn;
    r->next = d->list;
    d->list = r;
    d->count++;
    rsv_hazard_scan(d);
    return 0;
}

size_t rsv_hazard_pending(const rsv_hazard_domain *d)
{
    return d->count;
}

rsv_hazard_domain *rsv_hazard_domain_new(void)
{
    return calloc(1, sizeof(rsv_hazard_domain));
}

void rsv_hazard_domain_del(rsv_hazard_domain *d)
{
    if (!d)
        return;
    while (d->list) {
        rsv_hazard_scan(d);
        if (d->list)
            sched_yield(); /* a reader is finishing a pick */
    }
    free(d);
}
