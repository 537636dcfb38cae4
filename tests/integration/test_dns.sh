#!/usr/bin/env bash
# Instance host names through the daemon, with no DNS server but the one
# this test starts on loopback (dnsserver.py, named by "dns.servers"):
#  (a) NAME:PORT where NAME has AAAA ::1 and A 127.0.0.1 and only
#      127.0.0.1:PORT listens: READY (every address is tried, happy
#      eyeballs), and the same with /etc/hosts' Debian ordering
#      ("127.0.0.1 localhost", then "::1 localhost") when this test may
#      give resolverd a hosts file of its own (root: a mount namespace);
#  (c) answers are kept for their TTL: a backend that says GOAWAY every
#      500 ms is reconnected many times with one query per record type;
#  (b) a name the server never answers: that instance goes
#      TRANSIENT_FAILURE with backoff and says why, while picks of another
#      service through the socket never stall (the worst pick latency over
#      a few seconds is printed; the resolver runs off the loop);
#  (d) a reload that changes dns.servers applies them at once.
set -u
. "$(dirname "$0")/lib.sh"
t_init dns
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
t_daemon_env
t_etcd_start e1 || t_done
NAME=dual.resolver.test
NEVER=never.resolver.test

# ---- the DNS server, the backends ----
t_spawn dns "$PY" -u "$HERE/dnsserver.py" --port-file "$T_DIR/dns.port" --name "$NAME" --ttl 60
t_wait_until 10 test -s "$T_DIR/dns.port" || t_fail "the DNS server starts"
DNSP=$(cat "$T_DIR/dns.port")
backend() { # NAME ARGS...: an h2server on 127.0.0.1 only; sets BP
    local name=$1
    shift
    BP=$(t_free_port)
    t_spawn "$name" "$H2SERVER" --name "$name" --bind 127.0.0.1 "$@" "$BP"
    t_wait_until 10 listening "$BP" || t_fail "$name listens on $BP"
}
backend b_dual; DUALP=$BP
backend b_churn --goaway-after 500; CHURNP=$BP
backend b_good; GOOD=127.0.0.1:$BP
NEVERP=$(t_free_port)
t_check "nothing listens on [::1]:$DUALP" bash -c "! $PY -c \"import socket; socket.create_connection(('::1', $DUALP), 1)\" 2>/dev/null"

cat >"$T_DIR/rd.json" <<JSON
{
  "dns": { "servers": ["127.0.0.1:$DNSP"] },
  "defaults": { "backoff": { "initial_ms": 300, "max_ms": 1000 }, "connect_timeout_ms": 1000 },
  "services": [ { "name": "dual" }, { "name": "lh" }, { "name": "churn" },
                { "name": "never" }, { "name": "good" } ]
}
JSON
t_etcdctl put dual/1 "$NAME:$DUALP" >/dev/null
t_etcdctl put lh/1 "localhost:$DUALP" >/dev/null
t_etcdctl put churn/1 "$NAME:$CHURNP" >/dev/null
t_etcdctl put good/1 "$GOOD" >/dev/null

# resolverd in a mount namespace of its own when possible, with Debian's
# /etc/hosts for localhost (nothing outside it changes).
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$T_DIR/hosts"
RD=("$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK" --log-level debug)
HOSTS=0
if [[ $(id -u) == 0 ]] &&
    unshare -m sh -c 'mount --bind "$1" /etc/hosts && grep -q "^::1" /etc/hosts' sh "$T_DIR/hosts" 2>/dev/null; then
    HOSTS=1
    # unshare and sh exec: the tracked PID ends up resolverd's.
    t_spawn resolverd unshare -m sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh \
        "$T_DIR/hosts" "${RD[@]}"
else
    t_spawn resolverd "${RD[@]}"
fi
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
LOG=$T_DIR/resolverd.log

# ---- (a) every address is tried ----
t_wait_for "(a) $NAME:$DUALP (AAAA ::1, A 127.0.0.1, only IPv4 listens): READY" 5 \
    is_state dual "$NAME:$DUALP" READY
t_eq "(a) no error left" "" "$(field dual "$NAME:$DUALP" last_error)"
t_check "(a) the log shows the IPv4 attempt winning after the IPv6 one" \
    grep -q "dial $NAME: connected to 127.0.0.1:$DUALP (attempt 2 of 2)" "$LOG"
if [[ $HOSTS == 1 ]]; then
    t_wait_for "(a) localhost:$DUALP with ::1 in /etc/hosts: READY" 5 \
        is_state lh "localhost:$DUALP" READY
    t_check "(a) localhost came from /etc/hosts, not DNS" \
        bash -c "! grep -q 'QUERY localhost ' '$T_DIR/dns.log'"
else
    echo "# (a) /etc/hosts ordering skipped: needs root and unshare -m"
fi

# ---- (c) answers kept for their TTL ----
t_wait_for "(c) churn READY" 5 is_state churn "$NAME:$CHURNP" READY
sleep 3
r=$(field churn "$NAME:$CHURNP" reconnects)
qa=$(grep -c "QUERY $NAME A " "$T_DIR/dns.log")
qaaaa=$(grep -c "QUERY $NAME AAAA " "$T_DIR/dns.log")
echo "# (c) $r reconnects to $NAME, $qa A and $qaaaa AAAA queries (TTL 60 s)"
t_check "(c) GOAWAY every 500 ms: reconnected at least 3 times ($r)" test "$r" -ge 3
t_eq "(c) one A query for every connection to $NAME" 1 "$qa"
t_eq "(c) one AAAA query for every connection to $NAME" 1 "$qaaaa"

# ---- (b) a name that never resolves ----
# Picks of "good", one after another on one connection, for 4 s; the
# unresolvable instance is added 1 s in.
cat >"$T_DIR/picker.py" <<'PYEOF'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
f = s.makefile("rwb", buffering=0)
worst = n = bad = 0
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    t0 = time.monotonic()
    f.write(b"PICK %s\n" % sys.argv[2].encode())
    line = f.readline().decode()
    worst = max(worst, time.monotonic() - t0)
    n += 1
    if line.startswith("OK "):
        f.write(b"DONE %d\n" % json.loads(line[3:])["ticket"])
        f.readline()
    else:
        bad += 1
    time.sleep(0.01)
print("%d %d %d" % (n, bad, worst * 1000))
PYEOF
"$PY" "$T_DIR/picker.py" "$SOCK" good 4 >"$T_DIR/picks.out" &
PICKER=$!
sleep 1
t_etcdctl put never/1 "$NEVER:$NEVERP" >/dev/null
wait "$PICKER"
read -r n bad worst <"$T_DIR/picks.out"
echo "# (b) $n picks of good in 4 s while $NEVER was unresolvable: $bad failed, worst ${worst} ms"
t_check "(b) picks kept going (at least 50 in 4 s: $n)" test "$n" -ge 50
t_eq "(b) no pick failed" 0 "$bad"
t_check "(b) no pick stalled: worst ${worst} ms < 500 ms" test "$worst" -lt 500
# It goes TRANSIENT_FAILURE at its connect timeout (1 s), backs off, tries
# again: polled, the short TRANSIENT_FAILURE spells may be missed; the log
# says the first one (service.c logs what leaves or never reaches READY).
t_wait_for "(b) $NEVER: TRANSIENT_FAILURE at its connect timeout (log)" 5 \
    grep -q "warn  service never: instance $NEVER:$NEVERP not READY since it was added: resolve $NEVER: timed out" "$LOG"
err=$(field never "$NEVER:$NEVERP" last_error)
echo "# (b) last_error: $err"
t_check "(b) the reason names the name and the resolution" \
    bash -c "[[ '$err' == 'resolve $NEVER: '* ]]"
a0=$(field never "$NEVER:$NEVERP" connect_attempts)
sleep 3
a1=$(field never "$NEVER:$NEVERP" connect_attempts)
echo "# (b) connect attempts to $NEVER: $a0, 3 s later $a1"
# Each attempt waits out its 1 s connect timeout (longer than the backoff
# here), so a few; a loop spinning on the failure would make thousands.
t_check "(b) no hot loop: at most 5 more attempts in 3 s ($a0 -> $a1)" test $((a1 - a0)) -le 5
t_check "(b) backoff: it keeps trying ($a0 -> $a1)" test "$a1" -gt "$a0"
t_check "(b) the DNS server was asked for $NEVER" grep -q "QUERY $NEVER " "$T_DIR/dns.log"
t_check "(b) the other service is still READY" is_state good "$GOOD" READY

# ---- a reload with other servers: applied at once, the cache forgotten ----
sed -i "s/\"servers\": \[\"127.0.0.1:$DNSP\"\]/\"servers\": [\"127.0.0.1:$DNSP\", \"[::1]:$DNSP\"]/" "$T_DIR/rd.json"
t_check "(d) the configuration names a second server" grep -q "\[::1\]:$DNSP" "$T_DIR/rd.json"
t_signal resolverd HUP
t_wait_for "(d) reload: the new servers logged" 5 grep -q "dns: 2 servers configured" "$LOG"
a_queries_at_least() { [ "$(grep -c "QUERY $NAME A " "$T_DIR/dns.log")" -ge "$1" ]; }
t_wait_for "(d) reload: $NAME asked again (the cache was forgotten)" 5 a_queries_at_least 2
t_wait_for "(d) reload: churn READY again" 5 is_state churn "$NAME:$CHURNP" READY
t_check "(d) reload: dual still READY" is_state dual "$NAME:$DUALP" READY

# ---- status: the resolver's counters (JSON and text) ----
ctl --json status >"$T_DIR/status.json"
echo "# status dns: $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["dns"])' "$T_DIR/status.json")"
# The names above were resolved by the test's server, some of them again
# from the cache.
t_check "status --json: the dns counters" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))["dns"]
assert set(d) == {"queries", "cache_hits", "joined", "failures"}, d
assert d["queries"] >= 3, d' "$T_DIR/status.json"
t_check "status shows the dns counters" \
    bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" status | grep -qE '^dns: +[1-9][0-9]* queries \\([0-9]+ failed\\), [0-9]+ answered from the cache, [0-9]+ joined a query in flight\$'"

# ---- numeric addresses never reach DNS ----
t_check "no query for a numeric address" bash -c "! grep -Eq 'QUERY [0-9.]+ ' '$T_DIR/dns.log'"

t_done
