"""test_proxy_passthrough.py - the proxy relays a client's masked frames to a ws backend as
they came (no unmasking and remasking), and still refuses what the client may not send: bad
UTF-8 in text (1007), an oversized message (1009). The backend here checks nothing and records
every frame, so a check the proxy skipped would show as bytes reaching it."""

import struct
import threading

from wsharness import (OP_BINARY, OP_CLOSE, OP_TEXT, RawBackend, WSClient, build_frame,
                       close_payload, mask_bytes, proxy_route, raw_upgrade, wait_until)

OP_CONT = 0x0


class RecordingBackend:
    """A ws backend on a raw socket: answers the upgrade, records each frame it gets (raw
    bytes, and decoded), echoes data frames back unmasked with their opcode and FIN, answers a
    close. Checks nothing."""

    def __init__(self):
        self.frames = []  # (raw bytes, fin, opcode, unmasked payload)
        self.lock = threading.Lock()
        self.backend = RawBackend(self.serve).start()

    def url(self):
        return self.backend.url("/rec")

    def serve(self, sock):
        _, buf = raw_upgrade(sock)
        sock.settimeout(10)
        while True:
            while True:
                f = self.take(buf)
                if f is None:
                    break
                n, fin, op, payload = f
                with self.lock:
                    self.frames.append((bytes(buf[:n]), fin, op, payload))
                buf = buf[n:]
                if op == OP_CLOSE:
                    sock.sendall(build_frame(OP_CLOSE, payload[:2], mask=False))
                    return
                hdr = bytes([(0x80 if fin else 0) | op])
                hdr += bytes([len(payload)]) if len(payload) < 126 else (
                    bytes([126]) + struct.pack("!H", len(payload)))
                sock.sendall(hdr + payload)
            data = sock.recv(65536)
            if not data:
                return
            buf += data

    @staticmethod
    def take(buf):
        if len(buf) < 2:
            return None
        fin, op = buf[0] & 0x80 != 0, buf[0] & 0x0F
        n, i = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, i = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, i = struct.unpack("!Q", buf[2:10])[0], 10
        masked = buf[1] & 0x80 != 0
        key = bytes(buf[i:i + 4]) if masked else None
        i += 4 if masked else 0
        if len(buf) < i + n:
            return None
        payload = bytes(buf[i:i + n])
        return i + n, fin, op, mask_bytes(payload, key) if masked else payload

    def wait_close(self, count=1):
        """Frames arrive in order: once the gateway's close is in, so is all before it."""
        def closes():
            with self.lock:
                return sum(1 for f in self.frames if f[2] == OP_CLOSE)
        wait_until(lambda: closes() >= count, 10, what="the gateway's close at the backend")

    def data_frames(self):
        with self.lock:
            return [f for f in self.frames if f[2] != OP_CLOSE]

    def stop(self):
        self.backend.stop()


def gateway(gateway_factory, b, **gw):
    return gateway_factory(gateway=gw or None, routes={"/app": proxy_route(b.url())})


def test_masked_frames_reach_backend_byte_for_byte(gateway_factory):
    b = RecordingBackend()
    try:
        g = gateway(gateway_factory, b)
        with WSClient(g.port, path="/app") as c:
            sent = [build_frame(OP_BINARY, bytes(range(256)) * 3, mask_key=b"\x11\x22\x33\x44"),
                    build_frame(OP_TEXT, "héllo wörld", mask_key=b"\xa0\xb1\xc2\xd3"),
                    build_frame(OP_BINARY, b"", mask_key=b"\x01\x02\x03\x04")]
            for raw in sent:
                c.send_raw(raw)
            wait_until(lambda: len(b.data_frames()) == 3, 10, what="three frames at the backend")
            # The backend sees the client's own frames: same header, same key, same bytes.
            assert [f[0] for f in b.data_frames()] == sent
            # And the replies come back whole.
            assert c.recv_frame().payload == bytes(range(256)) * 3
            assert c.recv_frame().payload == "héllo wörld".encode()
            assert c.recv_frame().payload == b""
    finally:
        b.stop()


def test_split_frame_relayed_with_rotated_keys(gateway_factory):
    """A frame that arrives in pieces goes on piece by piece, each piece a frame masked with the
    client's key rotated to where the piece starts: the backend unmasks the original bytes."""
    b = RecordingBackend()
    try:
        g = gateway(gateway_factory, b)
        payload = bytes((i * 7 + 3) & 0xFF for i in range(999))
        with WSClient(g.port, path="/app") as c:
            raw = build_frame(OP_BINARY, payload, mask_key=b"\x5a\x13\xc7\x2e")
            c.send_raw(raw, chunk=37, delay=0.01)
            wait_until(lambda: b.data_frames() and b.data_frames()[-1][1], 10,
                       what="the final piece at the backend")
            frames = b.data_frames()
            assert len(frames) > 1, "expected the frame to arrive in pieces"
            assert frames[0][2] == OP_BINARY and all(f[2] == OP_CONT for f in frames[1:])
            assert all(not f[1] for f in frames[:-1]) and frames[-1][1]
            assert b"".join(f[3] for f in frames) == payload
    finally:
        b.stop()


def test_invalid_utf8_refused_1007_before_the_backend(gateway_factory):
    b = RecordingBackend()
    try:
        g = gateway(gateway_factory, b)
        with WSClient(g.port, path="/app") as c:
            c.send_raw(build_frame(OP_TEXT, b"valid text, then \xff\xfe bad"))
            res = c.expect_close()
            assert res.code == 1007, res
        # Nothing of the refused message reached the backend.
        b.wait_close()
        assert b.data_frames() == []
        # Split: the bad byte arrives in a later read than the valid start.
        with WSClient(g.port, path="/app") as c:
            c.send_raw(build_frame(OP_TEXT, b"a" * 40 + b"\xc3\x28" + b"b" * 40), chunk=41,
                       delay=0.05)
            res = c.expect_close()
            assert res.code == 1007, res
        b.wait_close(2)
        assert all(b"\xc3" not in f[3] and b"b" not in f[3] for f in b.data_frames())
    finally:
        b.stop()


def test_oversized_message_refused_1009_before_the_backend(gateway_factory):
    b = RecordingBackend()
    try:
        g = gateway(gateway_factory, b, max_message_size="1KiB")
        with WSClient(g.port, path="/app") as c:
            c.send_raw(build_frame(OP_BINARY, b"x" * 1000))
            assert c.recv_frame().payload == b"x" * 1000
            # 600 + 600 in two fragments: the second frame passes the limit.
            c.send_raw(build_frame(OP_BINARY, b"y" * 600, fin=False))
            c.send_raw(build_frame(OP_CONT, b"z" * 600))
            res = c.expect_close()
            assert res.code == 1009, res
        b.wait_close()
        got = b"".join(f[3] for f in b.data_frames())
        assert got == b"x" * 1000 + b"y" * 600, got[:40]
    finally:
        b.stop()


def test_close_code_passes_through(gateway_factory):
    b = RecordingBackend()
    try:
        g = gateway(gateway_factory, b)
        with WSClient(g.port, path="/app") as c:
            c.send_raw(build_frame(OP_CLOSE, close_payload(4001, b"bye")))
            res = c.expect_close(reply=False)
            assert res.code == 4001, res
        with b.lock:
            closes = [f for f in b.frames if f[2] == OP_CLOSE]
        assert closes and closes[0][3][:2] == struct.pack("!H", 4001)
    finally:
        b.stop()
