/*
 * hazard.h - hazard pointers: lets threads read objects that the engine
 * thread replaces (picker snapshots, the service directory) without locks,
 * and lets the engine free a replaced object only once no reader holds it.
 *
 * Rules:
 *  1. A reader calls rsv_hazard_protect(slot, &ptr) to load and protect
 *     the current value of an atomic pointer, uses it, then
 *     rsv_hazard_clear(slot).  Slots are per thread (RESOLVER_HAZARD_SLOTS
 *     of them); a thread's first use registers it (one malloc and a mutex,
 *     once per thread; slots are recycled when the thread exits).
 *  2. The writer stores the new pointer, then rsv_hazard_retire(old,
 *     free_fn): old is freed by a later rsv_hazard_scan (or at once if no
 *     thread protects it), always on the writer's thread.
 *  3. Retired objects belong to a domain (one per engine); a domain is
 *     used by one writer thread only, and free_fn runs on that thread.
 */
#ifndef RESOLVER_HAZARD_H
#define RESOLVER_HAZARD_H

#include <stdatomic.h>
#include <stddef.h>

enum {
    RESOLVER_HAZARD_DIRECTORY = 0,
    RESOLVER_HAZARD_SERVICE = 1,
    RESOLVER_HAZARD_PICKER = 2,
    RESOLVER_HAZARD_METADATA = 3, /* an instance's rsv_metadata, while a pick takes a reference */
    RESOLVER_HAZARD_SLOTS = 4
};

/* Returns the protected value (may be NULL; also NULL when this thread
 * could not register for lack of memory). */
void *rsv_hazard_protect(int slot, _Atomic(void *) *src);
void rsv_hazard_clear(int slot);
/* Publishes `ptr` (found through an object this thread protects) in a slot.
 * The caller must then check that what it found it through is still
 * current, as rsv_hazard_protect does, before relying on it.
 * 0, or RESOLVER_ERR_NOMEM when the thread cannot register. */
int rsv_hazard_set(int slot, void *ptr);

typedef void (*rsv_hazard_free_fn)(void *ptr);
typedef struct rsv_hazard_domain rsv_hazard_domain;

rsv_hazard_domain *rsv_hazard_domain_new(void);
/* Frees everything retired, waiting for readers to let go. */
void rsv_hazard_domain_del(rsv_hazard_domain *d);
/* Schedules ptr for freeing; returns 0 or RESOLVER_ERR_NOMEM (then ptr was
 * freed only after waiting for readers, synchronously). */
int rsv_hazard_retire(rsv_hazard_domain *d, void *ptr, rsv_hazard_free_fn free_fn);
/* Frees every retired object no reader protects. */
void rsv_hazard_scan(rsv_hazard_domain *d);
/* Number of retired objects still waiting (for tests and metrics). */
size_t rsv_hazard_pending(const rsv_hazard_domain *d);

#endif
