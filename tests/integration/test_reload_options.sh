#!/usr/bin/env bash
# Reload and the services that stay: an on-demand service that the new
# configuration lists under another prefix no longer counts against
# on_demand_services_max, and connection options (health_check here) reach
# existing instances at their next connection.
set -u
. "$(dirname "$0")/lib.sh"
t_init reload_options
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
t_daemon_env
"$PY" -c 'import grpc' 2>/dev/null || t_skip "python3-grpcio is not installed for $PY"

t_etcd_start e1 || t_done
on_demand() { ctl --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["on_demand_services"])'; }

BP=$(t_free_port)
t_spawn b "$H2SERVER" --name b "$BP"
t_wait_until 10 listening "$BP" || t_fail "h2server listens on $BP"
B=127.0.0.1:$BP
# A real gRPC server with the health service (allowing our 1 s keepalive).
GP=$(t_free_port)
grpc_start() { # NAME STATUS
    t_spawn "$1" "$PY" "$HERE/grpc_health_server.py" --port "$GP" --status "$2" \
        --min-ping-interval-ms 500 --permit-without-calls
    t_wait_until 15 listening "$GP" || t_fail "$1 listens on $GP"
}
grpc_start g1 SERVING
G=127.0.0.1:$GP

for k in od1/a moved/a od2/a od3/a od4/a; do t_etcdctl put "$k" "$B" >/dev/null; done
t_etcdctl put hc/a "$G" >/dev/null

write_config() { # EXTRA_SERVICES (JSON objects, each followed by a comma)
    cat >"$T_DIR/rd.json" <<JSON
{
  "on_demand_services_max": 2,
  "defaults": { "keepalive_time_ms": 1000, "keepalive_timeout_ms": 1000,
                "backoff": { "initial_ms": 200, "max_ms": 1000 } },
  "services": [ $1 { "name": "fixed" } ]
}
JSON
}
write_config '{ "name": "hc" },'
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK" \
    --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"

# ---- issue 11 item 18: an on-demand service becomes configured ----
t_wait_for "an unlisted service is discovered on demand" 5 picks od1 "$B"
t_eq "one on-demand service" 1 "$(on_demand)"
write_config '{ "name": "hc" }, { "name": "od1", "prefix": "moved/" },'
t_check "resolverctl reload (od1 now listed, prefix moved/)" ctl reload
t_eq "od1 is configured now: no on-demand service left" 0 "$(on_demand)"
t_wait_for "od1 serves from its new prefix" 5 picks od1 "$B"
t_wait_for "on demand: od2" 5 picks od2 "$B"
t_wait_for "on demand: od3 (the cap, 2, is not reached by a configured service)" 5 picks od3 "$B"
t_eq "two on-demand services" 2 "$(on_demand)"
rc=0
ctl pick od4 >/dev/null 2>"$T_DIR/od4.err" || rc=$?
t_check "a third on-demand service is refused (exit $rc)" test "$rc" -ne 0
t_check "the refusal names on_demand_services_max" grep -q on_demand_services_max "$T_DIR/od4.err"

# ---- issue 11 item 10: health_check turned on by reload ----
t_wait_for "hc: READY without health checking" 10 is_state hc "$G" READY
attempts=$(field hc "$G" connect_attempts)
write_config '{ "name": "hc", "health_check": { "grpc_service": "" } }, { "name": "od1", "prefix": "moved/" },'
t_signal resolverd HUP
reloaded_twice() { [ "$(grep -c "configuration reloaded" "$T_DIR/resolverd.log")" -ge 2 ]; }
t_wait_for "SIGHUP reloaded" 5 reloaded_twice
sleep 0.5
t_eq "the open connection stays (options apply at the next connection)" "$attempts" \
    "$(field hc "$G" connect_attempts)"
t_check "hc is still READY and picked" picks hc "$G"
# The backend restarts and answers NOT_SERVING: the new connection is
# health-checked.
t_kill g1 TERM || true
grpc_start g2 NOT_SERVING
attempts_above() { [ "$(field hc "$G" connect_attempts)" -gt "$1" ]; }
t_wait_for "the instance reconnected" 10 attempts_above "$attempts"
not_serving() { is_state hc "$G" TRANSIENT_FAILURE && [ "$(field hc "$G" health)" = NOT_SERVING ]; }
t_wait_for "NOT_SERVING after the restart: TRANSIENT_FAILURE, health NOT_SERVING" 5 not_serving
t_check "a NOT_SERVING instance is not picked" no_pick hc
sleep 1
t_check "still NOT_SERVING a second later" not_serving
t_done
