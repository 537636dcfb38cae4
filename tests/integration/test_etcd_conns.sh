#!/usr/bin/env bash
# How many connections resolverd holds to etcd.  256 configured services
# against a three-member etcd serving clients over TLS with
# --client-cert-auth (private CA, tlsca.sh): every watch, range, probe
# rides HTTP/2, at most 2 TCP connections per member (counted with `ss`
# by resolverd's PID), and put -> visible still holds (every put seen,
# each within 2 s).  Then the same 256 services over plain http, where
# etcd's gateway is HTTP/1.1 only: one connection per watch.
#
# N_SERVICES (default 256) scales it.
set -u
. "$(dirname "$0")/lib.sh"
t_init etcd-conns
t_require etcd etcdctl openssl ss
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
. "$(dirname "$0")/tlsca.sh"

N=${N_SERVICES:-256}
SOCK=$T_DIR/rd.sock
TLS=$T_DIR/tls
PUTV=$(dirname "$0")/putvisible.py

# write_config FILE ENDPOINTS-JSON EXTRA-ETCD-KEYS
write_config() {
    {
        printf '{ "etcd": { "endpoints": %s%s },\n' "$2" "$3"
        printf '  "socket": { "path": "%s" },\n  "services": [' "$SOCK"
        local i sep=""
        for ((i = 0; i < N; i++)); do
            printf '%s\n    { "name": "s%03d", "prefix": "s%03d/" }' "$sep" "$i" "$i"
            sep=,
        done
        printf ' ] }\n'
    } >"$1"
}
# all_synced: every service has had its first snapshot.
all_synced() {
    ctl --json services | "$PY" -c "
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if len(s) == $N and all(x.get('synced') for x in s) else 1)"
}
# conns_to PORT: resolverd's established TCP connections to 127.0.0.1:PORT.
conns_to() {
    ss -tnpH state established "( dport = :$1 )" 2>/dev/null | grep -c "pid=$RD_PID," || true
}
# max_conns_to PORT SECONDS: the most connections seen in 0.2 s samples.
max_conns_to() {
    local max=0 c end=$(($(date +%s) + $2))
    while (($(date +%s) < end)); do
        c=$(conns_to "$1")
        ((c > max)) && max=$c
        sleep 0.2
    done
    echo "$max"
}
fig() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }
prefixes() {
    local i
    for ((i = 0; i < N; i += N / 16 > 0 ? N / 16 : 1)); do printf 's%03d/ ' "$i"; done
}

# ---- TLS: HTTP/2 ----
t_check "a private CA and certificates" tls_etcd_setup "$TLS"
t_check "a client certificate for resolverd" tls_cert "$TLS" resolverd "DNS:resolverd" client 2 ""
t_etcd_cluster3 c || t_done
declare -a PORT=("" "${T_ETCD_CPORT[c-1]}" "${T_ETCD_CPORT[c-2]}" "${T_ETCD_CPORT[c-3]}")
write_config "$T_DIR/rd.json" "[\"$(t_etcd_member_url c 1)\", \"$(t_etcd_member_url c 2)\", \"$(t_etcd_member_url c 3)\"]" \
    ", \"ca_file\": \"$TLS/ca.pem\", \"cert_file\": \"$TLS/resolverd.pem\", \"key_file\": \"$TLS/resolverd.key\""
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --log-level info
RD_PID=$(t_pid resolverd)
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
t_wait_for "all $N services synced over TLS" 30 all_synced
t_eq "status: HTTP/2" True "$(status_field etcd_http2)"
t_eq "status: $N watch streams" "$N" "$(status_field etcd_watch_streams)"
for i in 1 2 3; do
    m=$(max_conns_to "${PORT[i]}" 2)
    echo "# member $i: at most $m connections in 2 s"
    t_check "member $i: at most 2 TCP connections ($m)" test "$m" -le 2
done
total=$(ss -tnpH state established 2>/dev/null | grep -c "pid=$RD_PID,")
echo "# resolverd's TCP connections in all: $total (etcd: $(status_field etcd_connections))"
# shellcheck disable=SC2046 # one word per prefix
"$PY" "$PUTV" "$SOCK" "$(t_etcd_member_url c 1)" 48 $(prefixes) --delete \
    --tls "$TLS/ca.pem" "$TLS/root.pem" "$TLS/root.key" >"$T_DIR/h2.txt"
cat "$T_DIR/h2.txt" | sed 's/^/# https: /'
t_eq "https: every put and delete seen" 0 "$(fig lost "$T_DIR/h2.txt")"
t_check "https: put -> visible within 2 s ($(fig put_max "$T_DIR/h2.txt") ms)" \
    "$PY" -c "import sys; sys.exit(0 if float('$(fig put_max "$T_DIR/h2.txt")') < 2000 else 1)"
t_wait_for "still at most 2 connections to the member in use" 5 bash -c \
    "(( \$(ss -tnpH state established | grep -c 'pid=$RD_PID,') <= 6 ))"
t_kill resolverd
rm -f "$SOCK"

# ---- plain http: one connection per watch ----
unset T_ETCD_TLS_DIR ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY
t_etcd_start p || t_done
ETCD_ENDPOINTS=$ETCD_ENDPOINT
write_config "$T_DIR/rd-plain.json" "[\"$ETCD_ENDPOINT\"]" ""
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd-plain.json" --log-level info
RD_PID=$(t_pid resolverd)
t_wait_for "resolverd serves its socket (http)" 10 test -S "$SOCK"
t_wait_for "all $N services synced over http" 30 all_synced
t_eq "status: HTTP/1.1" False "$(status_field etcd_http2)"
pport=${T_ETCD_CPORT[p]}
# Each watch on its own connection; ranges leave a few pooled ones beside.
t_wait_for "http: a connection per watch (at least $N)" 10 bash -c \
    "(( \$(ss -tnpH state established '( dport = :$pport )' | grep -c 'pid=$RD_PID,') >= $N ))"
echo "# http: $(conns_to "$pport") connections for $N watches (status: $(status_field etcd_connections))"
t_done
