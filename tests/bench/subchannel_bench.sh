#!/usr/bin/env bash
# subchannel_bench.sh - subchannel figures, printed, never asserted:
#  (a) detection time of a silent drop (kernel DROP in a network namespace
#      made here) with keepalive 1 s / 1 s, resolverd beside a python3-grpcio
#      channel (same keepalive options) against the same fault at the same
#      instant; goal: ours <= time + timeout + 250 ms.  Root only.
#  (b) 10,000 subchannels (h2c) to h2sink processes listening on 10,000
#      distinct loopback addresses (127.10.0.1 ..): resolverd RSS per
#      subchannel (goal <= 8 KiB with the nghttp2 session), time to connect
#      all, idle CPU with keepalive 30 s (goal < 1 % of a core); protocol tcp
#      beside it for reference.
#  (c) reconnect storm: 1,000 subchannels whose server is killed at once:
#      connection attempts per 100 ms.
#
# Environment: RESOLVERD RESOLVERCTL H2SERVER (as the tests); optional
#   H2SINK (tests/bench/h2sink.c built; else built here with $CC or cc),
#   BENCH_TRIALS (5), BENCH_N (10000), BENCH_STORM_N (1000), BENCH_IDLE_S (30),
#   BENCH_PARTS ("a b c").
set -u
BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "$0")" && pwd)}
. "$BENCH_DIR/../integration/lib.sh"
. "$BENCH_DIR/report.sh"
t_init sc_bench
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
PY=/usr/bin/python3
TRIALS=${BENCH_TRIALS:-5}
N=${BENCH_N:-10000}
STORM_N=${BENCH_STORM_N:-1000}
IDLE_S=${BENCH_IDLE_S:-30}
PARTS=${BENCH_PARTS:-a b c}
CC=${CC:-cc}

t_netns_trap

now_ms() { local us=${EPOCHREALTIME/[.,]/}; echo $((us / 1000)); }
listening() { "$PY" -c "import socket; socket.create_connection(('$1', $2), 1)" 2>/dev/null; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# stats MS...: "min median max" of integers.
stats() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%d %d %d", v[1], v[int((NR + 1) / 2)], v[NR] }'; }

t_etcd_start e1 || t_done

# rd_start NAME CONFIG_JSON [ARGS...]: resolverd NAME on $T_DIR/NAME.sock.
rd_start() {
    local name=$1 cfg=$2
    shift 2
    printf '%s\n' "$cfg" >"$T_DIR/$name.json"
    rm -f "$T_DIR/$name.sock" # a stopped daemon may leave its socket behind
    t_spawn "$name" "$RESOLVERD" -c "$T_DIR/$name.json" --etcd "$ETCD_ENDPOINT" \
        --socket "$T_DIR/$name.sock" "$@"
    t_wait_until 10 test -S "$T_DIR/$name.sock" || { t_fail "$name serves its socket"; return 1; }
}
# ready_count NAME SERVICE
ready_count() {
    "$RESOLVERCTL" -s "$T_DIR/$1.sock" --json services 2>/dev/null | "$PY" -c "
import json, sys
try:
    services = json.load(sys.stdin)
except ValueError:
    services = []
for s in services:
    if s['name'] == '$2':
        print(s['states']['READY'])"
}

# ================= (a) silent drop: detection time =================
part_a() {
    echo "== (a) silent drop (iptables DROP in a netns), keepalive 1000 ms / 1000 ms, $TRIALS trials"
    if [[ $(id -u) != 0 ]] || ! ip netns list >/dev/null 2>&1 || ! command -v iptables >/dev/null; then
        echo "   skipped: needs root, ip netns and iptables"
        return 0
    fi
    local n m _
    for _ in $(seq 20); do
        n=$((RANDOM % 100 + 100)) m=$((RANDOM % 63 * 4))
        ip -4 -o addr show | grep -q " 169\.254\.$n\.$((m + 1))/" || break
    done
    NS=rsvb$$ VH=rsvbh$$
    local VN=rsvbn$$ HA=169.254.$n.$((m + 1)) NA=169.254.$n.$((m + 2))
    if ! { ip netns add "$NS" && ip link add "$VH" type veth peer name "$VN" netns "$NS" &&
        ip addr add "$HA/30" dev "$VH" && ip link set "$VH" up &&
        ip -n "$NS" addr add "$NA/30" dev "$VN" && ip -n "$NS" link set "$VN" up &&
        ip -n "$NS" link set lo up; }; then
        echo "   could not set up the namespace"
        return 0
    fi
    local P
    P=$(t_free_port)
    t_spawn nsb ip netns exec "$NS" "$H2SERVER" --name nsb --bind "$NA" "$P"
    t_wait_until 10 listening "$NA" "$P" || { echo "   h2server in the namespace did not start"; return 0; }
    local A=$NA:$P
    t_etcdctl put drop/1 "$A" >/dev/null
    rd_start rda '{ "services": [ { "name": "drop", "keepalive_time_ms": 1000,
        "keepalive_timeout_ms": 1000, "connect_timeout_ms": 2000,
        "backoff": { "initial_ms": 200, "max_ms": 1000 } } ] }' || return 0
    t_spawn rdawatch "$PY" -u "$BENCH_DIR/../integration/watchts.py" "$T_DIR/rda.sock"
    local have_grpc=0
    if "$PY" -c 'import grpc' 2>/dev/null; then
        have_grpc=1
        t_spawn gw "$PY" -u "$BENCH_DIR/grpc_keepalive_watch.py" "$A" 1000 1000
    fi
    # shellcheck disable=SC2317 # called through t_wait_until
    ours_ready() { [ "$("$RESOLVERCTL" -s "$T_DIR/rda.sock" --json instances drop | grep -c '"state": "READY"')" = 1 ]; }
    # shellcheck disable=SC2317
    grpc_ready() { [[ $have_grpc == 0 ]] || [ "$(tail -n 1 "$T_DIR/gw.log" 2>/dev/null | awk '{ print $2 }')" = READY ]; }
    after() { awk -v t="$1" -v re="$2" '$1 >= t && $0 ~ re { print $1; exit }' "$3"; }
    local -a ours=() theirs=()
    local i t0 to tg
    for i in $(seq "$TRIALS"); do
        if ! t_wait_until 30 ours_ready || ! t_wait_until 30 grpc_ready; then
            echo "   trial $i: not READY again after 30 s; stopping"
            break
        fi
        sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + (r % 1000) / 1000 }')"
        t0=$(now_ms)
        ip netns exec "$NS" iptables -A INPUT -j DROP
        ip netns exec "$NS" iptables -A OUTPUT -j DROP
        to='' tg=''
        local deadline=$((t0 + 15000))
        while (($(now_ms) < deadline)); do
            [[ -z $to ]] && to=$(after "$t0" " drop $A (TRANSIENT_FAILURE|CONNECTING|IDLE)" "$T_DIR/rdawatch.log")
            [[ -z $tg && $have_grpc == 1 ]] && tg=$(after "$t0" " (TRANSIENT_FAILURE|CONNECTING|IDLE)" "$T_DIR/gw.log")
            [[ -n $to && ($have_grpc == 0 || -n $tg) ]] && break
            sleep 0.05
        done
        ip netns exec "$NS" iptables -D INPUT -j DROP
        ip netns exec "$NS" iptables -D OUTPUT -j DROP
        [[ -n $to ]] && ours+=($((to - t0)))
        [[ -n $tg ]] && theirs+=($((tg - t0)))
        printf '   trial %d: resolverd %s ms, grpc-python %s ms\n' "$i" \
            "${to:+$((to - t0))}" "${tg:+$((tg - t0))}"
    done
    local s g='' gv
    if ((${#theirs[@]})); then
        read -r -a s <<<"$(stats "${theirs[@]}")"
        gv=$("$PY" -c 'import grpc; print(grpc.__version__)')
        g="${s[1]} median, ${s[2]} max (grpcio $gv)"
        printf '   grpc-python: min %5d  median %5d  max %5d ms   (grpcio %s, round_robin, same keepalive)\n' \
            "${s[0]}" "${s[1]}" "${s[2]}" "$gv"
    elif [[ $have_grpc == 0 ]]; then
        echo "   grpc-python: skipped (python3-grpcio missing)"
    fi
    if ((${#ours[@]})); then
        read -r -a s <<<"$(stats "${ours[@]}")"
        printf '   resolverd:   min %5d  median %5d  max %5d ms   (goal: max <= 1000 + 1000 + 250 = 2250 ms: %s)\n' \
            "${s[0]}" "${s[1]}" "${s[2]}" "$(bench_verdict "<=" "${s[2]}" 2250)"
        bench_row subchannel "silent drop detected, keepalive 1 s/1 s (ms, ${#ours[@]} trials)" \
            "${s[1]} median, ${s[2]} max" "${g:--}" "<= 2250" "$(bench_verdict "<=" "${s[2]}" 2250)"
    fi
    t_kill rdawatch TERM >/dev/null 2>&1 || true
    [[ $have_grpc == 1 ]] && { t_kill gw TERM >/dev/null 2>&1 || true; }
    t_kill rda TERM >/dev/null 2>&1 || true
    t_kill nsb TERM >/dev/null 2>&1 || true
    t_netns_cleanup
}

# ================= (b) 10,000 subchannels =================
SINK=
build_sink() {
    [[ -n $SINK ]] && return 0
    if [[ -n ${H2SINK:-} && -x ${H2SINK:-} ]]; then
        SINK=$H2SINK
        return 0
    fi
    SINK=$T_DIR/h2sink
    "$CC" -O2 -o "$SINK" "$BENCH_DIR/h2sink.c" || { SINK=; echo "   cannot build h2sink"; return 1; }
}
# sinks_start TAG FIRST COUNT PORT [PER_PROCESS]
sinks_start() {
    local tag=$1 first=$2 count=$3 port=$4 per=${5:-2500} k=0 f
    for ((f = first; f < first + count; f += per, k++)); do
        local c=$((first + count - f < per ? first + count - f : per))
        t_spawn "$tag$k" "$SINK" "$f" "$c" "$port"
    done
    local i
    for ((i = 0; i < k; i++)); do
        t_wait_until 30 grep -q ready "$T_DIR/$tag$i.log" || { echo "   sink $tag$i did not start"; return 1; }
    done
}
# put_keys PREFIX FIRST COUNT PORT: one etcd key per sink address, through
# the etcd JSON gateway on one keep-alive connection.
put_keys() {
    "$SINK" --print-addrs "$2" "$3" "$4" | "$PY" -c "
import base64, http.client, json, sys, urllib.parse
u = urllib.parse.urlparse('$ETCD_ENDPOINT')
c = http.client.HTTPConnection(u.hostname, u.port)
b = lambda s: base64.b64encode(s.encode()).decode()
for i, addr in enumerate(sys.stdin.read().split()):
    c.request('POST', '/v3/kv/put', json.dumps({'key': b('$1%06d' % i), 'value': b(addr)}))
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit('put failed: %d' % r.status)
"
}

part_b() {
    echo "== (b) $N subchannels to $N distinct loopback addresses (127.10.0.1 ..)"
    build_sink || return 0
    local port t0 t1
    port=$(t_free_port)
    sinks_start sink 0 "$N" "$port" || return 0
    t0=$(now_ms)
    put_keys big/ 0 "$N" "$port" || { echo "   loading the keys failed"; return 0; }
    printf '   %d keys put in etcd in %d ms\n' "$N" $(($(now_ms) - t0))
    local proto rss0 rss1 pid ready cfg
    for proto in h2c tcp; do
        # Baseline: the same daemon and service, its prefix empty.
        cfg='{ "services": [ { "name": "big", "prefix": "nothing/", "protocol": "'$proto'",
            "keepalive_time_ms": 30000, "keepalive_timeout_ms": 10000 } ] }'
        rd_start rdb0 "$cfg" || return 0
        sleep 2
        rss0=$(rss_kib "$(t_pid rdb0)")
        t_kill rdb0 TERM >/dev/null 2>&1 || true
        cfg=${cfg/nothing\//big/}
        t0=$(now_ms)
        rd_start rdb "$cfg" || return 0
        pid=$(t_pid rdb)
        ready=0
        while (($(now_ms) - t0 < 120000)); do
            ready=$(ready_count rdb big)
            [[ ${ready:-0} -ge $N ]] && break
            sleep 0.1
        done
        t1=$(now_ms)
        sleep 2
        rss1=$(rss_kib "$pid")
        printf '   %-4s %d of %d READY %d ms after resolverd started (range + connect)\n' \
            "$proto" "$ready" "$N" $((t1 - t0))
        local per
        per=$(awk -v a="$rss0" -v b="$rss1" -v n="$N" 'BEGIN { printf "%.2f", (b - a) / n }')
        printf '   %-4s RSS %d KiB without instances, %d KiB with %d: %s KiB per subchannel (goal <= 8 KiB)\n' \
            "$proto" "$rss0" "$rss1" "$N" "$per"
        if [[ $proto == h2c ]]; then
            bench_row subchannel "memory per READY h2c subchannel, $N of them (KiB)" "$per" \
                "$rss0 KiB RSS without them" "<= 8" "$(bench_verdict "<=" "$per" 8)"
        else
            bench_row subchannel "memory per connected tcp subchannel, $N of them (KiB)" "$per" \
                "$rss0 KiB RSS without them" - -
        fi
        if [[ $proto == h2c ]]; then
            local c0 c1 hz
            hz=$(getconf CLK_TCK)
            c0=$(cpu_ticks "$pid")
            sleep "$IDLE_S"
            c1=$(cpu_ticks "$pid")
            local cpu
            cpu=$(awk -v d=$((c1 - c0)) -v hz="$hz" -v s="$IDLE_S" 'BEGIN { printf "%.3f", 100 * d / hz / s }')
            printf '   h2c  idle CPU with keepalive 30 s over %d s: %s %% of a core (goal < 1 %%); %d PINGs/s expected\n' \
                "$IDLE_S" "$cpu" $((N / 30))
            bench_row subchannel "idle CPU, $N h2c subchannels, keepalive 30 s (% of a core)" "$cpu" - \
                "< 1" "$(bench_verdict "<" "$cpu" 1)"
        fi
        t_kill rdb TERM >/dev/null 2>&1 || true
    done
    local k=0
    while t_pid "sink$k" >/dev/null 2>&1; do
        t_kill "sink$k" TERM >/dev/null 2>&1 || true
        k=$((k + 1))
    done
}

# ================= (c) reconnect storm =================
part_c() {
    echo "== (c) reconnect storm: $STORM_N subchannels lose their server at once (kill -9)"
    build_sink || return 0
    local port first=20000
    port=$(t_free_port)
    sinks_start storm "$first" "$STORM_N" "$port" "$STORM_N" || return 0
    put_keys storm/ "$first" "$STORM_N" "$port" || return 0
    rd_start rdc '{ "services": [ { "name": "storm", "keepalive_time_ms": 30000 } ] }' \
        --log-level debug || return 0
    local ready=0 t0
    t0=$(now_ms)
    while (($(now_ms) - t0 < 60000)); do
        ready=$(ready_count rdc storm)
        [[ ${ready:-0} -ge $STORM_N ]] && break
        sleep 0.1
    done
    echo "   $ready of $STORM_N READY; backoff: gRPC defaults (1 s, x1.6, +-20 %, 120 s)"
    sleep 1
    t0=$(now_ms)
    t_kill storm0 KILL >/dev/null 2>&1 || true
    sleep 10
    # Connection attempts = transitions into CONNECTING, from the debug log.
    "$PY" - "$T_DIR/rdc.log" "$t0" "$T_DIR/storm.txt" <<'PYEOF'
import datetime, re, sys
path, t0 = sys.argv[1], int(sys.argv[2])
pat = re.compile(r"^(\S+Z) debug subchannel \S+: \S+ -> CONNECTING")
bins = {}
for line in open(path, errors="replace"):
    m = pat.match(line)
    if not m:
        continue
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
    ms = int(t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000) - t0
    if 0 <= ms < 10000:
        bins[ms // 100] = bins.get(ms // 100, 0) + 1
total = sum(bins.values())
print("   connection attempts per 100 ms after the kill (%d in 10 s):" % total)
busiest = sorted(bins.values(), reverse=True)
with open(sys.argv[3], "w") as f:
    f.write("%d %d %d\n" % (total, busiest[0] if busiest else 0, len(bins)))
peak = max(bins.values()) if bins else 1
for b in range(0, 100):
    n = bins.get(b, 0)
    if n:
        print("   %5.1f s %5d %s" % (b / 10, n, "#" * max(1, round(60 * n / peak))))
PYEOF
    local total peak nbins
    read -r total peak nbins <"$T_DIR/storm.txt" || true
    bench_row subchannel "reconnect storm, $STORM_N lose their server: attempts in 10 s" \
        "$total; busiest 100 ms: $peak; spread over $nbins of 100 slots" - "spread (jitter)" -
    t_kill rdc TERM >/dev/null 2>&1 || true
}

for p in $PARTS; do
    "part_$p"
done
t_ok "figures printed"
t_done
