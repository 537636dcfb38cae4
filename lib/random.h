/*
 * random.h - the library's one PRNG: xorshift64*, one state per thread, no
 * locks, seeded from getrandom() at a thread's first draw.  For jitter and
 * load spreading only, never for anything secret.  static inline: pickers
 * draw per pick.
 *
 * Close rule: no object; a thread's state lives as long as the thread and
 * holds no memory.
 */
#ifndef RSV_RANDOM_H
#define RSV_RANDOM_H

#include <stdint.h>

/* Defined in random.c.  Hidden and local-dynamic, as a static __thread
 * would be: the same TLS access on the pick path as a file-local state. */
extern __thread uint64_t rsv_random_state
    __attribute__((visibility("hidden"), tls_model("local-dynamic")));
/* Seeds this thread's state (never to 0). */
void rsv_random_seed(void);

/* A uniform 64-bit draw. */
static inline uint64_t rsv_random(void)
{
    uint64_t x = rsv_random_state;
    if (__builtin_expect(x == 0, 0)) {
        rsv_random_seed();
        x = rsv_random_state;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rsv_random_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* A uniform draw in [0,1): the top 53 bits. */
static inline double rsv_random01(void)
{
    return (double)(rsv_random() >> 11) * (1.0 / 9007199254740992.0);
}

#endif
