#!/usr/bin/env bash
# The embedded engine with four picking threads while instances churn in a
# real etcd and the engine reloads its configuration every 20 ms, each time
# with other options for the service being picked
# (tests/integration/engine_threads.c).  contrib/run-tests.sh runs it under
# TSan too: a pick must never read what a reload rewrites.
set -u
. "$(dirname "$0")/lib.sh"
t_init engine_threads
t_require etcd etcdctl
: "${ENGINE_THREADS:?}" "${H2SERVER:?}"
t_etcd_start e1 || t_done
t_h2_backends 4
t_etcdctl put mt/1 "127.0.0.1:${P[0]}" >/dev/null
t_etcdctl put mt/2 "127.0.0.1:${P[1]}" >/dev/null

t_spawn engine "$ENGINE_THREADS" "$ETCD_ENDPOINT" mt 8 20
# Churn: instances 3 and 4 come and go every 100 ms for ~6 s.
for round in $(seq 60); do
    if ((round % 2)); then
        t_etcdctl put mt/3 "127.0.0.1:${P[2]}" >/dev/null
        t_etcdctl del mt/4 >/dev/null
    else
        t_etcdctl put mt/4 "127.0.0.1:${P[3]}" >/dev/null
        t_etcdctl del mt/3 >/dev/null
    fi
    t_alive engine || break
    sleep 0.1
done
rc=0
t_wait_until 20 bash -c "! kill -0 $(t_pid engine) 2>/dev/null" || true
t_kill engine TERM || rc=$?
t_eq "four threads picked through churn and reloads, and the engine stopped cleanly" 0 "$rc"
echo "# $(grep 'picks=' "$T_DIR/engine.log")"
t_check "picks were made" grep -q 'picks=[1-9]' "$T_DIR/engine.log"
t_check "reloads happened while threads picked" grep -q 'reloads=[1-9][0-9]* reload_errors=0' "$T_DIR/engine.log"
t_check "no sanitizer report" bash -c "! grep -q 'Sanitizer' '$T_DIR/engine.log'"

# Picks of services that cannot be discovered yet, or at all (the cap is
# reached): one discover request per name, refusals on the picking thread,
# one warning per 10 s.  Before: ~300 MiB in 2 s, then millions of lines.
rc=0
timeout 60 "$ENGINE_THREADS" --inbox "$ETCD_ENDPOINT" 4 >"$T_DIR/inbox.out" 2>"$T_DIR/inbox.err" ||
    rc=$?
sed 's/^/# /' "$T_DIR/inbox.out"
t_eq "picks of undiscoverable services keep RSS and the log bounded" 0 "$rc"
t_check "the cap answers limit" grep -q '^refused: .* limit=[1-9]' "$T_DIR/inbox.out"
t_check "no sanitizer report (inbox)" bash -c "! grep -q 'Sanitizer' '$T_DIR/inbox.err'"

# done on the engine thread for a ticket another thread just took (its
# message still in the inbox): found and released, not "not found".
rc=0
timeout 60 "$ENGINE_THREADS" --done-on-loop "$ETCD_ENDPOINT" mt 20 >"$T_DIR/lockstep.out" \
    2>"$T_DIR/lockstep.err" || rc=$?
sed 's/^/# /' "$T_DIR/lockstep.out"
t_eq "done on the engine thread releases a ticket picked on another thread" 0 "$rc"
t_check "no sanitizer report (done on loop)" bash -c "! grep -q 'Sanitizer' '$T_DIR/lockstep.err'"
t_done
