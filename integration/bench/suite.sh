#!/usr/bin/env bash
# The benchmark set of BENCHMARKS.md for one layout: closed loop at 1, 16,
# 64 and 256 clients, the pipelined peak (64 clients x 64 and x 128 in
# flight), and the open loop at half that peak. Prints one markdown table row per run
# and leaves each run's JSON and SVG in OUT.
#
#   integration/bench/suite.sh cluster-3 OUT        # or split-roles
#
# SYNOD: the binary the nodes run (default target/release/synod);
# BENCH: the binary that runs `synod bench` (default: SYNOD);
# DURATION (default 8s) and WARMUP (default 2s) per run.
set -euo pipefail
layout=${1:?usage: suite.sh LAYOUT OUT}
out=${2:?usage: suite.sh LAYOUT OUT}
repo=$(cd "$(dirname "$0")/../.." && pwd)
export SYNOD=${SYNOD:-$repo/target/release/synod}
bench=${BENCH:-$SYNOD}
config="$repo/configs/$layout.toml"
mkdir -p "$out"

# The cluster runs until this script's end closes its stdin.
exec 3> >("$repo/integration/bench/cluster.sh" "$layout" >"$out/cluster.log" 2>&1)
for _ in $(seq 200); do grep -q "cluster ready" "$out/cluster.log" 2>/dev/null && break; sleep 0.1; done
grep -q "cluster ready" "$out/cluster.log" || { cat "$out/cluster.log" >&2; exit 1; }

run() { # NAME ARGS...
    local name=$1; shift
    "$bench" bench --config "$config" --duration "${DURATION:-8s}" --warmup "${WARMUP:-2s}" \
        --out "$out/$name" "$@" >/dev/null
    python3 - "$out/$name.json" "$name" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); r = d["result"]; l = r["latency_ms"]
errors = sum(r["errors"].values())
print(f"| {sys.argv[2]} | {r['throughput']:,.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {l['max']:.1f} | {errors} |")
PY
}
echo "| $layout: run | commands/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |"
echo "|---|---|---|---|---|---|---|"
for clients in 1 16 64 256; do
    run "closed-$clients" --clients "$clients"
done
run pipelined-64x64 --clients 64 --window 64
run pipelined-64x128 --clients 64 --window 128
# The peak: the better of the two pipelined runs (more in flight per
# connection means fewer, larger reads and writes for the same load).
peak=$(python3 -c "import json; print(max(int(json.load(open(f'$out/pipelined-64x{w}.json'))['result']['throughput']) for w in (64, 128)))")
run "open-$((peak / 2))" --clients 64 --rate "$((peak / 2))"
exec 3>&-
sleep 2
