#!/usr/bin/env bash
# The daemon as operators and hostile clients meet it: every CLI verb,
# --help per verb, reload (file edit + SIGHUP and `resolverctl reload`)
# keeping unchanged subchannels, a bad reload kept out, admin verbs refused
# to another uid, systemd notify, and abusive clients beside a good one.
set -u
. "$(dirname "$0")/lib.sh"
t_init daemon
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
t_daemon_env
t_etcd_start e1 || t_done

declare -a P=()
for i in 1 2; do
    port=$(t_free_port)
    P+=("$port")
    t_spawn "b$i" "$H2SERVER" --name "b$i" "$port"
done
for port in "${P[@]}"; do t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" || true; done
t_etcdctl put keep/1 "127.0.0.1:${P[0]}" >/dev/null
t_etcdctl put gone/1 "127.0.0.1:${P[1]}" >/dev/null
t_etcdctl put added/1 "127.0.0.1:${P[1]}" >/dev/null

write_config() { # SERVICES_JSON
    printf '{"socket": {"mode": "0666"}, "defaults": {"drain_timeout_ms": 500}, "services": %s}\n' "$1" >"$T_DIR/rd.json"
}
write_config '[{"name": "keep"}, {"name": "gone"}]'
t_spawn notify "$PY" "$HERE/notify_listener.py" "$T_DIR/notify.sock" "$T_DIR/notify.log"
t_wait_until 5 test -S "$T_DIR/notify.sock"
NOTIFY_SOCKET=$T_DIR/notify.sock t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK"
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
t_wait_for "systemd is told READY=1" 5 grep -q 'READY=1' "$T_DIR/notify.log"
keep_ready() { ctl instances --json keep | grep -q '"state": "READY"'; }
t_wait_for "keep is READY" 5 keep_ready

# Every read verb, human and --json.
for verb in services status metrics; do
    t_check "resolverctl $verb" ctl "$verb"
done
t_check "resolverctl --json services is JSON" bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" --json services | $PY -c 'import json,sys; json.load(sys.stdin)'"
t_check "resolverctl --json status is JSON" bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" --json status | $PY -c 'import json,sys; json.load(sys.stdin)'"
t_check "metrics expose picks" bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" metrics | grep -q '^resolver_picks_total'"
for verb in pick done services instances status watch drain undrain metrics reload; do
    t_check "resolverctl $verb --help" ctl "$verb" --help
done
rc=0; ctl pick >/dev/null 2>&1 || rc=$?
t_eq "a verb without its argument exits 1" 1 "$rc"
T=$(ctl --json pick --hold keep | sed -n 's/.*"ticket": \([0-9]*\).*/\1/p')
t_check "done TICKET --latency-ms" ctl done "$T" --latency-ms 12
rc=0; ctl done "$T" 2>/dev/null || rc=$?
t_eq "done of a released ticket exits 3" 3 "$rc"
rc=0; ctl done notanumber 2>/dev/null || rc=$?
t_eq "done of a non-number exits 1" 1 "$rc"

# watch: a line per change until interrupted.
t_spawn watcher "$RESOLVERCTL" -s "$SOCK" watch keep
sleep 0.3
t_etcdctl put keep/2 "127.0.0.1:${P[1]}" >/dev/null
t_wait_for "watch prints the added instance" 3 grep -q "keep .*added .*127.0.0.1:${P[1]}" "$T_DIR/watcher.log"
t_etcdctl del keep/2 >/dev/null
t_wait_for "watch prints the removal" 3 grep -q "keep .*removed" "$T_DIR/watcher.log"
t_kill watcher INT || true

# Reload: services added and removed; the unchanged one keeps its connection.
attempts() { ctl instances --json keep | sed -n 's/.*"connect_attempts": \([0-9]*\).*/\1/p' | head -1; }
before=$(attempts)
write_config '[{"name": "keep"}, {"name": "added", "policy": "pick_first"}]'
t_signal resolverd HUP
t_wait_for "SIGHUP adds a service" 3 bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" services | grep -q '^added '"
t_check "SIGHUP removes a service" bash -c "! \"$RESOLVERCTL\" -s \"$SOCK\" services | grep -q '^gone '"
t_eq "the unchanged service kept its connection" "$before" "$(attempts)"
t_wait_for "systemd is told RELOADING=1" 3 grep -q 'RELOADING=1' "$T_DIR/notify.log"
write_config '[{"name": "keep"}, {"name": "added", "policy": "random"}]'
t_check "resolverctl reload" ctl reload
t_check "reload changed the policy" bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" services | grep -q '^added .*random'"
t_eq "still the same connection after a second reload" "$before" "$(attempts)"
printf '{"services": [{"name": "keep", "policy": "fastest"}]}\n' >"$T_DIR/rd.json"
rc=0; ctl reload 2>"$T_DIR/reload.err" || rc=$?
t_check "a bad config is refused by reload" test "$rc" -ne 0
t_check "the refusal names the bad key" grep -q 'policy' "$T_DIR/reload.err"
t_check "the daemon still serves after a bad reload" ctl pick keep

# Admin verbs from another uid are refused; read verbs are not.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    chmod 755 "$T_DIR" # let the other uid reach the socket (mode 0666)
    as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$RESOLVERCTL" -s "$SOCK" "$@"; }
    t_check "another uid may pick" as_nobody pick keep
    rc=0; as_nobody drain keep "127.0.0.1:${P[0]}" 2>"$T_DIR/denied.err" || rc=$?
    t_eq "another uid may not drain (exit 4)" 4 "$rc"
    t_check "the refusal says why" grep -q 'admin verb' "$T_DIR/denied.err"
    rc=0; as_nobody reload 2>/dev/null || rc=$?
    t_eq "another uid may not reload" 4 "$rc"
else
    t_ok "# skipped the other-uid checks (not root or no setpriv)"
fi

# Hostile clients beside a good one.
t_check "abusive clients do not disturb a good one" "$PY" "$HERE/abuse.py" "$SOCK" keep
t_check "the daemon still answers" ctl status

# Stop: STOPPING=1 for systemd, exit 0.
rc=0; t_kill resolverd TERM || rc=$?
t_eq "SIGTERM exits 0" 0 "$rc"
t_check "systemd is told STOPPING=1" grep -q 'STOPPING=1' "$T_DIR/notify.log"
t_done
