"""test_pp_tls.py - PROXY protocol on a TLS listener (`listen = ... tls proxy_protocol`): a
trusted balancer's v1 or v2 header comes before the TLS ClientHello (HAProxy `send-proxy` in
front of a wss:// port); the client it names is what the backend sees in X-Real-IP /
X-Forwarded-For (with proto https) and what per-IP limits count. A peer outside
trusted_proxies, a malformed header, and a ClientHello with no header are refused before any
TLS byte is answered. Certificates are made at test time (test_tls.Pki)."""

import json
import socket
import ssl
import time

import pytest

from test_isolation import node, pp_v2  # noqa: F401 (node is a fixture)
from test_tls import Pki
from wsharness import (BASE_GATEWAY, BASE_HEARTBEAT, OP_TEXT, Gateway, build_frame, free_port,
                       parse_frame, proxy_route, read_http_response, upgrade_request,
                       wait_closed)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(str(tmp_path_factory.mktemp("pp-pki")))
    p.issue("default", "default.test", ["default.test", "localhost"])
    return p


@pytest.fixture
def tgw(tmp_path_factory, pki, node):  # noqa: F811
    """A plain listener (the harness's readiness probe) and a TLS one that takes a PROXY
    header from 127.0.0.1 only."""
    g = Gateway(workdir=str(tmp_path_factory.mktemp("pp-tls")), config_text="; placeholder\n")
    g.pp_port = free_port()
    gw = dict(BASE_GATEWAY, trusted_proxies="127.0.0.1/32", max_connections_per_ip="1")
    cert, key = pki.path("default")
    lines = ["[gateway]", f"listen = 127.0.0.1:{g.port}",
             f"listen = 127.0.0.1:{g.pp_port} tls proxy_protocol"]
    lines += [f"{k} = {v}" for k, v in gw.items()]
    lines += ["", "[heartbeat]"] + [f"{k} = {v}" for k, v in BASE_HEARTBEAT.items()]
    lines += ["", "[tls]", f"cert = {cert}", f"key = {key}", ""]
    lines += ["[route /app]"] + [f"{k} = {v}" for k, v in proxy_route(node.url("/s")).items()]
    g.config_text = "\n".join(lines) + "\n"
    with open(g.config_path, "w", encoding="utf-8") as f:
        f.write(g.config_text)
    g.start()
    yield g
    g.stop()


def tls_session(pki, port, header, source="127.0.0.1"):
    """Sends header in clear, then TLS; returns (tls socket, 101-or-refusal response, rest)."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.bind((source, 0))
    raw.connect(("127.0.0.1", port))
    raw.sendall(header)
    ctx = ssl.create_default_context(cafile=pki.ca)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(upgrade_request(port, "/app").encode())
    resp, rest = read_http_response(s, time.monotonic() + 5)
    return s, resp, rest


def backend_view(s, rest):
    s.sendall(build_frame(OP_TEXT, b"headers?"))
    buf = bytearray(rest)
    while True:
        f, used = parse_frame(buf)
        if f is not None:
            return json.loads(f.payload)["headers"]
        buf += s.recv(65536)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_header_before_client_hello(tgw, pki, version):
    hdr = (b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n" if version == "v1"
           else pp_v2("203.0.113.7", 5555))
    s, resp, rest = tls_session(pki, tgw.pp_port, hdr)
    with s:
        assert resp.status == 101, resp
        h = backend_view(s, rest)
        assert h["x-real-ip"] == "203.0.113.7", h
        assert h["x-forwarded-for"] == "203.0.113.7", h
        assert h["x-forwarded-proto"] == "wss", h  # what the client spoke: TLS
        # max_connections_per_ip = 1 counts the named client, not the balancer.
        s2, resp2, _ = tls_session(pki, tgw.pp_port,
                                   b"PROXY TCP4 203.0.113.7 127.0.0.1 1 443\r\n")
        s2.close()
        assert resp2.status == 503, resp2
        s3, resp3, _ = tls_session(pki, tgw.pp_port, pp_v2("203.0.113.8", 1))
        s3.close()
        assert resp3.status == 101, resp3


def refused_before_tls(port, first, source="127.0.0.1"):
    """Sends first (maybe a whole ClientHello); True when the server closes without having sent
    a single byte (no ServerHello)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(first)
        got = b""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                b = s.recv(4096)
            except ConnectionResetError:
                return got == b""
            if not b:
                return got == b""
            got += b
        return False


def client_hello():
    """The bytes of a real ClientHello, taken from an in-memory TLS client."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


@pytest.mark.parametrize("case", ["no-header", "malformed-v1", "bad-v2-version",
                                  "untrusted-peer"])
def test_tls_listener_refuses_bad_or_untrusted_proxy_header(tgw, case):
    hello = client_hello()
    source = "127.0.0.1"
    if case == "no-header":
        first = hello
    elif case == "malformed-v1":
        first = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555\r\n" + hello
    elif case == "bad-v2-version":
        v2 = bytearray(pp_v2("203.0.113.7", 5555))
        v2[12] = 0x31  # version 3
        first = bytes(v2) + hello
    else:
        source = "127.0.0.2"  # not in trusted_proxies = 127.0.0.1/32
        first = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n" + hello
    assert refused_before_tls(tgw.pp_port, first, source), case
    why = ("peer not in trusted_proxies" if case == "untrusted-peer"
           else "malformed PROXY header")
    deadline = time.monotonic() + 3
    while why not in tgw.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert why in tgw.stderr(), tgw.stderr()


def bio_session(pki, port, header, chunks=None):
    """TLS over a MemoryBIO so the PROXY header and the ClientHello leave in ONE write (as a
    balancer's first segment often carries both), or byte by byte when chunks == 1. Returns
    the HTTP status of the upgrade."""
    ctx = ssl.create_default_context(cafile=pki.ca)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        first = True
        while True:
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            data = out.read()
            if first:
                data, first = header + data, False
                if chunks:
                    for i in range(0, len(data), chunks):
                        s.sendall(data[i:i + chunks])
                        time.sleep(0.001)
                    data = b""
            if data:
                s.sendall(data)
            if done:
                break
            b = s.recv(65536)
            assert b, "closed during the TLS handshake"
            inc.write(b)
        tls.write(upgrade_request(port, "/app").encode())
        s.sendall(out.read())
        buf = b""
        while b"\r\n\r\n" not in buf:
            try:
                buf += tls.read(65536)
            except ssl.SSLWantReadError:
                b = s.recv(65536)
                assert b, "closed before the response"
                inc.write(b)
        return int(buf.split(b" ", 2)[1])


@pytest.mark.parametrize("how", ["one-write-v1", "one-write-v2", "bytewise-v2", "v2-local",
                                 "v2-tlvs"])
def test_proxy_header_and_client_hello_together(tgw, pki, how):
    if how.endswith("v1"):
        hdr = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n"
    elif how == "v2-local":
        # LOCAL (the balancer's own health check): the socket's address is the client.
        hdr = pp_v2("203.0.113.9", 5555)
        hdr = hdr[:12] + b"\x20\x00\x00\x00"
    elif how == "v2-tlvs":
        # send-proxy-v2 with an ALPN TLV (0x01) and an authority TLV (0x02) after the addresses.
        tlvs = b"\x01\x00\x08http/1.1" + b"\x02\x00\x09localhost"
        base = bytearray(pp_v2("203.0.113.9", 5555))
        base[14:16] = (12 + len(tlvs)).to_bytes(2, "big")
        hdr = bytes(base) + tlvs
    else:
        hdr = pp_v2("203.0.113.9", 5555)
    status = bio_session(pki, tgw.pp_port, hdr, chunks=1 if how.startswith("bytewise") else None)
    assert status == 101, (how, tgw.stderr())
