#!/bin/bash
# run-latency-curve.sh - latency against load for wsgate, nginx and Node `ws` (issue #12 item 7):
# 64-byte messages at rising load, p50 and p99 round trip against the messages/s carried, drawn
# with gnuplot (Debian's gnuplot-nox) into bench/results/latency-curve.png, table and commands in
# bench/results/latency-curve.md.
#
# wsbench is a closed-loop generator: the load is raised by the number of connections, each with
# one message in flight (LOADS), so the x axis is the load each server carried, not a rate it was
# offered; a server that saturates shows as a curve that turns up and stops moving right.
# Servers, each pinned to core 0 (generator and backend on core 1):
#   wsgate-proxy  wsgate's proxy route in front of bench/epoll_echo
#   nginx         nginx proxy_pass in front of the same bench/epoll_echo (nginx has no WebSocket
#                 endpoint of its own, so it is compared as the proxy it is deployed as)
#   wsgate-echo   wsgate's echo route (the server itself)
#   node          Node `ws` echo server (bench/node_ws_echo.js)
#
# Knobs: LOADS ["1 4 16 64 256"] connections, DURATION [5] s per point (+1 s warmup),
# REPS [1] per point (median), WSGATE [build/src/wsgate], OUT [bench/results/latency-curve.md].
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
. "$BENCH/lib.sh"

bench_priority run-latency-curve "$0" "$@"
LOADS=${LOADS:-"1 4 16 64 256"}
DURATION=${DURATION:-5}
REPS=${REPS:-1}
WSGATE_SRC=${WSGATE:-$ROOT/build/src/wsgate}
OUT=${OUT:-$BENCH/results/latency-curve.md}
PNG=${OUT%.md}.png
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
export NODE_PATH=${NODE_PATH:-$ROOT/tests/node/node_modules}
command -v gnuplot >/dev/null || { echo "run-latency-curve: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)"
make -s -C "$BENCH" >/dev/null
bench_workdir wsbench-curve
wsgate_snapshot "$WSGATE_SRC" "$WORK"
bench_provenance

declare -A PORT PID
BPORT=$(free_port)
taskset -c 1 "$BENCH/epoll_echo" "$BPORT" 2>"$WORK/backend.log" &
PIDS+=("$!")
wait_port "$BPORT"

PORT[wsgate-proxy]=$(free_port)
PORT[wsgate-echo]=$(free_port)
cat >"$WORK/wsgate.ini" <<EOF
[gateway]
listen = 127.0.0.1:${PORT[wsgate-proxy]}
listen = 127.0.0.1:${PORT[wsgate-echo]}
log_level = warn
workers = 1
[heartbeat]
ping_interval = 0
[route /proxy]
type = proxy
backend = ws://127.0.0.1:$BPORT/echo
[route /echo]
type = echo
EOF
"$WORK/wsgate" -t -c "$WORK/wsgate.ini" >/dev/null
taskset -c 0 "$WORK/wsgate" -c "$WORK/wsgate.ini" 2>"$WORK/wsgate.log" &
PID[wsgate-proxy]=$!
PID[wsgate-echo]=$!
PIDS+=("$!")
wait_port "${PORT[wsgate-proxy]}"

PORT[nginx]=$(free_port)
nginx_ws_proxy_conf "$WORK" "${PORT[nginx]}" "$BPORT" /proxy
taskset -c 0 "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" &
PIDS+=("$!")
wait_port "${PORT[nginx]}"

PORT[node]=$(free_port)
taskset -c 0 node "$BENCH/node_ws_echo.js" "${PORT[node]}" 2>"$WORK/node.log" &
PIDS+=("$!")
wait_port "${PORT[node]}"

declare -A PATHS=([wsgate-proxy]=/proxy [nginx]=/proxy [wsgate-echo]=/echo [node]=/echo)
SERVERS="wsgate-proxy nginx wsgate-echo node"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RAW="$WORK/raw.txt"
: >"$RAW"
for c in $LOADS; do
	for rep in $(seq "$REPS"); do
		for s in $SERVERS; do
			line=$(taskset -c 1 "$BENCH/wsbench" -p "${PORT[$s]}" -P "${PATHS[$s]}" -c "$c" -w 1 -s 64 \
				-d "$DURATION" -W 1 2>>"$WORK/wsbench.err" | grep '^RESULT' || true)
			[ -n "$line" ] || line="RESULT failed=1"
			echo "server=$s load=$c rep=$rep $line" | tee -a "$RAW"
		done
	done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
NGINXV=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
NODEV="node $(node --version) ws $(node -p 'require("ws/package.json").version')"

mkdir -p "$(dirname "$OUT")"
python3 - "$RAW" "$OUT" "$WORK" <<PYEOF
import re, statistics, sys
raw, out, work = sys.argv[1:4]
rows = {}
for line in open(raw):
    kv = dict(re.findall(r'(\w+)=([^\s]+)', line))
    if 'msgs_per_s' in kv:
        rows.setdefault((kv['server'], int(kv['load'])), []).append(kv)
med = lambda l, k: statistics.median(float(r[k]) for r in l)
servers = "$SERVERS".split()
names = {"wsgate-proxy": "wsgate proxy route", "nginx": "nginx $NGINXV proxy_pass",
         "wsgate-echo": "wsgate echo route", "node": "$NODEV echo"}
for s in servers:   # one data file per server for gnuplot: msg/s p50 p99 (ms)
    with open(f"{work}/{s}.dat", "w") as f:
        for c in sorted(c for (x, c) in rows if x == s):
            l = rows[(s, c)]
            f.write(f"{med(l,'msgs_per_s'):.0f} {med(l,'p50_us')/1000:.3f} {med(l,'p99_us')/1000:.3f} {c}\n")
o = ["# Latency against load: wsgate, nginx, Node ws\n", "![latency against load](latency-curve.png)\n",
     "| | |", "|---|---|", "| date | $STARTED |", "| git commit | $COMMIT (src/ files with uncommitted changes: $DIRTY) |",
     "| wsgate binary | $WSGATE_SRC, sha256 $SHA…, $BUILD |", "| versions | $NGINXV; $NODEV; gnuplot $(gnuplot --version | cut -d' ' -f2) |",
     "| pinning | servers on core 0; wsbench and bench/epoll_echo (the proxies' backend) on core 1 |",
     "| load average | before $LOAD_BEFORE, after $LOAD_AFTER (a shared machine) |",
     "| points | connections $LOADS, each 1 × 64 B message in flight (closed loop), $DURATION s after 1 s warmup, median of $REPS |", "",
     "| server | connections | msg/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
for s in servers:
    for c in sorted(c for (x, c) in rows if x == s):
        l = rows[(s, c)]
        o.append(f"| {names[s]} | {c} | {med(l,'msgs_per_s'):,.0f} | {med(l,'p50_us')/1000:.3f} | {med(l,'p99_us')/1000:.3f} |")
o += ["", "## Commands", "", "\`\`\`", "make -C bench; taskset -c 1 bench/epoll_echo BPORT",
      "taskset -c 0 wsgate -c wsgate.ini   # [route /proxy] type = proxy, backend = ws://127.0.0.1:BPORT/echo; [route /echo] type = echo",
      "taskset -c 0 nginx -p DIR -c nginx.conf   # proxy_pass to BPORT with the Upgrade headers",
      "NODE_PATH=tests/node/node_modules taskset -c 0 node bench/node_ws_echo.js PORT",
      "taskset -c 1 bench/wsbench -p PORT -P /proxy|/echo -c C -w 1 -s 64 -d $DURATION -W 1   # C in $LOADS",
      "\`\`\`", "", "Reproduce: \`bench/run-latency-curve.sh\` (LOADS, DURATION, REPS). Raw:", "", "\`\`\`"]
o += [l.rstrip() for l in open(raw)] + ["\`\`\`"]
open(out, "w").write("\n".join(o) + "\n")
PYEOF
cat >"$WORK/plot.gp" <<EOF
set terminal pngcairo size 960,600 noenhanced
set output "$PNG"
set title "64-byte round trips against load (closed loop: 1 message in flight per connection; $LOADS connections)"
set xlabel "messages/s carried"
set ylabel "round trip (ms, log scale)"
set logscale y
set key top left
set grid
S = "$SERVERS"
plot for [i=1:words(S)] "$WORK/".word(S, i).".dat" using 1:3 with linespoints lc i title word(S, i)." p99", \\
     for [i=1:words(S)] "$WORK/".word(S, i).".dat" using 1:2 with lines lc i dashtype 2 title word(S, i)." p50"
EOF
gnuplot "$WORK/plot.gp" 2>"$WORK/gnuplot.err" || { echo "run-latency-curve: gnuplot failed:" >&2; cat "$WORK/gnuplot.err" >&2; exit 1; }
echo "run-latency-curve: wrote $OUT and $PNG"
