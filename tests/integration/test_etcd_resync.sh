#!/usr/bin/env bash
# Resync by a fresh range (lib/discovery.c): each phase makes a gap that
# resuming the watch from the last revision seen cannot fill, and resolverd
# must range the prefix again and reconcile, applying real differences only.
#  1. Another cluster on the same endpoint: etcd is replaced by a fresh one
#     on the same port (another cluster id, lower revisions).  A watch from
#     the old revision would see nothing of what the new cluster holds.
#  2. A catch-up watch message over the 64 MiB limit: cut off, 60 values of
#     1.4 MiB are put, then a good key.  Resuming at the same revision would
#     fetch the same message forever; the good key must appear.
#  3. A watch message that cannot be decoded (faultproxy `garble` spoils one
#     event's key in transit) while later ones advance the revision: the
#     spoilt event's change must still arrive.
# resolverd reaches etcd through faultproxy.py only.  RESYNC_PHASES (default
# "1 2 3") runs only some phases, to see one fail alone on older code.
set -u
. "$(dirname "$0")/lib.sh"
t_init etcd-resync
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
[[ -n ${H2SERVER:-} && -x ${H2SERVER:-} ]] || t_require nghttpd
HERE=$(dirname "$0")

SOCK=$T_DIR/rd.sock
CTL_SOCK=$T_DIR/proxy.sock
proxy() { "$PY" "$HERE/faultproxy.py" --control "$CTL_SOCK" --send "$1" >/dev/null; }
log_has() { grep -q -- "$1" "$T_DIR/resolverd.log"; }

t_etcd_start e1 || t_done
PPORT=$(t_free_port)
t_spawn proxy "$PY" "$HERE/faultproxy.py" --listen "127.0.0.1:$PPORT" \
    --target "${ETCD_ENDPOINT#http://}" --control "$CTL_SOCK" --quiet
t_wait_for "faultproxy answers on its control socket" 10 proxy status

declare -a B=()
# B1-B4 for phase 1, B5 only for phase 2, B6 only for phase 3: each phase's
# verdict stands on its own.
for i in 1 2 3 4 5 6; do
    backend_start "backend$i" || t_done
    B+=("127.0.0.1:$BACKEND_PORT")
done
t_etcdctl put svc/k1 "${B[0]}" >/dev/null
t_etcdctl put svc/k2 "${B[1]}" >/dev/null
for i in $(seq 1 30); do # the old cluster's revision well above the new one's
    t_etcdctl put other/n "$i" >/dev/null
done

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
t_wait_for "resolverd lists etcd's view" 10 views_equal svc svc/
all_ready() { [[ $(daemon_states svc | grep -vc ' READY$') == 0 ]]; }
t_wait_for "every instance READY" 10 all_ready
t_spawn watcher "$RESOLVERCTL" -s "$SOCK" --json watch svc
t_wait_for "the watcher is connected" 5 bash -c "[[ \$('$RESOLVERCTL' -s '$SOCK' --json status | grep -c '\"clients\": [2-9]') == 1 ]]"
events_since() {
    tail -n +"$(($1 + 1))" "$T_DIR/watcher.log" | grep -F "\"$2\"" | grep -E '"(added|removed)"' || true
}
reconnects_of() { instance_field svc "$1" reconnects; }
has_addr() { daemon_addrs svc | grep -qxF "$1"; }
resyncs() { count_lines 'resyncing by a fresh range' "$T_DIR/resolverd.log"; }
PHASES=" ${RESYNC_PHASES:-1 2 3} "
phase() { [[ $PHASES == *" $1 "* ]]; }

# ---- 1. etcd replaced by another cluster on the same port ----
if phase 1; then
old_rev=$(service_field svc revision)
w0=$(wc -l <"$T_DIR/watcher.log")
r1=$(reconnects_of "${B[0]}")
# resolverd is kept away while the new cluster is filled (an empty one
# would rightly empty the service for a moment).
t_check "faultproxy refuse (while etcd is replaced)" proxy refuse
t_etcd_stop e1 KILL
# A fresh member on e1's client port: another peer URL and data directory
# make another cluster id (lib.sh's t_etcd_start would restart e1 itself).
T_ETCD_CPORT[e2]=${T_ETCD_CPORT[e1]}
T_ETCD_PPORT[e2]=$(t_free_port)
T_ETCD_CLUSTER[e2]="e2=http://127.0.0.1:${T_ETCD_PPORT[e2]}"
_t_etcd_spawn e2 new && _t_etcd_wait_healthy e2 || t_done
t_etcdctl put svc/k1 "${B[0]}" >/dev/null # the same address: must stay
t_etcdctl put svc/k3 "${B[2]}" >/dev/null # new; k2 is gone
new_rev=$(etcd_revision)
t_check "faultproxy pass" proxy pass
echo "# old cluster at revision $old_rev, the new one at $new_rev"
t_check "the new cluster's revision is below the old one's" test "$new_rev" -lt "$old_rev"
t_wait_for "resolverd follows the new cluster" 30 views_equal svc svc/
t_check "the log names the cluster change" log_has 'cluster id changed'
t_check "the prefix was resynced" log_has 'another etcd cluster answers.*resyncing by a fresh range'
t_eq "status counts one cluster change" 1 "$(status_field etcd_cluster_changes)"
t_check "metrics count it" bash -c "'$RESOLVERCTL' -s '$SOCK' metrics | grep -qx 'resolver_etcd_cluster_changes_total 1'"
t_check "resolverctl status shows it" \
    bash -c "'$RESOLVERCTL' -s '$SOCK' status | grep -qE '^etcd endpoint: .*, 1 cluster change\)\$'"
t_check "the revision is the new cluster's" test "$(service_field svc revision)" -le "$(etcd_revision)"
t_eq "B1 (unchanged) was not flapped" "" "$(events_since "$w0" "${B[0]}")"
t_eq "B1 kept its connection" "$r1" "$(reconnects_of "${B[0]}")"
t_etcdctl put svc/k9 "${B[3]}" >/dev/null
t_wait_for "the watch then follows the new cluster" 5 views_equal svc svc/
t_etcdctl del svc/k9 >/dev/null
t_wait_for "and its deletes" 5 views_equal svc svc/
fi

# ---- 2. a catch-up message over 64 MiB ----
if phase 2; then
n_retry=$(count_lines 'retrying in' "$T_DIR/resolverd.log")
n_resync=$(resyncs)
t_check "faultproxy refuse" proxy refuse
t_wait_for "resolverd notices the cut" 15 \
    bash -c "(( \$(grep -c 'retrying in' '$T_DIR/resolverd.log') > $n_retry ))"
head -c 1050000 /dev/urandom | base64 -w0 | head -c 1400000 >"$T_DIR/big"
t_check "the value is 1.4 MB" test "$(stat -c %s "$T_DIR/big")" -eq 1400000
ok=1
for i in $(seq -w 1 60); do
    t_etcdctl put "svc/big/$i" <"$T_DIR/big" >/dev/null || ok=0
done
t_eq "60 values of 1.4 MB put while cut off" 1 "$ok"
t_etcdctl put svc/good "${B[4]}" >/dev/null
t_check "faultproxy pass" proxy pass
t_wait_for "the key put after the big values appears" 90 has_addr "${B[4]}"
t_check "the log says the message was too large and resyncs" \
    log_has 'too large to take.*resyncing by a fresh range'
t_check "one resync more" test "$(resyncs)" -gt "$n_resync"
t_check "the range was paged" grep -qE 'keys at revision [0-9]+ in ([2-9]|[1-9][0-9]+) pages' \
    "$T_DIR/resolverd.log"
t_etcdctl del --prefix svc/big/ >/dev/null
t_wait_for "views equal once the big values are gone" 20 views_equal svc svc/
fi

# ---- 3. an undecodable watch message ----
if phase 3; then
n_resync=$(resyncs)
w0=$(wc -l <"$T_DIR/watcher.log")
t_check "faultproxy garble" proxy garble
t_etcdctl put svc/k4 "${B[5]}" >/dev/null # this event is spoilt on the way
t_etcdctl put svc/k1 "${B[0]}" >/dev/null # a later one, good, advances the revision
t_wait_for "the spoilt event's change arrives" 20 has_addr "${B[5]}"
t_wait_for "views equal after it" 5 views_equal svc svc/
t_check "the proxy garbled an event" grep -q 'garble: conn' "$T_DIR/proxy.log"
t_check "the log says the message could not be decoded and resyncs" \
    log_has 'cannot be decoded.*resyncing by a fresh range'
t_check "one resync more" test "$(resyncs)" -gt "$n_resync"
t_eq "B1 was not flapped by the resync" "" "$(events_since "$w0" "${B[0]}")"
t_etcdctl del svc/k4 >/dev/null
t_wait_for "the watch goes on" 5 views_equal svc svc/
fi

t_check "the daemon is alive" t_alive resolverd
t_done
