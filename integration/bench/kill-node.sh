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
    # "cluster X: Healthy; leader proposer-3 (ballot 1.3); ..." then one
    # "  NODE: up; proposer-3, acceptor-3, ..." line per node.
    status=$("$synod" status --config "$config" || true)
    leader=$(sed -n '1s/.*; leader \(proposer-[0-9]*\) .*/\1/p' <<<"$status")
    [[ -n $leader ]] && node=$(grep -E "^  [^ ]+: up; (.*, )?$leader(,|$)" <<<"$status" | head -1 | awk '{print $1}' | tr -d :)
    [[ -n $node ]] || { echo "no leader found; name the node" >&2; exit 1; }
fi
pid=$(pgrep -f -- "node --config $config --node $node( --init)?\$" | head -1)
[[ -n $pid ]] || { echo "no process for node $node" >&2; exit 1; }
dir=$(readlink "/proc/$pid/cwd")
echo "$(date +%T.%3N) SIGKILL $node (pid $pid)"
kill -KILL "$pid"
sleep "$pause"
cd "$dir"
# Without the caller's other descriptors: a restarted node holding, say,
# the pipe that tells cluster.sh to stop would keep that cluster running.
(exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-; exec "$synod" node --config "$config" --node "$node" >>"$dir/$node.log" 2>&1) &
echo "$(date +%T.%3N) restarted $node (pid $!)"
