#!/usr/bin/env bash
# What resolverd's log says when things go wrong, through the daemon with
# real etcd and real backends (issue 12, Logs):
#  (a) an instance leaving READY: one warn line naming service, address and
#      cause (backend killed, frozen behind faultproxy.py: keepalive timeout,
#      health NOT_SERVING, GOAWAY ENHANCE_YOUR_CALM too_many_pings), its
#      recovery one info line with how long it was out;
#  (b) a flapping instance: one warn line per 10 s, the next one counts the
#      flaps in between;
#  (c) 500 leaked tickets: a bounded number of lines naming service, uid, pid;
#  (d) admin actions audited with uid and pid, denied ones too; undrain of an
#      instance that is not drained fails;
#  (e) with JOURNAL_STREAM naming stderr (systemd), every line starts with
#      its syslog priority and has no timestamp.
set -u
. "$(dirname "$0")/lib.sh"
t_init logs
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
t_daemon_env
"$PY" -c 'import grpc' 2>/dev/null || t_skip "python3-grpcio is not installed for $PY"

t_etcd_start e1 || t_done
LOG=$T_DIR/resolverd.log
# lines PATTERN: how many lines of the daemon's log match (grep -E).
lines() { grep -cE -- "$1" "$LOG" || true; }
has_line() { grep -qE -- "$1" "$LOG"; }

h2() { # h2 NAME PORT ARGS...
    local name=$1 port=$2
    shift 2
    t_spawn "$name" "$H2SERVER" --name "$name" "$@" "$port"
    t_wait_until 10 listening "$port" || t_fail "$name listens on $port"
}
KP=$(t_free_port) CP=$(t_free_port) FB=$(t_free_port) FP=$(t_free_port) LB=$(t_free_port)
LP=$(t_free_port) GP=$(t_free_port)
h2 kill "$KP"
h2 calm "$CP" --min-ping-interval 60000 --ping-strikes 1
h2 frozen "$FB"
h2 flap "$LB"
t_spawn fproxy "$PY" "$HERE/faultproxy.py" --listen "127.0.0.1:$FP" --target "127.0.0.1:$FB" \
    --control "$T_DIR/fp.sock" --quiet
t_spawn lproxy "$PY" "$HERE/faultproxy.py" --listen "127.0.0.1:$LP" --target "127.0.0.1:$LB" \
    --control "$T_DIR/lp.sock" --quiet
echo SERVING >"$T_DIR/g.status"
t_spawn grpc "$PY" "$HERE/grpc_health_server.py" --port "$GP" --min-ping-interval-ms 100 \
    --permit-without-calls --status-file "$T_DIR/g.status"
for p in "$FP" "$LP"; do t_wait_until 10 listening "$p" || t_fail "faultproxy listens on $p"; done
t_wait_until 15 listening "$GP" || t_fail "the gRPC server listens"
fp() { "$PY" "$HERE/faultproxy.py" --control "$T_DIR/$1.sock" --send "$2" >/dev/null; }
K=127.0.0.1:$KP C=127.0.0.1:$CP F=127.0.0.1:$FP L=127.0.0.1:$LP G=127.0.0.1:$GP

cat >"$T_DIR/rd.json" <<JSON
{
  "defaults": { "keepalive_time_ms": 300, "keepalive_timeout_ms": 500,
                "backoff": { "initial_ms": 100, "max_ms": 300 } },
  "services": [
    { "name": "kill" }, { "name": "calm" }, { "name": "frozen" }, { "name": "flap" },
    { "name": "hc", "health_check": { "grpc_service": "" } },
    { "name": "leak", "ticket_timeout_ms": 500 },
    { "name": "ej", "outlier_consecutive_failures": 2, "outlier_base_ejection_ms": 1000 }
  ]
}
JSON
for s in kill calm frozen flap hc leak ej; do
    case $s in kill | leak | ej) a=$K ;; calm) a=$C ;; frozen) a=$F ;; flap) a=$L ;; hc) a=$G ;; esac
    t_etcdctl put "$s/a" "$a" >/dev/null
done

# (e) stderr is a file the daemon is told is the journal's stream.
: >"$LOG"
JS=$(stat -c '%d:%i' "$LOG")
t_spawn resolverd env JOURNAL_STREAM="$JS" "$RESOLVERD" -c "$T_DIR/rd.json" \
    --etcd "$ETCD_ENDPOINT" --socket "$SOCK"
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
for s in kill frozen flap hc leak ej; do
    case $s in kill | leak | ej) a=$K ;; frozen) a=$F ;; flap) a=$L ;; hc) a=$G ;; esac
    t_wait_for "$s: READY" 10 is_state "$s" "$a" READY
done

# ---- (b) flapping, first: its 10 s window runs while the rest is checked ----
for i in 1 2 3 4; do
    fp lp reset
    t_wait_until 5 is_state flap "$L" READY || t_fail "flap: READY again after reset $i"
    sleep 0.3
done
t_eq "(b) 4 flaps within 10 s: one warn line" 1 \
    "$(lines "^<4>warn  service flap: instance $L left READY: .*reset by peer")"
t_check "(b) and at most one recovery line" \
    test "$(lines "^<6>info  service flap: instance $L READY again")" -le 1
FLAP_AT=$(date +%s)

# ---- (a) killed: connection closed, then refused; restarted: READY again ----
t_kill kill KILL >/dev/null || true
# The kernel closes a killed server's socket with FIN, or with RST when our
# PING was still unread, and a reconnect racing the exit may be accepted and
# reset: the line names what the connection saw.
t_wait_for "(a) killed: the warn line names service, address and cause" 5 has_line \
    "^<4>warn  service kill: instance $K left READY: (connection closed by peer; reconnecting failed: )?(connect: Connection refused|read: Connection reset by peer)$"
h2 kill "$KP"
t_wait_for "(a) restarted: an info line says how long it was out" 5 has_line \
    "^<6>info  service kill: instance $K READY again after [0-9]+\.[0-9] s out of service$"
t_eq "(a) killed: one warn line for the outage (retries say nothing more)" 1 \
    "$(lines "service kill: instance $K left READY")"

# ---- (a) frozen: keepalive timeout ----
fp fp freeze
t_wait_for "(a) frozen: warn line with the keepalive timeout" 5 has_line \
    "^<4>warn  service frozen: instance $F left READY: keepalive ping timeout$"
fp fp pass
t_wait_for "(a) unfrozen: READY again, with the time out" 10 has_line \
    "^<6>info  service frozen: instance $F READY again after [0-9.]+ s out of service$"

# ---- (a) health NOT_SERVING ----
echo NOT_SERVING >"$T_DIR/g.status"
t_wait_for "(a) NOT_SERVING: warn line with the health status" 5 has_line \
    "^<4>warn  service hc: instance $G left READY: health: NOT_SERVING$"
echo SERVING >"$T_DIR/g.status"
t_wait_for "(a) SERVING: READY again" 5 has_line \
    "^<6>info  service hc: instance $G READY again after [0-9.]+ s out of service$"

# ---- (a) GOAWAY with its code and debug data ----
t_wait_for "(a) GOAWAY too_many_pings: warn line with code and debug data" 10 has_line \
    "^<4>warn  service calm: instance $C left READY: GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\" from server$"

# ---- (a) ejected by outlier detection, and back ----
for i in 1 2; do
    t=$(ctl --json pick --hold ej | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')
    ctl done "$t" --fail >/dev/null
done
t_wait_for "(a) ejected: warn line with the reason" 2 has_line \
    "^<4>warn  service ej: instance $K ejected for 1000 ms: 2 consecutive failures$"
t_wait_for "(a) back from ejection: info line" 3 has_line \
    "^<6>info  service ej: instance $K back from ejection after 1\.[0-9] s out of service$"

# ---- (c) 500 leaked tickets ----
"$PY" - "$SOCK" <<'PY' >"$T_DIR/leak.out"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
f.write(b"PICK leak detach=1\n" * 500)
f.flush()
print(sum(f.readline().startswith(b"OK ") for _ in range(500)))
PY
t_eq "(c) 500 detached picks" 500 "$(cat "$T_DIR/leak.out")"
leaked() { ctl --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tickets_leaked"])'; }
all_leaked() { [ "$(leaked)" -ge 500 ]; }
t_wait_for "(c) all 500 leaked" 5 all_leaked
n=$(lines "ticket [0-9]+ .*released as leaked")
t_check "(c) 500 leaks: at most 2 lines (got $n)" test "$n" -ge 1 -a "$n" -le 2
t_check "(c) the line names service, instance, uid and pid" has_line \
    "^<4>warn  service leak: ticket [0-9]+ \(instance $K\) picked by uid $(id -u) pid [0-9]+ was not reported done within 500 ms; released as leaked"

# ---- (d) the audit ----
t_check "(d) drain" ctl drain kill "$K"
t_check "(d) drain is audited with uid and pid" has_line \
    "^<6>info  admin: uid $(id -u) pid [0-9]+: drain kill $K: done$"
t_check "(d) undrain" ctl undrain kill "$K"
rc=0
ctl undrain kill "$K" 2>"$T_DIR/undrain.err" || rc=$?
t_eq "(d) undrain of an instance that is not drained: exit 3" 3 "$rc"
t_check "(d) ... and says so" grep -q "is not drained (nothing to undo)" "$T_DIR/undrain.err"
t_check "(d) ... audited as refused" has_line \
    "^<4>warn  admin: uid $(id -u) pid [0-9]+: undrain kill $K refused: it is not drained$"
t_check "(d) reload" ctl reload
t_check "(d) reload is audited" has_line "^<6>info  admin: uid $(id -u) pid [0-9]+: reload requested$"
t_signal resolverd HUP
t_wait_for "(d) SIGHUP names its sender" 3 has_line \
    "^<6>info  SIGHUP from uid $(id -u) pid $$: reloading the configuration$"
if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null 2>&1; then
    chmod 0711 "$T_DIR"
    chmod 0666 "$SOCK"
    setpriv --reuid 65534 --regid 65534 --clear-groups "$RESOLVERCTL" -s "$SOCK" drain kill "$K" \
        >/dev/null 2>&1 || true
    t_check "(d) a denied admin verb is audited" has_line \
        "^<4>warn  admin: uid 65534 pid [0-9]+: DRAIN denied"
fi

# ---- (b) the next flap after the window counts the ones in between ----
while (($(date +%s) - FLAP_AT < 11)); do sleep 0.5; done
fp lp reset
t_wait_for "(b) after 10 s: the next warn line counts the flaps it held back" 5 has_line \
    "^<4>warn  service flap: instance $L left READY: .*\([0-9]+ more like this since the last one\)$"

# ---- (e) every line carries the priority, none a timestamp ----
t_check "(e) every line starts with <3>, <4>, <6> or <7>" bash -c \
    "! grep -vE '^<[3467]>(error|warn |info |debug) ' '$LOG'"
t_check "(e) no line has a timestamp of its own" bash -c "! grep -qE '^<[0-9]>[a-z]+ +[0-9]{4}-' '$LOG'"
t_check "(e) state changes are not repeated at info by the subchannel" bash -c \
    "! grep -qE 'subchannel .*health .* -> ' '$LOG'"
t_done
