#!/usr/bin/python3
"""tests/docker/topology_test.py - checks the compose topology of docker/docker-compose.yml
(HAProxy -> wsgate1..3 -> Redis) from the host, through HAProxy only, as a client would.

Run by tests/docker/check-docker.sh once the topology is up; uses Debian's python3-websockets.
Every client connects through HAProxy, which names the replica that took the upgrade in the
X-Wsgate-Server response header; round robin spreads the clients over the three replicas.

Checks (--checks, comma separated, in this order):
  health     every replica's container HEALTHCHECK passes; HAProxy sees all three UP
  echo       /echo works on every replica
  broadcast  a /chat message sent on one replica reaches the /chat clients on the others
  publish    `redis-cli PUBLISH chat X` inside the redis container reaches clients on all three
  drain      stopping one replica (SIGTERM) closes its clients with 1001 and exits 0; they
             reconnect through HAProxy to the others and keep receiving broadcasts
  restart    the stopped replica, started again with a new address, is found by HAProxy's
             resolver and serves clients again
  history    channel history (issue 11): a publisher sends numbered messages to /hist-pub
             while Redis (not persistent here) is restarted, wsgate2 is drained and started
             again, some /hist clients hop to another replica with ?since= and one reads
             /hist-slow (drop_oldest) slowly. Every client must have each message every other
             client got, once and in order, or a notice naming it (dropped/trimmed in its
             epoch, or epoch_changed past its last position in the old epoch)
  redis      readiness is real: with Redis stopped, every replica's container HEALTHCHECK
             fails and HAProxy marks all three DOWN (no new client lands on a replica that
             cannot deliver); with Redis back they come UP and a PUBLISH reaches all three
Without broadcast/publish, drain and restart check with /echo instead of /chat.
"""

import argparse
import asyncio
import csv
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import websockets

REPLICAS = ("wsgate1", "wsgate2", "wsgate3")
ALL_CHECKS = ("health", "echo", "broadcast", "publish", "drain", "restart", "history",
              "redis")
T0 = time.monotonic()


class CheckFailed(Exception):
    pass


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def fail(msg):
    raise CheckFailed(msg)


class Topology:
    """The engine, project and ports of the running topology."""

    def __init__(self, args):
        self.engine = args.engine
        self.project = args.project
        self.ws_base = f"ws://127.0.0.1:{args.http_port}"
        self.stats_url = f"http://127.0.0.1:{args.stats_port}/stats;csv"

    def run(self, *argv, check=True, timeout=60):
        p = subprocess.run([self.engine, *argv], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            fail(f"{self.engine} {' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
        return p

    async def arun(self, *argv, timeout=60):
        """run() that keeps the event loop turning, so clients answer close frames meanwhile."""
        p = await asyncio.create_subprocess_exec(self.engine, *argv, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(p.communicate(), timeout)
        if p.returncode != 0:
            fail(f"{self.engine} {' '.join(argv)} exited {p.returncode}: {err.decode().strip()}")
        return out.decode()

    def container(self, service):
        p = self.run("ps", "-a", "--format", "{{.Names}}",
                     "--filter", f"label=com.docker.compose.project={self.project}",
                     "--filter", f"label=com.docker.compose.service={service}")
        names = p.stdout.split()
        if len(names) != 1:
            fail(f"expected one container for service {service}, found {names}")
        return names[0]

    def inspect(self, name, fmt):
        return self.run("inspect", "--format", fmt, name).stdout.strip()

    def servers(self):
        """HAProxy's view of backend wsgate: {server: (status, addr)}."""
        with urllib.request.urlopen(self.stats_url, timeout=3) as r:
            text = r.read().decode()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {row["svname"]: (row["status"], row.get("addr", ""))
                for row in rows if row["pxname"] == "wsgate" and row["svname"] in REPLICAS}

    async def wait_servers(self, want, timeout):
        """Wait until HAProxy reports each server in `want` with a status starting with its
        value (UP, DOWN, MAINT); returns the last view. Asynchronous: the checks' clients
        answer the gateways' pings meanwhile (a blocking wait of a minute, a slow container
        start under load, had the gateways rightly cut them: no pong within pong_timeout)."""
        deadline = time.monotonic() + timeout
        view = {}
        while time.monotonic() < deadline:
            try:
                view = await asyncio.to_thread(self.servers)
                if all(view.get(s, ("", ""))[0].startswith(st) for s, st in want.items()):
                    return view
            except OSError:
                pass
            await asyncio.sleep(0.5)
        fail(f"HAProxy did not reach {want} within {timeout}s; it reports {view}")


class Client:
    """One WebSocket client through HAProxy, with everything it receives queued."""

    def __init__(self, name):
        self.name = name
        self.ws = None
        self.server = None
        self.msgs = asyncio.Queue()
        self.reader = None
        self.close_code = None
        self.closed_at = None
        self.closed = asyncio.Event()

    async def connect(self, url):
        self.ws = await websockets.connect(url, open_timeout=10, close_timeout=3,
                                           max_queue=None)
        self.server = self.ws.response_headers.get("X-Wsgate-Server")
        if self.server not in REPLICAS:
            fail(f"{self.name}: HAProxy named no replica (X-Wsgate-Server: {self.server!r})")
        self.close_code = None
        self.closed_at = None
        self.closed.clear()
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self):
        ws = self.ws
        try:
            async for m in ws:
                await self.msgs.put(m)
        except websockets.ConnectionClosed:
            pass
        self.close_code = ws.close_code
        self.closed_at = time.monotonic()
        self.closed.set()

    async def expect(self, want, timeout):
        """Wait for message `want`, skipping others (e.g. late sync probes)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                m = await asyncio.wait_for(self.msgs.get(), left)
            except asyncio.TimeoutError:
                return False
            if m == want:
                return True

    def drain_queue(self):
        while not self.msgs.empty():
            self.msgs.get_nowait()

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader


async def connect_spread(topo, path, n, tag, need=REPLICAS):
    """Connect n clients (more, up to 2n, until every replica in `need` has one)."""
    clients = []
    while len(clients) < n or not set(need) <= {c.server for c in clients}:
        if len(clients) >= 2 * n:
            fail(f"{len(clients)} clients through HAProxy landed only on "
                 f"{sorted({c.server for c in clients})}, not on all of {list(need)}")
        c = Client(f"{tag}{len(clients)}")
        await c.connect(topo.ws_base + path)
        clients.append(c)
    log(f"{len(clients)} clients on {path}: " +
        ", ".join(f"{c.name}->{c.server}" for c in clients))
    return clients


async def sync_chat(clients, timeout=10.0):
    """Pub/sub subscriptions may settle just after the upgrade: send probes until every
    client has seen one, so later checks measure delivery, not subscription set-up."""
    sender = clients[0]
    deadline = time.monotonic() + timeout
    pending = list(clients)
    n = 0
    while pending:
        if time.monotonic() > deadline:
            fail("pub/sub never reached " + ", ".join(f"{c.name}@{c.server}" for c in pending)
                 + f" within {timeout}s")
        n += 1
        probe = f"sync-{n}-{uuid.uuid4().hex[:6]}"
        await sender.ws.send(probe)
        still = []
        for c in pending:
            if not await c.expect(probe, 0.5):
                still.append(c)
        pending = still
    for c in clients:
        c.drain_queue()


async def check_broadcast_from(clients, sender, label, timeout=5.0):
    """sender sends one message; every other client must receive it."""
    msg = f"{label}-{uuid.uuid4().hex[:8]}"
    t = time.monotonic()
    await sender.ws.send(msg)
    missing = []
    for c in clients:
        if c is sender:
            continue
        if not await c.expect(msg, timeout):
            missing.append(f"{c.name}@{c.server}")
    self_got = await sender.expect(msg, 0.5)
    if missing:
        fail(f"broadcast from {sender.name}@{sender.server} did not reach {missing}")
    log(f"  {sender.name}@{sender.server} -> all {len(clients) - 1} others in "
        f"{(time.monotonic() - t) * 1000:.0f} ms (sender {'also got' if self_got else 'did not get'} it)")


async def check_echo(clients):
    for c in clients:
        msg = f"echo-{c.name}-{uuid.uuid4().hex[:6]}"
        await c.ws.send(msg)
        if not await c.expect(msg, 5):
            fail(f"/echo on {c.server}: {c.name} got no echo")


async def redis_publish(topo, msg):
    redis = topo.container("redis")
    out = await topo.arun("exec", redis, "redis-cli", "PUBLISH", "chat", msg)
    try:
        return int(out.strip())
    except ValueError:
        fail(f"redis-cli PUBLISH said {out.strip()!r}")


async def check_publish(topo, clients, label):
    msg = f"{label}-{uuid.uuid4().hex[:8]}"
    t = time.monotonic()
    receivers = await redis_publish(topo, msg)
    exec_s = time.monotonic() - t
    t = time.monotonic()
    missing = [f"{c.name}@{c.server}" for c in clients if not await c.expect(msg, 5)]
    if missing:
        fail(f"redis-cli PUBLISH chat (Redis counted {receivers} subscribers) "
             f"did not reach {missing}")
    log(f"  redis-cli PUBLISH chat ({topo.engine} exec {exec_s:.1f}s): {receivers} Redis "
        f"subscribers; all {len(clients)} clients on {sorted({c.server for c in clients})} had it "
        f"{(time.monotonic() - t) * 1000:.0f} ms after exec returned")


async def healthcheck_run(name):
    """Podman schedules health checks with systemd timers; without systemd, run one here.
    Returns (passed, output)."""
    p = await asyncio.create_subprocess_exec(
        "podman", "healthcheck", "run", name,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await p.communicate()
    return p.returncode == 0, out.decode().strip()


async def health_of(topo, service, want="healthy", timeout=40):
    """Wait until the container's HEALTHCHECK says `want` ("healthy" or "unhealthy")."""
    name = topo.container(service)
    deadline = time.monotonic() + timeout
    if topo.engine == "podman":
        # Retried like the engine would (exec is slow on a loaded host; a replica is ready
        # only once its Redis link delivers).
        while True:
            ok, out = await healthcheck_run(name)
            if ok == (want == "healthy"):
                return
            if time.monotonic() > deadline:
                fail(f"HEALTHCHECK of {name} is not {want} after {timeout}s: {out}")
            await asyncio.sleep(1)
    while topo.inspect(name, "{{.State.Health.Status}}") != want:
        if time.monotonic() > deadline:
            fail(f"{name} is not {want}: {topo.inspect(name, '{{json .State.Health}}')}")
        await asyncio.sleep(1)


async def check_health(topo):
    t = time.monotonic()
    await asyncio.gather(*(health_of(topo, s) for s in REPLICAS + ("redis",)))
    log(f"  container HEALTHCHECKs pass (wsgate1..3 GET /readyz, redis PING) in "
        f"{time.monotonic() - t:.1f}s")
    view = await topo.wait_servers({s: "UP" for s in REPLICAS}, 60)
    log(f"  HAProxy: {view}")
    with urllib.request.urlopen(topo.ws_base.replace("ws:", "http:") + "/healthz", timeout=3) as r:
        if r.status != 200:
            fail(f"GET /healthz through HAProxy: {r.status}")


async def reconnect(topo, c, path, victim, timeout=10.0):
    """Reconnect as a client would after 1001: at once, then with a short back-off."""
    deadline = time.monotonic() + timeout
    tries = 0
    while True:
        tries += 1
        try:
            await c.connect(topo.ws_base + path)
            break
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
            if time.monotonic() > deadline:
                fail(f"{c.name} could not reconnect through HAProxy in {timeout}s: {e}")
            await asyncio.sleep(0.2 * tries)
    if c.server == victim:
        fail(f"{c.name} reconnected to {victim}, which is shutting down")
    return tries


async def check_drain(topo, path, use_chat, victim="wsgate2"):
    """Stop one replica with SIGTERM: its clients see 1001, the others stay, the drained
    clients reconnect at once through HAProxy, land on the others and keep receiving."""
    clients = await connect_spread(topo, path, 6, "d")
    if use_chat:
        await sync_chat(clients)
    name = topo.container(victim)
    on_victim = [c for c in clients if c.server == victim]
    others = [c for c in clients if c.server != victim]
    topo.addr_before = topo.servers().get(victim, ("", ""))[1]
    t = time.monotonic()
    stop = asyncio.create_task(topo.arun("stop", name))

    async def closed_then_back(c):
        try:
            await asyncio.wait_for(c.closed.wait(), 9)
        except asyncio.TimeoutError:
            fail(f"{c.name}@{victim} was not closed within 9s of SIGTERM")
        if c.close_code != 1001:
            fail(f"{c.name}@{victim} was closed with {c.close_code}, not 1001 (going away)")
        closed_s = c.closed_at - t
        tries = await reconnect(topo, c, path, victim)
        return (f"{c.name}: 1001 at {closed_s:.1f}s, back on {c.server} at "
                f"{time.monotonic() - t:.1f}s ({tries} tr{'y' if tries == 1 else 'ies'})")

    back = await asyncio.gather(*(closed_then_back(c) for c in on_victim))
    log(f"  {len(on_victim)} clients of {victim} closed with 1001 and reconnected through "
        f"HAProxy: " + "; ".join(back))
    await stop
    stop_s = time.monotonic() - t
    code = topo.inspect(name, "{{.State.ExitCode}}")
    log(f"  {topo.engine} stop {name}: {stop_s:.1f}s, exit code {code}")
    if code != "0":
        fail(f"{name} exited {code} after SIGTERM, not 0")
    if stop_s > 9:
        fail(f"{topo.engine} stop took {stop_s:.1f}s: did wsgate ignore SIGTERM (SIGKILL at 10s)?")
    for c in others:
        if c.closed.is_set():
            fail(f"{c.name}@{c.server} was closed ({c.close_code}) though its replica runs")
    # HAProxy sees the replica go: its checks fail (DOWN) or its name stops resolving (MAINT).
    deadline = time.monotonic() + 20
    while True:
        status = topo.servers().get(victim, ("?", ""))[0]
        if status.startswith(("DOWN", "MAINT")):
            break
        if time.monotonic() > deadline:
            fail(f"HAProxy still reports {victim} {status} 20s after it stopped")
        await asyncio.sleep(0.5)
    log(f"  HAProxy marks {victim} {status} {time.monotonic() - t:.1f}s after SIGTERM")
    if use_chat:
        await sync_chat(clients)
        for c in on_victim:
            await check_broadcast_from(clients, c, "after-drain")
        await check_broadcast_from(clients, others[0], "after-drain")
        if "publish" in topo.checks:
            await check_publish(topo, clients, "after-drain-publish")
    else:
        await check_echo(clients)
        log(f"  /echo works on the reconnected clients")
    return clients


async def check_restart(topo, path, use_chat, clients, victim="wsgate2"):
    name = topo.container(victim)
    before = getattr(topo, "addr_before", "")
    t = time.monotonic()
    await topo.arun("start", name)
    view = await topo.wait_servers({victim: "UP"}, 45)
    after = view[victim][1]
    log(f"  {topo.engine} start {name}: HAProxy has it UP after {time.monotonic() - t:.1f}s "
        f"(address {before or 'none'} -> {after})")
    # HAProxy may show the server UP on its old check state as soon as the name resolves, then
    # DOWN on the first check of the new address until wsgate is ready: keep connecting.
    newc = []
    deadline = time.monotonic() + 30
    while True:
        c = await Client(f"r{len(newc)}").connect(topo.ws_base + path)
        newc.append(c)
        if c.server == victim:
            break
        if time.monotonic() > deadline:
            fail(f"{len(newc)} new clients through HAProxy in 30s never landed on the "
                 f"restarted {victim}; HAProxy reports {topo.servers()}")
        await asyncio.sleep(0.3)
    mine = newc[-1]
    log(f"  new client {mine.name} landed on {victim} {time.monotonic() - t:.1f}s after start")
    everyone = clients + newc
    if use_chat:
        await sync_chat(everyone)
        await check_broadcast_from(everyone, mine, "after-restart")
        await check_broadcast_from(everyone, clients[0], "after-restart")
    else:
        await check_echo([mine])
        log(f"  /echo works on the restarted {victim}")
    for c in everyone:
        await c.close()


class HistClient:
    """A /hist client that keeps its position and reconnects with ?since= whenever it is
    closed (or told to hop); records ("m", epoch, off, data) and ("g", epoch, from, to,
    reason) in arrival order."""

    def __init__(self, topo, name, path="/hist", slow=False):
        self.topo, self.name, self.path, self.slow = topo, name, path, slow
        self.entries, self.pos, self.reconnects, self.servers = [], None, 0, []
        self.ws, self.task, self.done = None, None, False

    async def connect(self):
        url = self.topo.ws_base + self.path + (f"?since={self.pos}" if self.pos else "")
        for tries in range(100):
            try:
                self.ws = await websockets.connect(url, open_timeout=10, close_timeout=3,
                                                   max_queue=None)
                self.servers.append(self.ws.response_headers.get("X-Wsgate-Server"))
                return
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
                await asyncio.sleep(0.2)
        fail(f"{self.name} could not connect to {url}")

    async def run(self):
        while not self.done:
            try:
                async for raw in self.ws:
                    m = json.loads(raw)
                    if m["type"] == "message":
                        e, o = m["pos"].rsplit(":", 1)
                        self.entries.append(("m", e, int(o), m["data"]))
                        self.pos = m["pos"]
                    elif m["type"] == "gap":
                        self.entries.append(("g", m["epoch"], m["from"], m["to"], m["reason"]))
                        if m["epoch"] and m["to"] >= m["from"]:
                            self.pos = f"{m['epoch']}:{m['to']}"
                    if self.slow and not self.done:
                        await asyncio.sleep(0.05)
            except websockets.ConnectionClosed:
                pass
            if self.done:
                return
            self.reconnects += 1
            await self.connect()

    async def hop(self):
        await self.ws.close()  # run() reconnects with since=

    def last_of(self, epoch):
        offs = [e[2] for e in self.entries if e[0] == "m" and e[1] == epoch]
        return max(offs) if offs else None


def check_hist_client(c, where):
    """where: data -> (epoch, off) as the clients saw it. Problems of one client."""
    problems, seen, last = [], set(), {}
    told = []   # (epoch left, last offset there) for each epoch_changed
    cur = None
    for e in c.entries:
        if e[0] == "m":
            _, ep, off, data = e
            if cur is not None and ep != cur and not (told and told[-1][0] == cur):
                problems.append(f"{c.name}: epoch {cur} -> {ep} without an epoch_changed notice")
            cur = ep
            if off <= last.get(ep, 0):
                problems.append(f"{c.name}: {ep}:{off} after {ep}:{last[ep]}")
            last[ep] = off
            if data in seen:
                problems.append(f"{c.name}: {data} twice")
            seen.add(data)
        else:
            _, ep, a, b, reason = e
            if reason == "epoch_changed":
                if cur is not None:
                    told.append((cur, last.get(cur, 0)))
            elif ep:
                last[ep] = max(last.get(ep, 0), b)
    gaps = [(e[1], e[2], e[3]) for e in c.entries if e[0] == "g" and e[4] != "epoch_changed"]
    for data, (ep, off) in where.items():
        if data in seen or any(g[0] == ep and g[1] <= off <= g[2] for g in gaps):
            continue
        if any(t[0] == ep and t[1] < off for t in told):
            continue  # told: everything after its position in that epoch is gone
        problems.append(f"{c.name} ({'slow ' if c.slow else ''}servers {c.servers}): {data} "
                        f"({ep}:{off}) neither delivered nor named in a notice")
    return problems


async def check_history(topo, n=1500, rate=75.0):
    readers = [HistClient(topo, f"h{i}") for i in range(9)]
    readers.append(HistClient(topo, "hslow", path="/hist-slow", slow=True))
    for c in readers:
        await c.connect()
    tasks = [asyncio.create_task(c.run()) for c in readers]
    log("  readers on " + ", ".join(f"{c.name}->{c.servers[-1]}" for c in readers))
    pub = None
    sent, t0 = 0, time.monotonic()
    redis, victim = topo.container("redis"), topo.container("wsgate2")
    events = {n * 3 // 10: "restart redis", n // 2: "stop wsgate2",
              n * 6 // 10: "start wsgate2", n // 4: "hop", n * 7 // 10: "hop"}
    background, stopping = [], None
    for i in range(n):
        what = events.get(i)
        if what == "restart redis":
            background.append(asyncio.create_task(topo.arun("restart", redis)))
            log(f"  {i}: {topo.engine} restart redis (no persistence: a new epoch)")
        elif what == "stop wsgate2":
            stopping = asyncio.create_task(topo.arun("stop", victim))
            log(f"  {i}: {topo.engine} stop wsgate2 (drain)")
        elif what == "start wsgate2":
            await stopping  # a container still stopping cannot be started
            background.append(asyncio.create_task(topo.arun("start", victim)))
            log(f"  {i}: {topo.engine} start wsgate2")
        elif what == "hop":
            for c in readers[:3]:
                await c.hop()
            log(f"  {i}: h0..h2 reconnect with their position")
        while True:
            try:
                if pub is None:
                    pub = await websockets.connect(topo.ws_base + "/hist-pub", open_timeout=5)
                await pub.send(f"h{i}")
                sent += 1
                break
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
                pub = None
                await asyncio.sleep(0.1)
        delay = t0 + (i + 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    for b in background:
        await b
    # Every reader catches up: it stops once it has the last message some reader got.
    last_data = f"h{n - 1}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(any(e[0] == "m" and e[3] == last_data for e in c.entries) for c in readers):
            break
        await asyncio.sleep(0.5)
    for c in readers:
        c.done = True
        await c.ws.close()
    for t in tasks:
        await asyncio.wait_for(t, 10)
    if pub is not None:
        await pub.close()
    where, problems = {}, []
    for c in readers:
        for e in c.entries:
            if e[0] == "m":
                if where.setdefault(e[3], (e[1], e[2])) != (e[1], e[2]):
                    problems.append(f"{e[3]} at {where[e[3]]} and at {e[1]}:{e[2]}")
    for c in readers:
        problems += check_hist_client(c, where)
    if problems:
        fail("history: " + "; ".join(problems[:10]))
    epochs = sorted({ep for ep, _ in where.values()})
    log(f"  {sent} sent in {time.monotonic() - t0:.0f}s, {len(where)} delivered to someone, "
        f"epochs {epochs}; per reader: " + ", ".join(
            f"{c.name} {sum(1 for e in c.entries if e[0] == 'm')} msgs "
            f"{sum(1 for e in c.entries if e[0] == 'g')} notices {c.reconnects} reconnects"
            for c in readers))


async def check_redis_down(topo, victim="redis"):
    """Readiness reflects delivery: a replica that cannot reach Redis is unhealthy and DOWN."""
    # The history check before restarts Redis and a replica: start from every replica UP, or
    # the spread below counts a replica still reconnecting as one HAProxy skips (failed once:
    # 12 clients on wsgate1 and wsgate2 only, 3 s after the history check).
    t = time.monotonic()
    view = await topo.wait_servers({s: "UP" for s in REPLICAS}, 60)
    log(f"  HAProxy has every replica UP {time.monotonic() - t:.1f}s into this check: {view}")
    clients = await connect_spread(topo, "/chat", 6, "k")
    await sync_chat(clients)
    name = topo.container(victim)
    t = time.monotonic()
    await topo.arun("stop", name)
    log(f"  {topo.engine} stop {name}: {time.monotonic() - t:.1f}s")
    view = await topo.wait_servers({s: "DOWN" for s in REPLICAS}, 30)
    log(f"  HAProxy marks every replica DOWN {time.monotonic() - t:.1f}s after Redis stopped: "
        f"{view}")
    await asyncio.gather(*(health_of(topo, s, "unhealthy", 30) for s in REPLICAS))
    log(f"  container HEALTHCHECKs (GET /readyz) fail on wsgate1..3 without Redis")
    try:
        with urllib.request.urlopen(topo.ws_base.replace("ws:", "http:") + "/healthz",
                                    timeout=3) as r:
            fail(f"GET /healthz through HAProxy answered {r.status} with every replica DOWN")
    except urllib.error.HTTPError as e:
        if e.code != 503:
            fail(f"GET /healthz through HAProxy: {e.code}, not 503, with every replica DOWN")
    log("  a new request through HAProxy gets 503: no replica that cannot deliver takes it")
    for c in clients:
        if c.closed.is_set():
            fail(f"{c.name}@{c.server} was closed ({c.close_code}) while Redis was down")
    t = time.monotonic()
    await topo.arun("start", name)
    view = await topo.wait_servers({s: "UP" for s in REPLICAS}, 60)
    log(f"  Redis started again: HAProxy has every replica UP after "
        f"{time.monotonic() - t:.1f}s")
    await asyncio.gather(*(health_of(topo, s) for s in REPLICAS))
    await sync_chat(clients, timeout=20)
    await check_publish(topo, clients, "after-redis")
    for c in clients:
        await c.close()


async def run(args):
    topo = Topology(args)
    checks = [c for c in args.checks.split(",") if c]
    unknown = set(checks) - set(ALL_CHECKS)
    if unknown:
        fail(f"unknown checks {sorted(unknown)}; known: {', '.join(ALL_CHECKS)}")
    topo.checks = checks
    use_chat = "broadcast" in checks or "publish" in checks
    path = "/chat" if use_chat else "/echo"
    passed = []
    chat = []
    clients = []

    async def step(check, coro_fn):
        if check not in checks:
            return None
        t = time.monotonic()
        log(f"== {check}")
        r = await coro_fn()
        log(f"== {check}: ok ({time.monotonic() - t:.1f}s)")
        passed.append(check)
        return r

    async def health():
        await check_health(topo)

    async def echo():
        cs = await connect_spread(topo, "/echo", 6, "e")
        await check_echo(cs)
        log(f"  /echo answered on {sorted({c.server for c in cs})}")
        for c in cs:
            await c.close()

    async def broadcast():
        chat.extend(await connect_spread(topo, "/chat", 6, "c"))
        await sync_chat(chat)
        seen = set()
        for c in chat:
            if c.server not in seen:
                seen.add(c.server)
                await check_broadcast_from(chat, c, "broadcast")

    async def publish():
        if not chat:
            chat.extend(await connect_spread(topo, "/chat", 6, "c"))
            await sync_chat(chat)
        await check_publish(topo, chat, "publish")

    async def drain():
        for c in chat:
            await c.close()
        chat.clear()
        clients.extend(await check_drain(topo, path, use_chat))

    async def restart():
        if not clients:
            clients.extend(await connect_spread(topo, path, 4, "x", need=("wsgate1", "wsgate3")))
        await check_restart(topo, path, use_chat, clients)

    await step("health", health)
    await step("echo", echo)
    await step("broadcast", broadcast)
    await step("publish", publish)
    await step("drain", drain)
    await step("restart", restart)
    await step("history", lambda: check_history(topo))
    await step("redis", lambda: check_redis_down(topo))
    log(f"passed: {', '.join(passed)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", required=True, choices=("docker", "podman"))
    ap.add_argument("--project", required=True, help="compose project name")
    ap.add_argument("--http-port", type=int, required=True, help="HAProxy's published port")
    ap.add_argument("--stats-port", type=int, required=True, help="HAProxy stats port")
    ap.add_argument("--checks", default=",".join(ALL_CHECKS))
    args = ap.parse_args()
    try:
        asyncio.run(run(args))
    except CheckFailed as e:
        log(f"FAIL: {e}")
        sys.exit(1)
    except (OSError, websockets.WebSocketException, subprocess.TimeoutExpired) as e:
        log(f"FAIL: {type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
