#!/usr/bin/env bash
# Registration (issue 14), against one real etcd:
#  - the "register" list writes each format's key and value byte for byte;
#  - the lease is kept alive past 3 x TTL;
#  - a revoked lease, a deleted key, etcd down for 2 x TTL: the key is back;
#  - a second resolverd reads our go-zero registration and picks it;
#  - resolverctl register / registrations / deregister;
#  - SIGTERM deletes the keys, then waits deregister_grace_ms, then exits;
#  - kill -9 leaves the key to expire with its lease;
#  - health_check: the key exists only while gRPC health answers SERVING.
set -u
. "$(dirname "$0")/lib.sh"
t_init register
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
[[ -n ${H2SERVER:-} && -x ${H2SERVER:-} ]] || t_require nghttpd

t_etcd_start e1 || t_done
backend_start backend1 || t_done
B1=127.0.0.1:$BACKEND_PORT
P2=127.0.0.1:$(t_free_port)
P3=127.0.0.1:$(t_free_port)
P4=127.0.0.1:$(t_free_port)
P5=127.0.0.1:$(t_free_port)
P6=127.0.0.1:$(t_free_port)
SOCK=$T_DIR/rd.sock
GRACE=1500

cat >"$T_DIR/rd.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"], "dial_timeout_ms": 1000 },
  "socket": { "path": "$SOCK" },
  "deregister_grace_ms": $GRACE,
  "services": [ { "name": "en.svc", "prefix": "naming/en.svc/" } ],
  "register": [
    { "service": "gz.svc", "address": "$B1", "ttl_ms": 3000 },
    { "service": "en.svc", "address": "$P2", "format": "etcd_naming", "ttl_ms": 3000 },
    { "service": "kr.svc", "address": "$P3", "format": "kratos", "weight": 5, "ttl_ms": 3000 },
    { "service": "kx.svc", "address": "$P4", "format": "kitex", "weight": 3,
      "metadata": { "env": "prod" }, "ttl_ms": 3000 },
    { "service": "nt.svc", "address": "$P5", "format": "native", "weight": 2, "zone": "z1",
      "metadata": { "env": "prod", "a": "b" }, "ttl_ms": 3000 } ] }
EOF
t_check "--check-config accepts the register list" "$RESOLVERD" --check-config -q -c "$T_DIR/rd.json"
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"

# get KEY: the value etcd holds (empty if none).
get() { ec get --print-value-only "$1"; }
# gz_keys: the keys under gz.svc/.
gz_keys() { ec get --prefix --keys-only gz.svc/ | grep -v '^$'; }
reg_field() { # SERVICE FIELD
    ctl --json registrations | "$PY" -c "
import json, sys
for r in json.load(sys.stdin):
    if r['service'] == '$1' and r['state'] != 'LEAVING':
        print(r['$2'])"
}
all_registered() {
    [[ $(ctl --json registrations | grep -o '"REGISTERED"' | wc -l) == "${1:-5}" ]]
}
values_ok() {
    local lease
    lease=$(reg_field gz.svc lease_id)
    [[ $(gz_keys) == "gz.svc/$lease" && $(get "gz.svc/$lease") == "$B1" &&
        $(get "naming/en.svc/$P2") == "{\"Op\":0,\"Addr\":\"$P2\",\"Metadata\":null}" &&
        $(get "/microservices/kr.svc/$P3") == "{\"id\":\"$P3\",\"name\":\"kr.svc\",\"version\":\"\",\"metadata\":{\"weight\":\"5\"},\"endpoints\":[\"grpc://$P3\"]}" &&
        $(get "kitex/registry-etcd/kx.svc/$P4") == "{\"network\":\"tcp\",\"address\":\"$P4\",\"weight\":3,\"tags\":{\"env\":\"prod\"}}" &&
        $(get "nt.svc/$P5") == "{\"address\":\"$P5\",\"weight\":2,\"zone\":\"z1\",\"metadata\":{\"a\":\"b\",\"env\":\"prod\"}}" ]]
}
t_wait_for "every registration is REGISTERED" 5 all_registered
t_wait_for "each format's key and value, byte for byte" 3 values_ok
values_ok || {
    echo "# etcd holds:"
    ec get --prefix "" | sed 's/^/#   /'
}
lease0=$(reg_field gz.svc lease_id)
t_check "the go-zero key carries the lease id in decimal" test -n "$lease0" -a "$lease0" != 0
t_check "the go-zero key's lease is ours" bash -c "ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get -w json gz.svc/$lease0 | grep -q '\"lease\":$lease0'"

# ---- keepalive ----
sleep 10 # > 3 x TTL
t_eq "the lease is kept alive past 3 x TTL" "gz.svc/$lease0" "$(gz_keys)"
t_check "every key is still there" values_ok

# ---- a revoked lease ----
ec lease revoke "$(printf '%x' "$lease0")" >/dev/null
t0=$(_t_now_ms)
t_wait_for "a revoked lease: the key is back" 3 bash -c "[[ -n \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get --prefix --keys-only gz.svc/ | grep -v '^\$') ]]"
echo "# key back $(($(_t_now_ms) - t0)) ms after the revoke (TTL 3 s, keepalive every 1 s)"
t_check "under a new lease" test "$(reg_field gz.svc lease_id)" != "$lease0"
t_wait_for "every key is as before" 3 values_ok

# ---- a key deleted by someone else ----
ec del "nt.svc/$P5" >/dev/null
t0=$(_t_now_ms)
t_wait_for "a deleted key is put back" 3 bash -c "[[ -n \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get --print-value-only 'nt.svc/$P5') ]]"
echo "# key back $(($(_t_now_ms) - t0)) ms after the delete"

# ---- a second resolverd reads our registration ----
SOCK2=$T_DIR/rd2.sock
cat >"$T_DIR/rd2.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"] }, "socket": { "path": "$SOCK2" },
  "services": [ { "name": "gz.svc" },
                { "name": "nt.svc" }, { "name": "kx.svc", "prefix": "kitex/registry-etcd/kx.svc/" },
                { "name": "kr.svc", "prefix": "/microservices/kr.svc/" } ] }
EOF
t_spawn resolverd2 "$RESOLVERD" -c "$T_DIR/rd2.json"
t_wait_for "the second resolverd serves its socket" 10 test -S "$SOCK2"
t_wait_for "the second resolverd picks our go-zero registration" 10 \
    bash -c "[[ \$('$RESOLVERCTL' -s '$SOCK2' pick gz.svc) == '$B1' ]]"
inst2() { "$RESOLVERCTL" -s "$SOCK2" --json instances "$1" | "$PY" -c "
import json, sys
print(' '.join('%s/%s/%s' % (i['address'], i['weight'], i.get('zone', '')) for i in json.load(sys.stdin)))"; }
t_wait_for "it reads the native one with weight and zone" 5 bash -c "[[ \"\$($(declare -f inst2); SOCK2='$SOCK2' RESOLVERCTL='$RESOLVERCTL' PY='$PY' inst2 nt.svc)\" == '$P5/2/z1' ]]"
t_wait_for "the kitex one with its weight" 5 bash -c "[[ \"\$($(declare -f inst2); SOCK2='$SOCK2' RESOLVERCTL='$RESOLVERCTL' PY='$PY' inst2 kx.svc)\" == '$P4/3/' ]]"
t_wait_for "the kratos one with its weight" 5 bash -c "[[ \"\$($(declare -f inst2); SOCK2='$SOCK2' RESOLVERCTL='$RESOLVERCTL' PY='$PY' inst2 kr.svc)\" == '$P3/5/' ]]"

# ---- CLI ----
out=$(ctl register rt.svc "$P6" --format native --ttl-ms 3000 --zone z2 --weight 4)
t_check "resolverctl register says it is not persisted" grep -q "not persisted" <<<"$out"
t_wait_for "a runtime registration is written" 3 bash -c "[[ \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get --print-value-only 'rt.svc/$P6') == '{\"address\":\"$P6\",\"weight\":4,\"zone\":\"z2\"}' ]]"
t_wait_for "registrations lists it REGISTERED" 3 all_registered 6
t_check "registrations (table) shows the key and the state" bash -c "'$RESOLVERCTL' -s '$SOCK' registrations | grep 'rt.svc' | grep -q 'rt.svc/$P6.*REGISTERED'"
t_check "register refuses a bad format" bash -c "! '$RESOLVERCTL' -s '$SOCK' register rt.svc $P6 --format auto 2>$T_DIR/err"
t_check "naming the field" grep -q "format" "$T_DIR/err"
t_check "register refuses a bad address" bash -c "! '$RESOLVERCTL' -s '$SOCK' register rt.svc nope 2>$T_DIR/err && grep -q address $T_DIR/err"
ctl deregister rt.svc "$P6" >/dev/null
t0=$(_t_now_ms)
t_wait_for "deregister deletes the key" 2 bash -c "[[ -z \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get --print-value-only 'rt.svc/$P6') ]]"
t_check "and lists it LEAVING during the grace" bash -c "'$RESOLVERCTL' -s '$SOCK' registrations | grep rt.svc | grep -q LEAVING"
t_wait_for "then forgets it" 4 bash -c "! '$RESOLVERCTL' -s '$SOCK' registrations | grep -q rt.svc"
echo "# deregistered entry listed for $(($(_t_now_ms) - t0)) ms (grace $GRACE ms)"
t_check "deregister of an unknown one is not found" bash -c "'$RESOLVERCTL' -s '$SOCK' deregister rt.svc $P6 2>/dev/null; [[ \$? == 3 ]]"

# ---- health-gated: the key exists only while gRPC health says SERVING ----
HC_PORT=$(t_free_port)
echo SERVING >"$T_DIR/hc.status"
t_spawn grpc-hc "$PY" "$(dirname "$0")/grpc_health_server.py" --port "$HC_PORT" \
    --status-file "$T_DIR/hc.status"
t_wait_for "the gRPC health server listens" 10 "$PY" -c "import socket
socket.create_connection(('127.0.0.1', $HC_PORT), 1)"
SOCK3=$T_DIR/rd3.sock
cat >"$T_DIR/rd3.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"] }, "socket": { "path": "$SOCK3" },
  "deregister_grace_ms": 0,
  "defaults": { "backoff": { "initial_ms": 200, "max_ms": 500 } },
  "register": [ { "service": "hc.svc", "address": "127.0.0.1:$HC_PORT", "format": "native",
                  "ttl_ms": 3000, "health_check": { "grpc_service": "" } } ] }
EOF
t_spawn resolverd3 "$RESOLVERD" -c "$T_DIR/rd3.json" --log-level debug
hc_present() { [[ -n $(get "hc.svc/127.0.0.1:$HC_PORT") ]]; }
hc_absent() { ! hc_present; }
hc_state() { "$RESOLVERCTL" -s "$SOCK3" --json registrations | "$PY" -c "
import json, sys
print(json.load(sys.stdin)[0]['state'])"; }
hc_state_is() { [[ $(hc_state) == "$1" ]]; }
t_wait_for "health-gated: SERVING puts the key" 10 hc_present
echo NOT_SERVING >"$T_DIR/hc.status"
t0=$(_t_now_ms)
t_wait_for "NOT_SERVING deletes it" 3 hc_absent
echo "# key gone $(($(_t_now_ms) - t0)) ms after NOT_SERVING"
t_wait_for "registrations says UNHEALTHY" 2 hc_state_is UNHEALTHY
sleep 4 # > TTL: the lease is kept alive meanwhile
echo SERVING >"$T_DIR/hc.status"
t0=$(_t_now_ms)
t_wait_for "SERVING again puts it back" 3 hc_present
echo "# key back $(($(_t_now_ms) - t0)) ms after SERVING (the lease kept alive meanwhile)"
t_wait_for "registrations says REGISTERED" 2 hc_state_is REGISTERED
t_kill grpc-hc KILL >/dev/null 2>&1
t0=$(_t_now_ms)
t_wait_for "the server gone: the key goes" 5 hc_absent
echo "# key gone $(($(_t_now_ms) - t0)) ms after the server was killed"
t_kill resolverd3 >/dev/null 2>&1

# ---- etcd down for 2 x TTL ----
t_etcd_stop e1 KILL
sleep 6
t_etcd_start e1 || t_done
t0=$(_t_now_ms)
t_wait_until 5 values_ok
back=$(($(_t_now_ms) - t0))
echo "# every key back ${back} ms after etcd answered again (down 6 s, TTL 3 s)"
t_check "every key is back within 1 s of etcd answering" test "$back" -le 1000
t_wait_for "one go-zero key: the old lease's key is gone" 3 bash -c "[[ \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get --prefix --keys-only gz.svc/ | grep -vc '^\$') == 1 ]]"

# ---- SIGTERM: keys first, then the grace, then exit ----
t_signal resolverd TERM
t0=$(_t_now_ms)
t_wait_until 3 bash -c "[[ -z \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get --prefix --keys-only '' | grep -v '^\$') ]]"
gone=$(($(_t_now_ms) - t0))
t_check "SIGTERM: every key is gone while resolverd still runs" t_alive resolverd
echo "# keys gone ${gone} ms after SIGTERM"
t_wait_until 10 bash -c "! kill -0 $(t_pid resolverd) 2>/dev/null"
exited=$(($(_t_now_ms) - t0))
echo "# resolverd exited ${exited} ms after SIGTERM (deregister_grace_ms $GRACE)"
t_check "it waited deregister_grace_ms before exiting" test "$exited" -ge "$GRACE"
t_check "and not much more" test "$exited" -le $((GRACE + 2000))
t_kill resolverd >/dev/null 2>&1
t_check "the log says so" grep -q "deregistering 5 instances first" "$T_DIR/resolverd.log"

# ---- kill -9: the key expires with its lease ----
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json"
t_wait_for "restarted: every key is written again" 10 values_ok
t_kill resolverd KILL >/dev/null 2>&1
t0=$(_t_now_ms)
sleep 0.5
t_check "kill -9: the key stays at first" test -n "$(get "nt.svc/$P5")"
t_wait_until 6 bash -c "[[ -z \$(ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINT' get --print-value-only 'nt.svc/$P5') ]]"
gone=$(($(_t_now_ms) - t0))
echo "# key gone ${gone} ms after kill -9 (TTL 3 s)"
t_check "kill -9: the key leaves with its lease (TTL + 2 s)" test "$gone" -ge 1500 -a "$gone" -le 5000
t_done
