#!/usr/bin/env bash
# The silent-stream check (lib/discovery.c) on a quiet prefix of a busy
# cluster.  Two daemons watch the same prefix, whose keys do not change for
# 40 s while another key of the cluster is put every 2 s:
#  A reaches etcd through faultproxy.py.  Its checks must find nothing
#    (zero "watch stream silent"), though they run (the debug log shows
#    them).  Then its watch stream is stalled (the proxy freezes the
#    connections open now, new ones pass) while a key is put, and again
#    while a key is deleted: each time the stream must be found silent and
#    the change arrive.
#  B reaches etcd through gateway503.py, which answers every silence check
#    with a 503: the failed check fails the member over, which ends B's
#    watch, whose owner cancels that very check while it is being finished.
#    B must survive it (a use-after-free before) and still follow etcd.
set -u
. "$(dirname "$0")/lib.sh"
t_init etcd-silence
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
[[ -n ${H2SERVER:-} && -x ${H2SERVER:-} ]] || t_require nghttpd
HERE=$(dirname "$0")

t_etcd_start e1 || t_done
PPORT=$(t_free_port)
CTL_SOCK=$T_DIR/proxy.sock
proxy() { "$PY" "$HERE/faultproxy.py" --control "$CTL_SOCK" --send "$1" >/dev/null; }
t_spawn proxy "$PY" "$HERE/faultproxy.py" --listen "127.0.0.1:$PPORT" \
    --target "${ETCD_ENDPOINT#http://}" --control "$CTL_SOCK" --quiet
t_wait_for "faultproxy answers on its control socket" 10 proxy status
GPORT=$(t_free_port)
# The check is the only range with a min_mod_revision.
t_spawn gateway "$PY" "$HERE/gateway503.py" --listen "127.0.0.1:$GPORT" \
    --target "${ETCD_ENDPOINT#http://}" --match min_mod_revision
t_wait_until 10 "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $GPORT), 1)" ||
    t_fail "gateway503 listens"

declare -a B=()
for i in 1 2 3; do
    backend_start "backend$i" || t_done
    B+=("127.0.0.1:$BACKEND_PORT")
done
t_etcdctl put svc/k1 "${B[0]}" >/dev/null
t_etcdctl put svc/k2 "${B[1]}" >/dev/null

for d in A B; do
    port=$PPORT
    [[ $d == B ]] && port=$GPORT
    # Self-preservation off: the deletions here remove instances whose servers
    # stay up within 10 s of other removals, which it would rightly keep as
    # STALE; the views must equal etcd's (STALE is test_self_preservation.sh's).
    cat >"$T_DIR/$d.json" <<EOF
{ "etcd": { "endpoints": ["http://127.0.0.1:$port"], "dial_timeout_ms": 1000 },
  "socket": { "path": "$T_DIR/$d.sock" },
  "defaults": { "self_preservation_percent": 0 },
  "services": [ { "name": "svc", "prefix": "svc/" } ] }
EOF
    t_spawn "rd$d" "$RESOLVERD" -c "$T_DIR/$d.json" --log-level debug
done
SOCK=$T_DIR/A.sock
t_wait_for "A lists etcd's view" 10 views_equal svc svc/
SOCK=$T_DIR/B.sock
t_wait_for "B lists etcd's view" 10 views_equal svc svc/

# Another key of the cluster changes every 2 s (HTTP puts, no child process).
cat >"$T_DIR/putter.py" <<'EOF'
import base64, http.client, json, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
b64 = lambda s: base64.b64encode(s.encode()).decode()
i = 0
while True:
    i += 1
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        c.request("POST", "/v3/kv/put", json.dumps({"key": b64("other/x"), "value": b64(str(i))}),
                  {"Content-Type": "application/json"})
        c.getresponse().read()
        c.close()
    except OSError:
        pass
    time.sleep(2)
EOF
t_spawn putter "$PY" "$T_DIR/putter.py" "$ETCD_ENDPOINT"

# ---- 1. 40 s quiet prefix, busy cluster ----
sleep 40
checks=$(count_lines 'checking revisions' "$T_DIR/rdA.log")
silent=$(count_lines 'watch stream silent' "$T_DIR/rdA.log")
echo "# A: $checks silence checks, $silent 'watch stream silent' in 40 s"
t_check "A's silence checks ran (>= 2 in 40 s, got $checks)" test "$checks" -ge 2
t_eq "A: no 'watch stream silent' on a quiet prefix" 0 "$silent"
t_eq "A: no watch restart at all" 0 "$(count_lines 'retrying in' "$T_DIR/rdA.log")"

# ---- 2. B: a check answered 503 while B's watch is open ----
t_check "the gateway answered a check with 503" grep -q '^gateway503: 503 ' "$T_DIR/gateway.log"
t_check "B survived its failed checks" t_alive rdB
t_check "B's log shows the failover the 503 caused" grep -q 'etcd member failed' "$T_DIR/rdB.log"
t_etcdctl put svc/k3 "${B[2]}" >/dev/null
SOCK=$T_DIR/B.sock
t_wait_for "B still follows etcd (a new key arrives)" 15 views_equal svc svc/
SOCK=$T_DIR/A.sock
t_wait_for "A sees the new key at once" 2 views_equal svc svc/

# ---- 3. A: a stalled stream is still found, for a put and for a delete ----
silent0=$(count_lines 'watch stream silent' "$T_DIR/rdA.log")
t_check "faultproxy stall" proxy stall
t_etcdctl put svc/k4 "${B[0]}" >/dev/null # a second key of B1: count changes, no address does
t_etcdctl put svc/k3 "${B[0]}" >/dev/null # B3's key moves to B1
t_wait_for "a put behind a stalled stream arrives" 30 views_equal svc svc/
t_check "A found the stream silent (put)" \
    test "$(count_lines 'watch stream silent' "$T_DIR/rdA.log")" -gt "$silent0"
t_check "faultproxy pass" proxy pass
t_wait_for "A watches again" 10 bash -c "[[ \$(grep -c 'watching from revision' '$T_DIR/rdA.log') -ge 2 ]]"
silent0=$(count_lines 'watch stream silent' "$T_DIR/rdA.log")
sleep 1
t_check "faultproxy stall (again)" proxy stall
t_etcdctl del svc/k2 >/dev/null # only a delete: no key of the prefix has a newer mod_revision
t_wait_for "a delete behind a stalled stream arrives" 30 views_equal svc svc/
t_check "A found the stream silent (delete)" \
    test "$(count_lines 'watch stream silent' "$T_DIR/rdA.log")" -gt "$silent0"
t_check "faultproxy pass" proxy pass

"$RESOLVERCTL" -s "$T_DIR/A.sock" metrics >"$T_DIR/A.metrics"
t_check "A's /metrics counts both silence resets" \
    grep -Eq '^resolver_watch_silence_resets_total\{service="svc"\} ([2-9]|[1-9][0-9]+)$' "$T_DIR/A.metrics"
t_check "A is alive" t_alive rdA
t_check "B is alive" t_alive rdB
t_done
