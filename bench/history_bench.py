#!/usr/bin/env python3
"""history_bench.py - the costs of channel history (issue 11), measured against one local
redis-server and wsgate binaries started here (loopback; ports from PORT_BASE):

  1. publish throughput on the same Redis: FCALL wsgate_publish (XADD + PUBLISH, atomic) against
     plain PUBLISH (redis-benchmark, 10 connections, pipeline 16), and Redis CPU per message
     (INFO cpu before/after);
  2. wsgate's CPU per delivery, history on and off: SUBS WebSocket subscribers, MSGS messages
     published at RATE/s, the gateway's utime+stime over the run divided by deliveries;
  3. catch-up: a client 10,000 messages behind connects with since= and reads them all
     (with Redis: FCALL_RO wsgate_range pages; in process: the memory ring).

Prints a markdown table; run-history.sh writes it to bench/results/history.md."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import websockets

WSGATE = os.environ.get("WSGATE", "build/src/wsgate")
PORT_BASE = int(os.environ.get("PORT_BASE", "24100"))
SUBS = int(os.environ.get("SUBS", "200"))
MSGS = int(os.environ.get("MSGS", "2000"))
RATE = int(os.environ.get("RATE", "500"))
BEHIND = int(os.environ.get("BEHIND", "10000"))
HZ = os.sysconf("SC_CLK_TCK")


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Resp:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def cmd(self, *args):
        self.s.sendall(resp(*args))
        return self.read()

    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-"):
            if t == b"-":
                raise RuntimeError(rest.decode())
            return rest.decode()
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            d = self.f.read(n + 2)[:-2]
            return d
        if t == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError(line)


def redis_cpu(r):
    info = r.cmd("INFO", "cpu").decode()
    v = dict(l.split(":", 1) for l in info.splitlines() if ":" in l)
    return float(v["used_cpu_user"]) + float(v["used_cpu_sys"])


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / HZ


def start_gateway(port, redis_port, workdir):
    cfg = f"""[gateway]
listen = 127.0.0.1:{port}
workers = 1
log_level = warn
max_connections = 100000

[route /h]
type = pubsub
subscribe = h
publish = h
history_size = 20000

[route /p]
type = pubsub
subscribe = p
publish = p
"""
    if redis_port:
        cfg += f"\n[redis]\nurl = redis://127.0.0.1:{redis_port}/0\n"
    path = os.path.join(workdir, f"gw{port}.ini")
    with open(path, "w") as f:
        f.write(cfg)
    p = subprocess.Popen([WSGATE, "-c", path], stdout=subprocess.DEVNULL,
                         stderr=open(path + ".err", "wb"))
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.05)
    time.sleep(0.5)
    return p


def bench_publish(rport):
    rows = []
    r = Resp(rport)
    for name, cmd in (("PUBLISH (no history)", ["PUBLISH", "bench-p", "x" * 64]),
                      ("FCALL wsgate_publish (history)",
                       ["FCALL", "wsgate_publish", "1", "bench-h", "x" * 64, "1000", "0"])):
        n = 200000
        c0 = redis_cpu(r)
        out = subprocess.run(["redis-benchmark", "-p", str(rport), "-n", str(n), "-c", "10",
                              "-P", "16", "-q", "--csv"] + cmd, capture_output=True, text=True)
        c1 = redis_cpu(r)
        rps = float(out.stdout.strip().splitlines()[-1].split(",")[1].strip('"'))
        rows.append((name, rps, (c1 - c0) / n * 1e6))
    return rows


async def fanout(port, path, publish, msgs, rate):
    conns = [await websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None)
             for _ in range(SUBS)]
    got = [0]

    async def reader(c):
        async for _ in c:
            got[0] += 1
            if got[0] >= SUBS * msgs:
                return

    tasks = [asyncio.create_task(reader(c)) for c in conns]
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    for i in range(msgs):
        publish(i)
        d = t0 + (i + 1) / rate - time.monotonic()
        if d > 0:
            await asyncio.sleep(d)
    deadline = time.monotonic() + 60
    while got[0] < SUBS * msgs and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()
    for c in conns:
        await c.close()
    return got[0]


def bench_fanout(gwpid, port, rport):
    rows = []
    r = Resp(rport)
    # alternated, twice each: the first run of a process pays for warming up
    for hist in (False, True, False, True):
        path = "/h" if hist else "/p"

        def publish(i, hist=hist):
            if hist:
                r.cmd("FCALL", "wsgate_publish", "1", "h", f"m{i:08d}", "20000", "0")
            else:
                r.cmd("PUBLISH", "p", f"m{i:08d}")

        c0 = proc_cpu(gwpid)
        got = asyncio.run(fanout(port, path, publish, MSGS, RATE))
        c1 = proc_cpu(gwpid)
        rows.append(("on" if hist else "off", got, SUBS * MSGS, (c1 - c0) / max(got, 1) * 1e6))
    return rows


def bench_catchup(port, rport):
    r = Resp(rport)
    first = None
    for i in range(BEHIND):
        pos = r.cmd("FCALL", "wsgate_publish", "1", "h", f"c{i:08d}" + "x" * 55, "20000",
                    "0").decode()
        first = first or pos
    epoch, off = first.rsplit(":", 1)
    since = f"{epoch}:{int(off) - 1}"
    n = 0

    async def run():
        nonlocal n
        async with websockets.connect(f"ws://127.0.0.1:{port}/h?since={since}",
                                      max_size=None) as c:
            while n < BEHIND:
                await c.recv()
                n += 1

    t0 = time.monotonic()
    asyncio.run(run())
    return n, time.monotonic() - t0


def main():
    work = tempfile.mkdtemp(prefix="wsgate-hbench-")
    rport, gport = PORT_BASE, PORT_BASE + 1
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", work],
                             stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    gw = start_gateway(gport, rport, work)
    try:
        pub = bench_publish(rport)
        fan = bench_fanout(gw.pid, gport, rport)
        n, secs = bench_catchup(gport, rport)
    finally:
        gw.terminate()
        gw.wait()
        redis.terminate()
        redis.wait()
    print("| command (64-byte message) | msgs/s | Redis CPU per message |")
    print("|---|---|---|")
    for name, rps, us in pub:
        print(f"| {name} | {rps:,.0f} | {us:.2f} µs |")
    print()
    print(f"| history | deliveries | expected | wsgate CPU per delivery |")
    print("|---|---|---|---|")
    for h, got, want, us in fan:
        print(f"| {h} | {got:,} | {want:,} | {us:.2f} µs |")
    print()
    print(f"Catch-up (Redis, FCALL_RO wsgate_range pages of 512): a client {BEHIND:,} messages "
          f"(64 B) behind got {n:,} in {secs * 1000:.0f} ms "
          f"({n / secs:,.0f} msgs/s).")


if __name__ == "__main__":
    sys.exit(main())
