#!/usr/bin/env bash
# SIGKILL one node process of a cluster started by cluster.sh, and start it
# again (same command, same directory) after a pause: the failover figure.
#
#   integration/bench/kill-node.sh configs/cluster-3.toml [NODE] [PAUSE_S]
#
# NODE defaults to the node whose proposer leads (from `synod status`,
# which needs client ports on the proposers' nodes; name NODE otherwise).
set -euo pipefail
config=${1:?usage: kill-node.sh CONFIG [NODE] [PAUSE_S]}
node=${2:-}
pause=${3:-2}
repo=$(cd "$(dirname "$0")/../.." && pwd)
synod=${SYNOD:-$repo/target/release/synod}
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
if [[ -z $node ]]; then
    node=$("$synod" status --config "$config" | awk '/^[^ ]/ {n=$1} /leading with ballot/ {print n; exit}')
    [[ -n $node ]] || { echo "no leader found; name the node" >&2; exit 1; }
fi
pid=$(pgrep -f -- "node --config $config --node $node( --init)?\$" | head -1)
[[ -n $pid ]] || { echo "no process for node $node" >&2; exit 1; }
dir=$(readlink "/proc/$pid/cwd")
echo "$(date +%T.%3N) SIGKILL $node (pid $pid)"
kill -KILL "$pid"
sleep "$pause"
cd "$dir"
"$synod" node --config "$config" --node "$node" >>"$dir/$node.log" 2>&1 &
echo "$(date +%T.%3N) restarted $node (pid $!)"
