#!/bin/bash
# run-idle-memory.sh - memory per idle WebSocket connection: the server's RSS before and while
# N connections (wsbench -m idle) are open; writes bench/results/idle-memory.md.
#
# Environment knobs (defaults in brackets):
#   N=n             idle connections [10000]; keep it under ~19,000 (open-file limit 20,000)
#   HOLD=s          seconds wsbench keeps them open [8]
#   SERVERS="..."   subset of "wsgate epoll node" [all three; wsgate is the one with a target]
#   WSGATE=path     wsgate binary [build/src/wsgate]
#   WORKERS=n       wsgate's `workers` [1]; the server stays on core 0 either way
#   NODE_PATH=dir   where `ws` lives [tests/node/node_modules]
#   OUT=file        markdown output [bench/results/idle-memory.md]
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
. "$BENCH/lib.sh"
N=${N:-10000}
HOLD=${HOLD:-8}
SERVERS=${SERVERS:-"wsgate epoll node"}
WSGATE_SRC=${WSGATE:-$ROOT/build/src/wsgate}
WORKERS=${WORKERS:-1}
export NODE_PATH=${NODE_PATH:-$ROOT/tests/node/node_modules}
OUT=${OUT:-$BENCH/results/idle-memory.md}

ulimit -n 20000 # both the servers and wsbench inherit it (the hard limit here is 20,000)
make -s -C "$BENCH" >/dev/null
bench_workdir wsbench-mem
wsgate_snapshot "$WSGATE_SRC" "$WORK"
bench_provenance

# status_kib PID FIELD -> the value in KiB of a /proc/PID/status line (VmRSS, RssAnon, VmHWM...)
status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

declare -A CMD
ROWS=()
RAW="$WORK/raw.txt"
: >"$RAW"
for s in $SERVERS; do
	port=$(free_port)
	case $s in
	wsgate)
		wsgate_config "$WORK/wsgate" "$WORK/wsgate.ini" "$port" "$WORKERS"
		CMD[$s]="taskset -c 0 wsgate -c wsgate.ini"
		taskset -c 0 "$WORK/wsgate" -c "$WORK/wsgate.ini" 2>"$WORK/wsgate.log" &
		;;
	epoll)
		CMD[$s]="taskset -c 0 bench/epoll_echo PORT"
		taskset -c 0 "$BENCH/epoll_echo" "$port" 2>"$WORK/epoll.log" &
		;;
	node)
		CMD[$s]="NODE_PATH=tests/node/node_modules taskset -c 0 node bench/node_ws_echo.js PORT"
		taskset -c 0 node "$BENCH/node_ws_echo.js" "$port" 2>"$WORK/node.log" &
		;;
	esac
	SPID=$!
	wait_port "$port"
	# Warm up with a few connections first, so one-time costs (OpenSSL's first SHA-1 loads its
	# config, malloc arenas, lazily built tables) are not charged to the N connections.
	taskset -c 1 "$BENCH/wsbench" -m idle -p "$port" -P /echo -c 50 -d 0.3 >/dev/null 2>&1 || true
	sleep 1
	rss0=$(status_kib "$SPID" VmRSS)
	anon0=$(status_kib "$SPID" RssAnon)

	taskset -c 1 "$BENCH/wsbench" -m idle -p "$port" -P /echo -c "$N" -d "$HOLD" >"$WORK/$s.out" 2>"$WORK/$s.err" &
	BPID=$!
	if ! wait_line "$WORK/$s.out" '^READY' 60 "$BPID"; then
		echo "run-idle-memory: $s: wsbench never printed READY" >&2
		cat "$WORK/$s.err" >&2
		wait "$BPID" || true
		ROWS+=("$s FAILED")
		kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=
		continue
	fi
	sleep 2 # let the server finish whatever the last handshakes started
	rss1=$(status_kib "$SPID" VmRSS)
	anon1=$(status_kib "$SPID" RssAnon)
	hwm1=$(status_kib "$SPID" VmHWM)
	fds=$(ls "/proc/$SPID/fd" | wc -l)
	rc=0
	wait "$BPID" || rc=$?
	sleep 1
	rss2=$(status_kib "$SPID" VmRSS)
	kill "$SPID"
	wait "$SPID" 2>/dev/null || true
	SPID=
	line="server=$s workers=$([ "$s" = wsgate ] && echo "$WORKERS" || echo -) n=$N rss_before_kib=$rss0 rss_open_kib=$rss1 rss_after_close_kib=$rss2 anon_before_kib=$anon0 anon_open_kib=$anon1 hwm_kib=$hwm1 fds=$fds wsbench_rc=$rc"
	echo "$line" | tee -a "$RAW"
done

CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
mkdir -p "$(dirname "$OUT")"
python3 - "$RAW" "$OUT" <<PYEOF
import sys, re
raw, out = sys.argv[1], sys.argv[2]
names = {"wsgate": "wsgate" if "$WORKERS" == "1" else "wsgate (workers = $WORKERS)", "epoll": "bare epoll echo", "node": "Node ws"}
cmds = {"wsgate": """${CMD[wsgate]:-}""", "epoll": """${CMD[epoll]:-}""", "node": """${CMD[node]:-}"""}
o = ["# Idle connection memory\n", "| | |", "|---|---|",
     "| date | $STARTED |",
     "| git commit | $COMMIT (src/ files with uncommitted changes: $DIRTY) |",
     "| wsgate binary | $WSGATE_SRC, sha256 $SHA…, $BUILD |",
     "| CPU | $CPU, $(nproc) cores; kernel $(uname -r) |",
     "| connections | N = $N idle WebSocket connections (handshake done, no traffic), held $HOLD s |",
     "",
     "KiB/conn = (VmRSS with N open − VmRSS before) / N, where *before* is measured after a warmup of "
     "50 connections that were opened and closed (so one-time initialisation is not charged per connection). "
     "RssAnon is the heap/stack part of RSS. Kernel socket memory (struct sock, epoll items) is not in RSS "
     "and not counted here. *RSS after close* shows whether the memory went back (glibc keeps freed heap, "
     "so a flat value is normal; a growing one across runs would be a leak).\n",
     "| server | RSS before KiB | RSS with N open KiB | **KiB/conn (RSS)** | KiB/conn (RssAnon) | RSS after close KiB | target | verdict |",
     "|---|---|---|---|---|---|---|---|"]
for line in open(raw):
    kv = dict(re.findall(r'(\w+)=([^\s]+)', line))
    s, n = kv['server'], int(kv['n'])
    per = (int(kv['rss_open_kib']) - int(kv['rss_before_kib'])) / n
    pera = (int(kv['anon_open_kib']) - int(kv['anon_before_kib'])) / n
    target = "≤ 4 KiB" if s == "wsgate" else "—"
    verdict = ("met" if per <= 4 else "NOT met") if s == "wsgate" else ""
    if kv['wsbench_rc'] != '0':
        verdict += " (wsbench reported errors)"
    o.append(f"| {names[s]} | {kv['rss_before_kib']} | {kv['rss_open_kib']} | **{per:.2f}** | {pera:.2f} | {kv['rss_after_close_kib']} | {target} | {verdict} |")
o += ["", "## Commands", "", "wsgate.ini (generated; PORT is a free loopback port):", "", "\`\`\`ini",
      """$(sed "s/127.0.0.1:[0-9]*/127.0.0.1:PORT/" "$WORK/wsgate.ini" 2>/dev/null)""", "\`\`\`", "",
      "\`\`\`", "ulimit -n 20000", "make -C bench"]
for s in "$SERVERS".split():
    o.append(cmds[s])
    o.append(f"taskset -c 1 bench/wsbench -m idle -p PORT -P /echo -c $N -d $HOLD   # then read VmRSS in /proc/SERVER_PID/status after READY")
o += ["\`\`\`", "", "Reproduce: \`bench/run-idle-memory.sh\`. Raw:", "", "\`\`\`"]
o += [l.rstrip() for l in open(raw)]
o += ["\`\`\`"]
open(out, "w").write("\n".join(o) + "\n")
PYEOF
echo "run-idle-memory: wrote $OUT"
