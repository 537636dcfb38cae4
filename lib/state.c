/* state.c - see state.h. */
#include "state.h"

static const char *const names[RSV_SHOWN_COUNT] = {
    "IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE", "SHUTDOWN", "DRAINING", "STALE",
};

const char *rsv_state_name(rsv_state s)
{
    return (unsigned)s <= RSV_STATE_SHUTDOWN ? names[s] : "UNKNOWN";
}

const char *rsv_shown_name(int shown)
{
    return shown >= 0 && shown < RSV_SHOWN_COUNT ? names[shown] : "UNKNOWN";
}
