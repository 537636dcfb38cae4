#!/usr/bin/env bash
# etcd discovery benchmark (issue 3).  Prints figures; asserts nothing.
#
#  (a) etcd put -> instance visible through resolverd's socket (an "added"
#      EVENT on WATCH), p50/p99 over BENCH_PUTS puts (default 400), beside a
#      raw gateway watch of the same prefix timed against the same clock in
#      the same process; the same for deletes ("removed").
#  (b) initial sync of BENCH_KEYS keys (default 100,000): a raw gateway range
#      of the prefix (body read and JSON decoded) versus resolverd started ->
#      SERVICES shows the service synced with every instance, in two shapes:
#      every key its own address (100,000 instances: memory per instance from
#      VmRSS against a daemon watching an empty prefix) and 100 addresses
#      shared by all keys (the cost of the keys alone).  The addresses are
#      127.0.x.y ports nobody listens on: the connects fail fast, after.
#
# Needs RESOLVERD and RESOLVERCTL; etcd and etcdctl on PATH.  ~3 minutes.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/lib.sh"
. "$HERE/report.sh"
t_init etcd_bench
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
BENCH=$HERE/etcd_bench.py
PUTS=${BENCH_PUTS:-400}
KEYS=${BENCH_KEYS:-100000}

# Quieter and larger than the test default: a backend quota for the keys.
T_ETCD_FLAGS="--quota-backend-bytes 4294967296" t_etcd_start e1 || t_done
fig() { awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$T_DIR/figures.txt"; }
rss() { awk '/VmRSS/ { print $2 }' "/proc/$(t_pid "$1")/status"; }

# start_daemon NAME PREFIX: resolverd with one service "svc" on PREFIX.
start_daemon() {
    local name=$1 prefix=$2
    printf '{ "etcd": { "endpoints": ["%s"] }, "socket": { "path": "%s" },
  "defaults": { "backoff": { "initial_ms": 20000, "max_ms": 120000 } },
  "services": [ { "name": "svc", "prefix": "%s" } ] }\n' \
        "$ETCD_ENDPOINT" "$T_DIR/$name.sock" "$prefix" >"$T_DIR/$name.json"
    t_spawn "$name" "$RESOLVERD" -c "$T_DIR/$name.json" --log-level warn
    t_wait_until 10 test -S "$T_DIR/$name.sock"
}

echo "# etcd $(etcd --version | awk '/etcd Version/ { print $3 }'), $(nproc) CPUs"

# ---- (a) put -> visible ----
start_daemon lat lat/
"$PY" "$BENCH" latency "$ETCD_ENDPOINT" "$T_DIR/lat.sock" svc lat/ "$PUTS" >>"$T_DIR/figures.txt"
t_kill lat KILL >/dev/null 2>&1 || true

# ---- (b) initial sync ----
echo "# loading $KEYS keys twice (distinct addresses, 100 shared addresses)"
"$PY" "$BENCH" load "$ETCD_ENDPOINT" big/ "$KEYS" "$KEYS" | sed 's/^load/load_distinct/' >>"$T_DIR/figures.txt"
"$PY" "$BENCH" load "$ETCD_ENDPOINT" few/ "$KEYS" 100 | sed 's/^load/load_shared/' >>"$T_DIR/figures.txt"
"$PY" "$BENCH" range "$ETCD_ENDPOINT" big/ 3 | sed 's/^range/range_distinct/' >>"$T_DIR/figures.txt"
"$PY" "$BENCH" range "$ETCD_ENDPOINT" few/ 3 | sed 's/^range/range_shared/' >>"$T_DIR/figures.txt"

# Baseline memory: the same daemon watching an empty prefix.
start_daemon empty nothing/
"$PY" "$BENCH" sync "$T_DIR/empty.sock" svc 0 30 >/dev/null
sleep 1
echo "rss_empty $(rss empty)" >>"$T_DIR/figures.txt"
t_kill empty KILL >/dev/null 2>&1 || true

# best_sync NAME PREFIX INSTANCES SHAPE: resolverd started -> synced with
# INSTANCES instances, best of BENCH_RUNS (default 2) fresh daemons; the
# VmRSS of the last one.
best_sync() {
    local name=$1 prefix=$2 want=$3 shape=$4 run t0 s best=""
    for run in $(seq "${BENCH_RUNS:-2}"); do
        t0=$EPOCHREALTIME
        start_daemon "$name" "$prefix"
        s=$("$PY" "$BENCH" sync "$T_DIR/$name.sock" svc "$want" 180 "$t0" | awk '{ print $2 }')
        echo "# sync $shape run $run: $s s"
        if [[ $s != timeout ]] && { [[ -z $best ]] || awk -v a="$s" -v b="$best" 'BEGIN { exit !(a < b) }'; }; then
            best=$s
        fi
        echo "rss_$shape $(rss "$name")" >>"$T_DIR/figures.txt"
        if [[ $shape == distinct ]]; then
            sleep 2
            echo "rss_${shape}_2s $(rss "$name")" >>"$T_DIR/figures.txt"
        fi
        if [[ $shape == distinct ]]; then
            # The graceful stop drains every instance: once O(n^2) (a
            # picker per instance), minutes for 100,000.
            local t1=$EPOCHREALTIME
            T_KILL_TIMEOUT=300 t_kill "$name" TERM >/dev/null 2>&1 || true
            echo "stop_$shape $(awk -v a="$t1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')" \
                >>"$T_DIR/figures.txt"
        else
            t_kill "$name" KILL >/dev/null 2>&1 || true
        fi
    done
    echo "sync_$shape ${best:-timeout}" >>"$T_DIR/figures.txt"
}
best_sync big big/ "$KEYS" distinct
best_sync few few/ 100 shared

# ---- the table ----
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
diff_ms() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "-"; else printf "%+.2f ms", a - b }'; }
echo
echo "== etcd discovery ($PUTS puts; $KEYS keys)"
printf '%-44s %12s %12s %12s  %s\n' figure resolverd "raw gateway" difference goal
for k in put del; do
    what="put -> added"
    [[ $k == del ]] && what="delete -> removed"
    for p in p50 p99; do
        d=$(fig "${k}_daemon_$p")
        r=$(fig "${k}_raw_$p")
        goal=""
        [[ $k == put && $p == p50 ]] && goal="within 1 ms"
        printf '%-44s %9s ms %9s ms %12s  %s\n' "$what $p" "$d" "$r" "$(diff_ms "$d" "$r")" "$goal"
        if [[ -n $goal ]]; then
            bench_row etcd "put -> visible over the socket, p50 (ms)" "$d" "$r (raw watch)" \
                "<= raw + 1 ms" "$(bench_verdict "<=" "$(awk -v a="$d" -v b="$r" 'BEGIN { print a - b }')" 1)"
        elif [[ $k == put ]]; then
            bench_row etcd "put -> visible over the socket, $p (ms)" "$d" "$r (raw watch)" - -
        fi
    done
done
echo "# latency samples: $(fig latency_samples), lost: $(fig latency_lost)"
for shape in distinct shared; do
    s=$(fig "sync_$shape")
    r=$(fig "range_$shape")
    label="initial sync, $KEYS keys -> $KEYS instances"
    [[ $shape == shared ]] && label="initial sync, $KEYS keys -> 100 instances"
    printf '%-44s %10s s %10s s %11sx  %s\n' "$label" "$s" "$r" "$(ratio "$s" "$r")" "<= 1.5x"
    bench_row etcd "${label#initial } (s)" "$s ($(ratio "$s" "$r")x)" "$r (raw range)" "<= 1.5x raw" \
        "$(bench_verdict "<=" "$(ratio "$s" "$r")" 1.5)"
done
rss_e=$(fig rss_empty)
rss_d=$(fig rss_distinct)
rss_d2=$(fig rss_distinct_2s)
rss_s=$(fig rss_shared)
per_inst=$(awk -v a="$rss_d" -v b="$rss_e" -v n="$KEYS" 'BEGIN { if (a == "" || b == "") print "-"; else printf "%.0f", (a - b) * 1024 / n }')
per_key=$(awk -v a="$rss_s" -v b="$rss_e" -v n="$KEYS" 'BEGIN { if (a == "" || b == "") print "-"; else printf "%.0f", (a - b) * 1024 / n }')
printf '%-44s %12s\n' "memory per instance (key+instance+subchannel)" "$per_inst B"
printf '%-44s %12s\n' "memory per key (100 shared instances)" "$per_key B"
bench_row etcd "memory per instance, key+instance+subchannel (B)" "$per_inst" - - -
printf '%-44s %10s s\n' "SIGTERM -> exit with $KEYS instances" "$(fig stop_distinct)"
bench_row etcd "graceful stop (SIGTERM -> exit) with $KEYS instances (s)" "$(fig stop_distinct)" - - -
echo "# VmRSS: empty ${rss_e} kB; $KEYS instances ${rss_d} kB at sync, ${rss_d2} kB 2 s later; $KEYS keys on 100 instances ${rss_s} kB"
echo "# raw range: $(fig range_distinct_fetch) s to fetch $(awk '$1 == "range_distinct" { print $4 }' "$T_DIR/figures.txt") bytes, the rest JSON+base64 decoding in python"
echo "# loads: $(fig load_distinct) s and $(fig load_shared) s for $KEYS keys each (txn of 128 puts)"
t_ok "etcd bench ran"
t_done
