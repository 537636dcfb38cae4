#!/usr/bin/env bash
# Compaction while resolverd is cut off from etcd.  resolverd reaches etcd
# only through faultproxy.py; the proxy freezes (sockets open, nothing
# forwarded) or refuses; meanwhile keys are put and deleted and etcd is
# compacted past them.  Once the path is back, resolverd must find its
# revision compacted, range again and reconcile to exactly etcd's view,
# without flapping the instances that did not change (no added/removed
# event for them, their connections kept).  A plain compaction and a plain
# connection reset, without changes missed, must disturb nothing.
set -u
. "$(dirname "$0")/lib.sh"
t_init etcd-compaction
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
[[ -n ${H2SERVER:-} && -x ${H2SERVER:-} ]] || t_require nghttpd

SOCK=$T_DIR/rd.sock
PROXY=$(dirname "$0")/faultproxy.py
CTL_SOCK=$T_DIR/proxy.sock
proxy() { "$PY" "$PROXY" --control "$CTL_SOCK" --send "$1" >/dev/null; }

t_etcd_start e1 || t_done
PPORT=$(t_free_port)
t_spawn proxy "$PY" "$PROXY" --listen "127.0.0.1:$PPORT" --target "${ETCD_ENDPOINT#http://}" \
    --control "$CTL_SOCK"
t_wait_for "faultproxy answers on its control socket" 10 proxy status

declare -a B=()
for i in 1 2 3 4 5; do
    backend_start "backend$i" || t_done
    B+=("127.0.0.1:$BACKEND_PORT")
done
# svc/k1..k3 stay through everything but one phase; k3 goes, k4 comes.
t_etcdctl put svc/k1 "${B[0]}" >/dev/null
t_etcdctl put svc/k2 "${B[1]}" >/dev/null
t_etcdctl put svc/k3 "${B[2]}" >/dev/null

# Self-preservation off: the deletions here remove instances whose servers
# stay up within 10 s of other removals, which it would rightly keep as
# STALE; the views must equal etcd's (STALE is test_self_preservation.sh's).
cat >"$T_DIR/rd.json" <<EOF
{ "etcd": { "endpoints": ["http://127.0.0.1:$PPORT"], "dial_timeout_ms": 1000 },
  "socket": { "path": "$SOCK" },
  "defaults": { "self_preservation_percent": 0 },
  "services": [ { "name": "svc", "prefix": "svc/" } ] }
EOF
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
t_wait_for "resolverd lists etcd's view through the proxy" 10 views_equal svc svc/
all_ready() { [[ $(daemon_states svc | grep -vc ' READY$') == 0 ]]; }
t_wait_for "every instance READY" 10 all_ready

# Every change resolverd reports, as JSON lines.
t_spawn watcher "$RESOLVERCTL" -s "$SOCK" --json watch svc
t_wait_for "the watcher is connected" 5 bash -c "[[ \$('$RESOLVERCTL' -s '$SOCK' --json status | grep -c '\"clients\": [2-9]') == 1 ]]"

# events_since N ADDRESS: watch lines after line N that are an added or
# removed event for ADDRESS.
events_since() {
    tail -n +"$(($1 + 1))" "$T_DIR/watcher.log" | grep -F "\"$2\"" | grep -E '"(added|removed)"' || true
}
reconnects_of() {
    ctl --json instances svc | "$PY" -c "
import json, sys
for i in json.load(sys.stdin):
    if i['address'] == '$1':
        print(i.get('reconnects', 0), i.get('connect_attempts', 0))"
}
log_has() { grep -q -- "$1" "$T_DIR/resolverd.log"; }

# ---- 1. a plain compaction disturbs nothing ----
w0=$(wc -l <"$T_DIR/watcher.log")
r1=$(reconnects_of "${B[0]}")
t_etcdctl put svc/k1 "${B[0]}" >/dev/null # same address again
rev=$(etcd_revision)
t_check "etcdctl compact (no cut-off)" t_etcdctl compact "$rev" --physical
t_etcdctl put svc/other-key "${B[1]}" >/dev/null # a second key for B2
t_wait_for "the second key of an address is counted" 5 bash -c \
    "'$RESOLVERCTL' -s '$SOCK' --json instances svc | tr -d ' \n' | grep -q '\"address\":\"${B[1]}\"[^}]*\"keys\":2'"
t_check "views equal after a plain compaction" views_equal svc svc/
t_check "no resync after a compaction the watch was past" bash -c "! grep -q resyncing '$T_DIR/resolverd.log'"
t_eq "no added/removed event after a plain compaction" "" "$(events_since "$w0" "${B[0]}")$(events_since "$w0" "${B[1]}")"
t_eq "no reconnect of an unchanged instance" "$r1" "$(reconnects_of "${B[0]}")"
t_etcdctl del svc/other-key >/dev/null

# ---- 2. a reset connection resumes at last+1: nothing lost, no resync ----
w0=$(wc -l <"$T_DIR/watcher.log")
t_check "faultproxy reset" proxy reset
t_etcdctl put svc/k9 "${B[4]}" >/dev/null
t_wait_for "a put made right after a reset arrives" 10 views_equal svc svc/
t_etcdctl del svc/k9 >/dev/null
t_wait_for "and its delete" 10 views_equal svc svc/
t_check "still no resync" bash -c "! grep -q resyncing '$T_DIR/resolverd.log'"
t_eq "no flap of the unchanged instances after a reset" "" \
    "$(events_since "$w0" "${B[0]}")$(events_since "$w0" "${B[1]}")$(events_since "$w0" "${B[2]}")"

# cut_off_and_compact MODE: cuts resolverd off (freeze or refuse), waits
# until it noticed, changes etcd behind its back, compacts past the
# changes, restores the path.
cut_off_and_compact() {
    local mode=$1 n_fail
    n_fail=$(count_lines 'retrying in' "$T_DIR/resolverd.log")
    t_check "faultproxy $mode" proxy "$mode"
    # resolverd notices a frozen path by its member probe (every 3 s, a
    # dial_timeout_ms budget) and a refused one at once.
    t_wait_for "resolverd notices the cut ($mode)" 15 \
        bash -c "(( \$(grep -c 'retrying in' '$T_DIR/resolverd.log') > $n_fail ))"
    t_check "picks keep answering while cut off ($mode)" pick_done svc
    t_wait_for "status shows etcd not heard for > 1 s ($mode)" 10 bash -c \
        "'$RESOLVERCTL' -s '$SOCK' --json status | $PY -c 'import json,sys; h=json.load(sys.stdin)[\"etcd_last_heard_s\"]; sys.exit(0 if h is not None and h > 1 else 1)'"
}

# ---- 3. frozen: changes and a compaction behind resolverd's back ----
w0=$(wc -l <"$T_DIR/watcher.log")
r1=$(reconnects_of "${B[0]}")
r2=$(reconnects_of "${B[1]}")
cut_off_and_compact freeze
t_etcdctl del svc/k3 >/dev/null                  # B3 leaves
t_etcdctl put svc/k4 "${B[3]}" >/dev/null        # B4 comes
t_etcdctl put svc/k2 "${B[1]}" >/dev/null        # B2 re-put, same address
t_etcdctl put svc/k5 "${B[4]}" >/dev/null        # B5 comes and goes:
t_etcdctl del svc/k5 >/dev/null                  # never to be seen
rev=$(etcd_revision)
t_check "etcdctl compact $rev while resolverd is frozen out" t_etcdctl compact "$rev" --physical
t_check "faultproxy pass" proxy pass
t_wait_for "resolverd resyncs to etcd's view after the freeze" 20 views_equal svc svc/
t_check "the log says the revision was compacted and resyncs" log_has 'compacted.*resyncing'
t_check "the resync range was at or past the compaction" test "$(service_field svc revision)" -ge "$rev"
t_eq "B1 (unchanged) was not flapped" "" "$(events_since "$w0" "${B[0]}")"
t_eq "B2 (re-put, same address) was not flapped" "" "$(events_since "$w0" "${B[1]}")"
t_eq "B1 kept its connection" "$r1" "$(reconnects_of "${B[0]}")"
t_eq "B2 kept its connection" "$r2" "$(reconnects_of "${B[1]}")"
t_check "B3 (deleted meanwhile) was removed" bash -c "tail -n +$((w0 + 1)) '$T_DIR/watcher.log' | grep -F '\"${B[2]}\"' | grep -q '\"removed\"'"
t_check "B4 (put meanwhile) was added" bash -c "tail -n +$((w0 + 1)) '$T_DIR/watcher.log' | grep -F '\"${B[3]}\"' | grep -q '\"added\"'"
t_eq "B5 (put and deleted meanwhile) never appeared" "" "$(events_since "$w0" "${B[4]}")"
t_wait_for "every instance READY after the resync" 10 all_ready

# ---- 4. refused: the same with connections reset and refused ----
w0=$(wc -l <"$T_DIR/watcher.log")
r1=$(reconnects_of "${B[0]}")
n_resync=$(count_lines 'resyncing' "$T_DIR/resolverd.log")
cut_off_and_compact refuse
t_etcdctl put svc/k3 "${B[2]}" >/dev/null        # B3 back
t_etcdctl del svc/k4 >/dev/null                  # B4 leaves
t_etcdctl put svc/k6 "${B[0]}" >/dev/null        # a second key for B1
rev=$(etcd_revision)
t_check "etcdctl compact $rev while resolverd is refused" t_etcdctl compact "$rev" --physical
t_check "faultproxy pass" proxy pass
t_wait_for "resolverd resyncs to etcd's view after the refusal" 20 views_equal svc svc/
t_check "one more compaction resync in the log" \
    test "$(count_lines 'resyncing' "$T_DIR/resolverd.log")" -gt "$n_resync"
t_eq "B1 (gained a key) was not flapped" "" "$(events_since "$w0" "${B[0]}")"
t_eq "B1 kept its connection" "$r1" "$(reconnects_of "${B[0]}")"
t_check "B1 counts two keys" bash -c \
    "'$RESOLVERCTL' -s '$SOCK' --json instances svc | tr -d ' \n' | grep -q '\"address\":\"${B[0]}\"[^}]*\"keys\":2'"
t_check "B4 was removed" bash -c "tail -n +$((w0 + 1)) '$T_DIR/watcher.log' | grep -F '\"${B[3]}\"' | grep -q '\"removed\"'"
t_check "B3 was added back" bash -c "tail -n +$((w0 + 1)) '$T_DIR/watcher.log' | grep -F '\"${B[2]}\"' | grep -q '\"added\"'"

# ---- 5. after all that, the watch is live: a change arrives at once ----
t_etcdctl del svc/k6 >/dev/null
t_etcdctl put svc/k7 "${B[4]}" >/dev/null
t_wait_for "a change after the resync arrives within 2 s" 2 views_equal svc svc/

# ---- 6. a stalled stream: the watch's connection goes silent while new
# connections (the member probe's) pass: TCP keepalive cannot see it (the
# proxy answers), the probe finds the member fine.  A put must still
# arrive: the stream is found silent (10 s without a message while the
# cluster's revision moved) and the watch resumes.
t_check "faultproxy stall" proxy stall
t_etcdctl put svc/k8 "${B[3]}" >/dev/null        # B4 back
t_wait_for "a put behind a stalled watch stream arrives" 30 views_equal svc svc/
t_check "the log says the stream was silent" log_has 'watch stream silent'
t_check "faultproxy pass" proxy pass

t_check "the daemon is alive" t_alive resolverd
t_check "the proxy log shows its state changes" grep -q 'state freeze -> pass' "$T_DIR/proxy.log"
t_done
