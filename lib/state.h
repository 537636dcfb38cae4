/*
 * state.h - connectivity states (gRPC's), shared by the subchannel that
 * has them and the service and metrics that show them, and the one table
 * of their names.
 *
 * An instance shows its subchannel's state, or one only an instance has:
 * DRAINING (an operator drained it) or STALE (kept by self-preservation).
 * Those two are rsv_shown values after rsv_state's, never a subchannel's.
 *
 * Close rule: values and constant strings only; no memory.
 */
#ifndef RSV_STATE_H
#define RSV_STATE_H

typedef enum {
    RSV_STATE_IDLE = 0,
    RSV_STATE_CONNECTING,
    RSV_STATE_READY,
    RSV_STATE_TRANSIENT_FAILURE,
    RSV_STATE_SHUTDOWN
} rsv_state;

/* What introspection shows: 0..RSV_STATE_SHUTDOWN are rsv_state's. */
enum { RSV_SHOWN_DRAINING = RSV_STATE_SHUTDOWN + 1, RSV_SHOWN_STALE, RSV_SHOWN_COUNT };

/* "IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE", "SHUTDOWN"; "UNKNOWN"
 * for anything else. */
const char *rsv_state_name(rsv_state s);
/* rsv_state_name, and "DRAINING", "STALE" for the rsv_shown values. */
const char *rsv_shown_name(int shown);

#endif
