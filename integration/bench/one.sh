#!/usr/bin/env bash
# One benchmark run on a fresh cluster, for before/after pairs:
#
#   integration/bench/one.sh BIN LAYOUT OUT BENCH-ARGS...
#
# starts LAYOUT's nodes with BIN (cluster.sh), runs `BIN bench` for 8 s
# after 2 s of warm-up with BENCH-ARGS, keeps the nodes' logs in OUT.logs/
# and prints one line: throughput, latency percentiles, errors. With CPU=1
# the line also gives the nodes' CPU (utime + stime of their processes
# from second 3 to second 9 of the run) and its microseconds per command.
# Alternate two binaries run by run: this machine's speed drifts over an
# hour by more than most changes are worth.
set -euo pipefail
bin=$1 layout=$2 out=$3; shift 3
repo=$(cd "$(dirname "$0")/../.." && pwd)
config="$repo/configs/$layout.toml"
exec 3> >(SYNOD=$bin "$repo/integration/bench/cluster.sh" "$layout" >"$out.cluster" 2>&1)
for _ in $(seq 300); do grep -q "cluster ready" "$out.cluster" 2>/dev/null && break; sleep 0.1; done
grep -q "cluster ready" "$out.cluster" || { cat "$out.cluster" >&2; exit 1; }
work=$(sed -n 's/.*data in \(.*\)$/\1/p' "$out.cluster")
pids=$(pgrep -f -- "node --config $config --node")
ticks() { local t=0; for p in $pids; do read -r -a f <"/proc/$p/stat"; t=$((t + f[13] + f[14])); done; echo "$t"; }
"$bin" bench --config "$config" --duration 8s --warmup 2s --out "$out" "$@" >/dev/null &
bench=$!
cpu=()
if [[ ${CPU:-0} == 1 ]]; then
    sleep 3; t0=$(ticks); s0=$(date +%s.%N)
    sleep 6; t1=$(ticks); s1=$(date +%s.%N)
    cpu=("$t0" "$t1" "$s0" "$s1")
fi
wait "$bench"
mkdir -p "$out.logs"; cp "$work"/*.log "$out.logs/" 2>/dev/null || true
exec 3>&-
sleep 2
python3 - "$out.json" "${cpu[@]}" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))["result"]; l = r["latency_ms"]
line = (f"{r['throughput']:,.0f}/s p50 {l['p50']:.2f} p99 {l['p99']:.2f} p99.9 {l['p999']:.2f} "
        f"max {l['max']:.1f} errors {sum(r['errors'].values())}")
if len(sys.argv) == 6:
    t0, t1, s0, s1 = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    cores = (t1 - t0) / os.sysconf("SC_CLK_TCK") / (s1 - s0)
    line += f" | nodes {cores:.2f} cores, {cores / r['throughput'] * 1e6:.1f} us/command"
print(line)
PY
