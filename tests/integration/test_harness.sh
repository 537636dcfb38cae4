#!/usr/bin/env bash
# test_harness.sh - self-test of lib.sh: a throwaway etcd, put/get, process
# tracking by PID, the assertion helpers.  It prints the PIDs it started
# (`# pid NAME PID`) so that a caller can check nothing outlives it.
#
# T_HARNESS_FAIL=1 adds one deliberately failing assertion, to see the
# log tails and the non-zero exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck disable=SC2317 # both are called through t_check
not() { ! "$@"; }
# shellcheck disable=SC2317
is_loopback_url() { [[ $1 == http://127.0.0.1:* ]]; }

t_init harness
t_require etcd etcdctl

# Ports: distinct across calls.
p1=$(t_free_port)
p2=$(t_free_port)
p3=$(t_free_port)
t_check "free ports are distinct" test "$p1" != "$p2" -a "$p2" != "$p3" -a "$p1" != "$p3"

t_etcd_start e1
echo "# pid etcd $(t_pid etcd-e1)"
t_check "ETCD_ENDPOINT is a loopback URL" is_loopback_url "$ETCD_ENDPOINT"
t_eq "ETCD_URL_e1 is exported" "$ETCD_ENDPOINT" "$(printenv ETCD_URL_e1)"
t_check "etcdctl put" t_etcdctl put /harness/key hello
t_eq "etcdctl get" hello "$(t_etcdctl get --print-value-only /harness/key)"
t_wait_for "the key is visible within 5 s" 5 t_etcdctl get /harness/key

# A dummy process tracked by PID.
t_spawn sleeper sleep 1000
pid=$(t_pid sleeper)
echo "# pid sleeper $pid"
t_check "sleeper runs" kill -0 "$pid"
t_check "t_alive sees it" t_alive sleeper
rc=0
t_kill sleeper || rc=$?
t_eq "t_kill returns the status of a TERM death" 143 "$rc"
t_check "sleeper is gone" not kill -0 "$pid"
t_check "t_pid forgets it" not t_pid sleeper

# Left running on purpose: cleanup must stop it.
t_spawn sleeper2 sleep 1000
echo "# pid sleeper2 $(t_pid sleeper2)"

# A command that ignores TERM is killed after the grace time.
t_spawn stubborn bash -c 'trap "" TERM; echo started; while :; do sleep 0.1; done'
t_wait_for "a spawned command logs to NAME.log" 5 grep -q started "$T_DIR/stubborn.log"
rc=0
T_KILL_TIMEOUT=1 t_kill stubborn TERM || rc=$?
t_eq "t_kill escalates to KILL" 137 "$rc"

# Restart of a single etcd keeps its data and port.
url=$ETCD_ENDPOINT
t_etcd_stop e1 || true
t_check "etcd is down" not t_etcdctl --command-timeout 500ms get /harness/key
t_etcd_start e1
t_eq "same endpoint after restart" "$url" "$ETCD_ENDPOINT"
t_eq "data kept across restart" hello "$(t_etcdctl get --print-value-only /harness/key)"
echo "# pid etcd $(t_pid etcd-e1)"

t_check "t_wait_until gives up on a false command" not t_wait_until 0.2 false
t_check "t_wait_until returns once a command succeeds" t_wait_until 5 test -d "$T_DIR"

if [[ ${T_HARNESS_FAIL:-0} == 1 ]]; then
    t_eq "a deliberately failing assertion" expected actual || true
fi
t_done
