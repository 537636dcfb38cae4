/* instance.c - see instance.h. */
#include <stdlib.h>
#include <string.h>
#include "clock.h"
#include "instance.h"

rsv_instance *rsv_instance_new(const rsv_endpoint *ep, rsv_instance_free_cb on_free)
{
    rsv_instance *inst = calloc(1, sizeof(*inst));
    if (!inst)
        return NULL;
    inst->endpoint = *ep;
    atomic_init(&inst->endpoint.metadata, rsv_metadata_ref(atomic_load(&ep->metadata)));
    inst->on_free = on_free;
    atomic_init(&inst->refs, 1);
    atomic_init(&inst->outstanding, 0);
    atomic_init(&inst->picks, 0);
    atomic_init(&inst->latency_ewma_bits, 0);
    atomic_init(&inst->latency_sampled_us, 0);
    return inst;
}

void rsv_instance_unref(rsv_instance *inst)
{
    if (atomic_fetch_sub(&inst->refs, 1) != 1)
        return;
    if (inst->on_free)
        inst->on_free(inst);
    rsv_endpoint_clear(&inst->endpoint);
    free(inst);
}

/* ---- least_latency: peak-EWMA ---- */

uint64_t rsv_latency_clock_us(void)
{
    uint64_t us = rsv_clock_coarse_us();
    return us ? us : 1; /* 0 means "no sample" */
}

static double bits_to_double(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof(bits));
    return bits;
}

void rsv_instance_latency_sample(rsv_instance *inst, uint32_t ms, uint64_t decay_ms)
{
    rsv_instance_latency_sample_at(inst, ms, decay_ms, rsv_latency_clock_us());
}

void rsv_instance_latency_sample_at(rsv_instance *inst, uint32_t ms, uint64_t decay_ms,
                                    uint64_t now)
{
    /* The exchange hands each sample its own interval since the previous
     * one, so concurrent samples do not count the same time twice. */
    uint64_t prev = atomic_exchange(&inst->latency_sampled_us, now);
    double sample = ms;
    double weight =
        prev == 0 ? 0.0 : rsv_latency_decay_weight(now > prev ? now - prev : 0, decay_ms);
    uint64_t old = atomic_load(&inst->latency_ewma_bits), next;
    do {
        double avg = bits_to_double(old);
        next = double_to_bits(prev == 0 || sample >= avg ? sample
                                                         : avg * weight + sample * (1.0 - weight));
    } while (!atomic_compare_exchange_weak(&inst->latency_ewma_bits, &old, next));
}
