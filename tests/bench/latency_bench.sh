#!/usr/bin/env bash
# latency_bench.sh - latency-aware balancing (issue 18): three h2server
# backends behind etcd and resolverd, one of them 5x slower.  Workers make
# calls through the daemon's socket (PICK, a call that takes 10 ms, or 50 ms
# on the slow backend, DONE latency_ms=measured), the services
# least_latency, round_robin and least_request taken in turn in the same
# run; the share of calls the slow backend gets under each, and the mean
# call latency.  Goal: least_latency <= 10 %.  Prints figures; asserts
# nothing but that the benchmark ran.
#
# Environment: LATENCY_BENCH_CALLS (2000 per policy), LATENCY_BENCH_WORKERS
#   (8 concurrent calls).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/lib.sh"
. "$HERE/report.sh"
t_init latency_bench
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
PY=/usr/bin/python3
CALLS=${LATENCY_BENCH_CALLS:-2000}
WORKERS=${LATENCY_BENCH_WORKERS:-8}
FAST_MS=10 SLOW_MS=50

t_etcd_start e1 || t_done
declare -a ADDR=()
for i in 1 2 3; do
    port=$(t_free_port)
    ADDR+=("127.0.0.1:$port")
    t_spawn "b$i" "$H2SERVER" "$port"
done
for a in "${ADDR[@]}"; do
    t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/${a#*:}" || true
done
SLOW=${ADDR[2]}
services=(least_latency round_robin least_request)
{
    printf '{"services": ['
    sep=
    for s in "${services[@]}"; do printf '%s{"name": "%s", "policy": "%s"}' "$sep" "$s" "$s"; sep=", "; done
    printf ']}\n'
} >"$T_DIR/rd.json"
for s in "${services[@]}"; do
    for k in 0 1 2; do t_etcdctl put "$s/$k" "${ADDR[$k]}" >/dev/null; done
done
SOCK=$T_DIR/rd.sock
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK" --log-level error
t_wait_until 10 test -S "$SOCK"
ready() { [ "$("$RESOLVERCTL" -s "$SOCK" --json instances "$1" | grep -c '"state": "READY"')" = 3 ]; }
for s in "${services[@]}"; do t_wait_until 10 ready "$s" || t_fail "$s: 3 instances READY"; done

start=$(date +%s)
"$PY" "$HERE/latency_bench.py" "$SOCK" "$SLOW" "$FAST_MS" "$SLOW_MS" "$CALLS" "$WORKERS" "${services[@]}" \
    >"$T_DIR/figures.txt" || t_fail "latency_bench.py ran"
echo
echo "== $CALLS calls per policy, $WORKERS at a time, one backend of 3 taking ${SLOW_MS} ms (others ${FAST_MS} ms), $(($(date +%s) - start)) s"
printf '%-16s %8s %10s %8s %s\n' policy calls slow share "mean latency (ms)"
declare -A share=() mean=()
while read -r s n slow m; do
    share[$s]=$(awk -v a="$slow" -v b="$n" 'BEGIN { printf "%.1f", b ? 100 * a / b : 0 }')
    mean[$s]=$m
    printf '%-16s %8s %10s %7s%% %s\n' "$s" "$n" "$slow" "${share[$s]}" "$m"
done <"$T_DIR/figures.txt"
baseline="rr ${share[round_robin]:-?} %, lr ${share[least_request]:-?} %"
bench_row balancing "least_latency: share of calls to the 5x slower backend (%)" "${share[least_latency]:-}" \
    "$baseline" "<= 10" "$(bench_verdict "<=" "${share[least_latency]:-}" 10)"
bench_row balancing "least_latency: mean call latency (ms)" "${mean[least_latency]:-}" \
    "rr ${mean[round_robin]:-?}, lr ${mean[least_request]:-?}" - -
t_ok "latency benchmark ran"
t_done
