"""test_proxy.py - proxy routes against real backends (the Node "ws" echo server, a
python3-websockets server, scripted raw servers, a TCP echo): messages of every size both ways,
close codes passed through, the upstream upgrade (path and query, forwarded headers,
subprotocols, strict 101 checks), failover, 502/503, passive and active health, the backend
hop's own heartbeat, tcp:// backends."""

import json
import os
import signal
import time

import pytest

from wsharness import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, HarnessError,
                       NodeWsBackend, PyWsBackend, RawBackend, WSClient, build_frame,
                       close_payload, free_port, http_request, parse_frame, proxy_route,
                       raw_upgrade, start_gateway, upgrade_request, wait_until)

SIZES = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024]
BIG = {"max_message_size": "32MiB", "close_timeout": "2s"}


@pytest.fixture(scope="module")
def node():
    b = NodeWsBackend().start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def pgw(tmp_path_factory, node):
    """One gateway for the module: /app to the Node echo backend, /q to the same backend with a
    query in its path, /sub offering subprotocols."""
    g = start_gateway(tmp_path_factory, name="proxy", gateway=BIG, routes={
        "/app": proxy_route(node.url("/socket")),
        "/q": proxy_route(node.url("/socket?x=1")),
    })
    yield g
    g.stop()


@pytest.fixture
def gwp(pgw):
    yield pgw
    assert pgw.running(), f"wsgate died during this test; stderr:\n{pgw.stderr()}"


def text_of(n):
    return (b"wsgate-\xce\xba\xcf\x8c\xcf\x83\xce\xbc\xce\xb5-" * (n // 17 + 1))[:n].decode(
        "utf-8", "ignore").encode("utf-8").ljust(n, b"a")


def binary_of(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


# ---- relaying ----


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_echo_sizes(gwp, opcode, n):
    payload = text_of(n) if opcode == OP_TEXT else binary_of(n)
    assert len(payload) == n
    with WSClient(gwp.port, path="/app") as c:
        c.send_frame(opcode, payload)
        got = c.recv_message(timeout=60)
        assert got[0] == opcode
        assert len(got[1]) == n and got[1] == payload


def test_order_and_types_kept(gwp):
    msgs = [(OP_TEXT if i % 3 else OP_BINARY, f"m{i}".encode() * (i + 1)) for i in range(50)]
    with WSClient(gwp.port, path="/app") as c:
        c.send_raw(b"".join(build_frame(op, p) for op, p in msgs))
        for op, p in msgs:
            assert c.recv_message() == (op, p)


def test_fragmented_client_message_reaches_backend_whole(gwp):
    parts = [b"x" * 300, b"y" * 70000, b"", b"z"]
    frames = [build_frame(OP_TEXT if i == 0 else 0, p, fin=(i == len(parts) - 1))
              for i, p in enumerate(parts)]
    with WSClient(gwp.port, path="/app") as c:
        c.send_raw(b"".join(frames))
        assert c.recv_message() == (OP_TEXT, b"".join(parts))


def test_client_ping_answered_by_gateway(gwp):
    with WSClient(gwp.port, path="/app") as c:
        c.send_ping(b"hop")
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"hop")


# ---- closing ----


def test_backend_close_code_reaches_client(gwp):
    with WSClient(gwp.port, path="/app") as c:
        c.send_text("please-close")
        res = c.expect_close()
        assert (res.code, res.reason) == (4000, b"bye"), res
        assert res.tcp_closed


def test_client_close_code_reaches_backend(gwp, node):
    tag = f"id={os.getpid()}-{time.monotonic_ns()}"
    with WSClient(gwp.port, path=f"/app?{tag}") as c:
        assert c.roundtrip(OP_TEXT, b"hi") == (OP_TEXT, b"hi")
        c.send_close(4000, "bye")
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 4000, f
        assert c.wait_eof()
    ev = wait_until(lambda: next((e for e in node.events if "close" in e and
                                  e["url"].endswith(tag)), None), 5, what="backend close")
    assert (ev["close"], ev["reason"]) == (4000, "bye"), ev


def test_client_empty_close_reaches_backend_as_1005(gwp, node):
    tag = f"id=empty-{time.monotonic_ns()}"
    with WSClient(gwp.port, path=f"/app?{tag}") as c:
        c.send_close()
        assert c.recv_frame().opcode == OP_CLOSE
    ev = wait_until(lambda: next((e for e in node.events if "close" in e and
                                  e["url"].endswith(tag)), None), 5, what="backend close")
    assert ev["close"] == 1005, ev


def test_client_vanishes_backend_gets_1001(gwp, node):
    tag = f"id=vanish-{time.monotonic_ns()}"
    c = WSClient(gwp.port, path=f"/app?{tag}")
    assert c.roundtrip(OP_TEXT, b"x") == (OP_TEXT, b"x")
    c.close()
    ev = wait_until(lambda: next((e for e in node.events if "close" in e and
                                  e["url"].endswith(tag)), None), 5, what="backend close")
    assert (ev["close"], ev["reason"]) == (1001, "client gone"), ev


def test_backend_vanishes_client_gets_1011(gwp):
    with WSClient(gwp.port, path="/app") as c:
        c.send_text("please-vanish")
        res = c.expect_close()
        assert res.code == 1011, res
        assert res.tcp_closed


# ---- the upstream request ----


def test_path_query_and_headers_forwarded(gwp):
    hdrs = [("Origin", "https://app.example"), ("Cookie", "sid=42; theme=dark"),
            ("Authorization", "Bearer abc.def"), ("X-Forwarded-For", "10.9.8.7"),
            ("User-Agent", "wsgate-test")]
    with WSClient(gwp.port, path="/app?q=1&r=two", headers=hdrs) as c:
        op, data = c.roundtrip(OP_TEXT, b"headers?")
    info = json.loads(data)
    h = info["headers"]
    assert info["url"] == "/socket?q=1&r=two"
    assert h["origin"] == "https://app.example"
    assert h["cookie"] == "sid=42; theme=dark"
    assert h["authorization"] == "Bearer abc.def"
    # No trusted_proxies: the client's own X-Forwarded-For is not believed (issue 17).
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-real-ip"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "ws"
    assert h["forwarded"] == "for=127.0.0.1;proto=ws"
    assert h["host"].startswith("127.0.0.1:")
    # wsgate's own key, not the client's: each hop has its own handshake.
    assert h["sec-websocket-key"] != c.key
    assert "user-agent" not in h


def test_backend_query_joined_with_client_query(gwp):
    with WSClient(gwp.port, path="/q?q=1") as c:
        info = json.loads(c.roundtrip(OP_TEXT, b"headers?")[1])
    assert info["url"] == "/socket?x=1&q=1"


def test_forward_headers_off(gateway_factory, node):
    g = gateway_factory(routes={"/app": proxy_route(node.url("/s"), forward_headers="no")})
    with WSClient(g.port, path="/app", headers=[("Origin", "https://o")]) as c:
        h = json.loads(c.roundtrip(OP_TEXT, b"headers?")[1])["headers"]
    assert h["origin"] == "https://o"
    assert not any(k in h for k in ("x-forwarded-for", "x-real-ip", "forwarded",
                                    "x-forwarded-proto"))


def test_subprotocol_chosen_by_backend(gwp):
    with WSClient(gwp.port, path="/app", protocols=["chat", "superchat"]) as c:
        assert c.response.header("Sec-WebSocket-Protocol") == "chat"
        info = json.loads(c.roundtrip(OP_TEXT, b"headers?")[1])
        assert info["headers"]["sec-websocket-protocol"] == "chat, superchat"
        assert info["protocol"] == "chat"


def test_no_subprotocol_when_backend_chooses_none(gateway_factory):
    with NodeWsBackend(protocol="none") as b:
        g = gateway_factory(routes={"/app": proxy_route(b.url())})
        with WSClient(g.port, path="/app", protocols=["chat"]) as c:
            assert c.response.header("Sec-WebSocket-Protocol") is None
            assert c.roundtrip(OP_TEXT, b"a") == (OP_TEXT, b"a")


def test_subprotocol_not_offered_is_502(gateway_factory):
    # The backend picks a protocol the client never offered: the client must not get it.
    with NodeWsBackend(protocol="mqtt") as b:
        g = gateway_factory(routes={"/app": proxy_route(b.url(), retries=0)})
        resp = http_request(g.port, upgrade_request(g.port, "/app",
                            extra=[("Sec-WebSocket-Protocol", "chat")]))
        assert resp.status == 502, resp
        assert resp.closed


def test_python_websockets_backend(gateway_factory):
    async def handler(ws):
        async for msg in ws:
            if msg == "close-please":
                await ws.close(4321, "python says bye")
                return
            await ws.send(msg)

    with PyWsBackend(handler, subprotocols=["v2.proto"]) as b:
        g = gateway_factory(gateway=BIG, routes={"/py": proxy_route(b.url("/py"))})
        with WSClient(g.port, path="/py?a=b", protocols=["v1.proto", "v2.proto"]) as c:
            assert c.response.header("Sec-WebSocket-Protocol") == "v2.proto"
            for n in (0, 126, 65536, 4 * 1024 * 1024):
                assert c.roundtrip(OP_BINARY, binary_of(n), timeout=30) == (OP_BINARY,
                                                                           binary_of(n))
            assert c.roundtrip(OP_TEXT, "κόσμε".encode()) == (OP_TEXT, "κόσμε".encode())
            c.send_text("close-please")
            res = c.expect_close()
            assert (res.code, res.reason) == (4321, b"python says bye"), res
        assert b.requests[0][0] == "/py?a=b"


# ---- refusals, failover and health ----


def refused_port():
    """A loopback port with nothing listening."""
    return free_port()


def test_dead_backend_502_then_503(gateway_factory):
    url = f"ws://127.0.0.1:{refused_port()}/socket"
    g = gateway_factory(routes={"/app": proxy_route(url, fail_timeout="30s", max_fails=1)})
    resp = http_request(g.port, upgrade_request(g.port, "/app"))
    assert resp.status == 502, resp
    assert resp.closed
    # Now marked down (passive health): refused at once, without trying.
    resp = http_request(g.port, upgrade_request(g.port, "/app"))
    assert resp.status == 503, resp
    err = wait_until(lambda: f"backend {url} down" in g.stderr() and g.stderr(), 5,
                     what="down logged")
    assert err.count(f"backend {url} down") == 1, err
    assert "retry after 30s" in err


def test_failover_to_live_backend(gateway_factory, node):
    dead = f"ws://127.0.0.1:{refused_port()}/socket"
    g = gateway_factory(routes={"/app": proxy_route(dead, node.url("/socket"), retries=1,
                                                    fail_timeout="30s")})
    for i in range(6):
        with WSClient(g.port, path="/app") as c:
            assert c.roundtrip(OP_TEXT, f"hello {i}".encode()) == (OP_TEXT,
                                                                   f"hello {i}".encode())
    assert g.stderr().count(f"backend {dead} down") == 1, g.stderr()


def test_retries_zero_gives_up_after_one(gateway_factory, node):
    dead = f"ws://127.0.0.1:{refused_port()}/socket"
    g = gateway_factory(routes={"/app": proxy_route(dead, node.url("/socket"), retries=0,
                                                    fail_timeout="30s")})
    # Round robin starts with the dead one: no further backend may be tried.
    assert http_request(g.port, upgrade_request(g.port, "/app")).status == 502
    # The dead one is now down: the live one serves.
    with WSClient(g.port, path="/app") as c:
        assert c.roundtrip(OP_TEXT, b"x") == (OP_TEXT, b"x")


def test_all_backends_down_503(gateway_factory):
    urls = [f"ws://127.0.0.1:{refused_port()}/s", f"ws://127.0.0.1:{refused_port()}/s"]
    g = gateway_factory(routes={"/app": proxy_route(*urls, retries=2, fail_timeout="30s",
                                                    max_fails=1)})
    assert http_request(g.port, upgrade_request(g.port, "/app")).status == 502
    for _ in range(3):
        resp = http_request(g.port, upgrade_request(g.port, "/app"))
        assert resp.status == 503, resp
        assert resp.closed
    for u in urls:
        assert g.stderr().count(f"backend {u} down") == 1


def test_fail_timeout_expires(gateway_factory):
    port = refused_port()
    url = f"ws://127.0.0.1:{port}/socket"
    g = gateway_factory(routes={"/app": proxy_route(url, fail_timeout="500ms", max_fails=1)})
    assert http_request(g.port, upgrade_request(g.port, "/app")).status == 502
    assert http_request(g.port, upgrade_request(g.port, "/app")).status == 503
    with NodeWsBackend(port=port):
        time.sleep(0.6)
        with WSClient(g.port, path="/app") as c:
            assert c.roundtrip(OP_TEXT, b"back") == (OP_TEXT, b"back")
    assert f"backend {url} up" in g.stderr()


def scripted(serve):
    return RawBackend(serve).start()


@pytest.mark.parametrize("answer,status", [
    ("HTTP/1.1 500 Internal Server Error", 500),
    ("HTTP/1.1 200 OK", 502),
    ("HTTP/1.1 403 Forbidden", 403),
    ("HTTP/1.1 404 Not Found", 404),
], ids=["500", "200", "403", "404"])
def test_backend_refuses_upgrade(gateway_factory, answer, status):
    b = scripted(lambda s: raw_upgrade(s, status_line=answer) and s.recv(1))
    try:
        g = gateway_factory(routes={"/app": proxy_route(b.url("/x"), fail_timeout="30s",
                                                        max_fails=1)})
        resp = http_request(g.port, upgrade_request(g.port, "/app"))
        assert resp.status == status, resp
        # A 4xx or 5xx is the application's answer about this client (fail_on_5xx = no):
        # the backend stays up. A broken answer (200 to an upgrade) is a failure.
        down = f"backend {b.url('/x')} down" in g.stderr()
        assert down == (status == 502), g.stderr()
    finally:
        b.stop()


@pytest.mark.parametrize("extra,accept", [
    (b"", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    (b"Sec-WebSocket-Extensions: permessage-deflate\r\n", None),
    (b"Sec-WebSocket-Protocol: chat\r\n", None),
], ids=["bad-accept", "extension", "protocol-not-offered"])
def test_bad_101_is_502(gateway_factory, extra, accept):
    b = scripted(lambda s: raw_upgrade(s, extra=extra, accept=accept) and s.recv(1))
    try:
        g = gateway_factory(routes={"/app": proxy_route(b.url("/x"))})
        resp = http_request(g.port, upgrade_request(g.port, "/app"))
        assert resp.status == 502, resp
        assert "bad upgrade response" in g.stderr()
    finally:
        b.stop()


def test_connect_timeout_covers_the_upgrade(gateway_factory):
    # Accepts TCP, reads the request and never answers.
    b = scripted(lambda s: (s.recv(65536), time.sleep(5)))
    try:
        g = gateway_factory(routes={"/app": proxy_route(b.url("/x"), connect_timeout="400ms")})
        t0 = time.monotonic()
        resp = http_request(g.port, upgrade_request(g.port, "/app"))
        assert resp.status == 502, resp
        assert 0.35 <= time.monotonic() - t0 < 3
        assert "timed out after 400 ms while upgrading" in g.stderr()
    finally:
        b.stop()


def test_client_leaves_during_backend_upgrade(gateway_factory):
    b = scripted(lambda s: (s.recv(65536), time.sleep(2)))
    try:
        g = gateway_factory(routes={"/app": proxy_route(b.url("/x"), connect_timeout="5s")})
        c = WSClient(g.port, path="/app", handshake=False)
        c.send_raw(c.request_bytes())
        time.sleep(0.2)
        c.close()
        time.sleep(0.2)
        assert g.running()
        assert g.healthz() == 200
    finally:
        b.stop()


def test_ip_hash_is_stable(gateway_factory):
    with NodeWsBackend() as a, NodeWsBackend() as b:
        g = gateway_factory(routes={"/app": proxy_route(a.url("/a"), b.url("/b"),
                                                        balance="ip_hash")})
        urls = set()
        for _ in range(6):
            with WSClient(g.port, path="/app") as c:
                urls.add(json.loads(c.roundtrip(OP_TEXT, b"headers?")[1])["url"])
        assert len(urls) == 1, urls


def test_round_robin_spreads(gateway_factory):
    with NodeWsBackend() as a, NodeWsBackend() as b:
        g = gateway_factory(routes={"/app": proxy_route(a.url("/a"), b.url("/b"))})
        urls = []
        for _ in range(4):
            with WSClient(g.port, path="/app") as c:
                urls.append(json.loads(c.roundtrip(OP_TEXT, b"headers?")[1])["url"])
        assert sorted(urls) == ["/a", "/a", "/b", "/b"], urls


def test_least_conn_prefers_idle_backend(gateway_factory):
    with NodeWsBackend() as a, NodeWsBackend() as b:
        g = gateway_factory(routes={"/app": proxy_route(a.url("/a"), b.url("/b"),
                                                        balance="least_conn")})
        held = [WSClient(g.port, path="/app")]
        first = json.loads(held[0].roundtrip(OP_TEXT, b"headers?")[1])["url"]
        # While the first stays open, every new one goes to the other backend.
        for _ in range(3):
            with WSClient(g.port, path="/app") as c:
                url = json.loads(c.roundtrip(OP_TEXT, b"headers?")[1])["url"]
                assert url != first
            time.sleep(0.05)  # the closed one leaves the count
        held[0].close()


def test_health_check_marks_restarted_backend_up(gateway_factory):
    port = free_port()
    url = f"ws://127.0.0.1:{port}/socket"
    b = NodeWsBackend(port=port).start()
    g = gateway_factory(routes={"/app": proxy_route(url, health_check="300ms",
                                                    fail_timeout="60s")})
    try:
        with WSClient(g.port, path="/app") as c:
            assert c.roundtrip(OP_TEXT, b"1") == (OP_TEXT, b"1")
        b.kill()
        wait_until(lambda: f"backend {url} down" in g.stderr(), 5, what="probe marks down")
        assert http_request(g.port, upgrade_request(g.port, "/app")).status == 503
        b = NodeWsBackend(port=port).start()
        # Well before fail_timeout (60s): only the probe can have brought it back.
        wait_until(lambda: f"backend {url} up" in g.stderr(), 5, what="probe marks up")
        with WSClient(g.port, path="/app") as c:
            assert c.roundtrip(OP_TEXT, b"2") == (OP_TEXT, b"2")
        # Probes upgrade and close with 1000 each time.
        assert any(e.get("close") == 1000 and e.get("reason") == "health check"
                   for e in b.events), b.events
    finally:
        b.stop()


def test_backend_host_name_resolved(gateway_factory, node):
    g = gateway_factory(routes={"/app": proxy_route(f"ws://localhost:{node.port}/n")})
    with WSClient(g.port, path="/app") as c:
        assert c.roundtrip(OP_TEXT, b"named") == (OP_TEXT, b"named")


# ---- the backend hop's own heartbeat and frames ----


def backend_frames(sock, buf, want):
    """Reads masked frames from the gateway until want(frame) is true; returns that frame."""
    while True:
        f, used = parse_frame(buf)
        if f is not None:
            del buf[:used]
            assert f.masked, f"frame to a backend must be masked: {f!r}"
            if want(f):
                return f
            continue
        data = sock.recv(65536)
        if not data:
            raise HarnessError("gateway closed the backend connection")
        buf += data


def test_backend_ping_answered_and_gateway_pings_backend(gateway_factory):
    seen = {}

    def serve(s):
        _, rest = raw_upgrade(s)
        buf = bytearray(rest)
        s.sendall(build_frame(OP_PING, b"from-backend", mask=False))
        seen["pong"] = backend_frames(s, buf, lambda f: f.opcode == OP_PONG)
        ping = backend_frames(s, buf, lambda f: f.opcode == OP_PING)
        seen["ping"] = ping
        s.sendall(build_frame(OP_PONG, ping.payload, mask=False))
        s.sendall(build_frame(OP_TEXT, b"still here", mask=False))
        backend_frames(s, buf, lambda f: f.opcode == OP_CLOSE)

    b = scripted(serve)
    try:
        g = gateway_factory(heartbeat={"ping_interval": "300ms", "pong_timeout": "2s"},
                            routes={"/app": proxy_route(b.url("/x"))})
        with WSClient(g.port, path="/app") as c:
            assert c.recv_message(timeout=5) == (OP_TEXT, b"still here")
        assert seen["pong"].payload == b"from-backend"
        assert len(seen["ping"].payload) == 8
    finally:
        b.stop()


def test_backend_without_pongs_dropped_client_gets_1011(gateway_factory):
    def serve(s):
        raw_upgrade(s)
        time.sleep(5)  # reads nothing, answers nothing

    b = scripted(serve)
    try:
        g = gateway_factory(heartbeat={"ping_interval": "200ms", "pong_timeout": "400ms"},
                            routes={"/app": proxy_route(b.url("/x"))})
        with WSClient(g.port, path="/app") as c:
            res = c.expect_close(timeout=5, auto_pong=True)
            assert res.code == 1011, res
        assert "no pong" in g.stderr()
    finally:
        b.stop()


def test_masked_frame_from_backend_fails(gateway_factory):
    def serve(s):
        raw_upgrade(s)
        s.sendall(build_frame(OP_TEXT, b"masked!", mask=True))
        time.sleep(1)

    b = scripted(serve)
    try:
        g = gateway_factory(routes={"/app": proxy_route(b.url("/x"))})
        with WSClient(g.port, path="/app") as c:
            res = c.expect_close()
            assert res.code == 1011, res
            assert res.data_frames_before() == []
    finally:
        b.stop()


def test_frames_sent_with_the_101_are_relayed(gateway_factory):
    def serve(s):
        raw_upgrade(s, extra=b"")
        s.sendall(build_frame(OP_TEXT, b"early bird", mask=False))
        time.sleep(1)

    b = scripted(lambda s: serve(s))
    try:
        g = gateway_factory(routes={"/app": proxy_route(b.url("/x"))})
        with WSClient(g.port, path="/app") as c:
            assert c.recv_message() == (OP_TEXT, b"early bird")
    finally:
        b.stop()


# ---- tcp:// backends ----


def test_tcp_backend_round_trip(gateway_factory):
    b = RawBackend().start()  # echo
    try:
        g = gateway_factory(gateway=BIG, routes={"/tcp": proxy_route(b.url(scheme="tcp"))})
        with WSClient(g.port, path="/tcp") as c:
            for n in (1, 1000, 65536, 1 << 20):
                data = binary_of(n)
                c.send_binary(data)
                got = b""
                while len(got) < n:
                    op, chunk = c.recv_message(timeout=10)
                    assert op == OP_BINARY
                    got += chunk
                assert got == data
            c.send_close(1000)
            assert c.recv_frame().close_code == 1000
    finally:
        b.stop()


def test_tcp_backend_text_closes_1003(gateway_factory):
    b = RawBackend().start()
    try:
        g = gateway_factory(routes={"/tcp": proxy_route(b.url(scheme="tcp"))})
        with WSClient(g.port, path="/tcp") as c:
            c.send_text("not bytes")
            res = c.expect_close()
            assert res.code == 1003, res
    finally:
        b.stop()


def test_tcp_backend_eof_closes_client_1000(gateway_factory):
    def serve(s):
        s.sendall(b"banner\n")
        time.sleep(0.2)

    b = scripted(serve)
    try:
        g = gateway_factory(routes={"/tcp": proxy_route(b.url(scheme="tcp"))})
        with WSClient(g.port, path="/tcp") as c:
            assert c.recv_message() == (OP_BINARY, b"banner\n")
            res = c.expect_close()
            assert res.code == 1000, res
    finally:
        b.stop()


def test_tcp_backend_dead_502(gateway_factory):
    g = gateway_factory(routes={"/tcp": proxy_route(f"tcp://127.0.0.1:{refused_port()}")})
    assert http_request(g.port, upgrade_request(g.port, "/tcp")).status == 502


def test_shutdown_with_open_proxy_sessions(gateway_factory, node):
    g = gateway_factory(routes={"/app": proxy_route(node.url("/s"))})
    clients = [WSClient(g.port, path="/app") for _ in range(5)]
    for c in clients:
        assert c.roundtrip(OP_TEXT, b"x") == (OP_TEXT, b"x")
    g.send_signal(15)
    for c in clients:
        res = c.expect_close()
        assert res.code == 1001, res
    assert g.wait(10) == 0
    g.check_clean_exit()


def test_backend_vanishes_while_draining_client_gets_1012(gateway_factory, node):
    # One worker: the order of closes below is one loop's (each worker spreads its own).
    g = gateway_factory(gateway={"drain_window": "4s", "workers": "1"},
                        routes={"/app": proxy_route(node.url("/s"))})
    older = WSClient(g.port, path="/app")
    newer = WSClient(g.port, path="/app")
    for c in (older, newer):
        assert c.roundtrip(OP_TEXT, b"x") == (OP_TEXT, b"x")
    g.send_signal(15)
    # Closes are spread over the window: one now, the other about 2 s later.
    first = newer.expect_close(timeout=3)
    assert first.code == 1001, first
    older.send_text("please-vanish")
    res = older.expect_close(timeout=3)
    assert res.code == 1012, res
    assert g.wait(10) == 0
    g.check_clean_exit()


def test_reload_moves_new_sessions_keeps_old_ones(gateway_factory):
    with NodeWsBackend() as a, NodeWsBackend() as b:
        dead = f"ws://127.0.0.1:{refused_port()}/d"
        g = gateway_factory(routes={"/app": proxy_route(a.url("/a"), dead, retries=1,
                                                        health_check="200ms",
                                                        fail_timeout="60s")})
        old = WSClient(g.port, path="/app")
        assert json.loads(old.roundtrip(OP_TEXT, b"headers?")[1])["url"] == "/a"
        wait_until(lambda: f"backend {dead} down" in g.stderr(), 5, what="probe marks down")
        text = g.config_text.replace(a.url("/a"), b.url("/b"))
        with open(g.config_path, "w", encoding="utf-8") as f:
            f.write(text)
        g.send_signal(signal.SIGHUP)
        wait_until(lambda: "in force for new connections" in g.stderr(), 5, what="reload")
        # The dead backend's health carried over: no new "down" line, no attempt on it.
        for _ in range(3):
            with WSClient(g.port, path="/app") as c:
                assert json.loads(c.roundtrip(OP_TEXT, b"headers?")[1])["url"] == "/b"
        assert g.stderr().count(f"backend {dead} down") == 1
        # The session made before the reload still talks to its backend.
        assert json.loads(old.roundtrip(OP_TEXT, b"headers?")[1])["url"] == "/a"
        old.send_close(1000)
        assert old.recv_frame().close_code == 1000
        old.close()
        time.sleep(0.5)  # the old pool retires once its last connection is gone
        assert g.running()


def close_frame(code, reason=b""):
    return build_frame(OP_CLOSE, close_payload(code, reason), mask=False)


def test_backend_close_during_backpressure_keeps_code(gateway_factory):
    # The backend sends more than the client reads, then closes with 4001: the code must
    # survive the pause (it sits behind the data) rather than turn into a 1011.
    def serve(s):
        raw_upgrade(s)
        for _ in range(8):
            s.sendall(build_frame(OP_BINARY, b"\x00" * (1 << 20), mask=False))
        s.sendall(close_frame(4001, b"done"))
        s.shutdown(1)
        time.sleep(3)

    b = scripted(serve)
    try:
        g = gateway_factory(gateway=BIG, routes={"/app": proxy_route(b.url("/x"))})
        with WSClient(g.port, path="/app") as c:
            time.sleep(1.0)  # let the gateway fill up and pause
            res = c.expect_close(timeout=15)
            assert res.code == 4001 and res.reason == b"done", res
            assert len(res.data_frames_before()) >= 8
    finally:
        b.stop()


def test_close_code_passthrough_table(gateway_factory):
    codes = [1000, 1001, 1003, 1007, 1008, 1009, 1011, 3000, 4999]

    def serve(s):
        _, rest = raw_upgrade(s)
        buf = bytearray(rest)
        f = backend_frames(s, buf, lambda f: f.opcode == OP_TEXT)
        code = int(f.payload)
        s.sendall(close_frame(code, b"r%d" % code))
        backend_frames(s, buf, lambda f: f.opcode == OP_CLOSE)

    b = scripted(serve)
    try:
        g = gateway_factory(routes={"/app": proxy_route(b.url("/x"))})
        for code in codes:
            with WSClient(g.port, path="/app") as c:
                c.send_text(str(code))
                res = c.expect_close()
                assert (res.code, res.reason) == (code, b"r%d" % code), res
    finally:
        b.stop()
