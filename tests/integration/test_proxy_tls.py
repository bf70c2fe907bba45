"""test_proxy_tls.py - wss:// backends: a python3-websockets server and the Node "ws" server
with a certificate from a CA made at test time (openssl, never committed). Verification is
always on: with the route's ca_file the session works, by name (SNI, hostname check) or by IP;
without it, or for a name the certificate does not carry, the client gets 502."""

import json
import ssl

import pytest

from wsharness import (OP_BINARY, OP_TEXT, HarnessError, NodeWsBackend, PyWsBackend, WSClient, http_request,
                       make_test_ca, proxy_route, upgrade_request, wait_until)


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_test_ca(str(tmp_path_factory.mktemp("ca")))


@pytest.fixture(scope="module")
def tls_backend(ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ca["cert"], ca["key"])
    b = PyWsBackend(ssl_context=ctx).start()
    yield b
    b.stop()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["by-name", "by-ip"])
def test_wss_backend_with_ca(gateway_factory, ca, tls_backend, host):
    url = tls_backend.url("/secure", scheme="wss", host=host)
    g = gateway_factory(gateway={"max_message_size": "8MiB"},
                        routes={"/s": proxy_route(url, ca_file=ca["ca"])})
    with WSClient(g.port, path="/s?t=1") as c:
        for n in (0, 126, 65536, 4 * 1024 * 1024):
            data = bytes(range(256)) * (n // 256) + b"x" * (n % 256)
            assert c.roundtrip(OP_BINARY, data, timeout=20) == (OP_BINARY, data)
        assert c.roundtrip(OP_TEXT, b"over tls") == (OP_TEXT, b"over tls")
        c.send_close(1000)
        assert c.recv_frame().close_code == 1000
    path, headers = tls_backend.requests[-1]
    assert path == "/secure?t=1"
    # wss towards the backend; the client itself came over plain ws.
    assert headers["x-forwarded-proto"] == "ws"
    assert headers["host"] == f"{host}:{tls_backend.port}"


def test_wss_backend_without_ca_is_502(gateway_factory, tls_backend):
    url = tls_backend.url("/secure", scheme="wss", host="localhost")
    g = gateway_factory(routes={"/s": proxy_route(url, retries=0)})
    # A TLS failure counts against the backend: down at the third in a row (max_fails).
    for _ in range(3):
        resp = http_request(g.port, upgrade_request(g.port, "/s"))
        assert resp.status == 502, resp
    err = wait_until(lambda: "certificate verify failed" in g.stderr() and g.stderr(), 5,
                     what="verify failure logged")
    assert f"backend {url} down after 3 failure(s) in a row" in err


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["by-name", "by-ip"])
def test_wss_backend_wrong_name_is_502(gateway_factory, tmp_path, host):
    # A certificate from a trusted CA, but for another name: refused all the same.
    other = make_test_ca(str(tmp_path / "other"), san="DNS:wrong.example")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(other["cert"], other["key"])
    with PyWsBackend(ssl_context=ctx) as b:
        url = b.url("/secure", scheme="wss", host=host)
        g = gateway_factory(routes={"/s": proxy_route(url, ca_file=other["ca"], retries=0)})
        resp = http_request(g.port, upgrade_request(g.port, "/s"))
        assert resp.status == 502, resp
        assert "certificate verify failed" in g.stderr()
        assert b.requests == []


def test_wss_bad_ca_file_is_fatal(gateway_factory, tmp_path, tls_backend):
    # Loaded with the configuration like every certificate (not at the first client): a
    # start fails naming it, as a reload would be refused.
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate\n")
    url = tls_backend.url("/secure", scheme="wss", host="localhost")
    with pytest.raises(HarnessError, match="exited with 1") as e:
        gateway_factory(routes={"/s": proxy_route(url, ca_file=str(bad), retries=0)})
    assert f"cannot load ca_file {bad}" in str(e.value)
    assert "route /s" in str(e.value)


def test_wss_node_backend_close_code_and_headers(gateway_factory, ca):
    with NodeWsBackend(cert=ca["cert"], key=ca["key"]) as b:
        url = b.url("/n", scheme="wss", host="localhost")
        g = gateway_factory(routes={"/n": proxy_route(url, ca_file=ca["ca"])})
        with WSClient(g.port, path="/n", headers=[("Cookie", "a=b")]) as c:
            info = json.loads(c.roundtrip(OP_TEXT, b"headers?")[1])
            assert info["headers"]["cookie"] == "a=b"
            assert info["headers"]["host"] == f"localhost:{b.port}"
            c.send_text("please-close")
            res = c.expect_close()
            assert (res.code, res.reason) == (4000, b"bye"), res
        with WSClient(g.port, path="/n") as c:
            c.send_text("please-vanish")
            assert c.expect_close().code == 1011
