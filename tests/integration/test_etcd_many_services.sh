#!/usr/bin/env bash
# 1,000 services on one daemon: 1,001 go-zero services are registered in
# etcd (a few backends shared between them), none is configured; each of
# 1,000 is picked once through resolverctl (discovered on demand, the first
# pick waiting for it), all must answer with their own backend.  The
# 1,001st is beyond on_demand_services_max: its pick fails clearly.
#
# N_SERVICES (default 1000) scales it down for a quick run.
set -u
. "$(dirname "$0")/lib.sh"
t_init etcd-many
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
[[ -n ${H2SERVER:-} && -x ${H2SERVER:-} ]] || t_require nghttpd

N=${N_SERVICES:-1000}
SOCK=$T_DIR/rd.sock
t_etcd_start e1 || t_done
declare -a B=()
for i in 1 2 3 4 5; do
    backend_start "backend$i" || t_done
    B+=("127.0.0.1:$BACKEND_PORT")
done

# sNNNN/ID -> backend NNNN % 5, for NNNN in 0..N (N+1 services).
"$PY" - "$ETCD_ENDPOINT" "$N" "${B[@]}" <<'EOF' || t_fail "registering the services"
import base64, http.client, json, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
n = int(sys.argv[2])
backends = sys.argv[3:]
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
b64 = lambda s: base64.b64encode(s.encode()).decode()
for i in range(n + 1):
    body = json.dumps({"key": b64("s%04d/%d" % (i, 7000 + i)), "value": b64(backends[i % 5])})
    c.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit("put failed: %d" % r.status)
EOF
t_eq "etcd holds $((N + 1)) service keys" "$((N + 1))" "$(t_etcdctl get --prefix s --keys-only | grep -c .)"

cat >"$T_DIR/rd.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"] },
  "socket": { "path": "$SOCK" },
  "on_demand_services_max": $N }
EOF
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --log-level info
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
pid=$(t_pid resolverd)
rss0=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")

# pick_one I: "sNNNN ADDRESS" or "sNNNN FAIL rc message"; the ticket is
# reported done at once.
pick_one() {
    local s out rc=0 ticket
    s=$(printf 's%04d' "$1")
    out=$("$RESOLVERCTL" -s "$SOCK" --json pick --hold "$s" 2>&1) || rc=$?
    if [[ $rc != 0 ]]; then
        echo "$s FAIL $rc $(tr '\n' ' ' <<<"$out")"
        return 0
    fi
    ticket=$(sed -n 's/.*"ticket": *\([0-9]*\).*/\1/p' <<<"$out")
    "$RESOLVERCTL" -s "$SOCK" "done" "$ticket" >/dev/null 2>&1 || echo "$s DONE-FAILED $ticket"
    echo "$s $(sed -n 's/.*"address": *"\([^"]*\)".*/\1/p' <<<"$out")"
}
export -f pick_one
export RESOLVERCTL SOCK
start=$(_t_now_ms)
seq 0 $((N - 1)) | xargs -P 4 -I{} bash -c 'pick_one {}' >"$T_DIR/picks.txt"
took=$(($(_t_now_ms) - start))
echo "# $N first picks (4 in parallel) took $took ms"
t_eq "$N picks answered" "$N" "$(grep -c . "$T_DIR/picks.txt")"
t_eq "no pick failed" "" "$(grep -m 5 -e FAIL -e DONE-FAILED "$T_DIR/picks.txt")"
wrong=$("$PY" - "$T_DIR/picks.txt" "${B[@]}" <<'EOF'
import sys
backends = sys.argv[2:]
bad = []
for line in open(sys.argv[1]):
    s, addr = line.split()[:2]
    if addr != backends[int(s[1:]) % 5]:
        bad.append(line.strip())
print(" | ".join(bad[:5]))
EOF
)
t_eq "every pick got its own service's backend" "" "$wrong"
# The SERVICES reply for 1,000 services is a long line: read it with a raw
# socket client first (what the daemon answers), then through resolverctl.
summary=$(echo SERVICES | "$PY" "$(dirname "$0")/sockclient.py" "$SOCK" | "$PY" -c "
import json, sys
line = sys.stdin.read()
assert line.startswith('OK '), line[:200]
s = json.loads(line[3:])
print(len(s), sum(1 for x in s if x['synced']), sum(x['instances'] for x in s),
      sum(x['states']['READY'] for x in s))")
read -r n_svc n_synced n_inst n_ready <<<"$summary"
t_eq "services lists $N services" "$N" "$n_svc"
t_eq "all of them synced" "$N" "$n_synced"
t_eq "one instance each" "$N" "$n_inst"
t_eq "all READY" "$N" "$n_ready"
rc=0
n_ctl=$(ctl --json services 2>"$T_DIR/services.err" | "$PY" -c "import json,sys; print(len(json.load(sys.stdin)))") || rc=$?
t_eq "resolverctl services --json lists the $N services too" "$N" "$n_ctl$(head -c 200 "$T_DIR/services.err")"
t_eq "status counts $N on-demand services" "$N" "$(status_field on_demand_services)"
t_eq "no ticket outstanding" 0 "$(status_field tickets_outstanding)"

# Beyond the cap: a clear error, exit non-zero.
over=$(printf 's%04d' "$N")
rc=0
out=$(ctl pick "$over" 2>&1) || rc=$?
echo "# pick $over: exit $rc: $out"
t_check "a pick beyond on_demand_services_max fails" test "$rc" -ne 0
t_check "its message names on_demand_services_max" grep -q on_demand_services_max <<<"$out"
t_check "the services already discovered still answer" pick_done s0007

rss1=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
fds=$(ls "/proc/$pid/fd" | wc -l)
echo "# resolverd: VmRSS ${rss0} kB at start, ${rss1} kB with $N services ($(((rss1 - rss0) / N)) kB per service), $fds open fds"
# A change reaches one service among the thousand.
mid=$(printf 's%04d' $((N / 2)))
ec put "$mid/extra" "${B[0]}" >/dev/null
t_wait_for "a change to one of the $N services arrives" 5 views_equal "$mid" "$mid/"
t_check "the daemon is alive" t_alive resolverd
t_done
