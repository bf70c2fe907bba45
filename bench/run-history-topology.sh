#!/bin/bash
# run-history-topology.sh - issue 11 item 7 at full size: tests/integration/test_history_topology.py
# with 100,000 messages at 1,700/s (~60 s) over three instances on an AOF Redis that is
# restarted, one instance drained and restarted, 10 % of clients hopping with their position,
# slow readers under drop_oldest, drop_newest, close and conflate. The clients run in three
# processes. Writes bench/results/history-topology.md: the command, the machine, the verdict
# and the per-client figures.
#
# Environment knobs: WSGATE [build/src/wsgate], MESSAGES [100000], RATE [1700], PROCS [3],
# OUT [bench/results/history-topology.md].
set -uo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
WSGATE=${WSGATE:-$ROOT/build/src/wsgate}
OUT=${OUT:-$BENCH/results/history-topology.md}
MESSAGES=${MESSAGES:-100000}
RATE=${RATE:-1700}
PROCS=${PROCS:-3}
CMD="MESSAGES=$MESSAGES RATE=$RATE PROCS=$PROCS bench/run-history-topology.sh"
figures=$(mktemp)
log=$(mktemp)
trap 'rm -f "$figures" "$log"' EXIT

start=$(date +%s)
load0=$(cut -d' ' -f1 /proc/loadavg)
WSGATE_BIN=$WSGATE WSGATE_TOPO_MESSAGES=$MESSAGES WSGATE_TOPO_RATE=$RATE \
	WSGATE_TOPO_PROCS=$PROCS WSGATE_TOPO_RESULTS=$figures \
	"$ROOT/tests/integration/run-integration.sh" -k test_history_topology -q >"$log" 2>&1
rc=$?
end=$(date +%s)
load1=$(cut -d' ' -f1 /proc/loadavg)
{
	echo "# Channel history in the topology, full size"
	echo
	echo "Command: \`$CMD\` ($(date -u +%Y-%m-%d), $(nproc) cores shared with other jobs,"
	echo "load average $load0 at the start, $load1 at the end; $(redis-server --version |
		awk '{print $1, $2, $3}'), loopback)."
	echo
	if [ "$rc" -eq 0 ]; then
		echo "Verdict: **passed** in $((end - start)) s (every client: every offset once in order,"
		echo "or exact \`dropped\` notices; the conflating reader: only superseded offsets missing)."
	else
		echo "Verdict: **failed** (exit $rc) after $((end - start)) s:"
		echo
		echo '```'
		grep -E '^E ' "$log" | head -20
		echo '```'
	fi
	echo
	echo '```'
	cat "$figures"
	echo '```'
} >"$OUT"
cat "$OUT"
exit "$rc"
