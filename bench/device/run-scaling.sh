#!/usr/bin/env bash
# kxdp-bench scaling on the lent 16-core machine (no `ip`, no compiler needed there).
#
# Builds nothing. Build the binary on the development machine first:
#     CARGO_INCREMENTAL=0 cargo build --release -p kxdp-bench
# then run this script there with target/release/kxdp-bench carried along
# (run tool: carry ["target/release/kxdp-bench"], command "bash bench/device/run-scaling.sh").
#
# Writes under $OUT: machine.txt, scaling-<scenario>.{json,svg,log}, and, if time is left,
# all-w1.{json,svg,log} (every scenario with one worker). The whole script stays under
# LIMIT_S seconds (default 420: under the 8 minutes a device call may take, with room to copy
# the results back).
set -eu
set -o pipefail

OUT=${OUT:-bench/out/device}
BIN=${KXDP_BENCH:-target/release/kxdp-bench}
LIMIT_S=${LIMIT_S:-420}
SCENARIO=${SCENARIO:-forward}
WORKERS=${WORKERS:-1,2,4,8}
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}

start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
left() { echo $(( LIMIT_S - $(elapsed) )); }
ts() { printf '[%s +%3ss] %s\n' "$(date -u +%H:%M:%S)" "$(elapsed)" "$*"; }

mkdir -p "$OUT"
if [ ! -x "$BIN" ]; then
    ts "no executable $BIN: build it with 'cargo build --release -p kxdp-bench' and carry it"
    exit 2
fi
{
    echo "uname: $(uname -a)"
    echo "cpus: $(nproc)"
    grep -m1 'model name' /proc/cpuinfo || true
    for tool in nft ip ethtool; do
        printf '%s: %s\n' "$tool" "$(command -v "$tool" || echo missing)"
    done
} > "$OUT/machine.txt" 2>&1
ts "$(tr '\n' ';' < "$OUT/machine.txt")"

# Runs kxdp-bench with what is left of the budget (SIGINT first, SIGKILL 15 s later); never
# fails the script, so the files of a cut-short run still come back.
bench() {
    local name=$1 budget
    shift
    budget=$(( $(left) - 20 ))
    if [ "$budget" -lt 30 ]; then
        ts "$name: skipped, only $(left) s left"
        return 0
    fi
    ts "$name: kxdp-bench $* (up to $budget s)"
    local rc=0
    timeout --signal=INT --kill-after=15 "$budget" "$BIN" "$@" \
        --json "$OUT/$name.json" --plot "$OUT/$name.svg" 2>&1 | tee "$OUT/$name.log" || rc=$?
    ts "$name: exit $rc"
}

bench "scaling-$SCENARIO" scaling --scenario "$SCENARIO" --workers "$WORKERS" \
    --duration "$DURATION" --runs "$RUNS"
# Context on the same machine: every scenario, one worker, shorter windows.
bench all-w1 all --duration 3 --runs 1
ts "done; files in $OUT:"
ls -l "$OUT"
