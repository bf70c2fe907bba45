#!/bin/bash
# run-tls-idle-memory.sh - memory and CPU per idle wss:// and ws:// connection: wsgate's RSS
# before and while N TLS + WebSocket connections (bench/tls_idle_client, another process with its
# own open-file limit, answering pings) are open and idle with heartbeats on; the kernel's TCP
# memory (/proc/net/sockstat, /proc/slabinfo) and wsgate's CPU per connection per second over one
# ping interval (issue #12 items 4 and 5). Writes bench/results/tls-idle-memory.md.
#
# Environment knobs (defaults in brackets):
#   N=n           idle connections [15000]; under ~19,000 (open-file limit 20,000 per process)
#   PING=s        ping_interval in seconds [25]; 0: heartbeats off
#   WINDOW=s      seconds over which idle CPU is measured [PING, or 10 when PING=0]
#   HOLD=s        seconds the client keeps them open after the last upgrade [WINDOW + 6, and
#                 WINDOW more with PROFILE=1]
#   MODES="..."   subset of "tls plain bare" ["tls plain", and bare when PING > 0]; bare: not
#                 wsgate but bench/epoll_echo's ping mode over ws:// (one write() per ping, the
#                 pongs read and dropped), the floor the kernel sets for idle CPU on loopback
#   WSGATE=path   wsgate binary [build/src/wsgate]
#   OUT=file      markdown output [bench/results/tls-idle-memory.md]
#   PROFILE=1|0   [1] after each mode's measured window, perf on the server for one more window
#                 (lib.sh bench_profile: system calls and CPU samples per ping cycle); and one
#                 extra wss:// run of HEAPN [2000] connections under Debian's heaptrack, killed
#                 while they are open: the live heap per connection by who allocated it
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
. "$BENCH/lib.sh"

bench_priority run-tls-idle-memory "$0" "$@"
N=${N:-15000}
PING=${PING:-25}
WINDOW=${WINDOW:-$([ "$PING" -gt 0 ] && echo "$PING" || echo 10)}
PROFILE=${PROFILE:-1}
HEAPN=${HEAPN:-2000}
HOLD=${HOLD:-$((WINDOW + 6 + (PROFILE == 1 ? WINDOW + 2 : 0)))}
MODES=${MODES:-$([ "$PING" -gt 0 ] && echo "tls plain bare" || echo "tls plain")}
WSGATE_SRC=${WSGATE:-$ROOT/build/src/wsgate}
OUT=${OUT:-$BENCH/results/tls-idle-memory.md}

make -s -C "$BENCH" epoll_echo >/dev/null
ulimit -n "$(ulimit -Hn)" # server and client inherit it; each has its own N + a few fds
bench_workdir wsgate-tlsmem
wsgate_snapshot "$WSGATE_SRC" "$WORK"
bench_provenance

# The client, built here against the same libevent/OpenSSL as wsgate.
CLIENT_BUILD="cc -O2 -o tls_idle_client bench/tls_idle_client.c \$(pkg-config --cflags --libs libevent_openssl openssl)"
# shellcheck disable=SC2046
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -o "$WORK/tls_idle_client" "$BENCH/tls_idle_client.c" \
	$(pkg-config --cflags --libs libevent libevent_openssl openssl)

# A P-256 certificate made now (ECDSA: the cheaper handshake, the usual choice for a gateway).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=bench.test" -addext "subjectAltName=DNS:bench.test" \
	-keyout "$WORK/server.key" -out "$WORK/server.pem" >/dev/null 2>&1

status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
# CPU ns of every thread of a pid (schedstat: the ns it ran), summed.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'; }
# Kernel TCP memory: sockstat's mem (pages of socket buffers) and the TCP and inode slabs (KiB).
tcp_mem_pages() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
tcp_slab_kib() { awk '$1 == "TCP" || $1 == "sock_inode_cache" { s += $3 * $4 } END { printf "%d", s / 1024 }' /proc/slabinfo 2>/dev/null || echo 0; }

# config MODE PORT FILE: one listener (tls or not), an echo route, heartbeats every PING s, quiet log.
config() {
	local flag="" tls=""
	if [ "$1" = tls ]; then
		flag=" tls"
		tls=$(printf '[tls]\ncert = %s\nkey = %s\n' "$WORK/server.pem" "$WORK/server.key")
	fi
	for workers in "workers = 1" ""; do
		cat >"$3" <<-EOF
			[gateway]
			listen = 127.0.0.1:$2$flag
			log_level = warn
			$workers
			[heartbeat]
			ping_interval = ${PING}s
			$tls
			[route /echo]
			type = echo
		EOF
		"$WORK/wsgate" -t -c "$3" >/dev/null 2>&1 && return 0
	done
	"$WORK/wsgate" -t -c "$3" >&2
	return 1
}

RAW="$WORK/raw.txt"
: >"$RAW"
: >"$WORK/profile.md"
for mode in $MODES; do
	port=$(free_port)
	flag=""
	[ "$mode" != tls ] && flag="-x"
	if [ "$mode" = bare ]; then
		taskset -c 0 "$BENCH/epoll_echo" "$port" ping "$PING" 2>"$WORK/$mode.log" &
	else
		config "$mode" "$port" "$WORK/$mode.ini"
		taskset -c 0 "$WORK/wsgate" -c "$WORK/$mode.ini" 2>"$WORK/$mode.log" &
	fi
	SPID=$!
	wait_port "$port"
	# Warmup: one-time costs (OpenSSL tables, the first handshake's allocations, malloc arenas)
	# are not charged to the N connections.
	taskset -c 1 "$WORK/tls_idle_client" -p "$port" -n 50 -d 0 -s bench.test $flag >/dev/null 2>&1 || true
	sleep 1
	rss0=$(status_kib "$SPID" VmRSS)
	anon0=$(status_kib "$SPID" RssAnon)
	kmem0=$(tcp_mem_pages)
	slab0=$(tcp_slab_kib)
	taskset -c 1 "$WORK/tls_idle_client" -p "$port" -n "$N" -d "$HOLD" -s bench.test $flag \
		>"$WORK/$mode.out" 2>"$WORK/$mode.err" &
	CPID=$!
	if ! wait_line "$WORK/$mode.out" '^READY' 180 "$CPID"; then
		echo "run-tls-idle-memory: $mode: the client never printed READY" >&2
		cat "$WORK/$mode.err" "$WORK/$mode.log" >&2
		exit 1
	fi
	sleep 2 # the last handshakes' tickets and buffers settle
	# Idle CPU: over WINDOW s (one ping interval: every connection is pinged once in it).
	c0=$(cpu_ns "$SPID")
	t0=$(date +%s%N)
	sleep "$WINDOW"
	c1=$(cpu_ns "$SPID")
	t1=$(date +%s%N)
	kmem1=$(tcp_mem_pages)
	slab1=$(tcp_slab_kib)
	rss1=$(status_kib "$SPID" VmRSS)
	anon1=$(status_kib "$SPID" RssAnon)
	hwm1=$(status_kib "$SPID" VmHWM)
	fds=$(ls "/proc/$SPID/fd" | wc -l)
	if [ "$PROFILE" = 1 ]; then
		# One more window, perf attached: the ping cycles in it are N * WINDOW / PING.
		bench_profile "$SPID" "$WINDOW" "$WORK/prof-$mode"
		cycles=$([ "$PING" -gt 0 ] && echo $((N * WINDOW / PING)) || echo "$N")
		python3 "$BENCH/profile_report.py" "$WORK/prof-$mode" "idle $mode, N = $N, ping ${PING}s" \
			"$cycles" "ping cycle" "$WINDOW" >>"$WORK/profile.md"
	fi
	readyline=$(grep '^READY' "$WORK/$mode.out")
	rc=0
	wait "$CPID" || rc=$?
	doneline=$(grep '^DONE' "$WORK/$mode.out" || echo "DONE none")
	sleep 1
	rss2=$(status_kib "$SPID" VmRSS)
	kill "$SPID"
	wait "$SPID" 2>/dev/null || true
	SPID=
	line="mode=$mode n=$N rss_before_kib=$rss0 rss_open_kib=$rss1 rss_after_close_kib=$rss2 anon_before_kib=$anon0 anon_open_kib=$anon1 hwm_kib=$hwm1 fds=$fds cpu_ns=$((c1 - c0)) window_ns=$((t1 - t0)) tcp_mem_pages_before=$kmem0 tcp_mem_pages_open=$kmem1 tcp_slab_kib_before=$slab0 tcp_slab_kib_open=$slab1 client_rc=$rc client=${readyline// /,} done=${doneline// /,}"
	echo "$line" | tee -a "$RAW"
done

# The wss:// heap by allocation site: HEAPN connections under heaptrack, the server killed while
# they are open, so heaptrack's "leaked" bytes are the heap live at that moment; heap_report.py
# keeps the sites with a live allocation per connection and names them.
HEAP="$WORK/heap.md"
: >"$HEAP"
if [ "$PROFILE" = 1 ] && [[ " $MODES " == *" tls "* ]] && command -v heaptrack >/dev/null; then
	port=$(free_port)
	config tls "$port" "$WORK/heap.ini"
	taskset -c 0 heaptrack -o "$WORK/heap" "$WORK/wsgate" -c "$WORK/heap.ini" >"$WORK/heaptrack.log" 2>&1 &
	HPID=$!
	PIDS+=("$HPID")
	wait_port "$port"
	taskset -c 1 "$WORK/tls_idle_client" -p "$port" -n 50 -d 0 -s bench.test >/dev/null 2>&1 || true
	taskset -c 1 "$WORK/tls_idle_client" -p "$port" -n "$HEAPN" -d 60 -s bench.test \
		>"$WORK/heap.out" 2>"$WORK/heap.err" &
	CPID=$!
	wait_line "$WORK/heap.out" '^READY' 60 "$CPID" || true
	sleep 2
	pkill -KILL -f "^$WORK/wsgate -c $WORK/heap.ini" || true
	wait "$HPID" 2>/dev/null || true
	kill "$CPID" 2>/dev/null || true
	wait "$CPID" 2>/dev/null || true
	hfile=$(ls "$WORK"/heap.*zst "$WORK"/heap.*gz 2>/dev/null | head -1 || true)
	if [ -n "$hfile" ] && grep -q '^READY' "$WORK/heap.out"; then
		heaptrack_print -f "$hfile" -p 0 -a 0 -T 0 -l 1 -m 0 -n 1000000 -s 1000000 2>/dev/null |
			python3 "$BENCH/heap_report.py" "$HEAPN" >"$HEAP"
	fi
fi

CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
OSSL=$(openssl version)
mkdir -p "$(dirname "$OUT")"
python3 - "$RAW" "$OUT" <<PYEOF
import re, sys
raw, out = sys.argv[1], sys.argv[2]
rows = [dict(re.findall(r'(\w+)=([^\s]+)', l)) for l in open(raw)]
o = ["# Idle wss:// connection memory\n", "| | |", "|---|---|",
     "| date | $STARTED |",
     "| git commit | $COMMIT (src/ files with uncommitted changes: $DIRTY) |",
     "| wsgate binary | $WSGATE_SRC, sha256 $SHA…, $BUILD |",
     "| TLS | $OSSL; P-256 ECDSA certificate; client default (TLS 1.3, X25519, AES-128-GCM) |",
     "| CPU | $CPU, $(nproc) cores; kernel $(uname -r); server pinned to core 0, client to core 1 |",
     "| connections | N = $N idle WebSocket connections (TLS handshake + upgrade done, no traffic but heartbeats: ping_interval = ${PING}s, answered by the client), idle CPU over $WINDOW s |",
     "",
     "KiB/conn = (server VmRSS with N open − VmRSS before) / N; *before* is after a warmup of 50 "
     "connections opened and closed. RssAnon is the heap part. Kernel socket memory is not in RSS. "
     "wsgate sets SSL_MODE_RELEASE_BUFFERS, so an idle TLS connection keeps no 16 KiB+ record "
     "buffers; what remains is the SSL object, its session and the bufferevent. The client's "
     "*seconds* is the time to open all N, 200 handshakes at a time: not a handshake-rate "
     "benchmark (load from other processes on this host counts in it).\n",
     "Kernel: *TCP buffers* is the growth of /proc/net/sockstat's TCP mem (pages of socket buffers) per "
     "connection; *TCP slabs* the growth of the TCP and sock_inode_cache slabs per connection — both "
     "ends of a loopback connection are in this kernel, so the server's share is about half. "
     "*Idle CPU* = wsgate's CPU (schedstat, all threads) over the window / N / window seconds.\n",
     "| mode | RSS before KiB | RSS with N open KiB | **KiB/conn (RSS)** | KiB/conn (RssAnon) | RSS after close KiB | kernel TCP buffers KiB/conn | kernel TCP slabs KiB/conn (both ends) | **idle CPU µs/conn/s** | client |",
     "|---|---|---|---|---|---|---|---|---|---|"]
per = {}
idle_of = {}  # idle CPU µs/conn/s by mode
for kv in rows:
    n = int(kv['n'])
    p = (int(kv['rss_open_kib']) - int(kv['rss_before_kib'])) / n
    pa = (int(kv['anon_open_kib']) - int(kv['anon_before_kib'])) / n
    per[kv['mode']] = p
    name = {'tls': "wss:// (TLS)", 'plain': "ws:// (plain)",
            'bare': "bare C pinger, ws:// (bench/epoll_echo ping)"}[kv['mode']]
    kb = (int(kv['tcp_mem_pages_open']) - int(kv['tcp_mem_pages_before'])) * 4 / n
    ks = (int(kv['tcp_slab_kib_open']) - int(kv['tcp_slab_kib_before'])) / n
    idle = idle_of[kv['mode']] = int(kv['cpu_ns']) / 1000 / n / (int(kv['window_ns']) / 1e9)
    o.append(f"| {name} | {kv['rss_before_kib']} | {kv['rss_open_kib']} | **{p:.2f}** | {pa:.2f} | {kv['rss_after_close_kib']} | {kb:.2f} | {ks:.2f} | **{idle:.3f}** | {kv['client'].replace(',', ' ')} {kv['done'].replace(',', ' ')} (rc {kv['client_rc']}) |")
if 'plain' in idle_of and 'bare' in idle_of and idle_of['bare'] > 0:
    o += ["", f"Idle CPU, wsgate ws:// ÷ the bare C pinger (same pings, same client, same run): **{idle_of['plain'] / idle_of['bare']:.2f}×**."]
if 'tls' in per and 'plain' in per:
    o += ["", f"TLS costs **{per['tls'] - per['plain']:.2f} KiB** per idle connection over plain ws://."]
o += ["", "Where the TLS part goes (measured once with \`valgrind --tool=massif\` and \`vgdb detailed_snapshot\` "
      "on 400 idle TLS 1.3 connections, live heap bytes per connection): the SSL object itself ≈ 7.6 KB "
      "(one CRYPTO_zalloc in SSL_new, OpenSSL 3.0), the two AES-GCM cipher contexts ≈ 1.9 KB, the session, "
      "locks and small OpenSSL allocations ≈ 3 KB, libevent's bufferevent_openssl ≈ 0.7 KB; wsgate's own "
      "struct conn ≈ 0.6 KB. Record buffers: none (SSL_MODE_RELEASE_BUFFERS). The rest of the "
      "difference to RSS is allocator rounding and fragmentation from the handshakes' transient buffers."]
prof = open("$WORK/profile.md").read().strip()
heap = open("$HEAP").read().strip()
if prof or heap:
    o += ["", "## Profile (PROFILE=1: after each mode's window, one more window with perf; not in the table above)", ""]
    if prof:
        o += ["CPU per ping cycle (one ping written, one pong read, per connection) and where it goes:", "", prof, ""]
    if heap:
        o += ["The wss:// heap: $HEAPN idle connections under \`heaptrack\` (a run of its own), the server killed "
              "while they were open, so heaptrack's *leaked* bytes are the heap live at that moment (requested "
              "bytes, before malloc's headers and rounding; \`bench/heap_report.py\` names the sites):", "", heap, ""]
o += ["", "## Commands", "", "\`\`\`", "ulimit -n 20000", "$CLIENT_BUILD",
      "taskset -c 0 build/src/wsgate -c tls.ini      # tls.ini below; plain.ini: the same without ' tls' and [tls]",
      "taskset -c 1 ./tls_idle_client -p PORT -n $N -d $HOLD -s bench.test   # -x for plain; after READY: 2 s, then server CPU over $WINDOW s, then VmRSS",
      "\`\`\`", "", "tls.ini (PORT a free loopback port, the certificate made by the script):", "", "\`\`\`ini",
      """$(sed -e "s/127.0.0.1:[0-9]*/127.0.0.1:PORT/" -e "s|$WORK/|/tmp/…/|" "$WORK/tls.ini" 2>/dev/null)""",
      "\`\`\`", "", "Reproduce: \`bench/run-tls-idle-memory.sh\` (N=… HOLD=… MODES=\"tls plain\" WSGATE=…). Raw:", "", "\`\`\`"]
o += [l.rstrip() for l in open(raw)]
o += ["\`\`\`"]
open(out, "w").write("\n".join(o) + "\n")
PYEOF
echo "run-tls-idle-memory: wrote $OUT"
