#!/bin/bash
# run-deflate.sh - permessage-deflate costs and savings (issue 19) -> bench/results/deflate.md:
#   1. a JSON broadcast (SUBS subscribers of one wsgate, workers = 1, MSGS messages of SIZE
#      bytes) with compression off and on: wire bytes and gateway CPU per delivery
#      (bench/pmd_fanout.py; CPU is utime+stime of the wsgate process, so a loaded machine
#      changes it less than it changes msg/s);
#   2. what compressing costs per delivery three ways (bench/deflate_cost.c): wsgate's one
#      compression per broadcast, one per subscriber, one per subscriber with a kept context;
#   3. RSS per idle connection with compression negotiated and without (IDLE connections), and
#      with the client's inflate context kept (client context takeover, after one message).
# Environment knobs: WSGATE [build/src/wsgate], SUBS [2000], MSGS [100], SIZE [1024],
#   IDLE [2000], REPS [3], OUT [bench/results/deflate.md]
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
. "$BENCH/lib.sh"
WSGATE_SRC=${WSGATE:-$ROOT/build/src/wsgate}
SUBS=${SUBS:-2000}
MSGS=${MSGS:-100}
SIZE=${SIZE:-1024}
IDLE=${IDLE:-2000}
REPS=${REPS:-3}
OUT=${OUT:-$BENCH/results/deflate.md}
INVOCATION="SUBS=$SUBS MSGS=$MSGS SIZE=$SIZE IDLE=$IDLE REPS=$REPS bench/run-deflate.sh"

ulimit -n 20000
bench_workdir deflate
wsgate_snapshot "$WSGATE_SRC" "$WORK"
bench_provenance
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -I"$ROOT/src" -o "$WORK/deflate_cost" \
    "$BENCH/deflate_cost.c" "$ROOT/src/ws_deflate.c" "$ROOT/src/utf8.c" -lz

# start_gw: a fresh wsgate (one worker, core 0) with the /ps, /zps and /pub routes; sets
# port and GW (its pid).
start_gw() {
	port=$(free_port)
	cat >"$WORK/wsgate.ini" <<INI
[gateway]
listen = 127.0.0.1:$port
workers = 1
log_level = warn
max_connections = 100000
compression_memory = 1GiB
[heartbeat]
ping_interval = 0
[route /ps]
type = pubsub
subscribe = news
[route /zps]
type = pubsub
subscribe = news
compression = on
[route /pub]
type = pubsub
publish = news
[route /zecho]
type = echo
compression = on
INI
	taskset -c 0 "$WORK/wsgate" -c "$WORK/wsgate.ini" 2>>"$WORK/wsgate.log" &
	GW=$!
	PIDS+=("$GW")
	wait_port "$port"
}
start_gw

RAW="$WORK/raw.txt"
: >"$RAW"
for r in $(seq "$REPS"); do
	for mode in plain deflate; do
		taskset -c 1 /usr/bin/python3 "$BENCH/pmd_fanout.py" fanout "$port" "$GW" "$mode" \
		    "$SUBS" "$MSGS" "$SIZE" | tee -a "$RAW"
	done
done
# Idle memory on fresh processes: one that served the fan-out keeps its freed memory.
for mode in plain deflate kept; do
	kill "$GW"
	wait "$GW" 2>/dev/null || true
	start_gw
	taskset -c 1 /usr/bin/python3 "$BENCH/pmd_fanout.py" idle "$port" "$GW" "$mode" "$IDLE" |
	    tee -a "$RAW"
done
taskset -c 1 "$WORK/deflate_cost" 500 "$SIZE" 100 6 | tee -a "$RAW"

{
	echo "# permessage-deflate: a JSON broadcast with compression off and on"
	echo
	echo "- started $STARTED, commit $COMMIT (src/ files changed since: $DIRTY), wsgate sha256 $SHA ($BUILD)"
	echo "- $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "- command: \`$INVOCATION\`"
	echo "- wsgate on core 0 (workers = 1), the Python load generator on core 1; the machine was"
	echo "  shared with other jobs, so CPU per delivery (utime+stime of wsgate) is reported, not msg/s"
	echo
	echo "Raw results:"
	echo
	echo '```'
	cat "$RAW"
	echo '```'
} >"$OUT"
echo "wrote $OUT"
