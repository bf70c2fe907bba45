"""test_pingpong.py - Autobahn 2.x: pings are answered with pongs carrying the same payload,
in order; control frame limits (125 bytes, no fragmentation) fail the connection with 1002;
unsolicited pongs are ignored."""

import pytest

from wsharness import OP_CONT, OP_PING, OP_PONG, OP_TEXT, WSClient, build_frame


def expect_pong(c, payload):
    f = c.recv_control(OP_PONG)
    assert f.payload == payload
    assert f.fin


@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(256))[:125],
                                     "κόσμε".encode()], ids=["empty", "text", "125binary",
                                                               "utf8"])
def test_ping_answered_with_same_payload(gw, payload):
    with WSClient(gw.port) as c:
        c.send_ping(payload)
        expect_pong(c, payload)


def test_ping_126_bytes_fails_1002(gw):
    with WSClient(gw.port) as c:
        c.send_ping(b"x" * 126)
        res = c.expect_close()
        assert res.code == 1002, res
        assert res.frames_before == [], "no pong may be sent for an oversized ping"
        assert res.tcp_closed


def test_ping_126_bytes_in_7bit_field_header_only(gw):
    # Header says 126 => 16-bit length follows; declare 126 there and send nothing more:
    # the frame is invalid from its header alone.
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_PING, b"", declared_length=126))
        res = c.expect_close()
        assert res.code == 1002, res


def test_unsolicited_pong_ignored(gw):
    with WSClient(gw.port) as c:
        c.send_pong(b"unsolicited")
        c.send_pong(b"")
        c.send_frame(OP_TEXT, b"after pongs")
        f = c.recv_frame()
        assert f is not None and f.opcode == OP_TEXT and f.payload == b"after pongs", f


def test_unsolicited_pong_then_ping(gw):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_PONG, b"p1") + build_frame(OP_PING, b"ping after pong"))
        f = c.recv_frame()
        assert f.opcode == OP_PONG and f.payload == b"ping after pong", f


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG], ids=["ping", "pong"])
def test_fragmented_control_fails_1002(gw, opcode):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(opcode, b"frag", fin=False) + build_frame(OP_CONT, b"ment"))
        res = c.expect_close()
        assert res.code == 1002, res
        assert res.frames_before == [], res
        assert res.tcp_closed


def test_ten_pings_answered_in_order(gw):
    payloads = [f"ping-{i}".encode() for i in range(10)]
    with WSClient(gw.port) as c:
        c.send_raw(b"".join(build_frame(OP_PING, p) for p in payloads))
        for p in payloads:
            expect_pong(c, p)


def test_ten_pings_one_byte_chunks(gw):
    payloads = [bytes([i]) * (i * 12) for i in range(10)]
    with WSClient(gw.port) as c:
        c.send_raw(b"".join(build_frame(OP_PING, p) for p in payloads), chunk=1)
        for p in payloads:
            expect_pong(c, p)


def test_ping_then_message_order_kept(gw):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, b"one") + build_frame(OP_PING, b"two")
                   + build_frame(OP_TEXT, b"three"))
        f1, f2, f3 = c.recv_frame(), c.recv_frame(), c.recv_frame()
        assert (f1.opcode, f1.payload) == (OP_TEXT, b"one")
        assert (f2.opcode, f2.payload) == (OP_PONG, b"two")
        assert (f3.opcode, f3.payload) == (OP_TEXT, b"three")
