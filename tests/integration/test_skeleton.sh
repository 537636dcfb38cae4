#!/usr/bin/env bash
# The walking skeleton end to end: a throwaway etcd, three real HTTP/2
# backends (Debian's nghttpd), resolverd, and resolverctl as a user types it.
set -u
. "$(dirname "$0")/lib.sh"
t_init skeleton
t_require etcd etcdctl nghttpd
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"

t_etcd_start e1 || t_done
SOCK=$T_DIR/rd.sock
ctl() { "$RESOLVERCTL" -s "$SOCK" "$@"; }

# Three backends registered the go-zero way: key NAME/ID, value host:port.
declare -a PORTS=()
for i in 1 2 3; do
    port=$(t_free_port)
    PORTS+=("$port")
    t_spawn "backend$i" nghttpd --no-tls "$port"
done
for i in 1 2 3; do
    t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/${PORTS[$((i - 1))]}" ||
        t_fail "backend$i listens"
    t_etcdctl put "user.rpc/10$i" "127.0.0.1:${PORTS[$((i - 1))]}" >/dev/null
done

# Held CLI picks (--hold) keep tickets until done or ticket_timeout_ms; a graceful stop
# waits for them up to drain_timeout_ms, kept short here.
printf '{"defaults": {"drain_timeout_ms": 1000}}\n' >"$T_DIR/rd.json"
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK" --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"

# The first pick of a service not in the config discovers it on the spot.
t_check "first pick of an on-demand service answers" ctl pick user.rpc

ready_count() { ctl instances --json "$1" | grep -c '"state": "READY"'; }
three_ready() { [ "$(ready_count user.rpc)" = 3 ]; }
t_wait_for "three instances READY" 5 three_ready

picks() {
    local n=$1 out=""
    for _ in $(seq "$n"); do out+="$(ctl pick user.rpc) "; done
    echo "$out"
}
P=$(picks 6)
read -r -a A <<<"$P"
t_eq "six picks return three distinct instances" 3 "$(printf '%s\n' "${A[@]}" | sort -u | wc -l)"
t_eq "round robin repeats with period three" "${A[0]} ${A[1]} ${A[2]}" "${A[3]} ${A[4]} ${A[5]}"

t_check "services lists user.rpc" bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" services | grep -q '^user.rpc '"
t_check "status names the etcd endpoint" bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" status | grep -q '$ETCD_ENDPOINT'"
t_check "pick --json carries address and ticket" bash -c \
    "\"$RESOLVERCTL\" -s \"$SOCK\" --json pick --hold user.rpc | grep -q '\"ticket\"'"

# A deleted key leaves the picks.
gone="127.0.0.1:${PORTS[1]}"
t_etcdctl del user.rpc/102 >/dev/null
t_wait_for "deleted instance leaves the picks within 1 s" 1 \
    bash -c "! \"$RESOLVERCTL\" -s \"$SOCK\" instances --json user.rpc | grep -A1 '\"$gone\"' | grep -q READY"
P=$(picks 6)
t_check "no pick returns the deleted instance" bash -c "! grep -q '$gone' <<<'$P'"

# A killed backend turns TRANSIENT_FAILURE and leaves the picks.
dead="127.0.0.1:${PORTS[2]}"
t_kill backend3 KILL || true
state_of() { ctl instances --json user.rpc | grep -A1 "\"$1\"" | sed -n 's/.*"state": "\(.*\)".*/\1/p'; }
dead_failed() { [ "$(state_of "$dead")" = TRANSIENT_FAILURE ]; }
t_wait_for "killed backend is TRANSIENT_FAILURE" 5 dead_failed
P=$(picks 4)
t_eq "picks go only to the live instance" "127.0.0.1:${PORTS[0]}" "$(tr ' ' '\n' <<<"$P" | sort -u | grep .)"

# A new key is picked within a second.
port=$(t_free_port)
t_spawn backend4 nghttpd --no-tls "$port"
t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" || t_fail "backend4 listens"
t_etcdctl put user.rpc/104 "127.0.0.1:$port" >/dev/null
t_wait_for "new instance is picked within 1 s" 1 \
    bash -c "for i in 1 2 3; do \"$RESOLVERCTL\" -s \"$SOCK\" pick user.rpc; done | grep -q ':$port\$'"

# etcd naming endpoints (grpc-go etcd:///): JSON values, Op 1 removes.
t_etcdctl put "naming.svc/127.0.0.1:${PORTS[0]}" "{\"Op\":0,\"Addr\":\"127.0.0.1:${PORTS[0]}\",\"Metadata\":null}" >/dev/null
t_check "naming-endpoints value is picked" bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" pick naming.svc | grep -q ':${PORTS[0]}\$'"

# A bad value beside good ones is skipped, never fatal.
t_etcdctl put user.rpc/bad "not an address" >/dev/null
t_wait_until 2 grep -q 'skipping key "user.rpc/bad"' "$T_DIR/resolverd.log"
t_check "an undecodable value is logged with its key" grep -q 'skipping key "user.rpc/bad"' "$T_DIR/resolverd.log"
t_check "the daemon still answers after a bad value" ctl pick user.rpc

# Exit codes of resolverctl(1), EXIT STATUS.
rc=0; ctl pick empty.svc >/dev/null 2>&1 || rc=$?
t_eq "pick with no instance exits 3" 3 "$rc"
rc=0; ctl instances never.seen >/dev/null 2>&1 || rc=$?
t_eq "instances of an unknown service exits 3" 3 "$rc"
rc=0; ctl bogus-verb >/dev/null 2>&1 || rc=$?
t_eq "unknown verb exits 1" 1 "$rc"
rc=0; "$RESOLVERCTL" -s "$T_DIR/nobody.sock" status >/dev/null 2>&1 || rc=$?
t_eq "no daemon exits 2" 2 "$rc"

# --check-config names the bad key.
printf '{"defaults": {"keepalive_tme_ms": 5}}\n' >"$T_DIR/bad.json"
rc=0; "$RESOLVERD" --check-config -c "$T_DIR/bad.json" 2>"$T_DIR/check.err" >/dev/null || rc=$?
t_check "--check-config fails on a typo" test "$rc" -ne 0
t_check "--check-config names the bad key" grep -q 'keepalive_tme_ms' "$T_DIR/check.err"
# A duration past the 24 h bound (2^32 + 1 was once 1 ms in TCP_USER_TIMEOUT).
printf '{"defaults": {"keepalive_timeout_ms": 4294967297}}\n' >"$T_DIR/big.json"
rc=0; "$RESOLVERD" --check-config -c "$T_DIR/big.json" 2>"$T_DIR/check.err" >/dev/null || rc=$?
t_check "--check-config rejects keepalive_timeout_ms 4294967297" test "$rc" -ne 0
t_check "--check-config names the key and the bound" \
    grep -q 'defaults.keepalive_timeout_ms: must be <= 86400000 (24 h), got 4294967297' "$T_DIR/check.err"

# A clean stop: picks refused at once, instances drained, then exit.
t_signal resolverd TERM
t_wait_for "picks are refused while stopping" 1 bash -c "! \"$RESOLVERCTL\" -s \"$SOCK\" pick user.rpc"
rc=0; t_kill resolverd TERM || rc=$?
t_eq "SIGTERM stops resolverd with status 0 after the drain" 0 "$rc"
t_check "the log shows the drain" grep -q 'draining every instance' "$T_DIR/resolverd.log"
t_check "the socket file is removed" test ! -e "$SOCK"
t_done
