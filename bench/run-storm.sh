#!/bin/bash
# run-storm.sh - the reconnect storm of issue #16 at bench scale: tests/integration/
# test_storm.py (three wsgate instances on one redis-server behind HAProxy, CLIENTS clients of
# clients/js/wsgate-client.js; one instance SIGKILLed, then one drained) run WITH the
# admission budget (admission_rate = RATE) and WITHOUT it (admission_rate = 0: every
# displaced client is accepted as fast as it comes). Accepts are counted per instance and
# per second from each client's welcome message (it names the instance that took it).
# Writes bench/results/storm.md: per run the survivors' accepts per second, the time until
# every displaced client was back, and the probes' p99 message latency before and during.
#
# Environment knobs (defaults in brackets):
#   WSGATE=path   wsgate binary [build/src/wsgate]
#   CLIENTS=n     clients [3000]; each costs ~4 descriptors (client, HAProxy x2, gateway)
#                 of the user's open-file limit: check `ulimit -Hn` on shared machines
#   RATE=n        the fleet's admission_rate [300]
#   OUT=file      [bench/results/storm.md]
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$BENCH")
WSGATE=${WSGATE:-$SRC/build/src/wsgate}
CLIENTS=${CLIENTS:-3000}
RATE=${RATE:-300}
OUT=${OUT:-$BENCH/results/storm.md}
RAW=$(mktemp /tmp/wsgate-storm-XXXXXX.jsonl)
trap 'rm -f "$RAW"' EXIT

need=$((CLIENTS * 4 + 500))
if [ "$(ulimit -Sn)" -lt "$need" ]; then
	ulimit -Sn "$need" 2>/dev/null || { echo "run-storm: need $need open files (ulimit -Sn)"; exit 1; }
fi
for adm in 1 0; do
	WSGATE_BIN=$WSGATE WSGATE_STORM_CLIENTS=$CLIENTS WSGATE_STORM_RATE=$RATE \
	WSGATE_STORM_ADMISSION=$adm WSGATE_STORM_REPORT=$RAW \
	    "$SRC/tests/integration/run-integration.sh" -k test_storm -s -p no:cacheprovider \
	    >"$RAW.log.$adm" 2>&1 || { echo "run-storm: admission=$adm failed, see $RAW.log.$adm"; tail -20 "$RAW.log.$adm"; }
done
SRC=$SRC python3 - "$RAW" "$OUT" "$CLIENTS" "$RATE" <<'PY'
import json, os, subprocess, sys, time
raw, out, clients, rate = sys.argv[1:5]
rows = [json.loads(l) for l in open(raw) if l.strip()]
rev = subprocess.run(["git", "-C", os.environ["SRC"], "rev-parse", "--short", "HEAD"],
                     capture_output=True, text=True).stdout.strip()
lines = [f"# Reconnect storm: accepts per second with and without admission control",
         "", f"`CLIENTS={clients} RATE={rate} bench/run-storm.sh` at {rev}, "
         f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
         f"{os.cpu_count()} CPUs, shared (loadavg at the event in the table).", "",
         "| event | admission | displaced | back after (s) | budget window (s) | max accepts/s, one survivor | max accepts/s, fleet | fleet accepts per second after the event | p99 before / during (ms) | loadavg |",
         "|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    per = r["per_instance_per_s"]
    mx = max((max(v) for v in per.values() if v), default=0)
    fl = r["fleet_accepts_per_s"]
    lines.append(f"| {r['how']} | {'admission_rate = ' + str(r['rate']) if r['admission'] else 'off'} "
                 f"| {r['displaced']} | {r['back_s']} | {r['implied_window_s']} | {mx} | "
                 f"{max(fl) if fl else 0} | {' '.join(map(str, fl[:15]))} | "
                 f"{r['p99_before_ms']} / {r['p99_during_ms']} | {r['loadavg']:.1f} |")
lines += ["", "Raw lines:", "", "```"] + [json.dumps(r) for r in rows] + ["```", ""]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
PY
