#!/usr/bin/env bash
# Changes to the values of instances that stay, through etcd and the daemon:
# a weight change reaches weighted_round_robin's shares, a zone change
# reaches zone preference, and a txn that deletes one key and puts another
# naming the same address keeps the instance and its connection.
set -u
. "$(dirname "$0")/lib.sh"
t_init service_updates
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
t_daemon_env
t_etcd_start e1 || t_done
pipelined() { "$PY" "$HERE/sockclient.py" "$SOCK"; }
addresses() { sed -n 's/^OK {"address":"\([^"]*\)".*/\1/p'; }
is_field() { [ "$(field "$1" "$2" "$3")" = "$4" ]; }

t_h2_backends 3 --verbose
A=127.0.0.1:${P[0]} B=127.0.0.1:${P[1]} C=127.0.0.1:${P[2]}

cat >"$T_DIR/rd.json" <<JSON
{
  "zone": "a",
  "services": [
    { "name": "w", "policy": "weighted_round_robin" },
    { "name": "zoned", "zone_min_ready_percent": 50 },
    { "name": "tx" }
  ]
}
JSON
t_etcdctl put w/a "{\"address\":\"$A\",\"weight\":1}" >/dev/null
t_etcdctl put w/b "{\"address\":\"$B\",\"weight\":1}" >/dev/null
t_etcdctl put zoned/a "{\"address\":\"$A\",\"zone\":\"b\"}" >/dev/null
t_etcdctl put zoned/b "{\"address\":\"$B\",\"zone\":\"b\"}" >/dev/null
t_etcdctl put tx/1 "$C" >/dev/null

t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK" --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
for svc in w zoned; do
    t_wait_for "$svc: A READY" 10 is_field "$svc" "$A" state READY
    t_wait_for "$svc: B READY" 10 is_field "$svc" "$B" state READY
done
t_wait_for "tx: C READY" 10 is_field tx "$C" state READY

# Picks owned by one connection (released when it closes): no detached
# tickets left behind.
share_of() { # SERVICE ADDRESS N: how many of N picks of SERVICE gave ADDRESS
    for _ in $(seq "$3"); do echo "PICK $1"; done | pipelined | addresses | grep -c "^$2\$"
}

# ---- weight (issue 11 item 6) ----
nb=$(share_of w "$B" 1000)
t_check "weights 1:1 share evenly (B got $nb of 1000)" test "$nb" -ge 450 -a "$nb" -le 550
t_etcdctl put w/b "{\"address\":\"$B\",\"weight\":9}" >/dev/null
t_wait_for "instances shows B's new weight 9" 5 is_field w "$B" weight 9
nb=$(share_of w "$B" 1000)
t_check "weights 1:9 give B ~900 of 1000 picks (got $nb)" test "$nb" -ge 860 -a "$nb" -le 940
t_eq "the weight change kept B's connection" 1 "$(field w "$B" connect_attempts)"

# ---- zone (issue 11 item 6) ----
# Both in zone b (the daemon is in zone a): no local instance, both picked.
t_eq "no instance in the daemon's zone: picks reach both" 2 \
    "$(for _ in $(seq 20); do echo "PICK zoned"; done | pipelined | addresses | sort -u | wc -l)"
t_etcdctl put zoned/a "{\"address\":\"$A\",\"zone\":\"a\"}" >/dev/null
t_wait_for "instances shows A's new zone" 5 is_field zoned "$A" zone a
t_eq "A moved into the daemon's zone: every pick is A" "$A" \
    "$(for _ in $(seq 20); do echo "PICK zoned"; done | pipelined | addresses | sort -u | tr -d '\n')"

# ---- one txn: delete a key, put another with the same address (item 7) ----
conns() { grep -c ': accepted' "$T_DIR/b3.log"; } # h2server --verbose: a line per connection
attempts=$(field tx "$C" connect_attempts)
reconnects=$(field tx "$C" reconnects)
conns_before=$(conns)
# WATCH through a socket of our own, each line written at once (resolverctl
# buffers its output, which SIGTERM would lose).
t_spawn watch "$PY" -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"WATCH tx\n")
for line in s.makefile("r"):
    print(line, end="")' "$SOCK"
sleep 0.3
# etcdctl txn reads: compares, a blank line, the success requests, a blank
# line, the failure requests, a blank line.
t_etcdctl txn >"$T_DIR/txn.out" <<EOF

del tx/1
put tx/2 $C


EOF
t_check "etcdctl txn succeeded" grep -q SUCCESS "$T_DIR/txn.out"
t_wait_for "tx/2 is known (one key, the new one)" 5 is_field tx "$C" keys 1
t_eq "etcd holds only tx/2" tx/2 "$(t_etcdctl get --prefix tx/ --keys-only | grep -v '^$')"
sleep 0.5
t_kill watch TERM || true
t_eq "C is still READY" READY "$(field tx "$C" state)"
t_eq "no new connect attempt" "$attempts" "$(field tx "$C" connect_attempts)"
t_eq "reconnects unchanged" "$reconnects" "$(field tx "$C" reconnects)"
t_eq "the backend saw no new connection" "$conns_before" "$(conns)"
t_check "watch saw no removal, close or add of C" \
    bash -c "! grep -E '\"event\": ?\"(removed|closed|added)\"' '$T_DIR/watch.log'"
t_check "the log never shows C draining or closed" \
    bash -c "! grep -E 'instance $C (removed|closed)' '$T_DIR/resolverd.log'"
t_done
