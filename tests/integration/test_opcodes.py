"""test_opcodes.py - Autobahn 4.x: reserved data opcodes 3-7 and reserved control opcodes
0xB-0xF fail the connection with 1002, alone or after a valid message."""

import pytest

from wsharness import OP_PING, OP_TEXT, WSClient, build_frame

RESERVED = [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF]


@pytest.mark.parametrize("opcode", RESERVED, ids=[f"op{o:X}" for o in RESERVED])
@pytest.mark.parametrize("payload", [b"", b"reserved payload"], ids=["empty", "payload"])
def test_reserved_opcode_fails_1002(gw, opcode, payload):
    with WSClient(gw.port) as c:
        c.send_frame(opcode, payload)
        res = c.expect_close()
        assert res.code == 1002, res
        assert res.frames_before == [], res
        assert res.tcp_closed


@pytest.mark.parametrize("opcode", [0x5, 0xD], ids=["op5", "opD"])
def test_reserved_opcode_after_message(gw, opcode):
    # Autobahn 4.1.3 / 4.2.3: text, reserved opcode, ping: the text is echoed, then 1002,
    # and the ping after the bad frame is not answered.
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, b"Hello, world!") + build_frame(opcode, b"")
                   + build_frame(OP_PING, b""))
        res = c.expect_close()
        assert res.code == 1002, res
        assert [(f.opcode, f.payload) for f in res.frames_before] == \
            [(OP_TEXT, b"Hello, world!")], res
        assert res.tcp_closed


def test_reserved_opcode_in_chunks(gw):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, b"first") + build_frame(0xB, b"x" * 20), chunk=1)
        res = c.expect_close()
        assert res.code == 1002, res
        assert [(f.opcode, f.payload) for f in res.frames_before] == [(OP_TEXT, b"first")]
