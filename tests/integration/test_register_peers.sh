#!/usr/bin/env bash
# Registration (issue 14) against the frameworks' own code, one real etcd:
#  a. grpc-go 1.33's etcd naming resolver (go.etcd.io/etcd/clientv3/naming/
#     resolver, Debian's 3.4.23) reads our etcd_naming registrations and its
#     calls reach our registered python3-grpcio servers; a deregistration
#     takes the instance out of its round robin, a register puts it back;
#  b. we read what grpc-go's endpoints.Manager publishes under a lease, and
#     what a Node.js publisher on the npm etcd3 client writes in go-zero
#     form (lease(TTL, {autoKeepAlive: true})): kept alive past 3 x TTL, and
#     after kill -9 of the publisher the instance leaves our view after the
#     lease's TTL, not before;
#  e. a rolling restart of 3 backends, each registered by its own resolverd
#     (one per host), while a caller picks without pause through a fourth
#     resolverd (as a remote host would) and calls every picked instance:
#     0 failed picks, and no pick of an instance after resolverd had shown
#     its deregistration; kill -9 of a backend's registering daemon: its key
#     leaves after the TTL.
# Covered in test_register.sh and not repeated here: our go-zero key
# PREFIX<lease id in decimal> -> host:port byte for byte against the lease id
# `registrations --json` gives and etcd's own lease of the key (c), and etcd
# down for 2 x TTL with every key back within 1 s of etcd answering (d).
#
# The Go peer (tests/integration/peers/etcdpeer) is built here, offline, from
# Debian's packages (GO111MODULE=off, GOPATH=/usr/share/gocode), once per
# build tree.  The Node peer needs tests/integration/peers/node/node_modules,
# which contrib/install-deps.sh installs (npm ci); without it part b's Node
# half is skipped and says so.
set -u
. "$(dirname "$0")/lib.sh"
t_init register_peers
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
GOPATH_DEB=/usr/share/gocode
for pkg in go.etcd.io/etcd/clientv3/naming/resolver google.golang.org/grpc/health/grpc_health_v1; do
    [[ -d $GOPATH_DEB/src/$pkg ]] ||
        t_skip "$GOPATH_DEB/src/$pkg missing (contrib/install-deps.sh installs golang-etcd-server-dev and golang-google-grpc-dev)"
done
t_require go
"$PY" -c 'import grpc' 2>/dev/null || t_skip "python3-grpcio missing"

# ---- the Go peer, built once per build tree (the sources are small, the
# packages they compile are not: ~1 min the first time, cached after) ----
PEER_DIR=${abs_top_builddir:-$T_DIR}/tests/integration/peers
PEER=$PEER_DIR/bin/etcdpeer
if [[ ! -x $PEER || $HERE/peers/etcdpeer/main.go -nt $PEER ]]; then
    mkdir -p "$PEER_DIR/bin"
    t0=$(_t_now_ms)
    # GOFLAGS and GOENV off: nothing of the caller's Go setup reaches the
    # build; GOCACHE in the build tree: `make clean` removes it.
    if (cd "$HERE/peers/etcdpeer" && env GO111MODULE=off GOPROXY=off GOFLAGS= GOENV=off \
        GOPATH="$GOPATH_DEB" GOCACHE="$PEER_DIR/gocache" go build -o "$PEER.tmp.$$" .) \
        >"$T_DIR/gobuild.log" 2>&1 && mv -f "$PEER.tmp.$$" "$PEER"; then
        echo "# built the Go peer in $(($(_t_now_ms) - t0)) ms"
    else
        rm -f "$PEER.tmp.$$"
        t_fail "the Go peer builds offline from Debian's packages" "$(tail -n 5 "$T_DIR/gobuild.log" | tr '\n' ' ')"
        t_done
    fi
fi
t_ok "the Go peer (grpc-go 1.33, etcd clientv3 3.4) is built"

t_etcd_start e1 || t_done
TTL_S=3

# grpc_start NAME: a python3-grpcio server with grpc.health.v1 (SERVING);
# sets GPORT.
grpc_start() {
    GPORT=$(t_free_port) || return 1
    t_spawn "$1" "$PY" "$HERE/grpc_health_server.py" --port "$GPORT" || return 1
    t_wait_until 10 "$PY" -c "import socket
socket.create_connection(('127.0.0.1', $GPORT), 1)" || {
        t_fail "gRPC server $1 listens on $GPORT"
        return 1
    }
}
grpc_start g1 || t_done
G1=127.0.0.1:$GPORT
grpc_start g2 || t_done
G2=127.0.0.1:$GPORT

# resolverd A registers g1 and g2 for grpc-go's resolver, and reads what
# the Go and Node publishers write.  Self-preservation off: these instances'
# servers stay up while their publishers die, and leaving on lease expiry is
# what is under test (test_self_preservation.sh covers keeping them).
SOCK=$T_DIR/a.sock
cat >"$T_DIR/a.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"] }, "socket": { "path": "$SOCK" },
  "deregister_grace_ms": 500,
  "defaults": { "self_preservation_percent": 0 },
  "services": [ { "name": "ep.svc" }, { "name": "node.svc" } ],
  "register": [
    { "service": "go.svc", "address": "$G1", "format": "etcd_naming", "ttl_ms": $((TTL_S * 1000)) },
    { "service": "go.svc", "address": "$G2", "format": "etcd_naming", "ttl_ms": $((TTL_S * 1000)) } ] }
EOF
t_spawn resolverd-a "$RESOLVERD" -c "$T_DIR/a.json" --log-level debug
t_wait_for "resolverd A serves its socket" 10 test -S "$SOCK"
t_wait_for "both go.svc registrations are in etcd" 5 bash -c \
    "[[ \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get --prefix --keys-only go.svc/ | grep -c .) == 2 ]]"

# ---- a. grpc-go's etcd naming resolver reads ours ----
CALLS=$T_DIR/gocall.log
t_spawn gocall "$PEER" call -etcd "$ETCD_ENDPOINT" -service go.svc -interval-ms 20
# calls_to ADDR SINCE_LINE: calls answered SERVING by ADDR after line SINCE.
calls_to() { tail -n +"$(($2 + 1))" "$CALLS" | grep -c " ok $1 SERVING$"; }
both_called() { (($(calls_to "$G1" 0) > 0 && $(calls_to "$G2" 0) > 0)); }
t_wait_for "grpc-go dials etcd:///go.svc and its round robin calls both of our registrations" 15 both_called
t_eq "no call failed" 0 "$(grep -c ' fail ' "$CALLS")"

ctl deregister go.svc "$G2" >/dev/null
t_wait_for "deregister deletes g2's key" 3 bash -c \
    "[[ -z \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get --print-value-only 'go.svc/$G2') ]]"
sleep 0.5 # grpc-go's watch and balancer update
mark=$(wc -l <"$CALLS")
sleep 1
n2=$(calls_to "$G2" "$mark")
n1=$(calls_to "$G1" "$mark")
t_eq "after the deregistration grpc-go calls g2 no more" 0 "$n2"
t_check "and g1 still ($n1 calls in 1 s)" test "$n1" -gt 0
ctl register go.svc "$G2" --format etcd_naming --ttl-ms $((TTL_S * 1000)) >/dev/null
mark=$(wc -l <"$CALLS")
t_wait_for "a runtime register puts g2 back into grpc-go's round robin" 5 bash -c \
    "(( \$(tail -n +$((mark + 1)) '$CALLS' | grep -c ' ok $G2 SERVING\$') > 0 ))"
t_eq "no call failed meanwhile" 0 "$(grep -c ' fail ' "$CALLS")"
t_kill gocall >/dev/null 2>&1
echo "# grpc-go made $(grep -c ' ok ' "$CALLS") calls through etcd:///go.svc"

# ---- b. we read grpc-go's endpoints.Manager, under a lease ----
# in_view SERVICE ADDRESS: resolverd A lists it (not DRAINING).
in_view() { daemon_addrs "$1" | grep -qx "$2"; }
out_of_view() { ! in_view "$@"; }
is_ready() { [[ $(instance_field "$1" "$2" state) == READY ]]; }
# expiry NAME SERVICE ADDRESS KEY: kill -9 of publisher NAME; the key must
# stay at first, and ADDRESS leave A's view after the lease's TTL at most.
expiry() {
    local name=$1 svc=$2 addr=$3 key=$4 t0 gone_key gone_view
    t_kill "$name" KILL >/dev/null 2>&1
    t0=$(_t_now_ms)
    sleep 0.5
    t_check "$name killed -9: its key stays at first" test -n "$(ec get --print-value-only "$key")"
    t_check "and A still lists $addr" in_view "$svc" "$addr"
    t_wait_until $((TTL_S + 3)) bash -c "[[ -z \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get --print-value-only '$key') ]]"
    gone_key=$(($(_t_now_ms) - t0))
    t_wait_until 3 out_of_view "$svc" "$addr"
    gone_view=$(($(_t_now_ms) - t0))
    echo "# $name: key gone ${gone_key} ms, out of A's view ${gone_view} ms after kill -9 (TTL ${TTL_S} s)"
    # The publisher kept its lease alive every TTL/3: it had 2/3 of the TTL
    # left at least when it died.
    t_check "$name's instance leaves A's view after the lease's TTL ($((TTL_S * 2000 / 3))..$((TTL_S * 1000 + 1500)) ms)" \
        test "$gone_view" -ge $((TTL_S * 2000 / 3 - 200)) -a "$gone_view" -le $((TTL_S * 1000 + 1500))
}

t_spawn gopub "$PEER" publish -etcd "$ETCD_ENDPOINT" -service ep.svc -addr "$G1" -ttl "$TTL_S"
t_wait_for "the endpoints.Manager publisher wrote its key" 10 grep -q '^lease ' "$T_DIR/gopub.log"
t_eq "its value is endpoints.Manager's JSON" "{\"Op\":0,\"Addr\":\"$G1\",\"Metadata\":null}" \
    "$(ec get --print-value-only "ep.svc/$G1")"
t_wait_for "A reads it (format auto) and connects" 5 is_ready ep.svc "$G1"
t_eq "A picks it" "$G1" "$(pick_done ep.svc)"
sleep $((TTL_S * 3 + 1))
t_check "its lease is kept alive past 3 x TTL: still in A's view" in_view ep.svc "$G1"
expiry gopub ep.svc "$G1" "ep.svc/$G1"

# ---- b. and a Node.js publisher on npm etcd3, go-zero form ----
NODE_DIR=$HERE/peers/node
if ! command -v node >/dev/null 2>&1 || [[ ! -d $NODE_DIR/node_modules/etcd3 ]]; then
    echo "# SKIP the Node.js publisher: node or $NODE_DIR/node_modules/etcd3 missing (contrib/install-deps.sh installs them)"
else
    t_spawn nodepub node "$NODE_DIR/publish.js" "$ETCD_ENDPOINT" node.svc/ "$G2" "$TTL_S"
    t_wait_for "the etcd3 publisher wrote its key" 15 grep -q '^lease ' "$T_DIR/nodepub.log"
    read -r _ nlease nkey < <(grep '^lease ' "$T_DIR/nodepub.log")
    t_eq "its key is go-zero's PREFIX<lease id in decimal>" "node.svc/$nlease" "$nkey"
    t_check "under that lease" bash -c "ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get -w json '$nkey' | grep -q '\"lease\":${nlease}[,}]'"
    t_eq "its value is host:port" "$G2" "$(ec get --print-value-only "$nkey")"
    t_wait_for "A reads it and connects" 5 is_ready node.svc "$G2"
    t_eq "A picks it" "$G2" "$(pick_done node.svc)"
    sleep $((TTL_S * 3 + 1))
    t_check "autoKeepAlive keeps it past 3 x TTL: still in A's view" in_view node.svc "$G2"
    expiry nodepub node.svc "$G2" "$nkey"
fi
t_kill resolverd-a >/dev/null 2>&1

# ---- e. rolling restart through a second resolverd ----
# b1..b3: gRPC servers, each registered by its own resolverd r1..r3 (one per
# host) in go-zero form; c: the remote host's resolverd the caller picks
# through.  Default self-preservation: one of three leaving at a time never
# triggers it.
GRACE=1500
declare -a B=() BP=()
for i in 1 2 3; do
    grpc_start "b$i" || t_done
    BP[i]=$GPORT
    B[i]=127.0.0.1:$GPORT
done
# r_start I: resolverd rI registering bI.
r_start() {
    cat >"$T_DIR/r$1.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"] }, "socket": { "path": "$T_DIR/r$1.sock" },
  "deregister_grace_ms": $GRACE,
  "register": [ { "service": "roll.svc", "address": "${B[$1]}", "ttl_ms": $((TTL_S * 1000)) } ] }
EOF
    t_spawn "r$1" "$RESOLVERD" -c "$T_DIR/r$1.json"
}
# registered I: rI says REGISTERED.
registered() {
    [[ $("$RESOLVERCTL" -s "$T_DIR/r$1.sock" --json registrations 2>/dev/null | "$PY" -c "
import json, sys
print(' '.join(r['state'] for r in json.load(sys.stdin)))" 2>/dev/null) == REGISTERED ]]
}
for i in 1 2 3; do r_start "$i"; done
SOCK=$T_DIR/c.sock
cat >"$T_DIR/c.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"] }, "socket": { "path": "$SOCK" },
  "services": [ { "name": "roll.svc" } ] }
EOF
t_spawn resolverd-c "$RESOLVERD" -c "$T_DIR/c.json"
t_wait_for "resolverd c serves its socket" 10 test -S "$SOCK"
all_ready() {
    [[ $(daemon_states roll.svc | awk '$2 == "READY"' | wc -l) == 3 ]]
}
t_wait_for "c sees the 3 registered backends READY" 15 all_ready

STOP=$T_DIR/stop-picking
t_spawn regpick "$PY" "$HERE/regpick.py" "$SOCK" roll.svc "$STOP"
sleep 1 # its WATCH is in place, and it has picked for a while
roll_ok=1
t_roll=$(_t_now_ms)
for i in 1 2 3; do
    # SIGTERM of rI: the key first, then deregister_grace_ms, then exit;
    # then the backend stops, starts again, and rI registers it again.
    t_kill "r$i" TERM >/dev/null 2>&1 || true
    t_kill "b$i" TERM >/dev/null 2>&1 || true
    t_spawn "b$i" "$PY" "$HERE/grpc_health_server.py" --port "${BP[i]}"
    t_wait_until 10 "$PY" -c "import socket
socket.create_connection(('127.0.0.1', ${BP[i]}), 1)" || roll_ok=0
    r_start "$i"
    t_wait_until 10 registered "$i" || roll_ok=0
    t_wait_until 10 all_ready || roll_ok=0
done
echo "# rolling restart of 3 backends took $(($(_t_now_ms) - t_roll)) ms"
t_check "each backend restarted, registered again and READY on c" test "$roll_ok" = 1
sleep 0.5
touch "$STOP"
t_wait_until 10 bash -c "grep -q '^picks ' '$T_DIR/regpick.log'"
summary=$(grep '^picks ' "$T_DIR/regpick.log")
echo "# caller: $summary"
grep -E 'failed|late' "$T_DIR/regpick.log" | grep -v '^picks ' | head -n 5 | sed 's/^/#   /'
read -r _ npicks _ nfailed _ nlate _ <<<"$summary"
t_check "the caller picked all along (> 100 picks)" test "${npicks:-0}" -gt 100
t_eq "0 failed picks during the rolling restart" 0 "${nfailed:-x}"
t_eq "no pick of an instance after c had shown its deregistration" 0 "${nlate:-x}"
for i in 1 2 3; do
    t_check "every backend was picked (b$i)" grep -q "${B[i]}=" <<<"$summary"
done
t_kill regpick >/dev/null 2>&1

# ---- kill -9 of a backend's registering daemon ----
key3=$("$RESOLVERCTL" -s "$T_DIR/r3.sock" --json registrations | "$PY" -c "import json,sys; print(json.load(sys.stdin)[0]['key'])")
t_kill r3 KILL >/dev/null 2>&1
t0=$(_t_now_ms)
sleep 0.5
t_check "kill -9 of r3: its key stays at first" test -n "$(ec get --print-value-only "$key3")"
t_wait_until $((TTL_S + 3)) bash -c "[[ -z \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get --print-value-only '$key3') ]]"
gone=$(($(_t_now_ms) - t0))
echo "# r3's key gone ${gone} ms after kill -9 (TTL ${TTL_S} s, kept alive every TTL/3)"
t_check "it leaves after the TTL ($((TTL_S * 2000 / 3))..$((TTL_S * 1000 + 1500)) ms)" \
    test "$gone" -ge $((TTL_S * 2000 / 3 - 200)) -a "$gone" -le $((TTL_S * 1000 + 1500))
t_wait_for "and c stops listing b3" 3 out_of_view roll.svc "${B[3]}"
t_done
