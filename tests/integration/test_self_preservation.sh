#!/usr/bin/env bash
# Self-preservation (issue 14): etcd deletions that would take a service
# below self_preservation_percent of its READY instances of the last 10 s
# leave the removed instances whose connection stays READY serving, as
# STALE, until their connection fails, etcd lists them again, or
# self_preservation_max_ms passes.  A rolling deploy never triggers it;
# self_preservation_percent 0 turns it off.  Real etcd leases, real h2server
# backends, through the daemon and resolverctl.
set -u
. "$(dirname "$0")/lib.sh"
t_init self_preservation
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
t_daemon_env
t_etcd_start e1 || t_done
MPORT=$(t_free_port)
pipelined() { "$PY" "$HERE/sockclient.py" "$SOCK"; }
addresses() { sed -n 's/^OK {"address":"\([^"]*\)".*/\1/p'; }
is_field() { [ "$(field "$1" "$2" "$3")" = "$4" ]; }
gone() { [ -z "$(field "$1" "$2" state)" ]; }
count() { ctl --json instances "$1" | "$PY" -c "import json,sys; print(len(json.load(sys.stdin)))"; }
is_count() { [ "$(count "$1")" = "$2" ]; }
states() { ctl --json instances "$1" | "$PY" -c "import json,sys; print(' '.join(sorted(i['state'] for i in json.load(sys.stdin))))"; }
metric() { curl -sf "http://127.0.0.1:$MPORT/metrics" | sed -n "s/^$1{service=\"$2\"} //p"; }
lease() { t_etcdctl lease grant 60 | awk '{ print $2 }'; }

declare -a P=() ADDR=()
for i in 1 2 3 4; do
    port=$(t_free_port)
    P+=("$port")
    ADDR+=("127.0.0.1:$port")
    t_spawn "b$i" "$H2SERVER" --name "b$i" "$port"
done
for port in "${P[@]}"; do
    t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" || t_fail "backend $port listens"
done

# sp: 80 %, so that the first of four deletions (75 % left) already holds
# and all four stay; half: the default 50 %, where the first two deletions
# (3 and 2 of 4 left) drain as usual and the last two are held.
cat >"$T_DIR/rd.json" <<JSON
{
  "metrics": { "listen": "127.0.0.1:$MPORT" },
  "services": [
    { "name": "sp", "self_preservation_percent": 80, "self_preservation_max_ms": 8000 },
    { "name": "half" },
    { "name": "roll" },
    { "name": "off", "self_preservation_percent": 0 }
  ]
}
JSON
declare -A LEASE=()
for svc in sp half off; do
    for i in 0 1 2 3; do
        LEASE[$svc$i]=$(lease)
        t_etcdctl put --lease "${LEASE[$svc$i]}" "$svc/$i" "${ADDR[$i]}" >/dev/null
    done
done
for i in 0 1 2 3; do t_etcdctl put "roll/$i" "${ADDR[$i]}" >/dev/null; done

t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK" --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
for svc in sp half roll off; do
    for a in "${ADDR[@]}"; do
        t_wait_for "$svc: $a READY" 10 is_field "$svc" "$a" state READY
    done
done
sleep 1.2 # the READY counts are in the 10 s history

# ---- rolling deploy: one at a time, never STALE ----
stale_seen=0
for i in 0 1 2 3; do
    t_etcdctl del "roll/$i" >/dev/null
    t_wait_until 5 gone roll "${ADDR[$i]}" || t_fail "roll: instance $i left after its delete"
    states roll | grep -q STALE && stale_seen=1
    t_etcdctl put "roll/$i" "${ADDR[$i]}" >/dev/null
    t_wait_until 10 is_field roll "${ADDR[$i]}" state READY || t_fail "roll: instance $i back"
done
t_eq "rolling deploy (4 rounds of delete + put): never STALE" 0 "$stale_seen"
t_eq "rolling deploy: all 4 READY at the end" "READY READY READY READY" "$(states roll)"
t_eq "rolling deploy: resolver_self_preservation_total 0" 0 "$(metric resolver_self_preservation_total roll)"

# ---- percent 0: revoking drains at once ----
for i in 0 1 2 3; do t_etcdctl lease revoke "${LEASE[off$i]}" >/dev/null; done
t_wait_for "self_preservation_percent 0: all 4 gone after their leases were revoked" 5 is_count off 0

# ---- default 50 %: the deletions past the threshold are held ----
for i in 0 1 2 3; do t_etcdctl lease revoke "${LEASE[half$i]}" >/dev/null; done
t_wait_for "half: the first two revoked left" 5 is_count half 2
t_eq "half: the last two revoked are STALE" "STALE STALE" "$(states half)"
t_eq "half: ${ADDR[2]} STALE" STALE "$(field half "${ADDR[2]}" state)"

# ---- a storm: all four leases revoked, servers up ----
for i in 0 1 2 3; do t_etcdctl lease revoke "${LEASE[sp$i]}" >/dev/null; done
t_eq "etcd lists no sp key" "" "$(t_etcdctl get --prefix sp/ --keys-only)"
sleep 0.5
t_eq "sp: all 4 revoked instances stay, as STALE" "STALE STALE STALE STALE" "$(states sp)"
t_eq "sp: JSON stale true" True "$(field sp "${ADDR[0]}" stale)"
served=$(for _ in $(seq 40); do echo "PICK sp"; done | pipelined | addresses | sort -u | wc -l)
t_eq "sp: picks succeed, spread over the 4 STALE instances" 4 "$served"
t_check "resolverctl instances shows STALE" bash -c "\"$RESOLVERCTL\" -s '$SOCK' instances sp | grep -q STALE"
t_eq "resolver_instances_stale{sp} 4" 4 "$(metric resolver_instances_stale sp)"
t_eq "resolver_self_preservation_active{sp} 1" 1 "$(metric resolver_self_preservation_active sp)"
t_check "resolver_self_preservation_total{sp} >= 1" test "$(metric resolver_self_preservation_total sp)" -ge 1
t_check "a warning names the service and why" grep -q 'service sp: self-preservation: keeping .* as STALE.*below self_preservation_percent 80' "$T_DIR/resolverd.log"

# Stop one server: its STALE instance leaves at once.
t_kill b1
t_wait_for "sp: ${ADDR[0]} left once its server stopped" 3 gone sp "${ADDR[0]}"

# Put one back: READY, same connection.
t_etcdctl put "sp/1" "${ADDR[1]}" >/dev/null
t_wait_for "sp: ${ADDR[1]} listed again is READY (not STALE)" 3 is_field sp "${ADDR[1]}" state READY
t_eq "sp: ${ADDR[1]} kept its connection" 1 "$(field sp "${ADDR[1]}" connect_attempts)"

# self_preservation_max_ms (8 s) passes: the other two drain.
t_wait_for "sp: after self_preservation_max_ms the rest drained" 12 is_count sp 1
t_eq "sp: only the listed one stays, READY" READY "$(states sp)"
t_eq "resolver_self_preservation_active{sp} back to 0" 0 "$(metric resolver_self_preservation_active sp)"
t_check "promtool check metrics is clean" bash -c "! command -v promtool >/dev/null || { curl -sf http://127.0.0.1:$MPORT/metrics | promtool check metrics 2>&1 | { ! grep -q .; }; }"

t_done
