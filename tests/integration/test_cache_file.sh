#!/usr/bin/env bash
# cache_file under churn (issue 11 item 23): etcd puts and deletes in a loop
# for a few seconds; the file is written at most once per 2 s (status
# cache_writes, and the fsync calls strace sees when it can trace here),
# from a writer thread; after SIGTERM the file holds the last state etcd had,
# also when that state is younger than the last periodic write.
# Run-time registrations (issue 14): `resolverctl register` is kept in the
# file and registered again at the next start, a deregistered one is not, and
# the configuration's own "register" entries are not copied into it.
set -u
. "$(dirname "$0")/lib.sh"
t_init cache-file
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"

t_etcd_start e1 || t_done
SOCK=$T_DIR/rd.sock
CACHE=$T_DIR/cache.json
CHURN_S=8
cat >"$T_DIR/rd.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"] },
  "socket": { "path": "$SOCK" },
  "cache_file": "$CACHE",
  "defaults": { "drain_timeout_ms": 1000 },
  "services": [ { "name": "churn.rpc" } ] }
EOF
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json"
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"

# Every fsync of every thread of the daemon, when ptrace is allowed here
# (not in the sanitizer build: LeakSanitizer cannot run under ptrace).
traced=0
if command -v strace >/dev/null && strace -qq -o /dev/null true 2>/dev/null &&
    ! grep -q __asan_init "$RESOLVERD"; then
    t_spawn strace strace -f -qq -e trace=fsync,fdatasync -o "$T_DIR/fsync.trace" \
        -p "$(t_pid resolverd)"
    traced=1
    sleep 0.5 # attached
fi

# Addresses nobody listens on: the instances only need to exist.
values=()
for p in 20001 20002 20003 20004 20005; do values+=(--value "127.0.0.1:$p"); done
"$PY" "$(dirname "$0")/etcd_churn.py" --endpoints "$ETCD_ENDPOINT" --prefix churn.rpc/ \
    "${values[@]}" --keys 8 --seconds "$CHURN_S" --rate 50 --lease-ttl 600 --seed 11 \
    >"$T_DIR/churn.out" 2>&1
sed 's/^/# /' "$T_DIR/churn.out"
t_check "the churn ran" grep -q '^churn: [1-9][0-9]* operations' "$T_DIR/churn.out"
writes=$(status_field cache_writes)
echo "# cache writes during ${CHURN_S} s of churn at 50 operations/s: $writes"
# One write at the first listing, then one per 2 s at most, and one the
# churn's last changes may still bring.
t_check "cache writes are coalesced (<= ${CHURN_S}/2 + 2)" test "${writes:-99}" -le $((CHURN_S / 2 + 2))
t_check "the cache was written during the churn" test "${writes:-0}" -ge 2

# The final state: one more key, and SIGTERM as soon as the daemon has it
# (within the 2 s a write may wait).
ec put churn.rpc/final 127.0.0.1:29999 >/dev/null
t_wait_for "the daemon lists the final key" 5 bash -c "'$RESOLVERCTL' -s '$SOCK' instances churn.rpc | grep -q 127.0.0.1:29999"
if grep -q 127.0.0.1:29999 "$CACHE" 2>/dev/null; then before=yes; else before=no; fi
rc=0
t_kill resolverd TERM || rc=$?
t_eq "SIGTERM stops resolverd with status 0" 0 "$rc"
echo "# the final key was on disk before SIGTERM: $before"
cached=$("$PY" -c "
import json, sys
doc = json.load(open(sys.argv[1]))
print('\n'.join(sorted({kv['address'] for kv in doc['services']['churn.rpc']['kvs']})))" "$CACHE")
t_eq "after SIGTERM the cache_file holds what etcd holds" "$(etcd_values churn.rpc/)" "$cached"
t_check "no temporary file is left" test ! -e "$CACHE.tmp"

if ((traced)); then
    t_wait_until 5 bash -c "! kill -0 $(t_pid strace) 2>/dev/null" || true
    fsyncs=$(grep -c 'fsync(' "$T_DIR/fsync.trace" || true)
    echo "# fsync calls seen by strace from the churn's start to the exit: $fsyncs"
    # the writes above, the final key's, at most one more during the wait
    t_check "fsyncs are bounded like the writes" test "$fsyncs" -le $((CHURN_S / 2 + 4))
fi

# ---- run-time registrations outlive a restart ----
P1=127.0.0.1:$(t_free_port)
P2=127.0.0.1:$(t_free_port)
P3=127.0.0.1:$(t_free_port)
cat >"$T_DIR/reg.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"] }, "socket": { "path": "$SOCK" },
  "cache_file": "$CACHE", "deregister_grace_ms": 0,
  "register": [ { "service": "cfg.svc", "address": "$P1", "ttl_ms": 3000 } ] }
EOF
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/reg.json"
t_wait_for "resolverd serves its socket again" 10 test -S "$SOCK"
out=$(ctl register rt.svc "$P2" --format native --ttl-ms 3000 --zone z1 --weight 3 \
    --metadata '{"env":"prod"}')
t_check "register says the registration is kept in cache_file" grep -q "kept in cache_file" <<<"$out"
t_eq "the reply says persisted" true "$(ctl --json register rt2.svc "$P3" --ttl-ms 3000 |
    "$PY" -c 'import json,sys; print(str(json.load(sys.stdin)["persisted"]).lower())')"
NATIVE="{\"address\":\"$P2\",\"weight\":3,\"zone\":\"z1\",\"metadata\":{\"env\":\"prod\"}}"
native_is() { [[ $(ec get --print-value-only "rt.svc/$P2") == "$NATIVE" ]]; }
t_wait_for "rt.svc is registered" 3 native_is
ctl deregister rt2.svc "$P3" >/dev/null
# cached_regs: one line per registration the file keeps.
cached_regs() {
    "$PY" -c "
import json, sys
for r in json.load(open(sys.argv[1])).get('registrations', []):
    print(r['service'], r['address'], r['format'], r['ttl_ms'], r['weight'], r.get('zone', '-'),
          json.dumps(r.get('metadata'), sort_keys=True, separators=(',', ':')))" "$CACHE" 2>/dev/null
}
WANT="rt.svc $P2 native 3000 3 z1 {\"env\":\"prod\"}"
cached_is() { [[ $(cached_regs) == "$1" ]]; }
t_wait_for "within the write interval the file keeps rt.svc only (not the deregistered one, not the configuration's)" 5 \
    cached_is "$WANT"
rc=0
t_kill resolverd TERM || rc=$?
t_eq "SIGTERM stops resolverd with status 0" 0 "$rc"
t_check "SIGTERM deleted the key" test -z "$(ec get --print-value-only "rt.svc/$P2")"
t_eq "and the file still keeps the registration" "$WANT" "$(cached_regs)"

t_spawn resolverd "$RESOLVERD" -c "$T_DIR/reg.json"
t_wait_for "restarted" 10 test -S "$SOCK"
regs_are() {
    [[ $(ctl --json registrations | "$PY" -c "
import json, sys
print(' '.join('%s/%s/%s' % (r['service'], r['origin'], r['state']) for r in json.load(sys.stdin)))") == "$1" ]]
}
t_wait_for "the run-time registration is back, REGISTERED, beside the configuration's" 5 \
    regs_are "cfg.svc/config/REGISTERED rt.svc/runtime/REGISTERED"
t_check "with its key and value as before" native_is
t_check "the deregistered one is not" test -z "$(ec get --prefix --keys-only rt2.svc/)"
t_check "the log says it was restored" grep -q "1 run-time registrations restored" "$T_DIR/resolverd.log"
ctl deregister rt.svc "$P2" >/dev/null
t_kill resolverd TERM >/dev/null 2>&1 || true
t_eq "deregistered: the file no longer keeps it" "" "$(cached_regs)"
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/reg.json"
t_wait_for "restarted once more" 10 test -S "$SOCK"
t_wait_for "only the configuration's registration" 5 regs_are "cfg.svc/config/REGISTERED"
t_done
