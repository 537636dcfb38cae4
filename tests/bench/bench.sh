#!/usr/bin/env bash
# bench.sh - `make bench`: runs every tests/bench/*_bench.sh in turn (each
# prints its own figures and asserts nothing) and says which ones could not
# run.  BENCH_ONLY=NAME (e.g. etcd) runs tests/bench/NAME_bench.sh alone.
# The environment (RESOLVERD, RESOLVERCTL, H2SERVER, PICK_BENCH, ...) is
# passed through from tests/Makefile.am.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
failed=()
for script in "$HERE"/*_bench.sh; do
    [[ -f $script ]] || continue
    name=$(basename "$script" _bench.sh)
    if [[ -n ${BENCH_ONLY:-} && $name != "$BENCH_ONLY" ]]; then
        continue
    fi
    echo "==== $name ($(basename "$script"))"
    start=$(date +%s)
    if ! bash "$script"; then
        failed+=("$name")
    fi
    echo "==== $name: $(($(date +%s) - start)) s"
    echo
done
if ((${#failed[@]})); then
    echo "bench: could not complete: ${failed[*]}"
    exit 1
fi
