#!/usr/bin/env bash
# bench.sh - `make bench`: runs every tests/bench/*_bench.sh in turn (each
# prints its own figures and asserts nothing) and says which ones could not
# run.  BENCH_ONLY=NAME (e.g. etcd) runs tests/bench/NAME_bench.sh alone.
# The environment (RESOLVERD, RESOLVERCTL, H2SERVER, PICK_BENCH, ...) is
# passed through from tests/Makefile.am.
#
# At the end: one table of every figure with a goal or a baseline (the
# rows each script gave to bench_row, see report.sh), printed and written
# as Markdown to BENCH_REPORT_MD (bench-report.md in the current directory)
# with the date and the machine, ready for the README.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH_REPORT=$(mktemp)
export BENCH_REPORT
trap 'rm -f "$BENCH_REPORT"' EXIT
REPORT_MD=${BENCH_REPORT_MD:-bench-report.md}
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
machine="$(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)),"
machine+=" $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo),"
machine+=" $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
{
    echo "Taken $(date -u '+%Y-%m-%d %H:%M UTC') on $machine."
    echo
    echo "| area | figure | measured | in-run baseline | goal | verdict |"
    echo "|---|---|---|---|---|---|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$BENCH_REPORT"
} >"$REPORT_MD"
echo "==== summary (also in $(realpath "$REPORT_MD"))"
echo "$machine"
awk -F'\t' 'BEGIN { printf "%-11s %-62s %-30s %-28s %-16s %s\n", "area", "figure", "measured", "baseline", "goal", "verdict" }
    { printf "%-11s %-62s %-30s %-28s %-16s %s\n", $1, $2, $3, $4, $5, $6 }' "$BENCH_REPORT"
if ((${#failed[@]})); then
    echo "bench: could not complete: ${failed[*]}"
    exit 1
fi
