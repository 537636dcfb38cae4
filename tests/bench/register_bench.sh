#!/usr/bin/env bash
# Registration benchmark (issue 14).  Prints figures; asserts nothing.
#
#  (a) register -> visible: REGISTER on one resolverd's socket (go-zero form:
#      lease grant, then the put under it) until the instance is an "added"
#      EVENT on a second resolverd's WATCH, beside a raw gateway put of a
#      key timed to a raw gateway watch of the prefix, and to the second
#      resolverd, in the same run and process (p50/p99 over BENCH_REGS
#      rounds, default 200).  Goal: register -> visible <= raw put -> watch
#      + 1 ms.
#  (b) 1,000 registrations (BENCH_REG_COUNT) with the default TTL (10 s,
#      kept alive every third of it): the etcd requests per second they cost
#      once registered (etcd's own counters: lease renewals and every
#      gateway request, over BENCH_REG_WINDOW s, default 30), the time until
#      all are REGISTERED, and the registering daemon's CPU meanwhile and
#      VmRSS after.
#
# Needs RESOLVERD and RESOLVERCTL; etcd and etcdctl on PATH.  ~1.5 minutes.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/lib.sh"
. "$HERE/report.sh"
t_init register_bench
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
BENCH=$HERE/register_bench.py
ROUNDS=${BENCH_REGS:-200}
COUNT=${BENCH_REG_COUNT:-1000}
WINDOW=${BENCH_REG_WINDOW:-30}

t_etcd_start e1 || t_done
fig() { awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$T_DIR/figures.txt"; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$(t_pid "$1")/stat"; }
HZ=$(getconf CLK_TCK)
echo "# etcd $(etcd --version | awk '/etcd Version/ { print $3 }'), $(nproc) CPUs"

# daemon NAME JSON_BODY: resolverd NAME with the given top-level keys.
daemon() {
    printf '{ "etcd": { "endpoints": ["%s"] }, "socket": { "path": "%s" }, %s }\n' \
        "$ETCD_ENDPOINT" "$T_DIR/$1.sock" "$2" >"$T_DIR/$1.json"
    t_spawn "$1" "$RESOLVERD" -c "$T_DIR/$1.json" --log-level warn
    t_wait_until 10 test -S "$T_DIR/$1.sock"
}

# ---- (a) register -> visible on another resolverd ----
# The viewer's connects to the (unused) addresses back off for long: only
# the events matter here.
daemon reg '"deregister_grace_ms": 0'
daemon view '"defaults": { "backoff": { "initial_ms": 20000, "max_ms": 120000 },
  "self_preservation_percent": 0 }, "services": [ { "name": "bench.svc" } ]'
"$PY" "$BENCH" latency "$ETCD_ENDPOINT" "$T_DIR/reg.sock" "$T_DIR/view.sock" bench.svc "$ROUNDS" \
    >>"$T_DIR/figures.txt"
t_kill view KILL >/dev/null 2>&1 || true
t_kill reg KILL >/dev/null 2>&1 || true

# ---- (b) 1,000 registrations ----
regs=$("$PY" -c "
import json, sys
n = int(sys.argv[1])
print(json.dumps([{'service': 'many.svc', 'address': '127.0.%d.%d:7100' % (60 + i // 250, 1 + i % 250)}
                  for i in range(n)]))" "$COUNT")
counters() { "$PY" "$BENCH" etcd_counters "$ETCD_ENDPOINT" >"$T_DIR/$1.counters"; }
cnt() { awk -v k="$2" '$1 == k { v = $2 } END { print v + 0 }' "$T_DIR/$1.counters"; }
total() { awk '$1 != "renewed" && $1 != "granted" { s += $2 } END { print s + 0 }' "$T_DIR/$1.counters"; }
t0=$EPOCHREALTIME
daemon many "\"register\": $regs"
registered() {
    [[ $("$RESOLVERCTL" -s "$T_DIR/many.sock" --json registrations | "$PY" -c "
import json, sys
print(sum(r['state'] == 'REGISTERED' for r in json.load(sys.stdin)))") == "$COUNT" ]]
}
if t_wait_until 120 registered; then
    all_s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
else
    all_s=timeout
fi
echo "# $COUNT registrations REGISTERED ${all_s} s after the daemon was started"
sleep 2 # past the first puts
counters before
c0=$(cpu_ticks many)
w0=$EPOCHREALTIME
sleep "$WINDOW"
counters after
c1=$(cpu_ticks many)
w1=$EPOCHREALTIME
secs=$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')
rate() { awk -v a="$1" -v b="$2" -v s="$secs" 'BEGIN { printf "%.0f", (b - a) / s }'; }
ka_rate=$(rate "$(cnt before renewed)" "$(cnt after renewed)")
req_rate=$(rate "$(total before)" "$(total after)")
cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v s="$secs" 'BEGIN { printf "%.1f", (b - a) / hz / s * 100 }')
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$(t_pid many)/status")
echo "# etcd requests by method over ${secs%.*} s:"
join "$T_DIR/before.counters" "$T_DIR/after.counters" 2>/dev/null |
    awk -v s="$secs" '$3 > $2 { printf "#   %-22s %8.1f/s\n", $1, ($3 - $2) / s }'
t_kill many KILL >/dev/null 2>&1 || true

# ---- the table ----
echo
echo "== registration ($ROUNDS rounds; $COUNT registrations)"
printf '%-44s %10s %10s\n' figure p50 p99
for k in raw_watch raw_view reg_watch reg_view; do
    case $k in
    raw_watch) what="raw put -> raw watch" ;;
    raw_view) what="raw put -> visible on another resolverd" ;;
    reg_watch) what="register -> raw watch" ;;
    reg_view) what="register -> visible on another resolverd" ;;
    esac
    printf '%-44s %7s ms %7s ms\n' "$what" "$(fig "${k}_p50")" "$(fig "${k}_p99")"
done
echo "# samples $(fig samples), lost $(fig lost)"
d=$(fig reg_view_p50)
r=$(fig raw_watch_p50)
bench_row register "register -> visible on another resolverd, p50 (ms)" "$d" "$r (raw put -> watch)" \
    "<= raw + 1 ms" "$(bench_verdict "<=" "$(awk -v a="$d" -v b="$r" 'BEGIN { print a - b }')" 1)"
bench_row register "register -> visible on another resolverd, p99 (ms)" "$(fig reg_view_p99)" \
    "$(fig raw_watch_p99) (raw put -> watch)" - -
bench_row register "raw put -> visible on another resolverd, p50 (ms)" "$(fig raw_view_p50)" - - -
printf '%-44s %10s\n' "$COUNT registrations: all REGISTERED after" "$all_s s"
printf '%-44s %10s\n' "lease keepalives per second" "$ka_rate"
printf '%-44s %10s\n' "etcd requests per second (all methods)" "$req_rate"
printf '%-44s %10s\n' "registering daemon CPU (one core)" "$cpu %"
printf '%-44s %10s\n' "registering daemon VmRSS" "$rss kB"
bench_row register "$COUNT registrations (TTL 10 s): lease keepalives per second" "$ka_rate" \
    "$(awk -v n="$COUNT" 'BEGIN { printf "%.0f", n / (10 / 3) }') (one per TTL/3)" - -
bench_row register "$COUNT registrations: etcd requests per second, all methods" "$req_rate" - - -
bench_row register "$COUNT registrations: daemon CPU (% of one core)" "$cpu" - - -
bench_row register "$COUNT registrations: all REGISTERED after start (s)" "$all_s" - - -
bench_row register "$COUNT registrations: daemon VmRSS (KiB)" "$rss" - - -
t_ok "registration bench ran"
t_done
