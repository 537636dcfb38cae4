#!/usr/bin/env bash
# least_latency through the daemon: three h2server backends behind real
# etcd, one of them reported 5x slower by every `resolverctl done
# --latency-ms`.  The share of picks the slow one gets under least_latency,
# round_robin and least_request in the same run (picks interleaved, so all
# three see the same conditions); least_latency must keep it at <= 10 %.
# Then a fourth backend joins: without a latency figure it is picked (and a
# done without latency_ms gives it none), and its first slow figure ends it.
set -u
. "$(dirname "$0")/lib.sh"
t_init least_latency
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"

PICKS=${LEAST_LATENCY_PICKS:-1000}
FAST_MS=10 SLOW_MS=50

t_etcd_start e1 || t_done
SOCK=$T_DIR/rd.sock
ctl() { "$RESOLVERCTL" -s "$SOCK" "$@"; }

declare -a ADDR=()
for i in 1 2 3 4; do
    port=$(t_free_port)
    ADDR+=("127.0.0.1:$port")
    t_spawn "b$i" "$H2SERVER" --name "b$i" "$port"
done
for a in "${ADDR[@]}"; do
    t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/${a#*:}" || t_fail "backend $a listens"
done
SLOW=${ADDR[1]} NEW=${ADDR[3]}

cat >"$T_DIR/rd.json" <<JSON
{
  "services": [
    { "name": "ll", "policy": "least_latency", "latency_decay_ms": 10000 },
    { "name": "rr", "policy": "round_robin" },
    { "name": "lr", "policy": "least_request" }
  ]
}
JSON
for svc in ll rr lr; do
    for k in 0 1 2; do t_etcdctl put "$svc/$k" "${ADDR[$k]}" >/dev/null; done
done

t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK"
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
ready() { [ "$(ctl --json instances "$1" | grep -c '"state": "READY"')" = "$2" ]; }
for svc in ll rr lr; do t_wait_for "$svc: 3 instances READY" 10 ready "$svc" 3; done

# One pick of SERVICE held, then done with the latency its backend stands
# for (LAT_NEW for NEW: empty, no latency_ms); prints the address.
LAT_NEW=
pick_report() {
    local addr ticket lat=$FAST_MS
    read -r addr ticket < <(ctl pick --hold "$1") || return 1
    [ "$addr" = "$SLOW" ] && lat=$SLOW_MS
    if [ "$addr" = "$NEW" ]; then lat=$LAT_NEW; fi
    if [ -n "$lat" ]; then ctl done "$ticket" --latency-ms "$lat" >/dev/null; else ctl done "$ticket" >/dev/null; fi
    echo "$addr"
}

declare -A slow=([ll]=0 [rr]=0 [lr]=0)
errors=0
for _ in $(seq "$PICKS"); do
    for svc in ll rr lr; do
        a=$(pick_report "$svc") || errors=$((errors + 1))
        [ "$a" = "$SLOW" ] && slow[$svc]=$((slow[$svc] + 1))
    done
done
t_eq "every pick and done answered" 0 "$errors"
pct() { echo "$(($1 * 1000 / PICKS / 10)).$(($1 * 1000 / PICKS % 10))"; }
echo "# share of $PICKS picks for the backend reported ${SLOW_MS} ms (others ${FAST_MS} ms):"
echo "#   least_latency ${slow[ll]} ($(pct "${slow[ll]}") %)"
echo "#   round_robin   ${slow[rr]} ($(pct "${slow[rr]}") %)"
echo "#   least_request ${slow[lr]} ($(pct "${slow[lr]}") %)"
t_check "least_latency gives the slow backend <= 10 % (${slow[ll]} of $PICKS)" \
    test $((slow[ll] * 10)) -le "$PICKS"
t_check "round_robin gives it about a third (${slow[rr]} of $PICKS)" \
    test $((slow[rr] * 4)) -ge "$PICKS" -a $((slow[rr] * 5 * 2)) -le $((PICKS * 4))

# A new backend has no figure: it is tried (drawn in half of the pairs of
# two out of four), and dones without latency_ms leave it without one.
t_etcdctl put ll/3 "$NEW" >/dev/null
t_wait_for "ll: 4 instances READY" 10 ready ll 4
n=0
for _ in $(seq 40); do [ "$(pick_report ll)" = "$NEW" ] && n=$((n + 1)); done
t_check "the unsampled backend is picked ($n of 40)" test "$n" -ge 8
LAT_NEW=$((SLOW_MS * 2)) # slower than SLOW too: never the cheaper of a pair
for _ in $(seq 100); do [ "$(pick_report ll)" = "$NEW" ] && break; done
n=0
for _ in $(seq 40); do [ "$(pick_report ll)" = "$NEW" ] && n=$((n + 1)); done
t_eq "after its first slow figure it is left alone" 0 "$n"

t_done
