#!/usr/bin/env bash
# Fault soaks back to back: RUNS runs of SYNOD_SOAK_SECS seconds each (600),
# layouts taken in turn from LAYOUTS ("cluster-3 split-roles"), seeds from
# SEED (1) upward, JOBS (1) at a time. Each run's log goes to OUT (a new
# temporary directory); its table row is printed. Exits non-zero if any run
# failed; its log names the seed and the fault schedule that replay it.
#
#   RUNS=20 JOBS=2 integration/soak.sh
#
# FAULTS and SYNOD (the test binary and the `synod` binary it starts, which
# must sit in FAULTS's parent's parent directory) default to the newest
# debug build: run `cargo test --workspace --no-run` first.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-20}
secs=${SYNOD_SOAK_SECS:-600}
seed=${SEED:-1}
jobs=${JOBS:-1}
read -r -a layouts <<< "${LAYOUTS:-cluster-3 split-roles}"
out=${OUT:-$(mktemp -d -t synod-soak.XXXXXX)}
target=${CARGO_TARGET_DIR:-target}
faults=${FAULTS:-$(ls -t "$target"/debug/deps/faults-* | grep -v '\.d$' | head -1)}
echo "soak: $runs runs of ${secs}s, $jobs at a time, logs in $out, binary $faults"

run_one() {
    local index=$1 layout=${layouts[$(( $1 % ${#layouts[@]} ))]} run_seed=$(( seed + $1 ))
    local log="$out/soak-$layout-$run_seed.log"
    SYNOD_SOAK_SECS=$secs SYNOD_SOAK_SEED=$run_seed SYNOD_SOAK_LAYOUT=$layout \
        "$faults" soak_with_a_random_schedule --exact --nocapture > "$log" 2>&1
    local status=$?
    local row
    row=$(grep '^| soak' "$log" | tail -1)
    if [ $status -eq 0 ]; then
        echo "seed $run_seed: $row"
    else
        echo "seed $run_seed ($layout): FAILED, see $log"
    fi
    return $status
}

failed=0
pids=()
for ((i = 0; i < runs; i++)); do
    run_one "$i" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$jobs" ]; then
        wait "${pids[0]}" || failed=1
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done
exit $failed
