"""test_proxy_flood.py - backpressure through a proxy route, both ways: one side sends 200 MiB
as fast as it can while the other reads slowly; the gateway's resident memory (VmRSS) must
stay under RSS_BOUND the whole time, and every byte must arrive, in order."""

import os
import time

import pytest

from wsharness import (OP_BINARY, OP_CLOSE, RawBackend, WSClient, build_frame, close_payload,
                       parse_frame, proxy_route, raw_upgrade, RssPeak, wait_until)

MIB = 1024 * 1024
TOTAL = 200 * MIB
FRAME = 1 * MIB
# The bound asked of the gateway while 200 MiB cross it (a plain build peaks near 8 MiB). A
# sanitizer build carries shadow memory and keeps freed blocks in a quarantine (256 MiB by
# default, set to 16 MiB here): there the bound is on the growth over the idle gateway.
RSS_BOUND_KIB = 64 * 1024
SETTINGS = {"max_message_size": "32MiB", "close_timeout": "2s"}


@pytest.fixture(autouse=True)
def small_asan_quarantine(monkeypatch):
    opts = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", (opts + ":" if opts else "") + "quarantine_size_mb=16")


def sanitized(pid):
    with open(f"/proc/{pid}/maps", encoding="ascii", errors="replace") as f:
        return any(lib in f.read() for lib in ("libasan", "libubsan", "libtsan"))


class RssWatch(RssPeak):
    """RssPeak with the flood tests' bound."""

    def check(self):
        grown = self.peak - self.base
        if sanitized(self.pid):
            assert grown < RSS_BOUND_KIB, f"VmRSS grew by {grown} KiB (base {self.base})"
        else:
            assert self.peak < RSS_BOUND_KIB, f"VmRSS peaked at {self.peak} KiB"


def test_fast_client_slow_backend(gateway_factory):
    got = {"bytes": 0, "ok": False}
    payload = os.urandom(FRAME)

    def serve(s):
        # A reader that stalls 100 ms after every 16 MiB it takes.
        _, rest = raw_upgrade(s)
        buf = bytearray(rest)
        received = 0
        mark = 16 * MIB
        while received < TOTAL:
            f, used = parse_frame(buf)
            if f is not None:
                del buf[:used]
                assert f.masked and f.opcode in (OP_BINARY, 0)
                assert f.payload == payload[(received % FRAME):(received % FRAME) +
                                            len(f.payload)]
                received += len(f.payload)
                got["bytes"] = received
                continue
            if received >= mark:
                time.sleep(0.1)
                mark += 16 * MIB
            data = s.recv(1 << 18)
            if not data:
                return
            buf += data
        got["ok"] = True
        s.sendall(build_frame(OP_CLOSE, close_payload(1000), mask=False))
        time.sleep(0.5)

    b = RawBackend(serve).start()
    try:
        g = gateway_factory(gateway=SETTINGS, routes={"/up": proxy_route(b.url("/x"))})
        frame = build_frame(OP_BINARY, payload)
        with RssWatch(g.proc.pid) as w, WSClient(g.port, path="/up", timeout=30) as c:
            for _ in range(TOTAL // FRAME):
                c.send_raw(frame)
            wait_until(lambda: got["ok"], 60, what=f"backend got all (has {got['bytes']})")
            res = c.expect_close()
            assert res.code == 1000, res
        w.check()
        assert not b.errors, b.errors
    finally:
        b.stop()


def test_fast_backend_slow_client(gateway_factory):
    payload = os.urandom(FRAME)

    def serve(s):
        raw_upgrade(s)
        frame = build_frame(OP_BINARY, payload, mask=False)
        for _ in range(TOTAL // FRAME):
            s.sendall(frame)
        s.sendall(build_frame(OP_CLOSE, close_payload(1000, "all sent"), mask=False))
        s.settimeout(30)
        while s.recv(65536):
            pass

    b = RawBackend(serve).start()
    try:
        g = gateway_factory(gateway=SETTINGS, routes={"/down": proxy_route(b.url("/x"))})
        with RssWatch(g.proc.pid) as w, WSClient(g.port, path="/down", timeout=30) as c:
            received = 0
            mark = 16 * MIB
            while True:
                if received >= mark:
                    time.sleep(0.1)  # the slow reader
                    mark += 16 * MIB
                f = c.recv_frame(timeout=30)
                assert f is not None, f"EOF after {received} bytes"
                if f.opcode == OP_CLOSE:
                    assert (f.close_code, f.close_reason) == (1000, b"all sent")
                    break
                off = received % FRAME
                assert f.payload == payload[off:off + len(f.payload)]
                received += len(f.payload)
            assert received == TOTAL
        w.check()
        assert not b.errors, b.errors
    finally:
        b.stop()


@pytest.mark.parametrize("direction", ["up", "down"])
def test_echo_backend_both_ways_slow_client(gateway_factory, direction):
    """A TCP backend (websockify style) under the same flood: raw bytes both ways."""
    got = {"bytes": 0}

    def sink(s):
        while True:
            data = s.recv(1 << 18)
            if not data:
                return
            got["bytes"] += len(data)
            if got["bytes"] % (16 * MIB) < len(data):
                time.sleep(0.1)

    def source(s):
        chunk = os.urandom(FRAME)
        for _ in range(TOTAL // FRAME):
            s.sendall(chunk)
        s.shutdown(1)
        time.sleep(1)

    b = RawBackend(sink if direction == "up" else source).start()
    try:
        g = gateway_factory(gateway=SETTINGS, routes={"/tcp": proxy_route(b.url(scheme="tcp"))})
        with RssWatch(g.proc.pid) as w, WSClient(g.port, path="/tcp", timeout=30) as c:
            if direction == "up":
                frame = build_frame(OP_BINARY, os.urandom(FRAME))
                for _ in range(TOTAL // FRAME):
                    c.send_raw(frame)
                wait_until(lambda: got["bytes"] >= TOTAL, 60, what="sink got all")
            else:
                received, mark = 0, 16 * MIB
                while received < TOTAL:
                    if received >= mark:
                        time.sleep(0.1)
                        mark += 16 * MIB
                    op, data = c.recv_message(timeout=30)
                    assert op == OP_BINARY
                    received += len(data)
                assert received == TOTAL
        w.check()
    finally:
        b.stop()
