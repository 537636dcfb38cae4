/* backoff.c - see backoff.h. */
#include "backoff.h"

void rsv_backoff_init(rsv_backoff *b, const rsv_backoff_config *cfg)
{
    b->cfg = *cfg;
    /* The configuration module validates; these only keep the arithmetic
     * sane if a caller passes zeros. */
    if (b->cfg.initial_ms == 0)
        b->cfg.initial_ms = 1000;
    if (!(b->cfg.multiplier >= 1.0))
        b->cfg.multiplier = 1.6;
    if (!(b->cfg.jitter >= 0.0))
        b->cfg.jitter = 0.0;
    if (b->cfg.jitter > 1.0)
        b->cfg.jitter = 1.0;
    if (b->cfg.max_ms == 0)
        b->cfg.max_ms = 120000;
    if (b->cfg.max_ms < b->cfg.initial_ms)
        b->cfg.max_ms = b->cfg.initial_ms;
    rsv_backoff_reset(b);
}

void rsv_backoff_reset(rsv_backoff *b)
{
    b->current_ms = (double)b->cfg.initial_ms;
}

uint64_t rsv_backoff_next(rsv_backoff *b, double random01)
{
    double cur = b->current_ms;
    /* Uniform in [cur * (1 - jitter), cur * (1 + jitter)). */
    double delay = cur * (1.0 + b->cfg.jitter * (2.0 * random01 - 1.0));
    double next = cur * b->cfg.multiplier;
    b->current_ms = next < (double)b->cfg.max_ms ? next : (double)b->cfg.max_ms;
    return delay <= 0.0 ? 0 : (uint64_t)(delay + 0.5);
}
