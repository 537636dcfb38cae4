#!/usr/bin/env bash
# /metrics, /healthz and /ready of the real daemon against real etcd and
# backends (issue 12, Metrics): promtool finds nothing to say in any state
# (serving, etcd down, never synced); per-instance series, bounded per
# service; the done latency histogram; etcd, watch and ejection counters;
# build and process figures; /ready 503 with the reason while etcd is down
# or a service has no listing yet, 200 again once etcd is back.
set -u
. "$(dirname "$0")/lib.sh"
t_init metrics
t_require etcd etcdctl curl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
HERE=$(cd "$(dirname "$0")" && pwd)
t_etcd_start e1 || t_done
SOCK=$T_DIR/rd.sock
. "$HERE/etcd_common.sh"

backend_start b1 || t_done
P1=$BACKEND_PORT
backend_start b2 || t_done
P2=$BACKEND_PORT
A1=127.0.0.1:$P1 A2=127.0.0.1:$P2 DEAD=127.0.0.2:99
t_etcdctl put svc/1 "$A1" >/dev/null
t_etcdctl put svc/2 "$A2" >/dev/null
t_etcdctl put svc/3 "$DEAD" >/dev/null # refused at once: TRANSIENT_FAILURE
t_etcdctl put ej/1 "$A1" >/dev/null
t_etcdctl put ej/2 "$A2" >/dev/null
for i in $(seq 1 55); do # more than the 50 per-instance series of a service
    t_etcdctl put "many/$i" "127.0.0.2:$((100 + i))" >/dev/null
done
free_dead_port
MPORT=$(t_free_port)
cat >"$T_DIR/rd.json" <<JSON
{ "etcd": { "endpoints": ["http://127.0.0.1:$DEAD_PORT", "$ETCD_ENDPOINT"] },
  "metrics": { "listen": "127.0.0.1:$MPORT" },
  "defaults": { "drain_timeout_ms": 3000, "backoff": { "initial_ms": 200, "max_ms": 1000 } },
  "services": [ { "name": "svc" }, { "name": "many" },
                { "name": "ej", "outlier_consecutive_failures": 3 } ] }
JSON
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --socket "$SOCK"
STARTED=$(date +%s)
MURL=http://127.0.0.1:$MPORT
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
t_wait_for "svc has two READY instances" 10 bash -c "'$RESOLVERCTL' -s '$SOCK' instances svc | grep -c READY | grep -qx 2"
t_wait_for "ej has two READY instances" 10 bash -c "'$RESOLVERCTL' -s '$SOCK' instances ej | grep -c READY | grep -qx 2"

scrape() { curl -sf "$MURL/metrics" >"$T_DIR/${1:-m}.txt"; }
# sample NAME{LABELS} [FILE]: the value of one series ("" if absent).
sample() { awk -v k="$1" '$1 == k { print $2 }' "$T_DIR/${2:-m}.txt"; }
# promtool_clean FILE: promtool exits 0 and prints nothing (lint included).
promtool_clean() {
    local out rc=0
    out=$(promtool check metrics <"$T_DIR/$1.txt" 2>&1) || rc=$?
    [[ $rc == 0 && -z $out ]] || { echo "promtool (exit $rc): $out"; return 1; }
}
# help_and_type FILE: every sample's family has # HELP and # TYPE lines.
help_and_type() {
    "$PY" - "$T_DIR/$1.txt" <<'PYEOF'
import re, sys
helps, types, bad = set(), {}, []
for line in open(sys.argv[1]):
    if line.startswith("# HELP "):
        helps.add(line.split()[2])
    elif line.startswith("# TYPE "):
        types[line.split()[2]] = line.split()[3]
    elif line.strip():
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and types.get(base) == "histogram":
                fam = base
        if fam not in helps or fam not in types:
            bad.append(name)
if bad:
    print("without HELP/TYPE:", sorted(set(bad)))
    sys.exit(1)
PYEOF
}
check_exposition() { # FILE WHAT
    if command -v promtool >/dev/null; then
        t_check "$2: promtool check metrics finds nothing, lint included" promtool_clean "$1"
    else
        t_ok "# skipped promtool (install the Debian package prometheus)"
    fi
    t_check "$2: every family has # HELP and # TYPE" help_and_type "$1"
}

# ---- picks with and without latency, failures, an ejection ----
"$PY" "$HERE/pickdone.py" "$SOCK" svc 1 latency_ms=7 >/dev/null
"$PY" "$HERE/pickdone.py" "$SOCK" svc 1 latency_ms=300 >/dev/null
"$PY" "$HERE/pickdone.py" "$SOCK" svc 2 >/dev/null # no latency: not observed
"$PY" "$HERE/pickdone.py" "$SOCK" ej 6 fail=1 latency_ms=1 >"$T_DIR/ej.picks"
t_wait_for "the dead instance has reconnected" 10 bash -c "curl -sf '$MURL/metrics' | grep -Eq '^resolver_instance_reconnects_total\\{service=\"svc\",address=\"$DEAD\"\\} [1-9]'"
FAILED=$(head -1 "$T_DIR/ej.picks")
t_wait_for "a PING after the failed done measured its RTT" 5 bash -c "curl -sf '$MURL/metrics' | grep -q '^resolver_instance_ping_rtt_seconds{service=\"ej\",address=\"$FAILED\"} '"
scrape
check_exposition m "serving"

t_eq "histogram: two dones carried a latency" 2 "$(sample 'resolver_done_latency_seconds_count{service="svc"}')"
t_eq "histogram: 7 ms is in le=0.01" 1 "$(sample 'resolver_done_latency_seconds_bucket{service="svc",le="0.01"}')"
t_eq "histogram: 7 ms is not in le=0.005" 0 "$(sample 'resolver_done_latency_seconds_bucket{service="svc",le="0.005"}')"
t_eq "histogram: 300 ms is in le=0.5" 2 "$(sample 'resolver_done_latency_seconds_bucket{service="svc",le="0.5"}')"
t_eq "histogram: +Inf counts both" 2 "$(sample 'resolver_done_latency_seconds_bucket{service="svc",le="+Inf"}')"
t_eq "histogram: the sum in seconds" 0.307 "$(sample 'resolver_done_latency_seconds_sum{service="svc"}')"

t_eq "per instance: state READY" 1 "$(sample "resolver_instance_state{service=\"svc\",address=\"$A1\",state=\"READY\"}")"
t_eq "per instance: the other states 0" 0 "$(sample "resolver_instance_state{service=\"svc\",address=\"$A1\",state=\"CONNECTING\"}")"
t_eq "per instance: the dead one TRANSIENT_FAILURE" 1 "$(sample "resolver_instance_state{service=\"svc\",address=\"$DEAD\",state=\"TRANSIENT_FAILURE\"}")"
t_eq "per instance: picks add up to the service's" 4 \
    "$(($(sample "resolver_instance_picks_total{service=\"svc\",address=\"$A1\"}") + $(sample "resolver_instance_picks_total{service=\"svc\",address=\"$A2\"}")))"
t_eq "per instance: nothing outstanding" 0 "$(sample "resolver_instance_outstanding{service=\"svc\",address=\"$A1\"}")"
t_eq "per instance: failures of the ejected one" 3 "$(sample "resolver_instance_failures_total{service=\"ej\",address=\"$FAILED\"}")"
t_eq "ejections: one for ej (3 consecutive failures; at most 1 of 2 ejected)" 1 "$(sample 'resolver_ejections_total{service="ej"}')"
t_eq "per instance: the first picked is the ejected one" 1 "$(sample "resolver_instance_ejected{service=\"ej\",address=\"$FAILED\"}")"
t_eq "per instance: its ejections" 1 "$(sample "resolver_instance_ejections_total{service=\"ej\",address=\"$FAILED\"}")"
t_check "per instance: RTT in seconds, below 1 s" bash -c "awk 'BEGIN{v=$(sample "resolver_instance_ping_rtt_seconds{service=\"ej\",address=\"$FAILED\"}"); exit !(v > 0 && v < 1)}'"
CHANGED=$(sample "resolver_instance_last_change_timestamp_seconds{service=\"svc\",address=\"$A1\"}")
t_check "per instance: last change is a timestamp since the start" bash -c "awk 'BEGIN{v=$CHANGED; exit !(v >= $STARTED - 1 && v <= $(date +%s) + 1)}'"
t_eq "cardinality: 50 instances of 55 listed" 50 "$(grep -c '^resolver_instance_picks_total{service="many",' "$T_DIR/m.txt")"
t_eq "cardinality: the 5 others counted" 5 "$(sample 'resolver_instance_series_omitted{service="many"}')"
t_eq "cardinality: 6 state series per listed instance" 300 "$(grep -c '^resolver_instance_state{service="many",' "$T_DIR/m.txt")"

t_check "etcd: a failover from the dead first endpoint" bash -c "[ '$(sample resolver_etcd_failovers_total)' -ge 1 ]"
HEARD=$(sample resolver_etcd_last_heard_timestamp_seconds)
t_check "etcd: last heard is a timestamp within 10 s of now" bash -c "awk 'BEGIN{d=$(date +%s.%N)-$HEARD; exit !(d > -1 && d < 10)}'"
t_eq "etcd: no age gauge left (a timestamp instead)" "" "$(sample resolver_etcd_last_heard_seconds)"
RESUMES=$(sample 'resolver_watch_resumes_total{service="svc"}')
t_check "watch: the attempt on the dead first endpoint counts as a resume" test "$RESUMES" -ge 1
t_eq "watch: no silence reset" 0 "$(sample 'resolver_watch_silence_resets_total{service="svc"}')"
t_eq "the service is synced" 1 "$(sample 'resolver_service_synced{service="svc"}')"

VERSION=$("$RESOLVERD" --version | awk '{ print $2 }')
t_eq "build info carries the version" 1 "$(sample "resolver_build_info{version=\"$VERSION\"}")"
PID=$(t_pid resolverd)
RSS=$(awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$PID/status")
t_check "process_resident_memory_bytes is the daemon's RSS (within 2 MiB)" bash -c "awk 'BEGIN{d=$(sample process_resident_memory_bytes)-$RSS; exit !(d < 2097152 && d > -2097152)}'"
# Connections of the many TRANSIENT_FAILURE instances come and go: compare
# with /proc read just before and after a scrape that saw the same count
# (the scrape's own connection is one more).
fds_match() {
    local before after v
    before=$(ls "/proc/$PID/fd" | wc -l)
    v=$(curl -sf "$MURL/metrics" | awk '$1 == "process_open_fds" { print $2 }')
    after=$(ls "/proc/$PID/fd" | wc -l)
    [[ $before == "$after" && -n $v ]] && ((v >= before && v <= before + 1))
}
t_wait_for "process_open_fds is the daemon's count" 10 fds_match
t_check "process_start_time_seconds is when it started (within 3 s)" bash -c "awk 'BEGIN{d=$(sample process_start_time_seconds)-$STARTED; exit !(d < 3 && d > -3)}'"
t_eq "process_max_fds is its soft limit" "$(awk '/^Max open files/ { print $4 }' "/proc/$PID/limits")" "$(sample process_max_fds)"
t_check "process_cpu_seconds_total is there" test -n "$(sample process_cpu_seconds_total)"

# ---- /healthz and /ready ----
code() { curl -s -o "$T_DIR/body" -w '%{http_code}' "$@"; }
t_eq "/healthz answers 200" 200 "$(code "$MURL/healthz")"
t_eq "/healthz says ok" ok "$(cat "$T_DIR/body")"
t_eq "HEAD /healthz answers 200" 200 "$(code -I "$MURL/healthz")"
t_eq "/ready answers 200 while etcd is heard and every service synced" 200 "$(code "$MURL/ready")"
t_eq "/ready says ready" ready "$(cat "$T_DIR/body")"
t_eq "resolver_ready is 1" 1 "$(sample resolver_ready)"

t_etcd_stop e1
t_wait_for "etcd down: /ready answers 503" 20 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$MURL/ready')\" = 503 ]"
code "$MURL/ready" >/dev/null
t_check "the 503 says etcd was not heard from" grep -q '^etcd not heard from for [0-9.]* s (endpoint http://' "$T_DIR/body"
t_eq "/healthz still answers 200" 200 "$(code "$MURL/healthz")"
scrape down
check_exposition down "etcd down"
t_eq "etcd down: resolver_ready is 0" 0 "$(sample resolver_ready down)"

# A daemon that never reached etcd: not ready, and says which service waits.
M2PORT=$(t_free_port)
cat >"$T_DIR/rd2.json" <<JSON
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"] }, "metrics": { "listen": "127.0.0.1:$M2PORT" },
  "services": [ { "name": "svc" } ] }
JSON
t_spawn rd2 "$RESOLVERD" -c "$T_DIR/rd2.json" --socket "$T_DIR/rd2.sock"
t_wait_for "the second daemon serves /healthz" 10 bash -c "curl -sf 'http://127.0.0.1:$M2PORT/healthz' >/dev/null"
t_eq "never heard etcd: /ready answers 503" 503 "$(code "http://127.0.0.1:$M2PORT/ready")"
t_check "and says etcd never answered" grep -q '^etcd never answered (endpoint http://' "$T_DIR/body"
curl -sf "http://127.0.0.1:$M2PORT/metrics" >"$T_DIR/never.txt"
check_exposition never "never synced"
t_eq "never heard: no last-heard timestamp sample" "" "$(sample resolver_etcd_last_heard_timestamp_seconds never)"
t_eq "never synced: resolver_service_synced is 0" 0 "$(sample 'resolver_service_synced{service="svc"}' never)"

t_etcd_start e1 || t_done
t_wait_for "etcd back: /ready answers 200 again" 20 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$MURL/ready')\" = 200 ]"
t_wait_for "the second daemon becomes ready too" 20 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' 'http://127.0.0.1:$M2PORT/ready')\" = 200 ]"
scrape back
check_exposition back "etcd back"
t_check "watch: the stream's end and resume are counted" \
    test "$(sample 'resolver_watch_resumes_total{service="svc"}' back)" -gt "$RESUMES"

# A stop drains; meanwhile /ready says so (a held pick keeps the drain going).
t_spawn holder "$PY" "$HERE/tickets.py" "$SOCK" svc hold "$T_DIR/held"
t_wait_until 5 test -s "$T_DIR/held" || true
t_signal resolverd TERM
t_wait_for "draining: /ready answers 503" 2 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$MURL/ready')\" = 503 ]"
code "$MURL/ready" >/dev/null
t_eq "and says it is shutting down" "shutting down" "$(cat "$T_DIR/body")"
t_done
