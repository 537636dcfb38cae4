#!/usr/bin/env bash
# install-deps.sh - installs what building and testing libresolver needs on
# Debian 12, and nothing that is already there.
#
#   contrib/install-deps.sh [--check | --dry-run] [EXTRA_PACKAGE...]
#
#   (none)     install the missing packages (root, or through sudo)
#   --check    list the missing packages; exit 1 if there are any
#   --dry-run  show what apt-get would do (apt-get -s), change nothing
#
# Idempotent: dpkg-query decides what is missing, and when nothing is, apt
# is not run at all (no `apt-get update`, no network, no root needed).
# Then the npm etcd3 client the registration tests run as a peer goes into
# tests/integration/peers/node/node_modules (npm ci of its lock file), only
# when it is not there; without npm or the registry it warns and goes on (the
# test skips its Node half).
set -euo pipefail

PACKAGES=(
    # build
    build-essential autoconf automake libtool pkg-config
    libcurl4-openssl-dev libjansson-dev libnghttp2-dev libssl-dev libc-ares-dev
    # unit tests, sanitizers, fuzzing, valgrind
    check clang libclang-rt-14-dev valgrind
    # integration tests: throwaway etcd, HTTP/2 backends, fault injection
    etcd-server etcd-client nghttp2-server nghttp2-client
    iproute2 iptables python3 python3-grpcio procps curl ca-certificates
    # promtool, to check the /metrics exposition
    prometheus
    # real registration peers (test_register_peers.sh): grpc-go 1.33 and
    # etcd's clientv3 naming packages, built offline with GOPATH=/usr/share/gocode;
    # node for the npm etcd3 publisher (npm comes with it, or below)
    golang-go golang-google-grpc-dev golang-etcd-server-dev nodejs
)

mode=install
extra=()
for arg in "$@"; do
    case $arg in
    --check) mode=check ;;
    --dry-run) mode=dry-run ;;
    -h | --help)
        sed -n '2,16s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    -*)
        echo "install-deps.sh: unknown option $arg" >&2
        exit 2
        ;;
    *) extra+=("$arg") ;;
    esac
done
PACKAGES+=("${extra[@]}")

if [[ -r /etc/os-release ]]; then
    # shellcheck source=/dev/null
    . /etc/os-release
    if [[ ${ID:-} != debian || ${VERSION_ID:-} != 12 ]]; then
        echo "install-deps.sh: written for Debian 12, this is ${PRETTY_NAME:-unknown}; trying anyway" >&2
    fi
fi

# A package counts as present only when fully installed ("installed"), not
# when merely known to dpkg (config-files, half-installed...).
missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$p")
done

NODE_DIR=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)/tests/integration/peers/node
# node_peers: the npm packages of $NODE_DIR, unless they are there.
node_peers() {
    [[ -d $NODE_DIR/node_modules/etcd3 ]] && return 0
    if [[ $mode != install ]]; then
        echo "install-deps: missing: npm packages in $NODE_DIR (npm ci)"
        [[ $mode == check ]] && return 1
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        # Debian's npm, unless node came from elsewhere with an npm of its own.
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y \
            --no-install-recommends npm >"$log" 2>&1 || true
    fi
    echo "install-deps: npm ci in $NODE_DIR"
    if ! (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
        echo "install-deps.sh: warning: npm ci failed (test_register_peers.sh will skip its Node.js peer):" >&2
        tail -n 10 "$log" >&2
    fi
    return 0
}

as_root=()
if [[ $(id -u) != 0 ]] && command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
fi
log=$(mktemp "${TMPDIR:-/tmp}/install-deps.XXXXXX")
trap 'rm -f "$log"' EXIT
apt_opts=(-qq -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#PACKAGES[@]} packages are installed"
    node_peers
    exit $?
fi
echo "install-deps: missing: ${missing[*]}"
if [[ $mode == check ]]; then
    node_peers || true
    exit 1
fi

if [[ $(id -u) != 0 && ${#as_root[@]} == 0 && $mode == install ]]; then
    echo "install-deps.sh: not root and no sudo: run it as root" >&2
    exit 1
fi

# Quiet, but keep apt's own output for when it fails: -qq and stdout to a
# log; errors still go to stderr as they happen.
run_apt() {
    if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" "$@" >"$log"; then
        echo "install-deps.sh: apt-get $1 failed; its output:" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}

if [[ $mode == dry-run ]]; then
    # Simulation needs no root, and the lists as they are.
    env DEBIAN_FRONTEND=noninteractive apt-get -s -o Dpkg::Use-Pty=0 install -y \
        --no-install-recommends "${missing[@]}" | grep -E '^(Inst|Conf) ' || true
    node_peers
    exit 0
fi

echo "install-deps: apt-get update"
run_apt update
echo "install-deps: apt-get install ${missing[*]}"
run_apt install -y --no-install-recommends "${missing[@]}"

# Trust, but verify: a package apt skipped would fail the build much later.
still=()
for p in "${missing[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $status == installed ]] || still+=("$p")
done
if ((${#still[@]})); then
    echo "install-deps.sh: still missing after apt-get install: ${still[*]}" >&2
    exit 1
fi
echo "install-deps: installed ${#missing[@]} package(s)"
node_peers
