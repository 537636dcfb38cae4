#!/usr/bin/env bash
# quickstart.sh - the README's first command: install what is missing, build,
# and show resolverd at work against a throwaway etcd and real HTTP/2
# backends, all on loopback.  Everything it starts is stopped by PID when it
# ends (Ctrl-C included).
#
#   contrib/quickstart.sh           run the demo and exit
#   contrib/quickstart.sh --stay    keep it running until Ctrl-C, to try
#                                   resolverctl by hand
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STAY=0
[[ ${1:-} == --stay ]] && STAY=1

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "Installing missing packages"
contrib/install-deps.sh

step "Building"
BUILD=$ROOT/_build/release
[[ -x configure ]] || ./autogen.sh >/dev/null
mkdir -p "$BUILD"
(cd "$BUILD" && { [[ -f Makefile ]] || "$ROOT/configure" --enable-werror >/dev/null; } &&
    make -j"$(nproc)" >/dev/null && make -C tests integration/h2server >/dev/null)
RESOLVERD=$BUILD/src/resolverd
RESOLVERCTL=$BUILD/src/resolverctl
H2SERVER=$BUILD/tests/integration/h2server

DEMO=$(mktemp -d "${TMPDIR:-/tmp}/resolver-demo.XXXXXX")
declare -a PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$DEMO"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 never opened" >&2
    return 1
}

step "Starting a throwaway etcd on loopback"
ETCD_PORT=$(free_port)
PEER_PORT=$(free_port)
ETCD=http://127.0.0.1:$ETCD_PORT
etcd --name demo --data-dir "$DEMO/etcd" --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-cluster "demo=http://127.0.0.1:$PEER_PORT" --logger zap --log-level error \
    >"$DEMO/etcd.log" 2>&1 &
PIDS+=($!)
wait_port "$ETCD_PORT"
etcdctl() { ETCDCTL_API=3 command etcdctl --endpoints "$ETCD" "$@"; }
echo "etcd at $ETCD (data in $DEMO/etcd)"

step "Starting three HTTP/2 backends and registering them the go-zero way"
declare -a PORTS=()
for name in alpha beta gamma; do
    port=$(free_port)
    "$H2SERVER" --name "$name" "$port" >"$DEMO/$name.log" 2>&1 &
    PIDS+=($!)
    PORTS+=("$port")
done
for i in 0 1 2; do
    wait_port "${PORTS[$i]}"
    show etcdctl put "user.rpc/$((7587869981229590045 + i))" "127.0.0.1:${PORTS[$i]}" >/dev/null
done

step "Starting resolverd"
SOCK=$DEMO/resolverd.sock
"$RESOLVERD" --etcd "$ETCD" --socket "$SOCK" >"$DEMO/resolverd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [[ -S $SOCK ]] && break; sleep 0.1; done
export RESOLVER_SOCKET=$SOCK
ctl() { show "$RESOLVERCTL" "$@"; }

step "Picks rotate over the three instances"
for _ in 1 2 3 4 5 6; do ctl pick user.rpc; done
ctl instances user.rpc
ctl services

step "An instance leaves etcd: it drains and leaves the picks"
show etcdctl del "user.rpc/$((7587869981229590045 + 1))" >/dev/null
sleep 0.2
for _ in 1 2 3 4; do ctl pick user.rpc; done
ctl instances user.rpc

step "A backend dies: its instance turns TRANSIENT_FAILURE and leaves the picks"
kill "${PIDS[3]}"
sleep 0.5
ctl instances user.rpc
for _ in 1 2 3; do ctl pick user.rpc; done

step "Status"
ctl status

if [[ $STAY == 1 ]]; then
    step "Running until Ctrl-C; try: RESOLVER_SOCKET=$SOCK $RESOLVERCTL watch user.rpc"
    echo "etcdctl --endpoints $ETCD put user.rpc/new 127.0.0.1:${PORTS[1]}   # register again"
    wait "${PIDS[-1]}"
fi
step "Done; stopping everything the demo started"
