#!/usr/bin/env bash
# resolverctl as operators and scripts meet it (issue 12, CLI): a pick that
# leaves no ticket behind (and a SIGTERM right after it that does not wait
# for a drain), --hold, why the daemon cannot be reached, aligned tables,
# short floats in JSON, status, ping, the state of a service with no
# instance, timestamped watch lines, $RESOLVER_SOCKET.
set -u
. "$(dirname "$0")/lib.sh"
t_init cli
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
. "$(dirname "$0")/etcd_common.sh"
t_etcd_start e1 || t_done
SOCK=$T_DIR/rd.sock

backend_start b1 || t_done
B1=127.0.0.1:$BACKEND_PORT
LONG=a.service.name.much.longer.than.twenty.eight.characters
V6='[2001:db8:1234:5678:9abc:def0:1234:5678]:65535'
t_etcdctl put svc/1 "$B1" >/dev/null
t_etcdctl put "$LONG/1" "$B1" >/dev/null
t_etcdctl put "$LONG/2" "$V6" >/dev/null
# The default drain_timeout_ms (30 s): a ticket left behind would hold the
# graceful stop that long.
cat >"$T_DIR/rd.json" <<JSON
{ "defaults": { "connect_timeout_ms": 1000, "keepalive_time_ms": 300 },
  "services": [ { "name": "svc" }, { "name": "$LONG" }, { "name": "empty" } ] }
JSON
start_daemon() {
    t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK"
    t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
    t_wait_for "svc is READY" 10 bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" --json instances svc | grep -q READY"
}
start_daemon

# ---- pick releases at once; --hold keeps the ticket ----
t_eq "pick prints the address" "$B1" "$(ctl pick svc)"
t_eq "after a CLI pick no ticket is outstanding" 0 "$(status_field tickets_outstanding)"
out=$(ctl pick --hold svc)
read -r addr ticket <<<"$out"
t_eq "pick --hold prints ADDRESS TICKET (address)" "$B1" "$addr"
t_check "pick --hold prints ADDRESS TICKET (ticket)" test -n "$ticket" -a "$ticket" -gt 0
t_eq "a held pick stays outstanding" 1 "$(status_field tickets_outstanding)"
t_check "done releases the held ticket" ctl done "$ticket"
t_eq "no ticket outstanding after done" 0 "$(status_field tickets_outstanding)"
j=$(ctl --json pick --hold svc)
t_check "pick --hold --json is {address, ticket}" "$PY" -c "
import json, sys
j = json.loads(sys.argv[1]); assert set(j) == {'address', 'ticket'}, j
assert j['address'] == '$B1'" "$j"
ctl done "$("$PY" -c "import json,sys; print(json.loads(sys.argv[1])['ticket'])" "$j")" >/dev/null
t_check "pick --json without --hold has no ticket" "$PY" -c "
import json, sys; j = json.loads(sys.argv[1]); assert j == {'address': '$B1'}, j" "$(ctl --json pick svc)"

# ---- ping, RESOLVER_SOCKET ----
t_check "ping answers" bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" ping | grep -q 'answers'"
t_check "RESOLVER_SOCKET names the socket" env RESOLVER_SOCKET="$SOCK" "$RESOLVERCTL" ping

# ---- tables stay aligned; a service with no instance says so ----
# aligned ALIGN: stdin is a table whose header names the columns; every
# cell of a left-aligned column (l) starts where its header starts, every
# cell of a right-aligned one (r) ends where its header ends.
aligned() {
    "$PY" -c '
import re, sys
align = sys.argv[1]
lines = sys.stdin.read().splitlines()
head = lines[0]
cols = [(m.start(), m.end()) for m in re.finditer(r"\S+", head)]
assert len(cols) == len(align), (cols, align)
for line in lines[1:]:
    if line.startswith("("):
        continue
    for (s, e), a in zip(cols, align):
        if a == "l":
            assert line[s:s + 1].strip() and (s == 0 or line[s - 1] == " "), (line, s)
        else:
            assert line[e - 1:e].strip() and (len(line) == e or line[e] == " "), (line, e)
' "$1"
}
t_wait_for "the IPv6 instance is listed" 5 bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" instances $LONG | grep -qF '$V6'"
ctl services >"$T_DIR/services.txt"
t_check "services: columns aligned with a long service name" aligned lllrrrrrr <"$T_DIR/services.txt"
ctl instances "$LONG" >"$T_DIR/instances.txt"
t_check "instances: columns aligned with an IPv6 address" aligned lllrrrrrl <"$T_DIR/instances.txt"
t_check "a configured service with no instance shows 'no instances'" \
    grep -qE '^empty +round_robin +no instances ' "$T_DIR/services.txt"
t_check "... and not TRANSIENT_FAILURE" bash -c "! grep -E '^empty ' '$T_DIR/services.txt' | grep -q TRANSIENT_FAILURE"

# ---- JSON floats are short decimals ----
t_wait_for "an RTT was measured" 5 bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" --json instances svc | grep -q '\"rtt_ms\": [0-9]'"
{ ctl --json instances svc; ctl --json status; ctl --json instances "$LONG"; } >"$T_DIR/floats.json"
t_check "no float in --json output has a 17-digit tail" \
    bash -c "! grep -E '[0-9]\.[0-9]*(0000000|9999999)[0-9]' '$T_DIR/floats.json'"

# ---- status: version, pid, config, last reload ----
ctl status >"$T_DIR/status.txt"
pid=$(t_pid resolverd)
t_check "status shows the version and pid" grep -qE "^resolverd: +[0-9][^,]*, pid $pid\$" "$T_DIR/status.txt"
t_check "status shows the config path" grep -qE "^config: +$T_DIR/rd.json\$" "$T_DIR/status.txt"
t_check "status: no reload yet" grep -qE '^last reload: +never' "$T_DIR/status.txt"
t_check "status: plural of 0 failovers" grep -q '(1 configured, 0 failovers, 0 cluster changes)' "$T_DIR/status.txt"
t_signal resolverd HUP
t_wait_for "status: the reload is ok" 5 bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" status | grep -qE '^last reload: +ok, '"
cp "$T_DIR/rd.json" "$T_DIR/rd.good"
echo '{"defaults": {"keepalive_tme_ms": 1}}' >"$T_DIR/rd.json"
rc=0; ctl reload 2>/dev/null || rc=$?
t_eq "a bad reload fails" 4 "$rc"
t_check "status: the failed reload, its reason" bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" status | grep -E '^last reload: +FAILED' | grep -q keepalive_tme_ms"
t_check "status --json: last_reload.ok false" "$PY" -c "
import json, sys; j = json.loads(sys.argv[1])
assert j['last_reload']['ok'] is False and 'keepalive_tme_ms' in j['last_reload']['error'], j
assert j['pid'] == $pid and j['version'] and j['config_file'] == '$T_DIR/rd.json', j" "$(ctl --json status)"
cp "$T_DIR/rd.good" "$T_DIR/rd.json"

# ---- watch: timestamps; an unknown service is discovered ----
t_spawn watch "$RESOLVERCTL" -s "$SOCK" watch newsvc
t_wait_for "watch of an unknown service says it is being discovered" 5 \
    grep -q 'newsvc is not known yet.*discovering' "$T_DIR/watch.log"
t_etcdctl put newsvc/1 "$B1" >/dev/null
t_wait_for "watch prints the discovered instance with a timestamp" 5 \
    grep -qE "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}  newsvc +added +$B1 " "$T_DIR/watch.log"
t_kill watch >/dev/null 2>&1
t_eq "the watch's discovery pick left no ticket" 0 "$(status_field tickets_outstanding)"

# ---- SIGTERM right after a CLI pick: no drain to wait for ----
ctl pick svc >/dev/null
t_eq "no ticket outstanding before SIGTERM" 0 "$(status_field tickets_outstanding)"
t0=$(date +%s%N)
T_KILL_TIMEOUT=5 t_kill resolverd TERM
ms=$((($(date +%s%N) - t0) / 1000000))
echo "# SIGTERM right after a CLI pick: resolverd exited in $ms ms"
t_check "SIGTERM right after a CLI pick exits in under 1 s ($ms ms)" test "$ms" -lt 1000

# ---- plurals: one failover, one service ----
DEAD=$(t_free_port)
printf '{ "services": [ { "name": "svc" } ] }\n' >"$T_DIR/one.json"
t_spawn fo "$RESOLVERD" -c "$T_DIR/one.json" --etcd "http://127.0.0.1:$DEAD,$ETCD_ENDPOINT" --socket "$T_DIR/fo.sock"
t_wait_for "a daemon whose first etcd endpoint is dead fails over" 10 bash -c \
    "\"$RESOLVERCTL\" -s '$T_DIR/fo.sock' --json status | grep -q '\"etcd_failovers\": 1,'"
t_check "status: '1 failover', not '1 failovers'" bash -c "\"$RESOLVERCTL\" -s '$T_DIR/fo.sock' status | grep -q '(2 configured, 1 failover, 0 cluster changes)'"
t_check "the start line: '1 service configured'" grep -q '; 1 service configured' "$T_DIR/fo.log"
t_kill fo >/dev/null
t_check "--check-config: '(1 service)'" bash -c "\"$RESOLVERD\" --check-config -c '$T_DIR/one.json' 2>&1 >/dev/null | grep -q 'configuration OK (1 service)'"

# ---- cannot reach resolverd: the reason ----
WRAP=()
unreachable() { # EXPECTED-REGEX CTL-ARGS...: exit 2 and the reason on stderr
    local re=$1 rc=0
    shift
    ${WRAP[@]+"${WRAP[@]}"} "$RESOLVERCTL" "$@" status 2>"$T_DIR/unreach.err" >/dev/null || rc=$?
    [[ $rc == 2 ]] && grep -qE "$re" "$T_DIR/unreach.err" && return 0
    echo "rc=$rc: $(cat "$T_DIR/unreach.err")"
    return 1
}
t_check "no socket file: 'no such file'" unreachable 'cannot reach resolverd at .*: no such file' -s "$SOCK"
t_check "missing directory: named" unreachable "$T_DIR/nodir does not exist" -s "$T_DIR/nodir/rd.sock"
: >"$T_DIR/plain"
t_check "a regular file: 'not a socket'" unreachable 'not a socket' -s "$T_DIR/plain"
"$PY" -c "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$T_DIR/stale.sock"
t_check "a socket nobody listens on: 'refused' and 'stale'" unreachable 'connection refused: a stale socket' -s "$T_DIR/stale.sock"

# Permission denied: a user outside the socket's group.
mkdir -p "$T_DIR/pub"
chmod 0711 "$T_DIR"
chmod 0755 "$T_DIR/pub"
SOCK=$T_DIR/pub/rd.sock
start_daemon
grp=$(stat -c %G "$SOCK")
if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null; then
    WRAP=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    t_check "permission denied names the group to be in" unreachable \
        "permission denied: .*mode 0660; be in group \"$grp\"" -s "$SOCK"
    WRAP=()
else
    t_ok "# skipped: permission denied needs root and setpriv"
fi
t_signal resolverd STOP
t_check "a stopped daemon: 'timeout' with the time waited" unreachable 'timeout: no answer within 300 ms' -s "$SOCK" -t 300
t_signal resolverd CONT
t_done
