#!/bin/bash
# run-pubsub.sh - pub/sub fan-out benchmark: SUBS WebSocket subscribers spread over GATEWAYS wsgate
# instances bridged by one redis-server, one publisher at RATE msg/s for DURATION s, each message
# carrying its send time; reports delivered/expected and delivery latency (bench/psbench.c) and
# writes bench/results/pubsub.md. Servers (wsgate x GATEWAYS, redis-server) on core 0, psbench
# on core 1.
#
# Environment knobs (defaults in brackets):
#   WSGATE=path      wsgate binary [build/src/wsgate]; copied first so a rebuild mid-run is harmless
#   SUBS=n           subscribers [1000], round-robin over the instances
#   GATEWAYS=n       wsgate instances [2]
#   RATE=n           published messages per second [1000]
#   DURATION=s       measured seconds [10] (after 1 s of warm-up at the same rate)
#   SIZE=bytes       message size [64]
#   PUBLISHER=ws|redis  ws: a WebSocket client of instance 1 publishing on /bench-pub (the whole
#                    path: client -> wsgate -> Redis -> every instance -> clients) [ws];
#                    redis: psbench PUBLISHes to Redis itself (an application service)
#   REPS=n           repetitions [3]; the table shows each run and the median
#   PRIO=autogroup|none  as in run-echo.sh: run in an own session whose autogroup gets nice -20
#   OUT=file         markdown output [bench/results/pubsub.md]
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
. "$BENCH/lib.sh"

bench_priority run-pubsub "$0" "$@"

WSGATE_SRC=${WSGATE:-$ROOT/build/src/wsgate}
SUBS=${SUBS:-1000}
GATEWAYS=${GATEWAYS:-2}
RATE=${RATE:-1000}
DURATION=${DURATION:-10}
SIZE=${SIZE:-64}
PUBLISHER=${PUBLISHER:-ws}
REPS=${REPS:-3}
OUT=${OUT:-$BENCH/results/pubsub.md}
INVOCATION="SUBS=$SUBS GATEWAYS=$GATEWAYS RATE=$RATE DURATION=$DURATION SIZE=$SIZE PUBLISHER=$PUBLISHER REPS=$REPS bench/run-pubsub.sh"

bench_workdir psbench

cc -O2 -g -std=c11 -Wall -Wextra -Wno-unused-parameter -o "$WORK/psbench" "$BENCH/psbench.c" -lcrypto
cp "$WSGATE_SRC" "$WORK/wsgate"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cpu_ticks() { # utime+stime of a pid, in clock ticks
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

redis_start taskset -c 0

# Gateways
GPORTS=()
GPIDS=()
for i in $(seq "$GATEWAYS"); do
	port=$(free_port)
	pubsub_config "$WORK/wsgate$i.ini" "$port" 1 "$RPORT"
	taskset -c 0 "$WORK/wsgate" -c "$WORK/wsgate$i.ini" 2>"$WORK/wsgate$i.log" &
	GPIDS+=("$!")
	PIDS+=("$!")
	GPORTS+=("$port")
done
for port in "${GPORTS[@]}"; do
	wait_ready "$port" || { cat "$WORK"/wsgate*.log >&2; exit 1; }
done
PORTLIST=$(IFS=,; echo "${GPORTS[*]}")
PSARGS="-n $SUBS -r $RATE -d $DURATION -s $SIZE -W 1 -m $PUBLISHER -P /bench-pub -p /bench -R $RPORT -C bench"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RAW="$WORK/raw.txt"
: >"$RAW"
for rep in $(seq "$REPS"); do
	declare -a g0=()
	for p in "${GPIDS[@]}"; do g0+=("$(cpu_ticks "$p")"); done
	r0=$(cpu_ticks "$RPID")
	t0=$(date +%s.%N)
	set +e
	taskset -c 1 "$WORK/psbench" -g "$PORTLIST" $PSARGS >"$WORK/run$rep.txt" 2>"$WORK/run$rep.err"
	rc=$?
	set -e
	t1=$(date +%s.%N)
	cat "$WORK/run$rep.txt" "$WORK/run$rep.err" >&2
	gt=0
	for k in "${!GPIDS[@]}"; do gt=$(( gt + $(cpu_ticks "${GPIDS[$k]}") - ${g0[$k]} )); done
	rt=$(( $(cpu_ticks "$RPID") - r0 ))
	line=$(grep '^RESULT' "$WORK/run$rep.txt" || echo "RESULT failed=1")
	hz=$(getconf CLK_TCK)
	extra=$(awk -v g="$gt" -v r="$rt" -v hz="$hz" -v a="$t0" -v b="$t1" \
		'BEGIN { w = b - a; printf "wsgate_cpu_s=%.2f redis_cpu_s=%.2f wall_s=%.2f", g / hz, r / hz, w }')
	echo "rep=$rep rc=$rc $line $extra" | tee -a "$RAW"
	sleep 1 # subscribers of the previous run gone: NUMSUB back to the instances only
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
RSS=""
for k in "${!GPIDS[@]}"; do
	RSS="${RSS:+$RSS }instance $((k + 1)): $(awk '/VmHWM/ { printf "%.1f MiB peak", $2 / 1024 }' "/proc/${GPIDS[$k]}/status"),"
done
WARNINGS=$(cat "$WORK"/wsgate*.log | grep -c . || true)

bench_provenance
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
SHA=$(sha256sum "$WORK/wsgate" | cut -c1-12)
MTIME=$(date -u -r "$WSGATE_SRC" '+%Y-%m-%d %H:%M UTC')
REDISV=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
mkdir -p "$(dirname "$OUT")"
CONFIG=$(sed "s/$RPORT/REDISPORT/; s/127.0.0.1:[0-9]*$/127.0.0.1:PORT/" "$WORK/wsgate1.ini")

python3 - "$RAW" "$OUT" <<PYEOF
import re, statistics, sys
raw, out = sys.argv[1], sys.argv[2]
runs = [dict(re.findall(r'(\w+)=([^\s]+)', l)) for l in open(raw) if l.strip()]
ok = [r for r in runs if 'delivered' in r]
o = []
o.append("# Pub/sub fan-out benchmark: $SUBS subscribers on $GATEWAYS wsgate instances, one Redis\n")
o.append("| | |\n|---|---|")
o.append("| date | $(date -u '+%Y-%m-%d %H:%M UTC') |")
o.append("| git commit | $COMMIT (src/ files with uncommitted changes: $DIRTY) |")
o.append("| wsgate binary | $WSGATE_SRC, built $MTIME, sha256 $SHA… |")
o.append("| redis-server | $REDISV, \`--save '' --appendonly no\` |")
o.append("| CPU | $CPU, $(nproc) cores; kernel $(uname -r) |")
o.append("| pinning | redis-server and every wsgate on core 0 (\`taskset -c 0\`, \`workers = 1\`), psbench on core 1 (\`taskset -c 1\`) |")
o.append("| scheduling | PRIO=$PRIO |")
o.append("| load average | before $LOAD_BEFORE, after $LOAD_AFTER (shared machine) |")
o.append("| load | $SUBS subscribers round-robin over $GATEWAYS instances; 1 publisher ($PUBLISHER) at $RATE msg/s for $DURATION s after 1 s warm-up; $SIZE-byte text messages with the send time (CLOCK_MONOTONIC) inside; latency = receive time in psbench - send time |")
o.append("| wsgate memory | ${RSS%,} (VmHWM after all runs) |")
o.append("| wsgate stderr | $WARNINGS line(s) at log_level = warn |")
o.append("")
o.append("| run | delivered / expected | % | out of order | disconnected | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | wsgate CPU s (all instances) | wsgate % of core 0 | redis CPU s | psbench CPU % | publisher lateness max µs |")
o.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in runs:
    if 'delivered' not in r:
        o.append(f"| {r.get('rep')} | FAILED (rc {r.get('rc')}) | | | | | | | | | | | | | |")
        continue
    o.append(f"| {r['rep']} | {int(r['delivered']):,} / {int(r['expected']):,} | {float(r['delivered_pct']):.3f} | {r['out_of_order']} | {r['disconnected']} | {r['p50_us']} | {r['p90_us']} | {r['p99_us']} | {r['p999_us']} | {r['max_us']} | {r['wsgate_cpu_s']} | {100 * float(r['wsgate_cpu_s']) / float(r['wall_s']):.0f} | {r['redis_cpu_s']} | {r['gen_cpu_pct']} | {r['pub_lag_max_us']} |")
if ok:
    def med(k):
        return statistics.median(float(r[k]) for r in ok)
    o.append(f"| **median** | | {med('delivered_pct'):.3f} | | | {med('p50_us'):.0f} | {med('p90_us'):.0f} | {med('p99_us'):.0f} | {med('p999_us'):.0f} | {med('max_us'):.0f} | {med('wsgate_cpu_s'):.2f} | {statistics.median(100 * float(r['wsgate_cpu_s']) / float(r['wall_s']) for r in ok):.0f} | {med('redis_cpu_s'):.2f} | {med('gen_cpu_pct'):.0f} | |")
o.append("")
o.append("wsgate CPU s: utime+stime of all instances over the whole psbench run (connect, warm-up, measured"
         " phase, drain; wall {} s); % of core 0 = that / wall. Near 100 % means the servers' core is saturated"
         " and the latency figures are mostly queueing behind the fan-out.".format(
         ", ".join(r.get('wall_s', '?') for r in runs)))
o.append("")
o.append("## Commands\n")
o.append("\`\`\`")
o.append("$INVOCATION")
o.append("# which runs:")
o.append("taskset -c 0 redis-server --port REDISPORT --bind 127.0.0.1 --save '' --appendonly no")
o.append("taskset -c 0 wsgate -c wsgateN.ini      # x $GATEWAYS, config below")
o.append("cc -O2 -o psbench bench/psbench.c -lcrypto")
o.append("taskset -c 1 psbench -g PORT1,PORT2 $PSARGS".replace("$RPORT", "REDISPORT"))
o.append("\`\`\`\n")
o.append("wsgate config (one per instance):\n")
o.append("\`\`\`ini")
o.append("""$CONFIG""")
o.append("\`\`\`\n")
o.append("Raw RESULT lines:\n")
o.append("\`\`\`")
o += [l.rstrip() for l in open(raw)]
o.append("\`\`\`")
open(out, "w").write("\n".join(o) + "\n")
PYEOF
echo "run-pubsub: wrote $OUT" >&2
