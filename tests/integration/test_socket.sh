#!/usr/bin/env bash
# The socket server against hostile names and clients: service names that
# try to forge /metrics lines (issue 11 item 21); the socket path guarded by
# a lock, never deleting what is not ours (item 19); tickets bound to their
# owner (item 13) and detached ones bounded per uid, freed in one pass at
# exit (item 12).
set -u
. "$(dirname "$0")/lib.sh"
t_init socket
t_require etcd etcdctl curl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
t_etcd_start e1 || t_done
SOCK=$T_DIR/rd.sock
ctl() { "$RESOLVERCTL" -s "$SOCK" "$@"; }
raw() { "$PY" "$HERE/sockclient.py" "$SOCK"; } # request lines on stdin

BPORT=$(t_free_port)
t_spawn b1 "$H2SERVER" --name b1 "$BPORT"
t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$BPORT" || true
t_etcdctl put svc/1 "127.0.0.1:$BPORT" >/dev/null
MPORT=$(t_free_port)
cat >"$T_DIR/rd.json" <<JSON
{ "socket": { "mode": "0666", "max_detached_tickets": 20 },
  "metrics": { "listen": "127.0.0.1:$MPORT" }, "defaults": { "drain_timeout_ms": 500 },
  "services": [ { "name": "svc" } ] }
JSON
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK"
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
t_wait_for "svc is READY" 5 bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" instances --json svc | grep -q READY"

# ---- item 21: names cannot reach /metrics unescaped ----
printf '%s\n' 'PICK evil%0Aresolver_tickets_leaked_total%20999999%0A#' 'PICK q"}' \
    'PICK a\b' 'PICK ok.name' >"$T_DIR/evil.req"
raw <"$T_DIR/evil.req" >"$T_DIR/evil.out"
t_check "a name with a newline is refused as invalid, and named" \
    grep -q '^ERR usage invalid service name "evil%0Aresolver_tickets_leaked_total%20999999%0A#"' "$T_DIR/evil.out"
t_check "a name with a quote is refused as invalid" grep -q '^ERR usage invalid service name "q"}"' "$T_DIR/evil.out"
t_check "a name with a backslash is refused as invalid" grep -q '^ERR usage invalid service name "a\\b"' "$T_DIR/evil.out"
t_check "a valid unknown name is still discovered" bash -c "sed -n 4p '$T_DIR/evil.out' | grep -qv 'invalid'"
curl -sf "http://127.0.0.1:$MPORT/metrics" >"$T_DIR/metrics.txt"
t_check "no forged line in /metrics" bash -c "! grep -q '^resolver_tickets_leaked_total 999999' '$T_DIR/metrics.txt'"
t_check "no invalid service in /metrics" bash -c "! grep -q 'service=\"q' '$T_DIR/metrics.txt'"
if command -v promtool >/dev/null; then
    t_check "promtool check metrics accepts /metrics" promtool check metrics <"$T_DIR/metrics.txt"
else
    t_ok "# skipped promtool (install the Debian package prometheus)"
fi

# ---- item 13: only a ticket's owner (or an admin) may report it done ----
ticket_of() { "$PY" -c 'import json,sys; print(json.load(sys.stdin)["ticket"])'; }
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    chmod 755 "$T_DIR" # the other uid reaches the socket (mode 0666)
    as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
    t_check "uid nobody, two connections: a connection's ticket is its own, a detached one the uid's" \
        as_nobody "$PY" "$HERE/tickets.py" "$SOCK" svc owners
    T=$(ctl --json pick svc | ticket_of)
    r=$(as_nobody "$PY" "$HERE/tickets.py" "$SOCK" "$T" done)
    t_check "another uid may not report root's detached ticket done" test "${r%% *}" = ERR -a "$(echo "$r" | cut -d' ' -f2)" = denied
    t_check "the refusal says why" bash -c "echo '$r' | grep -q 'only its owner or an admin'"
    t_check "its owner may" ctl done "$T"
    mkdir -m 1777 "$T_DIR/pub"
    t_spawn holder setpriv --reuid=65534 --regid=65534 --clear-groups "$PY" "$HERE/tickets.py" "$SOCK" svc hold "$T_DIR/pub/held"
    t_wait_until 5 test -s "$T_DIR/pub/held" || true
    t_check "an admin (root) may report another connection's ticket done" ctl done "$(cat "$T_DIR/pub/held")"
    t_kill holder || true
else
    t_ok "# skipped the other-uid checks (not root or no setpriv)"
fi

# ---- item 12: detached tickets are bounded per uid ----
t_eq "20 detached picks of one uid, then ERR limit" "ok 20 limit 5 other 0" \
    "$("$PY" "$HERE/tickets.py" "$SOCK" svc detach 25)"
t_eq "the bound is per uid, not per connection" "ok 0 limit 1 other 0" \
    "$("$PY" "$HERE/tickets.py" "$SOCK" svc detach 1)"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    t_eq "another uid has its own bound" "ok 1 limit 0 other 0" \
        "$(as_nobody "$PY" "$HERE/tickets.py" "$SOCK" svc detach 1)"
fi
t_check "the limit is in the reply" bash -c "printf 'PICK svc detach=1\n' | '$PY' '$HERE/sockclient.py' '$SOCK' | grep -q 'socket.max_detached_tickets is 20'"

# Many tickets, then SIGTERM: freed in one pass, the daemon exits promptly.
MANY=200000
cat >"$T_DIR/many.json" <<JSON
{ "socket": { "mode": "0666", "max_detached_tickets": $MANY },
  "defaults": { "drain_timeout_ms": 100, "ticket_timeout_ms": 600000 },
  "services": [ { "name": "svc" } ] }
JSON
t_spawn many "$RESOLVERD" -c "$T_DIR/many.json" --etcd "$ETCD_ENDPOINT" --socket "$T_DIR/many.sock"
t_wait_until 10 test -S "$T_DIR/many.sock" || true
t_wait_until 5 bash -c "\"$RESOLVERCTL\" -s \"$T_DIR/many.sock\" instances --json svc | grep -q READY" || true
t_eq "$MANY detached tickets taken" "ok $MANY limit 0 other 0" \
    "$("$PY" "$HERE/tickets.py" "$T_DIR/many.sock" svc detach $MANY)"
start=$(_t_now_ms)
rc=0; T_KILL_TIMEOUT=120 t_kill many TERM || rc=$?
took=$(($(_t_now_ms) - start))
echo "# SIGTERM with $MANY tickets: exited in $took ms"
t_eq "it exits 0" 0 "$rc"
t_check "within 3 s (freeing tickets is linear)" test "$took" -lt 3000

# ---- item 19: the socket path is locked; nothing but our socket is deleted ----
rd_on() { # NAME PATH: a resolverd serving PATH
    t_spawn "$1" "$RESOLVERD" --etcd "$ETCD_ENDPOINT" --socket "$2"
}
echo precious >"$T_DIR/file.sock"
rc=0; timeout 10 "$RESOLVERD" --etcd "$ETCD_ENDPOINT" --socket "$T_DIR/file.sock" 2>"$T_DIR/file.err" || rc=$?
t_check "a regular file at the socket path makes resolverd exit non-zero" test "$rc" -ne 0
t_check "the refusal names the path and says why" grep -q "$T_DIR/file.sock exists and is not a socket" "$T_DIR/file.err"
t_eq "the regular file is left alone" precious "$(cat "$T_DIR/file.sock")"

# A daemon that holds PATH.lock but has not bound PATH yet (the moment two
# daemons race for it): a second one must keep off the path.
t_spawn locker "$PY" -c 'import fcntl,sys,time
f=open(sys.argv[1], "w"); fcntl.flock(f, fcntl.LOCK_EX); print("locked", flush=True); time.sleep(120)' "$T_DIR/locked.sock.lock"
t_wait_until 5 grep -q locked "$T_DIR/locker.log" || true
rc=0; timeout 10 "$RESOLVERD" --etcd "$ETCD_ENDPOINT" --socket "$T_DIR/locked.sock" 2>"$T_DIR/locked.err" || rc=$?
t_check "PATH.lock held by another: resolverd exits non-zero" test "$rc" -ne 0 -a "$rc" -ne 124
t_check "it says another resolverd holds the lock" grep -q "another resolverd holds $T_DIR/locked.sock.lock" "$T_DIR/locked.err"
t_check "and it did not touch the path" test ! -e "$T_DIR/locked.sock"
t_kill locker KILL || true

# Two daemons started at the same moment, a few times: exactly one serves,
# the other exits non-zero saying why, and the first keeps serving.
race_ok=0
one_gone() { ! t_alive ra || ! t_alive rb; }
for round in 1 2 3 4 5; do
    R=$T_DIR/race$round.sock
    rd_on ra "$R"
    rd_on rb "$R"
    t_wait_until 3 one_gone || true
    sleep 0.3
    alive=0 winner= loser=
    for n in ra rb; do
        if t_alive "$n"; then alive=$((alive + 1)); winner=$n; else loser=$n; fi
    done
    if [[ $alive == 1 ]] && grep -q 'another resolverd' "$T_DIR/$loser.log" &&
        "$RESOLVERCTL" -s "$R" status >/dev/null 2>&1; then
        race_ok=$((race_ok + 1))
    else
        echo "# round $round: $alive daemons alive on one socket"
    fi
    rc=0; t_kill ra || rc=$?
    rc=0; t_kill rb || rc=$?
    rm -f "$T_DIR/ra.log" "$T_DIR/rb.log"
done
t_eq "two daemons started together: one serves, one exits saying why (5 rounds)" 5 "$race_ok"

# Started later, the second one exits non-zero; the first keeps serving.
rd_on first "$T_DIR/two.sock"
t_wait_until 10 test -S "$T_DIR/two.sock" || true
rc=0; timeout 10 "$RESOLVERD" --etcd "$ETCD_ENDPOINT" --socket "$T_DIR/two.sock" 2>"$T_DIR/second.err" || rc=$?
t_check "a second resolverd on a served path exits non-zero" test "$rc" -ne 0
t_check "the second says another resolverd serves the path" grep -q "another resolverd" "$T_DIR/second.err"
t_check "the first keeps serving after the second exits" "$RESOLVERCTL" -s "$T_DIR/two.sock" status
# Its socket replaced behind its back, the first must not unlink the new one.
rm -f "$T_DIR/two.sock"
t_spawn squatter "$PY" -c 'import socket,sys,time
s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); time.sleep(120)' "$T_DIR/two.sock"
t_wait_until 5 test -S "$T_DIR/two.sock" || true
rc=0; t_kill first || rc=$?
t_eq "the first exits 0" 0 "$rc"
t_check "exiting, it left the socket it did not create" test -S "$T_DIR/two.sock"
t_kill squatter KILL || true

t_done
