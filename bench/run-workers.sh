#!/bin/bash
# run-workers.sh - `[gateway] workers = 2` against `workers = 1` on one gateway; writes
# bench/results/workers.md (every run, and medians of REPS runs, configurations interleaved).
#
#  * pub/sub (bench/psbench.c): SUBS subscribers on channel `bench`, one WebSocket publisher at
#    RATE msg/s of 64 bytes, through Redis and through the in-process hub (the publishing worker
#    posts each message into the other worker's mailbox). With Redis, since commit 93bc7c7 the
#    process holds one SUBSCRIBE (on the main thread until 5b85721, on worker 0's loop since)
#    and copies each message to every worker that wants it (REDIS_SUBS=process); before it
#    every worker held its own
#    SUBSCRIBE, so redis-server sent one copy per worker (REDIS_SUBS=worker). CPU time of
#    wsgate (all threads) and of redis-server over psbench's measured phase, from
#    /proc/PID/task/*/schedstat, so it counts work done rather than throughput.
#  * echo: the run-echo.sh throughput setting (wsbench -c 100 -w 16, 64-byte messages).
#  * idle memory: bench/run-idle-memory.sh with WORKERS=1 and WORKERS=2, REPS times each.
#
# Environment knobs (defaults in brackets):
#   WSGATE=path   wsgate binary [build/src/wsgate]; copied first so a rebuild mid-run is harmless
#   REPS=n        repetitions of every configuration, interleaved [3]
#   DURATION=s    measured seconds of each pub/sub and echo run [10]
#   PSSET="..."   pub/sub settings NAME:SUBS:RATE
#                 ["per-message:10:5000 fan-out-20:1000:20 fan-out-200:1000:200 fan-out-500:1000:500"]:
#                 per-message costs dominate with few subscribers, per-delivery ones with many
#   PIN="..."     pub/sub placements [core0 none]: core0 = redis-server and wsgate on core 0,
#                 psbench on core 1; none = nothing pinned (the workers can use both cores)
#   PARTS="..."   subset of "pubsub echo idle" [all three]
#   REDIS_SUBS=process|worker  SUBSCRIBEs to a channel per wsgate, the PUBSUB NUMSUB psbench
#                 waits for: process = 1 (the design since commit 93bc7c7), worker = one per worker
#                 (the binaries before it) [process]; recorded as redis_subs= in the raw lines
#   PRIO=autogroup|none  as in run-echo.sh: own session whose autogroup gets nice -20
#   OUT=file      markdown output [bench/results/workers.md]
#   REPORT_FROM="file..."  measure nothing: write OUT from the raw `part=` lines of earlier runs
#                 (their .md files or raw text; each run's provenance is its `part=meta` line),
#                 e.g. to combine invocations with different PSSET into one report
#
# With the defaults this takes ~30 min: 4 pub/sub settings x 2 placements x 4 configurations x
# REPS runs of ~15 s, then ~2 min of echo and ~2 min of idle memory.
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
. "$BENCH/lib.sh"

bench_priority run-workers "$0" "$@"

WSGATE_SRC=${WSGATE:-$ROOT/build/src/wsgate}
REPS=${REPS:-3}
DURATION=${DURATION:-10}
PSSET=${PSSET:-"per-message:10:5000 fan-out-20:1000:20 fan-out-200:1000:200 fan-out-500:1000:500"}
PIN=${PIN:-"core0 none"}
PARTS=${PARTS:-"pubsub echo idle"}
REDIS_SUBS=${REDIS_SUBS:-process}
case $REDIS_SUBS in process|worker) ;; *) echo "run-workers: REDIS_SUBS=process|worker" >&2; exit 2;; esac
OUT=${OUT:-$BENCH/results/workers.md}
REPORT_FROM=${REPORT_FROM:-}
ECHOARGS="-c 100 -w 16 -s 64 -d DURATION -W 2"
PSARGS="-s 64 -d DURATION -W 1 -m ws -P /bench-pub -p /bench -C bench"
ECHOARGS_DOC=$ECHOARGS # as the report shows them (measure() fills in DURATION)
PSARGS_DOC=$PSARGS

bench_workdir wsworkers
RAW="$WORK/raw.txt"
: >"$RAW"

# metric PORT NAME: the values of a /metrics gauge or counter, joined with "/" (one per worker
# for wsgate_worker_connections).
metric() {
	curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {
		printf "%s%s", sep, $2; sep = "/" }'
}

# pubsub_run NAME SUBS RATE PIN BROKER WORKERS REP: one psbench run on a fresh wsgate.
pubsub_run() {
	local name=$1 subs=$2 rate=$3 pin=$4 broker=$5 workers=$6 rep=$7 port aport srv=() gen=()
	local numsub=() split refused rc=0 line
	if [ "$pin" = core0 ]; then srv=(taskset -c 0); gen=(taskset -c 1); fi
	port=$(free_port)
	aport=$(free_port)
	if [ "$broker" = redis ]; then
		pubsub_config "$WORK/ps.ini" "$port" "$workers" "$RPORT" "$aport"
		# psbench waits until wsgate has subscribed: once, or once per worker
		numsub=(-R "$RPORT" -e "$([ "$REDIS_SUBS" = worker ] && echo "$workers" || echo 1)")
	else
		pubsub_config "$WORK/ps.ini" "$port" "$workers" "" "$aport"
	fi
	"${srv[@]}" "$WORK/wsgate" -c "$WORK/ps.ini" 2>>"$WORK/wsgate.log" &
	SPID=$!
	wait_ready "$port"
	"${gen[@]}" "$WORK/psbench" -g "$port" $PSARGS -n "$subs" -r "$rate" "${numsub[@]}" \
		-S "$SPID,$RPID" >"$WORK/ps.out" 2>"$WORK/ps.err" &
	local bpid=$!
	sleep $((4 + DURATION / 2)) # mid-run: how the kernel spread the connections over the workers
	split=$(metric "$aport" wsgate_worker_connections)
	wait "$bpid" || rc=$?
	refused=$(metric "$aport" wsgate_bus_refused_total)
	kill "$SPID"
	wait "$SPID" 2>/dev/null || true
	SPID=
	cat "$WORK/ps.err" >&2
	line=$(grep '^RESULT' "$WORK/ps.out" || echo "RESULT failed=1")
	echo "part=pubsub setting=$name pin=$pin broker=$broker redis_subs=$REDIS_SUBS workers=$workers rep=$rep rc=$rc wconns=${split:-?} bus_refused=${refused:-?} ${line#RESULT }" | tee -a "$RAW"
}

measure() {
make -s -C "$BENCH" >/dev/null
wsgate_snapshot "$WSGATE_SRC" "$WORK"
bench_provenance
cc -O2 -g -std=c11 -Wall -Wextra -Wno-unused-parameter -o "$WORK/psbench" "$BENCH/psbench.c" -lcrypto
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
: >"$WORK/wsgate.log"
local load_before started pin set name subs rate rep broker workers port aport w c k bpid split rc line
load_before=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)
started=$(date -u '+%Y-%m-%dT%H:%MZ')
PSARGS=${PSARGS/DURATION/$DURATION}
ECHOARGS=${ECHOARGS/DURATION/$DURATION}
if [[ " $PARTS " == *" pubsub "* ]]; then
	for pin in $PIN; do
		if [ "$pin" = core0 ]; then redis_start taskset -c 0; else redis_start; fi
		for set in $PSSET; do
			IFS=: read -r name subs rate <<<"$set"
			for rep in $(seq "$REPS"); do
				for broker in redis local; do
					for workers in 1 2; do
						pubsub_run "$name" "$subs" "$rate" "$pin" "$broker" "$workers" "$rep"
						sleep 1
					done
				done
			done
		done
		kill "$RPID"
		wait "$RPID" 2>/dev/null || true
	done
fi

# Echo: three servers started once, runs interleaved as in run-echo.sh.
declare -A EPORT EPID EGEN
if [[ " $PARTS " == *" echo "* ]]; then
	ECONF="w1-core0 w1-free w2-free"
	for c in $ECONF; do
		port=$(free_port)
		aport=$(free_port)
		w=${c%%-*}
		wsgate_config "$WORK/wsgate" "$WORK/$c.ini" "$port" "${w#w}"
		sed -i "/^workers = /a admin_listen = 127.0.0.1:$aport" "$WORK/$c.ini"
		if [ "$c" = w1-core0 ]; then
			taskset -c 0 "$WORK/wsgate" -c "$WORK/$c.ini" 2>>"$WORK/wsgate.log" &
			EGEN[$c]="taskset -c 1"
		else
			"$WORK/wsgate" -c "$WORK/$c.ini" 2>>"$WORK/wsgate.log" &
			EGEN[$c]=""
		fi
		EPID[$c]=$!
		EPORT[$c]=$port:$aport
		PIDS+=("$!")
		wait_port "$port"
	done
	for rep in $(seq "$REPS"); do
		order=($ECONF)
		k=$(( (rep - 1) % ${#order[@]} ))
		order=("${order[@]:$k}" "${order[@]:0:$k}")
		for c in "${order[@]}"; do
			port=${EPORT[$c]%:*}
			aport=${EPORT[$c]#*:}
			${EGEN[$c]} "$BENCH/wsbench" -p "$port" -P /echo $ECHOARGS -S "${EPID[$c]}" \
				>"$WORK/echo.out" 2>>"$WORK/wsbench.err" &
			bpid=$!
			sleep $((2 + DURATION / 2))
			split=$(metric "$aport" wsgate_worker_connections)
			rc=0
			wait "$bpid" || rc=$?
			line=$(grep '^RESULT' "$WORK/echo.out" || echo "RESULT failed=1")
			echo "part=echo config=$c rep=$rep rc=$rc wconns=${split:-?} ${line#RESULT }" | tee -a "$RAW"
		done
	done
	for c in $ECONF; do kill "${EPID[$c]}"; wait "${EPID[$c]}" 2>/dev/null || true; done
fi

if [[ " $PARTS " == *" idle "* ]]; then
	for rep in $(seq "$REPS"); do
		for workers in 1 2; do
			line=$(WORKERS=$workers SERVERS=wsgate WSGATE="$WORK/wsgate" OUT="$WORK/idle.md" \
				"$BENCH/run-idle-memory.sh" | grep '^server=' || echo "server=wsgate failed=1")
			echo "part=idle rep=$rep $line" | tee -a "$RAW"
		done
	done
fi
echo "part=meta started=$started commit=$COMMIT src_dirty=$DIRTY wsgate=$WSGATE_SRC sha256=$SHA" \
	"sanitizers=$([ "$BUILD" = "no sanitizers" ] && echo no || echo YES) prio=$PRIO" \
	"load_before=$load_before load_after=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)" \
	"wsgate_warnings=$(grep -c . "$WORK/wsgate.log" || true) reps=$REPS duration=$DURATION" \
	"psset=${PSSET// /,} pin=${PIN// /,} parts=${PARTS// /,} redis_subs=$REDIS_SUBS" | tee -a "$RAW"
}

if [ -n "$REPORT_FROM" ]; then
	# shellcheck disable=SC2086 # a list of files
	grep -h '^part=' $REPORT_FROM >"$RAW"
else
	measure
fi

CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
REDISV=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
PSCONF=$(pubsub_config /dev/stdout PORT 'WORKERS' REDISPORT ADMINPORT)
# the echo config as measure() writes it (`true` stands in for the `wsgate -t` check)
wsgate_config true "$WORK/echo.ini" PORT 2
sed -i "/^workers = /a admin_listen = 127.0.0.1:ADMINPORT" "$WORK/echo.ini"
ECHOCONF=$(cat "$WORK/echo.ini")
mkdir -p "$(dirname "$OUT")"

python3 - "$RAW" "$OUT" <<PYEOF
import re, statistics, sys
raw, out = sys.argv[1], sys.argv[2]
runs = [dict(re.findall(r'(\w+)=([^\s]+)', l)) for l in open(raw) if l.strip()]

def med(rows, f):
    vals = [f(r) for r in rows]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else float('nan')

def cpu(r, i):  # ms of the i-th -S pid (0 wsgate, 1 redis-server)
    return float(r['srv_cpu_ms'].split(',')[i])

def wait(r, i):
    return float(r['srv_wait_ms'].split(',')[i])

metas = [r for r in runs if r.get('part') == 'meta']
# Raw lines from before REDIS_SUBS carry no redis_subs=: they were all measured with binaries
# that held one SUBSCRIBE per worker.
for r in runs:
    if r.get('part') in ('meta', 'pubsub'):
        r.setdefault('redis_subs', 'worker')
DESIGN = {'worker': ("design A", "one SUBSCRIBE per worker (wsgate before commit 93bc7c7)"),
          'process': ("design B", "one SUBSCRIBE per process (commit 93bc7c7 and later)")}
o = ["# workers = 1 vs workers = 2 on one gateway\n",
     "| | |", "|---|---|",
     "| redis-server | $REDISV, \`--save '' --appendonly no\` |",
     "| CPU | $CPU, $(nproc) cores; kernel $(uname -r) |",
     "| repetitions | every configuration REPS times, configurations interleaved; tables show medians |",
     "",
     "Invocations (bench/run-workers.sh with these knobs; load average 1/5/15 min before and after; "
     "warnings = wsgate stderr lines at log_level = warn over all its runs; Redis design: "
     "REDIS_SUBS, see the pub/sub section):\n",
     "| started (UTC) | commit (src/ files changed) | wsgate binary, sha256 | sanitizers | PRIO | REPS | DURATION | PSSET | PIN | PARTS | Redis design | load before | load after | warnings |",
     "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for m in metas:
    o.append(f"| {m['started']} | {m['commit']} ({m['src_dirty']}) | {m['wsgate']}, {m['sha256']}… | {m['sanitizers']} | {m['prio']} | {m['reps']} | {m['duration']} | {m['psset'].replace(',', ' ')} | {m['pin'].replace(',', ' ')} | {m['parts'].replace(',', ' ')} | {DESIGN[m['redis_subs']][0]} ({m['redis_subs']}) | {m['load_before'].replace('/', ' ')} | {m['load_after'].replace('/', ' ')} | {m['wsgate_warnings']} |")
o.append("")

ps = [r for r in runs if r.get('part') == 'pubsub']
MED = {}  # (design, setting, pin, broker, workers) -> medians
if ps:
    o += ["## Pub/sub: one channel, workers = 1 vs 2, Redis vs the in-process hub\n",
          "psbench: SUBS WebSocket subscribers of /bench on one wsgate, one WebSocket publisher on "
          "/bench-pub (a client of the same gateway) at RATE msg/s of 64 bytes for DURATION s after "
          "1 s of warm-up. *redis*: \`[redis]\` set; the publisher's worker PUBLISHes on its own link. "
          "In **design A** (REDIS_SUBS=worker, wsgate before commit 93bc7c7) every worker with "
          "subscribers holds its own SUBSCRIBE (psbench waits for PUBSUB NUMSUB = workers) and "
          "redis-server sends one copy per subscribed worker. In **design B** (REDIS_SUBS=process, "
          "commit 93bc7c7 and later) the main thread holds the process's only SUBSCRIBE (psbench "
          "waits for NUMSUB = 1), and copies each message into the mailbox of every worker that wants "
          "the channel. It does so with workers = 1 too, so there every message also crosses from the "
          "main thread to the worker. *local*: no \`[redis]\`, the publisher's "
          "worker delivers to its own subscribers and posts one copy into the other worker's mailbox "
          "(mutex + eventfd); the same code in both designs, measured again in every invocation as a control. "
          "CPU ms: all threads of the process over psbench's measured phase "
          "(publishing + drain, ≈ DURATION s), from schedstat; % of a core = that / the phase's wall time "
          "(≈ 100 for workers = 1, or more with workers = 2 unpinned: wsgate is saturated, messages queue and "
          "the latency is mostly that queue); for *local* rows redis-server is idle "
          "and its figure is its idle baseline. µs/msg = CPU / published messages; ns/delivery = "
          "wsgate CPU / deliveries; redis µs/msg net of idle subtracts redis-server's CPU in the *local* runs "
          "of the same setting (its timers, ≈ 2 ms/s) before dividing. conns: connections per worker (kernel SO_REUSEPORT spread, "
          "publisher included), read from /metrics mid-run. wait: runnable but not running.\n"]
    designs = [d for d in ('worker', 'process') if any(r['redis_subs'] == d for r in ps)]
    for design in designs:
        dname, dtext = DESIGN[design]
        if len(designs) > 1:
            o += [f"### {dname}: {dtext}\n"]
        hx = "####" if len(designs) > 1 else "###"
        dps = [r for r in ps if r['redis_subs'] == design]
        for setting in dict.fromkeys(r['setting'] for r in dps):
            for pin in dict.fromkeys(r['pin'] for r in dps):
                rows = [r for r in dps if r['setting'] == setting and r['pin'] == pin]
                if not rows:
                    continue
                ok0 = [r for r in rows if 'delivered' in r]
                subs, rate = (ok0[0]['subscribers'], ok0[0]['rate']) if ok0 else ('?', '?')
                place = ("redis-server and wsgate on core 0 (\`taskset -c 0\`), psbench on core 1"
                         if pin == 'core0' else "nothing pinned: wsgate, redis-server and psbench share both cores")
                o += [f"{hx} {dname + ', ' if len(designs) > 1 else ''}{setting}: {subs} subscribers, {rate} msg/s; {place}\n",
                      "| broker | workers | delivered % (min) | conns per worker | p50 µs | p99 µs | wsgate CPU ms | wsgate % of a core | wsgate µs/msg | wsgate ns/delivery | wsgate wait ms | redis CPU ms | redis µs/msg (net of idle) | psbench CPU % | runs ok |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
                medians = {}
                # redis-server's own CPU while nothing is published to it: its figure in the local runs
                idle_ms = med([r for r in rows if r['broker'] == 'local' and 'delivered' in r], lambda r: cpu(r, 1))
                for broker in ('redis', 'local'):
                    for w in ('1', '2'):
                        lst = [r for r in rows if r['broker'] == broker and r['workers'] == w]
                        ok = [r for r in lst if 'delivered' in r]
                        if not ok:
                            if lst:
                                o.append(f"| {broker} | {w} | FAILED | | | | | | | | | | | | 0/{len(lst)} |")
                            continue
                        sent = float(ok[0]['sent'])
                        m = dict(pct=med(ok, lambda r: float(r['delivered_pct'])),
                                 pmin=min(float(r['delivered_pct']) for r in ok),
                                 p50=med(ok, lambda r: float(r['p50_us'])), p99=med(ok, lambda r: float(r['p99_us'])),
                                 wcpu=med(ok, lambda r: cpu(r, 0)), rcpu=med(ok, lambda r: cpu(r, 1)),
                                 wwait=med(ok, lambda r: wait(r, 0)),
                                 wpct=med(ok, lambda r: cpu(r, 0) * 100 / float(r['wall_ms'])),
                                 dns=med(ok, lambda r: cpu(r, 0) * 1e6 / float(r['delivered'])),
                                 gen=med(ok, lambda r: float(r['gen_cpu_pct'])))
                        m['wmsg'] = m['wcpu'] * 1e3 / sent
                        m['rmsg'] = m['rcpu'] * 1e3 / sent
                        m['rnet'] = (m['rcpu'] - idle_ms) * 1e3 / sent
                        medians[(broker, w)] = m
                        MED[(design, setting, pin, broker, w)] = m
                        conns = " ".join(sorted(set(r['wconns'] for r in ok)))
                        rn = f"{m['rnet']:.2f}" if broker == 'redis' else 'idle'
                        full = sum(1 for r in ok if r.get('rc') == '0')
                        o.append(f"| {broker} | {w} | {m['pct']:.3f} ({m['pmin']:.3f}) | {conns} | {m['p50']:.0f} | {m['p99']:.0f} | {m['wcpu']:.0f} | {m['wpct']:.0f} | {m['wmsg']:.1f} | {m['dns']:.0f} | {m['wwait']:.0f} | {m['rcpu']:.0f} | {m['rmsg']:.2f} ({rn}) | {m['gen']:.0f} | {full}/{len(lst)} |")
                o.append("")
                def d(b, k):
                    if (b, '1') in medians and (b, '2') in medians:
                        return medians[(b, '2')][k] - medians[(b, '1')][k]
                    return float('nan')
                rlabel = ("redis (a SUBSCRIBE per worker)" if design == 'worker'
                          else "redis (one SUBSCRIBE, a mailbox copy per worker)")
                o += ["Cost of the second worker per published message (median of workers = 2 − median of workers = 1):\n",
                      "| broker | wsgate µs/msg | redis-server µs/msg | together µs/msg |", "|---|---|---|---|",
                      f"| {rlabel} | {d('redis','wmsg'):+.1f} | {d('redis','rmsg'):+.2f} | {d('redis','wmsg') + d('redis','rmsg'):+.1f} |",
                      f"| local (a mailbox hop per other worker) | {d('local','wmsg'):+.1f} | ({d('local','rmsg'):+.2f}, idle) | {d('local','wmsg'):+.1f} |", ""]
    # Both designs measured in the same setting and placement: their redis rows side by side.
    both = [(s, p) for s, p in dict.fromkeys((k[1], k[2]) for k in MED)
            if all(('worker', s, p, 'redis', w) in MED and ('process', s, p, 'redis', w) in MED for w in '12')]
    if both:
        o += ["### Redis, design B against design A (medians from the tables above)\n",
              "Per published message. The two designs were measured in different invocations "
              "(see *Invocations*: different times, load and binaries); the *local* rows, the same code "
              "in both, show how much the invocations differ on their own.\n",
              "| setting | placement | broker, design | workers | wsgate µs/msg | redis-server µs/msg (net of idle) | together µs/msg | p50 µs | p99 µs | delivered % (min) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for s, p in both:
            for broker in ('redis', 'local'):
                for design in ('worker', 'process'):
                    for w in '12':
                        m = MED.get((design, s, p, broker, w))
                        if m is None:
                            continue
                        rn = f"{m['rnet']:.2f}" if broker == 'redis' else 'idle'
                        tog = m['wmsg'] + (m['rnet'] if broker == 'redis' else 0)
                        o.append(f"| {s} | {p} | {broker}, {DESIGN[design][0]} | {w} | {m['wmsg']:.1f} | {rn} | {tog:.1f} | {m['p50']:.0f} | {m['p99']:.0f} | {m['pct']:.3f} ({m['pmin']:.3f}) |")
        o.append("")

ec = [r for r in runs if r.get('part') == 'echo']
if ec:
    o += ["## Echo: 64-byte messages, \`wsbench $ECHOARGS_DOC\`\n",
          "Three servers: *w1-core0* is the run-echo.sh placement (wsgate workers = 1 on core 0, wsbench on "
          "core 1); *w1-free* and *w2-free* are not pinned at all (wsgate workers = 1 or 2 and wsbench share "
          "both cores). wsbench is single-threaded and needs most of a core itself, so on this 2-core box "
          "workers = 2 can have at most what wsbench leaves: compare the CPU per message, not msg/s alone. "
          "server CPU % is of one core (200 % = both cores); conns: wsbench's 100 connections per worker.\n",
          "| server | msg/s (median) [min–max] | p50 µs | p99 µs | server CPU % | server ns/msg | server runnable-waiting % | wsbench CPU % | conns per worker | errors |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for c in dict.fromkeys(r['config'] for r in ec):
        lst = [r for r in ec if r['config'] == c]
        ok = [r for r in lst if 'msgs_per_s' in r]
        if not ok:
            o.append(f"| {c} | FAILED | | | | | | | | |")
            continue
        rates = [float(r['msgs_per_s']) for r in ok]
        errs = sum(int(r.get('errors', 0)) for r in ok) + len(lst) - len(ok)
        g = lambda k: med(ok, lambda r: float(r[k]))
        conns = " ".join(r['wconns'] for r in ok)
        o.append(f"| {c} | {g('msgs_per_s'):,.0f} [{min(rates):,.0f}–{max(rates):,.0f}] | {g('p50_us'):.0f} | {g('p99_us'):.0f} | {g('srv_cpu_pct'):.0f} | {g('srv_ns_per_msg'):.0f} | {g('srv_wait_pct'):.0f} | {g('gen_cpu_pct'):.0f} | {conns} | {errs} |")
    o.append("")

idle = [r for r in runs if r.get('part') == 'idle']
if idle:
    o += ["## Idle memory per connection\n",
          "bench/run-idle-memory.sh with SERVERS=wsgate (wsgate on core 0 with either worker count, "
          "wsbench -m idle on core 1): KiB/conn = (VmRSS with N open − VmRSS after a 50-connection warm-up) / N. "
          "Kernel socket memory is not in RSS. Target: ≤ 4 KiB per idle ws:// connection.\n",
          "| workers | N | KiB/conn (RSS) per run | **median** | KiB/conn (RssAnon) median | RSS before KiB (median) | target |",
          "|---|---|---|---|---|---|---|"]
    for w in ('1', '2'):
        ok = [r for r in idle if r.get('workers') == w and 'rss_open_kib' in r]
        if not ok:
            continue
        n = int(ok[0]['n'])
        per = [(int(r['rss_open_kib']) - int(r['rss_before_kib'])) / n for r in ok]
        pera = [(int(r['anon_open_kib']) - int(r['anon_before_kib'])) / n for r in ok]
        m = statistics.median(per)
        o.append(f"| {w} | {n} | {', '.join(f'{p:.2f}' for p in per)} | **{m:.2f}** | {statistics.median(pera):.2f} | {med(ok, lambda r: float(r['rss_before_kib'])):.0f} | {'met' if m <= 4 else 'NOT met'} |")
    o.append("")

o += ["## Commands\n", "\`\`\`", "# the invocations above:"]
for m in metas:
    o.append(f"REPS={m['reps']} DURATION={m['duration']} PSSET=\"{m['psset'].replace(',', ' ')}\" "
             f"PIN=\"{m['pin'].replace(',', ' ')}\" PARTS=\"{m['parts'].replace(',', ' ')}\" "
             f"REDIS_SUBS={m['redis_subs']} bench/run-workers.sh")
if len(metas) > 1:
    o.append("REPORT_FROM=\"run1.md run2.md ...\" bench/run-workers.sh   # this one report from their raw lines")
o += ["# which run, per pub/sub placement (core0: taskset -c 0 on the servers, -c 1 on psbench; none: no taskset):",
      "taskset -c 0 redis-server --port REDISPORT --bind 127.0.0.1 --save '' --appendonly no",
      "taskset -c 0 wsgate -c ps.ini      # a fresh one per run, config below",
      "cc -O2 -o psbench bench/psbench.c -lcrypto",
      "taskset -c 1 psbench -g PORT $PSARGS_DOC -n SUBS -r RATE [-R REDISPORT -e 1 (design B) or WORKERS (design A)] -S WSGATE_PID,REDIS_PID",
      "# echo (make -C bench):"]
for c in ("w1-core0", "w1-free", "w2-free"):
    o.append(f"{'taskset -c 0 ' if c == 'w1-core0' else ''}wsgate -c {c}.ini; {'taskset -c 1 ' if c == 'w1-core0' else ''}bench/wsbench -p PORT -P /echo $ECHOARGS_DOC -S SERVER_PID")
o += ["# idle memory:", "WORKERS=1 SERVERS=wsgate bench/run-idle-memory.sh; WORKERS=2 SERVERS=wsgate bench/run-idle-memory.sh",
      "\`\`\`", "", "ps.ini (without \`[redis]\` for *local*; admin_listen only to read /metrics):", "", "\`\`\`ini",
      """$PSCONF""", "\`\`\`", "", "w2-free.ini (echo; w1-*.ini have workers = 1):", "", "\`\`\`ini", """$ECHOCONF""", "\`\`\`", "",
      "Raw lines (psbench / wsbench RESULT fields, run-idle-memory.sh lines):", "", "\`\`\`"]
o += [l.rstrip() for l in open(raw)]
o += ["\`\`\`"]
open(out, "w").write("\n".join(o) + "\n")
PYEOF
echo "run-workers: wrote $OUT" >&2
