#!/usr/bin/env bash
# etcd with auth enabled and simple tokens that expire after 2 s.  resolverd
# authenticates with etcd.username + password_file and reaches etcd through
# faultproxy.py.  Keys keep changing across several token expiries while the
# path is refused or reset, so every watch is re-created with an expired
# token: resolverd must authenticate again and resume at the same revision
# (no change lost), without a log loop, and never log the password.  A
# daemon with a wrong password logs the failure with backoff and keeps
# answering on its socket.
set -u
. "$(dirname "$0")/lib.sh"
t_init etcd-auth
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
[[ -n ${H2SERVER:-} && -x ${H2SERVER:-} ]] || t_require nghttpd

TOKEN_TTL=2
PW="pw-$RANDOM$RANDOM-Zq9"
WRONG_PW="wrong-$RANDOM$RANDOM-Xk7"
T_ETCD_FLAGS="--auth-token simple --auth-token-ttl $TOKEN_TTL" t_etcd_start e1 || t_done
t_check "etcdctl user add root" t_etcdctl user add root --new-user-password "$PW"
t_check "etcdctl user grant-role root root" t_etcdctl user grant-role root root
t_check "etcdctl auth enable" t_etcdctl auth enable
export ETCD_USER="root:$PW" # used by ec (etcd_common.sh)
t_check "anonymous reads are refused now" bash -c "! ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get x 2>/dev/null"

printf '%s\n' "$PW" >"$T_DIR/password"
printf '%s\n' "$WRONG_PW" >"$T_DIR/wrong-password"
chmod 600 "$T_DIR/password" "$T_DIR/wrong-password"

SOCK=$T_DIR/rd.sock
PROXY=$(dirname "$0")/faultproxy.py
CTL_SOCK=$T_DIR/proxy.sock
proxy() { "$PY" "$PROXY" --control "$CTL_SOCK" --send "$1" >/dev/null; }
PPORT=$(t_free_port)
t_spawn proxy "$PY" "$PROXY" --listen "127.0.0.1:$PPORT" --target "${ETCD_ENDPOINT#http://}" \
    --control "$CTL_SOCK" --quiet
t_wait_for "faultproxy answers" 10 proxy status

declare -a B=()
for i in 1 2 3; do
    backend_start "backend$i" || t_done
    B+=("127.0.0.1:$BACKEND_PORT")
done
ec put svc/k1 "${B[0]}" >/dev/null
ec put svc/k2 "${B[1]}" >/dev/null

cat >"$T_DIR/rd.json" <<EOF
{ "etcd": { "endpoints": ["http://127.0.0.1:$PPORT"], "dial_timeout_ms": 1000,
            "username": "root", "password_file": "$T_DIR/password" },
  "socket": { "path": "$SOCK" },
  "services": [ { "name": "svc", "prefix": "svc/" } ] }
EOF
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
t_wait_for "instances visible through an authenticated watch" 10 views_equal svc svc/
t_check "the log says it authenticated" grep -q 'authenticated as "root"' "$T_DIR/resolverd.log"
t_wait_for "a pick answers" 10 pick_done svc

# ---- changes across token expiries, the watch re-created each time ----
# Each round: cut the path (refuse, or a reset after the token aged), change
# keys behind resolverd's back, let the token expire (it lives TOKEN_TTL s
# after its last use; the open watch does not use it), restore.
n_auth0=$(count_lines 'authenticated as' "$T_DIR/resolverd.log")
for round in 1 2 3 4 5 6; do
    key=svc/r$round
    # An address of its own, so that the views differ until the change
    # arrives (nobody listens there: it is listed TRANSIENT_FAILURE).
    free_dead_port
    addr=127.0.0.1:$DEAD_PORT
    if ((round % 2)); then
        t_check "round $round: faultproxy refuse" proxy refuse
        ec put "$key" "$addr" >/dev/null
        ec del "svc/r$((round - 1))" >/dev/null
        sleep $((TOKEN_TTL + 1)) # the token expires (time-based by design)
        t_check "round $round: faultproxy pass" proxy pass
    else
        sleep $((TOKEN_TTL + 1)) # the token expires
        ec put "$key" "$addr" >/dev/null
        ec del "svc/r$((round - 1))" >/dev/null
        t_check "round $round: faultproxy reset (watch re-created with an expired token)" proxy reset
    fi
    t_wait_for "round $round: resolverd caught up with etcd" 15 views_equal svc svc/
done
n_auth=$(($(count_lines 'authenticated as' "$T_DIR/resolverd.log") - n_auth0))
echo "# authentications during the rounds: $n_auth; token rejections logged: $(count_lines 'token rejected' "$T_DIR/resolverd.log")"
t_check "re-authenticated after expiries (at least 3 times)" test "$n_auth" -ge 3
t_check "no authentication loop (fewer than 20 over the rounds)" test "$n_auth" -lt 20
# Authentication requests sent while the path was refused fail to connect;
# anything else (a rejected password, a bad answer) would be a bug.
t_check "no authentication failure but connection failures" bash -c \
    "! grep 'authentication as \"root\" failed' '$T_DIR/resolverd.log' | grep -v -e \"Couldn't connect\" -e 'Connection reset' -e 'Recv failure' -e 'Send failure'"
t_check "the resumed watches never needed a resync" bash -c "! grep -q resyncing '$T_DIR/resolverd.log'"
# Every change was seen: the watch resumed where it was, never skipped.
ec put svc/final "${B[2]}" >/dev/null
t_wait_for "a change after the rounds arrives" 5 views_equal svc svc/
t_check "the password never appears in the log" bash -c "! grep -qF -- '$PW' '$T_DIR/resolverd.log'"
t_check "the password is not in resolverctl status" bash -c "! '$RESOLVERCTL' -s '$SOCK' --json status | grep -qF -- '$PW'"

# ---- a wrong password ----
SOCK2=$T_DIR/rd2.sock
cat >"$T_DIR/rd2.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"], "dial_timeout_ms": 1000,
            "username": "root", "password_file": "$T_DIR/wrong-password" },
  "socket": { "path": "$SOCK2" },
  "services": [ { "name": "svc", "prefix": "svc/" } ] }
EOF
t_spawn resolverd2 "$RESOLVERD" -c "$T_DIR/rd2.json" --log-level debug
t_wait_for "resolverd with a wrong password serves its socket" 10 test -S "$SOCK2"
t_wait_for "it logs the authentication failure" 10 grep -q 'authentication as "root" failed' "$T_DIR/resolverd2.log"
start_ms=$(_t_now_ms)
# Keep asking it things for a while: it must keep answering.
asked=0 answers=0
while (($(_t_now_ms) - start_ms < 6000)); do
    asked=$((asked + 1))
    "$RESOLVERCTL" -s "$SOCK2" status >/dev/null && answers=$((answers + 1))
    sleep 0.5
done
t_eq "it answers status throughout (asked $asked times in 6 s)" "$asked" "$answers"
rc=0
out=$("$RESOLVERCTL" -s "$SOCK2" pick svc 2>&1) || rc=$?
t_eq "a pick there fails with exit 3 (nothing known), not a crash" 3 "$rc"
echo "# its pick said: $out"
n_fail=$(count_lines 'authentication as "root" failed' "$T_DIR/resolverd2.log")
echo "# authentication failures logged in ~7 s: $n_fail"
t_check "the failures back off (at most 6 lines in ~7 s)" test "$n_fail" -le 6
t_check "neither password appears in its log" bash -c "! grep -qF -e '$PW' -e '$WRONG_PW' '$T_DIR/resolverd2.log'"
t_check "the wrong-password daemon is alive" t_alive resolverd2
t_check "the good daemon is alive" t_alive resolverd
t_done
