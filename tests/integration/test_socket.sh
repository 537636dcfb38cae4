#!/usr/bin/env bash
# The socket server against hostile names and clients: service names that
# try to forge /metrics lines (issue 11 item 21); the socket path guarded by
# a lock, never deleting what is not ours (item 19); admin_group checked
# against the peer's own groups (item 23); tickets bound to their
# owner (item 13) and detached ones bounded per uid, freed in one pass at
# exit (item 12); a parked first pick woken by the state change and counted
# once (item 22); a daemon out of descriptors pauses its listeners instead
# of spinning, and recovers (item 20).
set -u
. "$(dirname "$0")/lib.sh"
t_init socket
t_require etcd etcdctl curl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
t_daemon_env
t_etcd_start e1 || t_done
raw() { "$PY" "$HERE/sockclient.py" "$SOCK"; } # request lines on stdin

BPORT=$(t_free_port)
t_spawn b1 "$H2SERVER" --name b1 "$BPORT"
t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$BPORT" || true
t_etcdctl put svc/1 "127.0.0.1:$BPORT" >/dev/null
MPORT=$(t_free_port)
# socket.admin_group: a group nobody (uid 65534) is not listed in.
ADMIN_GROUP=adm
ADMIN_GID=$(getent group "$ADMIN_GROUP" | cut -d: -f3)
[[ -n $ADMIN_GID ]] || { ADMIN_GROUP=; }
cat >"$T_DIR/rd.json" <<JSON
{ "socket": { "mode": "0666", "max_detached_tickets": 20, "admin_group": "$ADMIN_GROUP" },
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
    T=$(ctl --json pick --hold svc | ticket_of)
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

# ---- item 23: admin_group by the peer's real groups, no NSS per accept ----
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && [[ -n $ADMIN_GID ]]; then
    drain_as() { # SETPRIV_GROUP_ARGS...: drain then undrain svc's instance
        setpriv --reuid=65534 --regid=65534 "$@" "$RESOLVERCTL" -s "$SOCK" drain svc "127.0.0.1:$BPORT" &&
            setpriv --reuid=65534 --regid=65534 "$@" "$RESOLVERCTL" -s "$SOCK" undrain svc "127.0.0.1:$BPORT"
    }
    t_check "a peer with $ADMIN_GROUP among its supplementary groups may drain" drain_as --groups="$ADMIN_GID"
    rc=0; drain_as --clear-groups 2>"$T_DIR/nonmember.err" || rc=$?
    t_eq "a peer without it may not (exit 4)" 4 "$rc"
    t_check "a peer whose primary group is $ADMIN_GROUP may drain" \
        bash -c "setpriv --reuid=65534 --regid=$ADMIN_GID --clear-groups '$RESOLVERCTL' -s '$SOCK' drain svc 127.0.0.1:$BPORT && '$RESOLVERCTL' -s '$SOCK' undrain svc 127.0.0.1:$BPORT"
    # The group is resolved once, at start and reload: a reload naming a
    # group that does not exist is refused and the old one stays.
    sed "s/\"admin_group\": \"$ADMIN_GROUP\"/\"admin_group\": \"no-such-group-here\"/" "$T_DIR/rd.json" >"$T_DIR/rd.json.new"
    cp "$T_DIR/rd.json" "$T_DIR/rd.json.good"
    mv "$T_DIR/rd.json.new" "$T_DIR/rd.json"
    rc=0; ctl reload 2>"$T_DIR/reload.err" || rc=$?
    t_check "a reload with an unknown admin_group is refused" test "$rc" -ne 0
    t_check "the refusal names the group" grep -q 'no-such-group-here' "$T_DIR/reload.err"
    mv "$T_DIR/rd.json.good" "$T_DIR/rd.json"
    t_check "the old admin_group stays in force" drain_as --groups="$ADMIN_GID"
else
    t_ok "# skipped the admin_group checks (not root, no setpriv, or no group $ADMIN_GROUP)"
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

# ---- item 22: a parked first pick is woken by the change, counted once ----
PROXY=$HERE/faultproxy.py
PX=$(t_free_port)
t_spawn proxy "$PY" "$PROXY" --listen "127.0.0.1:$PX" --target "127.0.0.1:$BPORT" \
    --control "$T_DIR/proxy.sock" --quiet
proxy() { "$PY" "$PROXY" --control "$T_DIR/proxy.sock" --send "$1" >/dev/null; }
t_wait_until 10 proxy status || true
t_check "faultproxy freezes (connections stay CONNECTING)" proxy freeze
svc_failures() { # SERVICE: its pick_failures
    ctl --json services | "$PY" -c 'import json,sys
print([s["pick_failures"] for s in json.load(sys.stdin) if s["name"] == sys.argv[1]][0])' "$1"
}
t_etcdctl put late/1 "127.0.0.1:$PX" >/dev/null
t_etcdctl put never/1 "127.0.0.1:$PX" >/dev/null
start=$(_t_now_ms)
echo "PICK late" | raw >"$T_DIR/late.out" &
late_pid=$!
sleep 0.8
t_check "faultproxy passes again" proxy pass
wait "$late_pid" || true
took=$(($(_t_now_ms) - start))
echo "# the parked pick was answered after $took ms"
t_check "the parked pick succeeds once the backend is reachable" grep -q '^OK {"address":"127.0.0.1:'"$PX"'"' "$T_DIR/late.out"
t_check "it is answered before the 2 s deadline" test "$took" -lt 1900
t_eq "a parked pick that succeeds adds 0 to pick_failures" 0 "$(svc_failures late)"
proxy freeze
proxy reset
rc=0; echo "PICK never" | raw >"$T_DIR/never.out" || rc=$?
t_check "a parked pick that never finds a READY instance fails" grep -q '^ERR none_ready' "$T_DIR/never.out"
t_eq "and adds exactly 1 to pick_failures" 1 "$(svc_failures never)"
t_kill proxy || true

# ---- item 20: out of descriptors, the listeners pause instead of spinning ----
HPORT=$(t_free_port)
cat >"$T_DIR/fd.json" <<JSON
{ "socket": { "mode": "0666" }, "metrics": { "listen": "127.0.0.1:$HPORT" } }
JSON
t_spawn lowfd prlimit --nofile=48 "$RESOLVERD" -c "$T_DIR/fd.json" --etcd "$ETCD_ENDPOINT" --socket "$T_DIR/fd.sock"
t_wait_until 10 test -S "$T_DIR/fd.sock" || true
# Connections until the daemon cannot accept: the rest wait in the backlog,
# and the listener stays readable.
t_spawn hog "$PY" -c 'import os,socket,sys,time
conns=[]
for i in range(120):
    s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); conns.append(s)
m=socket.create_connection(("127.0.0.1", int(sys.argv[2])))
print("opened", len(conns), flush=True)
while not os.path.exists(sys.argv[3]): time.sleep(0.05)
for s in conns: s.close()
m.close()' "$T_DIR/fd.sock" "$HPORT" "$T_DIR/hog.stop"
t_wait_until 10 grep -q opened "$T_DIR/hog.log" || true
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$(t_pid lowfd)/stat"; }
t_wait_until 5 grep -q 'cannot accept a connection' "$T_DIR/lowfd.log" || true
before=$(cpu_ticks)
sleep 2
used=$(($(cpu_ticks) - before))
hz=$(getconf CLK_TCK)
echo "# out of descriptors: the daemon used $used ticks (of $((2 * hz))) in 2 s"
t_check "EMFILE: the daemon uses under 10 % of a CPU" test "$used" -lt $((2 * hz / 10))
t_check "EMFILE is warned about" grep -q 'socket: cannot accept a connection: Too many open files' "$T_DIR/lowfd.log"
t_check "the warning is rate-limited" test "$(grep -c 'cannot accept a connection' "$T_DIR/lowfd.log")" -le 4
touch "$T_DIR/hog.stop"
t_wait_until 10 bash -c "! kill -0 $(t_pid hog) 2>/dev/null" || true
t_wait_for "once clients close, the daemon serves again" 5 "$RESOLVERCTL" -s "$T_DIR/fd.sock" status
curl -sf "http://127.0.0.1:$HPORT/metrics" >"$T_DIR/fd-metrics.txt" || true
t_check "pauses are counted (socket)" grep -Eq '^resolver_accept_backoffs_total\{listener="socket"\} [1-9]' "$T_DIR/fd-metrics.txt"
t_check "pauses are counted (metrics port)" grep -Eq '^resolver_accept_backoffs_total\{listener="metrics"\} [1-9]' "$T_DIR/fd-metrics.txt"
t_kill hog || true
t_kill lowfd || true

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
