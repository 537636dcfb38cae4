#!/usr/bin/env bash
# Subchannels against broken peers, through the daemon:
#  (a) kill -9 of a backend: TRANSIENT_FAILURE at once, out of the picks;
#  (b) a server that closes idle connections (h2server --idle-close) or says
#      GOAWAY NO_ERROR (--goaway-after): reconnects at once, never
#      TRANSIENT_FAILURE, reconnects counted;
#  (b2) a real gRPC server's idle close (grpcio, grpc.max_connection_idle_ms
#      2000: GOAWAY INTERNAL_ERROR "enter idle", then close): no stream was
#      lost, so the same: never TRANSIENT_FAILURE, no failure counted, picks
#      keep succeeding;
#  (c) GOAWAY ENHANCE_YOUR_CALM too_many_pings, from h2server and from a real
#      gRPC server with keepalive enforcement: warning, keepalive doubled,
#      the instance recovers;
#  (d) a userspace proxy that freezes (faultproxy.py): out of the picks
#      within keepalive time + timeout, READY again after it thaws;
#  (e) a silent drop in the kernel (root only): a network namespace made
#      here, a veth pair with link-local /30 addresses chosen here,
#      `iptables -j DROP` inside the namespace; detection time printed; and
#      `resolverctl done --fail` probing a dropped instance at once.
# (e) needs root and `ip netns`; without them it is skipped and the rest
# still runs.  Everything (e) creates is removed however the test ends.
set -u
. "$(dirname "$0")/lib.sh"
t_init sc_faults
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
t_daemon_env
HAVE_GRPC=1
"$PY" -c 'import grpc' 2>/dev/null || HAVE_GRPC=0

# ---- the network namespace of part (e), and its cleanup ----
NS_UP=0
t_netns_trap

t_etcd_start e1 || t_done
now_ms() { local us=${EPOCHREALTIME/[.,]/}; echo $((us / 1000)); }
listening() { "$PY" -c "import socket; socket.create_connection(('$1', $2), 1)" 2>/dev/null; }

not_ready() { local s; s=$(field "$1" "$2" state); [ -n "$s" ] && [ "$s" != READY ]; }
never_picked() { # SERVICE ADDRESS N
    for _ in $(seq "$3"); do
        [ "$(pick1 "$1")" = "$2" ] && return 1
    done
    return 0
}
# first_event_after MS SERVICE ADDRESS REGEX: the time of the first watch
# line after MS whose state matches REGEX (empty if none yet).
first_event_after() {
    awk -v t="$1" -v s="$2" -v a="$3" -v re="$4" \
        '$1 >= t && $2 == s && $3 == a && $4 ~ re { print $1; exit }' "$T_DIR/watch.log"
}
event_after() { [ -n "$(first_event_after "$@")" ]; }

# ---- backends ----
# backend NAME ARGS... : an h2server on a free port; sets BP.
backend() {
    local name=$1
    shift
    BP=$(t_free_port)
    t_spawn "$name" "$H2SERVER" --name "$name" "$@" "$BP"
    t_wait_until 10 listening 127.0.0.1 "$BP" || t_fail "$name listens on $BP"
}
backend k1; K1=127.0.0.1:$BP
backend k2; K2=127.0.0.1:$BP
backend idle --idle-close 2000; IDLE=127.0.0.1:$BP
backend goaway --goaway-after 1500; GOAWAY=127.0.0.1:$BP
backend pings --min-ping-interval 1000; PINGS=127.0.0.1:$BP
backend fz; FZB=$BP
backend fz2; FZ2=127.0.0.1:$BP
FZP=$(t_free_port)
t_spawn proxy "$PY" "$HERE/faultproxy.py" --listen "127.0.0.1:$FZP" --target "127.0.0.1:$FZB" \
    --control "$T_DIR/fp.sock"
t_wait_until 10 listening 127.0.0.1 "$FZP" || t_fail "faultproxy listens"
FZ=127.0.0.1:$FZP
fp() { "$PY" "$HERE/faultproxy.py" --control "$T_DIR/fp.sock" --send "$1" >/dev/null; }
if [[ $HAVE_GRPC == 1 ]]; then
    GP=$(t_free_port)
    t_spawn grpc "$PY" "$HERE/grpc_health_server.py" --port "$GP" --min-ping-interval-ms 1000 \
        --permit-without-calls
    t_wait_until 15 listening 127.0.0.1 "$GP" || t_fail "the gRPC server listens"
    GRPC=127.0.0.1:$GP
    GHP=$(t_free_port)
    t_spawn grpch "$PY" "$HERE/grpc_health_server.py" --port "$GHP" --min-ping-interval-ms 1000
    t_wait_until 15 listening 127.0.0.1 "$GHP" || t_fail "the gRPC server with health listens"
    GRPCH=127.0.0.1:$GHP
    GIP=$(t_free_port)
    t_spawn grpcidle "$PY" "$HERE/grpc_health_server.py" --port "$GIP" \
        --max-connection-idle-ms 2000
    t_wait_until 15 listening 127.0.0.1 "$GIP" || t_fail "the idle-closing gRPC server listens"
    GIDLE=127.0.0.1:$GIP
fi

# ---- (e)'s namespace, made before resolverd starts so it is configured once ----
if [[ $(id -u) == 0 ]] && ip netns list >/dev/null 2>&1 && command -v iptables >/dev/null; then
    # Names and a link-local /30 of our own; give up rather than reuse.
    for _ in $(seq 20); do
        n=$((RANDOM % 100 + 100)) m=$((RANDOM % 63 * 4))
        if ! ip -4 -o addr show | grep -q " 169\.254\.$n\.$((m + 1))/" &&
            ! ip -4 -o addr show | grep -q " 169\.254\.$n\.$((m + 2))/"; then
            break
        fi
        n=
    done
    if [[ -n $n ]]; then
        NS=rsvt$$ VH=rsvh$$ VN=rsvn$$
        HA=169.254.$n.$((m + 1)) NA=169.254.$n.$((m + 2))
        if ip netns add "$NS" &&
            ip link add "$VH" type veth peer name "$VN" netns "$NS" &&
            ip addr add "$HA/30" dev "$VH" && ip link set "$VH" up &&
            ip -n "$NS" addr add "$NA/30" dev "$VN" && ip -n "$NS" link set "$VN" up &&
            ip -n "$NS" link set lo up; then
            NSP=$(t_free_port)
            # `ip netns exec` execs h2server: the tracked PID is h2server's.
            t_spawn nsb ip netns exec "$NS" "$H2SERVER" --name nsb --bind "$NA" "$NSP"
            if t_wait_until 10 listening "$NA" "$NSP"; then
                NS_UP=1
                DROP=$NA:$NSP
                echo "# netns $NS: host $VH $HA, namespace $VN $NA, h2server on $DROP"
            fi
        fi
        [[ $NS_UP == 1 ]] || echo "# could not set up the network namespace"
    fi
fi

cat >"$T_DIR/rd.json" <<JSON
{
  "defaults": { "backoff": { "initial_ms": 200, "max_ms": 1000 }, "connect_timeout_ms": 2000 },
  "services": [
    { "name": "kill" },
    { "name": "idle" },
    { "name": "goaway" },
    { "name": "gidle" },
    { "name": "pings", "keepalive_time_ms": 100, "keepalive_timeout_ms": 1000 },
    { "name": "gpings", "keepalive_time_ms": 100, "keepalive_timeout_ms": 1000 },
    { "name": "gpingsh", "keepalive_time_ms": 100, "keepalive_timeout_ms": 1000,
      "health_check": { "grpc_service": "" } },
    { "name": "freeze", "keepalive_time_ms": 1000, "keepalive_timeout_ms": 1000 },
    { "name": "drop", "keepalive_time_ms": 1000, "keepalive_timeout_ms": 1000 },
    { "name": "probe", "keepalive_time_ms": 600000, "keepalive_timeout_ms": 1000 }
  ]
}
JSON
t_etcdctl put kill/1 "$K1" >/dev/null
t_etcdctl put kill/2 "$K2" >/dev/null
t_etcdctl put idle/1 "$IDLE" >/dev/null
t_etcdctl put goaway/1 "$GOAWAY" >/dev/null
t_etcdctl put pings/1 "$PINGS" >/dev/null
t_etcdctl put freeze/1 "$FZ" >/dev/null
t_etcdctl put freeze/2 "$FZ2" >/dev/null
if [[ $HAVE_GRPC == 1 ]]; then
    t_etcdctl put gpings/1 "$GRPC" >/dev/null
    t_etcdctl put gpingsh/1 "$GRPCH" >/dev/null
    t_etcdctl put gidle/1 "$GIDLE" >/dev/null
fi
if [[ $NS_UP == 1 ]]; then
    t_etcdctl put drop/1 "$DROP" >/dev/null
    t_etcdctl put probe/1 "$DROP" >/dev/null
fi

t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK" \
    --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
t_spawn watch "$PY" -u "$HERE/watchts.py" "$SOCK"
for a in "kill $K1" "kill $K2" "idle $IDLE" "goaway $GOAWAY" "freeze $FZ" "freeze $FZ2"; do
    read -r s addr <<<"$a"
    t_wait_for "$s $addr READY" 10 is_state "$s" "$addr" READY
done
LOG=$T_DIR/resolverd.log

# ---- (a) kill -9 ----
t0=$(now_ms)
t_kill k1 KILL || true
t_wait_for "(a) kill -9: TRANSIENT_FAILURE within 1 s" 1 is_state kill "$K1" TRANSIENT_FAILURE
echo "# (a) kill -9 noticed after $(($(now_ms) - t0)) ms (state polled)"
t_check "(a) the killed backend is never picked" never_picked kill "$K1" 10
t_check "(a) the other backend still is" test "$(pick1 kill)" = "$K2"

# ---- (b) idle close and GOAWAY NO_ERROR: reconnect at once, no failure ----
t0=$(now_ms)
sleep 7
ri=$(field idle "$IDLE" reconnects)
rg=$(field goaway "$GOAWAY" reconnects)
t_check "(b) idle close every 2 s: reconnected at least twice (reconnects $ri)" test "$ri" -ge 2
t_check "(b) GOAWAY every 1.5 s: reconnected at least 3 times (reconnects $rg)" test "$rg" -ge 3
t_check "(b) idle close: never TRANSIENT_FAILURE in the watch" \
    bash -c "! grep -q ' idle $IDLE TRANSIENT_FAILURE' '$T_DIR/watch.log'"
t_check "(b) GOAWAY: never TRANSIENT_FAILURE in the watch" \
    bash -c "! grep -q ' goaway $GOAWAY TRANSIENT_FAILURE' '$T_DIR/watch.log'"
t_eq "(b) idle close: last_error stays empty" "" "$(field idle "$IDLE" last_error)"
t_check "(b) idle close: READY now" is_state idle "$IDLE" READY
t_check "(b) GOAWAY: READY now" is_state goaway "$GOAWAY" READY
# Every CONNECTING of the idle instance was followed by READY within 100 ms.
gaps=$(awk -v a="$IDLE" '$3 == a && $4 == "CONNECTING" { c = $1 } $3 == a && $4 == "READY" && c { print $1 - c; c = 0 }' "$T_DIR/watch.log" | sort -n | tail -1)
t_check "(b) idle close: READY again within 100 ms of each close (worst ${gaps:-?} ms)" \
    test "${gaps:-999}" -le 100
fails=0
for _ in $(seq 40); do pick1 idle >/dev/null || fails=$((fails + 1)); sleep 0.05; done
t_check "(b) idle close: picks keep succeeding ($fails of 40 failed)" test "$fails" -le 1

# ---- (b2) a real gRPC server's idle close ----
if [[ $HAVE_GRPC == 1 ]]; then
    svc_field() { # SERVICE FIELD: from `resolverctl --json services`
        ctl --json services | "$PY" -c "
import json, sys
for s in json.load(sys.stdin):
    if s['name'] == sys.argv[1]:
        print(s.get(sys.argv[2], ''))" "$1" "$2"
    }
    t_wait_for "(b2) gRPC idle close: READY" 10 is_state gidle "$GIDLE" READY
    t0=$(now_ms) fails=0 n=0
    while (($(now_ms) - t0 < 10000)); do
        pick1 gidle >/dev/null || fails=$((fails + 1))
        n=$((n + 1))
        sleep 0.1
    done
    r=$(field gidle "$GIDLE" reconnects)
    echo "# (b2) gRPC idle close: $r reconnects, $fails of $n picks failed in 10 s"
    t_check "(b2) gRPC idle close every 2 s: reconnected at least 3 times (reconnects $r)" \
        test "$r" -ge 3
    t_check "(b2) gRPC idle close: the log shows its GOAWAY as clean" \
        grep -q "service gidle: instance $GIDLE READY -> CONNECTING (GOAWAY INTERNAL_ERROR \"enter idle\" from server (no stream lost))" "$LOG"
    t_check "(b2) gRPC idle close: a clean end is no warning" \
        bash -c "! grep -q 'warn  service gidle:' '$LOG'"
    t_check "(b2) gRPC idle close: never TRANSIENT_FAILURE in the watch" \
        bash -c "! grep -q ' gidle $GIDLE TRANSIENT_FAILURE' '$T_DIR/watch.log'"
    t_eq "(b2) gRPC idle close: picks keep succeeding (failed picks)" 0 "$fails"
    t_eq "(b2) gRPC idle close: the instance's failures stay 0" 0 "$(field gidle "$GIDLE" failures)"
    t_eq "(b2) gRPC idle close: the service's pick_failures stay 0" 0 \
        "$(svc_field gidle pick_failures)"
    t_eq "(b2) gRPC idle close: last_error stays empty" "" "$(field gidle "$GIDLE" last_error)"
else
    echo "# (b2) skipped: python3-grpcio missing for $PY"
fi

# ---- (c) too_many_pings ----
t_wait_for "(c) h2server too_many_pings: warning logged" 5 \
    grep -q "subchannel $PINGS: server sent GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\"" "$LOG"
t_wait_for "(c) h2server: keepalive doubled up to 1600 ms (log)" 15 \
    grep -q "subchannel $PINGS: .*keepalive_time 800 ms .* using 1600 ms" "$LOG"
grep "subchannel $PINGS: server sent GOAWAY" "$LOG" | sed -n 's/.*keepalive_time \([0-9]*\) ms.*using \([0-9]*\) ms.*/# (c) h2server: keepalive \1 -> \2 ms/p'
t_wait_for "(c) h2server: the instance recovers (READY)" 5 is_state pings "$PINGS" READY
n0=$(grep -c "subchannel $PINGS: server sent GOAWAY" "$LOG")
sleep 4
t_eq "(c) h2server: no more GOAWAY once the keepalive is slow enough" "$n0" \
    "$(grep -c "subchannel $PINGS: server sent GOAWAY" "$LOG")"
t_check "(c) h2server: still READY" is_state pings "$PINGS" READY
if [[ $HAVE_GRPC == 1 ]]; then
    for s in gpings gpingsh; do
        a=$GRPC
        [[ $s == gpingsh ]] && a=$GRPCH
        t_wait_for "(c) gRPC server ($s): too_many_pings warning logged" 10 \
            grep -q "subchannel $a: server sent GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\"" "$LOG"
        t_wait_for "(c) gRPC server ($s): keepalive doubled to at least 1600 ms" 20 \
            grep -q "subchannel $a: .* using 1600 ms" "$LOG"
        grep "subchannel $a: server sent GOAWAY" "$LOG" | sed -n "s/.*keepalive_time \([0-9]*\) ms.*using \([0-9]*\) ms.*/# (c) gRPC $s: keepalive \1 -> \2 ms/p"
        t_wait_for "(c) gRPC server ($s): the instance recovers (READY)" 10 is_state "$s" "$a" READY
    done
    t_eq "(c) gRPC server with health: health SERVING" SERVING "$(field gpingsh "$GRPCH" health)"
else
    echo "# (c) skipping the gRPC server: python3-grpcio missing for $PY"
fi

# ---- (d) a proxy that freezes ----
t_wait_for "(d) freeze: READY through the proxy" 5 is_state freeze "$FZ" READY
t0=$(now_ms)
fp freeze
t_wait_for "(d) freeze: leaves READY within 2.5 s" 2.5 event_after "$t0" freeze "$FZ" 'TRANSIENT_FAILURE|CONNECTING'
t1=$(first_event_after "$t0" freeze "$FZ" 'TRANSIENT_FAILURE|CONNECTING')
[[ -n $t1 ]] && echo "# (d) freeze noticed after $((t1 - t0)) ms (keepalive 1000 + 1000)"
t_check "(d) frozen: never picked" never_picked freeze "$FZ" 10
t_check "(d) frozen: the other instance is" test "$(pick1 freeze)" = "$FZ2"
t_check "(d) frozen: last_error" bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" --json instances freeze | grep -Eq 'keepalive ping timeout|SETTINGS|Connection timed out'"
fp pass
t_wait_for "(d) thawed: READY again" 5 is_state freeze "$FZ" READY

# ---- (e) silent drop in the kernel ----
if [[ $NS_UP == 1 ]]; then
    drop_on() {
        ip netns exec "$NS" iptables -A INPUT -j DROP &&
            ip netns exec "$NS" iptables -A OUTPUT -j DROP
    }
    drop_off() {
        ip netns exec "$NS" iptables -D INPUT -j DROP
        ip netns exec "$NS" iptables -D OUTPUT -j DROP
    }
    t_wait_for "(e) drop: READY over the veth" 10 is_state drop "$DROP" READY
    t_wait_for "(e) probe: READY over the veth" 10 is_state probe "$DROP" READY
    sleep 0.3
    # The probe: a ticket whose call "fails" while the path drops.
    out=$(ctl --json pick --hold probe)
    ticket=$("$PY" -c "import json,sys; print(json.load(sys.stdin)['ticket'])" <<<"$out")
    t0=$(now_ms)
    t_check "(e) DROP rules in the namespace" drop_on
    t_wait_for "(e) silent drop: leaves READY within 2.5 s (keepalive 1000 + 1000)" 2.5 \
        event_after "$t0" drop "$DROP" 'TRANSIENT_FAILURE|CONNECTING'
    t1=$(first_event_after "$t0" drop "$DROP" 'TRANSIENT_FAILURE|CONNECTING')
    [[ -n $t1 ]] && echo "# (e) silent drop noticed after $((t1 - t0)) ms (budget 2000 + 250)"
    t_check "(e) dropped: never picked" bash -c "! \"$RESOLVERCTL\" -s \"$SOCK\" pick drop >/dev/null 2>&1"
    t_check "(e) probe (keepalive 10 min) still READY: it has not PINGed" is_state probe "$DROP" READY
    t2=$(now_ms)
    t_check "(e) done --fail on the dropped instance" ctl "done" "$ticket" --fail
    t_wait_for "(e) done --fail probes at once: leaves READY within 2 s (timeout 1000)" 2 \
        event_after "$t2" probe "$DROP" 'TRANSIENT_FAILURE|CONNECTING'
    t3=$(first_event_after "$t2" probe "$DROP" 'TRANSIENT_FAILURE|CONNECTING')
    [[ -n $t3 ]] && echo "# (e) probe after done --fail noticed after $((t3 - t2)) ms"
    t_check "(e) the log names the cause" \
        grep -Eq "warn  service (drop|probe): instance $DROP left READY: (keepalive ping timeout|read: Connection timed out|write: Connection timed out)" "$LOG"
    drop_off
    t_wait_for "(e) path back: drop READY again" 10 is_state drop "$DROP" READY
    t_wait_for "(e) path back: probe READY again" 10 is_state probe "$DROP" READY
    t_kill nsb TERM || true
    t_netns_cleanup
    t_check "(e) the namespace is gone" bash -c "! ip netns list | grep -qw rsvt$$"
    t_check "(e) the veth is gone" bash -c "! ip link show rsvh$$ >/dev/null 2>&1"
else
    echo "# (e) skipped: needs root, ip netns and iptables"
fi

t_done
