"""test_conn_hardening.py - sequences a peer can drive against one connection that must never
stop the gateway (issue #10): the handshake timer firing while a backend attempt is pending,
for each outcome of that attempt. The client gets exactly one answer, the pending attempt is
cancelled (the backend sees its connection closed) and the gateway lives on."""

import socket
import threading
import time

import pytest

from wsharness import RawBackend, proxy_route, read_http_response, upgrade_request, ws_accept

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
    try:
        g = gateway_factory(
            gateway={"handshake_timeout": "1s", "close_timeout": "5s"},
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
    finally:
        b.stop()
