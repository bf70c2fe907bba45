"""test_proxy_health.py - no client can take a backend from the others: a backend is marked down
only after max_fails (default 3) consecutive connect/TLS/timeout failures, reset by a success;
a backend's 5xx answer to one client's upgrade goes to that client and counts as a failure only
with fail_on_5xx = yes."""

import re
import socket

from wsharness import (RawBackend, free_port, http_request, proxy_route, raw_upgrade,
                       upgrade_request, ws_accept)


def status(g, path="/app"):
    return http_request(g.port, upgrade_request(g.port, path)).status


def five_hundred_for_one_client(sock):
    """101 to every upgrade but the ones whose query asks for a failure: those get a 500."""
    sock.settimeout(10)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return
        buf += data
    first = buf.split(b"\r\n", 1)[0]
    if b"fail=1" in first:
        sock.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
        return
    key = re.search(rb"(?im)^Sec-WebSocket-Key:\s*(\S+)", buf).group(1).decode()
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + ws_accept(key).encode() +
                 b"\r\n\r\n")
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def test_one_clients_500_does_not_take_the_backend(gateway_factory):
    b = RawBackend(five_hundred_for_one_client).start()
    try:
        url = b.url("/x")
        g = gateway_factory(routes={"/app": proxy_route(url, fail_timeout="30s")})
        for _ in range(10):
            # The backend's answer about this request goes to this client.
            assert status(g, "/app?fail=1") == 500
        # Everyone else is still served by it.
        for _ in range(3):
            assert status(g, "/app") == 101
        assert f"backend {url} down" not in g.stderr(), g.stderr()
    finally:
        b.stop()


def test_fail_on_5xx_counts_them(gateway_factory):
    b = RawBackend(five_hundred_for_one_client).start()
    try:
        url = b.url("/x")
        g = gateway_factory(routes={"/app": proxy_route(url, fail_timeout="30s",
                                                        fail_on_5xx="yes", retries=0)})
        # Counted as failures: the third in a row marks it down, then 503 for everyone.
        for _ in range(3):
            assert status(g, "/app?fail=1") == 502
        assert status(g, "/app") == 503
        assert f"backend {url} down after 3 failure(s) in a row" in g.stderr(), g.stderr()
    finally:
        b.stop()


def test_max_fails_consecutive_refusals(gateway_factory):
    port = free_port()
    url = f"ws://127.0.0.1:{port}/x"
    g = gateway_factory(routes={"/app": proxy_route(url, fail_timeout="30s", retries=0)})
    # Two refused connects: counted, the backend is still tried (502, not 503).
    assert status(g) == 502
    assert status(g) == 502
    # A success in between resets the count.
    b = RawBackend(lambda s: raw_upgrade(s) and s.recv(1), port=port).start()
    try:
        assert status(g) == 101
    finally:
        # Wakes the accept() blocked in the backend's thread: the port refuses again.
        b.lsock.shutdown(socket.SHUT_RDWR)
        b.stop()
    assert status(g) == 502
    assert status(g) == 502
    assert f"backend {url} down" not in g.stderr(), g.stderr()
    # The third refusal in a row marks it down: refused at once for everyone.
    assert status(g) == 502
    assert status(g) == 503
    err = g.stderr()
    assert err.count(f"backend {url} down after 3 failure(s) in a row") == 1, err
