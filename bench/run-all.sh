#!/bin/bash
# run-all.sh - every comparison of issue #12 in one command, one table: echo (wsgate vs bare
# epoll vs Node ws), proxy hop (wsgate vs nginx and HAProxy, Debian's haproxy), latency against
# load (wsgate, nginx, Node: a gnuplot PNG, Debian's gnuplot-nox), broadcast fan-out
# (wsgate vs bare C vs Node), idle ws:// and wss:// memory and idle CPU with heartbeats on, and
# pub/sub through Redis across two instances. Each part is its own bench/run-*.sh (server pinned
# to core 0, generator to core 1, medians of REPS interleaved runs) writing its details to
# bench/results/; this script then rewrites bench/RESULTS.md: a summary table of ratios first,
# then links to the details, with commands, versions and commit.
#
# Knobs (passed to every part): REPS [3], DURATION [10] s per measured run, WSGATE
# [build/src/wsgate], PRIO [autogroup]; PARTS [echo proxy curve fanout idle pubsub]; N [15000] idle
# connections, PING [25] s; FANOUT_LOADS ["5000x20 1000x1000"].
# A quick pass: REPS=1 DURATION=3 N=2000 PING=5 bench/run-all.sh   (~15 min; the full run with
# REPS=3 DURATION=10 N=15000 PING=25 about 1 h 15 min on this 2-core machine)
set -uo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
export REPS=${REPS:-3} DURATION=${DURATION:-10} PRIO=${PRIO:-autogroup}
export WSGATE=${WSGATE:-$ROOT/build/src/wsgate}
export N=${N:-15000} PING=${PING:-25}
PARTS=${PARTS:-"echo proxy curve fanout idle pubsub"}
FANOUT_LOADS=${FANOUT_LOADS:-"5000x20 1000x1000"}
R=$BENCH/results
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
declare -A RC

make -s -C "$BENCH" >/dev/null
for part in $PARTS; do
	echo "run-all: $part" >&2
	case $part in
	echo) "$BENCH/run-echo.sh"; RC[$part]=$? ;;
	proxy) "$BENCH/run-proxy.sh"; RC[$part]=$? ;;
	curve) "$BENCH/run-latency-curve.sh"; RC[$part]=$? ;;
	fanout) LOADS=$FANOUT_LOADS "$BENCH/run-fanout.sh"; RC[$part]=$? ;;
	idle) "$BENCH/run-tls-idle-memory.sh"; RC[$part]=$? ;;
	pubsub) SUBS=1000 GATEWAYS=2 RATE=1000 "$BENCH/run-pubsub.sh"; RC[$part]=$? ;;
	*) echo "run-all: unknown part $part" >&2; RC[$part]=2 ;;
	esac
done

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
DIRTY=$(git -C "$ROOT" status --porcelain -- src | wc -l)
RCS=""
for p in $PARTS; do RCS="$RCS $p=${RC[$p]}"; done
VERSIONS="wsgate $(git -C "$ROOT" describe --always --dirty 2>/dev/null); $(nginx -v 2>&1 | tr -d '\n'); $(haproxy -v 2>/dev/null | sed -n 1p | grep . || echo 'HAProxy: not installed'); node $(node --version 2>/dev/null); ws $(NODE_PATH=$ROOT/tests/node/node_modules node -p 'require("ws/package.json").version' 2>/dev/null); redis $(redis-server --version 2>/dev/null | sed -n 's/.*v=\([^ ]*\).*/\1/p'); $(openssl version); libevent $(pkg-config --modversion libevent 2>/dev/null); kernel $(uname -r)"

python3 - "$R" "$BENCH/RESULTS.md" <<PYEOF
import os, re, sys
R, out = sys.argv[1], sys.argv[2]
def read(name):
    p = os.path.join(R, name)
    return open(p).read() if os.path.exists(p) else ""
rows = []  # (comparison, figure, target, met)
# echo: "| wsgate / epoll | 0.57x | wsgate uses 1.85x the CPU of epoll per message |"
echo = read("echo.md")
for sec in re.split(r"\n## ", echo):
    title = sec.split("\n", 1)[0]
    for m in re.finditer(r"\| wsgate / (\w+) \| ([\d.]+)x \| wsgate uses ([\d.]+)x the CPU", sec):
        setting = "throughput 100x16x64B" if title.startswith("throughput") else "latency 1x1x64B" if title.startswith("latency") else title[:30]
        tgt = "≤ 1.3 (vs epoll)" if m.group(1) == "epoll" else ""
        met = "" if not tgt else ("met" if float(m.group(3)) <= 1.3 else "not met")
        rows.append((f"echo {setting}: CPU/msg wsgate ÷ {m.group(1)} (lower better)", m.group(3), tgt, met))
        rows.append((f"echo {setting}: msg/s wsgate ÷ {m.group(1)} (higher better)", m.group(2), "", ""))
# proxy: summary table rows "| throughput-64B | 0.55x | 1.59x | 1.86x |"
prox = read("proxy-vs-nginx.md")
for m in re.finditer(r"^\| ((?:throughput|latency)-\w+) \| ([\d.]+)x \| ([\d.]+)x \| ([\d.]+)x \|", prox, re.M):
    rows.append((f"proxy {m.group(1)}: msg/s wsgate ÷ nginx (higher better)", m.group(2), "≥ 1", "met" if float(m.group(2)) >= 1 else "not met"))
    rows.append((f"proxy {m.group(1)}: CPU/msg wsgate ÷ nginx (lower better)", m.group(4), "≤ 0.67", "met" if float(m.group(4)) <= 0.67 else "not met"))
    rows.append((f"proxy {m.group(1)}: p99 wsgate ÷ nginx (lower better)", m.group(3), "< 1", "met" if float(m.group(3)) < 1 else "not met"))
for m in re.finditer(r"^\| ((?:throughput|latency)-\w+) vs HAProxy \| ([\d.]+)x \| ([\d.]+)x \| ([\d.]+)x \|", prox, re.M):
    rows.append((f"proxy {m.group(1)}: msg/s wsgate ÷ HAProxy (higher better)", m.group(2), "", ""))
    rows.append((f"proxy {m.group(1)}: CPU/msg wsgate ÷ HAProxy (lower better)", m.group(4), "", ""))
    rows.append((f"proxy {m.group(1)}: p99 wsgate ÷ HAProxy (lower better)", m.group(3), "", ""))
# latency curve: p99 at the highest load each carried, wsgate proxy ÷ nginx
cur = read("latency-curve.md")
pts = {}
for m in re.finditer(r"^\| (wsgate proxy route|nginx [^|]*|wsgate echo route|node [^|]*) \| (\d+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \|", cur, re.M):
    pts.setdefault(m.group(1).split()[0] + (" " + m.group(1).split()[1] if m.group(1).startswith("wsgate") else ""), []).append((int(m.group(2)), float(m.group(3).replace(",", "")), float(m.group(5))))
if "wsgate proxy" in pts and "nginx" in pts:
    top = max(c for c, _, _ in pts["wsgate proxy"])
    w = [p for p in pts["wsgate proxy"] if p[0] == top][0]; n = [p for p in pts["nginx"] if p[0] == top]
    if n:
        rows.append((f"latency curve, {top} conns × 1 in flight: p99 wsgate proxy ÷ nginx (lower better)", f"{w[2] / n[0][2]:.2f}", "< 1", "met" if w[2] < n[0][2] else "not met"))
        rows.append((f"latency curve, {top} conns × 1 in flight: msg/s wsgate proxy ÷ nginx (higher better)", f"{w[1] / n[0][1]:.2f}", "", ""))
if "wsgate echo" in pts and "node" in pts:
    top = max(c for c, _, _ in pts["wsgate echo"])
    w = [p for p in pts["wsgate echo"] if p[0] == top][0]; n = [p for p in pts["node"] if p[0] == top]
    if n:
        rows.append((f"latency curve, {top} conns × 1 in flight: p99 wsgate echo ÷ Node ws (lower better)", f"{w[2] / n[0][2]:.2f}", "", ""))
# fanout: "- 5000x20: CPU per delivery wsgate/epoll = 0.45, p99 wsgate 12.0 ms vs epoll 600.1 ms"
fan = read("fanout.md")
for m in re.finditer(r"^- (\d+x\d+): CPU per delivery wsgate/(\w+) = ([\d.]+), p99 wsgate ([\d.]+) ms vs \w+ ([\d.]+) ms", fan, re.M):
    load, other, ratio, p99w = m.group(1), m.group(2), float(m.group(3)), float(m.group(4))
    tgt = "≤ 0.7" if other == "epoll" and load == "5000x20" else ""
    rows.append((f"fan-out {load}: CPU/delivery wsgate ÷ {other} (lower better)", f"{ratio:.2f}", tgt, "" if not tgt else ("met" if ratio <= 0.7 else "not met")))
    if other == "epoll":
        rows.append((f"fan-out {load}: wsgate p99 ms", f"{p99w:.1f}", "≤ 50" if load == "5000x20" else "", "" if load != "5000x20" else ("met" if p99w <= 50 else "not met")))
for m in re.finditer(r"^\| (\d+x\d+) \| wsgate \| ([\d.]+) \| \*\*([\d.]+)\*\*", fan, re.M):
    if m.group(1) == "1000x1000":
        rows.append(("fan-out 1000x1000: wsgate CPU µs/delivery", m.group(3), "≤ 1", "met" if float(m.group(3)) <= 1 else "not met"))
    rows.append((f"fan-out {m.group(1)}: wsgate delivered %", m.group(2), "100", "met" if float(m.group(2)) >= 100 else "not met"))
# idle: "| ws:// (plain) | ... | **1.61** | ... | **0.123** |"
idle = read("tls-idle-memory.md")
for m in re.finditer(r"^\| (wss?://) \(\w+\) \|[^|]*\|[^|]*\| \*\*([\d.]+)\*\* \|[^|]*\|[^|]*\| (-?[\d.]+) \| (-?[\d.]+) \| \*\*([\d.]+)\*\*", idle, re.M):
    lim = 1 if m.group(1) == "ws://" else 10
    rows.append((f"idle {m.group(1)}: server RSS KiB/conn", m.group(2), f"≤ {lim}", "met" if float(m.group(2)) <= lim else "not met"))
    rows.append((f"idle {m.group(1)}: kernel TCP buffers + slabs KiB/conn (both ends)", f"{float(m.group(3)) + float(m.group(4)):.2f}", "", ""))
    rows.append((f"idle {m.group(1)}: CPU µs/conn/s (heartbeats on)", m.group(5), "≤ 0.5", "met" if float(m.group(5)) <= 0.5 else "not met"))
m = re.search(r"Idle CPU, wsgate ws:// ÷ the bare C pinger[^*]*\*\*([\d.]+)×", idle)
if m:
    rows.append(("idle ws://: CPU wsgate ÷ bare C pinger, same pings (lower better)", m.group(1), "", ""))
# pubsub via Redis: the median row
ps = read("pubsub.md")
m = re.search(r"^\| \*\*median\*\* \| \| ([\d.]+) \| \| \| (\d+) \| (\d+) \| (\d+) \|", ps, re.M)
if m:
    rows.append(("pub/sub via Redis, 2 instances: delivered %", m.group(1), "100", "met" if float(m.group(1)) >= 100 else "not met"))
    rows.append(("pub/sub via Redis, 2 instances: p99 ms", f"{int(m.group(4))/1000:.1f}", "", ""))
o = ["# wsgate benchmark results (bench/run-all.sh)\n",
     "| | |\n|---|---|",
     "| date | $STARTED (start) |",
     "| git commit | $COMMIT (src/ files with uncommitted changes: $DIRTY) |",
     "| versions | $VERSIONS |",
     "| settings | REPS=$REPS DURATION=$DURATION N=$N PING=$PING FANOUT_LOADS='$FANOUT_LOADS' PRIO=$PRIO; server on core 0, generator on core 1 |",
     "| parts (exit status) |$RCS |",
     "",
     "## Summary (issue #12 targets)\n",
     "Ratios are wsgate ÷ the other; each row says whether higher or lower is better for wsgate.\n",
     "| comparison | figure | target | verdict |", "|---|---|---|---|"]
o += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
# The reconnect storm is not run here (bench/run-storm.sh): its last summary block is kept.
storm = re.search(r"<!-- storm-summary -->.*?<!-- /storm-summary -->", read("storm.md"), re.S)
if storm:
    o += ["", "## Reconnect storm (bench/run-storm.sh, not run by run-all.sh)", "", storm.group(0)]
o += ["", "## Details", "",
      "Each file has its own table per run, the exact commands and configs:", "",
      "- echo: [results/echo.md](results/echo.md) (\`bench/run-echo.sh\`)",
      "- proxy hop vs nginx and HAProxy: [results/proxy-vs-nginx.md](results/proxy-vs-nginx.md) (\`bench/run-proxy.sh\`)",
      "- latency against load, wsgate vs nginx vs Node: [results/latency-curve.md](results/latency-curve.md), plot [results/latency-curve.png](results/latency-curve.png) (\`bench/run-latency-curve.sh\`)",
      "- broadcast fan-out vs bare C and Node: [results/fanout.md](results/fanout.md) (\`bench/run-fanout.sh\`)",
      "- idle memory and CPU, ws:// and wss://: [results/tls-idle-memory.md](results/tls-idle-memory.md) (\`bench/run-tls-idle-memory.sh\`)",
      "- pub/sub through Redis, 2 instances: [results/pubsub.md](results/pubsub.md) (\`bench/run-pubsub.sh\`)",
      "",
      "Not run by this script (each needs its own setup, see the file): reconnect storm [results/storm.md](results/storm.md) (\`bench/run-storm.sh\`), Redis Cluster [results/redis-cluster.md](results/redis-cluster.md) (\`bench/run-redis-cluster.sh\`), history topology [results/history-topology.md](results/history-topology.md) (\`bench/run-history-topology.sh\`), history costs [results/history.md](results/history.md), permessage-deflate [results/deflate.md](results/deflate.md).",
      "", "Reproduce: \`REPS=$REPS DURATION=$DURATION N=$N PING=$PING bench/run-all.sh\`."]
open(out, "w").write("\n".join(o) + "\n")
PYEOF
echo "run-all: wrote $BENCH/RESULTS.md" >&2
