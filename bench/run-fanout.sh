#!/bin/bash
# run-fanout.sh - broadcast fan-out, side by side in one run: wsgate (in-process hub, workers = 1),
# the bare C broadcast server (bench/epoll_echo.c in broadcast mode: one write() per subscriber)
# and Node `ws` (bench/node_ws_broadcast.js). For each LOAD "SUBSxRATE": SUBS subscribers, one
# WebSocket publisher at RATE msg/s; psbench (core 1) reports delivered/expected, latency and the
# server's CPU over the measured phase (schedstat); server on core 0. Servers take turns within
# each repetition, so machine noise hits them alike. Writes bench/results/fanout.md.
# Latency is taken at the kernel's receive time of each message (psbench -K, SO_TIMESTAMPNS):
# one reader process draining 100,000 messages a second queues behind its own reads, which would
# count against every server alike; the reader's own view is kept (p99 reader column).
#
# Knobs: LOADS ["5000x20 1000x1000"], DURATION [10] s measured (+1 s warm-up), SIZE [64],
#   REPS [3] (the table shows medians), WARMUP [1] s (psbench -W; 0 lets a server that cannot keep up
#   still be measured: after a 1 s warm-up it is still delivering warm-up messages when psbench
#   stops waiting, 3 s without a measured one), SERVERS ["wsgate epoll node"], WSGATE [build/src/wsgate],
#   WSGATE_BASE [unset; with it, server "base" is that wsgate binary, for before/after in one run],
#   NODE_PATH [tests/node/node_modules], PRIO [autogroup], OUT [bench/results/fanout.md],
#   PROFILE [1: after the measured runs, one more run of the first load per server (Node
#   excepted) with perf attached for 5 s of its measured phase (lib.sh bench_profile), in the
#   "Profile" section; not counted in the medians]
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
. "$BENCH/lib.sh"

bench_priority run-fanout "$0" "$@"

WSGATE_SRC=${WSGATE:-$ROOT/build/src/wsgate}
LOADS=${LOADS:-"5000x20 1000x1000"}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
SIZE=${SIZE:-64}
REPS=${REPS:-3}
SERVERS=${SERVERS:-"wsgate epoll node"}
OUT=${OUT:-$BENCH/results/fanout.md}
PROFILE=${PROFILE:-1}
export NODE_PATH=${NODE_PATH:-$ROOT/tests/node/node_modules}

bench_workdir fanout
make -s -C "$BENCH" epoll_echo >/dev/null
cc -O2 -g -std=c11 -Wall -Wextra -Wno-unused-parameter -o "$WORK/psbench" "$BENCH/psbench.c" -lcrypto
wsgate_snapshot "$WSGATE_SRC" "$WORK"
[ -z "${WSGATE_BASE:-}" ] || cp -p "$WSGATE_BASE" "$WORK/wsgate-base"
ulimit -n "$(ulimit -Hn)"

# start_server NAME: starts it on core 0 on a free port; sets SPID and SPORT.
start_server() {
	SPORT=$(free_port)
	case $1 in
	wsgate | base)
		local bin=$WORK/wsgate
		[ "$1" = wsgate ] || bin=$WORK/wsgate-base
		pubsub_config "$WORK/wsgate.ini" "$SPORT" 1
		taskset -c 0 "$bin" -c "$WORK/wsgate.ini" 2>>"$WORK/wsgate.log" &
		SPID=$!
		wait_ready "$SPORT"
		;;
	epoll)
		taskset -c 0 "$BENCH/epoll_echo" "$SPORT" broadcast 2>>"$WORK/epoll.log" &
		SPID=$!
		wait_port "$SPORT"
		;;
	node)
		taskset -c 0 node "$BENCH/node_ws_broadcast.js" "$SPORT" 2>>"$WORK/node.log" &
		SPID=$!
		wait_port "$SPORT"
		;;
	esac
}
stop_server() {
	kill "$SPID" 2>/dev/null || true
	wait "$SPID" 2>/dev/null || true
	SPID=
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RAW="$WORK/raw.txt"
: >"$RAW"
for load in $LOADS; do
	subs=${load%x*}
	rate=${load#*x}
	for rep in $(seq "$REPS"); do
		for s in $SERVERS; do
			start_server "$s"
			set +e
			taskset -c 1 "$WORK/psbench" -g "$SPORT" -n "$subs" -r "$rate" -d "$DURATION" \
				-s "$SIZE" -W "$WARMUP" -m ws -P /bench-pub -p /bench -S "$SPID" -K \
				>"$WORK/out.txt" 2>"$WORK/err.txt"
			rc=$?
			set -e
			rss=$(awk '/VmHWM/ { print $2 }' "/proc/$SPID/status")
			stop_server
			line=$(grep '^RESULT' "$WORK/out.txt" || echo "RESULT failed=1")
			echo "load=$load server=$s rep=$rep rc=$rc hwm_kib=$rss $line" | tee -a "$RAW"
			[ "$rc" = 0 ] || cat "$WORK/err.txt" >&2
		done
	done
done
# The profile: the first load once more per server, perf on it for 5 s of the measured phase.
PROF="$WORK/profile.md"
: >"$PROF"
load=${LOADS%% *}
if [ "$PROFILE" = 1 ] && [ "$DURATION" -ge 7 ]; then
	subs=${load%x*}
	rate=${load#*x}
	for s in $SERVERS; do
		[ "$s" = node ] && continue
		start_server "$s"
		taskset -c 1 "$WORK/psbench" -g "$SPORT" -n "$subs" -r "$rate" -d "$DURATION" \
			-s "$SIZE" -W "$WARMUP" -m ws -P /bench-pub -p /bench -S "$SPID" -K \
			>"$WORK/prof-$s.out" 2>"$WORK/prof-$s.err" &
		ppid=$!
		wait_line "$WORK/prof-$s.err" measuring 60 "$ppid" || true
		sleep 1
		bench_profile "$SPID" 5 "$WORK/prof-$s"
		wait "$ppid" || true
		stop_server
		python3 "$BENCH/profile_report.py" "$WORK/prof-$s" "fan-out $load: $s" \
			"$((subs * rate * 5))" delivery 5 >>"$PROF"
	done
fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
bench_provenance
NODEV=$(node --version)
WSV=$(node -p 'require("ws/package.json").version' 2>/dev/null || echo "?")
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
mkdir -p "$(dirname "$OUT")"

python3 - "$RAW" "$OUT" <<PYEOF
import re, statistics, sys
raw, out = sys.argv[1], sys.argv[2]
runs = [dict(re.findall(r'(\w+)=([^\s]+)', l)) for l in open(raw) if l.strip()]
names = {"wsgate": "wsgate", "base": "wsgate base ($(basename "${WSGATE_BASE:-none}"))", "epoll": "bare C broadcast (epoll_echo broadcast)", "node": "Node ws $WSV"}
def us_per_delivery(r):
    return float(r['srv_cpu_ms'].split(',')[0]) * 1000.0 / max(1, int(r['delivered']))
o = ["# Broadcast fan-out: wsgate vs a bare C epoll server vs Node ws\n",
     "| | |\n|---|---|",
     "| date | $(date -u '+%Y-%m-%d %H:%M UTC') |",
     "| git commit | $COMMIT (src/ files with uncommitted changes: $DIRTY) |",
     "| wsgate binary | $WSGATE_SRC, built $MTIME, sha256 $SHA…, $BUILD |",
     "| CPU | $CPU, $(nproc) cores; kernel $(uname -r); node $NODEV |",
     "| pinning | server on core 0 (\`taskset -c 0\`, wsgate \`workers = 1\`), psbench on core 1; PRIO=$PRIO |",
     "| load average | before $LOAD_BEFORE, after $LOAD_AFTER (shared machine) |",
     "| load | $SIZE-byte text messages, 1 WebSocket publisher, $DURATION s measured after $WARMUP s warm-up, $REPS repetitions, servers in turn |",
     "",
     "CPU per delivery = the server's CPU time (all threads, schedstat) over the measured phase / deliveries in it. "
     "On loopback the sender's core also pays the receiver's TCP processing (softirq), so this overstates what a NIC would cost.",
     "",
     "Latency = kernel receive time of the message at the subscriber's socket - its send time (psbench -K); "
     "p99 reader = the same at the moment the single reader process got to it. CPU and p99 ranges: min–max over the repetitions.",
     "",
     "| load (subs × msg/s) | server | delivered % (median) | **CPU µs / delivery** (range) | p50 ms | p99 ms (range) | p99 reader ms | max ms | server CPU % | wait ms | gen CPU % | peak RSS MiB |",
     "|---|---|---|---|---|---|---|---|---|---|---|---|"]
summary = {}
for load in "$LOADS".split():
    for s in "$SERVERS".split():
        rs = [r for r in runs if r['load'] == load and r['server'] == s and 'delivered' in r]
        if not rs:
            o.append(f"| {load} | {names[s]} | FAILED | | | | | | | | | |")
            continue
        m = lambda f: statistics.median(f(r) for r in rs)
        cpu = m(us_per_delivery)
        summary[(load, s)] = (cpu, m(lambda r: float(r['p99_us'])) / 1000)
        cpus = [us_per_delivery(r) for r in rs]
        p99s = [float(r['p99_us']) / 1000 for r in rs]
        o.append(f"| {load} | {names[s]} | {m(lambda r: float(r['delivered_pct'])):.3f} | **{cpu:.2f}** ({min(cpus):.2f}–{max(cpus):.2f}) | "
                 f"{m(lambda r: float(r['p50_us']))/1000:.1f} | {m(lambda r: float(r['p99_us']))/1000:.1f} ({min(p99s):.1f}–{max(p99s):.1f}) | "
                 f"{m(lambda r: float(r.get('p99_reader_us', 'nan')))/1000:.1f} | "
                 f"{m(lambda r: float(r['max_us']))/1000:.1f} | {m(lambda r: float(r['srv_cpu_pct'])):.0f} | "
                 f"{m(lambda r: float(r['srv_wait_ms'].split(',')[0])):.0f} | {m(lambda r: float(r['gen_cpu_pct'])):.0f} | {m(lambda r: float(r['hwm_kib']))/1024:.1f} |")
o.append("")
o.append("Ratios (wsgate / other; CPU: lower is better):\n")
for load in "$LOADS".split():
    w = summary.get((load, 'wsgate'))
    for s in ('base', 'epoll', 'node'):
        x = summary.get((load, s))
        if w and x:
            o.append(f"- {load}: CPU per delivery wsgate/{s} = {w[0]/x[0]:.2f}, p99 wsgate {w[1]:.1f} ms vs {s} {x[1]:.1f} ms")
prof = open("$PROF").read().strip()
o.append("\n## Profile: $load, wsgate and the bare C server (PROFILE=1, one extra run each, not in the medians)\n")
o.append(prof if prof else "Not taken (PROFILE=0, or DURATION under 7 s).")
o.append("\n## Commands\n\n\`\`\`")
o.append("LOADS='$LOADS' DURATION=$DURATION WARMUP=$WARMUP SIZE=$SIZE REPS=$REPS SERVERS='$SERVERS' WSGATE_BASE=${WSGATE_BASE:-} bench/run-fanout.sh   # which runs, per server:")
o.append("taskset -c 0 wsgate -c wsgate.ini        # bench/lib.sh pubsub_config: /bench subscribes, /bench-pub publishes")
o.append("taskset -c 0 bench/epoll_echo PORT broadcast")
o.append("NODE_PATH=tests/node/node_modules taskset -c 0 node bench/node_ws_broadcast.js PORT")
o.append("taskset -c 1 psbench -g PORT -n SUBS -r RATE -d $DURATION -s $SIZE -W $WARMUP -m ws -P /bench-pub -p /bench -S SERVERPID -K")
o.append("\`\`\`\n\nRaw lines:\n\n\`\`\`")
o += [l.rstrip() for l in open(raw)]
o.append("\`\`\`")
open(out, "w").write("\n".join(o) + "\n")
PYEOF
echo "run-fanout: wrote $OUT" >&2
