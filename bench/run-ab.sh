#!/bin/bash
# run-ab.sh - two wsgate binaries side by side in one run: the echo benchmark (run-echo.sh's
# settings) and the proxy benchmark (run-proxy.sh's, with bench/epoll_echo as the backend).
# Both servers are pinned to core 0 and measured in turn (order alternating per repetition);
# wsbench and the backend run on core 1. Server CPU per message comes from /proc/PID/stat
# (wsbench -S). Prints one table of medians; no file is written.
#
# Usage: bench/run-ab.sh BASE_BINARY NEW_BINARY
# Environment: REPS=n [3], DURATION=s [10], PRIO=autogroup|none (as run-echo.sh) [autogroup]
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
. "$BENCH/lib.sh"

bench_priority run-ab "$0" "$@"

[ $# -eq 2 ] || { sed -n 2,11p "$0" >&2; exit 2; }
REPS=${REPS:-3}
DURATION=${DURATION:-10}
SETTINGS=(
	"echo|throughput-64B|-c 100 -w 16 -s 64 -d $DURATION -W 2"
	"echo|latency-64B|-c 1 -w 1 -s 64 -d 5 -W 1"
	"proxy|throughput-64B|-c 100 -w 16 -s 64 -d $DURATION -W 2"
	"proxy|throughput-16KiB|-c 20 -w 4 -s 16384 -d $DURATION -W 2"
	"proxy|latency-64B|-c 1 -w 1 -s 64 -d 5 -W 1"
)

make -s -C "$BENCH" >/dev/null
bench_workdir wsbench-ab
cp -p "$1" "$WORK/base"
cp -p "$2" "$WORK/new"

BPORT=$(free_port)
taskset -c 1 "$BENCH/epoll_echo" "$BPORT" 2>"$WORK/backend.log" &
PIDS+=("$!")
wait_port "$BPORT"

declare -A PORT PID
for bin in base new; do
	for kind in echo proxy; do
		port=$(free_port)
		if [ "$kind" = echo ]; then
			wsgate_config "$WORK/$bin" "$WORK/$bin-$kind.ini" "$port"
		else
			cat >"$WORK/$bin-$kind.ini" <<-EOF2
				[gateway]
				listen = 127.0.0.1:$port
				log_level = warn
				workers = 1
				max_message_size = 1MiB
				[heartbeat]
				ping_interval = 0
				[route /echo]
				type = proxy
				backend = ws://127.0.0.1:$BPORT/echo
				connect_timeout = 3s
			EOF2
		fi
		taskset -c 0 "$WORK/$bin" -c "$WORK/$bin-$kind.ini" 2>"$WORK/$bin-$kind.log" &
		PIDS+=("$!")
		PID[$bin-$kind]=$!
		PORT[$bin-$kind]=$port
		wait_port "$port"
	done
done

RAW="$WORK/raw.txt"
: >"$RAW"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for setting in "${SETTINGS[@]}"; do
	kind=${setting%%|*}
	rest=${setting#*|}
	sname=${rest%%|*}
	args=${rest#*|}
	for rep in $(seq "$REPS"); do
		order=(base new)
		[ $((rep % 2)) -eq 0 ] && order=(new base)
		for bin in "${order[@]}"; do
			# shellcheck disable=SC2086 # $args is a list of options
			line=$(taskset -c 1 "$BENCH/wsbench" -p "${PORT[$bin-$kind]}" -P /echo $args \
			    -S "${PID[$bin-$kind]}" 2>>"$WORK/wsbench.err" | grep '^RESULT' || true)
			[ -n "$line" ] || line="RESULT failed=1"
			echo "bin=$bin kind=$kind setting=$sname rep=$rep $line" | tee -a "$RAW"
		done
	done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$RAW" <<'PYEOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r'(\w+)=([^\s]+)', line))
    rows.setdefault((kv['kind'], kv['setting'], kv['bin']), []).append(kv)
def med(lst, k):
    v = [float(r[k]) for r in lst if k in r]
    return statistics.median(v) if v else float('nan')
print("| bench | setting | base msg/s | new msg/s | base CPU ns/msg | new CPU ns/msg | new/base CPU | base p99 µs | new p99 µs |")
print("|---|---|---|---|---|---|---|---|---|")
for kind, sname in dict.fromkeys((k[0], k[1]) for k in rows):
    b, n = rows.get((kind, sname, 'base'), []), rows.get((kind, sname, 'new'), [])
    print(f"| {kind} | {sname} | {med(b,'msgs_per_s'):,.0f} | {med(n,'msgs_per_s'):,.0f} | "
          f"{med(b,'srv_ns_per_msg'):.0f} | {med(n,'srv_ns_per_msg'):.0f} | "
          f"{med(n,'srv_ns_per_msg')/med(b,'srv_ns_per_msg'):.3f} | {med(b,'p99_us'):.0f} | {med(n,'p99_us'):.0f} |")
PYEOF
