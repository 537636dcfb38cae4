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
)

mode=install
extra=()
for arg in "$@"; do
    case $arg in
    --check) mode=check ;;
    --dry-run) mode=dry-run ;;
    -h | --help)
        sed -n '2,12s/^# \{0,1\}//p' "$0"
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

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#PACKAGES[@]} packages are installed"
    exit 0
fi
echo "install-deps: missing: ${missing[*]}"
[[ $mode == check ]] && exit 1

as_root=()
if [[ $(id -u) != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    elif [[ $mode == install ]]; then
        echo "install-deps.sh: not root and no sudo: run it as root" >&2
        exit 1
    fi
fi

# Quiet, but keep apt's own output for when it fails: -qq and stdout to a
# log; errors still go to stderr as they happen.
log=$(mktemp "${TMPDIR:-/tmp}/install-deps.XXXXXX")
trap 'rm -f "$log"' EXIT
apt_opts=(-qq -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)
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
