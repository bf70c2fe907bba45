"""test_reserved.py - Autobahn 3.x: RSV bits set without a negotiated extension fail the
connection with 1002, on data and control frames alike; what came before the bad frame is
still answered, what comes after it is not."""

import pytest

from wsharness import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, WSClient, build_frame,
                       close_payload)

RSV_NAMES = {4: "rsv1", 2: "rsv2", 1: "rsv3", 6: "rsv12", 5: "rsv13", 3: "rsv23", 7: "rsv123"}


def assert_fails_1002(c, before=()):
    res = c.expect_close()
    assert res.code == 1002, res
    got = [(f.opcode, f.payload) for f in res.frames_before]
    assert got == list(before), res
    assert res.tcp_closed, res
    return res


@pytest.mark.parametrize("rsv", list(RSV_NAMES), ids=list(RSV_NAMES.values()))
def test_rsv_on_text_fails_1002(gw, rsv):
    with WSClient(gw.port) as c:
        c.send_frame(OP_TEXT, b"Hello, world!", rsv=rsv)
        assert_fails_1002(c)


@pytest.mark.parametrize("rsv", [4, 2, 1], ids=["rsv1", "rsv2", "rsv3"])
@pytest.mark.parametrize("opcode,payload", [(OP_BINARY, b"\x00\xff" * 10), (OP_PING, b"ping"),
                                            (OP_PONG, b"pong"),
                                            (OP_CLOSE, close_payload(1000, "x"))],
                         ids=["binary", "ping", "pong", "close"])
def test_rsv_on_other_opcodes_fails_1002(gw, opcode, payload, rsv):
    with WSClient(gw.port) as c:
        c.send_frame(opcode, payload, rsv=rsv)
        assert_fails_1002(c)


def test_message_before_bad_frame_still_echoed(gw):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, b"good") + build_frame(OP_TEXT, b"bad", rsv=2))
        assert_fails_1002(c, before=[(OP_TEXT, b"good")])


def test_ping_after_bad_frame_not_answered(gw):
    # Autobahn 3.3: text, bad frame, ping sent together: echo, then close; no pong.
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, b"Hello, world!")
                   + build_frame(OP_TEXT, b"Hello, world!", rsv=1)
                   + build_frame(OP_PING, b""))
        assert_fails_1002(c, before=[(OP_TEXT, b"Hello, world!")])


def test_bad_frame_in_chunks_after_good_one(gw):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_BINARY, b"ok") + build_frame(OP_BINARY, b"\x01" * 200, rsv=4)
                   + build_frame(OP_PING, b"p"), chunk=1)
        assert_fails_1002(c, before=[(OP_BINARY, b"ok")])
