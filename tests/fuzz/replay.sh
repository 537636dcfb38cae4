#!/bin/sh
# Replays every fuzz corpus (seeds and past crashes) through its target.
fail=0 pass=0
for t in watch registry range config proto; do
    if "$FUZZ_BIN/replay_$t" "$FUZZ_CORPUS/$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
