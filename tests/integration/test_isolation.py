"""test_isolation.py - issue 17's attacks against the real binary, each refused: another
connection's direct channel through {ch} and {query.ch} placeholders, an identity channel of a
jwt route from a route without auth (at load and at the handshake), a token whose sub names a
direct channel, the Redis canary's channel; publish rights (publish = none, server_only);
`wsgate -t` printing the channel map; and at the proxy: client-sent forwarding headers
(replaced unless the peer is a trusted proxy), every Cookie line, the backend's Set-Cookie /
WWW-Authenticate / Retry-After passed back, an HTTP/1.0 101 refused, two Origin headers and
bare LF or CR line endings refused at once."""

import base64
import hashlib
import hmac
import json
import re
import socket
import time

import pytest

from test_admin import m, metrics
from test_pubsub_local import welcome_id  # checks the random id format
from wsharness import (OP_TEXT, Gateway, NodeWsBackend, RawBackend, WSClient, build_frame,
                       free_port, http_request, parse_frame, proxy_route, raw_upgrade,
                       read_http_response, run_wsgate, start_gateway, upgrade_request,
                       wait_closed, ws_accept)

SECRET = "isolation secret"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hs256(payload):
    si = (b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." +
          b64url(json.dumps(payload).encode()))
    return si + "." + b64url(hmac.new(SECRET.encode(), si.encode(), hashlib.sha256).digest())


def announced_id(c):
    """The welcome frame's id, whatever its format (the old one was <instance>-<counter>)."""
    op, payload = c.recv_message()
    assert op == OP_TEXT, (op, payload)
    return json.loads(payload)["id"]


def status_of(port, path, extra=()):
    return http_request(port, upgrade_request(port, path, extra=extra), close_timeout=0).status


# The attacks' configuration uses only keys older binaries know, so on those the attacks
# themselves go through (101) rather than the configuration failing.
ROUTES = {
    "/dm": {"type": "pubsub", "subscribe": "lobby", "announce_id": "yes"},
    "/raw/{ch}": {"type": "pubsub", "subscribe": "{ch}", "publish": "{ch}"},
    "/q": {"type": "pubsub", "subscribe": "{query.ch}", "publish": "{query.ch}"},
    "/me": {"type": "pubsub", "auth": "jwt", "jwt_secret": SECRET, "jwt_from": "query",
            "subscribe": "user:{jwt.sub}"},
}
NEW_ROUTES = {
    "/wide/{ch}": {"type": "pubsub", "subscribe": "{ch}", "allow": "ch:[a-z0-9:-]",
                   "shared_namespace": "yes"},
    "/news": {"type": "pubsub", "subscribe": "news:all", "server_only": "yes"},
    "/ro": {"type": "pubsub", "subscribe": "ro", "publish": "none"},
}


@pytest.fixture(scope="module")
def igw(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="isolation", routes=ROUTES)
    yield g
    g.stop()


@pytest.fixture(scope="module")
def ngw(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="isolation-new", routes=dict(ROUTES, **NEW_ROUTES))
    yield g
    g.stop()


# ---- channel namespaces ----


def test_direct_channel_unreachable_through_placeholders(igw):
    with WSClient(igw.port, "/dm") as victim:
        vid = announced_id(victim)
        for path in (f"/raw/conn:{vid}", f"/raw/wsgate:conn:{vid}", f"/q?ch=conn:{vid}",
                     f"/q?ch=wsgate:conn:{vid}"):
            assert status_of(igw.port, path) == 400, path


def test_widened_placeholder_takes_colon_but_not_reserved(ngw):
    with WSClient(ngw.port, "/dm") as victim:
        vid = announced_id(victim)
        assert status_of(ngw.port, f"/wide/wsgate:conn:{vid}") == 400
    assert status_of(ngw.port, "/wide/a:b") == 101
    assert status_of(ngw.port, "/wide/wsgate:probe:x") == 400


def test_direct_ids_are_random(igw):
    ids = []
    for _ in range(3):
        with WSClient(igw.port, "/dm") as c:
            ids.append(welcome_id(c).split("-")[1])
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids), ids


def test_identity_channel_unreachable_without_token(igw):
    assert status_of(igw.port, "/raw/user:alice") == 400
    assert status_of(igw.port, "/q?ch=user:alice") == 400
    assert status_of(igw.port, f"/me?token={hs256({'sub': 'alice'})}") == 101


def test_jwt_sub_cannot_name_a_direct_channel(igw):
    with WSClient(igw.port, "/dm") as victim:
        vid = announced_id(victim)
        for sub in (f"conn:{vid}", f"wsgate:conn:{vid}"):
            assert status_of(igw.port, f"/me?token={hs256({'sub': sub})}") == 400, sub


def test_canary_channel_unreachable(igw):
    with WSClient(igw.port, "/dm") as c:
        inst = announced_id(c).split("-")[0]
    assert status_of(igw.port, f"/raw/wsgate:probe:{inst}") == 400
    assert status_of(igw.port, f"/q?ch=wsgate:probe:{inst}") == 400


def test_server_only_refuses_client_publish(ngw):
    with WSClient(ngw.port, "/news") as c:
        c.send_text("forged")
        res = c.expect_close()
        assert res.code == 1008, res
    assert "client publish refused: server_only route" in ngw.stderr()


def test_publish_none_is_read_only(ngw):
    with WSClient(ngw.port, "/ro") as c:
        c.send_text("x")
        assert c.expect_close().code == 1008


def write_ini(tmp_path, text):
    p = tmp_path / "w.ini"
    p.write_text(text)
    return str(p)


CONFLICT = """[gateway]
listen = 127.0.0.1:1

[route /me]
type = pubsub
auth = jwt
jwt_secret = s
subscribe = user:{jwt.sub}

[route /raw/{ch}]
type = pubsub
subscribe = {ch}
allow = ch:[a-z:]
"""


def test_unauthenticated_route_reaching_identity_channels_refused_at_load(tmp_path):
    path = write_ini(tmp_path, CONFLICT)
    r = run_wsgate(["-t", "-c", path])
    assert r.returncode == 1, r
    assert (f"{path}:12: route /raw/{{ch}} (no auth) subscribe '{{ch}}' can reach channel "
            f"subscribe 'user:{{jwt.sub}}' of route /me (auth jwt, bound to an identity, "
            f"line 4)") in r.stderr, r.stderr
    # Said deliberate, it loads; -t then shows what each route reaches.
    path = write_ini(tmp_path, CONFLICT + "shared_namespace = yes\n")
    r = run_wsgate(["-t", "-c", path])
    assert r.returncode == 0, r.stderr
    assert "subscribe user:{jwt.sub} -> user:[-.0-9A-Z_a-z]+" in r.stdout, r.stdout
    assert "subscribe {ch} -> [:a-z]+" in r.stdout, r.stdout
    assert "route /raw/{ch} (pubsub, no auth, shared_namespace)" in r.stdout, r.stdout



# ---- read-only channels inside a writable route (read_only) ----

# A jwt route whose clients pick the channel they publish to (?to=...): the room stays
# writable, every user:<sub> channel is server-push only.
RO_ROUTES = {
    "/chat/{room}": {"type": "pubsub", "auth": "jwt", "jwt_secret": SECRET, "jwt_from": "query",
                     "subscribe": "room:{room}, user:{jwt.sub}", "publish": "{query.to}",
                     "allow": "query.to:[a-z0-9:]", "read_only": "user:{jwt.sub}"},
}


@pytest.fixture(scope="module")
def rogw(tmp_path_factory):
    admin = free_port()
    g = start_gateway(tmp_path_factory, name="isolation-ro", routes=RO_ROUTES,
                      gateway={"admin_listen": f"127.0.0.1:{admin}"})
    g.admin = admin
    yield g
    g.stop()


def denied(g):
    return m(metrics(g.admin), "wsgate_publish_denied_total")


def chat(g, sub, to, room="lobby"):
    return WSClient(g.port, f"/chat/{room}?to={to}&token={hs256({'sub': sub})}")


def test_read_only_channel_refuses_client_publish(rogw):
    with chat(rogw, "bob", "room:lobby") as bob:
        before = denied(rogw)
        # Into another user's channel, and into one's own: both server-push only.
        for sub, to in (("mallory", "user:bob"), ("bob", "user:bob")):
            with chat(rogw, sub, to) as c:
                c.send_text(f"forged by {sub}")
                res = c.expect_close()
                assert res.code == 1008 and b"read-only" in res.reason, res
        assert denied(rogw) == before + 2
        # The room stays writable on the same route; bob gets that and nothing forged.
        with chat(rogw, "alice", "room:lobby") as alice:
            alice.send_text("hello room")
            # Whatever had been forged was published before this and would be first.
            assert bob.recv_message() == (OP_TEXT, b"hello room")
        frames, eof = bob.pump(0.2)
        assert not eof and not [f for f in frames if f.opcode == OP_TEXT], frames
    assert "refused: read_only user:{jwt.sub}" in rogw.stderr()


RO_BASE = """[gateway]
listen = 127.0.0.1:1

[route /chat/{room}]
type = pubsub
auth = jwt
jwt_secret = s
subscribe = room:{room}, user:{jwt.sub}
publish = {query.to}
allow = query.to:[a-z0-9:]
"""


@pytest.mark.parametrize("extra,line,msg", [
    ("read_only = user:{jwt.name}\n", 11,
     "read_only 'user:{jwt.name}' is not one of route /chat/{room}'s subscribe templates"),
    ("read_only = room:{room}\n[route /ro]\ntype = pubsub\nsubscribe = ro\nread_only = ro\n"
     "publish = none\n", 15, "read_only on route /ro, whose clients cannot publish at all"),
    ("read_only = user:{jwt.sub}\n[route /w]\ntype = pubsub\nsubscribe = w\n"
     "read_only = w\npublish = w\n", 15,
     "the publish template 'w' of route /w is read_only: every client message would be "
     "refused"),
    ("read_only = user:{jwt.sub}\n[route /w/{t}]\ntype = pubsub\nauth = jwt\njwt_secret = s\n"
     "subscribe = w\npublish = user:{t}\n", 17,
     "route /w/{t} (auth jwt) publish 'user:{t}' can reach channel subscribe "
     "'user:{jwt.sub}' of route /chat/{room} (read_only, line 4)"),
])
def test_read_only_inconsistent_config_refused_at_load(tmp_path, extra, line, msg):
    path = write_ini(tmp_path, RO_BASE + extra)
    r = run_wsgate(["-t", "-c", path])
    assert r.returncode == 1, r
    assert f"{path}:{line}: {msg}" in r.stderr, r.stderr


def test_channel_map_shows_read_only_and_writable(tmp_path):
    path = write_ini(tmp_path, RO_BASE + "read_only = user:{jwt.sub}\n[route /news]\n"
                     "type = pubsub\nsubscribe = news, other\npublish = news\n")
    r = run_wsgate(["-t", "-c", path])
    assert r.returncode == 0, r.stderr
    for want in ("subscribe room:{room} -> room:[-.0-9A-Z_a-z]+ (writable)",
                 "subscribe user:{jwt.sub} -> user:[-.0-9A-Z_a-z]+ (read-only: read_only)",
                 "publish   {query.to} -> [0-:a-z]+ except its read_only channels",
                 "subscribe news -> news (writable)",
                 "subscribe other -> other (read-only: publish cannot reach it)"):
        assert want in r.stdout, (want, r.stdout)

# ---- the proxy ----


@pytest.fixture(scope="module")
def node():
    b = NodeWsBackend().start()
    yield b
    b.stop()


def backend_headers(port, path="/app", headers=()):
    with WSClient(port, path=path, headers=list(headers)) as c:
        return json.loads(c.roundtrip(OP_TEXT, b"headers?")[1])["headers"]


SPOOF = [("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=6.6.6.6;proto=https"),
         ("X-Forwarded-Proto", "https")]


def test_client_forwarding_headers_replaced(gateway_factory, node):
    g = gateway_factory(routes={"/app": proxy_route(node.url("/s"))})
    h = backend_headers(g.port, headers=SPOOF)
    assert h["x-forwarded-for"] == "127.0.0.1", h
    assert h["x-real-ip"] == "127.0.0.1", h
    assert h["forwarded"] == "for=127.0.0.1;proto=ws", h
    assert h["x-forwarded-proto"] == "ws", h


def test_trusted_proxy_chain_kept(gateway_factory, node):
    g = gateway_factory(gateway={"trusted_proxies": "127.0.0.0/8"},
                        routes={"/app": proxy_route(node.url("/s"))})
    h = backend_headers(g.port, headers=SPOOF)
    assert h["x-forwarded-for"] == "6.6.6.6, 127.0.0.1", h
    assert h["x-real-ip"] == "6.6.6.6", h
    assert h["forwarded"] == "for=6.6.6.6;proto=https, for=127.0.0.1;proto=ws", h
    assert h["x-forwarded-proto"] == "https", h
    assert "client 6.6.6.6 via trusted proxy 127.0.0.1" in g.stderr()


def test_every_cookie_reaches_backend(gateway_factory, node):
    g = gateway_factory(routes={"/app": proxy_route(node.url("/s"))})
    h = backend_headers(g.port, headers=[("Cookie", "a=1"), ("Cookie", "b=2; c=3")])
    assert h["cookie"] == "a=1; b=2; c=3", h


def scripted(serve):
    return RawBackend(serve).start()


def test_set_cookie_on_101_passed_back(gateway_factory):
    b = scripted(lambda s: raw_upgrade(s, extra=b"Set-Cookie: sid=42; HttpOnly\r\n"
                                       b"Set-Cookie: t=1\r\nX-Internal: no\r\n") and s.recv(1))
    try:
        g = gateway_factory(routes={"/app": proxy_route(b.url("/x"))})
        resp = http_request(g.port, upgrade_request(g.port, "/app"), close_timeout=0)
        assert resp.status == 101, resp
        assert resp.header_all("Set-Cookie") == ["sid=42; HttpOnly", "t=1"], resp
        assert resp.header("X-Internal") is None
    finally:
        b.stop()


@pytest.mark.parametrize("answer,field,value", [
    ("HTTP/1.1 401 Unauthorized", "WWW-Authenticate", 'Bearer realm="app"'),
    ("HTTP/1.1 429 Too Many Requests", "Retry-After", "7"),
    ("HTTP/1.1 503 Service Unavailable", "Retry-After", "30"),
], ids=["401", "429", "503"])
def test_backend_refusal_headers_passed_back(gateway_factory, answer, field, value):
    extra = f"{field}: {value}\r\nSet-Cookie: no=1\r\n".encode()
    b = scripted(lambda s: raw_upgrade(s, status_line=answer, extra=extra) and s.recv(1))
    try:
        g = gateway_factory(routes={"/app": proxy_route(b.url("/x"), retries="0")})
        resp = http_request(g.port, upgrade_request(g.port, "/app"), close_timeout=0)
        assert resp.status == int(answer.split()[1]), resp
        assert resp.header(field) == value, resp
        assert resp.header("Set-Cookie") is None, resp
    finally:
        b.stop()


def test_http10_101_from_backend_is_502(gateway_factory):
    def serve(s):
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        key = re.search(rb"(?im)^Sec-WebSocket-Key:\s*(\S+)", buf).group(1).decode()
        s.sendall(b"HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                  ws_accept(key).encode() + b"\r\n\r\n")
        s.recv(1)
    b = scripted(serve)
    try:
        g = gateway_factory(routes={"/app": proxy_route(b.url("/x"))})
        resp = http_request(g.port, upgrade_request(g.port, "/app"), close_timeout=0)
        assert resp.status == 502, resp
        assert "bad upgrade response: 101 is not HTTP/1.1" in g.stderr()
    finally:
        b.stop()


# ---- the request head ----


@pytest.mark.parametrize("name,value", [
    ("Origin", "https://evil.example"), ("Host", "other"), ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
])
def test_duplicate_header_is_400(gateway_factory, name, value):
    g = gateway_factory(routes={"/echo": {"type": "echo", "origins": "https://good.example"}})
    # The first Origin is the allowed one: only the duplicate can make this a refusal.
    raw = upgrade_request(g.port, "/echo",
                          extra=[("Origin", "https://good.example"), (name, value)])
    assert http_request(g.port, raw, close_timeout=0).status == 400
    ok = upgrade_request(g.port, "/echo", extra=[("Origin", "https://good.example")])
    assert http_request(g.port, ok, close_timeout=0).status == 101


@pytest.mark.parametrize("eol", [b"\n", b"\r"], ids=["LF", "CR"])
def test_bare_line_endings_400_at_once(gw, eol):
    raw = (b"GET /echo HTTP/1.1" + eol + b"Host: x" + eol + b"Upgrade: websocket" + eol)
    t0 = time.monotonic()
    resp = http_request(gw.port, raw, timeout=3, close_timeout=0)
    assert resp.status == 400, resp
    assert time.monotonic() - t0 < 2


# ---- PROXY protocol (listen = ... proxy_protocol) ----


V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pp_v2(src, sport):
    a = bytes(int(x) for x in src.split("."))
    return (V2SIG + b"\x21\x11\x00\x0c" + a + bytes([127, 0, 0, 1]) +
            sport.to_bytes(2, "big") + (80).to_bytes(2, "big"))


@pytest.fixture
def ppgw(tmp_path_factory, node):
    """A gateway with a plain listener (for readiness) and a proxy_protocol one."""
    pp_port = free_port()
    g = Gateway(workdir=str(tmp_path_factory.mktemp("pp")),
                gateway={"trusted_proxies": "127.0.0.1", "max_connections_per_ip": "1"},
                routes={"/app": proxy_route(node.url("/s"))})
    g.config_text = g.config_text.replace(
        "[gateway]\n", f"[gateway]\nlisten = 127.0.0.1:{pp_port} proxy_protocol\n", 1)
    with open(g.config_path, "w", encoding="utf-8") as f:
        f.write(g.config_text)
    g.start()
    g.pp_port = pp_port
    yield g
    g.stop()


def pp_session(port, header, path="/app"):
    """Sends header then an upgrade; returns (socket, response)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(header + upgrade_request(port, path).encode())
    resp, rest = read_http_response(s, time.monotonic() + 5)
    return s, resp, rest


def pp_headers(s, rest):
    s.sendall(build_frame(OP_TEXT, b"headers?"))
    buf = bytearray(rest)
    while True:
        f, used = parse_frame(buf)
        if f is not None:
            return json.loads(f.payload)["headers"]
        buf += s.recv(65536)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_protocol_names_the_client(ppgw, version):
    hdr = (b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n" if version == "v1"
           else pp_v2("203.0.113.7", 5555))
    s, resp, rest = pp_session(ppgw.pp_port, hdr)
    with s:
        assert resp.status == 101, resp
        h = pp_headers(s, rest)
        assert h["x-real-ip"] == "203.0.113.7", h
        assert h["x-forwarded-for"] == "203.0.113.7", h
        # max_connections_per_ip = 1 counts the client named by the header, not the balancer
        s2, resp2, _ = pp_session(ppgw.pp_port, b"PROXY TCP4 203.0.113.7 127.0.0.1 1 80\r\n")
        s2.close()
        assert resp2.status == 503, resp2
        s3, resp3, _ = pp_session(ppgw.pp_port, b"PROXY TCP4 203.0.113.8 127.0.0.1 1 80\r\n")
        s3.close()
        assert resp3.status == 101, resp3


@pytest.mark.parametrize("first", [b"GET /app HTTP/1.1\r\n", b"PROXY TCP4 1.2.3.4\r\n",
                                   b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"],
                         ids=["no-header", "short", "bare-lf"])
def test_proxy_protocol_required_and_strict(ppgw, first):
    with socket.create_connection(("127.0.0.1", ppgw.pp_port), timeout=5) as s:
        s.sendall(first + b"Host: x\r\n\r\n")
        closed, _ = wait_closed(s, 3)
        assert closed
    assert "malformed PROXY header" in ppgw.stderr()


def test_per_ip_limits_follow_the_forwarded_client(gateway_factory):
    """Behind a trusted proxy max_connections_per_ip counts the client it names, not itself."""
    g = gateway_factory(gateway={"trusted_proxies": "127.0.0.1", "max_connections_per_ip": "1"})
    a = WSClient(g.port, "/echo", headers=[("X-Forwarded-For", "198.51.100.1")])
    b = WSClient(g.port, "/echo", headers=[("X-Forwarded-For", "198.51.100.2")])
    try:
        same = upgrade_request(g.port, "/echo", extra=[("X-Forwarded-For", "198.51.100.1")])
        assert http_request(g.port, same, close_timeout=0).status == 503
        assert a.roundtrip(OP_TEXT, b"a") == (OP_TEXT, b"a")
        assert b.roundtrip(OP_TEXT, b"b") == (OP_TEXT, b"b")
    finally:
        a.close()
        b.close()


def test_proxy_protocol_partial_header_at_shutdown(ppgw):
    """A header still being read when the gateway stops is freed with its listener (the stop
    checks exit status 0 and, under ASan, no leak)."""
    with socket.create_connection(("127.0.0.1", ppgw.pp_port), timeout=5) as s:
        s.sendall(b"PROXY TCP4 203.0.113.7 ")
        time.sleep(0.2)
        ppgw.stop()
