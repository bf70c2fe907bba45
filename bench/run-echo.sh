#!/bin/bash
# run-echo.sh - echo benchmark: wsgate vs a bare epoll echo server vs Node `ws`, each pinned to
# core 0 with wsbench on core 1; writes bench/results/echo.md (medians of REPS interleaved runs).
#
# Environment knobs (defaults in brackets):
#   WSGATE=path     wsgate binary [build/src/wsgate]; copied first so a rebuild mid-run is harmless
#   NODE_PATH=dir   where `ws` lives [tests/node/node_modules]
#   REPS=n          repetitions of every (setting, server) pair, servers interleaved [3]
#   DURATION=s      measured seconds of the throughput setting [10]; the latency one uses 5
#   SERVERS="..."   subset of "wsgate epoll node" [all three]
#   PRIO=autogroup|none  autogroup (default): run in a new session whose scheduler autogroup has
#                   nice -20, so other users' jobs on this shared box do not preempt the
#                   benchmark (needs root); none: leave scheduling alone
#   OUT=file        markdown output [bench/results/echo.md]
#   PROFILE=1|0     after the measured runs, one more throughput run per server (Node excepted)
#                   with perf attached for 5 s (lib.sh bench_profile_wsbench), in the "Profile"
#                   section; not counted in the medians [1]
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
. "$BENCH/lib.sh"

# Priority: a fresh session gets its own autogroup; nice it so the whole benchmark (servers and
# generator) competes as one heavy group instead of losing the CPU to other sessions.
bench_priority run-echo "$0" "$@"

WSGATE_SRC=${WSGATE:-$ROOT/build/src/wsgate}
export NODE_PATH=${NODE_PATH:-$ROOT/tests/node/node_modules}
REPS=${REPS:-3}
DURATION=${DURATION:-10}
SERVERS=${SERVERS:-"wsgate epoll node"}
OUT=${OUT:-$BENCH/results/echo.md}
PROFILE=${PROFILE:-1}

# Each setting: a name and wsbench arguments (kept under 15 s per run).
SETTINGS=(
	"throughput|-c 100 -w 16 -s 64 -d $DURATION -W 2"
	"latency|-c 1 -w 1 -s 64 -d 5 -W 1"
)

make -s -C "$BENCH" >/dev/null
bench_workdir wsbench

wsgate_snapshot "$WSGATE_SRC" "$WORK"
bench_provenance

declare -A PORT PID CMD
start_server() {
	local name=$1 port
	port=$(free_port)
	PORT[$name]=$port
	case $name in
	wsgate)
		wsgate_config "$WORK/wsgate" "$WORK/wsgate.ini" "$port"
		CMD[$name]="taskset -c 0 wsgate -c wsgate.ini"
		taskset -c 0 "$WORK/wsgate" -c "$WORK/wsgate.ini" 2>"$WORK/wsgate.log" &
		;;
	epoll)
		CMD[$name]="taskset -c 0 bench/epoll_echo PORT"
		taskset -c 0 "$BENCH/epoll_echo" "$port" 2>"$WORK/epoll.log" &
		;;
	node)
		CMD[$name]="NODE_PATH=tests/node/node_modules taskset -c 0 node bench/node_ws_echo.js PORT"
		taskset -c 0 node "$BENCH/node_ws_echo.js" "$port" 2>"$WORK/node.log" &
		;;
	esac
	PID[$name]=$!
	PIDS+=("$!")
	wait_port "$port"
}

for s in $SERVERS; do start_server "$s"; done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RAW="$WORK/raw.txt"
: >"$RAW"
for setting in "${SETTINGS[@]}"; do
	sname=${setting%%|*}
	args=${setting#*|}
	for rep in $(seq "$REPS"); do
		# rotate the server order each repetition so drift in background load spreads evenly
		order=($SERVERS)
		shift_by=$(( (rep - 1) % ${#order[@]} ))
		order=("${order[@]:$shift_by}" "${order[@]:0:$shift_by}")
		for s in "${order[@]}"; do
			line=$(taskset -c 1 "$BENCH/wsbench" -p "${PORT[$s]}" -P /echo $args -S "${PID[$s]}" 2>>"$WORK/wsbench.err" | grep '^RESULT' || true)
			[ -n "$line" ] || line="RESULT failed=1"
			echo "server=$s setting=$sname rep=$rep $line" | tee -a "$RAW"
		done
	done
done
PROF="$WORK/profile.md"
: >"$PROF"
# shellcheck disable=SC2086 # the servers but Node, as words
bench_profile_servers "echo throughput" "${SETTINGS[0]#*|}" ${SERVERS//node/}
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# Server RSS after the runs (the connections are closed by then; for idle memory see
# run-idle-memory.sh).
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
NODEV=$(node --version)
WSV=$(node -p 'require("ws/package.json").version' 2>/dev/null || echo "?")
mkdir -p "$(dirname "$OUT")"

python3 - "$RAW" "$OUT" <<PYEOF
import sys, statistics, re
raw, out = sys.argv[1], sys.argv[2]
rows = {}
for line in open(raw):
    kv = dict(re.findall(r'(\w+)=([^\s]+)', line))
    rows.setdefault((kv['setting'], kv['server']), []).append(kv)

def med(lst, key):
    vals = [float(r[key]) for r in lst if key in r]
    return statistics.median(vals) if vals else float('nan')

names = {"wsgate": "wsgate", "epoll": "bare epoll echo (bench/epoll_echo.c)", "node": "Node ws ($WSV, node $NODEV)"}
order = [s for s in "$SERVERS".split()]
cmds = {
    "wsgate": """${CMD[wsgate]:-}""",
    "epoll": """${CMD[epoll]:-}""",
    "node": """${CMD[node]:-}""",
}
setting_args = {}
for s in """$(printf '%s\n' "${SETTINGS[@]}")""".strip().split("\n"):
    n, a = s.split("|", 1)
    setting_args[n] = a

o = []
o.append("# Echo benchmark: wsgate vs bare epoll vs Node ws\n")
o.append("| | |\n|---|---|")
o.append("| date | $STARTED (start of the runs) |")
o.append("| git commit | $COMMIT (src/ files with uncommitted changes: $DIRTY) |")
o.append("| wsgate binary | $WSGATE_SRC, built $MTIME, sha256 $SHA…, $BUILD |")
o.append("| CPU | $CPU, $(nproc) cores; kernel $(uname -r) |")
o.append("| pinning | every server on core 0 (\`taskset -c 0\`), wsbench on core 1 (\`taskset -c 1\`) |")
o.append("| scheduling | PRIO=$PRIO (autogroup: own session, autogroup nice -20, to keep other users' jobs on this shared machine from preempting the run) |")
o.append("| load average | before $LOAD_BEFORE, after $LOAD_AFTER (other users' jobs share this machine) |")
o.append("| repetitions | $REPS per (setting, server), servers interleaved; table shows the median, msg/s range in brackets |")
o.append("")
for sname, args in setting_args.items():
    o.append(f"## {sname}: \`wsbench {args}\` (64-byte binary messages)\n")
    o.append("| server | msg/s (median) [min–max] | MB/s | p50 µs | p99 µs | max µs | server CPU % | server CPU ns/msg | server runnable-waiting % | generator CPU % | errors |")
    o.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in order:
        lst = rows.get((sname, s), [])
        ok = [r for r in lst if 'msgs_per_s' in r]
        if not ok:
            o.append(f"| {names[s]} | FAILED | | | | | | | | | |")
            continue
        rates = [float(r['msgs_per_s']) for r in ok]
        errs = sum(int(r.get('errors', 0)) for r in ok) + (len(lst) - len(ok))
        o.append(f"| {names[s]} | {med(ok,'msgs_per_s'):,.0f} [{min(rates):,.0f}–{max(rates):,.0f}] | {med(ok,'mb_per_s'):.2f} | {med(ok,'p50_us'):.0f} | {med(ok,'p99_us'):.0f} | {med(ok,'max_us'):.0f} | {med(ok,'srv_cpu_pct'):.0f} | {med(ok,'srv_ns_per_msg'):.0f} | {med(ok,'srv_wait_pct'):.0f} | {med(ok,'gen_cpu_pct'):.0f} | {errs} |")
    o.append("")
    def get(s, k):
        lst = [r for r in rows.get((sname, s), []) if 'msgs_per_s' in r]
        return med(lst, k) if lst else float('nan')
    if "wsgate" in order:
        o.append("| ratio | throughput (msg/s) | CPU per message (lower is better for wsgate) |")
        o.append("|---|---|---|")
        for other, label in (("node", "wsgate / node"), ("epoll", "wsgate / epoll")):
            if other in order:
                o.append(f"| {label} | {get('wsgate','msgs_per_s')/get(other,'msgs_per_s'):.2f}x | wsgate uses {get('wsgate','srv_ns_per_msg')/get(other,'srv_ns_per_msg'):.2f}x the CPU of {other} per message |")
        o.append("")
prof = open("$PROF").read().strip()
o.append("## Profile: throughput, wsgate and the bare epoll server (PROFILE=1, one extra run each, not in the medians)\n")
o.append(prof if prof else "Not taken (PROFILE=0, or DURATION under 8 s).")
o.append("")
o.append("## Commands\n")
o.append("wsgate.ini (generated; PORT is a free loopback port):\n")
o.append("\`\`\`ini")
o.append("""$(sed "s/127.0.0.1:[0-9]*/127.0.0.1:PORT/" "$WORK/wsgate.ini" 2>/dev/null)""")
o.append("\`\`\`\n")
o.append("\`\`\`")
o.append("make -C bench")
for s in order:
    o.append(cmds[s])
for sname, args in setting_args.items():
    o.append(f"taskset -c 1 bench/wsbench -p PORT -P /echo {args} -S SERVER_PID    # {sname}")
o.append("\`\`\`")
o.append("")
o.append("Reproduce everything: \`bench/run-echo.sh\` (see bench/README.md). Raw RESULT lines:\n")
o.append("\`\`\`")
o.extend(l.rstrip() for l in open(raw))
o.append("\`\`\`")
open(out, "w").write("\n".join(o) + "\n")
PYEOF
echo "run-echo: wrote $OUT"
