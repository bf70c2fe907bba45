#!/bin/bash
# run-storm.sh - the reconnect storm of issue #16 at bench scale: tests/integration/
# test_storm.py (three wsgate instances on one redis-server behind HAProxy, CLIENTS clients of
# clients/js/wsgate-client.js; one instance SIGKILLed, then one drained) run WITH the
# admission budget (admission_rate = RATE) and WITHOUT it (admission_rate = 0: every
# displaced client is accepted as fast as it comes). Accepts are counted per instance and
# per second from each client's welcome message (it names the instance that took it).
# One command, four runs: kill and drain, each with and without admission control. Writes
# bench/results/storm.md: per run the survivors' accepts per second (as the clients saw them,
# and the most the gateways themselves admitted within any second), the time until every
# displaced client was back against the window the budget implies, the probes' p99 message
# latency before and during, and one verdict line per run; its summary block (between the
# storm-summary markers) is copied into bench/RESULTS.md (here, and by run-all.sh).
#
# Environment knobs (defaults in brackets):
#   WSGATE=path   wsgate binary [build/src/wsgate]
#   CLIENTS=n     clients [3000]; each costs ~4 descriptors (client, HAProxy x2, gateway)
#                 of the user's open-file limit: check `ulimit -Hn` on shared machines
#   RATE=n        the fleet's admission_rate [300]
#   OUT=file      [bench/results/storm.md]
#   RESULTS=file  where the summary block is copied [bench/RESULTS.md]; empty: nowhere (a
#                 reduced run that should not replace the full-size summary)
#   GW_CPUS=list  taskset CPU list for the three gateways [1 on a machine with 2+ CPUs]
#   GEN_CPUS=list taskset CPU list for the Node clients and HAProxy [0]; empty: no pinning
#   ADMS="1 0"    the runs: with admission control (1), without (0)
#   WORKERS=n     Node processes the clients are spread over [one per 750 clients, at most
#                 4]; each reports its own event-loop lag, so a late "back" can be told
#                 from the gateways' pacing
#   HOWS="kill drain"  the events
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$BENCH")
WSGATE=${WSGATE:-$SRC/build/src/wsgate}
CLIENTS=${CLIENTS:-3000}
RATE=${RATE:-300}
OUT=${OUT:-$BENCH/results/storm.md}
if [ "$(nproc)" -ge 2 ]; then
	GW_CPUS=${GW_CPUS-1}
	GEN_CPUS=${GEN_CPUS-0}
fi
ADMS=${ADMS:-1 0}
HOWS=${HOWS:-kill drain}
RAW=$(mktemp /tmp/wsgate-storm-XXXXXX.jsonl)
LOGS=$(mktemp -d /tmp/wsgate-storm-logs-XXXXXX)
STATUS=$RAW.status
trap 'rm -f "$RAW" "$STATUS"' EXIT

need=$((CLIENTS * 4 + 500))
if [ "$(ulimit -Sn)" -lt "$need" ]; then
	ulimit -Sn "$need" 2>/dev/null || { echo "run-storm: need $need open files (ulimit -Sn)"; exit 1; }
fi
T0=$(date +%s)
for how in $HOWS; do
	for adm in $ADMS; do
		t=$(date +%s)
		log=$LOGS/$how-adm$adm.log
		rc=0
		WSGATE_BIN=$WSGATE WSGATE_STORM_CLIENTS=$CLIENTS WSGATE_STORM_RATE=$RATE \
		WSGATE_STORM_ADMISSION=$adm WSGATE_STORM_REPORT=$RAW \
		WSGATE_STORM_GW_CPUS=${GW_CPUS:-} WSGATE_STORM_GEN_CPUS=${GEN_CPUS:-} \
		WSGATE_STORM_WORKERS=${WORKERS:-} \
		    "$SRC/tests/integration/run-integration.sh" -k "test_storm and $how" -s \
		    -p no:cacheprovider >"$log" 2>&1 || rc=$?
		# The test's own verdict (its assertions), with the run's last assertion message.
		msg=$(grep -m1 -E "^E +(AssertionError|assert)" "$log" | cut -c1-160 | tr '|' '/' || true)
		echo "$how $adm $rc $(( $(date +%s) - t )) ${msg:-}" >>"$STATUS"
		echo "run-storm: $how admission=$adm: exit $rc in $(( $(date +%s) - t )) s (log $log)" >&2
	done
done
TOTAL=$(( $(date +%s) - T0 ))
SRC=$SRC GW_CPUS=${GW_CPUS:-} GEN_CPUS=${GEN_CPUS:-} TOTAL=$TOTAL LOGS=$LOGS \
    python3 - "$RAW" "$STATUS" "$OUT" "$CLIENTS" "$RATE" "${RESULTS-$BENCH/RESULTS.md}" <<'PY'
import json, os, re, subprocess, sys, time
raw, status, out, clients, rate, results = sys.argv[1:7]
rate = int(rate)
rows = [json.loads(l) for l in open(raw) if l.strip()]
st = {}
for l in open(status):
    how, adm, rc, secs, *msg = l.rstrip("\n").split(" ")
    st[(how, adm == "1")] = (int(rc), int(secs), " ".join(msg))
rev = subprocess.run(["git", "-C", os.environ["SRC"], "rev-parse", "--short", "HEAD"],
                     capture_output=True, text=True).stdout.strip()
when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
total = int(os.environ["TOTAL"])


def adm_name(r):
    return f"admission_rate = {r['rate']}" if r["admission"] else "off"


def verdict(r):
    """One line a reader can act on: what the issue asks, and whether this run met it."""
    rc, secs, msg = st.get((r["how"], r["admission"]), (None, 0, ""))
    budget = (f"at most {r['gw_max_admitted_1s_fleet']} admitted within any second "
              f"(budget {r['rate']}): {'within' if r['gw_max_admitted_1s_fleet'] <= r['rate'] else 'OVER'}")
    if r["back_s"] is None:
        back = (f"NOT every displaced client back within 90 s ({r.get('displaced_not_back', '?')} "
                f"of {r['displaced']} never reopened; budget implies {r['implied_window_s']} s)")
    else:
        back = (f"every displaced client back in {r['back_s']} s raw "
                f"({r.get('back_clients_s')} s by the clients' own clocks; the "
                f"{r.get('generator_workers', 1)} generator processes' worst event-loop lag "
                f"{r['generator_lag_max_ms'] / 1000:.2f} s during, p99 "
                f"{r.get('generator_lag_p99_before_ms', '?')} ms before) (budget implies "
                f"{r['implied_window_s']} s, allowed with the measured margins "
                f"{r['allowed_back_s']} s): {'within' if r['back_s'] <= r['allowed_back_s'] else 'LATE'}")
    p99 = (f"existing clients' p99 {r['p99_before_ms']} ms before / {r['p99_during_ms']} ms "
           f"during: {'under' if r['p99_during_ms'] < 50 else 'NOT under'} 50 ms")
    test = ("test passed" if rc == 0 else f"test FAILED ({msg or 'see log'})") if r["admission"] \
        else "baseline, not judged"
    return f"- **{r['how']}, admission {'on' if r['admission'] else 'off'}**: {budget}; {back}; {p99}; {test}."


loads = ", ".join("%.1f" % r["loadavg"] for r in rows) or "-"
summary = ["<!-- storm-summary -->",
           f"Reconnect storm (#16), `CLIENTS={clients} RATE={rate} bench/run-storm.sh` at {rev}, {when}, "
           f"{os.cpu_count()} CPUs, loadavg {loads} at the events; "
           f"the four runs took {total // 60} min {total % 60} s. Details: [results/storm.md](results/storm.md).", ""]
summary += [verdict(r) for r in rows]
for (h, a), (rc, secs, msg) in st.items():
    if not any(r["how"] == h and r["admission"] == a for r in rows):
        summary.append(f"- **{h}, admission {'on' if a else 'off'}: not measured** (the run "
                       f"ended before its report, after {secs} s): {msg or 'see its log'}.")
summary.append("<!-- /storm-summary -->")

lines = ["# Reconnect storm: accepts per second with and without admission control", "",
         f"`CLIENTS={clients} RATE={rate} bench/run-storm.sh` at {rev}, {when}; machine: "
         f"{os.cpu_count()} CPUs, shared (loadavg at the event in the table). Gateways pinned to "
         f"CPUs `{os.environ.get('GW_CPUS') or '-'}`, Node clients and HAProxy to "
         f"`{os.environ.get('GEN_CPUS') or '-'}`. Setup: `tests/integration/test_storm.py` (three "
         "wsgate instances, one worker each, on one redis-server behind HAProxy; the clients are "
         "`clients/js/wsgate-client.js` spread over several Node processes (`tests/node/storm_driver.js` "
         "WORKERS, in the table); 10 latency probes per survivor in "
         "their own Node processes; a PUBLISH every 100 ms). One instance is SIGKILLed (kill) or "
         "drained with SIGTERM, drain_window 2 s (drain).", "",
         "Commands: the four runs at full size, `CLIENTS=3000 RATE=300 bench/run-storm.sh` "
         "(a quiet machine with 2+ CPUs; `ulimit -n` >= 4 x CLIENTS + 500); CI size, "
         "`tests/integration/run-integration.sh -k test_storm -s` (600 clients, budget 100).", "",
         "## Verdicts", ""] + summary + ["",
         "## Per run", "",
         "Accepts per second: as the clients saw them (each client's welcome names its instance; "
         "a stalled load generator crowds two seconds into one) and, judged, the most the "
         "survivors themselves counted (`wsgate_handshakes_total` 101, read back to back) within "
         "any second. *Allowed*: the implied window (displaced / rate) at the 85 % the window "
         "gives out, + 1 s (a hint), + 2 s when drained, + the first client's return, the "
         "survivors' loop-lag p99 and the generator's worst lag, measured in the same run.", "",
         "| event | admission | displaced | fleet accepts per second after the event (clients' view) | most admitted in any second (gateways) | back after (s) raw (clients' clocks) | implied window (s) | allowed (s) | p99 before / during (ms) | survivors' loop lag p99 (ms) | generator processes: lag p99 / max each (ms) | own turns > 25 ms | failed attempts of displaced | loadavg | test (s) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    rc, secs, _ = st.get((r["how"], r["admission"]), (None, 0, ""))
    fl = r["fleet_accepts_per_s"]
    lines.append(
        f"| {r['how']} | {adm_name(r)} | {r['displaced']} | {' '.join(map(str, fl[:15]))}{' ...' if len(fl) > 15 else ''} | "
        f"{r['gw_max_admitted_1s_fleet']} (one survivor {r['gw_max_admitted_1s_one']}) | {r['back_s'] if r['back_s'] is not None else '> 90'} ({r.get('back_clients_s')}) | "
        f"{r['implied_window_s']} | {r['allowed_back_s']} | {r['p99_before_ms']} / {r['p99_during_ms']} | "
        f"{r['survivor_loop_lag_p99_ms']} | {r.get('generator_workers', 1)}: "
        f"{', '.join(f'{a} / {b}' for a, b in r.get('generator_lag_per_worker_ms', [])) or r['generator_lag_max_ms']} | "
        f"{', '.join(f'{a} of {b}' for a, b in r.get('loop_busy_over_25ms', []))} | "
        f"{r['displaced_failed_attempts']} | {r['loadavg']:.1f} | {'pass' if rc == 0 else 'FAIL' if r['admission'] else '-'} ({secs}) |")
lines += ["", f"Logs of this run: `{os.environ['LOGS']}` (not kept).", "",
          "Raw lines:", "", "```"] + [json.dumps(r) for r in rows] + ["```", ""]
# Earlier runs written by hand below "## Earlier runs" stay.
try:
    prev = open(out).read()
    if "\n## Earlier runs" in prev:
        lines.append(prev[prev.index("\n## Earlier runs") + 1:])
except OSError:
    pass
open(out, "w").write("\n".join(lines))
print("\n".join(lines))

# bench/RESULTS.md: the summary block replaces the one there (run-all.sh copies it back when it
# rewrites the file), or goes before its "## Details".
try:
    text = open(results).read() if results else None
except OSError:
    text = None
if text is not None:
    block = "## Reconnect storm (bench/run-storm.sh, not run by run-all.sh)\n\n" + "\n".join(summary) + "\n"
    m = re.search(r"## Reconnect storm[^\n]*\n\n<!-- storm-summary -->.*?<!-- /storm-summary -->\n", text, re.S)
    if m:
        text = text[:m.start()] + block + text[m.end():]
    elif "## Details" in text:
        i = text.index("## Details")
        text = text[:i] + block + "\n" + text[i:]
    else:
        text += "\n" + block
    open(results, "w").write(text)
PY
