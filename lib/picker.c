/* picker.c - see picker.h. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "instance.h"
#include "picker.h"
#include "random.h"

typedef struct {
    uint64_t hash;
    uint32_t index;
} ring_entry;

#define SEQUENCE_STRIPES 8

struct rsv_picker {
    rsv_policy policy;
    uint32_t choice_count;
    uint32_t max_outstanding;
    size_t n;
    rsv_instance **instances;
    uint16_t *stride_weights; /* weighted_round_robin */
    ring_entry *ring;         /* ring_hash */
    size_t ring_len;
    uint64_t ticket_timeout_ms;
    uint64_t latency_decay_ms; /* least_latency */
    int error;
    char reason[300];
    /* round_robin and weighted_round_robin: one sequence per stripe, each
     * alone on its cache line (64 bytes apart, away from the fields every
     * pick reads).  A thread always uses the same stripe, so one thread
     * sees an exact rotation, and threads on different stripes never
     * write the same line: with one shared counter two picking threads
     * paid ~40 ns a pick for the cache line moving between their cores.
     * Each stripe rotates over every instance from its own start, so the
     * shares stay exact. */
    char pad[64];
    struct {
        atomic_uint_fast64_t value;
        char pad[64 - sizeof(atomic_uint_fast64_t)];
    } sequence[SEQUENCE_STRIPES];
};

/* The stripe of the calling thread: threads are numbered in the order of
 * their first pick, so the first SEQUENCE_STRIPES threads never share. */
static unsigned thread_stripe(void)
{
    static atomic_uint next_thread;
    static __thread unsigned stripe_plus_one;
    if (stripe_plus_one == 0)
        stripe_plus_one = atomic_fetch_add(&next_thread, 1) % SEQUENCE_STRIPES + 1;
    return stripe_plus_one - 1;
}

static uint64_t next_sequence(rsv_picker *p)
{
    return atomic_fetch_add_explicit(&p->sequence[thread_stripe()].value, 1, memory_order_relaxed);
}

/* ---- XXH64, from the published specification ---- */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t read64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian hosts only, as all we build for */
}

static uint32_t read32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t xxh_round(uint64_t acc, uint64_t input)
{
    acc += input * P2;
    acc = rotl(acc, 31);
    return acc * P1;
}

static uint64_t xxh_merge(uint64_t acc, uint64_t val)
{
    acc ^= xxh_round(0, val);
    return acc * P1 + P4;
}

uint64_t rsv_xxh64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data, *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
        for (; p + 32 <= end; p += 32) {
            v1 = xxh_round(v1, read64(p));
            v2 = xxh_round(v2, read64(p + 8));
            v3 = xxh_round(v3, read64(p + 16));
            v4 = xxh_round(v4, read64(p + 24));
        }
        h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = seed + P5;
    }
    h += (uint64_t)len;
    for (; p + 8 <= end; p += 8)
        h = rotl(h ^ xxh_round(0, read64(p)), 27) * P1 + P4;
    if (p + 4 <= end) {
        h = rotl(h ^ ((uint64_t)read32(p) * P1), 23) * P2 + P3;
        p += 4;
    }
    for (; p < end; p++)
        h = rotl(h ^ (*p * P5), 11) * P1;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

/* ---- building ---- */

static int build_stride(rsv_picker *p)
{
    uint32_t max = 1;
    for (size_t i = 0; i < p->n; i++)
        if (p->instances[i]->endpoint.weight > max)
            max = p->instances[i]->endpoint.weight;
    p->stride_weights = calloc(p->n ? p->n : 1, sizeof(uint16_t));
    if (!p->stride_weights)
        return -1;
    for (size_t i = 0; i < p->n; i++) {
        uint64_t w = p->instances[i]->endpoint.weight ? p->instances[i]->endpoint.weight : 1;
        uint64_t scaled = (w * 65535 + max / 2) / max;
        p->stride_weights[i] = (uint16_t)(scaled ? scaled : 1);
    }
    return 0;
}

static int by_hash(const void *a, const void *b)
{
    const ring_entry *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

/* Each instance gets RING_POINTS_PER_WEIGHT points per unit of its weight
 * relative to the lightest, hashed from "address_k".  The count depends on
 * nothing but the instance's own weight, so when an instance leaves only its
 * own points go and only its keys move (gRPC sizes the ring from the set,
 * which moves keys between the instances that stay).  Rings larger than
 * RSV_RING_MAX (more than ~32 equal instances) are scaled down. */
#define RING_POINTS_PER_WEIGHT 128

static int build_ring(rsv_picker *p)
{
    uint32_t min_w = UINT32_MAX;
    for (size_t i = 0; i < p->n; i++) {
        uint32_t w = p->instances[i]->endpoint.weight ? p->instances[i]->endpoint.weight : 1;
        if (w < min_w)
            min_w = w;
    }
    double total = 0;
    for (size_t i = 0; i < p->n; i++) {
        uint32_t w = p->instances[i]->endpoint.weight ? p->instances[i]->endpoint.weight : 1;
        total += (double)RING_POINTS_PER_WEIGHT * w / min_w;
    }
    double scale = total > RSV_RING_MAX ? RSV_RING_MAX / total : 1.0;
    size_t cap = (size_t)(total * scale) + p->n + 1;
    p->ring = malloc(cap * sizeof(*p->ring));
    if (!p->ring)
        return -1;
    for (size_t i = 0; i < p->n; i++) {
        uint32_t w = p->instances[i]->endpoint.weight ? p->instances[i]->endpoint.weight : 1;
        size_t count = (size_t)((double)RING_POINTS_PER_WEIGHT * w / min_w * scale + 0.5);
        if (count == 0)
            count = 1;
        for (size_t k = 0; k < count && p->ring_len < cap; k++) {
            char label[RESOLVER_HOST_MAX + 32];
            int len =
                snprintf(label, sizeof(label), "%s_%zu", p->instances[i]->endpoint.address, k);
            p->ring[p->ring_len].hash = rsv_xxh64(label, (size_t)len, 0);
            p->ring[p->ring_len].index = (uint32_t)i;
            p->ring_len++;
        }
    }
    qsort(p->ring, p->ring_len, sizeof(*p->ring), by_hash);
    return 0;
}

rsv_picker *rsv_picker_new(rsv_policy policy, uint32_t choice_count, uint32_t max_outstanding,
                           rsv_instance *const *instances, size_t n)
{
    rsv_picker *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->policy = policy;
    p->choice_count = choice_count < 2 ? 2 : choice_count > 10 ? 10 : choice_count;
    p->max_outstanding = max_outstanding;
    p->instances = malloc((n ? n : 1) * sizeof(*p->instances));
    if (!p->instances)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        p->instances[i] = instances[i];
        rsv_instance_ref(instances[i]);
    }
    p->n = n;
    for (size_t i = 0; i < SEQUENCE_STRIPES; i++)
        atomic_init(&p->sequence[i].value, rsv_random() % (n ? n : 1));
    if (policy == RSV_POLICY_WEIGHTED_ROUND_ROBIN && build_stride(p) != 0)
        goto fail;
    if (policy == RSV_POLICY_RING_HASH && n > 0 && build_ring(p) != 0)
        goto fail;
    return p;
fail:
    rsv_picker_free(p);
    return NULL;
}

void rsv_picker_free(void *arg)
{
    rsv_picker *p = arg;
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        rsv_instance_unref(p->instances[i]);
    free(p->instances);
    free(p->stride_weights);
    free(p->ring);
    free(p);
}

void rsv_picker_set_reason(rsv_picker *p, int error, const char *reason)
{
    p->error = error;
    snprintf(p->reason, sizeof(p->reason), "%s", reason);
}

int rsv_picker_reason(const rsv_picker *p, const char **reason)
{
    *reason = p->reason;
    return p->error;
}

void rsv_picker_set_ticket_timeout(rsv_picker *p, uint64_t ms)
{
    p->ticket_timeout_ms = ms;
}

uint64_t rsv_picker_ticket_timeout(const rsv_picker *p)
{
    return p->ticket_timeout_ms;
}

void rsv_picker_set_latency_decay(rsv_picker *p, uint64_t ms)
{
    p->latency_decay_ms = ms;
}

uint32_t rsv_picker_max_outstanding(const rsv_picker *p)
{
    return p->max_outstanding;
}

size_t rsv_picker_size(const rsv_picker *p)
{
    return p ? p->n : 0;
}

rsv_policy rsv_picker_policy(const rsv_picker *p)
{
    return p->policy;
}

/* ---- picking ---- */

static int has_room(const rsv_picker *p, const rsv_instance *inst)
{
    return p->max_outstanding == 0 || atomic_load(&inst->outstanding) < p->max_outstanding;
}

/* The first instance with room at or after `start`, cyclically. */
static rsv_instance *first_with_room(const rsv_picker *p, size_t start)
{
    for (size_t k = 0; k < p->n; k++) {
        rsv_instance *inst = p->instances[(start + k) % p->n];
        if (has_room(p, inst))
            return inst;
    }
    return NULL;
}

/* gRPC's static stride scheduler: backend i is chosen in a generation when
 * (w_i * generation + offset_i) mod 65535 >= 65535 - w_i, i.e. a share
 * w_i/65535 of the generations, spread evenly.  One atomic add per try. */
static size_t pick_stride(rsv_picker *p)
{
    const uint64_t max_weight = 65535, offset_step = max_weight / 2;
    for (int tries = 0; tries < 1 << 20; tries++) {
        uint64_t seq = next_sequence(p);
        uint64_t index = seq % p->n, generation = seq / p->n;
        uint64_t weight = p->stride_weights[index];
        uint16_t offset = (uint16_t)(offset_step * index);
        if ((weight * generation + offset) % max_weight >= max_weight - weight)
            return (size_t)index;
    }
    return (size_t)(next_sequence(p) % p->n);
}

static rsv_instance *pick_least_request(rsv_picker *p)
{
    rsv_instance *best = NULL;
    unsigned best_load = 0;
    for (uint32_t c = 0; c < p->choice_count; c++) {
        rsv_instance *inst = p->instances[rsv_random() % p->n];
        unsigned load = atomic_load(&inst->outstanding);
        if (!has_room(p, inst))
            continue;
        if (!best || load < best_load) {
            best = inst;
            best_load = load;
        }
    }
    return best ? best : first_with_room(p, (size_t)(rsv_random() % p->n));
}

/* ---- least_latency: peak-EWMA (the average is instance.h's) ---- */

/* latency_ms comes in whole ms, 0 meaning under 1: averages below half a
 * ms count as half a ms, so that outstanding picks still weigh on
 * instances reported at 0 ms and on those without samples. */
#define LATENCY_FLOOR_MS 0.5

static double latency_cost(const rsv_picker *p, const rsv_instance *inst, uint64_t now)
{
    double avg = rsv_instance_latency_estimate(inst, now, p->latency_decay_ms);
    if (avg < LATENCY_FLOOR_MS)
        avg = LATENCY_FLOOR_MS;
    return avg * ((double)atomic_load(&inst->outstanding) + 1.0);
}

/* A random index of [0, n) not among drawn[0..c), c < n. */
static size_t draw_another(const size_t *drawn, size_t c, size_t n)
{
    for (;;) {
        size_t i = (size_t)(rsv_random() % n), k = 0;
        while (k < c && drawn[k] != i)
            k++;
        if (k == c)
            return i;
    }
}

/* The cheapest of choice_count distinct instances (drawing with
 * replacement, one of 3 instances would be the only choice 1/9 of the
 * time, however slow); all of them, from a random one on so that ties
 * spread, when there are no more. */
static rsv_instance *pick_least_latency(rsv_picker *p)
{
    uint64_t now = rsv_latency_clock_us();
    size_t drawn[10], count = p->choice_count < p->n ? p->choice_count : p->n;
    size_t start = (size_t)(rsv_random() % p->n);
    rsv_instance *best = NULL;
    double best_cost = 0;
    for (size_t c = 0; c < count; c++) {
        size_t i = count == p->n ? (start + c) % p->n : draw_another(drawn, c, p->n);
        drawn[c] = i;
        rsv_instance *inst = p->instances[i];
        if (!has_room(p, inst))
            continue;
        double cost = latency_cost(p, inst, now);
        if (!best || cost < best_cost) {
            best = inst;
            best_cost = cost;
        }
    }
    return best ? best : first_with_room(p, (size_t)(rsv_random() % p->n));
}

static rsv_instance *pick_ring(rsv_picker *p, const char *key)
{
    uint64_t h = key ? rsv_xxh64(key, strlen(key), 0) : rsv_random();
    size_t lo = 0, hi = p->ring_len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p->ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Walk on from the key's point past instances that are full. */
    for (size_t k = 0; k < p->ring_len; k++) {
        rsv_instance *inst = p->instances[p->ring[(lo + k) % p->ring_len].index];
        if (has_room(p, inst))
            return inst;
    }
    return NULL;
}

rsv_instance *rsv_picker_pick(rsv_picker *p, const char *key)
{
    if (!p || p->n == 0)
        return NULL;
    rsv_instance *inst = NULL;
    switch (p->policy) {
    case RSV_POLICY_PICK_FIRST:
        inst = first_with_room(p, 0);
        break;
    case RSV_POLICY_RANDOM:
        inst = first_with_room(p, (size_t)(rsv_random() % p->n));
        break;
    case RSV_POLICY_LEAST_REQUEST:
        inst = pick_least_request(p);
        break;
    case RSV_POLICY_LEAST_LATENCY:
        inst = pick_least_latency(p);
        break;
    case RSV_POLICY_RING_HASH:
        inst = pick_ring(p, key);
        break;
    case RSV_POLICY_WEIGHTED_ROUND_ROBIN: {
        size_t i = pick_stride(p);
        inst = has_room(p, p->instances[i]) ? p->instances[i] : first_with_room(p, i);
        break;
    }
    case RSV_POLICY_ROUND_ROBIN:
    default:
        inst = first_with_room(p, (size_t)(next_sequence(p) % p->n));
        break;
    }
    if (inst) {
        atomic_fetch_add(&inst->outstanding, 1);
        atomic_fetch_add(&inst->picks, 1);
        rsv_instance_ref(inst);
    }
    return inst;
}
