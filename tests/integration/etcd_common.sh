# shellcheck shell=bash
# shellcheck disable=SC2034 # BACKEND_PORT, DEAD_PORT are results for the caller
#
# etcd_common.sh - helpers shared by the test_etcd_*.sh tests (source it
# after lib.sh and t_init).
#
#   backend_start NAME [BIND]   an HTTP/2 backend (h2server when $H2SERVER is
#                               set, else nghttpd) on a free port; sets
#                               BACKEND_PORT and waits until it listens
#   free_dead_port              a port nobody listens on (sets DEAD_PORT)
#   daemon_addrs SERVICE [all]  sorted addresses resolverd lists for SERVICE
#                               (without DRAINING ones unless "all")
#   daemon_states SERVICE       "address state" lines
#   etcd_values PREFIX          sorted distinct values under PREFIX in etcd
#   views_equal SERVICE PREFIX  0 iff the two sets are equal (else prints both)
#   ctl ARGS...                 resolverctl on $SOCK
#   ec ARGS...                  etcdctl, as $ETCD_USER (user:password) if set
#   pick_done SERVICE           pick, then done at once; prints the address
#
# Everything uses $SOCK (resolverd's socket) and t_etcdctl's endpoints.

PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

ctl() { "$RESOLVERCTL" -s "$SOCK" "$@"; }

# ec ARGS...: t_etcdctl as $ETCD_USER (user:password) when set.
ec() {
    if [[ -n ${ETCD_USER:-} ]]; then
        t_etcdctl --user "$ETCD_USER" "$@"
    else
        t_etcdctl "$@"
    fi
}

# backend_start NAME [BIND]
backend_start() {
    local name=$1 bind=${2:-127.0.0.1} port
    port=$(t_free_port) || return 1
    if [[ -n ${H2SERVER:-} && -x ${H2SERVER:-} ]]; then
        t_spawn "$name" "$H2SERVER" --bind "$bind" --name "$name" "$port" || return 1
    else
        # nghttpd binds every address family by default.
        t_spawn "$name" nghttpd --no-tls "$port" || return 1
    fi
    local host=$bind
    [[ $bind == *:* ]] && host="[$bind]"
    if ! t_wait_until 10 "$PY" -c "import socket,sys
s=socket.create_connection(('$bind',$port),1)" ; then
        t_fail "backend $name listens on $host:$port"
        return 1
    fi
    BACKEND_PORT=$port
}

# free_dead_port: t_free_port, remembered, never listened on.
free_dead_port() {
    DEAD_PORT=$(t_free_port)
}

# daemon_addrs SERVICE [all]
daemon_addrs() {
    local all=${2:-}
    ctl --json instances "$1" | "$PY" -c "
import json, sys
for i in sorted(json.load(sys.stdin), key=lambda i: i['address']):
    if '$all' == 'all' or i['state'] != 'DRAINING':
        print(i['address'])"
}

# daemon_states SERVICE: "address state" per instance.
daemon_states() {
    ctl --json instances "$1" | "$PY" -c "
import json, sys
for i in json.load(sys.stdin):
    print(i['address'], i['state'])"
}

# etcd_values PREFIX: the distinct values (go-zero: addresses), sorted.
etcd_values() {
    ec get --prefix "$1" --print-value-only | grep -v '^$' | sort -u
}

# views_equal SERVICE PREFIX: resolverd's non-DRAINING instances are exactly
# the distinct addresses etcd holds under PREFIX (go-zero values).
views_equal() {
    local d e
    d=$(daemon_addrs "$1") || return 1
    e=$(etcd_values "$2") || return 1
    if [[ $d == "$e" ]]; then
        return 0
    fi
    echo "resolverd: $(echo "$d" | tr '\n' ' ')"
    echo "etcd:      $(echo "$e" | tr '\n' ' ')"
    return 1
}

# status_field FIELD: one field of `resolverctl status --json`.
status_field() {
    ctl --json status | "$PY" -c "import json,sys; v=json.load(sys.stdin).get('$1'); print('' if v is None else v)"
}

# service_field SERVICE FIELD: one field of the service's `services --json` row.
service_field() {
    ctl --json services | "$PY" -c "
import json, sys
for s in json.load(sys.stdin):
    if s['name'] == '$1':
        v = s.get('$2')
        print(json.dumps(v) if isinstance(v, (dict, list, bool)) else v)"
}

# etcd_revision: the cluster's current revision (header of a status call).
etcd_revision() {
    ec endpoint status -w json | "$PY" -c "
import json, sys
print(max(int(e['Status']['header']['revision']) for e in json.load(sys.stdin)))"
}

# count_lines PATTERN FILE: lines matching (0 when none).
count_lines() {
    local n
    n=$(grep -c -- "$1" "$2" 2>/dev/null) || true
    echo "${n:-0}"
}

# pick_done SERVICE: picks, reports the ticket done at once (no ticket left
# behind to hold a draining instance), prints the address.  Exit status of
# the pick (3: no instance).
pick_done() {
    local out rc=0 addr ticket
    out=$(ctl --json pick --hold "$1") || rc=$?
    if [[ $rc != 0 ]]; then
        [[ -n $out ]] && echo "$out"
        return "$rc"
    fi
    read -r addr ticket < <("$PY" -c "import json,sys; j=json.load(sys.stdin); print(j['address'], j['ticket'])" <<<"$out")
    ctl "done" "$ticket" >/dev/null || return 4
    echo "$addr"
}

# gw_put KEY FILE: puts the bytes of FILE (any size, any bytes) under KEY
# through the JSON gateway of $ETCD_ENDPOINT (no auth).
gw_put() {
    "$PY" - "$ETCD_ENDPOINT" "$1" "$2" <<'PYEOF'
import base64, http.client, json, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
value = open(sys.argv[3], "rb").read()
body = json.dumps({"key": base64.b64encode(sys.argv[2].encode()).decode(),
                   "value": base64.b64encode(value).decode()})
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
c.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
r = c.getresponse()
r.read()
sys.exit(0 if r.status == 200 else 1)
PYEOF
}

# instance_field SERVICE ADDRESS FIELD: one field of one instance.
instance_field() {
    ctl --json instances "$1" | "$PY" -c "
import json, sys
for i in json.load(sys.stdin):
    if i['address'] == '$2':
        v = i.get('$3')
        print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)"
}
