#!/usr/bin/env bash
# What a reload says (issue 12, Logs): one line per change (services added
# and removed, per-service keys, etcd endpoints), a warning for each key only
# a restart applies (socket.path, metrics.listen, etcd.*); a failed reload
# keeps the running configuration, says why in the log, in `status` and in
# systemd's STATUS=.
set -u
. "$(dirname "$0")/lib.sh"
t_init reload_log
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
t_daemon_env

t_etcd_start e1 || t_done
LOG=$T_DIR/resolverd.log
has_line() { grep -qE -- "$1" "$LOG"; }
count() { grep -cE -- "$1" "$LOG" || true; }
MP=$(t_free_port)
DEAD=http://127.0.0.1:$(t_free_port)

# write_config SOCKET METRICS ENDPOINTS SERVICES
write_config() {
    printf '{"etcd": {"endpoints": %s}, "socket": {"path": "%s"}, "metrics": {"listen": "%s"},
  "services": %s}\n' "$3" "$1" "$2" "$4" >"$T_DIR/rd.json"
}
write_config "$SOCK" "" "[\"$ETCD_ENDPOINT\"]" '[{"name": "a"}, {"name": "b"}]'
t_spawn notify "$PY" "$HERE/notify_listener.py" "$T_DIR/notify.sock" "$T_DIR/notify.log"
t_wait_until 5 test -S "$T_DIR/notify.sock"
NOTIFY_SOCKET=$T_DIR/notify.sock t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json"
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
t_wait_for "systemd is told READY=1" 5 grep -q 'READY=1' "$T_DIR/notify.log"

# reload_and_wait: SIGHUP, then wait (5 s at most) for one more
# "configuration reloaded" or "reload failed" line.
reloads() { count 'configuration reloaded|reload failed'; }
reload_and_wait() {
    local before
    before=$(reloads)
    t_signal resolverd HUP
    local deadline=$((SECONDS + 5))
    while (($(reloads) <= before && SECONDS < deadline)); do sleep 0.05; done
}

# ---- every change, one line each ----
write_config "$T_DIR/other.sock" "127.0.0.1:$MP" "[\"$ETCD_ENDPOINT\", \"$DEAD\"]" \
    '[{"name": "a", "policy": "random", "backoff": {"initial_ms": 50}}, {"name": "c"}]'
reload_and_wait
t_check "a removed service" has_line '^.{24} info  reload: service b removed$'
t_check "an added service, with its prefix" has_line '^.{24} info  reload: service c added \(prefix c/\)$'
t_check "a per-service key, old and new value" has_line \
    '^.{24} info  reload: services\[a\]\.policy: "round_robin" -> "random"$'
t_check "a nested per-service key" has_line \
    '^.{24} info  reload: services\[a\]\.backoff\.initial_ms: 1000 -> 50$'
t_check "socket.path: a warning that it needs a restart" has_line \
    "^.{24} warn  reload: socket\.path: \"$SOCK\" -> \"$T_DIR/other.sock\" needs a restart; \"$SOCK\" stays in effect until then$"
t_check "metrics.listen: needs a restart" has_line \
    "^.{24} warn  reload: metrics\.listen: \"\" -> \"127\.0\.0\.1:$MP\" needs a restart"
t_check "etcd.endpoints changed: needs a restart" has_line \
    "^.{24} warn  reload: etcd\.endpoints: \[\"$ETCD_ENDPOINT\"\] -> \[\"$ETCD_ENDPOINT\",\"$DEAD\"\] needs a restart"
t_check "the summary" has_line '^.{24} info  configuration reloaded: 2 services configured$'
t_check "still serving on the old socket" ctl ping
t_check "the old socket path is still the one served" test ! -e "$T_DIR/other.sock"

# ---- nothing changed ----
reload_and_wait
t_check "a reload without change says so" has_line '^.{24} info  configuration reloaded: no change$'

# ---- a failed reload ----
write_config "$T_DIR/other.sock" "127.0.0.1:$MP" "[\"$ETCD_ENDPOINT\", \"$DEAD\"]" \
    '[{"name": "a", "polcy": "random"}]'
reload_and_wait
t_check "a failed reload says why in the log" has_line \
    '^.{24} error reload failed, keeping the running configuration: .*polcy'
t_check "status --json: last_reload.ok false, with the reason" "$PY" -c "
import json, subprocess, sys
j = json.loads(subprocess.check_output([sys.argv[1], '-s', sys.argv[2], '--json', 'status']))
r = j['last_reload']
assert r['ok'] is False and 'polcy' in r['error'] and r['time'], r" "$RESOLVERCTL" "$SOCK"
t_check "status: the failed reload is shown" bash -c \
    "\"$RESOLVERCTL\" -s \"$SOCK\" status | grep -E '^last reload: +FAILED' | grep -q polcy"
t_wait_for "systemd's STATUS= says the reload failed, and why" 3 bash -c \
    "tail -n 1 '$T_DIR/notify.log' | grep -q 'STATUS=serving; reload failed: .*polcy'"
t_check "the running configuration is kept (c still served)" bash -c \
    "\"$RESOLVERCTL\" -s \"$SOCK\" services | grep -q '^c '"
t_check "... and a keeps its new policy" bash -c \
    "\"$RESOLVERCTL\" -s \"$SOCK\" services | grep -qE '^a .*random'"

# ---- fixed again ----
write_config "$T_DIR/other.sock" "127.0.0.1:$MP" "[\"$ETCD_ENDPOINT\", \"$DEAD\"]" \
    '[{"name": "a", "policy": "random", "backoff": {"initial_ms": 50}}, {"name": "c"}]'
reload_and_wait
t_wait_for "systemd's STATUS= is back to serving" 3 bash -c \
    "tail -n 1 '$T_DIR/notify.log' | grep -qx 'READY=1 STATUS=serving'"
t_check "status: last reload ok" bash -c \
    "\"$RESOLVERCTL\" -s \"$SOCK\" status | grep -qE '^last reload: +ok'"
t_done
