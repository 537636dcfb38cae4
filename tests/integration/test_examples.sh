#!/usr/bin/env bash
# The example programs of contrib/ against a real etcd, real HTTP/2
# backends and resolverd: example_client through the daemon's socket,
# example_embedded with the engine in-process.  Also resolverd's optional
# Prometheus listener (metrics.listen).
set -u
. "$(dirname "$0")/lib.sh"
t_init examples
t_require etcd etcdctl nghttpd curl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${EXAMPLE_CLIENT:?}" "${EXAMPLE_EMBEDDED:?}"

t_etcd_start e1 || t_done
SOCK=$T_DIR/rd.sock
ctl() { "$RESOLVERCTL" -s "$SOCK" "$@"; }

# Two backends registered the go-zero way: key NAME/ID, value host:port.
declare -a BACKENDS=()
for i in 1 2; do
    port=$(t_free_port)
    t_spawn "backend$i" nghttpd --no-tls "$port"
    t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" || t_fail "backend$i listens"
    t_etcdctl put "svc/$i" "127.0.0.1:$port" >/dev/null
    BACKENDS+=("127.0.0.1:$port")
done

# ":PORT" means loopback; the listener is only in the config file.
MPORT=$(t_free_port)
cat >"$T_DIR/rd.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"] },
  "socket": { "path": "$SOCK" },
  "metrics": { "listen": ":$MPORT" } }
EOF
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"

# is_backend ADDRESS: one of the two registered instances.
is_backend() { [[ $1 == "${BACKENDS[0]}" || $1 == "${BACKENDS[1]}" ]]; }

# check_lines DESC FILE N PATTERN: FILE has N lines, each naming a backend
# in its first field and matching PATTERN.
check_lines() {
    local desc=$1 file=$2 n=$3 pattern=$4 addr rest bad=""
    while read -r addr rest; do
        is_backend "$addr" || bad+=" $addr"
        [[ "$addr${rest:+ $rest}" =~ $pattern ]] || bad+=" [$addr${rest:+ $rest}]"
    done <"$file"
    if [[ $(wc -l <"$file") != "$n" ]]; then
        t_fail "$desc" "expected $n lines, got: $(tr '\n' '|' <"$file")"
    elif [[ -n $bad ]]; then
        t_fail "$desc" "unexpected:$bad"
    else
        t_ok "$desc"
    fi
}

# ---- example_client: through the daemon ----

# Its first pick makes the daemon discover svc (the pick waits for it).
t_check "example_client picks an on-demand service" \
    "$EXAMPLE_CLIENT" "$SOCK" svc 1
ready_count() { ctl --json instances svc | grep -c '"state": "READY"'; }
both_ready() { [ "$(ready_count)" = 2 ]; }
t_wait_for "both instances READY" 10 both_ready

rc=0
"$EXAMPLE_CLIENT" "$SOCK" svc 4 >"$T_DIR/client.out" 2>"$T_DIR/client.err" || rc=$?
t_eq "example_client exits 0" 0 "$rc"
check_lines "example_client prints 4 picks with ticket, latency and outcome" \
    "$T_DIR/client.out" 4 '^[^ ]+ ticket=[0-9]+ latency_ms=[0-9]+ ok$'
t_eq "example_client's picks rotate over both instances" 2 \
    "$(awk '{print $1}' "$T_DIR/client.out" | sort -u | wc -l)"
t_check "every ticket was reported done" \
    bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" --json status | grep -q '\"tickets_outstanding\": 0'"

rc=0
"$EXAMPLE_CLIENT" "$SOCK" nosuch.svc 1 >/dev/null 2>"$T_DIR/nosuch.err" || rc=$?
t_eq "example_client exits 3 when the service has no instance" 3 "$rc"
rc=0
"$EXAMPLE_CLIENT" "$T_DIR/absent.sock" svc 1 >/dev/null 2>&1 || rc=$?
t_eq "example_client exits 2 when the daemon is not there" 2 "$rc"
rc=0
"$EXAMPLE_CLIENT" >/dev/null 2>&1 || rc=$?
t_eq "example_client exits 1 on bad usage" 1 "$rc"

# ---- example_embedded: the engine in-process ----

rc=0
"$EXAMPLE_EMBEDDED" "$ETCD_ENDPOINT" svc 4 >"$T_DIR/embedded.out" 2>"$T_DIR/embedded.err" || rc=$?
t_eq "example_embedded exits 0" 0 "$rc"
check_lines "example_embedded prints 4 picks of registered instances" \
    "$T_DIR/embedded.out" 4 '^[^ ]+$'
rc=0
"$EXAMPLE_EMBEDDED" "not a url" svc 1 >/dev/null 2>&1 || rc=$?
t_eq "example_embedded exits 1 on a bad etcd URL" 1 "$rc"

# ---- metrics.listen ----

MURL=http://127.0.0.1:$MPORT
t_check "GET /metrics has resolver_picks_total" \
    bash -c "curl -sf '$MURL/metrics' | grep -q '^resolver_picks_total{service=\"svc\"}'"
t_check "GET /metrics has the exposition content type" \
    bash -c "curl -sf -o /dev/null -w '%{content_type}' '$MURL/metrics' | grep -q '^text/plain; version=0.0.4'"
t_check "the HTTP text has the metrics of resolverctl metrics" \
    bash -c "diff <(\"$RESOLVERCTL\" -s \"$SOCK\" metrics | grep '^# TYPE') \
                  <(curl -sf '$MURL/metrics' | grep '^# TYPE')"
t_eq "another path is 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$MURL/other")"
t_eq "POST is 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' -d x "$MURL/metrics")"
t_eq "HEAD is 200" 200 "$(curl -s -I -o /dev/null -w '%{http_code}' "$MURL/metrics")"
t_eq "a request head over 8 KiB is 431" 431 \
    "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $(head -c 9000 /dev/zero | tr '\0' a)" "$MURL/metrics")"
t_check "the response says Connection: close" \
    bash -c "curl -si '$MURL/metrics' | grep -qi '^connection: close'"

# 64 connections that never send a request fill the listener: the next one
# is refused with 503, and the idle ones are closed after 5 s.
declare -a FDS=()
for _ in $(seq 64); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$MPORT" && FDS+=("$fd")
done
sleep 0.3
t_eq "the 65th connection is refused with 503" 503 \
    "$(curl -s -o /dev/null -w '%{http_code}' "$MURL/metrics")"
t_wait_for "idle connections are closed after 5 s and the listener serves again" 8 \
    bash -c "curl -sf '$MURL/metrics' >/dev/null"
for fd in "${FDS[@]}"; do exec {fd}>&-; done
t_check "resolverd still answers on its socket" ctl status

# A port that is taken is a startup error naming metrics.listen.
sed -e "s#\"$SOCK\"#\"$T_DIR/rd2.sock\"#" "$T_DIR/rd.json" >"$T_DIR/rd2.json"
rc=0
"$RESOLVERD" -c "$T_DIR/rd2.json" >"$T_DIR/rd2.out" 2>&1 || rc=$?
t_eq "resolverd with a taken metrics port exits 1" 1 "$rc"
t_check "its message names metrics.listen" grep -q 'metrics.listen' "$T_DIR/rd2.out"

t_done
