# shellcheck shell=bash
#
# lib.sh - helpers for the integration tests (bash).  Source it from a
# `#!/usr/bin/env bash` test:
#
#   . "$(dirname "$0")/lib.sh"
#   t_init my_test
#   t_etcd_start e1 || t_done
#   t_spawn rd "$RESOLVERD" --etcd "$ETCD_ENDPOINT" --socket "$T_DIR/rd.sock"
#   t_wait_for "socket appears" 10 test -S "$T_DIR/rd.sock"
#   t_eq "pick" 10.0.0.1:9001 "$("$RESOLVERCTL" -s "$T_DIR/rd.sock" pick svc)"
#   t_done
#
# Contract:
#  - Every assertion prints `ok - DESC` or `not ok - DESC: DETAIL`, counts,
#    and returns 0/1.  Under `set -e` a failed assertion therefore ends the
#    test (the summary and the log tails are still printed); write
#    `t_check ... || true` to keep going.  Assertions must run in the test's
#    own shell (not in a pipeline or $(...)) or their counts are lost.
#  - The last line a test prints is `N passed, M failed`; the exit status is
#    0 iff M == 0 and N > 0, 77 after t_skip, non-zero otherwise.
#  - Processes are tracked by PID only and all of them are stopped however
#    the test ends: TERM, then KILL after 3 s (etcd gets KILL at once, its
#    data is throwaway).  A spawned command should not fork children of its
#    own: only the PID itself is killed.
#  - $T_DIR is removed on exit unless T_KEEP=1.  On failure the tail of every
#    $T_DIR/*.log is printed (T_LOG_LINES lines, default 40).
#  - Linux only: liveness is read from /proc (a zombie child answers kill -0).

# Refuse a second sourcing: it would reset the counters.
if [[ -n ${T_LIB_LOADED:-} ]]; then
    return 0
fi
T_LIB_LOADED=1
T_LIB_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

T_PASS=0
T_FAIL=0
T_DIR=
T_NAME=
T_DONE=0      # t_done/t_skip ran: the summary line is printed
T_CLEANED=0   # t_cleanup ran
declare -gA T_PIDS=()  # name -> pid of a tracked process
declare -ga T_ORDER=() # names in spawn order
declare -gA T_STOPSIG=() # name -> signal t_cleanup sends first (default TERM)
# etcd members: name -> client port / peer port / member's initial cluster
declare -gA T_ETCD_CPORT=() T_ETCD_PPORT=() T_ETCD_CLUSTER=()
export ETCDCTL_API=3

_t_now_ms() {
    # EPOCHREALTIME avoids a fork per poll (bash >= 5).
    if [[ -n ${EPOCHREALTIME:-} ]]; then
        local us=${EPOCHREALTIME/[.,]/}
        echo $((us / 1000))
    else
        echo $(($(date +%s%N) / 1000000))
    fi
}

_t_sleep_50ms() {
    sleep 0.05
}

# Alive and not a zombie (our unreaped children stay in /proc as Z).
_t_alive() {
    local stat
    [[ -r /proc/$1/stat ]] || return 1
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Still our child: a PID that exited long ago may belong to a stranger now,
# and that one must not get our signals.
_t_ours() {
    local stat ppid
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    read -r _ ppid _ <<<"$stat"
    [[ $ppid == "$$" ]]
}

# ---- setup and teardown ----

# t_init NAME: a fresh $T_DIR and the traps that clean up however we exit.
t_init() {
    T_NAME=${1:?t_init NAME}
    local base=${TMPDIR:-/tmp}
    # Short and without odd characters: Unix socket paths in $T_DIR are
    # limited to 107 bytes.
    T_DIR=$(mktemp -d "$base/t-${T_NAME//[^A-Za-z0-9_.-]/_}.XXXXXX") || {
        echo "t_init: cannot create a temporary directory under $base" >&2
        exit 99
    }
    export T_DIR
    : >"$T_DIR/.ports"
    trap '_t_on_exit' EXIT
    trap '_t_on_signal INT 130' INT
    trap '_t_on_signal TERM 143' TERM
}

_t_on_signal() {
    echo "# interrupted by SIG$1" >&2
    T_FAIL=$((T_FAIL + 1))
    exit "$2" # runs the EXIT trap
}

_t_on_exit() {
    local rc=$?
    local orig=$rc
    trap - EXIT INT TERM
    if [[ $T_DONE == 0 ]]; then
        # The test ended without t_done (set -e, exit, a signal): still stop
        # everything and print a summary that says it failed.
        if ((T_FAIL == 0)); then
            echo "not ok - the test ended without t_done (exit status $orig)"
            T_FAIL=1
        fi
        [[ $rc != 0 ]] || rc=1
        t_cleanup "$rc"
        echo "$T_PASS passed, $T_FAIL failed"
    else
        t_cleanup "$rc"
    fi
    exit "$rc"
}

# t_cleanup [STATUS]: stops every tracked process, prints the log tails on
# failure, removes $T_DIR.  Idempotent; the EXIT trap calls it.
t_cleanup() {
    local rc=${1:-0} name pid
    [[ $T_CLEANED == 1 ]] && return 0
    T_CLEANED=1
    local -a live=()
    for name in "${T_ORDER[@]}"; do
        pid=${T_PIDS[$name]:-}
        if [[ -z $pid ]] || ! _t_ours "$pid"; then
            continue
        fi
        # Disowned: bash still reaps it, but does not print "Killed ..."
        # for it (a job killed by SIGKILL is reported on bash's stderr at
        # some later point, outside any redirection we could put around it).
        disown "$pid" 2>/dev/null || true
        kill -s "${T_STOPSIG[$name]:-TERM}" "$pid" 2>/dev/null || true
        live+=("$pid")
    done
    if ((${#live[@]})); then
        local deadline=$(($(_t_now_ms) + 3000)) any
        while :; do
            any=0
            for pid in "${live[@]}"; do
                _t_alive "$pid" && any=1 && break
            done
            [[ $any == 0 ]] && break
            if (($(_t_now_ms) >= deadline)); then
                for pid in "${live[@]}"; do
                    if _t_alive "$pid"; then
                        echo "# pid $pid still runs 3 s after the stop signal: SIGKILL"
                        kill -KILL "$pid" 2>/dev/null || true
                    fi
                done
                break
            fi
            _t_sleep_50ms
        done
    fi
    T_PIDS=()
    T_ORDER=()
    T_STOPSIG=()
    _t_release_ports
    if [[ $T_FAIL -gt 0 || ($rc != 0 && $rc != 77) ]]; then
        _t_log_tails
    fi
    if [[ -n $T_DIR && -d $T_DIR ]]; then
        if [[ ${T_KEEP:-0} == 1 ]]; then
            echo "# T_KEEP=1: kept $T_DIR" >&2
        else
            rm -rf -- "$T_DIR"
        fi
    fi
    return 0
}

_t_log_tails() {
    local f n=${T_LOG_LINES:-40}
    [[ -n $T_DIR && -d $T_DIR ]] || return 0
    for f in "$T_DIR"/*.log; do
        [[ -f $f ]] || continue
        echo "# ---- tail -n $n ${f##*/} ----"
        tail -n "$n" -- "$f" | sed 's/^/# /'
    done
}

# ---- processes ----

# t_spawn NAME CMD...: runs CMD in the background, output appended to
# $T_DIR/NAME.log, stdin from /dev/null.  Prints nothing.
t_spawn() {
    local name=${1:?t_spawn NAME CMD...}
    shift
    [[ $# -gt 0 ]] || { echo "t_spawn: no command for $name" >&2; return 1; }
    [[ -n $T_DIR ]] || { echo "t_spawn: call t_init first" >&2; return 1; }
    if [[ -n ${T_PIDS[$name]:-} ]] && _t_alive "${T_PIDS[$name]}"; then
        echo "t_spawn: $name is already running (pid ${T_PIDS[$name]})" >&2
        return 1
    fi
    # Appending keeps the log of an earlier run under the same name (a
    # restarted etcd member, a reloaded daemon).
    "$@" </dev/null >>"$T_DIR/$name.log" 2>&1 &
    local pid=$!
    [[ -n ${T_PIDS[$name]:-} ]] || T_ORDER+=("$name")
    T_PIDS[$name]=$pid
    return 0
}

# t_h2_backends N [H2SERVER_ARGS...]: starts N h2server backends named b1..bN
# (--name bI, then the arguments given) on free loopback ports, waits until
# each listens (t_fail if one does not within 10 s), and sets the array P to
# their ports in order.
t_h2_backends() {
    local n=${1:?t_h2_backends N [ARGS...]} i port
    shift
    : "${H2SERVER:?}"
    P=()
    for ((i = 1; i <= n; i++)); do
        port=$(t_free_port)
        P+=("$port")
        t_spawn "b$i" "$H2SERVER" --name "b$i" "$@" "$port"
    done
    for port in "${P[@]}"; do
        t_wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" || t_fail "backend $port listens"
    done
}

# t_daemon_env: the names a test of the daemon uses: PY (python3), HERE (this
# folder), SOCK (the daemon's socket in T_DIR), and the functions ctl
# (resolverctl on SOCK), field SERVICE ADDRESS FIELD (one field of the
# instance's `instances --json` row), is_state SERVICE ADDRESS STATE, pick1
# SERVICE (see t_pick_done), picks SERVICE ADDRESS, no_pick SERVICE and
# listening PORT (a TCP connect to loopback succeeds).  A test may define
# its own after the call.
t_daemon_env() {
    : "${RESOLVERCTL:?}"
    PY=/usr/bin/python3
    HERE=$T_LIB_HERE
    SOCK=$T_DIR/rd.sock
    ctl() { "$RESOLVERCTL" -s "$SOCK" "$@"; }
    field() { t_instance_field "$SOCK" "$@"; }
    is_state() { [ "$(field "$1" "$2" state)" = "$3" ]; }
    pick1() { t_pick_done "$SOCK" "$1"; }
    picks() { [ "$(pick1 "$1")" = "$2" ]; }
    no_pick() { ! pick1 "$1" >/dev/null; }
    listening() { "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; }
}

# t_pid NAME: prints the PID of a tracked process.
t_pid() {
    local pid=${T_PIDS[${1:?t_pid NAME}]:-}
    [[ -n $pid ]] || { echo "t_pid: no process named $1" >&2; return 1; }
    echo "$pid"
}

# t_alive NAME: whether the tracked process still runs.
t_alive() {
    local pid=${T_PIDS[${1:?t_alive NAME}]:-}
    [[ -n $pid ]] && _t_alive "$pid"
}

# t_signal NAME SIGNAL: sends a signal and does not wait (SIGHUP reloads).
t_signal() {
    local pid
    pid=$(t_pid "${1:?t_signal NAME SIGNAL}") || return 1
    _t_ours "$pid" || { echo "t_signal: $1 (pid $pid) is not running" >&2; return 1; }
    kill -s "${2:?t_signal NAME SIGNAL}" "$pid"
}

# t_kill NAME [SIGNAL]: sends SIGNAL (default TERM), waits for the process
# to end (SIGKILL after T_KILL_TIMEOUT s, default 10), forgets it.  Returns
# the process's exit status (128+N when killed by signal N).
t_kill() {
    local name=${1:?t_kill NAME [SIGNAL]} sig=${2:-TERM} pid rc=0
    pid=$(t_pid "$name") || return 1
    if ! _t_ours "$pid"; then
        # Already gone: still collect its status.
        wait "$pid" 2>/dev/null || rc=$?
        unset "T_PIDS[$name]"
        _t_forget "$name"
        return "$rc"
    fi
    local deadline=$(($(_t_now_ms) + ${T_KILL_TIMEOUT:-10} * 1000))
    # stderr off: see t_cleanup.
    {
        kill -s "$sig" "$pid" || true
        while _t_alive "$pid"; do
            if (($(_t_now_ms) >= deadline)); then
                echo "# $name (pid $pid) still runs ${T_KILL_TIMEOUT:-10} s after SIG$sig: SIGKILL"
                kill -KILL "$pid" || true
                break
            fi
            _t_sleep_50ms
        done
        wait "$pid" || rc=$?
        jobs >/dev/null
    } 2>/dev/null
    unset "T_PIDS[$name]"
    _t_forget "$name"
    return "$rc"
}

_t_forget() {
    local -a keep=()
    local n
    for n in "${T_ORDER[@]}"; do
        [[ $n == "$1" ]] || keep+=("$n")
    done
    T_ORDER=("${keep[@]}")
}

# t_require CMD...: skips the test unless every CMD is on PATH.
t_require() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || t_skip "$c not found (install the Debian package that provides it)"
    done
}

# ---- ports ----

# t_free_port: prints a TCP port that is free on 127.0.0.1 now, claimed
# for this test until it ends, and not handed out before in this test
# (remembered in $T_DIR/.ports, since callers use $(t_free_port), a
# subshell).  Tests run in parallel (make -j): the kernel's choice (bind to
# port 0) would be an ephemeral port, which another test may be given too,
# or take as the local port of an outgoing connection, before the server is
# started on it.  So the port comes from below the ephemeral range, and is
# claimed with an atomic mkdir in $T_PORT_CLAIMS that other tests respect;
# t_cleanup releases the claims (claims older than a day are stale).
T_PORT_CLAIMS=${T_PORT_CLAIMS:-/tmp/libresolver-test-ports}
t_free_port() {
    local port tries=0 used=${T_DIR:+$T_DIR/.ports} lo
    lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || lo=
    [[ $lo =~ ^[0-9]+$ && $lo -gt 12000 ]] || lo=
    mkdir -p "$T_PORT_CLAIMS" 2>/dev/null || true
    while ((tries++ < 500)); do
        if [[ -n $lo ]]; then
            port=$((10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000)))
        else
            port=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
        fi
        if [[ -n $used ]] && grep -qx "$port" "$used" 2>/dev/null; then
            continue
        fi
        if ! mkdir "$T_PORT_CLAIMS/$port" 2>/dev/null; then
            # Claimed by another test, unless that claim is stale.
            [[ -n $(find "$T_PORT_CLAIMS/$port" -maxdepth 0 -mmin +1440 2>/dev/null) ]] || continue
            touch "$T_PORT_CLAIMS/$port" 2>/dev/null || continue
        fi
        if ! _t_port_bindable "$port"; then
            rmdir "$T_PORT_CLAIMS/$port" 2>/dev/null || true
            continue
        fi
        [[ -n $used ]] && echo "$port" >>"$used"
        echo "$port"
        return 0
    done
    echo "t_free_port: no free port found" >&2
    return 1
}

# _t_port_bindable PORT: nothing on 127.0.0.1:PORT (a listener, or a
# connection using it as its local port).
_t_port_bindable() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1" 2>/dev/null
    else
        # No python3: a refused connect means nobody listens.
        ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# _t_release_ports: gives back the ports t_free_port claimed for this test.
_t_release_ports() {
    local port
    [[ -n ${T_DIR:-} && -f $T_DIR/.ports ]] || return 0
    while read -r port; do
        [[ $port =~ ^[0-9]+$ ]] && rmdir "$T_PORT_CLAIMS/$port" 2>/dev/null
    done <"$T_DIR/.ports"
    return 0
}

# ---- etcd ----

# t_etcdctl ARGS...: etcdctl against $ETCD_ENDPOINTS if set, else
# $ETCD_ENDPOINT.  A later --endpoints in ARGS wins.
t_etcdctl() {
    local ep=${ETCD_ENDPOINTS:-${ETCD_ENDPOINT:-}}
    [[ -n $ep ]] || { echo "t_etcdctl: no etcd started" >&2; return 1; }
    ETCDCTL_API=3 etcdctl --endpoints "$ep" --dial-timeout 2s --command-timeout 5s "$@"
}

# _t_etcd_url PORT: a client URL, https:// once tls_etcd_setup (tlsca.sh)
# set T_ETCD_TLS_DIR.  Peers always talk http (_t_etcd_peer_url).
_t_etcd_url() {
    if [[ -n ${T_ETCD_TLS_DIR:-} ]]; then
        echo "https://127.0.0.1:$1"
    else
        echo "http://127.0.0.1:$1"
    fi
}

_t_etcd_peer_url() {
    echo "http://127.0.0.1:$1"
}

# _t_etcd_spawn MEMBER STATE: (re)starts one member from the T_ETCD_* tables.
_t_etcd_spawn() {
    local m=$1 state=$2
    local curl peer
    curl=$(_t_etcd_url "${T_ETCD_CPORT[$m]}")
    peer=$(_t_etcd_peer_url "${T_ETCD_PPORT[$m]}")
    # --logger zap --log-level error: etcd 3.4's quiet, non-deprecated
    # logging.  Half the default raft timings: elections (start-up, member
    # restarts) take half as long, still far above loopback latency.
    # T_ETCD_FLAGS adds flags (word-split).  A name-derived cluster token keeps members of different
    # throwaway clusters from joining each other.
    # etcd reads ETCD_* variables as flags: keep ours (ETCD_ENDPOINT...)
    # away from it.  env execs etcd, so the tracked PID is etcd's.
    local -a unset=() v tls=()
    if [[ -n ${T_ETCD_TLS_DIR:-} ]]; then
        # Clients over TLS with a certificate of the private CA, required.
        tls=(--cert-file "$T_ETCD_TLS_DIR/etcd-server.pem" --key-file "$T_ETCD_TLS_DIR/etcd-server.key"
            --trusted-ca-file "$T_ETCD_TLS_DIR/ca.pem" --client-cert-auth)
    fi
    for v in $(compgen -e); do
        [[ $v == ETCD_* ]] && unset+=(-u "$v")
    done
    # shellcheck disable=SC2086 # T_ETCD_FLAGS is split on purpose
    t_spawn "etcd-$m" env "${unset[@]}" etcd --name "$m" --data-dir "$T_DIR/$m.etcd" \
        --listen-client-urls "$curl" --advertise-client-urls "$curl" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "${T_ETCD_CLUSTER[$m]}" --initial-cluster-state "$state" \
        --initial-cluster-token "t-${T_DIR##*/}" \
        --heartbeat-interval 50 --election-timeout 500 \
        --logger zap --log-level error "${tls[@]}" ${T_ETCD_FLAGS:-} || return 1
    # Throwaway data: no graceful stop at cleanup.  Members of a cluster
    # stopped together can spend seconds handing leadership to each other.
    T_STOPSIG[etcd-$m]=KILL
}

# _t_etcd_wait_healthy MEMBER: up to T_ETCD_TIMEOUT s (default 20).
_t_etcd_wait_healthy() {
    local m=$1 url pid
    url=$(_t_etcd_url "${T_ETCD_CPORT[$m]}")
    pid=${T_PIDS[etcd-$m]:-}
    local deadline=$(($(_t_now_ms) + ${T_ETCD_TIMEOUT:-20} * 1000))
    while :; do
        if ETCDCTL_API=3 etcdctl --endpoints "$url" --dial-timeout 1s --command-timeout 2s \
            endpoint health >/dev/null 2>&1; then
            return 0
        fi
        if ! _t_alive "$pid"; then
            t_fail "etcd $m is healthy" "it exited (see etcd-$m.log)"
            return 1
        fi
        if (($(_t_now_ms) >= deadline)); then
            t_fail "etcd $m is healthy" "no healthy answer on $url in ${T_ETCD_TIMEOUT:-20} s"
            return 1
        fi
        sleep 0.1
    done
}

# t_etcd_start NAME: a single-member etcd on loopback; sets and exports
# ETCD_ENDPOINT (and ETCD_URL_NAME).  Called again for the same NAME after
# t_etcd_stop it restarts on the same ports and data.  Counts a failure and
# returns 1 when etcd does not become healthy.
t_etcd_start() {
    local name=${1:?t_etcd_start NAME} state=new
    t_require etcd etcdctl
    if [[ -n ${T_ETCD_CPORT[$name]:-} ]]; then
        state=existing
    else
        T_ETCD_CPORT[$name]=$(t_free_port) || return 1
        T_ETCD_PPORT[$name]=$(t_free_port) || return 1
        T_ETCD_CLUSTER[$name]="$name=$(_t_etcd_peer_url "${T_ETCD_PPORT[$name]}")"
    fi
    _t_etcd_spawn "$name" "$state" || return 1
    _t_etcd_wait_healthy "$name" || return 1
    ETCD_ENDPOINT=$(_t_etcd_url "${T_ETCD_CPORT[$name]}")
    export ETCD_ENDPOINT
    export "ETCD_URL_${name//[^A-Za-z0-9_]/_}=$ETCD_ENDPOINT"
}

# t_etcd_stop NAME [SIGNAL]
t_etcd_stop() {
    t_kill "etcd-${1:?t_etcd_stop NAME}" "${2:-TERM}"
}

# t_etcd_cluster3 NAME: three members NAME-1..NAME-3 on loopback; sets and
# exports ETCD_ENDPOINTS (comma list, member order).
t_etcd_cluster3() {
    local name=${1:?t_etcd_cluster3 NAME} i m cluster="" eps=""
    t_require etcd etcdctl
    for i in 1 2 3; do
        m=$name-$i
        T_ETCD_CPORT[$m]=$(t_free_port) || return 1
        T_ETCD_PPORT[$m]=$(t_free_port) || return 1
        cluster+="${cluster:+,}$m=$(_t_etcd_peer_url "${T_ETCD_PPORT[$m]}")"
        eps+="${eps:+,}$(_t_etcd_url "${T_ETCD_CPORT[$m]}")"
    done
    # All three start at once: none becomes healthy before there is a quorum.
    for i in 1 2 3; do
        T_ETCD_CLUSTER[$name-$i]=$cluster
        _t_etcd_spawn "$name-$i" new || return 1
    done
    for i in 1 2 3; do
        _t_etcd_wait_healthy "$name-$i" || return 1
    done
    ETCD_ENDPOINTS=$eps
    export ETCD_ENDPOINTS
}

# t_etcd_member_url NAME I: the client URL of member I (1..3).
t_etcd_member_url() {
    _t_etcd_url "${T_ETCD_CPORT[${1:?}-${2:?}]:?no such member}"
}

# t_etcd_member_kill NAME I [SIGNAL]: stops member I (default SIGTERM; KILL
# for a crash).
t_etcd_member_kill() {
    local rc=0
    t_kill "etcd-${1:?t_etcd_member_kill NAME I}-${2:?t_etcd_member_kill NAME I}" "${3:-TERM}" || rc=$?
    # Killed by the signal we sent is what was asked for.
    [[ $rc == 0 || $rc -gt 128 ]]
}

# t_etcd_member_start NAME I: restarts member I with its data dir and
# waits until it is healthy again.
t_etcd_member_start() {
    local m=${1:?t_etcd_member_start NAME I}-${2:?t_etcd_member_start NAME I}
    [[ -n ${T_ETCD_CPORT[$m]:-} ]] || { echo "t_etcd_member_start: no member $m" >&2; return 1; }
    _t_etcd_spawn "$m" existing || return 1
    _t_etcd_wait_healthy "$m"
}

# ---- assertions ----

t_ok() {
    T_PASS=$((T_PASS + 1))
    echo "ok - ${1:?t_ok DESC}"
    return 0
}

t_fail() {
    T_FAIL=$((T_FAIL + 1))
    if [[ -n ${2:-} ]]; then
        echo "not ok - ${1:?t_fail DESC [DETAIL]}: $2"
    else
        echo "not ok - ${1:?t_fail DESC [DETAIL]}"
    fi
    return 1
}

# Output of the last checked command, for failure details.
_t_outfile() {
    if [[ -n $T_DIR && -d $T_DIR ]]; then
        echo "$T_DIR/.check.out"
    else
        echo /dev/null
    fi
}

_t_out() {
    local f
    f=$(_t_outfile)
    if [[ -s $f ]]; then
        printf ' [output: %s]' "$(tail -n 5 -- "$f" | tr '\n' ' ' | sed 's/ *$//')"
    fi
    return 0
}

# t_check DESC CMD...: ok iff CMD exits 0 (CMD runs in this shell, so its
# side effects stay; its output is kept for the failure detail).
t_check() {
    local desc=${1:?t_check DESC CMD...} rc=0
    shift
    "$@" >"$(_t_outfile)" 2>&1 || rc=$?
    if [[ $rc == 0 ]]; then
        t_ok "$desc"
    else
        t_fail "$desc" "exit status $rc from: $*$(_t_out)"
    fi
}

# t_eq DESC EXPECTED ACTUAL
t_eq() {
    if [[ $# -ne 3 ]]; then
        t_fail "${1:-t_eq}" "t_eq takes DESC EXPECTED ACTUAL, got $# arguments"
        return 1
    fi
    if [[ $2 == "$3" ]]; then
        t_ok "$1"
    else
        t_fail "$1" "expected '$2', got '$3'"
    fi
}

# t_wait_until TIMEOUT_S CMD...: polls CMD every 50 ms; 0 once it succeeds,
# 1 after TIMEOUT_S (fractions allowed: 0.5).  Counts nothing.
t_wait_until() {
    local timeout=${1:?t_wait_until TIMEOUT_S CMD...}
    shift
    local ms
    ms=$(awk -v s="$timeout" 'BEGIN { printf "%d", s * 1000 }')
    local deadline=$(($(_t_now_ms) + ms)) out
    out=$(_t_outfile)
    while :; do
        "$@" >"$out" 2>&1 && return 0
        (($(_t_now_ms) >= deadline)) && return 1
        _t_sleep_50ms
    done
}

# t_wait_for DESC TIMEOUT_S CMD...: t_wait_until that counts.
t_wait_for() {
    local desc=${1:?t_wait_for DESC TIMEOUT_S CMD...} timeout=${2:?t_wait_for DESC TIMEOUT_S CMD...}
    shift 2
    if t_wait_until "$timeout" "$@"; then
        t_ok "$desc"
    else
        t_fail "$desc" "not true after ${timeout} s: $*$(_t_out)"
    fi
}

# ---- the end ----

# t_done: stops everything, prints `N passed, M failed` as the last line and
# exits 0 iff M == 0 and at least one assertion ran.
t_done() {
    local rc=0
    if [[ $T_PASS -eq 0 && $T_FAIL -eq 0 ]]; then
        echo "not ok - no assertion ran"
        T_FAIL=1
    fi
    [[ $T_FAIL -eq 0 ]] || rc=1
    T_DONE=1
    t_cleanup "$rc"
    echo "$T_PASS passed, $T_FAIL failed"
    exit "$rc"
}

# t_skip REASON: ends the test as skipped (exit 77, automake's SKIP).
t_skip() {
    echo "# SKIP: ${1:-no reason given}"
    T_DONE=1
    T_PASS=0
    T_FAIL=0
    t_cleanup 77
    echo "0 passed, 0 failed"
    exit 77
}

# ---- network namespaces (tests that drop packets in the kernel) ----

# The namespace and host-side veth a test made ("" when none): set them
# right after `ip netns add` / `ip link add`, and call t_netns_trap once.
NS='' VH=''
# t_netns_cleanup: kills what runs inside the test's own namespace (only
# processes this test started there), flushes its iptables rules and
# removes the veth pair and the namespace.  Idempotent.
t_netns_cleanup() {
    [[ -n $NS ]] || return 0
    local pid
    for pid in $(ip netns pids "$NS" 2>/dev/null); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns exec "$NS" iptables -F INPUT 2>/dev/null || true
    ip netns exec "$NS" iptables -F OUTPUT 2>/dev/null || true
    if [[ -n $VH ]]; then ip link del "$VH" 2>/dev/null || true; fi
    ip netns del "$NS" 2>/dev/null || true
    NS=
}
# t_netns_trap: the EXIT trap removes the namespace, then does lib.sh's
# own cleanup with the exit status it would have seen.
t_netns_trap() {
    # shellcheck disable=SC2154 # _rc is set inside the trap
    trap '_rc=$?; t_netns_cleanup; (exit $_rc); _t_on_exit' EXIT
}

# ---- resolverd introspection ----

# t_instance_field SOCKET SERVICE ADDRESS FIELD: one field of the
# instance's row in `resolverctl --json instances SERVICE` ("" if none).
t_instance_field() {
    "$RESOLVERCTL" -s "$1" --json instances "$2" | python3 -c "
import json, sys
for i in json.load(sys.stdin):
    if i['address'] == sys.argv[1]:
        print(i.get(sys.argv[2], ''))" "$3" "$4"
}

# t_pick_done SOCKET SERVICE: picks through resolverctl and reports the
# ticket done at once (a held CLI pick is detached: a ticket left behind would
# hold resolverd's graceful stop); prints the address.  The exit status of
# the pick when it fails (3: nothing READY).
t_pick_done() {
    local out rc=0 addr ticket
    out=$("$RESOLVERCTL" -s "$1" --json pick --hold "$2" 2>/dev/null) || rc=$?
    [[ $rc == 0 ]] || return "$rc"
    read -r addr ticket < <(python3 -c "import json,sys; j=json.load(sys.stdin); print(j['address'], j['ticket'])" <<<"$out")
    "$RESOLVERCTL" -s "$1" done "$ticket" >/dev/null
    echo "$addr"
}
