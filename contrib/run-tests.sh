#!/usr/bin/env bash
# run-tests.sh - installs what is missing, builds, and runs every test.
#
#   contrib/run-tests.sh [--quick] [--skip-deps]
#
# Steps, each under its own header; the first failure stops the run:
#   deps        contrib/install-deps.sh
#   autogen     ./autogen.sh (configure does not exist in a fresh clone)
#   release     _build/release: configure --enable-werror; make; make check
#   distcheck   make distcheck in _build/release
#   asan        _build/asan: the same with --enable-sanitizers (ASan+UBSan)
#   tsan        _build/tsan: ThreadSanitizer build; the test where four
#               threads pick while instances churn (test_engine_threads)
#   valgrind    every unit test (tests/unit/check_*) of the release build
#               under valgrind --leak-check=full, CK_FORK=no
#   fuzz        _build/fuzz: clang libFuzzer targets, FUZZ_RUNS runs each
#               (skipped when clang is not installed)
#
#   --quick      deps, autogen (only if configure is missing or stale) and
#                the release build with make check; nothing else
#   --skip-deps  do not run install-deps.sh (not root, deps known present)
#
# Environment: JOBS (default: nproc), FUZZ_RUNS (default 20000).
# Works from any directory; the build directories are under the repository.
set -euo pipefail

quick=0
deps=1
for arg in "$@"; do
    case $arg in
    --quick) quick=1 ;;
    --skip-deps) deps=0 ;;
    -h | --help)
        sed -n '2,24s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *)
        echo "run-tests.sh: unknown argument $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$ROOT"
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
FUZZ_RUNS=${FUZZ_RUNS:-20000}

# ---- step bookkeeping ----

steps=()    # "status seconds name" per step run so far
current=""  # the step running now (for the summary on failure)
n_step=0
t_start=$SECONDS
step_start=$SECONDS

summary() {
    local rc=$?
    trap - EXIT
    if [[ -n $current ]]; then
        steps+=("FAILED $((SECONDS - step_start)) $current")
    fi
    echo
    echo "======================================================================"
    echo "== summary ($((SECONDS - t_start)) s)"
    echo "======================================================================"
    local s status secs name
    for s in "${steps[@]}"; do
        read -r status secs name <<<"$s"
        printf '  %-8s %5s s  %s\n' "$status" "$secs" "$name"
    done
    if [[ $rc == 0 ]]; then
        echo "== all steps passed"
    else
        echo "== FAILED in step: ${current:-?} (exit status $rc)"
    fi
    exit "$rc"
}
trap summary EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# step NAME CMD...: runs CMD under a header; a failure ends the run (set -e
# and the EXIT trap's summary).
step() {
    local name=$1
    shift
    n_step=$((n_step + 1))
    echo
    echo "======================================================================"
    echo "== [$n_step] $name"
    echo "======================================================================"
    current=$name
    step_start=$SECONDS
    "$@"
    steps+=("ok $((SECONDS - step_start)) $name")
    current=""
}

skip() {
    steps+=("skipped 0 $1")
    echo
    echo "== $1: skipped ($2)"
}

# ---- the steps ----

# Runs in a subshell so that cd does not leak into the next step.
in_dir() {
    local dir=$1
    shift
    mkdir -p "$dir"
    (cd "$dir" && "$@")
}

configure_in() {
    local dir=$1
    shift
    in_dir "$dir" "$ROOT/configure" "$@"
}

autogen_needed() {
    [[ -x configure ]] || return 0
    local f
    for f in configure.ac Makefile.am */Makefile.am m4/*.m4; do
        [[ -e $f && $f -nt configure ]] && return 0
    done
    return 1
}

# The unit tests through automake's harness with valgrind as LOG_COMPILER:
# the same environment and cwd as `make check` (abs_top_srcdir, H2SERVER...),
# a .log per program, and the list is the Makefile's own $(UNIT_TESTS).
# CK_FORK=no: valgrind follows one process, so the tests must run in it.
# libtool --mode=execute runs the real binary behind a libtool wrapper.
run_valgrind() {
    local dir=$ROOT/_build/release
    # shellcheck disable=SC2016 # $(UNIT_TESTS) is for make to expand
    CK_FORK=no make -C "$dir/tests" -j"$JOBS" check VERBOSE=1 \
        TESTS='$(UNIT_TESTS)' TEST_SUITE_LOG=valgrind-suite.log \
        LOG_COMPILER="$dir/libtool" \
        LOG_FLAGS="--mode=execute valgrind -q --leak-check=full --error-exitcode=1 --soname-synonyms=somalloc=nouserintercepts"
}

if [[ $deps == 1 ]]; then
    # Through the interpreter: works even where the exec bit got lost.
    step "deps: install what is missing" bash contrib/install-deps.sh
else
    skip "deps" "--skip-deps"
fi

if [[ $quick == 0 ]] || autogen_needed; then
    step "autogen" sh ./autogen.sh
else
    skip "autogen" "--quick and configure is up to date"
fi

step "release: configure" configure_in _build/release --enable-werror
step "release: make" make -C _build/release -j"$JOBS"
step "release: make check" make -C _build/release -j"$JOBS" check VERBOSE=1

if [[ $quick == 1 ]]; then
    exit 0
fi

step "release: make distcheck" make -C _build/release -j"$JOBS" distcheck

step "asan: configure" configure_in _build/asan --enable-werror --enable-sanitizers CC=gcc
step "asan: make" make -C _build/asan -j"$JOBS"
step "asan: make check" env ASAN_OPTIONS=detect_leaks=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    make -C _build/asan -j"$JOBS" check VERBOSE=1

# The only code that runs on several threads at once is the pick path and
# the engine's inbox: test_engine_threads drives both.
step "tsan: configure" configure_in _build/tsan --enable-werror CC=gcc \
    CFLAGS="-fsanitize=thread -g -O1" LDFLAGS="-fsanitize=thread"
step "tsan: make" make -C _build/tsan -j"$JOBS"
step "tsan: test_engine_threads" env TSAN_OPTIONS=halt_on_error=1 \
    make -C _build/tsan/tests -j"$JOBS" check VERBOSE=1 TESTS=integration/test_engine_threads.sh

step "valgrind: unit tests (release build)" run_valgrind

if command -v clang >/dev/null 2>&1; then
    # configure --enable-fuzzers also instruments the library.
    step "fuzz: configure" configure_in _build/fuzz CC=clang --enable-fuzzers
    step "fuzz: make fuzz FUZZ_RUNS=$FUZZ_RUNS" make -C _build/fuzz -j"$JOBS" fuzz \
        FUZZ_RUNS="$FUZZ_RUNS"
else
    skip "fuzz" "clang not installed"
fi
