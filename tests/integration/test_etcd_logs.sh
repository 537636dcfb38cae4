#!/usr/bin/env bash
# What resolverd logs when etcd fails (issue 12, Logs): bounded, and saying
# why.  etcd has auth enabled; resolverd A reaches it through two
# faultproxy.py endpoints (a "cluster" of two members that fail together).
#  1. Both endpoints refuse for 30 s while A watches three prefixes, and B
#     starts (it authenticates while etcd is down).  Each daemon logs a
#     bounded number of warn/error lines (one per cause per 10 s, not one
#     per retry), each naming the endpoint and the reason; B's auth retries
#     are warnings that say they wait for etcd.
#  2. Both endpoints freeze (accept, never answer): the log names the
#     timeout that fired and its value.
#  3. A daemon with a wrong password logs etcd's own message, not a JSON dump.
#  4. Behind gateway503.py (every watch answered 503, as an overloaded member
#     would): the line has the status, the body's message and gRPC code, and
#     the URL.
set -u
. "$(dirname "$0")/lib.sh"
t_init etcd-logs
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
[[ -n ${H2SERVER:-} && -x ${H2SERVER:-} ]] || t_require nghttpd
HERE=$(dirname "$0")

PW="pw-$RANDOM$RANDOM-Lq4"
t_etcd_start e1 || t_done
t_check "etcdctl user add root" t_etcdctl user add root --new-user-password "$PW"
t_check "etcdctl user grant-role root root" t_etcdctl user grant-role root root
t_check "etcdctl auth enable" t_etcdctl auth enable
export ETCD_USER="root:$PW" # used by ec (etcd_common.sh)
printf '%s\n' "$PW" >"$T_DIR/password"
printf 'wrong-%s\n' "$RANDOM" >"$T_DIR/wrong-password"
chmod 600 "$T_DIR/password" "$T_DIR/wrong-password"

proxy() { "$PY" "$HERE/faultproxy.py" --control "$T_DIR/proxy$1.sock" --send "$2" >/dev/null; }
both() { proxy 1 "$1" && proxy 2 "$1"; }
declare -a PP=()
for i in 1 2; do
    PP[i]=$(t_free_port)
    t_spawn "proxy$i" "$PY" "$HERE/faultproxy.py" --listen "127.0.0.1:${PP[i]}" \
        --target "${ETCD_ENDPOINT#http://}" --control "$T_DIR/proxy$i.sock" --quiet
    t_wait_for "faultproxy $i answers" 10 proxy "$i" status
done

backend_start backend1 || t_done
for p in a b c; do
    ec put "$p/k1" "127.0.0.1:$BACKEND_PORT" >/dev/null
done

# daemon NAME PASSWORD_FILE ENDPOINTS_JSON
daemon() {
    cat >"$T_DIR/$1.json" <<EOF
{ "etcd": { "endpoints": $3, "dial_timeout_ms": 1000,
            "username": "root", "password_file": "$2" },
  "socket": { "path": "$T_DIR/$1.sock" },
  "services": [ { "name": "a", "prefix": "a/" }, { "name": "b", "prefix": "b/" },
                { "name": "c", "prefix": "c/" } ] }
EOF
    t_spawn "$1" "$RESOLVERD" -c "$T_DIR/$1.json" --log-level info
}
EPS="[\"http://127.0.0.1:${PP[1]}\", \"http://127.0.0.1:${PP[2]}\"]"
all_synced() {
    local s
    for s in a b c; do
        views_equal "$s" "$s/" >/dev/null || return 1
    done
}
daemon rdA "$T_DIR/password" "$EPS"
SOCK=$T_DIR/rdA.sock
t_wait_for "A lists etcd's view" 15 all_synced

# lines_since FILE N: the warn and error lines of FILE after its first N lines.
lines_since() {
    tail -n +"$(($2 + 1))" "$1" | grep -E ' (warn|error) ' || true
}

# ---- 1. etcd unreachable for 30 s ----
nA=$(wc -l <"$T_DIR/rdA.log")
t_check "both endpoints refuse" both refuse
daemon rdB "$T_DIR/password" "$EPS"
sleep 30
lines_since "$T_DIR/rdA.log" "$nA" >"$T_DIR/downA.txt"
lines_since "$T_DIR/rdB.log" 0 >"$T_DIR/downB.txt"
nwA=$(wc -l <"$T_DIR/downA.txt")
nwB=$(wc -l <"$T_DIR/downB.txt")
echo "# etcd refused for 30 s: A (watching 3 prefixes, 2 endpoints) logged $nwA warn/error lines," \
    "B (starting, auth) $nwB"
sed 's/^/#   A: /' "$T_DIR/downA.txt"
sed 's/^/#   B: /' "$T_DIR/downB.txt"
t_check "A: some lines, at most 10 in 30 s (got $nwA)" test "$nwA" -ge 1 -a "$nwA" -le 10
t_check "B: some lines, at most 8 in 30 s (got $nwB)" test "$nwB" -ge 1 -a "$nwB" -le 8
t_check "a later line counts what was suppressed" \
    grep -q 'more like this since the last one' "$T_DIR/downA.txt"
t_eq "every line names an endpoint" 0 \
    "$(cat "$T_DIR/downA.txt" "$T_DIR/downB.txt" | grep -vc 'http://127\.0\.0\.1:')"
t_eq "every line says why (curl's reason)" 0 \
    "$(cat "$T_DIR/downA.txt" "$T_DIR/downB.txt" | grep -vic -e "connect" -e refused)"
t_check "B's auth retries are logged" grep -q 'authenticat' "$T_DIR/downB.txt"
t_eq "B's auth retries are warnings, not errors" 0 \
    "$(grep 'authenticat' "$T_DIR/downB.txt" | grep -vc ' warn ')"
t_check "B says it waits for etcd" grep -q 'waiting for etcd' "$T_DIR/downB.txt"
t_check "both endpoints pass" both pass
t_wait_for "A is back in sync" 20 all_synced
SOCK=$T_DIR/rdB.sock
t_wait_for "B authenticates and syncs" 20 all_synced

# ---- 2. both endpoints accept and never answer ----
nA=$(wc -l <"$T_DIR/rdA.log")
t_check "both endpoints freeze" both freeze
t_wait_for "A names the timeout that fired" 20 bash -c \
    "tail -n +$((nA + 1)) '$T_DIR/rdA.log' | grep -q 'no answer within dial_timeout_ms=1000'"
tail -n +"$((nA + 1))" "$T_DIR/rdA.log" | grep 'dial_timeout_ms' | head -3 | sed 's/^/#   /'
t_check "both endpoints pass" both pass
SOCK=$T_DIR/rdA.sock
t_wait_for "A is back in sync" 30 all_synced

# ---- 3. etcd's error message ----
daemon rdC "$T_DIR/wrong-password" "[\"$ETCD_ENDPOINT\"]"
t_wait_for "C logs the authentication failure" 10 grep -q 'authentication as "root" failed' "$T_DIR/rdC.log"
line=$(grep -m1 'authentication as "root" failed' "$T_DIR/rdC.log")
echo "# $line"
t_check "it carries etcd's message" grep -q 'invalid user ID or password' <<<"$line"
t_check "it gives the HTTP status" grep -q 'HTTP 4[0-9][0-9]' <<<"$line"
t_check "it names the endpoint" grep -qF "$ETCD_ENDPOINT" <<<"$line"
t_check "it is not etcd's raw JSON" bash -c "! grep -q '{\"' <<<'${line//\'/}'"

# ---- 4. an HTTP status etcd gives only when in trouble: a gateway's 503 ----
GPORT=$(t_free_port)
t_spawn gateway "$PY" "$HERE/gateway503.py" --listen "127.0.0.1:$GPORT" \
    --target "${ETCD_ENDPOINT#http://}" --match create_request # every watch
t_wait_until 10 "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $GPORT), 1)" ||
    t_fail "gateway503 listens"
daemon rdD "$T_DIR/password" "[\"http://127.0.0.1:$GPORT\"]"
t_wait_for "D logs a watch answered 503" 15 grep -q 'HTTP 503' "$T_DIR/rdD.log"
line=$(grep -m1 'HTTP 503' "$T_DIR/rdD.log")
echo "# $line"
t_check "it gives the gateway's message and gRPC code" \
    grep -qF 'HTTP 503: injected 503 (gRPC code 14 UNAVAILABLE)' <<<"$line"
t_check "it names the URL" grep -qF "http://127.0.0.1:$GPORT/v3/watch" <<<"$line"

for d in rdA rdB rdC rdD; do
    t_check "$d is alive" t_alive "$d"
done
t_check "the password never appears in a log" bash -c "! cat '$T_DIR'/rd?.log | grep -qF -- '$PW'"
t_done
