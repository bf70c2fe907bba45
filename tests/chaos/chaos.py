#!/usr/bin/env python3
"""chaos.py - issue 10 item 8: two wsgate instances (sanitizer build) under mixed clients on
echo, pubsub (through a real redis-server) and proxy routes (a Node `ws` echo backend and a
scripted backend that floods or hangs), while the harness kills and restarts Redis and the
backend, sends SIGHUP every 10 s with alternating good and broken config files, and drains
(SIGTERM) and restarts one instance. Bounded in time and count, loopback only, cleans up.

Pass: no wsgate exits unless told (and then with status 0), no sanitizer report, the
connection gauges settle back to the clients still open, instance A's RSS (in the sanitizer
build with ASan's heap region counted as its bytes in use: rss_held_kib) and heap in use after
the run within 10 % of theirs after warm-up (warm-up: the clients alone, then the faults too for
40 % of the chaos time; both read with every client and fault parked and no session open, so
that they compare like with like), and every message a well-behaved client sent either delivered or
refused to it visibly (a close code or an HTTP refusal). Clients that misbehave on purpose
(garbage, vanishing mid-frame) are judged only on not hurting the gateway: their 1002 or 400
is wsgate being right. A message lost while the harness had Redis or the backend down, or the
instance drained, is counted as the fault's, not as a wsgate bug, when the loss falls inside
the fault's window.

Prints the figures and a last line "chaos: N passed, N failed" (one per criterion), exit 0
only when all passed. Reuses tests/integration/wsharness.py (imported, not copied)."""

import argparse
import collections
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import wsharness as H  # noqa: E402

# Close codes a well-behaved client may be refused with, visibly: going away (drain),
# internal error (a backend or broker failed), try again later (queue full, backend down),
# policy (slow consumer), bad gateway (RFC 6455 1014, a backend refused).
VISIBLE_CODES = {1001, 1008, 1011, 1013, 1014}
# Close codes that say the client broke the protocol: wrong for a well-behaved client.
BLAME_CODES = {1002, 1003, 1007, 1009}
FAULT_GRACE = 6.0  # seconds after a fault ends during which its losses are its own


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.failures = []  # (kind, detail)

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def fail(self, kind, detail):
        # UTC wall clock with ms, as wsgate's log lines, to find the gateway's side.
        t = time.time()
        detail = time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z " + \
            detail
        with self.lock:
            self.c["fail:" + kind] += 1
            if len(self.failures) < 200:
                self.failures.append((kind, detail))


class Faults:
    """When the harness had each part down: a loss inside a window is the fault's."""

    def __init__(self):
        self.lock = threading.Lock()
        self.windows = collections.defaultdict(list)  # part -> [[start, end or None]]

    def begin(self, part, back=0.0):
        with self.lock:
            self.windows[part].append([time.monotonic() - back, None])

    def end(self, part):
        with self.lock:
            if self.windows[part] and self.windows[part][-1][1] is None:
                self.windows[part][-1][1] = time.monotonic()

    def overlaps(self, parts, t0, t1):
        with self.lock:
            for p in parts:
                for s, e in self.windows[p]:
                    e = (e if e is not None else time.monotonic()) + FAULT_GRACE
                    if s <= t1 and t0 <= e:
                        return True
        return False


# ---------------------------------------------------------------------------------------------
# the parts: configs, gateways, backends


def gateway_config(port, admin_port, redis_port, node_port, bad_port, broken=0):
    routes = {
        "/echo": {"type": "echo"},
        "/ps/{room}": {"type": "pubsub", "subscribe": "room:{room}", "publish": "room:{room}"},
        "/proxy": H.proxy_route(f"ws://127.0.0.1:{node_port}/socket", retries=1,
                                connect_timeout="2s"),
        # The backend that floods or hangs; the settings for the handshake race.
        "/proxybad": H.proxy_route(f"ws://127.0.0.1:{bad_port}/x", retries=0,
                                   connect_timeout="2s"),
    }
    gw = dict(H.BASE_GATEWAY)
    gw.update({"admin_listen": f"127.0.0.1:{admin_port}", "handshake_timeout": "1s",
               "log_level": "info", "shutdown_timeout": "5s"})
    hb = {"ping_interval": "2s", "pong_timeout": "4s", "idle_timeout": "0"}
    text = H.render_config([port], gw, hb, routes)
    text += f"\n[redis]\nurl = redis://127.0.0.1:{redis_port}/0\nprobe_interval = 1s\n" \
            "probe_timeout = 3s\nreconnect_max = 1s\n"
    if broken == 1:
        text += "\n[route /bad/{x}/{x}]\ntype = echo\n"       # duplicate placeholder
    elif broken == 2:
        text = text.replace("max_message_size = 1048576", "max_message_size = lots")
    return text


class Instance:
    """One wsgate process on fixed ports, restartable; keeps every run's stderr."""

    def __init__(self, name, workdir, ports, stats, faults):
        self.name = name
        self.workdir = os.path.join(workdir, name)
        os.makedirs(self.workdir, exist_ok=True)
        self.port, self.admin = ports
        self.stats, self.faults = stats, faults
        self.g = None
        self.runs = 0
        self.lock = threading.Lock()   # config writes, signals, restarts
        self.expected_down = False     # drained on purpose: exits are not crashes
        self.stderr_all = []

    def write_config(self, text):
        with open(os.path.join(self.workdir, "wsgate.ini"), "w", encoding="utf-8") as f:
            f.write(text)

    def start(self, text):
        self.write_config(text)
        self.g = H.Gateway(workdir=self.workdir, config_text=text)
        self.g.ports = [self.port]
        self.g.start(ready_timeout=30.0)
        self.runs += 1

    def collect_stderr(self):
        if self.g is not None:
            self.stderr_all.append(self.g.stderr())

    def alive(self):
        return self.g is not None and self.g.running()

    def rss_kib(self):
        return H.vm_rss_kib(self.g.proc.pid)

    def metrics(self):
        r = H.http_request(self.admin, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                           timeout=3.0, close_timeout=0)
        vals = collections.Counter()
        for line in r.body.decode("utf-8", "replace").splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, v = line.rsplit(" ", 1)
            base = name.split("{", 1)[0]
            try:
                vals[base] += float(v)
            except ValueError:
                pass
        return vals


def bad_backend_serve(stats):
    """A backend that misbehaves by connection: hangs before 101, answers after the client's
    handshake deadline, floods pings and data, or answers and hangs."""
    def serve(sock):
        mode = random.choice(["hang", "slow101", "flood", "hang101"])
        stats.add("fault:backend_" + mode)
        sock.settimeout(30)
        if mode == "hang":
            time.sleep(random.uniform(1.0, 4.0))
            return
        if mode == "slow101":
            time.sleep(random.uniform(0.8, 2.5))  # around handshake_timeout = 1s
        H.raw_upgrade(sock)
        if mode == "flood":
            end = time.monotonic() + random.uniform(0.5, 3.0)
            ping = H.build_frame(H.OP_PING, b"p" * 8, mask=False)
            data = H.build_frame(H.OP_BINARY, os.urandom(4096), mask=False)
            while time.monotonic() < end:
                sock.sendall(ping * 64 + data)
        else:
            time.sleep(random.uniform(1.0, 5.0))
    return serve


# ---------------------------------------------------------------------------------------------
# clients


class Ctx:
    def __init__(self, args, stats, faults, insts, redis, node):
        self.args, self.stats, self.faults = args, stats, faults
        self.insts, self.redis, self.node = insts, redis, node
        self.stop = threading.Event()
        # Processes started from a thread get SIGKILL when that thread ends (wsharness sets
        # PR_SET_PDEATHSIG, which the kernel ties to the forking thread): the injector and
        # the watchdog wait for this before returning, set once everything is stopped.
        self.final = threading.Event()
        self.unwatch = threading.Event()  # the final SIGTERMs: exits are asked for now
        self.crash_sigs = collections.Counter()  # (exit status, wsgate's last error line)
        self.gate = Gate(args.clients + 1)  # the client threads and the injector
        # (RSS held, RSS, its parts, heap trims so far) per quiet reading of A
        self.memory_readings = []


class Gate:
    """A pause every client thread and the injector honour between two actions, so RSS can be
    read with no session open and no fault in progress: two such quiet readings compare like
    with like, where a reading under load is a few MiB up or down with whatever buffers are
    live at that instant (under ASan, A's RSS under load swung between 28 and 35 MiB)."""

    def __init__(self, n):
        self.cv = threading.Condition()
        self.n, self.parked, self.closed = n, 0, False

    def checkpoint(self, stop):
        with self.cv:
            if not self.closed:
                return
            self.parked += 1
            self.cv.notify_all()
            while self.closed and not stop.is_set():
                self.cv.wait(0.5)
            self.parked -= 1

    def close(self, timeout):
        """True once every thread is parked."""
        with self.cv:
            self.closed = True
            return self.cv.wait_for(lambda: self.parked == self.n, timeout)

    def open(self):
        with self.cv:
            self.closed = False
            self.cv.notify_all()


def connect(ctx, inst, path, timeout=5.0):
    """A WSClient, or None when refused visibly (counted) or the instance is down by our hand."""
    try:
        return H.WSClient(inst.port, path=path, timeout=timeout)
    except ConnectionRefusedError:
        t = time.monotonic()
        down = inst.expected_down  # as it was when refused (crashed() waits)
        if crashed(ctx, inst, t - 1):
            ctx.stats.add("lost_in_crash:connect")
        elif down or ctx.faults.overlaps((inst.name,), t - 1, time.monotonic()):
            ctx.stats.add("refused:tcp (instance down)")
        else:
            ctx.stats.fail("connect", f"{inst.name}: connection refused while running")
        return None
    except H.HarnessError as e:
        msg = str(e)
        if "upgrade refused" in msg:
            ctx.stats.add("refused:http " + (msg.split("'")[1][:24] if "'" in msg else "?"))
            return None
        return fault_or_fail(ctx, inst, ("instance",), time.monotonic() - timeout, "handshake", msg)
    except (OSError, TimeoutError) as e:
        return fault_or_fail(ctx, inst, ("instance",), time.monotonic() - timeout, "handshake",
                             repr(e))


def crashed(ctx, inst, t0, wait=2.5):
    """The instance crashed (a wsgate bug, counted once by the watchdog) since t0. A client
    can see the crash before the watchdog does (fatalx exits, but the sanitizer's leak check
    keeps the process, and so the watchdog's poll, busy for a second): a loss is judged only
    after waiting for the watchdog a little."""
    end = time.monotonic() + wait
    while True:
        if (not inst.alive() and not inst.expected_down) or \
                ctx.faults.overlaps(("crash:" + inst.name,), t0, time.monotonic()):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.25)


def fault_or_fail(ctx, inst, parts, t0, kind, detail):
    """A loss inside one of our fault windows (or on an instance we took down) is the fault's;
    one on an instance that crashed is the crash's (already a failure, not counted again)."""
    parts = tuple(parts) + (inst.name,)
    down = inst.expected_down  # as it was at the loss (crashed() waits)
    if crashed(ctx, inst, t0):
        ctx.stats.add(f"lost_in_crash:{kind}")
        return None
    if down or ctx.faults.overlaps(parts, t0, time.monotonic()):
        ctx.stats.add(f"lost_in_fault:{kind}")
        return None
    ctx.stats.fail(kind, f"{inst.name}: {detail}")
    return None


def closed_visibly(ctx, e, what, n):
    code = e.frame.close_code if getattr(e, "frame", None) is not None else None
    if code in VISIBLE_CODES:
        ctx.stats.add(f"refused:close {code}", n)
        return True
    ctx.stats.fail(what, f"good client closed with {code} {getattr(e.frame, 'close_reason', '')!r}")
    return False


def echo_good(ctx, inst, slow=False):
    c = connect(ctx, inst, "/echo")
    if c is None:
        return
    ctx.stats.add("conn:echo" + ("_slow" if slow else ""))
    n = random.randint(20, 80) if slow else random.randint(5, 40)
    t0 = time.monotonic()
    try:
        with c:
            if slow:
                # Pipelined, then read slowly, answering pings (the live-but-slow client).
                msgs = [os.urandom(random.randint(1, 64 * 1024)) for _ in range(n)]
                for m in msgs:
                    c.send_binary(m)
                    ctx.stats.add("msg:sent")
                for i, m in enumerate(msgs):
                    time.sleep(random.uniform(0.0, 0.15))
                    try:
                        op, got = c.recv_message(timeout=15)
                    except H.ServerClosed as e:
                        closed_visibly(ctx, e, "echo_slow", len(msgs) - i)
                        return
                    if got != m:
                        ctx.stats.fail("echo_slow", "echo differs from what was sent")
                        return
                    ctx.stats.add("msg:delivered")
            else:
                for i in range(n):
                    m = os.urandom(random.randint(0, 16 * 1024))
                    c.send_binary(m)
                    ctx.stats.add("msg:sent")
                    try:
                        op, got = c.recv_message(timeout=10)
                    except H.ServerClosed as e:
                        closed_visibly(ctx, e, "echo", n - i)
                        return
                    if got != m or op != H.OP_BINARY:
                        ctx.stats.fail("echo", "echo differs from what was sent")
                        return
                    ctx.stats.add("msg:delivered")
                    time.sleep(random.uniform(0, 0.05))
            c.send_close(1000)
    except (H.HarnessError, OSError, TimeoutError) as e:
        fault_or_fail(ctx, inst, (), t0, "echo_slow" if slow else "echo",
                      f"{type(e).__name__}: {e}")


def proxy_good(ctx, inst):
    c = connect(ctx, inst, "/proxy")
    if c is None:
        return
    ctx.stats.add("conn:proxy")
    t0 = time.monotonic()
    n = random.randint(3, 30)
    try:
        with c:
            for i in range(n):
                m = os.urandom(random.randint(0, 8192))
                c.send_binary(m)
                ctx.stats.add("msg:sent")
                try:
                    op, got = c.recv_message(timeout=10)
                except H.ServerClosed as e:
                    closed_visibly(ctx, e, "proxy", n - i)
                    return
                if got != m:
                    ctx.stats.fail("proxy", "echo through the backend differs")
                    return
                ctx.stats.add("msg:delivered")
                time.sleep(random.uniform(0, 0.05))
            c.send_close(1000)
    except (H.HarnessError, OSError, TimeoutError) as e:
        fault_or_fail(ctx, inst, ("backend",), t0, "proxy", f"{type(e).__name__}: {e}")


def pubsub_good(ctx, inst):
    """Subscribers and a publisher on one instance and room: each message reaches every
    well-behaved subscriber there (the publisher included: it subscribes to its own room), or
    the publisher is refused visibly."""
    room = f"r{random.randint(0, 5)}"
    subs = []
    t0 = time.monotonic()
    for _ in range(random.randint(1, 3)):
        c = connect(ctx, inst, f"/ps/{room}")
        if c is None:
            break
        subs.append(c)
    if not subs:
        return
    ctx.stats.add("conn:pubsub", len(subs))
    pub = subs[0]
    joined = time.monotonic() - t0  # the subscribers' handshakes took this long
    joined_first = 0.0              # first publish, seconds after the last upgrade
    tag = os.urandom(6).hex()
    n = random.randint(3, 20)
    sent = []
    refused = False
    t_up = time.monotonic()
    try:
        for i in range(n):
            if i == 0:
                joined_first = time.monotonic() - t_up
            m = f"{tag}:{i}".encode()
            try:
                pub.send_text(m)
            except OSError:
                break
            sent.append(m)
            ctx.stats.add("msg:sent")
            time.sleep(random.uniform(0, 0.05))
        # Each subscriber reads until it has them all (other sessions share rooms: skip theirs).
        for c in subs:
            want = set(sent)
            deadline = time.monotonic() + 10
            while want and time.monotonic() < deadline:
                try:
                    op, got = c.recv_message(timeout=max(0.1, deadline - time.monotonic()))
                except H.ServerClosed as e:
                    if c is pub:
                        refused = closed_visibly(ctx, e, "pubsub", len(want))
                        want = set()
                    else:
                        closed_visibly(ctx, e, "pubsub_sub", 0)
                        want = set()
                    break
                except TimeoutError:
                    break
                want.discard(got)
            got_n = len(sent) - len(want)
            ctx.stats.add("msg:delivered_sub", got_n)
            if want and not refused:
                lost = len(want)
                idx = sorted(int(m.split(b":")[1]) for m in want)
                if crashed(ctx, inst, t0):
                    ctx.stats.add("lost_in_crash:pubsub")
                elif inst.expected_down or \
                        ctx.faults.overlaps(("redis", inst.name), t0, time.monotonic()):
                    ctx.stats.add("msg:lost_in_redis_fault", lost)
                    ctx.stats.add("lost_in_fault:pubsub")
                elif idx == list(range(len(idx))) and joined_first < 0.5:
                    # The first messages, published right after the upgrade: the instance's
                    # SUBSCRIBE to Redis was not active yet (no ordering between its publish
                    # and subscribe links). Reported on its own, it is not a crash.
                    ctx.stats.fail("pubsub_join_race", f"{inst.name}: messages #{idx} of "
                                   f"{len(sent)} not received on {room} by subscriber "
                                   f"{subs.index(c)} (of {len(subs)}), published from "
                                   f"{joined_first:.3f}s after the upgrade")
                else:
                    ctx.stats.fail("pubsub", f"{inst.name}: {lost}/{len(sent)} messages not "
                                   f"received on {room} by subscriber {subs.index(c)} (of "
                                   f"{len(subs)}), no close; missing #{idx}; first publish "
                                   f"{joined:.3f}s after the first subscriber's connect")
        for c in subs:
            try:
                c.send_close(1000)
            except OSError:
                pass
    except (H.HarnessError, OSError) as e:
        fault_or_fail(ctx, inst, ("redis",), t0, "pubsub", f"{type(e).__name__}: {e}")
    finally:
        for c in subs:
            c.close()


def garbage_client(ctx, inst):
    """Misbehaves on purpose; only the gateway's survival is judged."""
    kind = random.choice(["http_garbage", "frame_garbage", "vanish_mid_frame", "unmasked",
                          "half_request", "rst"])
    ctx.stats.add("fault:client_" + kind)
    try:
        s = socket.create_connection(("127.0.0.1", inst.port), timeout=3)
    except OSError:
        return
    try:
        if kind == "http_garbage":
            s.sendall(os.urandom(random.randint(1, 3000)))
        elif kind == "half_request":
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: web")
            time.sleep(random.uniform(0, 1.5))
        else:
            s.close()
            c = H.WSClient(inst.port, path=random.choice(["/echo", "/ps/g", "/proxy"]), timeout=3)
            s = c.sock
            if kind == "frame_garbage":
                c.send_raw(os.urandom(random.randint(1, 2000)))
            elif kind == "vanish_mid_frame":
                fr = H.build_frame(H.OP_BINARY, os.urandom(random.randint(10, 100000)))
                c.send_raw(fr[:random.randint(1, len(fr) - 1)])
            elif kind == "unmasked":
                c.send_raw(H.build_frame(H.OP_TEXT, b"hello", mask=False))
            elif kind == "rst":
                c.send_raw(H.build_frame(H.OP_BINARY, os.urandom(5000))[:100])
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            # What the server answers (1002, 400, EOF) is right for garbage; read a little.
            try:
                s.settimeout(0.5)
                s.recv(4096)
            except OSError:
                pass
    except (OSError, H.HarnessError, TimeoutError):
        pass
    finally:
        s.close()


def proxybad_client(ctx, inst):
    """Good client, bad backend: refused visibly (HTTP 408/502/504 or a close code), never a
    dead gateway. Like many real clients it does not hang up at once after a refusal: it keeps
    the socket a while (so a late backend outcome meets a connection already answered).
    Messages are not counted as deliverable: the backend misbehaves."""
    key = H.new_key()
    req = (f"GET /proxybad HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
           f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    try:
        s = socket.create_connection(("127.0.0.1", inst.port), timeout=8)
    except OSError:
        return
    ctx.stats.add("conn:proxybad")
    try:
        s.sendall(req)
        resp, _ = H.read_http_response(s, time.monotonic() + 8)
        if resp.status == 101:
            s.sendall(H.build_frame(H.OP_BINARY, b"x" * 100))
        else:
            ctx.stats.add(f"refused:proxybad http {resp.status}")
        # keep the socket open, reading now and then
        end = time.monotonic() + random.uniform(0.5, 4.0)
        while time.monotonic() < end:
            s.settimeout(0.5)
            try:
                if not s.recv(65536):
                    time.sleep(max(0.0, end - time.monotonic()))
                    break
            except socket.timeout:
                pass
    except (OSError, H.HarnessError, TimeoutError):
        pass
    finally:
        s.close()


def client_loop(ctx, idx):
    rnd = random.Random(idx)
    kinds = [(echo_good, 30, "echo"), (pubsub_good, 25, "pubsub"), (proxy_good, 20, "proxy"),
             (garbage_client, 12, "garbage"), (proxybad_client, 8, "proxybad"),
             (lambda c, i: echo_good(c, i, slow=True), 5, "echo_slow")]
    kinds = [(fn, w) for fn, w, name in kinds if name not in ctx.args.skip]
    total = sum(w for _, w in kinds)
    while not ctx.stop.is_set():
        ctx.gate.checkpoint(ctx.stop)
        inst = rnd.choice(ctx.insts)
        r = rnd.uniform(0, total)
        for fn, w in kinds:
            r -= w
            if r <= 0:
                break
        try:
            fn(ctx, inst)
        except Exception:
            ctx.stats.fail("harness", traceback.format_exc(limit=3))
        time.sleep(rnd.uniform(0, 0.2))


# ---------------------------------------------------------------------------------------------
# fault injection


def injector(ctx, cfgs, backend_restart, bad_backend):
    """SIGHUP every 10 s (good, broken, good, ...), Redis and the Node backend killed and
    restarted, instance B drained and restarted once, in the middle of the run."""
    start = time.monotonic()
    end = start + ctx.args.minutes * 60
    hup = 0
    next_hup = start + 10
    next_redis = start + 15
    next_backend = start + 22
    drained = False
    while not ctx.stop.wait(0.2):
        paused = time.monotonic()
        ctx.gate.checkpoint(ctx.stop)
        # The time parked is not chaos time: the schedule moves by it.
        paused = time.monotonic() - paused
        start, end, next_hup = start + paused, end + paused, next_hup + paused
        next_redis, next_backend = next_redis + paused, next_backend + paused
        now = time.monotonic()
        if now >= next_hup:
            hup += 1
            broken = (hup % 2 == 0) and (1 + (hup // 2) % 2) or 0
            for inst in ctx.insts:
                with inst.lock:
                    if not inst.alive() or inst.expected_down:
                        continue
                    inst.write_config(cfgs[inst.name](broken))
                    inst.g.proc.send_signal(signal.SIGHUP)
            ctx.stats.add("fault:sighup_" + ("broken" if broken else "good"))
            next_hup = now + 10
        if now >= next_redis:
            ctx.faults.begin("redis")
            ctx.redis.kill()
            ctx.stats.add("fault:redis_kill")
            time.sleep(random.uniform(1.0, 3.0))
            try:
                ctx.redis.start()
            except H.HarnessError as e:
                ctx.stats.fail("harness", f"redis restart: {e}")
            ctx.faults.end("redis")
            next_redis = time.monotonic() + random.uniform(20, 30)
        if now >= next_backend:
            ctx.faults.begin("backend")
            backend_restart()
            ctx.stats.add("fault:backend_kill")
            ctx.faults.end("backend")
            next_backend = time.monotonic() + random.uniform(15, 25)
        if not drained and now >= start + (end - start) * 0.5:
            drained = True
            drain_and_restart(ctx, ctx.insts[1], cfgs)
    ctx.final.wait()


def drain_and_restart(ctx, inst, cfgs):
    with inst.lock:
        inst.expected_down = True
        ctx.faults.begin(inst.name)
        ctx.stats.add("fault:drain")
        inst.g.proc.send_signal(signal.SIGTERM)
        rc = inst.g.wait(20)
        inst.collect_stderr()
        if rc is None:
            ctx.stats.fail("drain", f"{inst.name} did not exit within 20 s of SIGTERM")
            inst.g.kill_quietly()
        elif rc != 0:
            ctx.stats.fail("drain", f"{inst.name} exited {rc} after SIGTERM")
        time.sleep(1.0)
        try:
            inst.start(cfgs[inst.name](0))
        except H.HarnessError as e:
            ctx.stats.fail("drain", f"{inst.name} did not restart: {e}")
        inst.expected_down = False
        ctx.faults.end(inst.name)


def watchdog(ctx):
    """An instance that exits without being told is a crash: recorded, stderr kept, restarted
    so the run goes on."""
    while not ctx.unwatch.wait(0.5):
        for inst in ctx.insts:
            with inst.lock:
                if inst.expected_down or inst.g is None or inst.g.running():
                    continue
                rc = inst.g.proc.returncode
                inst.g.wait(1)
                inst.collect_stderr()
                tail = "\n".join(inst.stderr_all[-1].splitlines()[-15:])
                errs = [ln.split(" ", 1)[-1] for ln in inst.stderr_all[-1].splitlines()
                        if " error " in ln or "Sanitizer" in ln or "runtime error" in ln]
                sig = errs[0] if errs else "(no error line)"
                sig = sig.split(":", 1)[-1].strip() if sig.startswith("error conn") else sig
                ctx.crash_sigs[(rc, sig[:120])] += 1
                ctx.stats.fail("crash", f"{inst.name} exited {rc} unasked; stderr tail:\n{tail}")
                ctx.stats.add("crashes")
                ctx.faults.begin("crash:" + inst.name, back=1.0)
                inst.expected_down = True
                try:
                    inst.start(ctx.cfgs[inst.name](0))
                except H.HarnessError as e:
                    ctx.stats.fail("crash", f"{inst.name} did not restart: {e}")
                inst.expected_down = False
                ctx.faults.end("crash:" + inst.name)
    ctx.final.wait()


# AddressSanitizer's fixed shadow ranges and its allocator's space on x86_64 (asan_mapping.h,
# asan_allocator.h): RSS split by them says whose pages a change in RSS is.
ASAN_SHADOW = ((0x00007fff8000, 0x00008fff7000), (0x02008fff7000, 0x10007fff8000))
ASAN_HEAP = (0x600000000000, 0x640000000000)


def rss_parts_kib(pid):
    """RSS of pid in KiB split by where the pages are: ASan's shadow, ASan's heap, file-backed
    (code, libraries), other anonymous (stacks, mmaps, glibc's heap)."""
    parts = collections.Counter()
    kind = None
    with open(f"/proc/{pid}/smaps", encoding="ascii", errors="replace") as f:
        for line in f:
            head = line.split(None, 5)
            if "-" in head[0] and not head[0].endswith(":"):
                lo = int(head[0].split("-")[0], 16)
                path = head[5].strip() if len(head) > 5 else ""
                if any(a <= lo < b for a, b in ASAN_SHADOW):
                    kind = "shadow"
                elif ASAN_HEAP[0] <= lo < ASAN_HEAP[1]:
                    kind = "asan_heap"
                elif path.startswith("/"):
                    kind = "files"
                else:
                    kind = "anon"
            elif line.startswith("Rss:"):
                parts[kind] += int(line.split()[1])
    return dict(parts)


def rss_held_kib(rss, parts, heap_kib):
    """RSS with AddressSanitizer's heap region counted as the bytes wsgate has in use in it.
    ASan's allocator keeps freed chunks in per-thread caches that __sanitizer_purge_allocator
    (wsgate's heap_trim in that build) does not drain: measured over six chaos runs (four quiet
    readings each), that region's resident pages swung between 4.8 and 7.6 MiB with 4.67 MiB
    in use all along, a swing as large as the 10 % bound on the whole RSS. Everything else wsgate can hold (the
    bytes in use, mmaps, stacks, ASan's shadow of what it ever touched) still counts; without
    ASan (no such region) this is RSS itself."""
    if "asan_heap" not in parts:
        return rss
    return rss - parts["asan_heap"] + heap_kib


def quiet_memory(ctx, inst):
    """(RSS held in KiB, heap in use in KiB, pid) of inst read with every client thread and the
    injector parked and no session open on it (see below for which of the readings); (0, 0, None) when
    it cannot be read so. The heap figure is wsgate_heap_in_use_bytes: allocated and not freed,
    without the allocator's free lists or (under ASan) the quarantine, which RSS includes. RSS
    held: rss_held_kib; the raw RSS and its parts are kept in ctx.memory_readings, printed."""
    if not ctx.stop.is_set() and not ctx.gate.close(90):
        ctx.gate.open()
        ctx.stats.fail("harness", "threads did not park within 90 s for a quiet memory reading")
        return 0, 0, None
    try:
        with inst.lock:
            if not inst.alive():
                return 0, 0, None
            pid = inst.g.proc.pid
        H.wait_until(lambda: inst.metrics()["wsgate_connections_open"] == 0, 20, interval=0.5,
                     what=f"{inst.name} wsgate_connections_open == 0 with every client parked")
        time.sleep(1)
        # The lowest of eight readings over 4 s, as the workers give free pages back
        # (heap_trim: a second after the last connection came or went); heap: the median.
        rows = []
        for _ in range(8):
            rss = H.vm_rss_kib(pid)
            parts = rss_parts_kib(pid)
            heap = int(inst.metrics()["wsgate_heap_in_use_bytes"]) // 1024
            rows.append((rss_held_kib(rss, parts, heap), rss, parts, heap))
            time.sleep(0.5)
        held, rss, parts, _ = min(rows, key=lambda r: r[0])
        trims = int(inst.metrics()["wsgate_worker_heap_trims_total"])
        ctx.memory_readings.append((held, rss, parts, trims))
        return held, sorted(r[3] for r in rows)[4], pid
    except (H.HarnessError, OSError, TimeoutError) as e:
        ctx.stats.fail("harness", f"quiet memory reading of {inst.name}: {e!r}")
        return 0, 0, None
    finally:
        ctx.gate.open()


RSS_VERDICT = ("RSS after the run within 10% of RSS after warm-up (A, both quiet; ASan's heap "
               "region as its bytes in use)")
HEAP_VERDICT = "heap in use after the run within 10% of after warm-up (A, both quiet)"


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=10, help="concurrent client threads")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--rss-readings", type=int, default=0,
                    help="quiet RSS readings of A between the mid-run one and the end, printed")
    ap.add_argument("--skip", type=lambda v: set(v.split(",")), default=set(),
                    help="client kinds left out, comma-separated (echo, pubsub, proxy, garbage, "
                    "proxybad, echo_slow): to tell one finding from the others")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    random.seed(seed)
    H.wsgate_bin()
    workdir = tempfile.mkdtemp(prefix="wsgate-chaos-")
    stats, faults = Stats(), Faults()
    print(f"chaos: {args.minutes} min, {args.clients} client threads, seed {seed}, "
          f"work dir {workdir}" + (f", left out: {','.join(sorted(args.skip))}"
                                   if args.skip else ""), flush=True)

    redis = H.RedisServer(os.path.join(workdir, "redis")).start()
    node = H.NodeWsBackend(quiet=True).start()
    node_port = node.port
    bad = H.RawBackend(serve=bad_backend_serve(stats)).start()
    ports = {n: (H.free_port(), H.free_port()) for n in ("A", "B")}
    insts = [Instance(n, workdir, ports[n], stats, faults) for n in ("A", "B")]
    cfgs = {i.name: (lambda broken, i=i: gateway_config(i.port, i.admin, redis.port, node_port,
                                                      bad.port, broken)) for i in insts}
    state = {"node": node}

    def backend_restart():
        state["node"].kill()
        time.sleep(random.uniform(0.5, 2.0))
        for _ in range(20):
            try:
                state["node"] = H.NodeWsBackend(port=node_port, quiet=True).start()
                return
            except H.HarnessError:
                time.sleep(0.2)
        stats.fail("harness", "node backend did not restart")

    ctx = Ctx(args, stats, faults, insts, redis, node)
    ctx.cfgs = cfgs
    threads = []
    figures = {}
    verdict = collections.OrderedDict()
    # Set at the end of the run; an exception before leaves them failed.
    verdict["gauges settle to live clients"] = False
    verdict[RSS_VERDICT] = False
    verdict[HEAP_VERDICT] = False
    try:
        for i in insts:
            i.start(cfgs[i.name](0))
        # warm-up: clients only, no injected faults, then RSS of A (the watchdog runs from
        # the start: a crash during warm-up is a crash too)
        wd = threading.Thread(target=watchdog, args=(ctx,), daemon=True)
        wd.start()
        threads.append(wd)
        workers = [threading.Thread(target=client_loop, args=(ctx, k), daemon=True)
                   for k in range(args.clients)]
        for t in workers:
            t.start()
        warm = min(30.0, args.minutes * 60 * 0.15)
        time.sleep(warm)
        figures["rss_warm_kib"], warm_pid = 0, None
        for _ in range(60):
            with insts[0].lock:
                if insts[0].alive() and not insts[0].expected_down:
                    try:
                        figures["rss_warm_kib"] = insts[0].rss_kib()
                        warm_pid = insts[0].g.proc.pid
                        break
                    except OSError:
                        pass
            time.sleep(0.5)
        inj = threading.Thread(target=injector, args=(ctx, cfgs, backend_restart, bad),
                               daemon=True)
        inj.start()
        threads.append(inj)
        # "After warm-up": the clients alone, then the faults too for 40 % of the chaos time
        # (every kind of fault has allocated what it allocates by then); read quiet, the time
        # parked not counted as chaos time. The end is read quiet too: like with like.
        chaos_s = args.minutes * 60 - warm
        time.sleep(chaos_s * 0.4)
        t = time.monotonic()
        figures["rss_mid_kib"], figures["heap_mid_kib"], mid_pid = quiet_memory(ctx, insts[0])
        figures["quiet_s"] = time.monotonic() - t
        # --rss-readings: more quiet readings in the rest of the run, printed (a trend).
        figures["rss_more"] = []
        for k in range(args.rss_readings):
            time.sleep(chaos_s * 0.6 / (args.rss_readings + 1))
            figures["rss_more"].append(quiet_memory(ctx, insts[0])[:2])
        time.sleep(chaos_s * 0.6 / (args.rss_readings + 1))
        ctx.stop.set()
        for t in workers:
            t.join(60)
        stuck = [t for t in workers if t.is_alive()]
        if stuck:
            stats.fail("harness", f"{len(stuck)} threads did not stop")
        # restore the good config everywhere and let the gateways settle
        for i in insts:
            if i.alive():
                i.write_config(cfgs[i.name](0))
                i.g.proc.send_signal(signal.SIGHUP)
        time.sleep(2)
        # live clients kept open through the settle check
        live = {}
        for i in insts:
            live[i.name] = []
            for _ in range(2):
                try:
                    live[i.name].append(H.WSClient(i.port, path="/echo", timeout=5))
                except Exception as e:  # noqa: BLE001
                    stats.fail("settle", f"{i.name}: a fresh client could not connect: {e!r}")
        settled = True
        for i in insts:
            want = len(live[i.name])
            try:
                H.wait_until(lambda: i.metrics()["wsgate_connections_open"] == want, 20,
                             interval=0.5, what=f"{i.name} wsgate_connections_open == {want}")
            except (H.HarnessError, OSError, TimeoutError) as e:
                settled = False
                try:
                    now = i.metrics()["wsgate_connections_open"]
                except Exception:  # noqa: BLE001
                    now = "?"
                stats.fail("settle", f"{i.name}: gauge {now} != {want} live clients ({e})")
            figures[f"open_{i.name}"] = want
        verdict["gauges settle to live clients"] = settled
        for cl in live.values():
            for c in cl:
                c.close()
        figures["rss_end_kib"], figures["heap_end_kib"], end_pid = quiet_memory(ctx, insts[0])
        same = end_pid is not None and end_pid == mid_pid == warm_pid
        rss_ok = same and figures["rss_end_kib"] <= figures["rss_mid_kib"] * 1.10
        heap_ok = same and figures["heap_end_kib"] <= figures["heap_mid_kib"] * 1.10
        verdict[RSS_VERDICT] = rss_ok
        verdict[HEAP_VERDICT] = heap_ok
        if not same:
            stats.fail("rss", "A is not the process measured after warm-up (it crashed and was "
                       "restarted) or could not be read quiet: memory not comparable")
        if same and not rss_ok:
            stats.fail("rss", f"A: RSS held {figures['rss_mid_kib']} KiB after warm-up, "
                       f"{figures['rss_end_kib']} KiB after the run (both quiet)")
        if same and not heap_ok:
            stats.fail("heap", f"A: heap in use {figures['heap_mid_kib']} KiB after warm-up, "
                       f"{figures['heap_end_kib']} KiB after the run (both quiet)")
    except Exception:  # noqa: BLE001  the figures below still print
        stats.fail("harness", traceback.format_exc(limit=5))
    finally:
        ctx.stop.set()
        ctx.unwatch.set()
        clean = True
        for i in insts:
            with i.lock:
                if i.g is not None and i.g.proc is not None and i.g.proc.poll() is None:
                    i.g.proc.send_signal(signal.SIGTERM)
                    rc = i.g.wait(30)
                    if rc is None:
                        i.g.kill_quietly()
                        stats.fail("exit", f"{i.name} did not exit on SIGTERM")
                        clean = False
                    elif rc != 0:
                        stats.fail("exit", f"{i.name} exited {rc} on SIGTERM")
                        clean = False
                    i.collect_stderr()
        state["node"].kill()
        node.kill()
        bad.stop()
        redis.kill()
        ctx.final.set()
        for t in threads:
            t.join(10)

    san = []
    for i in insts:
        for k, err in enumerate(i.stderr_all):
            found = H.sanitizer_findings(err)
            if found:
                san.append((i.name, k, found))
                idx = min(err.find(m) for m in found if m in err)
                stats.fail("sanitizer", f"{i.name} run {k}: {found}\n{err[max(0, idx - 200):idx + 1500]}")
            with open(os.path.join(workdir, f"{i.name}-run{k}.stderr"), "w") as f:
                f.write(err)
    c = stats.c
    verdict["no crash (exits only when told, status 0)"] = c["fail:crash"] == 0 and \
        c["fail:drain"] == 0 and clean
    verdict["no sanitizer report"] = not san
    lost_good = sum(v for k, v in c.items() if k.startswith("fail:") and k[5:] in
                    ("echo", "echo_slow", "proxy", "pubsub", "pubsub_sub", "pubsub_join_race",
                     "connect", "handshake", "proxybad"))
    verdict["every good message delivered or refused visibly"] = lost_good == 0
    verdict["harness ran clean"] = c["fail:harness"] == 0

    print("\n---- chaos figures ----")
    conns = {k[5:]: v for k, v in c.items() if k.startswith("conn:")}
    print(f"connections: {sum(conns.values())} {dict(sorted(conns.items()))}")
    print(f"messages: sent {c['msg:sent']}, echoed/proxied back {c['msg:delivered']}, "
          f"pubsub deliveries {c['msg:delivered_sub']}, lost in injected Redis faults "
          f"{c['msg:lost_in_redis_fault']}")
    refused = {k[8:]: v for k, v in c.items() if k.startswith("refused:")}
    print(f"refused visibly: {dict(sorted(refused.items()))}")
    inlost = {k[14:]: v for k, v in c.items() if k.startswith("lost_in_fault:")}
    print(f"sessions cut inside an injected fault window: {dict(sorted(inlost.items()))}")
    incrash = {k[14:]: v for k, v in c.items() if k.startswith("lost_in_crash:")}
    print(f"sessions cut by a wsgate crash (counted once, as the crash): "
          f"{dict(sorted(incrash.items()))}")
    faults_n = {k[6:]: v for k, v in c.items() if k.startswith("fault:")}
    print(f"faults injected: {sum(faults_n.values())} {dict(sorted(faults_n.items()))}")
    print(f"instance runs: " + ", ".join(f"{i.name}={i.runs}" for i in insts) +
          f"; crashes {c['crashes']}")
    for (rc, sig), n in sorted(ctx.crash_sigs.items(), key=lambda kv: -kv[1]):
        print(f"crash: {n} x exit status {rc}, first error: {sig}")
    print(f"RSS of A: under load after the clients' warm-up {figures.get('rss_warm_kib', 0)} "
          f"KiB; held (rss_held_kib), quiet: after warm-up {figures.get('rss_mid_kib', 0)} KiB "
          f"(threads parked {figures.get('quiet_s', 0):.1f} s), after the run "
          f"{figures.get('rss_end_kib', 0)} KiB")
    print(f"heap in use of A (wsgate_heap_in_use_bytes), quiet: after warm-up "
          f"{figures.get('heap_mid_kib', 0)} KiB, after the run {figures.get('heap_end_kib', 0)} "
          f"KiB" + (f"; (RSS held, heap) quiet readings between: {figures['rss_more']}"
                    if figures.get("rss_more") else ""))
    for held, rss, parts, trims in ctx.memory_readings:
        print(f"quiet reading of A: RSS held {held} KiB (RSS {rss} KiB: {parts}); heap trims "
              f"so far {trims}")
    if stats.failures:
        print("\n---- findings (up to 3 of each kind, then counts) ----")
        seen = collections.Counter()
        for kind, detail in stats.failures:
            seen[kind] += 1
            if seen[kind] <= 3:
                print(f"[{kind}] {detail}\n")
        print({k: v for k, v in c.items() if k.startswith("fail:")})
    print("\n---- verdict ----")
    for k, ok in verdict.items():
        print(f"{'PASS' if ok else 'FAIL'}: {k}")
    npass = sum(1 for ok in verdict.values() if ok)
    nfail = len(verdict) - npass
    print(f"chaos: {npass} passed, {nfail} failed")
    if args.keep or nfail:
        print(f"chaos: logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if nfail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
