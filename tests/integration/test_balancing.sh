#!/usr/bin/env bash
# Balancing and drain through the daemon and the CLI: every policy, drain
# with and without timeout, revival, operator drain, outlier ejection and
# return, leaked tickets, max_outstanding, the none-ready reason.
set -u
. "$(dirname "$0")/lib.sh"
t_init balancing
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
t_daemon_env
t_etcd_start e1 || t_done
pipelined() { "$PY" "$HERE/sockclient.py" "$SOCK"; }

t_h2_backends 3
A=127.0.0.1:${P[0]} B=127.0.0.1:${P[1]} C=127.0.0.1:${P[2]}
DEAD=127.0.0.1:$(t_free_port)

ZA1=127.0.0.1:$(t_free_port) ZA2=127.0.0.1:$(t_free_port)
t_spawn za1 "$H2SERVER" --name za1 "${ZA1#*:}"
t_spawn za2 "$H2SERVER" --name za2 "${ZA2#*:}"
# drain: its instances leave one after another within seconds, which
# self-preservation would keep (STALE) instead of draining: off there.
cat >"$T_DIR/rd.json" <<JSON
{
  "zone": "a",
  "defaults": { "drain_timeout_ms": 30000 },
  "services": [
    { "name": "rr" },
    { "name": "w", "policy": "weighted_round_robin" },
    { "name": "ring", "policy": "ring_hash" },
    { "name": "lr", "policy": "least_request", "choice_count": 2 },
    { "name": "pf", "policy": "pick_first" },
    { "name": "rand", "policy": "random" },
    { "name": "drain", "drain_timeout_ms": 1500, "self_preservation_percent": 0 },
    { "name": "out", "outlier_consecutive_failures": 3, "outlier_base_ejection_ms": 4000,
      "outlier_max_ejection_percent": 50 },
    { "name": "leak", "ticket_timeout_ms": 800 },
    { "name": "cap", "max_outstanding": 1 },
    { "name": "dead" },
    { "name": "zoned", "zone_min_ready_percent": 50 }
  ]
}
JSON
for svc in rr ring lr pf rand drain out; do
    t_etcdctl put "$svc/a" "$A" >/dev/null
    t_etcdctl put "$svc/b" "$B" >/dev/null
    t_etcdctl put "$svc/c" "$C" >/dev/null
done
t_etcdctl put w/a "{\"address\":\"$A\",\"weight\":1}" >/dev/null
t_etcdctl put w/b "{\"address\":\"$B\",\"weight\":3}" >/dev/null
t_etcdctl put leak/a "$A" >/dev/null
t_etcdctl put cap/a "$A" >/dev/null
t_etcdctl put dead/a "$DEAD" >/dev/null
t_etcdctl put zoned/a1 "{\"address\":\"$ZA1\",\"zone\":\"a\"}" >/dev/null
t_etcdctl put zoned/a2 "{\"address\":\"$ZA2\",\"zone\":\"a\"}" >/dev/null
t_etcdctl put zoned/b1 "{\"address\":\"$C\",\"zone\":\"b\"}" >/dev/null

t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK" --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
ready() { ctl instances --json "$1" | grep -c '"state": "READY"'; }
t_wait_for "all instances READY" 10 bash -c "[ \$(\"$RESOLVERCTL\" -s \"$SOCK\" instances --json rr | grep -c READY) = 3 ] && [ \$(\"$RESOLVERCTL\" -s \"$SOCK\" instances --json out | grep -c READY) = 3 ]"

addresses() { sed -n 's/^OK {"address":"\([^"]*\)".*/\1/p'; }

# round_robin: an exact rotation.
R=$(for _ in $(seq 9); do echo "PICK rr detach=1"; done | pipelined | addresses | tr '\n' ' ')
read -r -a X <<<"$R"
t_eq "round_robin rotates with period 3" "${X[*]:0:3} ${X[*]:0:3} ${X[*]:0:3}" "${X[*]}"
t_eq "round_robin visits all three" 3 "$(printf '%s\n' "${X[@]}" | sort -u | wc -l)"

# weighted_round_robin: 1:3 over 4000 pipelined picks, within 2 %.
nb=$(for _ in $(seq 4000); do echo "PICK w detach=1"; done | pipelined | addresses | grep -c "^$B\$")
t_check "weighted 1:3 gives B 75 % +- 2 % (got $nb of 4000)" test "$nb" -ge 2920 -a "$nb" -le 3080

# ring_hash: a key always lands on the same instance; keys spread.
stable=1
declare -A seen=()
for k in alpha beta gamma delta epsilon zeta eta theta; do
    first=$(ctl pick ring --key "$k")
    seen[$first]=1
    for _ in 1 2 3; do [ "$(ctl pick ring --key "$k")" = "$first" ] || stable=0; done
done
t_eq "ring_hash keeps each key on one instance" 1 "$stable"
t_check "ring_hash spreads keys over more than one instance" test "${#seen[@]}" -ge 2

# pick_first: always the first address.
t_eq "pick_first always picks the same instance" 1 \
    "$(for _ in $(seq 20); do echo "PICK pf detach=1"; done | pipelined | addresses | sort -u | wc -l)"

# random: everyone is reached.
t_eq "random reaches all three" 3 \
    "$(for _ in $(seq 300); do echo "PICK rand detach=1"; done | pipelined | addresses | sort -u | wc -l)"

# least_request: 300 picks held open stay balanced (P2C over outstanding).
for _ in $(seq 300); do echo "PICK lr detach=1"; done | pipelined >/dev/null
spread=$(ctl instances --json lr | sed -n 's/.*"outstanding": \([0-9]*\).*/\1/p' | sort -n | sed -n '1p;$p' | tr '\n' ' ')
read -r lo hi <<<"$spread"
t_check "least_request keeps outstanding picks balanced ($lo..$hi of 300)" test $((hi - lo)) -le 30

# Drain with an outstanding ticket: no new picks, closed at done.
ticket_on() { # SERVICE ADDRESS: a ticket whose pick returned ADDRESS
    local j
    for _ in $(seq 30); do
        j=$(ctl --json pick --hold "$1")
        if grep -q "\"$2\"" <<<"$j"; then sed -n 's/.*"ticket": \([0-9]*\).*/\1/p' <<<"$j"; return 0; fi
    done
    return 1
}
state_of() { ctl instances --json "$1" | grep -A1 "\"address\": \"$2\"" | sed -n 's/.*"state": "\(.*\)".*/\1/p'; }
# Predicates for t_wait_for, which re-runs its command (a "$(...)" in its
# arguments would be expanded once only).
is_state() { [ "$(state_of "$1" "$2")" = "$3" ]; }
is_gone() { [ -z "$(state_of "$1" "$2")" ]; }
T=$(ticket_on drain "$A")
t_etcdctl del drain/a >/dev/null
t_wait_for "removed instance with a ticket is DRAINING" 2 is_state drain "$A" DRAINING
t_check "a draining instance gets no picks" bash -c "! (for i in \$(seq 20); do \"$RESOLVERCTL\" -s \"$SOCK\" pick drain; done | grep -q '^$A\$')"
t_check "done releases the ticket" ctl done "$T"
t_wait_for "the drained instance closes once its picks are done" 2 is_gone drain "$A"

# Drain timeout: a ticket never reported.
T=$(ticket_on drain "$B")
t_etcdctl del drain/b >/dev/null
t_check "B still drains before drain_timeout_ms" is_state drain "$B" DRAINING
t_wait_for "undone drain ends at drain_timeout_ms" 4 is_gone drain "$B"
t_check "the log says the drain timed out" grep -q "instance $B drain timed out" "$T_DIR/resolverd.log"

# Revival: back in etcd while draining -> same connection, no reconnect.
T=$(ticket_on drain "$C")
attempts() { ctl instances --json drain | grep -A14 "\"address\": \"$C\"" | sed -n 's/.*"connect_attempts": \([0-9]*\).*/\1/p'; }
before=$(attempts)
t_etcdctl del drain/c >/dev/null
t_wait_for "C drains" 2 is_state drain "$C" DRAINING
t_etcdctl put drain/c "$C" >/dev/null
t_wait_for "C is revived READY" 2 is_state drain "$C" READY
t_eq "revival kept the connection (no new connect attempt)" "$before" "$(attempts)"
ctl done "$T" >/dev/null

# A second drain timeout within seconds of the first is logged too: each
# instance cut off with picks outstanding is named.
T=$(ticket_on drain "$C")
t_etcdctl del drain/c >/dev/null
t_wait_for "C's undone drain ends at drain_timeout_ms" 4 is_gone drain "$C"
t_check "the log names C's drain timeout too" grep -q "instance $C drain timed out" "$T_DIR/resolverd.log"

# Operator drain and undrain.
t_check "drain via the CLI" ctl drain rr "$A"
t_eq "operator-drained instance shows DRAINING" DRAINING "$(state_of rr "$A")"
t_check "no picks of an operator-drained instance" bash -c "! (for i in \$(seq 9); do \"$RESOLVERCTL\" -s \"$SOCK\" pick rr; done | grep -q '^$A\$')"
t_check "undrain via the CLI" ctl undrain rr "$A"
t_wait_for "undrained instance is picked again" 2 bash -c "for i in \$(seq 6); do \"$RESOLVERCTL\" -s \"$SOCK\" pick rr; done | grep -q '^$A\$'"
rc=0; ctl drain rr 127.0.0.1:1 2>/dev/null || rc=$?
t_eq "drain of an unknown instance exits 3" 3 "$rc"

# Outlier ejection: three failed calls in a row eject, then it returns.  The
# ejection lasts 4 s: twelve CLI picks under ASan on a loaded machine took
# longer than the 1.5 s it used to be.
for _ in 1 2 3; do T=$(ticket_on out "$A") && ctl done "$T" --fail >/dev/null; done
ejected() { ctl instances --json out | grep -A20 "\"address\": \"$A\"" | grep -q '"ejected": true'; }
t_wait_for "three consecutive failures eject the instance" 2 ejected
t_check "an ejected instance gets no picks" bash -c "! (for i in \$(seq 12); do \"$RESOLVERCTL\" -s \"$SOCK\" pick out; done | grep -q '^$A\$')"
t_wait_for "the ejected instance returns after its ejection time" 10 bash -c "! \"$RESOLVERCTL\" -s \"$SOCK\" instances --json out | grep -A20 '\"address\": \"$A\"' | grep -q '\"ejected\": true'"

# Leaked tickets are released and counted.
ctl pick --hold leak >/dev/null
t_wait_for "a ticket past ticket_timeout_ms is counted as leaked" 3 \
    bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" status --json | grep -q '\"tickets_leaked\": [1-9]'"

# max_outstanding: the only instance is full.
ctl pick --hold cap >/dev/null
rc=0; ctl pick cap 2>"$T_DIR/cap.err" || rc=$?
t_eq "a pick beyond max_outstanding exits 3" 3 "$rc"
t_check "the reason names max_outstanding" grep -q max_outstanding "$T_DIR/cap.err"

# Nothing READY: the reason lists the states.
t_wait_for "dead instance is TRANSIENT_FAILURE" 5 is_state dead "$DEAD" TRANSIENT_FAILURE
rc=0; ctl pick dead 2>"$T_DIR/dead.err" || rc=$?
t_eq "pick with none READY exits 3" 3 "$rc"
t_check "the reason lists the states" grep -q "TRANSIENT_FAILURE" "$T_DIR/dead.err"

# Zone preference: zone a only while at least half of it is READY.
zone_picks() { for _ in $(seq 12); do echo "PICK zoned detach=1"; done | pipelined | addresses | sort -u | tr '\n' ' '; }
t_wait_for "zone a instances READY" 5 is_state zoned "$ZA2" READY
t_eq "picks stay in the daemon's zone" "$(printf '%s\n' "$ZA1" "$ZA2" | sort | tr '\n' ' ')" "$(zone_picks)"
t_kill za1 KILL || true
t_wait_for "za1 is TRANSIENT_FAILURE" 5 is_state zoned "$ZA1" TRANSIENT_FAILURE
t_eq "half of zone a READY: still only zone a" "$ZA2 " "$(zone_picks)"
t_kill za2 KILL || true
t_wait_for "za2 is TRANSIENT_FAILURE" 5 is_state zoned "$ZA2" TRANSIENT_FAILURE
t_eq "zone a down: picks spill to zone b" "$C " "$(zone_picks)"

# Pipelining: thousands of requests on one connection, all answered in order.
n=$( (for i in $(seq 3000); do echo "PICK rr"; echo "PING"; done) | pipelined | grep -c '^OK')
t_eq "6000 pipelined requests, 6000 answers" 6000 "$n"

t_done
