#!/usr/bin/env bash
# etcd connections benchmark (issue 15).  Prints figures; asserts nothing.
#
# BENCH_SERVICES (default 256) configured services on one resolverd, against
# a single etcd member (a) over TLS with --client-cert-auth, where every
# request is an HTTP/2 stream on a shared connection, and (b) over plain
# http, where etcd's gateway is HTTP/1.1 and each watch holds a connection.
# For each: put -> visible over resolverd's WATCH (BENCH_PUTS puts, default
# 200, spread over 16 of the prefixes, each deleted again), and resolverd's
# TCP connections to etcd (ss, by PID) once every service is synced.
#
# Needs RESOLVERD and RESOLVERCTL; etcd, etcdctl, openssl and ss on PATH.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/lib.sh"
. "$HERE/../integration/tlsca.sh"
. "$HERE/report.sh"
t_init etcd_conns_bench
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
N=${BENCH_SERVICES:-256}
PUTS=${BENCH_PUTS:-200}
SOCK=$T_DIR/rd.sock
PUTV=$HERE/../integration/putvisible.py

config() { # FILE ENDPOINT EXTRA
    {
        printf '{ "etcd": { "endpoints": ["%s"]%s }, "socket": { "path": "%s" },\n  "services": [' \
            "$2" "$3" "$SOCK"
        local i sep=""
        for ((i = 0; i < N; i++)); do
            printf '%s{ "name": "s%03d", "prefix": "s%03d/" }' "$sep" "$i" "$i"
            sep=", "
        done
        printf '] }\n'
    } >"$1"
}
synced() {
    "$RESOLVERCTL" -s "$SOCK" --json services | "$PY" -c "
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if len(s) == $N and all(x.get('synced') for x in s) else 1)"
}
prefixes() {
    local i
    for ((i = 0; i < N; i += N / 16 > 0 ? N / 16 : 1)); do printf 's%03d/ ' "$i"; done
}
fig() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

# run LABEL ENDPOINT PORT EXTRA [TLS-ARGS...]
run() {
    local label=$1 ep=$2 port=$3 extra=$4
    shift 4
    config "$T_DIR/$label.json" "$ep" "$extra"
    rm -f "$SOCK"
    t_spawn "rd-$label" "$RESOLVERD" -c "$T_DIR/$label.json" --log-level warn
    t_wait_until 10 test -S "$SOCK"
    local t0=$(($(date +%s%N) / 1000000))
    t_wait_until 60 synced
    local sync_ms=$(($(date +%s%N) / 1000000 - t0))
    local pid conns
    pid=$(t_pid "rd-$label")
    conns=$(ss -tnpH state established "( dport = :$port )" | grep -c "pid=$pid,")
    # shellcheck disable=SC2046
    "$PY" "$PUTV" "$SOCK" "$ep" "$PUTS" $(prefixes) --delete "$@" >"$T_DIR/$label.txt"
    echo "# $label: $conns connections, synced in $sync_ms ms; $(tr '\n' ' ' <"$T_DIR/$label.txt")"
    echo "$label $conns $sync_ms $(fig put_p50 "$T_DIR/$label.txt") $(fig put_p99 "$T_DIR/$label.txt")" \
        >>"$T_DIR/rows.txt"
    t_kill "rd-$label" KILL >/dev/null 2>&1 || true
}

tls_etcd_setup "$T_DIR/tls" >/dev/null
tls_cert "$T_DIR/tls" resolverd "DNS:resolverd" client 2 ""
t_etcd_start tls || t_done
TLS=$T_DIR/tls
run https "$ETCD_ENDPOINT" "${T_ETCD_CPORT[tls]}" \
    ", \"ca_file\": \"$TLS/ca.pem\", \"cert_file\": \"$TLS/resolverd.pem\", \"key_file\": \"$TLS/resolverd.key\"" \
    --tls "$TLS/ca.pem" "$TLS/root.pem" "$TLS/root.key"
unset T_ETCD_TLS_DIR ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY
t_etcd_start plain || t_done
run http "$ETCD_ENDPOINT" "${T_ETCD_CPORT[plain]}" ""

read -r _ hc hs hp50 hp99 < <(grep '^https ' "$T_DIR/rows.txt")
read -r _ pc ps pp50 pp99 < <(grep '^http ' "$T_DIR/rows.txt")
bench_row etcd "TCP connections to etcd, $N services, HTTP/2 over TLS" "$hc" "$pc (HTTP/1.1)" \
    "<= 2 per member" "$(bench_verdict '<=' "$hc" 2)"
bench_row etcd "put -> visible, $N services, HTTP/2 shared, p50 (ms)" "$hp50" "$pp50 (HTTP/1.1)" - -
bench_row etcd "put -> visible, $N services, HTTP/2 shared, p99 (ms)" "$hp99" "$pp99 (HTTP/1.1)" - -
bench_row etcd "initial sync of $N services (ms)" "$hs" "$ps (HTTP/1.1)" - -
t_ok "etcd connections bench ran"
t_done
