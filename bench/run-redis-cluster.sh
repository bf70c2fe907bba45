#!/bin/bash
# run-redis-cluster.sh - sharded pub/sub (SPUBLISH) against classic PUBLISH on a Redis Cluster of
# 1, 2 and 3 masters (issue 14): messages/s and CPU per message of each Redis process (from
# /proc/<pid>/stat: this machine has fewer cores than the processes, so the CPU figure is the
# one that shows whether masters add capacity). Runs bench/redis_cluster_bench.py (Debian's
# python3, redis-server, redis-cli, redis-benchmark) and writes bench/results/redis-cluster.md.
# The failover figure (a master's death to delivery resumed through wsgate) comes from
# tests/integration/test_redis_cluster.py, run FAILOVER_RUNS times when WSGATE_BIN is set.
#
# Environment knobs: MSGS [200000 per master], SIZE [64], PIPE [32], PORT_BASE [25100],
# FAILOVER_RUNS [3], WSGATE_BIN [build/src/wsgate], OUT [bench/results/redis-cluster.md].
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT=${OUT:-$BENCH/results/redis-cluster.md}
export MSGS=${MSGS:-200000} SIZE=${SIZE:-64} PIPE=${PIPE:-32} PORT_BASE=${PORT_BASE:-25100}
FAILOVER_RUNS=${FAILOVER_RUNS:-3}
export WSGATE_BIN=${WSGATE_BIN:-$ROOT/build/src/wsgate}
CMD="MSGS=$MSGS SIZE=$SIZE PIPE=$PIPE FAILOVER_RUNS=$FAILOVER_RUNS bench/run-redis-cluster.sh"

table=$(/usr/bin/python3 "$BENCH/redis_cluster_bench.py")
failover=""
if [ "$FAILOVER_RUNS" -gt 0 ] && [ -x "$WSGATE_BIN" ]; then
	for _ in $(seq "$FAILOVER_RUNS"); do
		line=$("$ROOT/tests/integration/run-integration.sh" -s \
		    -k 'test_redis_cluster and master_killed' 2>&1 | grep '^failover:' || true)
		failover="$failover
- ${line:-failover run failed (see the test)}"
	done
fi
{
	echo "# Redis Cluster: sharded against classic pub/sub"
	echo
	echo "Command: \`$CMD\` ($(date -u +%Y-%m-%d), $(nproc) cores shared with other jobs,"
	echo "$(redis-server --version | awk '{print $1, $2, $3}'), loopback, $SIZE-byte messages,"
	echo "one redis-benchmark per master (-P $PIPE -c 2) on a channel of that master's slots,"
	echo "one subscriber per master (classic: SUBSCRIBE on every node))."
	echo
	echo "$table"
	if [ -n "$failover" ]; then
		echo
		echo "Failover through wsgate (3 masters + 3 replicas, cluster-node-timeout 1000 ms, a"
		echo "master SIGKILLed while a client publishes every 20 ms on a history channel; two"
		echo "gateways, probe_interval 200ms, probe_timeout 1s):"
		echo "$failover"
	fi
} > "$OUT"
cat "$OUT"
