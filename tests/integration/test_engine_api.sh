#!/usr/bin/env bash
# The embedded engine's public calls (resolver.h) against a real etcd and
# real backends: typed watch events as keys come and go and a backend dies,
# picks that wait (on another thread, and on the engine thread with a
# callback), the reasons of failed picks, the introspection structs beside
# what resolverctl shows of a resolverd on the same etcd, drain, undrain,
# reload, shutdown (tests/integration/engine_api.c prints one line per check).
set -u
. "$(dirname "$0")/lib.sh"
t_init engine_api
t_require etcd etcdctl
: "${ENGINE_API:?}" "${H2SERVER:?}" "${RESOLVERD:?}" "${RESOLVERCTL:?}"
t_etcd_start e1 || t_done
t_h2_backends 3
DEAD=$(t_free_port)
t_daemon_env

# The first listing of api, other and dead (slow, late start empty).
t_etcdctl put api/1 "{\"address\": \"127.0.0.1:${P[0]}\", \"weight\": 3, \"zone\": \"z1\", \"metadata\": {\"v\": \"1\"}}" >/dev/null
t_etcdctl put other/1 "127.0.0.1:${P[0]}" >/dev/null
t_etcdctl put dead/1 "127.0.0.1:$DEAD" >/dev/null
cat >"$T_DIR/api.json" <<JSON
{
  "etcd": { "endpoints": ["$ETCD_ENDPOINT"] },
  "socket": { "path": "$SOCK" },
  "defaults": { "backoff": { "initial_ms": 200, "max_ms": 1000 } },
  "services": [
    { "name": "api", "prefix": "api/" },
    { "name": "other", "prefix": "other/" },
    { "name": "slow", "prefix": "slow/" },
    { "name": "late", "prefix": "late/" },
    { "name": "dead", "prefix": "dead/" }
  ]
}
JSON
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/api.json"
t_wait_for "resolverd's socket appears" 10 test -S "$SOCK"

rc=0
timeout 180 "$ENGINE_API" "$T_DIR/api.json" "$ETCD_ENDPOINT" "${P[0]}" "${P[1]}" "$(t_pid b2)" \
    "${P[2]}" "$DEAD" "$SOCK" >"$T_DIR/api.out" 2>"$T_DIR/api.err" || rc=$?
sed 's/^/# /' "$T_DIR/api.out"
tail -n 20 "$T_DIR/api.err" | sed 's/^/# stderr: /'
t_eq "every check of engine_api passed" 0 "$rc"
t_check "engine_api printed its summary" grep -q '^[1-9][0-9]* passed, 0 failed$' "$T_DIR/api.out"
t_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$T_DIR/api.err'"
t_done
