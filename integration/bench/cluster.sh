#!/usr/bin/env bash
# Run every node of a shipped config as its own `synod node` process, with
# fresh data under a temporary directory, until interrupted; for `synod
# bench --config configs/LAYOUT.toml` from another terminal (or command).
#
#   integration/bench/cluster.sh cluster-3        # 3 processes, every role on each
#   integration/bench/cluster.sh split-roles      # 7 role-specialised processes
#
# SYNOD (default: target/release/synod) picks the binary. The script waits
# until every node has printed its ready line, prints "cluster ready", and
# stops the nodes (SIGTERM) when it is interrupted or its stdin closes.
set -euo pipefail
layout=${1:?usage: cluster.sh LAYOUT (cluster-3, split-roles, ...)}
repo=$(cd "$(dirname "$0")/../.." && pwd)
config="$repo/configs/$layout.toml"
synod=${SYNOD:-$repo/target/release/synod}
[[ -f $config ]] || { echo "no config $config" >&2; exit 1; }
[[ -x $synod ]] || { echo "no binary $synod (cargo build --release -p synod, or set SYNOD)" >&2; exit 1; }

work=$(mktemp -d /tmp/synod-bench-XXXXXX)
pids=()
stop() {
    kill -TERM "${pids[@]}" 2>/dev/null || true
    # Nodes restarted by kill-node.sh too.
    pkill -TERM -f -- "node --config $config --node" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap stop EXIT INT TERM

# Node names are the config's [nodes.NAME] tables.
mapfile -t nodes < <(sed -n 's/^\[nodes\.\(.*\)\]$/\1/p' "$config")
cd "$work"
for node in "${nodes[@]}"; do
    "$synod" node --config "$config" --node "$node" --init >"$work/$node.log" 2>&1 &
    pids+=($!)
done
for node in "${nodes[@]}"; do
    for _ in $(seq 600); do
        grep -q "ready" "$work/$node.log" && break
        kill -0 "${pids[@]}" 2>/dev/null || { cat "$work"/*.log >&2; exit 1; }
        sleep 0.05
    done
    grep -q "ready" "$work/$node.log" || { echo "$node never became ready" >&2; cat "$work/$node.log" >&2; exit 1; }
done
echo "cluster ready: ${#nodes[@]} processes of $layout, data in $work"
# Until stdin closes or a signal arrives.
cat >/dev/null || true
