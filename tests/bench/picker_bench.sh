#!/usr/bin/env bash
# picker_bench.sh - the in-process pick (issue 5): ns per pick over 1,000
# READY instances for each policy, 1 thread and 2 threads picking from the
# same picker, beside a baseline loop (an atomic increment and an array
# read) measured in the same run; goals: round_robin <= 50 ns,
# least_request <= 100 ns, ring_hash <= 150 ns with 1 thread; with 2
# threads not slower per pick (per thread) than with 1.  Then, when etcd,
# h2sink and python3 are at hand, the same through the public API
# (resolver_engine_pick + resolver_engine_done) on an embedded engine whose
# 1,000 instances are h2sink addresses, all READY (no goal).  Prints
# figures; asserts nothing but that the benchmark ran.
#
# Environment: PICKER_BENCH (tests/bench/picker_bench, set by `make bench`),
#   H2SINK (tests/bench/h2sink; without it the API part is skipped),
#   PICKER_BENCH_MS (500 ms per measurement), PICKER_BENCH_RUNS (3, best
#   taken), PICKER_BENCH_API (1; 0 skips the API part).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/lib.sh"
. "$HERE/report.sh"
t_init picker_bench
: "${PICKER_BENCH:?set PICKER_BENCH to the built tests/bench/picker_bench}"
PY=/usr/bin/python3
N=1000
args=(--ms "${PICKER_BENCH_MS:-500}" --runs "${PICKER_BENCH_RUNS:-3}")

# ---- the API part: etcd, 1,000 h2sink addresses registered in it ----
api_skip=
if [[ ${PICKER_BENCH_API:-1} == 0 ]]; then
    api_skip="PICKER_BENCH_API=0"
elif [[ -z ${H2SINK:-} || ! -x ${H2SINK:-} ]]; then
    api_skip="no h2sink (H2SINK)"
elif ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    api_skip="etcd not installed"
elif [[ ! -x $PY ]]; then
    api_skip="no $PY"
fi
# put_keys PREFIX PORT: one native value per h2sink address (weights 1..10,
# as the in-process fleet), through the etcd JSON gateway.
put_keys() {
    "$H2SINK" --print-addrs 0 "$N" "$2" | "$PY" -c "
import base64, http.client, json, sys, urllib.parse
u = urllib.parse.urlparse('$ETCD_ENDPOINT')
c = http.client.HTTPConnection(u.hostname, u.port)
b = lambda s: base64.b64encode(s.encode()).decode()
for i, addr in enumerate(sys.stdin.read().split()):
    value = json.dumps({'address': addr, 'weight': 1 + i % 10})
    c.request('POST', '/v3/kv/put', json.dumps({'key': b('$1%06d' % i), 'value': b(value)}))
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit('put failed: %d' % r.status)
"
}
if [[ -z $api_skip ]]; then
    if ! t_etcd_start e1; then
        api_skip="etcd did not start"
    else
        port=$(t_free_port)
        t_spawn sink "$H2SINK" 0 "$N" "$port"
        if ! t_wait_until 30 grep -q ready "$T_DIR/sink.log"; then
            api_skip="h2sink did not start"
        elif ! put_keys picker.bench/ "$port"; then
            api_skip="loading the keys into etcd failed"
        else
            args+=(--engine "$ETCD_ENDPOINT" picker.bench/)
        fi
    fi
fi

echo "== in-process pick over $N READY instances, best of ${PICKER_BENCH_RUNS:-3} runs of ${PICKER_BENCH_MS:-500} ms"
rc=0
"$PICKER_BENCH" "${args[@]}" >"$T_DIR/figures.txt" || rc=$?
fig() { awk -v k="$1" '$1 == k { print $2 }' "$T_DIR/figures.txt"; }
text() { awk -v k="$1" '$1 == k { sub(/^[^ ]+ /, ""); print }' "$T_DIR/figures.txt"; }
echo "   a pick:    $(text what_pick)"
echo "   baseline:  $(text what_baseline)"
echo "   2 threads: $(text what_threads)"
echo "   policies:  weighted_round_robin weights 1..10; least_request choice_count 2;"
echo "              ring_hash one key per pick from 4,096 precomputed keys"

goal_of() {
    case $1 in
    round_robin) echo 50 ;;
    least_request) echo 100 ;;
    ring_hash) echo 150 ;;
    *) echo - ;;
    esac
}
policies=(pick_first round_robin random weighted_round_robin least_request ring_hash)
b1=$(fig baseline_1t_ns)
b2=$(fig baseline_2t_ns)
# table PREFIX LABEL: the table and the report rows for one set of figures.
table() {
    local pre=$1 label=$2 p one two goal verdict v2 g2 shown gtext
    printf '   %-22s %10s %12s %15s %10s %9s %12s\n' policy "1 thread" "2 threads" "baseline 1t/2t" \
        "goal (1t)" verdict "2t vs 1t"
    for p in "${policies[@]}"; do
        one=$(fig "$pre${p}_1t_ns")
        two=$(fig "$pre${p}_2t_ns")
        goal=-
        [[ -z $pre ]] && goal=$(goal_of "$p")
        verdict=-
        gtext=-
        if [[ $goal != - ]]; then
            verdict=$(bench_verdict "<=" "$one" "$goal")
            gtext="<= $goal"
        fi
        if [[ -z $pre ]]; then
            v2=$(bench_verdict "<=" "$two" "$one")
            g2="<= 1 thread"
            shown=$v2
        else # the API path has no goal: the ratio, for information
            v2=- g2=-
            shown=$(awk -v a="$two" -v b="$one" 'BEGIN { if (b > 0) printf "(%.2fx)", a / b }')
        fi
        printf '   %-22s %10s %12s %15s %10s %9s %12s\n' "$p" "${one:--}" "${two:--}" "$b1 / $b2" \
            "$gtext" "$verdict" "$shown"
        ROWS+=("$p $label, 1 thread (ns)|${one:--}|$b1 (atomic inc+array read)|$gtext|$verdict")
        ROWS+=("$p $label, 2 threads, per thread (ns)|${two:--} (1 thread: ${one:--})|$b2 (inc+read, 2 threads)|$g2|$v2")
    done
}
ROWS=()
table "" "pick+done"
if [[ -n $(fig api_round_robin_1t_ns) ]]; then
    echo
    echo "== the same through the public API, on an embedded engine ($(fig api_ready_instances) READY h2sink instances per service)"
    echo "   a pick:    $(text what_api)"
    echo "   (2 threads: three busy threads with the engine's, on $(nproc) CPUs)"
    table api_ "API pick+done"
elif [[ -n $api_skip ]]; then
    echo
    echo "== public API (resolver_engine_pick + done): skipped: $api_skip"
else
    echo
    echo "== public API (resolver_engine_pick + done): not measured: $(text what_api)"
fi
# The summary rows, after the tables (a script run alone prints them).
for row in "${ROWS[@]}"; do
    IFS='|' read -r f m b g v <<<"$row"
    bench_row picker "$f" "$m" "$b" "$g" "$v"
done
if grep -q '_errors ' "$T_DIR/figures.txt"; then
    echo "   failed picks: $(grep '_errors ' "$T_DIR/figures.txt" | tr '\n' ' ')"
fi
if [[ $rc == 0 && -n $(fig round_robin_1t_ns) ]]; then
    t_ok "picker benchmark ran"
else
    t_fail "picker benchmark ran" "exit status $rc"
fi
t_done
