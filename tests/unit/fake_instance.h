/*
 * fake_instance.h - an instance as the picker sees one, without a service
 * or a subchannel, for tests and benchmarks of the picker.  The caller
 * allocates it (zeroed: calloc, or __libc_calloc in check_alloc) so that
 * each can choose whose allocation it is; free it with free().
 */
#ifndef RSV_TEST_FAKE_INSTANCE_H
#define RSV_TEST_FAKE_INSTANCE_H

#include <stdatomic.h>
#include <stdio.h>
#include "service.h"

/* Fills the zeroed `inst` as one reference held, nothing outstanding;
 * returns it (NULL if `inst` is NULL). */
static inline rsv_instance *fake_instance_init(rsv_instance *inst, const char *address,
                                               uint32_t weight)
{
    if (!inst)
        return NULL;
    snprintf(inst->endpoint.address, sizeof(inst->endpoint.address), "%s", address);
    inst->endpoint.weight = weight;
    atomic_init(&inst->refs, 1);
    atomic_init(&inst->outstanding, 0);
    atomic_init(&inst->picks, 0);
    atomic_init(&inst->latency_ewma_bits, 0);
    atomic_init(&inst->latency_sampled_us, 0);
    return inst;
}

#endif
