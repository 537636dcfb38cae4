#!/usr/bin/env bash
# The socket server against hostile names and clients: service names that
# try to forge /metrics lines (issue 11 item 21).
set -u
. "$(dirname "$0")/lib.sh"
t_init socket
t_require etcd etcdctl curl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
t_etcd_start e1 || t_done
SOCK=$T_DIR/rd.sock
ctl() { "$RESOLVERCTL" -s "$SOCK" "$@"; }
raw() { "$PY" "$HERE/sockclient.py" "$SOCK"; } # request lines on stdin

BPORT=$(t_free_port)
t_spawn b1 "$H2SERVER" --name b1 "$BPORT"
t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$BPORT" || true
t_etcdctl put svc/1 "127.0.0.1:$BPORT" >/dev/null
MPORT=$(t_free_port)
cat >"$T_DIR/rd.json" <<JSON
{ "socket": { "mode": "0666" }, "metrics": { "listen": "127.0.0.1:$MPORT" },
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

t_done
