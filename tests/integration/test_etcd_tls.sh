#!/usr/bin/env bash
# A three-member etcd cluster serving clients over TLS only, with
# --client-cert-auth, certificates of a private CA made here with openssl
# (tlsca.sh).  resolverd reaches each member through a faultproxy (plain
# TCP: TLS passes through it end to end).  Checked:
#  1. the fact the design leans on: etcd's gateway answers over HTTP/2 on
#     the TLS client port (ALPN h2), and refuses a client without a
#     certificate;
#  2. discovery over TLS: both services' watches, the member probe and the
#     ranges share one HTTP/2 connection to the member in use;
#  3. a stalled shared connection (proxy `stall`: open, silent) is noticed
#     by the member probe riding it, and every stream moves to another
#     member at once;
#  4. a member killed (SIGKILL): failover, nothing lost;
#  5. compaction while every path is frozen: a resync by a fresh range,
#     views equal etcd's;
#  6. etcd auth (user and password) on top of client certificates.
set -u
. "$(dirname "$0")/lib.sh"
t_init etcd-tls
t_require etcd etcdctl openssl curl ss
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
. "$(dirname "$0")/tlsca.sh"
[[ -n ${H2SERVER:-} && -x ${H2SERVER:-} ]] || t_require nghttpd

SOCK=$T_DIR/rd.sock
PROXY=$(dirname "$0")/faultproxy.py
TLS=$T_DIR/tls
t_check "a private CA and certificates" tls_etcd_setup "$TLS"
# resolverd's own client certificate, without a Common Name: with auth
# enabled (part 6) etcd's gateway answers 400 to a client certificate that
# has one ("CommonName of client sending a request against gateway will be
# ignored").
t_check "a client certificate for resolverd" tls_cert "$TLS" resolverd "DNS:resolverd" client 2 ""

t_etcd_cluster3 c || t_done
declare -a MEMBER_URL=("" "$(t_etcd_member_url c 1)" "$(t_etcd_member_url c 2)" "$(t_etcd_member_url c 3)")
t_check "members serve clients over https" test "${MEMBER_URL[1]%%://*}" = https

# ---- 1. the gateway over HTTP/2 on the TLS port ----
curl_out=$(curl -sv --http2 --max-time 5 --cacert "$TLS/ca.pem" --cert "$TLS/root.pem" \
    --key "$TLS/root.key" -d '{"key":"eA=="}' "${MEMBER_URL[1]}/v3/kv/range" 2>&1)
t_check "ALPN: etcd accepts h2 on its TLS client port" grep -q 'ALPN: server accepted h2' <<<"$curl_out"
t_check "the gateway answers a range over HTTP/2" grep -q '< HTTP/2 200' <<<"$curl_out"
t_check "no answer without a client certificate" bash -c "! curl -s --http2 --max-time 5 \
    --cacert '$TLS/ca.pem' -d '{}' '${MEMBER_URL[1]}/v3/kv/range' >/dev/null 2>&1"

# ---- resolverd through three proxies ----
declare -a PPORT=("") CTL=("")
for i in 1 2 3; do
    PPORT[i]=$(t_free_port)
    CTL[i]=$T_DIR/proxy$i.sock
    t_spawn "proxy$i" "$PY" "$PROXY" --listen "127.0.0.1:${PPORT[i]}" \
        --target "${MEMBER_URL[i]#https://}" --control "${CTL[i]}" --quiet
done
proxy() { "$PY" "$PROXY" --control "${CTL[$1]}" --send "$2" >/dev/null; }
for i in 1 2 3; do
    t_wait_for "faultproxy $i answers" 10 proxy "$i" status
done

declare -a B=()
for i in 1 2 3 4; do
    backend_start "backend$i" || t_done
    B+=("127.0.0.1:$BACKEND_PORT")
done
t_etcdctl put svcA/1 "${B[0]}" >/dev/null
t_etcdctl put svcB/1 "${B[1]}" >/dev/null

write_config() {
    cat >"$T_DIR/rd.json" <<EOF
{ "etcd": { "endpoints": ["https://127.0.0.1:${PPORT[1]}", "https://127.0.0.1:${PPORT[2]}",
                          "https://127.0.0.1:${PPORT[3]}"],
            "dial_timeout_ms": 1000,
            "ca_file": "$TLS/ca.pem", "cert_file": "$TLS/resolverd.pem",
            "key_file": "$TLS/resolverd.key"$1 },
  "socket": { "path": "$SOCK" },
  "defaults": { "self_preservation_percent": 0 },
  "services": [ { "name": "svcA", "prefix": "svcA/" }, { "name": "svcB", "prefix": "svcB/" } ] }
EOF
}
write_config ""
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
t_wait_for "svcA listed from etcd over TLS" 10 views_equal svcA svcA/
t_wait_for "svcB listed from etcd over TLS" 10 views_equal svcB svcB/
RD_PID=$(t_pid resolverd)

# conns_to PORT: resolverd's established TCP connections to 127.0.0.1:PORT.
conns_to() {
    ss -tnpH state established "( dport = :$1 )" 2>/dev/null | grep -c "pid=$RD_PID," || true
}
# in_use: the index (1..3) of the proxy resolverd uses now.
in_use() {
    local ep i
    ep=$(status_field etcd_endpoint)
    for i in 1 2 3; do
        [[ $ep == "https://127.0.0.1:${PPORT[i]}" ]] && { echo "$i"; return 0; }
    done
    return 1
}

# ---- 2. one HTTP/2 connection carries everything ----
t_eq "status: HTTP/2 to etcd" True "$(status_field etcd_http2)"
t_wait_for "status: two watch streams" 10 bash -c "[[ \$('$RESOLVERCTL' -s '$SOCK' --json status | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"etcd_watch_streams\"])') == 2 ]]"
sleep 4 # a member probe (every 3 s) has ridden the connection too
cur=$(in_use)
t_eq "one TCP connection to the member in use (ss)" 1 "$(conns_to "${PPORT[cur]}")"
t_eq "status agrees: one connection" 1 "$(status_field etcd_connections)"
t_check "metrics: resolver_etcd_connections 1" bash -c "'$RESOLVERCTL' -s '$SOCK' metrics | grep -qx 'resolver_etcd_connections 1'"
t_check "metrics: two watch streams" bash -c "'$RESOLVERCTL' -s '$SOCK' metrics | grep -qx 'resolver_etcd_streams{kind=\"watch\"} 2'"
t_etcdctl put svcA/2 "${B[2]}" >/dev/null
t_wait_for "a put is visible" 5 views_equal svcA svcA/

# ---- 3. a stalled shared connection: every stream moves at once ----
fo0=$(status_field etcd_failovers)
t_check "stall the connection in use (proxy $cur)" proxy "$cur" stall
# The probe (every 3 s) must answer within dial_timeout_ms (1 s).
t_wait_for "the stall is noticed: failover" 10 bash -c "(( \$('$RESOLVERCTL' -s '$SOCK' --json status | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"etcd_failovers\"])') > $fo0 ))"
new=$(in_use)
t_check "moved to another member" test "$new" != "$cur"
t_wait_for "both watches on the new member" 10 bash -c "[[ \$('$RESOLVERCTL' -s '$SOCK' --json status | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"etcd_watch_streams\"])') == 2 ]]"
t_etcdctl put svcA/3 "${B[3]}" >/dev/null
t_etcdctl put svcB/2 "${B[2]}" >/dev/null
t_wait_for "svcA: a put after the stall is visible" 10 views_equal svcA svcA/
t_wait_for "svcB: a put after the stall is visible" 10 views_equal svcB svcB/
t_wait_for "the stalled connection is closed by resolverd" 10 bash -c "[[ \$(ss -tnpH state established '( dport = :${PPORT[cur]} )' | grep -c 'pid=$RD_PID,') == 0 ]]"
t_eq "one connection to the new member" 1 "$(conns_to "${PPORT[new]}")"
t_check "the log says why" grep -q 'etcd member failed' "$T_DIR/resolverd.log"
t_check "pass again (proxy $cur)" proxy "$cur" pass

# ---- 4. the member in use killed ----
cur=$(in_use)
fo0=$(status_field etcd_failovers)
t_check "SIGKILL member $cur" t_etcd_member_kill c "$cur" KILL
ETCD_ENDPOINTS=$(for i in 1 2 3; do [[ $i != "$cur" ]] && echo -n "${MEMBER_URL[i]},"; done)
ETCD_ENDPOINTS=${ETCD_ENDPOINTS%,}
t_wait_for "failover after the kill" 15 bash -c "(( \$('$RESOLVERCTL' -s '$SOCK' --json status | $PY -c 'import json,sys; print(json.load(sys.stdin)[\"etcd_failovers\"])') > $fo0 ))"
t_etcdctl del svcA/2 >/dev/null
t_etcdctl put svcB/3 "${B[3]}" >/dev/null
t_wait_for "svcA: a delete after the kill is visible" 10 views_equal svcA svcA/
t_wait_for "svcB: a put after the kill is visible" 10 views_equal svcB svcB/
t_check "member $cur back" t_etcd_member_start c "$cur"
ETCD_ENDPOINTS="${MEMBER_URL[1]},${MEMBER_URL[2]},${MEMBER_URL[3]}"

# ---- 5. compaction behind resolverd's back ----
for i in 1 2 3; do
    t_check "freeze proxy $i" proxy "$i" freeze
done
n_fail=$(count_lines 'etcd member failed' "$T_DIR/resolverd.log")
t_wait_for "resolverd notices the frozen member" 15 bash -c "(( \$(grep -c 'etcd member failed' '$T_DIR/resolverd.log') > $n_fail ))"
t_etcdctl put svcA/4 "${B[1]}" >/dev/null
t_etcdctl del svcB/1 >/dev/null
t_etcdctl put svcB/4 "${B[0]}" >/dev/null
t_check "compact past the changes" t_etcdctl compact "$(etcd_revision)" --physical
for i in 1 2 3; do
    t_check "pass proxy $i" proxy "$i" pass
done
t_wait_for "resyncs by a fresh range" 20 grep -q 'compacted.*resyncing by a fresh range' "$T_DIR/resolverd.log"
t_wait_for "svcA equals etcd after the compaction" 10 views_equal svcA svcA/
t_wait_for "svcB equals etcd after the compaction" 10 views_equal svcB svcB/

# ---- 6. auth on top of client certificates ----
PW="pw-$RANDOM$RANDOM"
t_check "etcdctl user add root" t_etcdctl user add root --new-user-password "$PW"
t_check "etcdctl user grant-role root root" t_etcdctl user grant-role root root
t_check "etcdctl auth enable" t_etcdctl auth enable
export ETCD_USER="root:$PW" # ec (etcd_common.sh)
printf '%s\n' "$PW" >"$T_DIR/password"
chmod 600 "$T_DIR/password"
t_kill resolverd
rm -f "$SOCK"
write_config ", \"username\": \"root\", \"password_file\": \"$T_DIR/password\""
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --log-level debug
t_wait_for "resolverd serves its socket (auth)" 10 test -S "$SOCK"
RD_PID=$(t_pid resolverd)
t_wait_for "svcA listed with auth over TLS" 10 views_equal svcA svcA/
t_check "it authenticated" grep -q 'authenticated as "root"' "$T_DIR/resolverd.log"
ec put svcA/5 "${B[2]}" >/dev/null
t_wait_for "a put is visible with auth" 10 views_equal svcA svcA/
cur=$(in_use)
sleep 4
t_eq "auth, watches and probes on one connection" 1 "$(conns_to "${PPORT[cur]}")"
t_done
