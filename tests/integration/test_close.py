"""test_close.py - Autobahn 7.x: the closing handshake. A client close with a valid code is
answered with a close carrying the same code and the server then closes TCP; invalid codes,
1-byte payloads and non-UTF-8 reasons fail with 1002/1007; nothing is processed after a close;
a server-initiated close waits close_timeout for the client's answer, then drops."""

import time

import pytest

from wsharness import (OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, WSClient, build_frame,
                       close_payload)

# close_timeout 1s so the "client never answers" case is quick.
GATEWAY_SETTINGS = {"gateway": {"close_timeout": "1s"}}

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_close_code_echoed(gw, code):
    with WSClient(gw.port) as c:
        c.send_close(code, "bye")
        res = c.expect_close(reply=False)
        assert res.close_frame is not None, res
        assert res.code == code, res
        assert res.frames_before == [], res
        assert res.tcp_closed, "server must close TCP after the closing handshake"


def test_close_with_max_reason(gw):
    reason = b"r" * 121 + "é".encode()  # 2 + 123 = 125 bytes, the control frame maximum
    assert len(reason) == 123
    with WSClient(gw.port) as c:
        c.send_close(1000, reason)
        res = c.expect_close(reply=False)
        assert res.code == 1000, res
        assert res.tcp_closed


def test_close_reason_utf8_multibyte(gw):
    with WSClient(gw.port) as c:
        c.send_close(1001, "心跳检测 κόσμε")
        res = c.expect_close(reply=False)
        assert res.code == 1001, res
        assert res.tcp_closed


def test_empty_close_answered_empty_or_1000(gw):
    with WSClient(gw.port) as c:
        c.send_close()
        res = c.expect_close(reply=False)
        assert res.close_frame is not None, res
        assert res.close_frame.payload == b"" or res.code == 1000, res
        assert res.tcp_closed


def test_close_payload_one_byte_fails_1002(gw):
    with WSClient(gw.port) as c:
        c.send_close(payload=b"\x03")
        res = c.expect_close()
        assert res.code == 1002, res
        assert res.tcp_closed


def test_close_payload_126_bytes_fails_1002(gw):
    with WSClient(gw.port) as c:
        c.send_close(payload=close_payload(1000, b"x" * 124))
        res = c.expect_close()
        assert res.code == 1002, res
        assert res.tcp_closed


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_code_fails_1002(gw, code):
    with WSClient(gw.port) as c:
        c.send_close(code, "bad code")
        res = c.expect_close()
        assert res.code == 1002, res
        assert res.tcp_closed


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc0\x80", b"\xed\xa0\x80", b"\xce"],
                         ids=["ff", "overlong", "surrogate", "truncated"])
def test_close_reason_not_utf8_fails_1007(gw, reason):
    with WSClient(gw.port) as c:
        c.send_close(1000, reason)
        res = c.expect_close()
        assert res.code == 1007, res
        assert res.tcp_closed


def test_data_after_close_ignored(gw):
    # Autobahn 7.1.2-7.1.5: frames after the client's close are not processed.
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_CLOSE, close_payload(1000))
                   + build_frame(OP_TEXT, b"after close")
                   + build_frame(OP_PING, b"after close")
                   + build_frame(OP_BINARY, b"\x00"))
        res = c.expect_close(reply=False)
        assert res.code == 1000, res
        assert res.tcp_closed
        assert [f.opcode for f in c.received] == [OP_CLOSE], c.received


def test_message_before_close_echoed(gw):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, b"last words") + build_frame(OP_CLOSE,
                                                                    close_payload(1000)))
        res = c.expect_close(reply=False)
        assert [(f.opcode, f.payload) for f in res.frames_before] == [(OP_TEXT, b"last words")]
        assert res.code == 1000, res
        assert res.tcp_closed


def test_close_in_one_byte_chunks(gw):
    with WSClient(gw.port) as c:
        c.send_close(3000, "chunked", chunk=1)
        res = c.expect_close(reply=False)
        assert res.code == 3000, res
        assert res.tcp_closed


def test_client_close_then_server_closes_tcp_first(gw):
    # The client keeps its socket open: it is the server that ends TCP (RFC 6455 7.1.1).
    with WSClient(gw.port) as c:
        c.send_close(1000)
        f = c.recv_frame()
        assert f is not None and f.opcode == OP_CLOSE and f.close_code == 1000, f
        assert c.wait_eof(5.0), "server did not close TCP after answering the close"


def test_server_close_waits_for_client_answer(gateway_factory):
    # A server-initiated close (here idle_timeout's 1001) is followed by reading on: a close
    # sent back 200 ms later is taken and TCP closed, long before close_timeout (10s).
    g = gateway_factory(gateway={"close_timeout": "10s"},
                        heartbeat={"ping_interval": "0", "idle_timeout": "300ms"},
                        routes={"/echo": {"type": "echo"}})
    with WSClient(g.port) as c:
        f = c.recv_frame(timeout=5.0)
        assert f is not None and f.opcode == OP_CLOSE and f.close_code == 1001, f
        frames, eof = c.pump(0.2, auto_pong=False)
        assert not eof and frames == [], "server dropped us without waiting for our close"
        c.send_close(1001)
        assert c.wait_eof(4.0), "server ignored the client's answering close"


def test_server_drops_client_that_never_answers_close(gw):
    # close_timeout = 1s: a client that ignores the server's close is dropped after it.
    with WSClient(gw.port) as c:
        c.send_frame(0x3, b"")
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 1002, f
        t0 = time.monotonic()
        assert c.wait_eof(6.0), "server kept a client that never answered its close"
        assert time.monotonic() - t0 < 6.0
