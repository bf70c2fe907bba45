"""test_storm.py - the reconnect storm (#16) at CI scale: three wsgate instances on one Redis
behind HAProxy, 600 clients of clients/js/wsgate-client.js (tests/node/storm_driver.js) on a
pub/sub route fed by a Redis PUBLISH of {"ts": epoch ms} every 100 ms. One instance is
SIGKILLed (or drained with SIGTERM); then:
  - the fleet admits at most the budget (admission_rate) in any second, from the survivors'
    own counters (wsgate_handshakes_total 101 read back to back: pairs of readings less
    than a second apart), so no survivor accepts more than the budget in any second; the
    accepts per second seen by the clients' welcomes are reported;
  - the survivors' clients that were already open keep p99 message latency under 50 ms: the
    gateway's own loop turns (wsgate_loop_busy_seconds, CPU time) stay under 25 ms in 99 %
    of the survivors' 50 ms ticks, and the probes' wall-clock p99 during the storm is at most
    50 ms above the p99 they measured just before it (the machine's share), at any load;
  - every displaced client is back within the window the budget implies (displaced / rate,
    at the 85 % the window gives out), plus the hint's 1 s, the drain window when drained,
    and the loop lags measured in the same window (no allowance for loadavg).
Sizes come from WSGATE_STORM_CLIENTS / _RATE / _ADMISSION (bench/run-storm.sh runs 3,000
clients with and without admission control and writes bench/results/storm.md)."""

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from test_topology import HAProxy
from wsharness import (Gateway, RedisServer, RespConn, add_config_sections, free_port,
                       http_status, node_env, node_modules_missing, node_script, wait_until)

N = int(os.environ.get("WSGATE_STORM_CLIENTS", "600"))
RATE = int(os.environ.get("WSGATE_STORM_RATE", "100"))
ADMISSION = os.environ.get("WSGATE_STORM_ADMISSION", "1") == "1"
REPORT = os.environ.get("WSGATE_STORM_REPORT")  # a JSON file the bench appends to
# The rate configured on the gateways; the test still judges against RATE. Only to show that
# the test fails when admission is off (0) or broken (a budget larger than RATE).
CONFIG_RATE = int(os.environ.get("WSGATE_STORM_CONFIG_RATE", str(RATE)))
# CPU lists for taskset (bench): the gateways on some cores, load generator and HAProxy on
# others, so the generator's bursts do not queue the gateways behind it.
GW_CPUS = os.environ.get("WSGATE_STORM_GW_CPUS")
GEN_CPUS = os.environ.get("WSGATE_STORM_GEN_CPUS")
P99_MS = 50.0
# The gateway's own part of a message's latency: a loop turn of its own work (CPU time beyond
# the 50 ms lag timer's interval, wsgate_loop_busy_seconds) longer than this is a stall the
# gateway caused, whatever the machine's load; at most 1 % of the ticks during the storm.
BUSY_MS = 25.0
PROBES = 10  # latency probes per survivor, in their own Node processes
BACK_TIMEOUT = 90  # s: how long the test waits for every displaced client
# The storm's clients spread over this many Node processes (storm_driver.js WORKERS): one
# process driving 3,000 clients lagged 5.7 s, and a reconnect it notices late is late
# whatever the gateway said. One per 750 clients, at most 4 (CI's 600: one, as before).
WORKERS = int(os.environ.get("WSGATE_STORM_WORKERS") or min(4, max(1, -(-N // 750))))
# Latency recorded for every k-th storm client only (reported, not judged: the probes
# measure it); every one up to 1,000 clients.
LAT_EVERY = max(1, N // 1000 * 5)


class BigHAProxy(HAProxy):
    """test_topology's HAProxy with room for every client."""

    def __init__(self, workdir, backends):
        super().__init__(workdir, backends)
        with open(self.cfg, encoding="utf-8") as f:
            # maxconn counts client-side connections (each also holds a server-side one:
            # HAProxy asks for ~2 descriptors per connection, so 4 x N did not start at 3,000
            # clients under a 20,000 limit); the frontend's own limit too (it defaults to
            # 2,000 on some versions).
            text = f.read().replace("maxconn 1000", f"maxconn {N + 500}").replace(
                "defaults\n", f"defaults\n    maxconn {N + 500}\n")
            # A survivor is taken out only after 3 failed checks of a second each, as a
            # production balancer would (HAProxy's default fall is 3): with test_topology's
            # "fall 1" and the check's 200 ms timeout, one slow /readyz on a loaded survivor
            # (loop lag p99 0.25-0.75 s in a storm) took it out, and HAProxy's own 503 (no
            # server) carries no retry hint: 70 of 113 refusals of displaced clients were
            # those, each doubling the client's backoff (1,500 clients, drain, load 12). The
            # killed instance still goes at once: its refused connections are redispatched.
            text = text.replace("fall 1 rise 2", "fall 3 rise 2").replace(
                "defaults\n", "defaults\n    timeout check 1s\n")
        with open(self.cfg, "w", encoding="utf-8") as f:
            f.write(text)


def start_fleet(tmp_path, redis):
    gws = []
    for i in range(3):
        admin = free_port()
        gw = {"workers": "1", "admin_listen": f"127.0.0.1:{admin}", "drain_window": "2s",
              "shutdown_timeout": "5s", "max_connections": str(2 * N)}
        if ADMISSION and CONFIG_RATE > 0:
            gw.update({"admission_rate": str(CONFIG_RATE), "admission_ramp": "2s"})
        g = Gateway(workdir=str(tmp_path / f"gw{i}"), gateway=gw,
                    routes={"/feed": {"type": "pubsub", "subscribe": "feed",
                                      "announce_id": "yes"}})
        # Default connect_timeout: with a direct channel per client (announce_id), a
        # resubscription on the loaded machine can take over a second (seen at 1,500 clients).
        add_config_sections(g, {"redis": {"url": f"redis://127.0.0.1:{redis.port}/0",
                                          "reconnect_max": "500ms"}})
        g.start()
        g.admin_port = admin
        if GW_CPUS:
            subprocess.run(["taskset", "-a", "-p", "-c", GW_CPUS, str(g.proc.pid)], check=True,
                           capture_output=True)
        gws.append(g)
    for g in gws:
        wait_until(lambda g=g: http_status(g.port, "/readyz") == 200, 15, what="ready")
    return gws


def instance_of(g):
    m = re.search(r"\(instance ([0-9a-f]+),", g.stderr())
    assert m, g.stderr()
    return m.group(1)


def publisher(port, stop):
    with RespConn(port) as r:
        while not stop.is_set():
            r.command("PUBLISH", "feed", json.dumps({"ts": time.time() * 1000}))
            time.sleep(0.1)


def per_second(events, t0):
    """{instance: {second: n}} of open events at or after t0 (ms)."""
    out = {}
    for t, inst, _, _ in events:
        if t >= t0:
            s = int((t - t0) // 1000)
            out.setdefault(inst, {}).setdefault(s, 0)
            out[inst][s] += 1
    return out


def gen(argv):
    """argv run on the load generator's cores when the bench pins them."""
    return ["taskset", "-c", GEN_CPUS] + argv if GEN_CPUS else argv


def busy_buckets(g):
    """{upper bound in ms: cumulative count} of the worker loops' wsgate_loop_busy_seconds
    (every worker summed) and the same for wsgate_loop_lag_seconds."""
    out = {"busy": {}, "lag": {}}
    with urllib.request.urlopen(f"http://127.0.0.1:{g.admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for m in re.finditer(r'^wsgate_loop_(busy|lag)_seconds_bucket\{worker="\d+",le="([^"]+)"\} '
                         r"(\d+)$", text, re.M):
        le = float("inf") if m.group(2) == "+Inf" else float(m.group(2)) * 1000
        out[m.group(1)][le] = out[m.group(1)].get(le, 0) + int(m.group(3))
    return out


def over(before, after, ms):
    """(ticks whose value was above ms, all ticks) between two busy_buckets() readings."""
    total = after[float("inf")] - before.get(float("inf"), 0)
    at_most = after[ms] - before.get(ms, 0)
    return total - at_most, total


def reference_lag(stop, out):
    """The machine's share: how late a 50 ms sleep in this (idle) thread wakes, (t_ms, lag_ms)
    every tick. Every process on the machine waits about as long for a CPU; the gateway's
    loop lag beyond it is the gateway's own."""
    while not stop.is_set():
        t = time.monotonic()
        time.sleep(0.05)
        out.append((time.time() * 1000, max(0.0, (time.monotonic() - t - 0.05) * 1000)))


def quantile(before, after, q):
    """The q-quantile (ms) of the ticks between two readings of a busy_buckets() histogram,
    interpolated within its bucket as Prometheus' histogram_quantile does."""
    bounds = sorted(after)
    total = after[bounds[-1]] - before.get(bounds[-1], 0)
    if total <= 0:
        return 0.0
    rank, lo, prev = q * total, 0.0, 0
    for b in bounds:
        n = after[b] - before.get(b, 0)
        if n >= rank:
            if b == float("inf"):
                return lo
            return lo + (b - lo) * (rank - prev) / max(1, n - prev)
        lo, prev = b, n
    return lo


def admitted_poller(gws, stop, out):
    """The survivors' own count of sessions upgraded (wsgate_handshakes_total 101), read
    back to back: (t_start_ms, t_end_ms, [count per survivor]) per round. Every admission
    counted between two rounds happened between the first round's start and the second's
    end, so a pair less than a second apart bounds what the gateways admitted in a second,
    whatever this poller's own lag (a late round only makes fewer pairs)."""
    while not stop.is_set():
        t0 = time.time() * 1000
        counts = []
        for g in gws:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{g.admin_port}/metrics",
                                            timeout=5) as r:
                    m = re.search(r'^wsgate_handshakes_total\{result="accepted",status="101"\} '
                                  r"(\d+)$",
                                  r.read().decode(), re.M)
                counts.append(int(m.group(1)) if m else 0)
            except OSError:
                counts = None
                break
        if counts is not None:
            out.append((t0, time.time() * 1000, counts))
        time.sleep(0.1)


def max_in_a_second(rounds, which):
    """The most admissions that pairs of admitted_poller() rounds less than a second apart
    (first start to last end) show, summed over the survivors in which."""
    best = 0
    for i, (s0, _, c0) in enumerate(rounds):
        for _, e1, c1 in rounds[i + 1:]:
            if e1 - s0 > 1000:
                break
            best = max(best, sum(c1[k] - c0[k] for k in which))
    return best


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))] if xs else 0.0


@pytest.mark.parametrize("how", ["kill", "drain"])
def test_storm(tmp_path, how):
    node = shutil.which("node")
    assert node and not node_modules_missing("ws"), "node and tests/node modules needed"
    redis = RedisServer(str(tmp_path / "redis"))
    redis.start()
    gws, hap, drv, stop, probes = [], None, None, threading.Event(), []
    try:
        gws = start_fleet(tmp_path, redis)
        hap = BigHAProxy(str(tmp_path), [g.port for g in gws]).start()
        if GEN_CPUS:
            subprocess.run(["taskset", "-a", "-p", "-c", GEN_CPUS, str(hap.proc.pid)],
                           check=True, capture_output=True)
        wait_until(lambda: http_status(hap.port, "/readyz") == 200, 10, what="haproxy up")
        pub = threading.Thread(target=publisher, args=(redis.port, stop), daemon=True)
        pub.start()
        ref = []
        threading.Thread(target=reference_lag, args=(stop, ref), daemon=True).start()
        out = str(tmp_path / "storm.json")
        # The fill is paced under the budget: it is not the storm being measured. 60 %: the
        # window gives out ~88 % of the rate under steady demand, and a fill at 80 % of it
        # (1,500 clients, 120/s for 150/s, loadavg 12) took 301 s instead of 12.5.
        fill = min(RATE * 0.6, 400) if ADMISSION else 400
        drv = subprocess.Popen(gen([node, node_script("storm_driver.js"),
                                    f"ws://127.0.0.1:{hap.port}/feed", str(N), str(fill), out,
                                    str(WORKERS), str(LAT_EVERY)]),
                               env=node_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
        t_fill = time.monotonic()
        got = {}
        th = threading.Thread(target=lambda: got.update(line=drv.stdout.readline().strip()),
                              daemon=True)
        th.start()
        # The fill is not the storm: if it does not finish in 3 x its paced time + 60 s, the
        # run says so instead of waiting for good (seen: 301 s for a 12.5 s fill at loadavg 12).
        th.join(3 * N / fill + 60)
        assert got.get("line") == "ready", \
            f"the fill did not finish in {3 * N / fill + 60:.0f} s: driver said {got}"
        fill_s = time.monotonic() - t_fill
        # The latency is measured by small probe processes on each survivor: 600 clients in
        # one Node process measure mostly that process's own event-loop lag.
        for i, g in enumerate(gws[1:]):
            p = subprocess.Popen(gen([node, node_script("storm_driver.js"),
                                      f"ws://127.0.0.1:{g.port}/feed", str(PROBES), "50",
                                      str(tmp_path / f"probe{i}.json")]),
                                 env=node_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
            probes.append(p)
            assert p.stdout.readline().strip() == "ready"
        time.sleep(3)  # steady state: latencies before the storm
        victim = gws[0]
        vid = instance_of(victim)
        loops_before = [busy_buckets(g) for g in gws[1:]]
        rounds = []
        threading.Thread(target=admitted_poller, args=(gws[1:], stop, rounds),
                         daemon=True).start()
        t_event = time.time() * 1000
        if how == "kill":
            victim.send_signal(signal.SIGKILL)
        else:
            victim.send_signal(signal.SIGTERM)
        # Back when the driver is at N again (it prints "ready" each time).
        t0 = time.monotonic()
        back = None
        res = {}

        def wait_ready():
            res["line"] = drv.stdout.readline().strip()
        th = threading.Thread(target=wait_ready, daemon=True)
        th.start()
        th.join(BACK_TIMEOUT)
        # Not back in time: measured all the same (the bench's baseline without admission
        # control reports it), judged at the end.
        if res.get("line") == "ready":
            back = time.monotonic() - t0
        time.sleep(2)
        loops_after = [busy_buckets(g) for g in gws[1:]]
        drv.stdin.write("stop\n")
        drv.stdin.flush()
        if back is not None:
            assert drv.stdout.readline().strip() == "done"
        else:
            th.join(20)  # the reader gets the driver's "done"
            assert res.get("line") == "done", res
        drv.wait(20)
        for p in probes:
            p.stdin.write("stop\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "done"
            p.wait(20)
        stop.set()
        rec = json.load(open(out))
        plat, ploop = [], []
        for i in range(len(probes)):
            prec = json.load(open(tmp_path / f"probe{i}.json"))
            plat += prec["lat"]
            ploop += prec["loop"]
    finally:
        stop.set()
        for p in probes + [drv]:
            if p is not None and p.poll() is None:
                p.kill()
        if hap is not None:
            hap.stop()
        for g in gws:
            if g.running():
                g.kill_quietly()
        redis.kill()

    came_back = back is not None
    if not came_back:
        back = BACK_TIMEOUT
    displaced = sum(1 for t, inst, _, code, _ in rec["closes"] if inst == vid and t >= t_event)
    rates = per_second(rec["opens"], t_event)
    fleet = {}
    for inst, per in rates.items():
        for s, n in per.items():
            fleet[s] = fleet.get(s, 0) + n
    lat_before = [l for t, l, inst, ot in plat if t_event - 3000 <= t < t_event]
    lat_during = [l for t, l, inst, ot in plat
                  if t_event <= t <= t_event + back * 1000 and ot < t_event]
    drv_during = [l for t, l, inst, ot in rec["lat"]
                  if t_event <= t <= t_event + back * 1000 and inst != vid and inst is not None
                  and ot < t_event]
    window = displaced / RATE
    t_end = t_event + (back + 2) * 1000
    ref_during = [l for t, l in ref if t_event <= t <= t_end]
    gen_during = [l for t, l, *_ in rec["loop"] if t_event <= t <= t_end]
    probe_loop_during = [l for t, l, *_ in ploop if t_event <= t <= t_end]
    lag_before, lag_after = {}, {}
    for a, b in zip(loops_before, loops_after):
        for k, v in a["lag"].items():
            lag_before[k] = lag_before.get(k, 0) + v
        for k, v in b["lag"].items():
            lag_after[k] = lag_after.get(k, 0) + v
    victims = {c for t, inst, c, code, _ in rec["closes"] if inst == vid and t >= t_event}
    reopen = [t for t, inst, c, n in rec["opens"] if t >= t_event and c in victims]
    first_back = (min(reopen) - t_event) / 1000 if reopen else 0.0
    # "Back" from the clients' own clocks: the last displaced client's first welcome after
    # the event (the test's back_s also holds the coordinator's and this thread's delay).
    first_reopen = {}
    for t, inst, c, n in rec["opens"]:
        if t >= t_event and c in victims and c not in first_reopen:
            first_reopen[c] = t
    back_clients = ((max(first_reopen.values()) - t_event) / 1000
                    if victims and len(first_reopen) == len(victims) else None)
    refusal_kinds = {}
    for t, c, status, hint in rec.get("refusals", []):
        if t >= t_event and c in victims:
            k = f"{status}{'+hint' if hint else ''}"
            refusal_kinds[k] = refusal_kinds.get(k, 0) + 1
    # Each generator process's own event-loop lag in the same window (worst, p99).
    per_worker = {}
    for t, l, *w in rec["loop"]:
        if t_event <= t <= t_end:
            per_worker.setdefault(w[0] if w else 0, []).append(l)
    # The displaced clients' attempts that failed after the event (refused, or no server), and
    # the longest delay one of them then chose (a hint, or its backoff).
    failed = [(t, d) for t, inst, c, code, d in rec["closes"]
              if inst is None and c in victims and t >= t_event]
    summary = {"how": how, "clients": N, "rate": RATE, "admission": ADMISSION,
               "displaced_failed_attempts": len(failed),
               "displaced_not_back": len(victims - {c for t, inst, c, n in rec["opens"]
                                                    if t >= t_event}),
               "displaced_max_delay_ms": max((d for _, d in failed), default=0),
               "gw_max_admitted_1s_fleet": max_in_a_second(rounds, range(len(gws) - 1)),
               "gw_max_admitted_1s_one": max(max_in_a_second(rounds, [k])
                                             for k in range(len(gws) - 1)),
               "gw_rounds": len(rounds),
               "fill_s": round(fill_s, 2), "displaced": displaced, "back_s": round(back, 2) if came_back else None,
               "implied_window_s": round(window, 2), "first_back_s": round(first_back, 2),
               "fleet_accepts_per_s": [fleet.get(s, 0) for s in range(max(fleet) + 1)] if fleet else [],
               "per_instance_per_s": {i: [per.get(s, 0) for s in range(max(per) + 1)]
                                      for i, per in rates.items()},
               "p99_before_ms": round(p99(lat_before), 1),
               "p99_during_ms": round(p99(lat_during), 1), "samples_during": len(lat_during),
               "driver_p99_during_ms": round(p99(drv_during), 1),
               "machine_lag_p99_ms": round(p99(ref_during), 1),
               "probe_loop_lag_p99_ms": round(p99(probe_loop_during), 1),
               "survivor_loop_lag_p99_ms": round(quantile(lag_before, lag_after, 0.99), 1),
               "generator_lag_p99_ms": round(p99(gen_during), 1),
               "generator_lag_max_ms": round(max(gen_during, default=0), 1),
               "generator_workers": WORKERS,
               # The generators' lag in the 3 s before the event: what they lag anyway (the
               # fan-out they receive), against what the storm adds.
               "generator_lag_p99_before_ms": round(p99([l for t, l, *_ in rec["loop"]
                                                          if t_event - 3000 <= t < t_event]), 1),
               "generator_lag_per_worker_ms": [[round(p99(v), 1), round(max(v), 1)]
                                               for _, v in sorted(per_worker.items())],
               "back_clients_s": round(back_clients, 2) if back_clients is not None else None,
               # The displaced clients' refused upgrades after the event by status, with and
               # without wsgate's hint: "503+hint" paces, "503" (a balancer's own) backs off.
               "displaced_refusals": refusal_kinds,
               "loadavg": os.getloadavg()[0]}
    # The survivors' loops during the storm (from the kill to 2 s after everyone was back):
    # ticks whose own work (busy) or total delay (lag, the machine's CPU wait included) went
    # past BUSY_MS, of all ticks, per survivor.
    summary["loop_busy_over_%dms" % BUSY_MS] = [
        list(over(a["busy"], b["busy"], BUSY_MS)) for a, b in zip(loops_before, loops_after)]
    # The loop lag above the machine's share (reported): the smallest histogram bound at or
    # above the reference thread's p99 plus BUSY_MS.
    lag_ms = min(b for b in loops_after[0]["lag"]
                 if b >= summary["machine_lag_p99_ms"] + BUSY_MS)
    summary["loop_lag_bound_ms"] = lag_ms
    summary["loop_lag_over_bound"] = [
        list(over(a["lag"], b["lag"], lag_ms)) for a, b in zip(loops_before, loops_after)]
    # Everyone back within the window the budget implies (displaced / rate), as the window in
    # Redis gives it out (at least 85 % of the budget: check_admission), plus:
    # - 1 s: a refusal's hint when the queue is short (ADMISSION_MIN_WINDOW_MS) - the last
    #   client refused is told to come back within it;
    # - when drained, the drain window (2 s): the last close comes that late;
    # - what the machine adds, measured in the same window: the first displaced client's
    #   return (how late the kill reaches HAProxy and the driver), the survivors' loop-lag
    #   p99 (a gateway waiting for a CPU answers later) and the load generator's worst
    #   event-loop lag (a reconnect noticed that much later). None of it depends on loadavg.
    allowed = (summary["first_back_s"] + window / 0.85 + 1.0 +
               (2.0 if how == "drain" else 0.0) +
               summary["survivor_loop_lag_p99_ms"] / 1000 +
               summary["generator_lag_max_ms"] / 1000)
    summary["allowed_back_s"] = round(allowed, 2)
    # Verdicts for the bench's table (judged below only with admission control on).
    summary["verdict_budget"] = "ok" if summary["gw_max_admitted_1s_fleet"] <= RATE else "OVER"
    summary["verdict_back"] = "ok" if came_back and back <= allowed else "LATE"
    print(json.dumps(summary))
    if REPORT:
        with open(REPORT, "a", encoding="utf-8") as f:
            f.write(json.dumps(summary) + "\n")
    assert displaced >= N // 6, summary  # about a third were on the victim
    assert came_back, f"not every displaced client came back within {BACK_TIMEOUT} s: {summary}"
    assert lat_during, summary
    if not ADMISSION:
        return  # the bench's baseline: measured, not judged
    # The budget, judged on the gateways' own counts (admitted_poller): no second saw the
    # survivors admit more than the budget (the window in Redis is strict: the spends of the
    # last second plus what the pools hold never exceed it). The accepts per second seen by
    # the clients (fleet_accepts_per_s) are reported only: a load generator that stalls sees
    # more than a second's admissions in one of its seconds.
    assert summary["gw_rounds"] > 10, summary
    assert summary["gw_max_admitted_1s_fleet"] <= RATE, \
        f"{summary['gw_max_admitted_1s_fleet']} admitted within a second > {RATE}: {summary}"
    # Latency, judged on what the gateway controls, with no escape for a loaded machine:
    # 1. Its own work: at most 1 % of the survivors' 50 ms loop ticks during the storm saw a
    #    turn of the gateway's own work (CPU time, so a machine short of CPU does not count)
    #    longer than BUSY_MS. A gateway that handles a storm in long turns fails here.
    for busy_over, ticks in summary["loop_busy_over_%dms" % BUSY_MS]:
        assert ticks > 0 and busy_over <= max(1, ticks // 100), \
            f"own loop turns > {BUSY_MS} ms in {busy_over} of {ticks} ticks: {summary}"
    # (Not judged: the loop lag beyond the reference thread's, in the summary. Tried: with 0
    #    busy ticks, 2-11 % of the ticks were still over it at loadavg 17-20, as the kernel
    #    wakes a thread that mostly sleeps sooner than a process that uses its CPU: it
    #    measures the machine, not the gateway.)
    # 2. Wall clock: the probes' p99 during the storm at most P99_MS above what they measured
    #    just before it, plus the two waits a message has on the way that a shared machine
    #    lengthens without the gateway's doing, both measured in the same window: the
    #    survivors' loop lag p99 (wsgate_loop_lag_seconds; its own-work part is judged in 1)
    #    and the probe processes' own event-loop lag p99. Measured at loadavg 13-19 on 2
    #    CPUs: the probes' p99 rose by 240-990 ms during a 600-client storm with 0 own turns
    #    over 25 ms, while the Node processes' own lag rose by as much: the machine's.
    bound = (summary["p99_before_ms"] + P99_MS + summary["survivor_loop_lag_p99_ms"] +
             summary["probe_loop_lag_p99_ms"])
    assert summary["p99_during_ms"] < bound, \
        f"p99 {summary['p99_during_ms']} >= {bound}: {summary}"
    assert back <= allowed, f"back in {back:.1f} s > {allowed:.1f} s: {summary}"
