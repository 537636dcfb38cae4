#!/usr/bin/env bash
# cache_file under churn (issue 11 item 23): etcd puts and deletes in a loop
# for a few seconds; the file is written at most once per 2 s (status
# cache_writes, and the fsync calls strace sees when it can trace here),
# from a writer thread; after SIGTERM the file holds the last state etcd had,
# also when that state is younger than the last periodic write.
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
t_done
