"""test_history_topology.py - issue 11's proof in the topology: three gateway instances on one
Redis (append-only file, fsync always), an application publishing numbered messages with
FCALL wsgate_publish while (a) Redis is restarted, (b) one instance is drained (SIGTERM) and
started again, (c) 10 % of the clients disconnect and reconnect with their last position, (d)
some clients read slowly under drop_oldest, drop_newest and close. Every client must end with
every message in order exactly once, or "dropped" gap notices naming exactly the offsets it
did not get, and nothing else missing.

Scale: WSGATE_TOPO_MESSAGES messages (default 2,000 at ~100/s, so the run stays near 30 s in
CI; the issue's 100,000 over 60 s is the same code with WSGATE_TOPO_MESSAGES=100000
WSGATE_TOPO_RATE=1700)."""

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time

from test_pubsub_redis import REDIS_KEYS
from wsharness import (Gateway, HarnessError, RedisServer, RespConn, ServerClosed, WSClient,
                       _set_pdeathsig, add_config_sections, http_status, wait_until)

N = int(os.environ.get("WSGATE_TOPO_MESSAGES", "2000"))
RATE = float(os.environ.get("WSGATE_TOPO_RATE", "100"))
NCLIENTS = 30

HIST = {"type": "pubsub", "subscribe": "topo", "envelope": "json", "history_size": "200000"}
ROUTES = {
    "/t": dict(HIST),
    "/t-drop_oldest": dict(HIST, max_queue="1KiB", slow_consumer="drop_oldest"),
    "/t-drop_newest": dict(HIST, max_queue="1KiB", slow_consumer="drop_newest"),
    "/t-close": dict(HIST, max_queue="1KiB", slow_consumer="close"),
}


class PersistentRedis(RedisServer):
    """redis-server with an append-only file fsynced on every write: a restart keeps the
    history (and the function library), as a production Redis with persistence does."""

    def start(self, timeout=10.0):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--dir", self.workdir, "--logfile", self.logfile, "--daemonize", "no"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=_set_pdeathsig)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with RespConn(self.port, timeout=1.0) as r:
                    if r.command("PING") == "PONG":
                        return self
            except (OSError, HarnessError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise HarnessError("persistent redis-server did not start")
            time.sleep(0.05)

    def restart(self):
        self.proc.send_signal(signal.SIGTERM)  # a clean shutdown: the AOF is complete
        self.proc.wait(10)
        self.start()


class Client(threading.Thread):
    """One WebSocket client: reads json messages and gap notices, reconnects with since= to
    the next live instance whenever it is closed (drain, slow consumer) or told to hop."""

    def __init__(self, k, gws, path, slow=False, hops=0):
        super().__init__(daemon=True)
        self.k, self.gws, self.path, self.slow, self.hops = k, gws, path, slow, hops
        self.entries = []   # ("m", offset, data) or ("g", from, to, reason)
        self.pos = None
        self.epoch = None
        self.done = threading.Event()
        self.stop = threading.Event()
        self.final = None   # the offset that ends the run
        self.error = None
        self.reconnects = 0

    def covered_to(self):
        last = 0
        for e in self.entries:
            last = e[1] if e[0] == "m" else e[2]
        return last

    def connect(self):
        for attempt in range(200):
            g = self.gws[(self.k + self.reconnects + attempt) % len(self.gws)]
            path = self.path + (f"?since={self.pos}" if self.pos else "")
            try:
                if self.slow:
                    c = WSClient(g.port, path, handshake=False)
                    c.sock.close()
                    c.sock = socket.socket()
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    c.sock.settimeout(10)
                    c.sock.connect(("127.0.0.1", g.port))
                    c.handshake()
                    return c
                return WSClient(g.port, path)
            except (OSError, HarnessError):
                time.sleep(0.05)
        raise HarnessError(f"client {self.k}: no instance accepts")

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            self.done.set()

    def _run(self):
        c = self.connect()
        hop_at = sorted(random.sample(range(50, max(51, N - 50)), self.hops)) if self.hops else []
        while True:
            if self.final is not None and self.covered_to() >= self.final:
                c.close()
                return
            if self.stop.is_set():
                c.close()
                return
            try:
                op, payload = c.recv_message(1.0)
            except TimeoutError:
                continue
            except (ServerClosed, HarnessError, OSError):
                c.close()
                self.reconnects += 1
                c = self.connect()
                continue
            m = json.loads(payload)
            if m["type"] == "message":
                e, off = m["pos"].rsplit(":", 1)
                self.entries.append(("m", int(off), m["data"]))
                self.pos = m["pos"]
                self.epoch = e
            elif m["type"] == "gap":
                self.entries.append(("g", m["from"], m["to"], m["reason"]))
                if m["to"] >= m["from"]:
                    self.pos = f"{m['epoch']}:{m['to']}"
            if self.slow and self.final is None:
                time.sleep(0.03)  # lags while the publisher runs, catches up after
            if hop_at and self.entries and len(self.entries) >= hop_at[0]:
                hop_at.pop(0)
                c.close()
                self.reconnects += 1
                c = self.connect()


def start_gateway(tmp_path_factory, redis, name):
    g = Gateway(workdir=str(tmp_path_factory.mktemp(name)), routes=ROUTES,
                gateway={"drain_window": "200ms"})
    keys = {"url": f"redis://127.0.0.1:{redis.port}/0"}
    keys.update(REDIS_KEYS)
    add_config_sections(g, {"redis": keys})
    g.start()
    wait_until(lambda: http_status(g.port, "/readyz") == 200, 15, what=f"{name} ready")
    return g


def test_topology_every_message_or_an_exact_notice(tmp_path_factory):
    redis = PersistentRedis(str(tmp_path_factory.mktemp("redis-aof"))).start()
    gws = []
    clients = []
    try:
        gws = [start_gateway(tmp_path_factory, redis, f"topo{i}") for i in range(3)]
        for k in range(NCLIENTS):
            if k < 3:
                path, slow = ["/t-drop_oldest", "/t-drop_newest", "/t-close"][k], True
            else:
                path, slow = "/t", False
            hops = 3 if 3 <= k < 3 + NCLIENTS // 10 else 0
            clients.append(Client(k, gws, path, slow=slow, hops=hops))
        for cl in clients:
            cl.start()
        time.sleep(1.0)  # every client connected (and subscribed: the 101 waits for it)
        published = {}   # offset -> payload
        first = None
        t0 = time.monotonic()
        r = RespConn(redis.port)
        for i in range(N):
            if i == N * 3 // 10:
                r.close()
                redis.restart()
                r = None
            if i == N // 2:
                gws[1].send_signal(signal.SIGTERM)
            if i == N // 2 + N // 10:
                gws[1].wait(15)
                gws[1].start()
            while True:
                try:
                    if r is None:
                        r = RespConn(redis.port)
                    pos = r.command("FCALL", "wsgate_publish", "1", "topo", f"n{i}", "200000")
                    break
                except (OSError, HarnessError, TimeoutError):
                    r = None
                    time.sleep(0.05)
            pos = pos.decode() if isinstance(pos, bytes) else pos
            off = int(pos.rsplit(":", 1)[1])
            first = off if first is None else first
            published[off] = f"n{i}"
            delay = t0 + (i + 1) / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        r.close()
        last = max(published)
        assert sorted(published) == list(range(first, last + 1)), "publisher saw a jump"
        for cl in clients:
            cl.final = last
        deadline = time.monotonic() + 60
        for cl in clients:
            cl.done.wait(max(0.1, deadline - time.monotonic()))
        for cl in clients:
            cl.stop.set()
        problems = []
        for cl in clients:
            if cl.error is not None:
                problems.append(f"client {cl.k} {cl.path}: {cl.error!r}")
                continue
            covered, msgs = [], 0
            for e in cl.entries:
                if e[0] == "m":
                    msgs += 1
                    if published.get(e[1]) != e[2]:
                        problems.append(f"client {cl.k}: offset {e[1]} carried {e[2]!r}")
                    covered.append(e[1])
                else:
                    if e[3] != "dropped" or not cl.slow:
                        problems.append(f"client {cl.k} {cl.path}: unexpected notice {e}")
                    covered += list(range(e[1], e[2] + 1))
            if covered != list(range(first, last + 1)):
                bad = next((i for i, (a, b) in enumerate(zip(covered, range(first, last + 1)))
                            if a != b), len(covered))
                problems.append(f"client {cl.k} {cl.path} (reconnects {cl.reconnects}): "
                                f"{len(covered)} covered of {last - first + 1}, first "
                                f"difference at index {bad}: {covered[max(0, bad - 2):bad + 3]}")
            if not cl.slow and msgs != last - first + 1:
                problems.append(f"client {cl.k}: {msgs} messages")
        assert not problems, "\n".join(problems[:20])
        assert sum(cl.reconnects for cl in clients) >= NCLIENTS // 10 * 3
    finally:
        for cl in clients:
            cl.stop.set()
        for g in gws:
            try:
                g.stop()
            except (AssertionError, HarnessError):
                g.kill_quietly()
        redis.kill()
