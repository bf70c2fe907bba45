"""test_clients_python.py - a real third-party client, Debian's python3-websockets (asyncio API,
10.x), against the gateway: text and binary round trips from 0 bytes to 16 MiB (max_message_size
raised to 32MiB), subprotocol choice, ping/pong and a clean 1000 close."""

import asyncio

import pytest
import websockets

from wsharness import ECHO_ROUTES

GATEWAY_SETTINGS = {"gateway": {"max_message_size": "32MiB"}, "routes": ECHO_ROUTES}

SIZES = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024]


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def text_of(n):
    # Multi-byte characters, cut to exactly n bytes on a character boundary.
    unit = "κόσμε-心跳-😀-"
    s = unit * (n // len(unit.encode()) + 1)
    b = s.encode()[:n]
    while True:
        try:
            return b.decode()
        except UnicodeDecodeError:
            b = b[:-1] + b"a"


def test_websockets_version_is_debians():
    major = int(websockets.__version__.split(".")[0])
    assert major >= 10, websockets.__version__


@pytest.mark.parametrize("n", SIZES)
def test_roundtrip_text_and_binary(gw, n):
    async def main():
        async with websockets.connect(gw.url("/echo"), max_size=None,
                                      ping_interval=None) as ws:
            t = text_of(n)
            assert len(t.encode()) == n
            await ws.send(t)
            got = await ws.recv()
            assert isinstance(got, str), type(got)
            assert got == t
            b = bytes(i % 253 for i in range(min(n, 65536))) * max(1, n // 65536)
            b = b[:n]
            await ws.send(b)
            got = await ws.recv()
            assert isinstance(got, bytes), type(got)
            assert got == b
            await ws.close(1000, "done")
            assert ws.close_code == 1000
    run(main())


def test_many_messages_in_flight(gw):
    async def main():
        async with websockets.connect(gw.url("/echo"), ping_interval=None) as ws:
            msgs = [f"m{i}" if i % 2 else f"b{i}".encode() for i in range(200)]
            for m in msgs:
                await ws.send(m)
            for m in msgs:
                assert await ws.recv() == m
    run(main())


def test_ping_pong(gw):
    async def main():
        async with websockets.connect(gw.url("/echo"), ping_interval=None) as ws:
            waiter = await ws.ping(b"py-ping")
            await asyncio.wait_for(waiter, 5)
    run(main())


def test_subprotocol_negotiation(gw):
    async def main():
        async with websockets.connect(gw.url("/chat"), subprotocols=["superchat", "chat"],
                                      ping_interval=None) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hi")
            assert await ws.recv() == "hi"
    run(main())


def test_close_code_seen_by_client(gw):
    async def main():
        ws = await websockets.connect(gw.url("/echo"), ping_interval=None)
        await ws.close(4000, "app close")
        assert ws.close_code == 4000
        await ws.wait_closed()
    run(main())


def test_compression_offer_declined(gw):
    # The client offers permessage-deflate by default; the gateway must not accept it.
    async def main():
        async with websockets.connect(gw.url("/echo"), ping_interval=None) as ws:
            assert ws.extensions == []
            await ws.send("x" * 1000)
            assert await ws.recv() == "x" * 1000
    run(main())
