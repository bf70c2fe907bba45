"""test_drain.py - graceful drain on SIGTERM: /readyz turns 503 at once, no new connections,
client closes (1001) spread evenly over drain_window, exit 0 when they answered; a second
SIGTERM exits at once."""

import asyncio
import signal
import socket
import time
import urllib.error
import urllib.request

import websockets

from wsharness import Gateway, free_port, wait_until


def readyz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def drain_gateway(tmp_path, window):
    admin = free_port()
    g = Gateway(workdir=str(tmp_path),
                gateway={"admin_listen": f"127.0.0.1:{admin}", "drain_window": window,
                         "shutdown_timeout": "3s"})
    g.admin = admin
    return g


def test_closes_spread_over_drain_window(tmp_path):
    g = drain_gateway(tmp_path, "1200ms")
    g.start()
    n = 4

    async def run():
        conns = [await websockets.connect(g.url("/echo")) for _ in range(n)]
        for c in conns:
            await c.send("hi")
            assert await c.recv() == "hi"
        t0 = time.monotonic()
        g.send_signal(signal.SIGTERM)
        # readiness flips before any client is closed
        await asyncio.sleep(0.1)
        assert readyz(g.admin) == 503
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.1", g.port)) != 0, "still accepting after SIGTERM"

        async def closed_at(c):
            await c.wait_closed()
            return time.monotonic() - t0, c.close_code

        return await asyncio.gather(*(closed_at(c) for c in conns))

    results = asyncio.run(run())
    codes = {code for _, code in results}
    times = sorted(t for t, _ in results)
    assert codes == {1001}, results
    # slots at 0, 300, 600 and 900 ms of a 1200 ms window
    assert times[0] < 0.4, times
    assert times[-1] > 0.7, f"closes were not spread: {times}"
    assert times[-1] < 2.5, times
    assert g.wait(5) == 0
    g.check_clean_exit()


def test_second_sigterm_exits_at_once(tmp_path):
    g = drain_gateway(tmp_path, "30s")
    g.start()

    async def run():
        conns = [await websockets.connect(g.url("/echo")) for _ in range(3)]
        g.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        assert g.running(), "drain of 30 s ended early"
        t0 = time.monotonic()
        g.send_signal(signal.SIGTERM)
        rc = await asyncio.get_running_loop().run_in_executor(None, g.wait, 5)
        for c in conns:
            await c.close()
        return rc, time.monotonic() - t0

    rc, took = asyncio.run(run())
    assert rc == 0 and took < 2, (rc, took)
    g.check_clean_exit()
