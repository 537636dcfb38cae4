# report.sh - sourced by the *_bench.sh scripts: one row of the summary
# table `make bench` prints at the end (tests/bench/bench.sh).
#
#   bench_row AREA FIGURE MEASURED BASELINE GOAL VERDICT
#
# AREA      the subject: "pick", "etcd", "subchannel", "picker"
# FIGURE    what was measured, with its unit ("round trip (us)")
# MEASURED  the figure for resolverd / libresolver
# BASELINE  the in-run baseline it is compared with ("12.5 echo"), or "-"
# GOAL      the goal as written in the issue ("<= 1.2x echo"), or "-"
# VERDICT   "met", "MISSED" or "-" (no goal, or not measurable here)
#
# Rows go to $BENCH_REPORT (tab-separated) when bench.sh set it; a script
# run alone just prints them.
bench_row()
{
    local row
    row=$(printf '%s\t%s\t%s\t%s\t%s\t%s' "$1" "$2" "${3:--}" "${4:--}" "${5:--}" "${6:--}")
    if [[ -n ${BENCH_REPORT:-} ]]; then
        printf '%s\n' "$row" >>"$BENCH_REPORT"
    else
        printf 'row: %s\n' "$row"
    fi
}

# bench_verdict OP MEASURED LIMIT: "met" when MEASURED OP LIMIT holds (OP
# one of <= >= < >), "MISSED" when it does not, "-" when either is empty
# or not a number.
bench_verdict()
{
    awk -v op="$1" -v a="$2" -v b="$3" 'BEGIN {
        if (a !~ /^[-+0-9.eE]+$/ || b !~ /^[-+0-9.eE]+$/) { print "-"; exit }
        a += 0; b += 0
        ok = (op == "<=" && a <= b) || (op == ">=" && a >= b) || (op == "<" && a < b) || (op == ">" && a > b)
        print ok ? "met" : "MISSED"
    }'
}
