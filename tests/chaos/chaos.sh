#!/usr/bin/env bash
# chaos.sh - resolverd under fire.
#
# A three-member etcd cluster, twenty real HTTP/2 backends (h2server), one
# resolverd configured with the three endpoints and seven services (every
# policy, every value format, one discovered on demand, one with only one
# or two instances so that its picks fail now and then), keepalive
# 1000/1000 ms so that dead backends are noticed fast, and client processes
# (client.py) picking and reporting done in a loop over the socket,
# pipelined, each pick recorded with its time and address.  For
# CHAOS_SECONDS a driver, in this shell, does at random and records with a
# timestamp in actions.log:
#   put / del        register and remove instances (etcdctl put/del)
#   lease_put        register under a lease that is left to expire
#   compact          compact etcd at its current revision
#   member_kill      SIGKILL/SIGTERM an etcd member (often the one resolverd
#                    uses), restarted 2-5 s later
#   kill             SIGKILL a backend, restarted 1-4 s later
#   goaway           SIGTERM a backend (GOAWAY to every connection), restarted
#                    with --goaway-after so every new connection gets a
#                    GOAWAY after 0.8-3 s, until its next kill
#   freeze / reset   a backend behind faultproxy.py: every byte held for 2-6 s
#                    (connections up and silent), or every connection RST
#   drop             (root and `ip netns` work) a backend in a network
#                    namespace of ours: iptables DROP of its port in that
#                    namespace for 2-6 s, a silent black hole
#   reload           `resolverctl reload` with the same configuration
# The clients also close their connection now and then while they hold
# tickets (the daemon must release them).
# etcdwatch.py records what etcd held and when.  At the end (clients
# stopped, faults undone) the invariants are checked and printed:
#   (a) check.py over every pick: no pick of an address the service never
#       had, none more than CHAOS_PROPAGATION_MS (1500) after the address
#       left etcd, none more than keepalive time + timeout + 1 s after its
#       backend died / froze / was cut off;
#   (b) `resolverctl instances --json` equals etcd's view for every
#       service, every instance READY (views.py);
#   (c) no ticket lost: every request answered, every DONE released its
#       ticket, tickets_outstanding back to 0, none leaked;
#   (d) daemon VmRSS sampled every 10 s: growth after warm-up printed,
#       a failure only above CHAOS_RSS_GROWTH_MAX % (50; 100 in a sanitizer
#       build, whose quarantine is cut to 16 MB for the daemon);
#   (e) the daemon never exited, stops cleanly on SIGTERM, and its log has
#       no sanitizer report.
# Then a table of the invariants and of the actions done, and `N passed,
# M failed`.
#
# Environment: RESOLVERD RESOLVERCTL H2SERVER (as the integration tests);
# CHAOS_SECONDS (300), CHAOS_SEED (random; printed), CHAOS_BACKENDS (20),
# CHAOS_CLIENTS (4), CHAOS_PROPAGATION_MS (1500), CHAOS_NETNS (auto, 0, 1),
# CHAOS_RSS_GROWTH_MAX (50), CHAOS_KEEP_ON_FAIL (1: keep $T_DIR when an
# invariant fails; the path is printed).  Ends within CHAOS_SECONDS + 60 s.
set -u
CHAOS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$CHAOS_DIR/../integration/lib.sh"
t_init chaos
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${H2SERVER:?}"
PY=/usr/bin/python3
[[ -x $PY ]] || t_skip "/usr/bin/python3 not found"
FAULTPROXY=$CHAOS_DIR/../integration/faultproxy.py

CHAOS_SECONDS=${CHAOS_SECONDS:-300}
SEED=${CHAOS_SEED:-$(( $$ ^ ${EPOCHREALTIME/[.,]/} % 1000000 ))}
RANDOM=$SEED
N_BACKENDS=${CHAOS_BACKENDS:-20}
N_CLIENTS=${CHAOS_CLIENTS:-4}
KA_TIME_MS=1000
KA_TIMEOUT_MS=1000
PROPAGATION_MS=${CHAOS_PROPAGATION_MS:-1500}
DEAD_BUDGET_MS=$((KA_TIME_MS + KA_TIMEOUT_MS + 1000))
SANITIZED=0
grep -q -a __asan_init "$RESOLVERD" && SANITIZED=1
if ((SANITIZED)); then
    RSS_GROWTH_MAX=${CHAOS_RSS_GROWTH_MAX:-100}
else
    RSS_GROWTH_MAX=${CHAOS_RSS_GROWTH_MAX:-50}
fi
SOCK=$T_DIR/rd.sock
ACTIONS=$T_DIR/actions.log
T_START_MS=$(_t_now_ms)
echo "# chaos: ${CHAOS_SECONDS} s, seed $SEED (CHAOS_SEED=$SEED repeats the driver's random choices), dir $T_DIR"

now() { REPLY=${EPOCHREALTIME/,/.}; }
declare -A COUNT=()
# act KIND [k=v ...]: one line in actions.log, stamped now.
act() {
    COUNT[$1]=$((${COUNT[$1]:-0} + 1))
    echo "${EPOCHREALTIME/,/.} $*" >>"$ACTIONS"
}
# note KIND [k=v ...]: the same, not counted as a chaos action.
note() { echo "${EPOCHREALTIME/,/.} $*" >>"$ACTIONS"; }
rnd() { REPLY=$((${1:?} + RANDOM % (${2:?} - ${1} + 1))); } # rnd LO HI: LO..HI
# etcdctl on the members that run (etcdctl may spend its whole timeout on
# a dead endpoint of the list).
ectl() {
    local eps=$ETCD_ENDPOINTS i
    if [[ -n ${member_down:-} ]]; then
        eps=
        for i in 1 2 3; do
            [[ $i == "$member_down" ]] || eps+="${eps:+,}$(t_etcd_member_url c "$i")"
        done
    fi
    ETCDCTL_API=3 etcdctl --endpoints "$eps" --dial-timeout 1s --command-timeout 3s "$@"
}
ctl() { "$RESOLVERCTL" -s "$SOCK" "$@"; }

# ---- summary table ----
declare -a ROWS=()
# inv NAME OK(0/1) DETAIL: an invariant's verdict, counted and tabled.
inv() {
    local name=$1 ok=$2 detail=$3
    if [[ $ok == 1 ]]; then
        t_ok "$name${detail:+ ($detail)}"
        ROWS+=("PASS|$name|$detail")
    else
        t_fail "$name" "$detail"
        ROWS+=("FAIL|$name|$detail")
    fi
}

# ---- network namespace (root only), removed however we exit ----
NS= VETH= NS_IP=
netns_cleanup() {
    [[ -n $NS ]] && ip netns del "$NS" 2>/dev/null
    [[ -n $VETH ]] && ip link del "$VETH" 2>/dev/null
    NS= VETH=
    return 0
}
# lib.sh's EXIT trap stops the processes; ours removes the namespace first
# (processes still inside keep it alive until they are killed) and keeps
# the exit status for lib.sh.
trap 'rc=$?; netns_cleanup; (exit $rc); _t_on_exit' EXIT
netns_setup() {
    local want=${CHAOS_NETNS:-auto} i a b
    [[ $want == 0 ]] && return 1
    if [[ $(id -u) != 0 ]] || ! command -v ip >/dev/null || ! command -v iptables >/dev/null; then
        [[ $want == 1 ]] && t_fail "CHAOS_NETNS=1 needs root, ip and iptables"
        return 1
    fi
    # Leftovers of an earlier run that was SIGKILLed: ours by name, and
    # only when the shell that made them is gone.
    local old
    for old in $(ip netns list 2>/dev/null | sed -n 's/^\(chaos[0-9][0-9]*\).*/\1/p'); do
        [[ -d /proc/${old#chaos} ]] || { ip netns del "$old" 2>/dev/null; ip link del "chv${old#chaos}" 2>/dev/null; }
    done
    NS=chaos$$ VETH=chv$$
    for i in $(seq 20); do
        a=$((100 + RANDOM % 150)) b=$((RANDOM % 250))
        ip -4 addr show | grep -q "inet 10\.$a\.$b\." && continue
        ip -4 route show | grep -q "^10\.$a\.$b\." && continue
        NS_IP=10.$a.$b
        break
    done
    if [[ -z $NS_IP ]] || ! ip netns add "$NS" 2>/dev/null ||
        ! ip link add "$VETH" type veth peer name "${VETH}n" 2>/dev/null ||
        ! ip link set "${VETH}n" netns "$NS" ||
        ! ip addr add "$NS_IP.1/30" dev "$VETH" || ! ip link set "$VETH" up ||
        ! ip netns exec "$NS" ip addr add "$NS_IP.2/30" dev "${VETH}n" ||
        ! ip netns exec "$NS" ip link set "${VETH}n" up ||
        ! ip netns exec "$NS" ip link set lo up ||
        ! ip netns exec "$NS" iptables -w -S >/dev/null 2>&1; then
        netns_cleanup
        [[ $want == 1 ]] && t_fail "CHAOS_NETNS=1: cannot set up a network namespace"
        return 1
    fi
    return 0
}

# A port below the kernel's ephemeral range (t_free_port's choice): a
# port a backend leaves for a moment (killed, restarted) is not handed to
# some outgoing connection.
chaos_port() { t_free_port; }

# ---- etcd and the watcher ----
t_etcd_cluster3 c || t_done
note setup etcd=$ETCD_ENDPOINTS seed=$SEED
t_spawn etcdwatch "$PY" "$CHAOS_DIR/etcdwatch.py" --endpoints "$ETCD_ENDPOINTS" --out "$T_DIR/watch.jsonl"
t_wait_for "the etcd watcher lists the keyspace" 10 grep -q listed "$T_DIR/etcdwatch.log"

# ---- backends ----
# B_KIND: direct, proxy (behind faultproxy.py: freeze/reset) or netns.
declare -a B_NAME=() B_KIND=() B_BIND=() B_PORT=() B_ADDR=() B_STATE=() B_GOAWAY=()
HAVE_NETNS=0
netns_setup && HAVE_NETNS=1
n_proxy=4 n_netns=0
((HAVE_NETNS)) && n_netns=4
((N_BACKENDS < 10)) && n_proxy=2 && ((HAVE_NETNS)) && n_netns=2
for ((i = 0; i < N_BACKENDS; i++)); do
    B_NAME[i]=b$i
    B_STATE[i]=ok
    B_GOAWAY[i]=0
    if ((i < n_proxy)); then
        B_KIND[i]=proxy B_BIND[i]=127.0.0.1 B_PORT[i]=$(chaos_port)
        pport=$(chaos_port)
        B_ADDR[i]=127.0.0.1:$pport
        t_spawn "p$i" "$PY" "$FAULTPROXY" --listen "127.0.0.1:$pport" --target "127.0.0.1:${B_PORT[i]}" \
            --control "$T_DIR/p$i.sock" --quiet
    elif ((i < n_proxy + n_netns)); then
        B_KIND[i]=netns B_BIND[i]=$NS_IP.2 B_PORT[i]=$((9000 + i))
        B_ADDR[i]=$NS_IP.2:${B_PORT[i]}
    else
        B_KIND[i]=direct B_BIND[i]=127.0.0.1 B_PORT[i]=$(chaos_port)
        B_ADDR[i]=127.0.0.1:${B_PORT[i]}
    fi
done
# backend_spawn I [GOAWAY_MS]
backend_spawn() {
    local i=$1 ga=${2:-0}
    local -a cmd=("$H2SERVER" --bind "${B_BIND[i]}" --name "${B_NAME[i]}")
    ((ga > 0)) && cmd+=(--goaway-after "$ga")
    cmd+=("${B_PORT[i]}")
    [[ ${B_KIND[i]} == netns ]] && cmd=(ip netns exec "$NS" "${cmd[@]}")
    B_GOAWAY[i]=$ga
    t_spawn "${B_NAME[i]}" "${cmd[@]}"
}
listens() { # HOST PORT
    "$PY" -c 'import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' "$1" "$2" 2>/dev/null
}
for ((i = 0; i < N_BACKENDS; i++)); do backend_spawn "$i"; done
up=0
for ((i = 0; i < N_BACKENDS; i++)); do
    a=${B_ADDR[i]}
    t_wait_until 10 listens "${a%:*}" "${a##*:}" && up=$((up + 1))
done
t_eq "all $N_BACKENDS backends listen ($n_proxy behind faultproxy, $n_netns in netns $NS)" "$N_BACKENDS" "$up"
note setup backends="${B_ADDR[*]// /,}"

# ---- services ----
# name|prefix|policy|format|min|max instances (c.pf, one or two: its picks
# also fail now and then, none READY)
SVC_SPEC=(
    "c.rr|c.rr/|round_robin|gozero|3|12"
    "c.lr|c.lr/|least_request|native|3|12"
    "c.rh|kitex/registry-etcd/c.rh/|ring_hash|kitex|3|12"
    "c.wrr|c.wrr/|weighted_round_robin|naming|3|12"
    "c.rand|/microservices/c.rand/|random|kratos|3|12"
    "c.od|c.od/|on_demand|gozero|3|12"
    "c.pf|c.pf/|pick_first|gozero|1|2"
)
declare -a S_NAME=() S_PREFIX=() S_FMT=() S_MIN=() S_MAX=()
svc_json=
spec_arg=
for s in "${SVC_SPEC[@]}"; do
    IFS='|' read -r name prefix policy fmt smin smax <<<"$s"
    S_NAME+=("$name") S_PREFIX+=("$prefix") S_FMT+=("$fmt") S_MIN+=("$smin") S_MAX+=("$smax")
    spec_arg+="${spec_arg:+,}$name=$prefix"
    # c.od is not configured: discovered on its first pick (prefix c.od/).
    [[ $policy == on_demand ]] && continue
    extra=
    [[ $policy == weighted_round_robin ]] && extra=', "outlier_consecutive_failures": 3, "outlier_base_ejection_ms": 1000'
    svc_json+="${svc_json:+,
    }{ \"name\": \"$name\", \"prefix\": \"$prefix\", \"policy\": \"$policy\"$extra }"
done
NS_COUNT=${#S_NAME[@]}
eps_json=$(sed 's/^/"/; s/,/", "/g; s/$/"/' <<<"$ETCD_ENDPOINTS")
# Self-preservation off: its churn deletes many instances at once, and the
# invariants below say a removed instance gets no picks (keeping them as
# STALE is test_self_preservation.sh's subject).
cat >"$T_DIR/rd.json" <<JSON
{
  "etcd": { "endpoints": [ $eps_json ], "dial_timeout_ms": 1000 },
  "socket": { "path": "$SOCK" },
  "defaults": {
    "keepalive_time_ms": $KA_TIME_MS, "keepalive_timeout_ms": $KA_TIMEOUT_MS,
    "connect_timeout_ms": 2000,
    "backoff": { "initial_ms": 200, "multiplier": 1.6, "jitter": 0.2, "max_ms": 2000 },
    "drain_timeout_ms": 3000, "self_preservation_percent": 0
  },
  "services": [
    $svc_json
  ]
}
JSON

# value FORMAT ADDRESS ID SERVICE: what a registry of that format writes.
value() {
    case $1 in
    gozero) REPLY=$2 ;;
    native) REPLY="{\"address\":\"$2\",\"weight\":$((1 + RANDOM % 5)),\"zone\":\"\",\"metadata\":{\"id\":\"$3\"}}" ;;
    kitex) REPLY="{\"network\":\"tcp\",\"address\":\"$2\",\"weight\":$((1 + RANDOM % 5)),\"tags\":{}}" ;;
    naming) REPLY="{\"Op\":0,\"Addr\":\"$2\",\"Metadata\":null}" ;;
    kratos) REPLY="{\"id\":\"$3\",\"name\":\"$4\",\"version\":\"v1\",\"metadata\":{},\"endpoints\":[\"grpc://$2\"]}" ;;
    esac
}

# ---- registrations: REG[svc|addr] = key (plain keys); LEASED[svc|addr] = ms until free ----
declare -A REG=() LEASED=()
KSEQ=0
svc_size() { # S: instances we registered in service S (plain + leased)
    local k n=0 now_ms
    now_ms=$(_t_now_ms)
    for k in "${!REG[@]}"; do [[ $k == "$1|"* ]] && n=$((n + 1)); done
    for k in "${!LEASED[@]}"; do [[ $k == "$1|"* ]] && ((LEASED[$k] > now_ms)) && n=$((n + 1)); done
    REPLY=$n
}
free_addr() { # S: a backend index not registered in service S (REPLY), 1 if none
    local tries s=$1 i now_ms
    now_ms=$(_t_now_ms)
    for tries in $(seq 30); do
        i=$((RANDOM % N_BACKENDS))
        [[ -n ${REG[$s|${B_ADDR[i]}]:-} ]] && continue
        ((${LEASED[$s|${B_ADDR[i]}]:-0} > now_ms)) && continue
        REPLY=$i
        return 0
    done
    return 1
}
# do_put SVC_INDEX [LEASE_TTL]
do_put() {
    local si=$1 ttl=${2:-0} s=${S_NAME[$1]} i key lease= t0 ok=0 out
    svc_size "$s"
    ((REPLY < S_MAX[si])) || return 1
    free_addr "$s" || return 1
    i=$REPLY
    KSEQ=$((KSEQ + 1))
    key=${S_PREFIX[si]}k$KSEQ
    value "${S_FMT[si]}" "${B_ADDR[i]}" "k$KSEQ" "$s"
    local v=$REPLY
    now; t0=$REPLY
    if ((ttl > 0)); then
        out=$(ectl lease grant "$ttl" 2>&1) && lease=$(sed -n 's/^lease \([0-9a-f]*\) granted.*/\1/p' <<<"$out")
        if [[ -z $lease ]]; then
            note lease_grant_failed "err=${out//[[:space:]]/_}"
            return 1
        fi
        ectl put --lease="$lease" "$key" "$v" >/dev/null 2>&1 && ok=1
        act lease_put "svc=$s" "key=$key" "addr=${B_ADDR[i]}" "ttl=$ttl" "lease=$lease" "t0=$t0" "ok=$ok"
        LEASED[$s|${B_ADDR[i]}]=$(($(_t_now_ms) + ttl * 1000 + 3000))
    else
        ectl put "$key" "$v" >/dev/null 2>&1 && ok=1
        act put "svc=$s" "key=$key" "addr=${B_ADDR[i]}" "t0=$t0" "ok=$ok"
        # Even when etcdctl failed the put may have happened: track it so
        # that a later del removes it either way.
        REG[$s|${B_ADDR[i]}]=$key
    fi
}
do_del() { # SVC_INDEX
    local s=${S_NAME[$1]} k cands=() pick addr t0 ok=0
    for k in "${!REG[@]}"; do [[ $k == "$s|"* ]] && cands+=("$k"); done
    ((${#cands[@]})) || return 1
    pick=${cands[RANDOM % ${#cands[@]}]}
    addr=${pick#*|}
    now; t0=$REPLY
    ectl del "${REG[$pick]}" >/dev/null 2>&1 && ok=1
    act del "svc=$s" "key=${REG[$pick]}" "addr=$addr" "t0=$t0" "ok=$ok"
    [[ $ok == 1 ]] && unset "REG[$pick]"
    return 0
}

# ---- faults: each one recorded as dead (when in effect) and alive (before undoing) ----
declare -a UNDO_AT=() UNDO_WHAT=()
schedule() { UNDO_AT+=("$(($(_t_now_ms) + $1))"); UNDO_WHAT+=("$2"); }
healthy_backend() { # KIND|any: a backend with no fault on (REPLY)
    local tries i
    for tries in $(seq 40); do
        i=$((RANDOM % N_BACKENDS))
        [[ ${B_STATE[i]} == ok ]] || continue
        [[ $1 == any || ${B_KIND[i]} == "$1" ]] || continue
        REPLY=$i
        return 0
    done
    return 1
}
backend_kill() { # I SIGNAL HOW
    local i=$1
    t_kill "${B_NAME[i]}" "$2" >/dev/null 2>&1
    B_STATE[i]=down
    act "$3" "addr=${B_ADDR[i]}" "name=${B_NAME[i]}" "sig=$2"
    note dead "addr=${B_ADDR[i]}" "how=$3"
}
backend_restart() { # I [GOAWAY_MS]
    local i=$1 ga=${2:-0}
    note alive "addr=${B_ADDR[i]}" "how=restart" "goaway_ms=$ga"
    backend_spawn "$i" "$ga"
    B_STATE[i]=ok
    ((ga > 0)) && act goaway_after "addr=${B_ADDR[i]}" "ms=$ga"
}
proxy_send() { "$PY" "$FAULTPROXY" --control "$T_DIR/p$1.sock" --send "$2" >/dev/null 2>&1; }

# ---- the daemon ----
# A sanitizer build keeps freed memory in quarantine (256 MB by default):
# its RSS would climb for minutes and say nothing about leaks.
rd_env=()
((SANITIZED)) && rd_env=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16")
t_spawn resolverd "${rd_env[@]}" "$RESOLVERD" -c "$T_DIR/rd.json" --log-level info
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
RD_PID=$(t_pid resolverd)

# Initial registrations: 6 per service.
for ((si = 0; si < NS_COUNT; si++)); do
    for ((k = 0; k < (S_MAX[si] < 6 ? S_MAX[si] : 6); k++)); do do_put "$si"; done
done
# The first pick of c.od discovers it; its ticket goes with the connection
# (no resolverctl: the raw line keeps the pick out of resolverctl's own counts).
echo "PICK c.od" | "$PY" "$CHAOS_DIR/../integration/sockclient.py" "$SOCK" >/dev/null 2>&1 || true
views() { "$PY" "$CHAOS_DIR/views.py" --resolverctl "$RESOLVERCTL" --socket "$SOCK" \
    --endpoints "$ETCD_ENDPOINTS" --services "$spec_arg" "$@"; }
t_wait_for "resolverd's instances equal etcd's and are READY before the chaos" 15 views --ready --quiet

# ---- clients ----
svc_list=$(IFS=,; echo "${S_NAME[*]}")
for ((c = 1; c <= N_CLIENTS; c++)); do
    t_spawn "client$c" "$PY" "$CHAOS_DIR/client.py" --socket "$SOCK" --services "$svc_list" \
        --key-services c.rh --picks "$T_DIR/client$c.picks" --summary "$T_DIR/client$c.json" \
        --stop-file "$T_DIR/stop" --seed "$((SEED + c))" --batch 8 --interval 0.03
done

# ---- memory samples ----
declare -a RSS_T=() RSS_KB=()
rss_sample() {
    local kb
    kb=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$RD_PID/status" 2>/dev/null)
    [[ -n $kb ]] || return 0
    RSS_T+=("$((($(_t_now_ms) - CHAOS_T0_MS) / 1000))")
    RSS_KB+=("$kb")
    echo "# rss t=${RSS_T[-1]}s ${kb} kB"
    note rss "kb=$kb"
}

# ---- the driver ----
member_down=
last_member_op=0
daemon_member() { # the member resolverd uses: its index 1..3 (REPLY), or 0
    local ep i
    ep=$(ctl status --json 2>/dev/null | sed -n 's/.*"etcd_endpoint": "\([^"]*\)".*/\1/p')
    REPLY=0
    for i in 1 2 3; do [[ $ep == "$(t_etcd_member_url c "$i")" ]] && REPLY=$i; done
}
member_start() {
    note member_start_begin "member=$1"
    if t_etcd_member_start c "$1" >/dev/null; then
        act member_start "member=$1"
    else
        note member_start_failed "member=$1"
    fi
    member_down=
    last_member_op=$(_t_now_ms)
}
do_member_kill() {
    [[ -z $member_down ]] || return 1
    (($(_t_now_ms) - last_member_op > 6000)) || return 1
    local m sig=KILL
    daemon_member
    m=$REPLY
    # Half the time the member resolverd uses, so that it must fail over.
    ((m == 0 || RANDOM % 2)) && m=$((1 + RANDOM % 3))
    ((RANDOM % 4 == 0)) && sig=TERM
    t_etcd_member_kill c "$m" "$sig" >/dev/null 2>&1
    act member_kill "member=$m" "sig=$sig" "daemon_member=$REPLY"
    member_down=$m
    last_member_op=$(_t_now_ms)
    # While resolverd fails over: changes, sometimes a compaction at once.
    do_put $((RANDOM % NS_COUNT))
    do_del $((RANDOM % NS_COUNT))
    ((RANDOM % 2)) && do_compact
    rnd 2000 5000
    schedule "$REPLY" "member_start $m"
}
do_compact() {
    local rev
    rev=$(ectl get chaos-nothing -w json 2>/dev/null | sed -n 's/.*"revision":\([0-9]*\).*/\1/p')
    [[ -n $rev ]] || return 1
    if ectl compact "$rev" >/dev/null 2>&1; then
        act compact "rev=$rev"
    else
        note compact_failed "rev=$rev"
    fi
}
do_kill() {
    healthy_backend any || return 1
    local i=$REPLY
    backend_kill "$i" KILL kill
    rnd 1000 4000
    schedule "$REPLY" "backend_restart $i 0"
}
do_goaway() {
    healthy_backend any || return 1
    local i=$REPLY ga
    # h2server answers SIGTERM with GOAWAY on every connection, then exits.
    backend_kill "$i" TERM goaway
    rnd 800 3000
    ga=$REPLY
    rnd 200 1000
    schedule "$REPLY" "backend_restart $i $ga"
}
do_freeze() {
    healthy_backend proxy || return 1
    local i=$REPLY
    if proxy_send "$i" freeze; then
        B_STATE[i]=frozen
        act freeze "addr=${B_ADDR[i]}"
        note dead "addr=${B_ADDR[i]}" how=freeze
        rnd 2000 6000
        schedule "$REPLY" "unfreeze $i"
    else
        note freeze_failed "addr=${B_ADDR[i]}"
    fi
}
unfreeze() {
    note alive "addr=${B_ADDR[$1]}" how=unfreeze
    proxy_send "$1" pass || note unfreeze_failed "addr=${B_ADDR[$1]}"
    B_STATE[$1]=ok
}
do_reset() {
    healthy_backend proxy || return 1
    proxy_send "$REPLY" reset && act reset "addr=${B_ADDR[REPLY]}"
}
drop_rules() { # -I|-D PORT
    ip netns exec "$NS" iptables -w "$1" INPUT -p tcp --dport "$2" -j DROP &&
        ip netns exec "$NS" iptables -w "$1" OUTPUT -p tcp --sport "$2" -j DROP
}
do_drop() {
    ((HAVE_NETNS)) || return 1
    healthy_backend netns || return 1
    local i=$REPLY
    if drop_rules -I "${B_PORT[i]}"; then
        B_STATE[i]=dropped
        act drop "addr=${B_ADDR[i]}"
        note dead "addr=${B_ADDR[i]}" how=drop
        rnd 2000 6000
        schedule "$REPLY" "undrop $i"
    else
        note drop_failed "addr=${B_ADDR[i]}"
    fi
}
undrop() {
    note alive "addr=${B_ADDR[$1]}" how=undrop
    drop_rules -D "${B_PORT[$1]}" 2>/dev/null || note undrop_failed "addr=${B_ADDR[$1]}"
    B_STATE[$1]=ok
}
do_reload() {
    if ctl reload >/dev/null 2>&1; then
        act reload
    else
        note reload_failed
    fi
}
run_due() { # ALL: runs undo actions that are due (ALL=1: every one)
    local k now_ms
    now_ms=$(_t_now_ms)
    local -a at=() what=()
    for k in "${!UNDO_AT[@]}"; do
        if [[ $1 == 1 ]] || ((UNDO_AT[k] <= now_ms)); then
            ${UNDO_WHAT[k]}
        else
            at+=("${UNDO_AT[k]}") what+=("${UNDO_WHAT[k]}")
        fi
    done
    UNDO_AT=("${at[@]}") UNDO_WHAT=("${what[@]}")
}
# Weighted choice; the first ones make sure each kind happens early on.
ACTIONS_W=(put:30 del:25 lease:10 kill:6 goaway:4 freeze:5 reset:2 drop:5 member_kill:3 compact:3
    reload:1)
FORCED=(member_kill kill goaway freeze drop compact lease reset reload)
choose() {
    local total=0 aw r
    for aw in "${ACTIONS_W[@]}"; do total=$((total + ${aw#*:})); done
    r=$((RANDOM % total))
    for aw in "${ACTIONS_W[@]}"; do
        r=$((r - ${aw#*:}))
        if ((r < 0)); then REPLY=${aw%%:*}; return; fi
    done
}
do_action() {
    local si=$((RANDOM % NS_COUNT))
    case $1 in
    put)
        svc_size "${S_NAME[si]}"
        if ((REPLY < S_MAX[si])); then do_put "$si"; else do_del "$si"; fi ;;
    del)
        svc_size "${S_NAME[si]}"
        if ((REPLY > S_MIN[si])); then do_del "$si"; else do_put "$si"; fi ;;
    lease)
        svc_size "${S_NAME[si]}"
        ((REPLY < S_MAX[si])) || return 1
        rnd 2 6
        do_put "$si" "$REPLY" ;;
    kill) do_kill ;;
    goaway) do_goaway ;;
    freeze) do_freeze ;;
    reset) do_reset ;;
    drop) do_drop ;;
    member_kill) do_member_kill ;;
    compact) do_compact ;;
    reload) do_reload ;;
    esac
}

CHAOS_T0_MS=$(_t_now_ms)
END_MS=$((CHAOS_T0_MS + CHAOS_SECONDS * 1000))
next_rss=$CHAOS_T0_MS
iter=0 crashed=0
note chaos_start
echo "# driver: running for $CHAOS_SECONDS s"
while (($(_t_now_ms) < END_MS)); do
    if ! _t_alive "$RD_PID"; then
        crashed=1
        note daemon_exited
        break
    fi
    if (($(_t_now_ms) >= next_rss)); then
        rss_sample
        next_rss=$((next_rss + 10000))
    fi
    run_due 0
    iter=$((iter + 1))
    if ((iter % 2 == 0 && ${#FORCED[@]} > 0)); then
        kind=${FORCED[0]}
        FORCED=("${FORCED[@]:1}")
    else
        choose
        kind=$REPLY
    fi
    do_action "$kind" || true
    rnd 100 400
    printf -v pause '0.%03d' "$REPLY"
    sleep "$pause"
done
note chaos_end
echo "# driver: done after $(( ($(_t_now_ms) - CHAOS_T0_MS) / 1000 )) s"

# ---- settle: clients finish, every fault is undone ----
: >"$T_DIR/stop"
clients_done() {
    local c
    for ((c = 1; c <= N_CLIENTS; c++)); do t_alive "client$c" && return 1; done
    return 0
}
t_wait_until 20 clients_done || true
declare -a CLIENT_RC=()
for ((c = 1; c <= N_CLIENTS; c++)); do
    rc=0
    t_kill "client$c" TERM >/dev/null 2>&1 || rc=$?
    CLIENT_RC+=("$rc")
done
run_due 1
# Backends still sending periodic GOAWAYs get a normal restart: at the end
# every instance must be READY, not cycling.
for ((i = 0; i < N_BACKENDS; i++)); do
    if ((B_GOAWAY[i] > 0)); then
        t_kill "${B_NAME[i]}" TERM >/dev/null 2>&1
        backend_spawn "$i" 0
    fi
done
# A backend that did not come back (its port taken meanwhile): once more.
for ((i = 0; i < N_BACKENDS; i++)); do
    t_alive "${B_NAME[i]}" && continue
    note respawn "addr=${B_ADDR[i]}"
    t_kill "${B_NAME[i]}" TERM >/dev/null 2>&1
    backend_spawn "$i" 0
done
note settle_start

# ---- (e) alive all along ----
alive=1
_t_alive "$RD_PID" || alive=0
((crashed)) && alive=0
inv "(e) resolverd ran through the chaos (pid $RD_PID never exited)" "$alive" \
    "$([[ $alive == 1 ]] || echo 'it exited; see resolverd.log')"

# ---- (b) the final table equals etcd's view ----
# Leases expire within their TTL (<= 6 s), drains end within 3 s, backoff
# is at most 2 s: 30 s is plenty.
ok=0
t_wait_until 30 views --ready --quiet && ok=1
detail=$(views --ready 2>&1 | tr '\n' ';' | sed 's/;$//')
inv "(b) resolverctl instances == etcd's view for every service, all READY" "$ok" "$detail"

# ---- (c) no ticket lost ----
reqs=0 answers=0 unanswered=0 dones=0 done_ok=0 done_err=0 picks_ok=0 held=0 abandoned=0 problems=
declare -A PERR=()
for ((c = 1; c <= N_CLIENTS; c++)); do
    f=$T_DIR/client$c.json
    if [[ ! -s $f ]]; then
        problems+="client$c wrote no summary (exit ${CLIENT_RC[c - 1]}); "
        continue
    fi
    read -r r a u d dok derr pok h ab perr prob < <("$PY" - "$f" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
perr = ",".join("%s:%d" % kv for kv in sorted(s["pick_errors"].items())) or "-"
prob = "|".join(p.replace(" ", "_") for p in s["problems"][:3]) or "-"
print(s["requests"], s["answers"], s["unanswered"], s["dones"], s["done_ok"], s["done_errors"],
      s["picks_ok"], s["held_at_exit"], s["abandoned"], perr, prob)
EOF
    )
    reqs=$((reqs + r)) answers=$((answers + a)) unanswered=$((unanswered + u))
    dones=$((dones + d)) done_ok=$((done_ok + dok)) done_err=$((done_err + derr))
    picks_ok=$((picks_ok + pok)) held=$((held + h)) abandoned=$((abandoned + ab))
    if [[ $perr != - ]]; then
        for e in ${perr//,/ }; do PERR[${e%%:*}]=$((${PERR[${e%%:*}]:-0} + ${e##*:})); done
    fi
    [[ $prob != - ]] && problems+="client$c: $prob; "
done
perr_txt=
for e in "${!PERR[@]}"; do perr_txt+="$e ${PERR[$e]}, "; done
ok=0
((reqs > 0 && unanswered == 0 && answers == reqs)) && [[ -z $problems ]] && ok=1
inv "(c) every client request got its answer" "$ok" \
    "$reqs requests, $answers answers, $picks_ok picks OK, pick errors: ${perr_txt%, }${perr_txt:+; }${problems:-no problems}"
ok=0
((done_err == 0 && dones == done_ok && held == 0 && dones > 0)) && ok=1
inv "(c) every DONE released its ticket" "$ok" "$dones DONEs, $done_ok released, $done_err errors, $held held at exit"
status_json() { ctl status --json; }
tickets_zero() { ctl status --json | grep -q '"tickets_outstanding": 0,'; }
ok=0
t_wait_until 3 tickets_zero && ok=1
st=$(ctl status --json 2>/dev/null | tr -d '\n ' )
outst=$(sed -n 's/.*"tickets_outstanding":\([0-9]*\).*/\1/p' <<<"$st")
leaked=$(sed -n 's/.*"tickets_leaked":\([0-9]*\).*/\1/p' <<<"$st")
[[ $leaked == 0 ]] || ok=0
inv "(c) tickets_outstanding back to 0, none leaked" "$ok" \
    "tickets_outstanding ${outst:-?}, tickets_leaked ${leaked:-?}; $abandoned tickets were left on connections closed without DONE"
inst_out=0
for s in "${S_NAME[@]}"; do
    n=$(ctl instances --json "$s" 2>/dev/null | sed -n 's/.*"outstanding": \([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')
    inst_out=$((inst_out + n))
done
inv "(c) no instance counts an outstanding pick" "$([[ $inst_out == 0 ]] && echo 1 || echo 0)" "sum of outstanding $inst_out"

# ---- (a) picks against etcd's history and the faults ----
rss_sample # one after the chaos
"$PY" "$CHAOS_DIR/check.py" --watch "$T_DIR/watch.jsonl" --actions "$ACTIONS" --services "$spec_arg" \
    --remove-budget "$(awk -v m="$PROPAGATION_MS" 'BEGIN { print m / 1000 }')" \
    --dead-budget "$(awk -v m="$DEAD_BUDGET_MS" 'BEGIN { print m / 1000 }')" \
    --results "$T_DIR/check.results" "$T_DIR"/client*.picks
if [[ -s $T_DIR/check.results ]]; then
    while IFS=$'\t' read -r res desc detail; do
        inv "$desc" "$([[ $res == ok ]] && echo 1 || echo 0)" "$detail"
    done <"$T_DIR/check.results"
else
    inv "(a) check.py ran" 0 "no results"
fi

# ---- (d) memory ----
n=${#RSS_KB[@]}
warm=$((CHAOS_SECONDS / 3))
((warm > 60)) && warm=60
first=-1
for ((k = 0; k < n; k++)); do
    if ((RSS_T[k] >= warm)); then first=$k; break; fi
done
if ((first >= 0 && n - 1 > first)); then
    base=${RSS_KB[first]} last=${RSS_KB[n - 1]}
    growth=$(awk -v a="$base" -v b="$last" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')
    samples=
    for ((k = 0; k < n; k++)); do samples+="${RSS_T[k]}s:$((RSS_KB[k] / 1024))M "; done
    ok=$(awk -v g="$growth" -v m="$RSS_GROWTH_MAX" 'BEGIN { print (g <= m) ? 1 : 0 }')
    inv "(d) resolverd memory flat after warm-up (growth <= $RSS_GROWTH_MAX %)" "$ok" \
        "VmRSS ${base} kB at ${RSS_T[first]} s -> ${last} kB at ${RSS_T[n - 1]} s: ${growth} %; samples ${samples% }"
else
    inv "(d) resolverd memory sampled after warm-up" 0 "$n samples, none after ${warm} s"
fi

# ---- (e) a clean stop, no sanitizer report ----
rc=0
t_kill resolverd TERM || rc=$?
inv "(e) resolverd stops cleanly on SIGTERM after the chaos" "$([[ $rc == 0 ]] && echo 1 || echo 0)" "exit status $rc"
nsan=$(grep -c -E 'Sanitizer|runtime error:' "$T_DIR/resolverd.log")
inv "(e) no sanitizer report in resolverd's log" "$([[ $nsan == 0 ]] && echo 1 || echo 0)" \
    "$nsan lines$([[ $nsan == 0 ]] || echo ": $(grep -m 3 -E 'Sanitizer|runtime error:' "$T_DIR/resolverd.log" | tr '\n' ' ')")"
ncrit=$(grep -c -E 'Z error |Assertion .* failed' "$T_DIR/resolverd.log")
echo "# resolverd log: $(wc -l <"$T_DIR/resolverd.log") lines, $(grep -c -i ' warn ' "$T_DIR/resolverd.log") warnings, $ncrit errors"
grep -m 5 -E 'Z error |Assertion .* failed' "$T_DIR/resolverd.log" | sed 's/^/#   /'

# ---- the table ----
echo "#"
echo "# ==== chaos summary: ${CHAOS_SECONDS} s, seed $SEED, $N_BACKENDS backends ($n_proxy proxied, $n_netns in a netns), $N_CLIENTS clients$( ((SANITIZED)) && echo ', sanitizer build') ===="
printf '# %-4s  %-88s  %s\n' "" "invariant" "detail"
for row in "${ROWS[@]}"; do
    IFS='|' read -r res name detail <<<"$row"
    printf '# %-4s  %-88s  %s\n' "$res" "$name" "${detail:0:400}"
done
echo "# chaos actions:"
line=
for k in put del lease_put compact member_kill member_start kill goaway goaway_after freeze reset drop reload; do
    line+="$k ${COUNT[$k]:-0}, "
done
echo "#   ${line%, }"
echo "# total time $(( ($(_t_now_ms) - T_START_MS) / 1000 )) s"
if ((T_FAIL > 0)) && [[ ${CHAOS_KEEP_ON_FAIL:-1} == 1 ]]; then
    T_KEEP=1
    echo "# kept $T_DIR (actions.log, watch.jsonl, client*.picks, resolverd.log)"
fi
t_done
