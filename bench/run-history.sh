#!/bin/bash
# run-history.sh - the costs of channel history (issue 11): FCALL wsgate_publish against plain
# PUBLISH on the same Redis (msgs/s, Redis CPU per message), wsgate CPU per delivery with
# history on and off, and the catch-up time of a client 10,000 messages behind. Runs
# bench/history_bench.py (Debian's python3 with python3-websockets, redis-server,
# redis-benchmark) and writes bench/results/history.md with the command and the machine.
#
# Environment knobs: WSGATE [build/src/wsgate], SUBS [200], MSGS [2000], RATE [500],
# BEHIND [10000], PORT_BASE [24100] (two loopback ports), OUT [bench/results/history.md].
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
WSGATE=${WSGATE:-$ROOT/build/src/wsgate}
OUT=${OUT:-$BENCH/results/history.md}
export WSGATE SUBS=${SUBS:-200} MSGS=${MSGS:-2000} RATE=${RATE:-500} BEHIND=${BEHIND:-10000} \
	PORT_BASE=${PORT_BASE:-24100}
CMD="SUBS=$SUBS MSGS=$MSGS RATE=$RATE BEHIND=$BEHIND bench/run-history.sh"

table=$(/usr/bin/python3 "$BENCH/history_bench.py")
{
	echo "# Channel history: what it costs"
	echo
	echo "Command: \`$CMD\` ($(date -u +%Y-%m-%d), $(nproc) cores shared with other jobs,"
	echo "$(redis-server --version | awk '{print $1, $2, $3}'), loopback; one wsgate worker)."
	echo
	echo "$table"
} > "$OUT"
cat "$OUT"
