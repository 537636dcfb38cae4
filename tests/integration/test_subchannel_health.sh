#!/usr/bin/env bash
# Subchannel health checking (grpc.health.v1.Health) through the daemon:
# real gRPC servers (Debian's python3-grpcio, grpc_health_server.py) that
# switch SERVING/NOT_SERVING, a named service, an unknown one, a server
# without the health service (UNIMPLEMENTED: healthy), one with Check only
# (polled), h2server --health modes and nghttpd (HTTP 404: UNIMPLEMENTED).
set -u
. "$(dirname "$0")/lib.sh"
t_init sc_health
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
t_daemon_env
"$PY" -c 'import grpc' 2>/dev/null || t_skip "python3-grpcio is not installed for $PY"

t_etcd_start e1 || t_done

is_health() { [ "$(field "$1" "$2" health)" = "$3" ]; }
# ready_with SERVICE ADDRESS HEALTH
ready_with() { is_state "$1" "$2" READY && is_health "$1" "$2" "$3"; }
tf_with() { is_state "$1" "$2" TRANSIENT_FAILURE && is_health "$1" "$2" "$3"; }
now_ms() { local us=${EPOCHREALTIME/[.,]/}; echo $((us / 1000)); }


# grpc_start NAME PORT ARGS...: grpc_health_server.py (defined below).
# keepalive_time_ms is 1000 below: allow it (a gRPC server's default
# policy, 5 min and 2 strikes, would answer GOAWAY too_many_pings; that is
# test_subchannel_faults.sh's business).
grpc_start() {
    local name=$1 port=$2
    shift 2
    t_spawn "$name" "$PY" "$HERE/grpc_health_server.py" --port "$port" \
        --min-ping-interval-ms 500 --permit-without-calls "$@"
    t_wait_until 15 listening "$port" || t_fail "$name listens on $port"
}
G1P=$(t_free_port) G2P=$(t_free_port) G3P=$(t_free_port)
grpc_start g1 "$G1P" --service svc.named --status-file "$T_DIR/g1.status"
grpc_start g2 "$G2P" --no-health
grpc_start g3 "$G3P" --no-watch --status-file "$T_DIR/g3.status"
declare -A HP=()
for mode in SERVING NOT_SERVING UNIMPLEMENTED; do
    HP[$mode]=$(t_free_port)
    t_spawn "h2-$mode" "$H2SERVER" --health "$mode" --name "h2-$mode" "${HP[$mode]}"
done
NGP=$(t_free_port)
if command -v nghttpd >/dev/null 2>&1; then
    t_spawn nghttpd nghttpd --no-tls -d "$T_DIR" "$NGP"
fi
for p in "${HP[@]}"; do
    t_wait_until 10 listening "$p" || t_fail "h2server listens on $p"
done
G1=127.0.0.1:$G1P G2=127.0.0.1:$G2P G3=127.0.0.1:$G3P NG=127.0.0.1:$NGP

cat >"$T_DIR/rd.json" <<JSON
{
  "defaults": { "keepalive_time_ms": 1000, "keepalive_timeout_ms": 1000,
                "backoff": { "initial_ms": 200, "max_ms": 1000 } },
  "services": [
    { "name": "hc", "health_check": { "grpc_service": "" } },
    { "name": "named", "health_check": { "grpc_service": "svc.named" } },
    { "name": "unknown", "health_check": { "grpc_service": "no.such.service" } },
    { "name": "nohealth", "health_check": { "grpc_service": "" } },
    { "name": "poll", "health_check": { "grpc_service": "" } },
    { "name": "h2", "health_check": { "grpc_service": "" } },
    { "name": "off" },
    { "name": "aged", "max_connection_age_ms": 700, "health_check": { "grpc_service": "" } }
  ]
}
JSON
t_etcdctl put hc/a "$G1" >/dev/null
t_etcdctl put named/a "$G1" >/dev/null
t_etcdctl put unknown/a "$G1" >/dev/null
t_etcdctl put nohealth/a "$G2" >/dev/null
t_etcdctl put poll/a "$G3" >/dev/null
for mode in SERVING NOT_SERVING UNIMPLEMENTED; do
    t_etcdctl put "h2/$mode" "127.0.0.1:${HP[$mode]}" >/dev/null
done
command -v nghttpd >/dev/null 2>&1 && t_etcdctl put h2/nghttpd "$NG" >/dev/null
t_etcdctl put off/a "$G2" >/dev/null
t_etcdctl put aged/a "$G1" >/dev/null

t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK" \
    --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
t_spawn watch "$RESOLVERCTL" -s "$SOCK" watch

# ---- a real gRPC server: SERVING, NOT_SERVING, SERVING ----
t_wait_for "gRPC SERVING: READY with health SERVING" 10 ready_with hc "$G1" SERVING
t_wait_for "a SERVING instance is picked" 2 picks hc "$G1"
t_check "instances --json shows a health call" test "$(field hc "$G1" connect_attempts)" -ge 1
attempts=$(field hc "$G1" connect_attempts)

echo NOT_SERVING >"$T_DIR/g1.status"
t0=$(now_ms)
t_wait_for "NOT_SERVING: TRANSIENT_FAILURE within 1 s" 1 tf_with hc "$G1" NOT_SERVING
echo "# NOT_SERVING noticed after $(($(now_ms) - t0)) ms"
t_check "NOT_SERVING: no picks" no_pick hc
t_eq "NOT_SERVING: last_error says why" "health: NOT_SERVING" "$(field hc "$G1" last_error)"
sleep 1.5 # no backoff churn: the connection stays up and watched
t_eq "NOT_SERVING: still the same connection (no reconnect)" "$attempts" \
    "$(field hc "$G1" connect_attempts)"
t_check "NOT_SERVING: still TRANSIENT_FAILURE" tf_with hc "$G1" NOT_SERVING

t_signal g1 USR1 # SERVING
t0=$(now_ms)
t_wait_for "SERVING again: READY within 1 s" 1 ready_with hc "$G1" SERVING
echo "# SERVING noticed after $(($(now_ms) - t0)) ms"
t_wait_for "SERVING again: picked" 1 picks hc "$G1"
t_eq "SERVING again: still the same connection" "$attempts" "$(field hc "$G1" connect_attempts)"

t_signal g1 USR2 # NOT_SERVING by signal
t_wait_for "SIGUSR2 NOT_SERVING: TRANSIENT_FAILURE within 1 s" 1 tf_with hc "$G1" NOT_SERVING
t_signal g1 USR1
t_wait_for "SIGUSR1 SERVING: READY within 1 s" 1 ready_with hc "$G1" SERVING

# ---- a named service, independent of the server's overall health ----
t_wait_for "named service SERVING: READY" 5 ready_with named "$G1" SERVING
printf '%s\n' "- SERVING" "svc.named NOT_SERVING" >"$T_DIR/g1.status"
t_wait_for "named service NOT_SERVING: TRANSIENT_FAILURE" 1 tf_with named "$G1" NOT_SERVING
t_check "the overall health stays SERVING (READY)" ready_with hc "$G1" SERVING
t_check "named: no picks" no_pick named
printf '%s\n' "- SERVING" "svc.named SERVING" >"$T_DIR/g1.status"
t_wait_for "named service SERVING again: READY" 1 ready_with named "$G1" SERVING

# ---- a service the server does not know ----
t_wait_for "unknown service: TRANSIENT_FAILURE, SERVICE_UNKNOWN" 5 \
    tf_with unknown "$G1" SERVICE_UNKNOWN
t_check "unknown service: no picks" no_pick unknown

# ---- a gRPC server without the health service ----
t_wait_for "no health service: READY (UNIMPLEMENTED treated healthy)" 5 \
    ready_with nohealth "$G2" UNIMPLEMENTED
t_check "no health service: picked" picks nohealth "$G2"
t_check "the log says Watch was UNIMPLEMENTED" \
    grep -q "subchannel $G2: health Watch is UNIMPLEMENTED" "$T_DIR/resolverd.log"
t_wait_for "health checking off: READY, health empty" 5 ready_with off "$G2" ""

# ---- Check only: polled every min(keepalive_time, 5 s) = 1 s ----
t_wait_for "Check only: READY with SERVING" 5 ready_with poll "$G3" SERVING
t_check "the log says Check is polled" \
    grep -q "subchannel $G3: health Watch is UNIMPLEMENTED; polling Check every 1000 ms" \
    "$T_DIR/resolverd.log"
echo NOT_SERVING >"$T_DIR/g3.status"
t0=$(now_ms)
t_wait_for "Check only NOT_SERVING: TRANSIENT_FAILURE within a poll (1 s)" 2 \
    tf_with poll "$G3" NOT_SERVING
echo "# polled NOT_SERVING noticed after $(($(now_ms) - t0)) ms"
echo SERVING >"$T_DIR/g3.status"
t_wait_for "Check only SERVING again: READY" 2 ready_with poll "$G3" SERVING

# ---- h2server --health and nghttpd ----
t_wait_for "h2server SERVING: READY" 5 ready_with h2 "127.0.0.1:${HP[SERVING]}" SERVING
t_wait_for "h2server NOT_SERVING: TRANSIENT_FAILURE" 5 \
    tf_with h2 "127.0.0.1:${HP[NOT_SERVING]}" NOT_SERVING
t_wait_for "h2server UNIMPLEMENTED: READY" 5 \
    ready_with h2 "127.0.0.1:${HP[UNIMPLEMENTED]}" UNIMPLEMENTED
if command -v nghttpd >/dev/null 2>&1; then
    t_wait_for "nghttpd (404 = UNIMPLEMENTED): READY" 5 ready_with h2 "$NG" UNIMPLEMENTED
fi
bad=0
for _ in $(seq 30); do
    [ "$(pick1 h2)" = "127.0.0.1:${HP[NOT_SERVING]}" ] && bad=1
done
t_eq "h2server NOT_SERVING is never picked" 0 "$bad"

# ---- max_connection_age with health: each replacement is health-checked
# before it takes over, the instance never leaves READY ----
t_wait_for "aged: READY with SERVING" 5 ready_with aged "$G1" SERVING
# Watch lines: DATE TIME SERVICE EVENT ADDRESS STATE.
watch_lines() { awk -v s="$1" '$3 == s' "$T_DIR/watch.log" | wc -l; }
n0=$(watch_lines aged)
a0=$(field aged "$G1" connect_attempts)
sleep 3
a1=$(field aged "$G1" connect_attempts)
t_check "aged: connections replaced (attempts $a0 -> $a1)" test "$a1" -ge $((a0 + 3))
t_eq "aged: no transition while connections were replaced" "$n0" "$(watch_lines aged)"
t_check "aged: READY with SERVING" ready_with aged "$G1" SERVING
t_eq "aged: no reconnect counted" 0 "$(field aged "$G1" reconnects)"

# ---- the server goes away and comes back: health is checked anew ----
t_kill g1 TERM || true
t_wait_for "server stopped: hc leaves READY" 3 no_pick hc
t_check "server stopped: health forgotten with the connection" is_health hc "$G1" ""
echo SERVING >"$T_DIR/g1.status"
grpc_start g1 "$G1P" --service svc.named --status-file "$T_DIR/g1.status"
t_wait_for "server back: READY with SERVING" 10 ready_with hc "$G1" SERVING

# ---- what the watch saw ----
t_check "watch saw hc go TRANSIENT_FAILURE" awk -v a="$G1" '$3 == "hc" && $5 == a && $6 == "TRANSIENT_FAILURE" { f = 1 } END { exit !f }' "$T_DIR/watch.log"
t_check "no GOAWAY too_many_pings from the permissive servers" \
    bash -c "! grep -q too_many_pings '$T_DIR/resolverd.log'"
t_check "the log has the health transitions" grep -q \
    "warn  service hc: instance $G1 left READY: health: NOT_SERVING" "$T_DIR/resolverd.log"
t_done
