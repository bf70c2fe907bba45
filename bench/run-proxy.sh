#!/bin/bash
# run-proxy.sh - proxy benchmark: wsgate's proxy route vs nginx (proxy_pass with the Upgrade
# headers), both in front of the same echo backend. Each proxy runs pinned to core 0; wsbench
# and the backend share core 1. Writes bench/results/proxy-vs-nginx.md: messages/s and latency
# percentiles of each, and their ratio (medians of REPS interleaved runs). Installs nothing:
# needs Debian's nginx (apt-get install nginx-light) and the tools `make -C bench` builds.
#
# Environment knobs (defaults in brackets):
#   WSGATE=path     wsgate binary [build/src/wsgate]; copied first so a rebuild mid-run is harmless
#   WSGATE_BASE=path  a second wsgate binary (e.g. main's) measured in the same run, same
#                   config, interleaved with the others: A/B and nginx side by side [none]
#   NGINX=path      nginx binary [nginx on PATH, else /usr/sbin/nginx]
#   BACKEND=epoll|node  the echo backend: bench/epoll_echo (C) or tests/node/backend_ws_echo.js
#                   (Node ws) [epoll]
#   REPS=n          repetitions of every (setting, proxy) pair, proxies interleaved [3]
#   DURATION=s      measured seconds of the throughput settings [10]; latency uses 5
#   PRIO=autogroup|none  as in run-echo.sh: own session with autogroup nice -20 (root) [autogroup]
#   OUT=file        markdown output [bench/results/proxy-vs-nginx.md]
#   PROFILE=1|0     after the measured runs, one more throughput-64B run per proxy with perf
#                   attached for 5 s (lib.sh bench_profile): where each one's CPU goes, in the
#                   "Profile" section; not counted in the medians [1]
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
. "$BENCH/lib.sh"

bench_priority run-proxy "$0" "$@"

WSGATE_SRC=${WSGATE:-$ROOT/build/src/wsgate}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
BACKEND=${BACKEND:-epoll}
REPS=${REPS:-3}
DURATION=${DURATION:-10}
OUT=${OUT:-$BENCH/results/proxy-vs-nginx.md}
PROFILE=${PROFILE:-1}
WSGATE_BASE=${WSGATE_BASE:-}
PROXIES="wsgate nginx"
[ -n "$WSGATE_BASE" ] && PROXIES="wsgate base nginx"
# HAProxy (Debian's haproxy package) when installed: the other proxy people put in front.
HAPROXY=${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}
[ -x "$HAPROXY" ] && PROXIES="$PROXIES haproxy"
export NODE_PATH=${NODE_PATH:-$ROOT/tests/node/node_modules}

if [ ! -x "$NGINX" ]; then
	echo "run-proxy: nginx not found (apt-get install nginx-light); set NGINX=path" >&2
	exit 1
fi

# Each setting: a name and wsbench arguments.
SETTINGS=(
	"throughput-64B|-c 100 -w 16 -s 64 -d $DURATION -W 2"
	"throughput-16KiB|-c 20 -w 4 -s 16384 -d $DURATION -W 2"
	"latency-64B|-c 1 -w 1 -s 64 -d 5 -W 1"
)

make -s -C "$BENCH" >/dev/null
bench_workdir wsbench-proxy

wsgate_snapshot "$WSGATE_SRC" "$WORK"
bench_provenance

# ---- the backend, on core 1 with the load generator ----
BPORT=$(free_port)
case $BACKEND in
epoll)
	BACKEND_CMD="taskset -c 1 bench/epoll_echo BPORT"
	taskset -c 1 "$BENCH/epoll_echo" "$BPORT" 2>"$WORK/backend.log" &
	;;
node)
	BACKEND_CMD="NODE_PATH=tests/node/node_modules taskset -c 1 node tests/node/backend_ws_echo.js --port BPORT --quiet"
	taskset -c 1 node "$ROOT/tests/node/backend_ws_echo.js" --port "$BPORT" --quiet \
	    >"$WORK/backend.out" 2>"$WORK/backend.log" &
	;;
*)
	echo "run-proxy: BACKEND must be epoll or node" >&2
	exit 2
	;;
esac
PIDS+=("$!")
wait_port "$BPORT"

declare -A PORT PID CMD

# ---- wsgate: one worker, no heartbeats, the proxy route ----
PORT[wsgate]=$(free_port)
cat >"$WORK/wsgate.ini" <<EOF
[gateway]
listen = 127.0.0.1:${PORT[wsgate]}
log_level = warn
workers = 1
max_message_size = 1MiB

[heartbeat]
ping_interval = 0

[route /echo]
type = proxy
backend = ws://127.0.0.1:$BPORT/echo
connect_timeout = 3s
forward_headers = yes
EOF
"$WORK/wsgate" -t -c "$WORK/wsgate.ini" >/dev/null
CMD[wsgate]="taskset -c 0 wsgate -c wsgate.ini"
taskset -c 0 "$WORK/wsgate" -c "$WORK/wsgate.ini" 2>"$WORK/wsgate.log" &
PID[wsgate]=$!
PIDS+=("$!")
wait_port "${PORT[wsgate]}"

# ---- the base wsgate (WSGATE_BASE): the same config on its own port ----
BASE_SHA=-
if [ -n "$WSGATE_BASE" ]; then
	cp -p "$WSGATE_BASE" "$WORK/wsgate-base"
	BASE_SHA=$(sha256sum "$WORK/wsgate-base" | cut -c1-12)
	PORT[base]=$(free_port)
	sed "s/^listen = .*/listen = 127.0.0.1:${PORT[base]}/" "$WORK/wsgate.ini" >"$WORK/base.ini"
	CMD[base]="taskset -c 0 wsgate-base -c base.ini    # WSGATE_BASE, same config, own port"
	taskset -c 0 "$WORK/wsgate-base" -c "$WORK/base.ini" 2>"$WORK/base.log" &
	PID[base]=$!
	PIDS+=("$!")
	wait_port "${PORT[base]}"
fi

# ---- nginx: master + one worker, the usual WebSocket proxy_pass ----
PORT[nginx]=$(free_port)
nginx_ws_proxy_conf "$WORK" "${PORT[nginx]}" "$BPORT" /echo
"$NGINX" -t -q -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
CMD[nginx]="taskset -c 0 nginx -p DIR -c nginx.conf -e DIR/nginx-error.log"
taskset -c 0 "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" &
PIDS+=("$!")
wait_port "${PORT[nginx]}"
# The worker does the relaying: its CPU is what -S measures.
for _ in $(seq 50); do
	PID[nginx]=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1 || true)
	[ -n "${PID[nginx]}" ] && break
	sleep 0.1
done
NGINXV=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')

# ---- HAProxy: one process, one thread, HTTP mode (it sees the Upgrade and then tunnels) ----
HAPROXYV="not installed"
if [[ " $PROXIES " == *" haproxy "* ]]; then
	PORT[haproxy]=$(free_port)
	cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
frontend ws
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend echo
backend echo
    server b1 127.0.0.1:$BPORT
EOF
	"$HAPROXY" -c -q -f "$WORK/haproxy.cfg"
	CMD[haproxy]="taskset -c 0 haproxy -db -f haproxy.cfg"
	taskset -c 0 "$HAPROXY" -db -f "$WORK/haproxy.cfg" 2>"$WORK/haproxy.log" &
	PID[haproxy]=$!
	PIDS+=("$!")
	wait_port "${PORT[haproxy]}"
	HAPROXYV=$("$HAPROXY" -v 2>/dev/null | sed -n '1s/^HAProxy version //p') # sed reads it all: no SIGPIPE under pipefail
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RAW="$WORK/raw.txt"
: >"$RAW"
for setting in "${SETTINGS[@]}"; do
	sname=${setting%%|*}
	args=${setting#*|}
	for rep in $(seq "$REPS"); do
		# Interleaved, and the order rotates with each repetition.
		order=($PROXIES)
		k=$(((rep - 1) % ${#order[@]}))
		order=("${order[@]:$k}" "${order[@]:0:$k}")
		for s in "${order[@]}"; do
			# shellcheck disable=SC2086 # $args is a list of options
			line=$(taskset -c 1 "$BENCH/wsbench" -p "${PORT[$s]}" -P /echo $args -S "${PID[$s]}" 2>>"$WORK/wsbench.err" | grep '^RESULT' || true)
			[ -n "$line" ] || line="RESULT failed=1"
			echo "server=$s setting=$sname rep=$rep $line" | tee -a "$RAW"
		done
	done
done
# ---- the profile: one more throughput-64B run per proxy, perf attached from 1 s after the
# warm-up for 5 s; its msg/s only scales the counts to per-message figures ----
PROF="$WORK/profile.md"
: >"$PROF"
# shellcheck disable=SC2086 # the proxies but the base binary, as words
bench_profile_servers "proxy throughput-64B" "${SETTINGS[0]#*|}" ${PROXIES//base/}

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
RSS_WSGATE=$(awk '/^VmRSS/ {print $2}' "/proc/${PID[wsgate]}/status")
RSS_NGINX=$(awk '/^VmRSS/ {print $2}' "/proc/${PID[nginx]}/status")
RSS_HAPROXY=-
[ -n "${PID[haproxy]:-}" ] && RSS_HAPROXY=$(awk '/^VmRSS/ {print $2}' "/proc/${PID[haproxy]}/status")

CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
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

def ok(sname, s):
    return [r for r in rows.get((sname, s), []) if 'msgs_per_s' in r]

names = {"wsgate": "wsgate (proxy route)", "base": "wsgate base (WSGATE_BASE)", "nginx": "nginx $NGINXV (proxy_pass)", "haproxy": "HAProxy $HAPROXYV (mode http)"}
order = "$PROXIES".split()
setting_args = {}
for s in """$(printf '%s\n' "${SETTINGS[@]}")""".strip().split("\n"):
    n, a = s.split("|", 1)
    setting_args[n] = a

o = []
o.append("# Proxy benchmark: wsgate vs nginx" + (" and HAProxy" if "haproxy" in order else "") + " in front of the same echo backend\n")
o.append("| | |\n|---|---|")
o.append("| date | $STARTED (start of the runs) |")
o.append("| git commit | $COMMIT (src/ files with uncommitted changes: $DIRTY) |")
o.append("| wsgate binary | $WSGATE_SRC, built $MTIME, sha256 $SHA…, $BUILD |")
if "base" in order:
    o.append("| base wsgate binary | $WSGATE_BASE, sha256 $BASE_SHA…, same config |")
o.append("| nginx | $NGINXV, master + 1 worker (\`worker_processes 1\`) |")
o.append("| HAProxy | $HAPROXYV, one process, \`nbthread 1\`, \`mode http\` (tunnels after the Upgrade) |")
o.append("| backend | $BACKEND (\`$BACKEND_CMD\`) |")
o.append("| CPU | $CPU, $(nproc) cores; kernel $(uname -r) |")
o.append("| pinning | each proxy on core 0 (\`taskset -c 0\`); wsbench and the backend on core 1 |")
o.append("| scheduling | PRIO=$PRIO |")
o.append("| load average | before $LOAD_BEFORE, after $LOAD_AFTER (other users' jobs share this machine) |")
o.append("| repetitions | $REPS per (setting, proxy), proxies interleaved; medians, msg/s range in brackets |")
o.append("| RSS after the runs | wsgate $RSS_WSGATE KiB, nginx worker $RSS_NGINX KiB, HAProxy $RSS_HAPROXY KiB |")
o.append("")
o.append("## Summary: wsgate / nginx\n")
o.append("| setting | msg/s ratio (higher is better for wsgate) | p99 latency ratio (lower is better for wsgate) | proxy CPU per message ratio |")
o.append("|---|---|---|---|")
for sname in setting_args:
    w, n = ok(sname, "wsgate"), ok(sname, "nginx")
    if not w or not n:
        o.append(f"| {sname} | n/a | n/a | n/a |")
        continue
    o.append(f"| {sname} | {med(w,'msgs_per_s')/med(n,'msgs_per_s'):.2f}x | {med(w,'p99_us')/med(n,'p99_us'):.2f}x | {med(w,'srv_ns_per_msg')/med(n,'srv_ns_per_msg'):.2f}x |")
o.append("")
if "haproxy" in order:
    o.append("## Summary: wsgate / HAProxy\n")
    o.append("| setting | msg/s ratio (higher is better for wsgate) | p99 latency ratio (lower is better for wsgate) | proxy CPU per message ratio |")
    o.append("|---|---|---|---|")
    for sname in setting_args:
        w, h = ok(sname, "wsgate"), ok(sname, "haproxy")
        if not w or not h:
            o.append(f"| {sname} vs HAProxy | n/a | n/a | n/a |")
            continue
        o.append(f"| {sname} vs HAProxy | {med(w,'msgs_per_s')/med(h,'msgs_per_s'):.2f}x | {med(w,'p99_us')/med(h,'p99_us'):.2f}x | {med(w,'srv_ns_per_msg')/med(h,'srv_ns_per_msg'):.2f}x |")
    o.append("")
if "base" in order:
    o.append("## Summary: wsgate / base wsgate, and base / nginx\n")
    o.append("| setting | msg/s ratio | p99 latency ratio | proxy CPU per message ratio |")
    o.append("|---|---|---|---|")
    for a, b in (("wsgate", "base"), ("base", "nginx")):
        for sname in setting_args:
            x, y = ok(sname, a), ok(sname, b)
            if not x or not y:
                o.append(f"| {sname}, {a} / {b} | n/a | n/a | n/a |")
                continue
            o.append(f"| {sname}, {a} / {b} | {med(x,'msgs_per_s')/med(y,'msgs_per_s'):.2f}x | {med(x,'p99_us')/med(y,'p99_us'):.2f}x | {med(x,'srv_ns_per_msg')/med(y,'srv_ns_per_msg'):.2f}x |")
    o.append("")
for sname, args in setting_args.items():
    o.append(f"## {sname}: \`wsbench {args}\`\n")
    o.append("| proxy | msg/s (median) [min–max] | MB/s | p50 µs | p99 µs | max µs | proxy CPU % | proxy CPU ns/msg | generator CPU % | errors |")
    o.append("|---|---|---|---|---|---|---|---|---|---|")
    for s in order:
        lst = rows.get((sname, s), [])
        good = ok(sname, s)
        if not good:
            o.append(f"| {names[s]} | FAILED | | | | | | | | |")
            continue
        rates = [float(r['msgs_per_s']) for r in good]
        errs = sum(int(r.get('errors', 0)) for r in good) + (len(lst) - len(good))
        o.append(f"| {names[s]} | {med(good,'msgs_per_s'):,.0f} [{min(rates):,.0f}–{max(rates):,.0f}] | {med(good,'mb_per_s'):.2f} | {med(good,'p50_us'):.0f} | {med(good,'p99_us'):.0f} | {med(good,'max_us'):.0f} | {med(good,'srv_cpu_pct'):.0f} | {med(good,'srv_ns_per_msg'):.0f} | {med(good,'gen_cpu_pct'):.0f} | {errs} |")
    o.append("")
o.append("## Where the difference comes from\n")
o.append("nginx and HAProxy relay an upgraded connection as opaque bytes: one recv and one send per "
         "batch. wsgate parses every frame on both hops (the client's frames, UTF-8 and limits; "
         "the backend's frames), passes a client's masked payload on as it came and unmasks nothing "
         "it need not check. Its client side reads with one recv per readable event into a "
         "transport of its own (src/transport_plain.c); its backend side is a libevent bufferevent "
         "(readv after an ioctl(FIONREAD)). Each side writes once per loop turn: the clients' writes "
         "go out as io_uring sendmsg batches when liburing is built in, the backends' as one "
         "writev each. The profile below says where each proxy's CPU "
         "went in this run.")
o.append("")
o.append("## Profile: throughput-64B, each proxy (PROFILE=1, one extra run each, not in the medians)\n")
prof = open("$PROF").read().strip()
o.append(prof if prof else "Not taken (PROFILE=0, or DURATION under 8 s).")
o.append("")
o.append("## Commands\n")
o.append("wsgate.ini (generated; PORT and BPORT are free loopback ports):\n")
o.append("\`\`\`ini")
o.append("""$(sed -e "s/127.0.0.1:${PORT[wsgate]}/127.0.0.1:PORT/" -e "s/127.0.0.1:$BPORT/127.0.0.1:BPORT/" "$WORK/wsgate.ini")""")
o.append("\`\`\`\n")
o.append("nginx.conf (generated; DIR is the run's temp dir):\n")
o.append("\`\`\`nginx")
o.append("""$(sed -e "s#$WORK#DIR#g" -e "s/127.0.0.1:${PORT[nginx]}/127.0.0.1:PORT/" -e "s/127.0.0.1:$BPORT/127.0.0.1:BPORT/" "$WORK/nginx.conf")""")
o.append("\`\`\`\n")
if "haproxy" in order:
    o.append("haproxy.cfg (generated; PORT and BPORT are free loopback ports):\n")
    o.append("\`\`\`")
    o.append("""$(sed -e "s/127.0.0.1:${PORT[haproxy]:-0}\$/127.0.0.1:PORT/" -e "s/127.0.0.1:$BPORT/127.0.0.1:BPORT/" "$WORK/haproxy.cfg" 2>/dev/null)""")
    o.append("\`\`\`\n")
o.append("\`\`\`")
o.append("make -C bench")
o.append("""$BACKEND_CMD""")
for s in order:
    o.append({"wsgate": """${CMD[wsgate]}""", "base": """${CMD[base]:-}""", "nginx": """${CMD[nginx]}""", "haproxy": """${CMD[haproxy]:-}"""}[s])
for sname, args in setting_args.items():
    o.append(f"taskset -c 1 bench/wsbench -p PORT -P /echo {args} -S PROXY_PID    # {sname}")
o.append("\`\`\`")
o.append("")
o.append("Reproduce: \`bench/run-proxy.sh\` (REPS, DURATION, BACKEND=node, WSGATE=...). Raw RESULT lines:\n")
o.append("\`\`\`")
o.extend(l.rstrip() for l in open(raw))
o.append("\`\`\`")
open(out, "w").write("\n".join(o) + "\n")
PYEOF
echo "run-proxy: wrote $OUT"
