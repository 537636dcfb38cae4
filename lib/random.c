/* random.c - see random.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/random.h>
#include <sys/types.h>
#include "clock.h"
#include "random.h"

__thread uint64_t rsv_random_state;

void rsv_random_seed(void)
{
    uint64_t seed = 0;
    /* Each thread draws its own seed, so that processes (and threads)
     * retrying together after one event spread their retries. */
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
        seed = rsv_clock_us() ^ ((uint64_t)(uintptr_t)&rsv_random_state * 0x9e3779b97f4a7c15ull);
    rsv_random_state = seed ? seed : 0x2545f4914f6cdd1dull;
}
