#!/usr/bin/python3
"""redis_cluster_bench.py - sharded (SPUBLISH) against classic (PUBLISH) pub/sub on a Redis
Cluster of 1, 2 and 3 masters on loopback (issue 14). For each size: a cluster made by hand
(CLUSTER ADDSLOTSRANGE + MEET, no replicas), one subscriber per master on a channel of that
master's slots (SSUBSCRIBE; classic: SUBSCRIBE on every node, as a gateway per node would),
and one redis-benchmark per master publishing MSGS messages of SIZE bytes to its channel
(pipelined). Prints a markdown table: messages/s over all masters, and the CPU (user+system,
from /proc/<pid>/stat) each Redis process spent per message published in the whole cluster.
With fewer cores than processes, throughput is bounded by the cores, so the CPU per message is
the figure that says whether adding masters adds capacity.

Environment: MSGS [200000 per master], SIZE [64], PIPE [32], PORT_BASE [25100]."""

import os
import socket
import subprocess
import sys
import tempfile
import time

MSGS = int(os.environ.get("MSGS", "200000"))
SIZE = int(os.environ.get("SIZE", "64"))
PIPE = int(os.environ.get("PIPE", "32"))
PORT_BASE = int(os.environ.get("PORT_BASE", "25100"))
HZ = os.sysconf("SC_CLK_TCK")


def cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                         text=True).stdout.strip()
    if out.startswith("ERR") or out.startswith("(error)"):
        raise RuntimeError(f"redis-cli -p {port} {' '.join(args)}: {out}")
    return out


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        st = f.read().rsplit(")", 1)[1].split()
    return int(st[11]) + int(st[12])  # utime + stime (fields 14, 15)


def wait_port(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis on {port} did not start")


def free_pair(start):
    """The first port from start on that is free, with its cluster bus port (+10000)."""
    p = start
    while True:
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 10000))
            return p
        except OSError:
            p += 1


def make_cluster(n, tmp):
    ports = []
    for _ in range(n):
        ports.append(free_pair(ports[-1] + 1 if ports else PORT_BASE))
    procs = []
    for p in ports:
        d = os.path.join(tmp, str(p))
        os.makedirs(d, exist_ok=True)
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", d, "--cluster-enabled", "yes",
             "--cluster-config-file", os.path.join(d, "nodes.conf"), "--logfile",
             os.path.join(d, "log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in ports:
        wait_port(p)
    step = 16384 // n
    for i, p in enumerate(ports):
        lo, hi = i * step, 16383 if i == n - 1 else (i + 1) * step - 1
        cli(p, "CLUSTER", "ADDSLOTSRANGE", str(lo), str(hi))
        if i > 0:
            cli(p, "CLUSTER", "MEET", "127.0.0.1", str(ports[0]))
    deadline = time.time() + 30
    while time.time() < deadline:
        if all("cluster_state:ok" in cli(p, "CLUSTER", "INFO") and
               int(cli(p, "CLUSTER", "INFO").split("cluster_known_nodes:")[1].split()[0]) == n
               for p in ports):
            break
        time.sleep(0.1)
    else:
        raise RuntimeError("cluster not ok")
    return ports, procs


def channel_on(ports, i):
    """A channel name whose slot master i serves."""
    n, k = len(ports), 0
    step = 16384 // n
    while True:
        name = f"bench{{{k}}}"
        slot = int(cli(ports[0], "CLUSTER", "KEYSLOT", name))
        if slot // step == i or (i == n - 1 and slot >= i * step):
            return name
        k += 1


def run(n, sharded, tmp):
    ports, procs = make_cluster(n, tmp)
    subs = []
    try:
        chans = [channel_on(ports, i) for i in range(n)]
        for i, p in enumerate(ports):
            if sharded:
                subs.append(subprocess.Popen(["redis-cli", "-p", str(p), "SSUBSCRIBE", chans[i]],
                                             stdout=subprocess.DEVNULL))
            else:
                subs.append(subprocess.Popen(["redis-cli", "-p", str(p), "SUBSCRIBE", *chans],
                                             stdout=subprocess.DEVNULL))
        time.sleep(0.5)
        before = [cpu_ticks(pr.pid) for pr in procs]
        t0 = time.monotonic()
        cmd = "SPUBLISH" if sharded else "PUBLISH"
        bench = [subprocess.Popen(["redis-benchmark", "-p", str(p), "-n", str(MSGS), "-P",
                                   str(PIPE), "-c", "2", "-q", cmd, chans[i], "x" * SIZE],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i, p in enumerate(ports)]
        for b in bench:
            b.wait()
        dt = time.monotonic() - t0
        time.sleep(0.3)  # what the cluster bus still carries
        after = [cpu_ticks(pr.pid) for pr in procs]
        total = MSGS * n
        per = [(a - b) / HZ / total * 1e6 for a, b in zip(after, before)]
        return total / dt, per
    finally:
        for s in subs:
            s.kill()
            s.wait()
        for pr in procs:
            pr.kill()
            pr.wait()


def main():
    rows = []
    for n in (1, 2, 3):
        for sharded in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                rate, per = run(n, sharded, tmp)
            rows.append((n, "SPUBLISH" if sharded else "PUBLISH", rate, per))
            print(f"{n} master(s) {rows[-1][1]}: {rate:,.0f} msg/s, CPU µs/msg per Redis "
                  f"{['%.2f' % x for x in per]}", file=sys.stderr)
    print("| masters | command | messages/s (all masters) | CPU µs per message, each Redis "
          "| CPU µs per message, all Redis |")
    print("|---|---|---|---|---|")
    for n, cmd, rate, per in rows:
        print(f"| {n} | {cmd} | {rate:,.0f} | {' / '.join('%.2f' % x for x in per)} | "
              f"{sum(per):.2f} |")


if __name__ == "__main__":
    main()
