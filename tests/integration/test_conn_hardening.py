"""test_conn_hardening.py - sequences a peer can drive against one connection (issue #10).
The handshake timer firing while a backend attempt is pending, for each outcome of that
attempt: the client gets exactly one answer, the attempt is cancelled, the gateway lives on.
Liveness by progress: a live client or backend that reads slowly is kept, a stopped one is
dropped in time. idle_timeout counts messages, not bytes."""

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from wsharness import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, NodeWsBackend,
                       HarnessError, RawBackend, WSClient, build_frame, free_port, http_request, parse_frame,
                       proxy_route, raw_upgrade, read_http_response, upgrade_request,
                       vm_rss_kib, wait_until, ws_accept)

HANDSHAKE_S = 1.0
# The backend answers this long after the client's 408: the attempt would still be pending.
BACKEND_DELAY_S = 1.6


def _rst(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


# What the backend does once the delay is over (the HTTP answers are written in serve()).
OUTCOMES = {
    "accept": "101",
    "refuse": _rst,
    "4xx": "403 Forbidden",
    "5xx": "503 Service Unavailable",
    "timeout": None,  # never answers: the route's connect_timeout ends the attempt
    "close": lambda s: s.shutdown(socket.SHUT_WR),
}


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_handshake_timer_while_backend_attempt_pending(gateway_factory, outcome):
    seen = {"eof_at": None}
    got_request = threading.Event()

    def serve(s):
        s.settimeout(10)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                return
            buf += data
        got_request.set()
        # Wait, watching for the gateway giving the attempt up (EOF) meanwhile.
        s.settimeout(0.05)
        until = time.monotonic() + BACKEND_DELAY_S
        while time.monotonic() < until:
            try:
                if s.recv(65536) == b"":
                    seen["eof_at"] = time.monotonic()
                    return
            except socket.timeout:
                pass
            except OSError:
                seen["eof_at"] = time.monotonic()
                return
        act = OUTCOMES[outcome]
        if act is None:
            time.sleep(3)
            return
        if isinstance(act, str):
            s.settimeout(5)
            key = [ln.split(":", 1)[1].strip() for ln in buf.decode("latin-1").split("\r\n")
                   if ln.lower().startswith("sec-websocket-key:")][0]
            if act == "101":
                s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                          ws_accept(key).encode() + b"\r\n\r\n")
            else:
                s.sendall(b"HTTP/1.1 " + act.encode() + b"\r\nContent-Length: 0\r\n\r\n")
            time.sleep(1.5)
            return
        act(s)
        time.sleep(1.0)

    b = RawBackend(serve).start()
    admin = free_port()
    try:
        g = gateway_factory(
            gateway={"handshake_timeout": "1s", "close_timeout": "5s",
                     "admin_listen": f"127.0.0.1:{admin}"},
            routes={"/app": proxy_route(b.url("/x"), connect_timeout="2s", retries="0")})
        with socket.create_connection(("127.0.0.1", g.port), timeout=5) as c:
            t0 = time.monotonic()
            c.sendall(upgrade_request(g.port, "/app").encode("latin-1"))
            assert got_request.wait(3), "the backend never got the upgrade request"
            resp, rest = read_http_response(c, time.monotonic() + 5)
            t408 = time.monotonic()
            assert resp.status == 408, resp
            assert HANDSHAKE_S - 0.2 <= t408 - t0 < HANDSHAKE_S + 1.0
            # The client keeps its end open past the backend's outcome: whatever the attempt
            # does later must not answer it a second time, nor stop the gateway.
            c.settimeout(0.1)
            extra = bytearray(rest)
            until = time.monotonic() + BACKEND_DELAY_S + 1.5
            eof = False
            while time.monotonic() < until:
                if eof:
                    time.sleep(0.1)  # the gateway's FIN came; our end stays open
                    continue
                try:
                    data = c.recv(65536)
                except socket.timeout:
                    continue
                eof = not data
                extra += data
            assert bytes(extra) == b"", f"a second answer after the 408: {bytes(extra)!r}"
            assert g.running(), g.stderr()
        assert g.healthz() == 200
        # The 408 cancelled the attempt: the backend saw its connection closed soon after.
        assert seen["eof_at"] is not None, "the pending backend attempt was not cancelled"
        assert seen["eof_at"] - t408 < 0.5
        assert "illegal transition" not in g.stderr()
        # Nothing was an internal error: the two answers never met.
        resp = http_request(admin, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert resp.status == 200
        assert "\nwsgate_internal_errors_total 0\n" in resp.body.decode(), resp.body[:200]
    finally:
        b.stop()


# ---- liveness by progress


class SlowReader:
    """A live client that reads slowly: a thread pipelines `count` binary messages of `size`
    bytes (and the pongs the reader asks for, between whole frames), while the caller's thread
    reads at about `rate` bytes/s and answers every ping as soon as it reads it."""

    def __init__(self, sock, count, size, rate, send=True):
        self.send = send  # False: the messages come from elsewhere (a publisher)
        self.sock = sock
        self.count = count
        self.size = size
        self.rate = rate
        self.pongs = []
        self.lock = threading.Lock()
        self.sent_all = threading.Event()
        self.t = threading.Thread(target=self._send, daemon=True)

    def _send(self):
        payload = bytes(range(256)) * (self.size // 256)
        frame = build_frame(OP_BINARY, payload)
        try:
            for _ in range(self.count if self.send else 0):
                self._send_pongs()
                self.sock.sendall(frame)
            self.sent_all.set()
            while not self.stop:
                self._send_pongs()
                time.sleep(0.02)
        except OSError:
            pass

    def _send_pongs(self):
        with self.lock:
            pongs, self.pongs = self.pongs, []
        for p in pongs:
            self.sock.sendall(build_frame(OP_PONG, p))

    def run(self, timeout):
        """Reads until every echo came back; returns (echoes, pings seen, eof)."""
        self.stop = False
        self.t.start()
        buf = bytearray()
        echoes = pings = 0
        got = msg_len = 0
        t0 = time.monotonic()
        # Blocking: a timeout on the socket would also end the sender's sendall.
        self.sock.settimeout(None)
        try:
            while echoes < self.count and time.monotonic() - t0 < timeout:
                # Keep to the rate: no more than rate * elapsed bytes read so far.
                ahead = got - self.rate * (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead / self.rate)
                if not select.select([self.sock], [], [], 0.5)[0]:
                    continue
                try:
                    data = self.sock.recv(16384)
                except ConnectionResetError:
                    return echoes, pings, True
                if not data:
                    return echoes, pings, True
                got += len(data)
                buf += data
                while True:
                    f, used = parse_frame(buf)
                    if f is None:
                        break
                    del buf[:used]
                    if f.opcode == OP_PING:
                        pings += 1
                        with self.lock:
                            self.pongs.append(f.payload)
                    elif f.opcode == OP_CLOSE:
                        return echoes, pings, True
                    else:
                        # A proxy may pass a message on as several frames.
                        msg_len += len(f.payload)
                        if f.fin:
                            assert msg_len == self.size, (msg_len, f)
                            echoes += 1
                            msg_len = 0
            return echoes, pings, False
        finally:
            self.stop = True


SLOW_HEARTBEAT = {"ping_interval": "1s", "pong_timeout": "3s"}
COUNT, SIZE, RATE = 200, 64 * 1024, 2 * 1000 * 1000


def _slow_reader_kept(g, path, rate=RATE):
    with WSClient(g.port, path=path, timeout=10) as c:
        r = SlowReader(c.sock, COUNT, SIZE, rate)
        echoes, pings, eof = r.run(timeout=30)
        assert not eof, f"a live slow reader was dropped after {echoes} echoes:\n{g.stderr()}"
        assert echoes == COUNT
        assert pings >= 2, "the reader was not pinged while it read"
    assert "no pong" not in g.stderr()


def test_slow_reading_live_client_kept_on_echo(gateway_factory):
    g = gateway_factory(heartbeat=SLOW_HEARTBEAT)
    _slow_reader_kept(g, "/echo")


def test_slow_reading_live_client_kept_on_proxy(gateway_factory):
    with NodeWsBackend() as b:
        g = gateway_factory(heartbeat=SLOW_HEARTBEAT, routes={"/app": proxy_route(b.url("/x"))})
        # Node's ws backend buffers what it is sent without bound, so the gateway keeps
        # reading this client: the ping waits only behind the client's output (1 MiB and the
        # kernel's buffers). 1 MB/s makes that wait longer than pong_timeout.
        _slow_reader_kept(g, "/app", rate=1000 * 1000)


def test_slow_reading_live_client_kept_on_pubsub(gateway_factory):
    routes = {"/pub": {"type": "pubsub", "subscribe": "sink", "publish": "flood"},
              "/sub": {"type": "pubsub", "subscribe": "flood", "max_queue": "64MiB"}}
    g = gateway_factory(heartbeat=SLOW_HEARTBEAT, routes=routes)
    with WSClient(g.port, path="/sub", timeout=10) as sub, \
            WSClient(g.port, path="/pub", timeout=30) as pub:
        r = SlowReader(sub.sock, COUNT, SIZE, 1000 * 1000, send=False)
        frame = build_frame(OP_BINARY, bytes(range(256)) * (SIZE // 256))

        def publish():
            try:
                for _ in range(COUNT):
                    pub.sock.sendall(frame)
            except OSError:
                pass

        threading.Thread(target=publish, daemon=True).start()
        echoes, pings, eof = r.run(timeout=40)
        assert not eof, f"a live slow subscriber was dropped after {echoes}:\n{g.stderr()}"
        assert echoes == COUNT
        assert pings >= 2
    # (The publisher, which answers no ping, may be dropped once it has sent everything.)


def test_slow_reading_live_backend_kept(gateway_factory):
    # The backend side: the client pipelines, the backend reads slowly and answers pings.
    state = {"frames": 0, "pings": 0}

    def serve(s):
        _, rest = raw_upgrade(s)
        buf = bytearray(rest)
        s.settimeout(10)
        t0 = time.monotonic()
        got = 0
        while state["frames"] < COUNT:
            ahead = got - 1000 * 1000 * (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead / (1000 * 1000))
            data = s.recv(16384)
            if not data:
                return
            got += len(data)
            buf += data
            while True:
                f, used = parse_frame(buf)
                if f is None:
                    break
                del buf[:used]
                if f.opcode == OP_PING:
                    state["pings"] += 1
                    s.sendall(build_frame(OP_PONG, f.payload, mask=False))
                elif f.opcode == OP_CLOSE:
                    return
                elif f.fin:
                    state["frames"] += 1
        s.sendall(build_frame(OP_TEXT, b"all here", mask=False))
        time.sleep(1)

    b = RawBackend(serve).start()
    try:
        g = gateway_factory(heartbeat=SLOW_HEARTBEAT, routes={"/app": proxy_route(b.url("/x"))})
        with WSClient(g.port, path="/app", timeout=30) as c:
            frame = build_frame(OP_BINARY, b"x" * SIZE)

            def send():
                try:
                    for _ in range(COUNT):
                        c.sock.sendall(frame)
                except OSError:
                    pass

            t = threading.Thread(target=send, daemon=True)
            t.start()
            assert c.recv_message(timeout=30) == (OP_TEXT, b"all here"), g.stderr()
            t.join(5)
        assert state["frames"] == COUNT
        assert state["pings"] >= 2
        assert "no pong" not in g.stderr()
    finally:
        b.stop()


STOPPED_CLIENT = r"""
import socket, sys, time, base64, os
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
# A backlog in flight, as a busy client has: 4 MiB of echoes it will never read.
payload = b"y" * 65536
frame = bytes([0x82, 0xFF]) + (65536).to_bytes(8, "big") + b"\0\0\0\0" + payload
s.setblocking(False)
for _ in range(64):
    try:
        s.send(frame)
    except BlockingIOError:
        break
print("ready", flush=True)
time.sleep(60)
"""


def test_stopped_client_dropped_in_time(gateway_factory):
    g = gateway_factory(gateway={"log_level": "info"},
                        heartbeat={"ping_interval": "1s", "pong_timeout": "2s"})
    p = subprocess.Popen([sys.executable, "-c", STOPPED_CLIENT, str(g.port)],
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"ready"
        os.kill(p.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            wait_until(lambda: "no pong within pong_timeout" in g.stderr(), 8,
                       what="the stopped client dropped")
        except HarnessError as e:
            # What the gateway said instead, and both sockets' queues (tx:rx, hex) as the kernel
            # has them (once in a fresh container: never dropped within 8 s).
            with open("/proc/net/tcp") as f:
                socks = [ln for ln in f if f":{g.port:04X} " in ln]
            raise AssertionError(f"{e}; gateway log:\n{g.stderr()[-3000:]}\n"
                                 f"/proc/net/tcp:\n{''.join(socks)}") from None
        elapsed = time.monotonic() - t0
        # ping_interval + pong_timeout, and the time the kernel took the last bytes.
        assert elapsed < 1 + 2 + 1.5, f"dropped after {elapsed:.1f}s"
    finally:
        p.kill()
        p.wait()


# ---- idle_timeout: a message, not a byte


def test_pongs_and_partial_frames_do_not_reset_idle(gateway_factory):
    # A message started and never finished: its first fragment, pongs between fragments, then
    # a continuation frame trickling in byte by byte. No whole message: closed as idle.
    g = gateway_factory(heartbeat={"ping_interval": "0", "idle_timeout": "1s"})
    with WSClient(g.port) as c:
        t0 = time.monotonic()
        c.send_frame(OP_TEXT, b"first part", fin=False)
        steps = [build_frame(OP_PONG, b"unsolicited")] * 3
        steps += [bytes([b]) for b in build_frame(OP_CONT, b"never finished")[:-1]]
        closed = None
        for chunk in steps:
            try:
                c.send_raw(chunk)
            except OSError:
                pass
            frames, eof = c.pump(0.2, auto_pong=False)
            if eof or any(f.opcode == OP_CLOSE for f in frames):
                closed = time.monotonic() - t0
                break
        assert closed is not None, "pongs and a partial message kept an idle client open"
        assert 0.8 <= closed < 2.5, closed
        closes = [f for f in c.received if f.opcode == OP_CLOSE]
        assert closes and closes[0].close_code == 1001, c.received


def test_messages_keep_idle_client_open(gateway_factory):
    g = gateway_factory(heartbeat={"ping_interval": "0", "idle_timeout": "1s"})
    with WSClient(g.port) as c:
        for i in range(8):
            c.send_frame(OP_TEXT, b"m%d" % i)
            assert c.recv_message() == (OP_TEXT, b"m%d" % i)
            time.sleep(0.3)
        assert c.is_open(0.05)


# ---- every buffer a peer can grow has a limit: the backend side too


def test_pinging_backend_that_never_reads_is_bounded(gateway_factory):
    # A backend that sends pings without pause and never reads: the gateway's pongs back up,
    # so it must stop reading that backend instead of queueing pongs without bound.
    stop = threading.Event()
    sent = {"bytes": 0}

    def serve(s):
        raw_upgrade(s)
        batch = build_frame(OP_PING, b"p" * 125, mask=False) * 512
        s.settimeout(0.5)
        while not stop.is_set():
            try:
                s.sendall(batch)
                sent["bytes"] += len(batch)
            except socket.timeout:
                continue  # the gateway stopped reading us: as it should
            except OSError:
                return

    b = RawBackend(serve).start()
    try:
        g = gateway_factory(routes={"/app": proxy_route(b.url("/x"))})
        with WSClient(g.port, path="/app") as c:
            time.sleep(0.3)
            base = vm_rss_kib(g.proc.pid)
            peak = base
            t_end = time.monotonic() + 10
            while time.monotonic() < t_end:
                peak = max(peak, vm_rss_kib(g.proc.pid))
                c.pump(0.1)
            grown = peak - base
            assert grown < 32 * 1024, f"VmRSS grew by {grown} KiB while a backend sent pings"
            assert sent["bytes"] > 0
            stop.set()
        assert g.running()
    finally:
        stop.set()
        b.stop()
