"""test_harness.py - the raw client and frame builder checked against an independent
implementation (Debian's python3-websockets echo server), so a gateway failure in the other
modules is the gateway's and not the harness's. Needs no wsgate binary."""

import asyncio
import hashlib
import base64
import struct
import threading

import pytest
import websockets

from wsharness import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, HarnessError,
                       WSClient, build_frame, check_server_frame, parse_frame, ws_accept)


class EchoServer:
    """websockets' own server in a thread: echoes every message, max_size 64 KiB."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _echo(self, ws, path=None):
        try:
            async for msg in ws:
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.stop_fut = self.loop.create_future()
            async with websockets.serve(self._echo, "127.0.0.1", 0, max_size=65536,
                                        compression=None, close_timeout=1,
                                        ping_interval=None) as server:
                self.port = server.sockets[0].getsockname()[1]
                self.ready.set()
                await self.stop_fut

        self.loop.run_until_complete(main())

    def start(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def stop(self):
        self.loop.call_soon_threadsafe(self.stop_fut.set_result, None)
        self.thread.join(10)


@pytest.fixture(scope="module")
def ref():
    s = EchoServer().start()
    yield s
    s.stop()


def test_accept_matches_rfc_example():
    # RFC 6455 section 1.3's worked example.
    assert ws_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    key = base64.b64encode(b"0123456789abcdef").decode()
    expect = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                           .encode()).digest()).decode()
    assert ws_accept(key) == expect


@pytest.mark.parametrize("n,bits,field", [(0, 7, 0), (125, 7, 125), (126, 16, 126),
                                          (65535, 16, 126), (65536, 64, 127)])
def test_builder_minimal_length_encodings(n, bits, field):
    f = build_frame(OP_BINARY, b"x" * n, mask=False)
    assert f[1] & 0x7F == field
    hdr = {7: 2, 16: 4, 64: 10}[bits]
    assert len(f) == hdr + n
    parsed, used = parse_frame(f)
    assert used == len(f) and parsed.payload == b"x" * n and parsed.fin and parsed.opcode == 2
    assert check_server_frame(parsed) == []


def test_builder_forced_encodings_and_bits():
    f = build_frame(OP_TEXT, b"abc", mask=True, mask_key=b"\x01\x02\x03\x04", length_bits=64,
                    rsv=5, fin=False)
    assert f[0] == 0x51  # FIN=0, RSV1+RSV3, text
    assert f[1] == 0x80 | 127
    assert struct.unpack("!Q", f[2:10])[0] == 3
    assert f[10:14] == b"\x01\x02\x03\x04"
    assert f[14:] == bytes([ord("a") ^ 1, ord("b") ^ 2, ord("c") ^ 3])
    p, _ = parse_frame(f)
    assert p.payload == b"abc" and p.masked and p.rsv == 5 and not p.fin
    assert any("minimal" in x for x in check_server_frame(p))
    assert any("masked" in x for x in check_server_frame(p))
    broken = build_frame(OP_TEXT, b"", mask=False, declared_length=1000)
    assert broken == b"\x81\x7e\x03\xe8"


@pytest.mark.parametrize("n", [0, 125, 126, 127, 128, 65535, 65536])
def test_reference_echo_lengths(ref, n):
    with WSClient(ref.port) as c:
        assert c.roundtrip(OP_BINARY, bytes(range(256)) * (n // 256) + bytes(n % 256)) == \
            (OP_BINARY, bytes(range(256)) * (n // 256) + bytes(n % 256))
        assert c.roundtrip(OP_TEXT, b"a" * n) == (OP_TEXT, b"a" * n)


def test_reference_one_byte_chunks_and_fragments(ref):
    with WSClient(ref.port) as c:
        c.send_frame(OP_TEXT, "κόσμε" * 30, chunk=1)
        assert c.recv_message() == (OP_TEXT, ("κόσμε" * 30).encode())
        c.send_raw(build_frame(OP_TEXT, b"Hel", fin=False) + build_frame(OP_PING, b"p")
                   + build_frame(OP_CONT, b"lo", fin=True))
        assert c.recv_control(OP_PONG).payload == b"p"
        assert c.recv_message() == (OP_TEXT, b"Hello")


def test_reference_close_echo(ref):
    with WSClient(ref.port) as c:
        c.send_close(3000, "bye")
        res = c.expect_close(reply=False)
        assert res.code == 3000 and res.tcp_closed


@pytest.mark.parametrize("frame,code", [
    (build_frame(OP_TEXT, b"x", rsv=4), 1002),
    (build_frame(OP_TEXT, b"x", mask=False), 1002),
    (build_frame(0x3, b"x"), 1002),
    (build_frame(OP_PING, b"x" * 126), 1002),
    (build_frame(OP_PING, b"x", fin=False), 1002),
    (build_frame(OP_CONT, b"x"), 1002),
    (build_frame(OP_CLOSE, b"\x03"), 1002),
    (build_frame(OP_TEXT, b"\xed\xa0\x80"), 1007),
    (build_frame(OP_BINARY, b"x" * 65537), 1009),
], ids=["rsv", "unmasked", "opcode3", "ping126", "fragping", "cont", "close1byte", "surrogate",
        "toolarge"])
def test_reference_rejects_broken_frames(ref, frame, code):
    with WSClient(ref.port) as c:
        c.send_raw(frame)
        res = c.expect_close()
        assert res.code == code and res.tcp_closed


def test_harness_rejects_masked_server_frame():
    p, _ = parse_frame(build_frame(OP_TEXT, b"hi", mask=True))
    assert check_server_frame(p)


def test_harness_detects_bad_101():
    from wsharness import HttpResponse, check_101
    r = HttpResponse.parse_head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                b"Connection: Upgrade\r\nSec-WebSocket-Accept: xxx\r\n\r\n")
    with pytest.raises(HarnessError):
        check_101(r, "dGhlIHNhbXBsZSBub25jZQ==")
