"""test_handshake.py - the opening handshake (RFC 6455 4.2): a valid upgrade gets 101 with the
right Sec-WebSocket-Accept; every refusal gets its precise status, "Connection: close" and a
closed connection; subprotocol choice follows the route's preference order."""

import base64
import socket
import time

import pytest

from wsharness import (OP_BINARY, OP_TEXT, WSClient, build_frame, check_101, http_request,
                       new_key, token_list_has, upgrade_request, wait_closed, ws_accept)


def assert_refused(resp, status):
    """A refusal: the status, a Connection: close header, and the server closing."""
    assert resp.status == status, f"expected {status}, got {resp!r}"
    assert resp.version == "HTTP/1.1", resp.status_line
    assert token_list_has(resp.header("Connection") or "", "close"), \
        f"no 'Connection: close' in {resp!r}"
    assert resp.header("Sec-WebSocket-Accept") is None, resp
    assert resp.closed, f"server kept the connection open after {status}"
    assert resp.trailing == b"", f"bytes after the {status} reply: {resp.trailing!r}"


# ---- accepted upgrades


def test_valid_upgrade_gets_101_with_accept(gw):
    key = new_key()
    resp = http_request(gw.port, upgrade_request(gw.port, key=key), close_timeout=0)
    assert resp.status == 101, resp
    check_101(resp, key)
    assert resp.header("Sec-WebSocket-Accept") == ws_accept(key)
    assert resp.header("Sec-WebSocket-Protocol") is None
    assert resp.header("Sec-WebSocket-Extensions") is None


def test_rfc_sample_key_accept(gw):
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    resp = http_request(gw.port, upgrade_request(gw.port, key=key), close_timeout=0)
    assert resp.status == 101, resp
    assert resp.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_upgrade_then_echo(gw):
    with WSClient(gw.port) as c:
        assert c.roundtrip(OP_TEXT, b"hello") == (OP_TEXT, b"hello")


def test_connection_token_list_accepted(gw):
    key = new_key()
    raw = upgrade_request(gw.port, key=key, replace={"Connection": "keep-alive, Upgrade"})
    resp = http_request(gw.port, raw, close_timeout=0)
    assert resp.status == 101, resp
    check_101(resp, key)


def test_header_names_and_tokens_case_insensitive(gw):
    key = new_key()
    raw = (f"GET /echo HTTP/1.1\r\nhOST: 127.0.0.1:{gw.port}\r\nUPGRADE: WebSocket\r\n"
           f"connection: keep-alive,UPGRADE\r\nsec-websocket-key: {key}\r\n"
           f"SEC-WEBSOCKET-VERSION: 13\r\n\r\n")
    resp = http_request(gw.port, raw, close_timeout=0)
    assert resp.status == 101, resp
    check_101(resp, key)


def test_extension_offer_not_accepted(gw):
    # The gateway negotiates no extension: an offer must not be echoed back.
    key = new_key()
    raw = upgrade_request(gw.port, key=key,
                          extra=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    resp = http_request(gw.port, raw, close_timeout=0)
    assert resp.status == 101, resp
    assert resp.header("Sec-WebSocket-Extensions") is None


def test_request_sent_in_one_byte_chunks(gw):
    key = new_key()
    raw = upgrade_request(gw.port, key=key).encode()
    resp = http_request(gw.port, raw, chunks=[raw[i:i + 1] for i in range(len(raw))],
                        close_timeout=0)
    assert resp.status == 101, resp
    check_101(resp, key)


def test_pipelined_frames_after_request(gw):
    frames = build_frame(OP_TEXT, b"first") + build_frame(OP_BINARY, b"\x00second")
    with WSClient(gw.port, pipelined=frames) as c:
        assert c.recv_message() == (OP_TEXT, b"first")
        assert c.recv_message() == (OP_BINARY, b"\x00second")


def test_healthz_plain_http(gw):
    resp = http_request(gw.port, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n\r\n",
                        close_timeout=0)
    assert resp.status == 200, resp


# ---- refusals


def test_head_larger_than_8k_gets_431(gw):
    raw = upgrade_request(gw.port, extra=[("X-Pad", "a" * 9000)])
    assert_refused(http_request(gw.port, raw), 431)


def test_many_headers_over_8k_get_431(gw):
    raw = upgrade_request(gw.port, extra=[(f"X-H{i}", "b" * 90) for i in range(100)])
    assert len(raw) > 8192
    assert_refused(http_request(gw.port, raw), 431)


def test_head_just_under_8k_accepted(gw):
    base = upgrade_request(gw.port, extra=[("X-Pad", "")])
    pad = 8192 - len(base) - 64
    key = new_key()
    raw = upgrade_request(gw.port, key=key, extra=[("X-Pad", "c" * pad)])
    assert 8000 < len(raw) <= 8192
    resp = http_request(gw.port, raw, close_timeout=0)
    assert resp.status == 101, resp
    check_101(resp, key)


def test_post_gets_405(gw):
    assert_refused(http_request(gw.port, upgrade_request(gw.port, method="POST")), 405)


def test_http10_gets_505(gw):
    assert_refused(http_request(gw.port, upgrade_request(gw.port, version="HTTP/1.0")), 505)


def test_missing_host_gets_400(gw):
    assert_refused(http_request(gw.port, upgrade_request(gw.port, omit=["Host"])), 400)


def test_plain_get_on_ws_route_gets_426(gw):
    raw = f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n\r\n"
    assert_refused(http_request(gw.port, raw), 426)


def test_upgrade_foo_gets_400(gw):
    raw = upgrade_request(gw.port, replace={"Upgrade": "foo"})
    assert_refused(http_request(gw.port, raw), 400)


@pytest.mark.parametrize("value", ["keep-alive", "close", "Upgrades", "websocket"])
def test_connection_without_upgrade_token_gets_400(gw, value):
    raw = upgrade_request(gw.port, replace={"Connection": value})
    assert_refused(http_request(gw.port, raw), 400)


@pytest.mark.parametrize("version", ["8", None], ids=["v8", "missing"])
def test_bad_version_gets_426_with_version_13(gw, version):
    if version is None:
        raw = upgrade_request(gw.port, omit=["Sec-WebSocket-Version"])
    else:
        raw = upgrade_request(gw.port, replace={"Sec-WebSocket-Version": version})
    resp = http_request(gw.port, raw)
    assert_refused(resp, 426)
    assert resp.header("Sec-WebSocket-Version") == "13", resp


@pytest.mark.parametrize("key", [
    None,
    "",
    "abc",
    base64.b64encode(b"x" * 15).decode(),
    base64.b64encode(b"x" * 17).decode(),
    "!!!!!!!!!!!!!!!!!!!!!!==",
    base64.b64encode(b"y" * 16).decode().rstrip("="),
], ids=["missing", "empty", "short", "15bytes", "17bytes", "notbase64", "nopadding"])
def test_bad_key_gets_400(gw, key):
    if key is None:
        raw = upgrade_request(gw.port, omit=["Sec-WebSocket-Key"])
    else:
        raw = upgrade_request(gw.port, key=key)
    assert_refused(http_request(gw.port, raw), 400)


def test_unknown_path_gets_404(gw):
    assert_refused(http_request(gw.port, upgrade_request(gw.port, path="/nope")), 404)


def test_garbage_request_line_gets_400(gw):
    assert_refused(http_request(gw.port, "HELLO\r\n\r\n"), 400)


def test_gateway_survives_refusals(gw):
    # After every refusal above (same module gateway) a valid upgrade still works.
    with WSClient(gw.port) as c:
        assert c.roundtrip(OP_BINARY, b"\x01\x02") == (OP_BINARY, b"\x01\x02")


# ---- subprotocols (route /chat offers "chat, superchat")


@pytest.mark.parametrize("offer,chosen", [
    (["superchat", "chat"], "chat"),
    (["chat"], "chat"),
    (["superchat"], "superchat"),
    (["other", "superchat"], "superchat"),
    (["other"], None),
])
def test_subprotocol_route_preference(gw, offer, chosen):
    key = new_key()
    raw = upgrade_request(gw.port, path="/chat", key=key,
                          extra=[("Sec-WebSocket-Protocol", ", ".join(offer))])
    resp = http_request(gw.port, raw, close_timeout=0)
    assert resp.status == 101, resp
    check_101(resp, key)
    assert resp.header("Sec-WebSocket-Protocol") == chosen, resp
    assert len(resp.header_all("Sec-WebSocket-Protocol")) == (0 if chosen is None else 1)


def test_subprotocol_offer_in_repeated_headers(gw):
    key = new_key()
    raw = upgrade_request(gw.port, path="/chat", key=key,
                          extra=[("Sec-WebSocket-Protocol", "superchat"),
                                 ("Sec-WebSocket-Protocol", "chat")])
    resp = http_request(gw.port, raw, close_timeout=0)
    assert resp.status == 101, resp
    assert resp.header("Sec-WebSocket-Protocol") == "chat", resp


def test_subprotocol_offer_on_route_without_subprotocols(gw):
    key = new_key()
    raw = upgrade_request(gw.port, key=key, extra=[("Sec-WebSocket-Protocol", "chat")])
    resp = http_request(gw.port, raw, close_timeout=0)
    assert resp.status == 101, resp
    assert resp.header("Sec-WebSocket-Protocol") is None, resp


def test_subprotocol_session_echoes(gw):
    with WSClient(gw.port, path="/chat", protocols=["superchat", "chat"]) as c:
        assert c.response.header("Sec-WebSocket-Protocol") == "chat"
        assert c.roundtrip(OP_TEXT, b"in chat") == (OP_TEXT, b"in chat")


# ---- handshake timeout (own gateway: handshake_timeout = 300ms)


@pytest.mark.parametrize("part", ["half", "nothing"])
def test_slow_sender_gets_408_or_closed(gateway_factory, part):
    g = gateway_factory(gateway={"handshake_timeout": "300ms"})
    raw = upgrade_request(g.port).encode()
    with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
        if part == "half":
            s.sendall(raw[:len(raw) // 2])
        t0 = time.monotonic()
        closed, got = wait_closed(s, 5.0)
        elapsed = time.monotonic() - t0
    assert closed, f"connection still open 5 s after a {part} request; got {got!r}"
    if got:
        assert got.startswith(b"HTTP/1.1 408"), got
    assert elapsed >= 0.2, f"closed after {elapsed:.3f}s, before handshake_timeout (300ms)"
    # The gateway serves others afterwards.
    with WSClient(g.port) as c:
        assert c.roundtrip(OP_TEXT, b"still here") == (OP_TEXT, b"still here")
