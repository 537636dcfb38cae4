#!/usr/bin/env bash
# A three-member etcd cluster on loopback under churn.  resolverd knows the
# three endpoints; a writer puts, deletes and leases keys under two prefixes
# (addresses of live backends and of ports nobody listens on) for ~35 s
# while members are SIGKILLed and restarted one at a time, the member
# resolverd uses among them.  Afterwards (writer stopped, leases expired)
# resolverd's instances must equal etcd's own view exactly: no event lost,
# none invented.  Picks on an untouched key keep answering throughout.
#
# CHURN_S (default 35) sets the churn time.
set -u
. "$(dirname "$0")/lib.sh"
t_init etcd-cluster
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
[[ -n ${H2SERVER:-} && -x ${H2SERVER:-} ]] || t_require nghttpd

CHURN_S=${CHURN_S:-35}
SOCK=$T_DIR/rd.sock

t_etcd_cluster3 c || t_done
declare -a MEMBER_URL=("" "$(t_etcd_member_url c 1)" "$(t_etcd_member_url c 2)" "$(t_etcd_member_url c 3)")

# Four live backends, two addresses nobody listens on.
declare -a ADDRS=()
for i in 1 2 3 4; do
    backend_start "backend$i" || t_done
    ADDRS+=("127.0.0.1:$BACKEND_PORT")
done
for i in 1 2; do
    free_dead_port
    ADDRS+=("127.0.0.1:$DEAD_PORT")
done
LIVE0=${ADDRS[0]}

# A key nobody touches: picks must answer through the whole churn.
t_etcdctl put svcA/stable "$LIVE0" >/dev/null
t_etcdctl put svcB/stable "${ADDRS[1]}" >/dev/null

# Self-preservation off: the churn deletes many instances at once whose
# servers stay up, and the views must then equal etcd's (keeping them as
# STALE is test_self_preservation.sh's subject).
cat >"$T_DIR/rd.json" <<EOF
{ "etcd": { "endpoints": ["${MEMBER_URL[1]}", "${MEMBER_URL[2]}", "${MEMBER_URL[3]}"],
            "dial_timeout_ms": 1000 },
  "socket": { "path": "$SOCK" },
  "defaults": { "backoff": { "initial_ms": 200, "max_ms": 2000 },
                "self_preservation_percent": 0 },
  "services": [ { "name": "svcA", "prefix": "svcA/" },
                { "name": "svcB", "prefix": "svcB/", "policy": "least_request" } ] }
EOF
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
t_wait_for "svcA is listed from etcd" 10 views_equal svcA svcA/
t_wait_for "svcA's stable instance is READY" 10 pick_done svcA

# ---- the churn writer (ends by itself after CHURN_S seconds) ----
churn_args=(--endpoints "$ETCD_ENDPOINTS" --prefix svcA/ --prefix svcB/ --keys 10
    --seconds "$CHURN_S" --rate "${CHURN_RATE:-60}" --lease-ttl 2)
for a in "${ADDRS[@]}"; do churn_args+=(--value "$a"); done

# ---- picks through the churn (each released at once) ----
picker() {
    local ok=0 bad=0 t
    while [[ ! -e $T_DIR/stop-picker ]]; do
        if t=$("$RESOLVERCTL" -s "$SOCK" --json pick --hold svcA 2>&1); then
            t=${t##*\"ticket\": }
            t=${t%%[!0-9]*}
            "$RESOLVERCTL" -s "$SOCK" "done" "$t" >/dev/null 2>&1 || echo "done $t failed"
            ok=$((ok + 1))
        else
            bad=$((bad + 1))
            echo "pick failed: $t"
        fi
        echo "picks ok=$ok failed=$bad" >"$T_DIR/picker.count"
        sleep 0.2
    done
}

t_spawn churn "$PY" "$(dirname "$0")/etcd_churn.py" "${churn_args[@]}"
t_spawn picker picker

# ---- members killed and restarted, one at a time ----
member_of() {
    local i
    for i in 1 2 3; do
        [[ ${MEMBER_URL[$i]} == "$1" ]] && echo "$i" && return 0
    done
    echo 0
}
round=0 used_kills=0 left_ok=0
while t_alive churn; do
    round=$((round + 1))
    used=$(member_of "$(status_field etcd_endpoint)")
    if ((round % 2 == 1)) && ((used > 0)); then
        victim=$used
    else
        victim=$(((used + round % 2) % 3 + 1))
        [[ $victim == "$used" ]] && victim=$((used % 3 + 1))
    fi
    echo "# round $round: resolverd uses member $used; SIGKILL member $victim"
    t_etcd_member_kill c "$victim" KILL || true
    if [[ $victim == "$used" ]]; then
        used_kills=$((used_kills + 1))
        # The daemon must leave the dead member within seconds.
        if t_wait_until 10 bash -c "[[ \$('$RESOLVERCTL' -s '$SOCK' --json status | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"etcd_endpoint\"])') != '${MEMBER_URL[$victim]}' ]]"; then
            left_ok=$((left_ok + 1))
        else
            echo "# resolverd still on the dead member ${MEMBER_URL[$victim]}"
        fi
    fi
    sleep 1.5
    t_etcd_member_start c "$victim" || t_done
    sleep 1
done

t_wait_until 10 grep -q '^churn: ' "$T_DIR/churn.log" || true
echo "# $(tail -n 1 "$T_DIR/churn.log")"
t_check "the churn writer ran" grep -q '^churn: [0-9]* operations' "$T_DIR/churn.log"
t_kill churn || true
# The picker ends by itself between a pick and its done: no ticket left over.
touch "$T_DIR/stop-picker"
not_alive() { ! t_alive "$1"; }
t_wait_until 10 not_alive picker || true
t_kill picker || true
t_eq "no ticket outstanding" 0 "$(status_field tickets_outstanding)"
t_check "members were killed in at least 4 rounds" test "$round" -ge 4
t_check "the member resolverd used was killed at least twice" test "$used_kills" -ge 2
t_eq "resolverd left the killed member every time (within 10 s)" "$used_kills" "$left_ok"
t_check "resolverd counted failovers" test "$(status_field etcd_failovers)" -ge "$used_kills"
echo "# $(cat "$T_DIR/picker.count")"
t_check "every pick of the untouched instance answered during the churn" \
    grep -q 'picks ok=[1-9][0-9]* failed=0$' "$T_DIR/picker.count"

# ---- the end state ----
t_wait_for "every lease expired" 20 bash -c "[[ -z \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINTS' lease list 2>/dev/null | grep -v '^found') ]]"
t_wait_for "svcA: resolverd's instances equal etcd's view" 15 views_equal svcA svcA/
t_wait_for "svcB: resolverd's instances equal etcd's view" 15 views_equal svcB svcB/
drain_left=$( (daemon_states svcA; daemon_states svcB) | grep -c DRAINING)
t_eq "no instance is left DRAINING (every ticket was done)" 0 "$drain_left"
echo "# svcA: $(daemon_addrs svcA | tr '\n' ' ')"
echo "# svcB: $(daemon_addrs svcB | tr '\n' ' ')"
# Nothing is invented later either: still equal a second later.
sleep 1
t_check "svcA still equals etcd" views_equal svcA svcA/
t_check "svcB still equals etcd" views_equal svcB svcB/
# Dead addresses that etcd lists are listed too, never READY.
dead_states=$( (daemon_states svcA; daemon_states svcB) | grep -e "^${ADDRS[4]} " -e "^${ADDRS[5]} " | awk '{ print $2 }' | sort -u | tr '\n' ' ')
echo "# states of the dead addresses: ${dead_states:-none listed}"
t_check "no dead address is READY" bash -c "[[ '$dead_states' != *READY* ]]"
rev=$(status_field revision)
t_check "status shows a revision" test "${rev:-0}" -gt 0
t_check "the daemon is alive" t_alive resolverd
t_check "no undecodable watch message was logged" bash -c "! grep -q 'undecodable watch message' '$T_DIR/resolverd.log'"
echo "# failovers: $(status_field etcd_failovers); log: $(count_lines 'switching to' "$T_DIR/resolverd.log") switch lines, $(count_lines 'resyncing' "$T_DIR/resolverd.log") resyncs"
rc=0
T_KILL_TIMEOUT=5 t_kill resolverd TERM || rc=$?
t_eq "SIGTERM stops resolverd within 5 s, status 0" 0 "$rc"
t_done
