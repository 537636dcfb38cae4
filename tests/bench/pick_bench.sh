#!/usr/bin/env bash
# Pick path benchmark (issue 6): round trip and pipelined throughput of a
# pick over resolverd's socket beside a bare AF_UNIX echo server with the
# same request and reply sizes, measured in the same run; then 1,000
# concurrent clients picking, with the daemon's memory before and after.
# Prints figures; asserts nothing.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/lib.sh"
. "$HERE/report.sh"
t_init pick_bench
: "${RESOLVERD:?}" "${H2SERVER:?}" "${PICK_BENCH:?}"
t_etcd_start e1 || t_done
declare -a P=()
for i in 1 2 3; do
    port=$(t_free_port)
    P+=("$port")
    t_spawn "b$i" "$H2SERVER" "$port"
done
for i in 0 1 2; do
    t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/${P[$i]}" || true
    t_etcdctl put "bench.svc/$i" "127.0.0.1:${P[$i]}" >/dev/null
done
# Detached bench picks are never reported done: a short ticket timeout
# keeps the table small; log level error keeps the leak warnings quiet.
printf '{"defaults": {"ticket_timeout_ms": 2000}, "services": [{"name": "bench.svc"}]}\n' >"$T_DIR/rd.json"
SOCK=$T_DIR/rd.sock
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK" --log-level error
t_wait_until 10 test -S "$SOCK"
t_wait_until 10 bash -c "'$RESOLVERCTL' -s '$SOCK' pick bench.svc >/dev/null"
rss() { awk '/VmRSS/ {print $2}' "/proc/$(t_pid resolverd)/status"; }
rss_before=$(rss)
"$PICK_BENCH" "$SOCK" bench.svc "${PICK_BENCH_N:-20000}" "${PICK_BENCH_CLIENTS:-1000}" >"$T_DIR/figures.txt"
rss_after=$(rss)
fig() { awk -v k="$1" '$1 == k {print $2}' "$T_DIR/figures.txt"; }
echo
echo "== pick over the socket vs a bare AF_UNIX echo ($(fig request_bytes) B request, $(fig reply_bytes) B reply)"
printf '%-34s %12s %12s %8s %s\n' figure resolverd echo ratio goal
printf '%-34s %12s %12s %8s %s\n' "round trip (us, one at a time)" "$(fig pick_rtt_us)" "$(fig echo_rtt_us)" \
    "$(awk -v a="$(fig pick_rtt_us)" -v b="$(fig echo_rtt_us)" 'BEGIN{printf "%.2f", a/b}')" "<= 1.20"
printf '%-34s %12s %12s %8s %s\n' "pipelined (req/s, 64 PICK+64 DONE)" "$(fig pick_pipelined_rps)" "$(fig echo_pipelined_rps)" \
    "$(awk -v a="$(fig pick_pipelined_rps)" -v b="$(fig echo_pipelined_rps)" 'BEGIN{printf "%.2f", a/b}')" ">= 0.80"
echo
echo "== $(fig clients) concurrent clients, 20 picks each"
printf '%-34s %s\n' "picks answered OK" "$(fig clients_ok)" "picks failed" "$(fig clients_errors)" \
    "seconds" "$(fig clients_seconds)" "daemon RSS before (KiB)" "$rss_before" "daemon RSS after (KiB)" "$rss_after"
pick_rtt=$(fig pick_rtt_us)
echo_rtt=$(fig echo_rtt_us)
rtt_ratio=$(awk -v a="$pick_rtt" -v b="$echo_rtt" 'BEGIN{printf "%.2f", a/b}')
bench_row socket "pick round trip, one at a time (us)" "$pick_rtt (${rtt_ratio}x)" "$echo_rtt (echo)" \
    "<= 1.2x echo" "$(bench_verdict "<=" "$rtt_ratio" 1.2)"
pick_rps=$(fig pick_pipelined_rps)
echo_rps=$(fig echo_pipelined_rps)
rps_ratio=$(awk -v a="$pick_rps" -v b="$echo_rps" 'BEGIN{printf "%.2f", a/b}')
bench_row socket "pipelined, 64 PICKs then their 64 DONEs (req/s)" "$pick_rps (${rps_ratio}x)" "$echo_rps (echo)" \
    ">= 0.8x echo" "$(bench_verdict ">=" "$rps_ratio" 0.8)"
bench_row socket "$(fig clients) clients x 20 picks: errors" "$(fig clients_errors)" - "0" \
    "$(bench_verdict "<=" "$(fig clients_errors)" 0)"
bench_row socket "daemon RSS before/after the clients (KiB)" "$rss_before -> $rss_after" - "bounded" -
t_ok "pick benchmark ran"
t_done
