"""test_fragmentation.py - Autobahn 5.x: fragmented text and binary messages are echoed as one
message; control frames may come between fragments and are answered at once; continuation
without a start, a new data frame inside a fragmented message and fragmented control frames
fail the connection with 1002."""

import pytest

from wsharness import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WSClient,
                       build_frame, close_payload)


def fragments(opcode, parts):
    """Frames carrying parts as one message: opcode first, continuations after."""
    out = []
    for i, p in enumerate(parts):
        out.append(build_frame(opcode if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1)))
    return out


def assert_fails_1002(c, before=()):
    res = c.expect_close()
    assert res.code == 1002, res
    complete = [(f.opcode, f.payload) for f in res.frames_before if f.fin]
    assert complete == list(before), res
    assert res.tcp_closed, res
    return res


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
@pytest.mark.parametrize("parts", [[b"frag", b"ment"], [b"a", b"b", b"c", b"d", b"e"],
                                   [b"", b"x", b""], [b"", b""], [b"x" * 300, b"y" * 70000]],
                         ids=["2", "5", "empty-ends", "all-empty", "16-and-64-bit"])
def test_fragmented_message_echoed_as_one(gw, opcode, parts):
    with WSClient(gw.port) as c:
        c.send_raw(b"".join(fragments(opcode, parts)))
        assert c.recv_message() == (opcode, b"".join(parts))


def test_fragments_sent_in_separate_packets(gw):
    parts = [b"Hello", b", ", b"fragmented ", b"world"]
    with WSClient(gw.port) as c:
        for fr in fragments(OP_TEXT, parts):
            c.send_raw(fr)
        assert c.recv_message() == (OP_TEXT, b"Hello, fragmented world")


def test_fragments_in_one_byte_chunks(gw):
    with WSClient(gw.port) as c:
        c.send_raw(b"".join(fragments(OP_BINARY, [b"\x00\x01", b"\x02", b"\x03\x04"])), chunk=1)
        assert c.recv_message() == (OP_BINARY, b"\x00\x01\x02\x03\x04")


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_ping_between_fragments_answered_first(gw, opcode):
    # Autobahn 5.6/5.7: the pong comes while the message is incomplete, before its echo.
    f1, f2 = fragments(opcode, [b"fragment1", b"fragment2"])
    with WSClient(gw.port) as c:
        c.send_raw(f1 + build_frame(OP_PING, b"between") + f2)
        pong = c.recv_frame()
        assert pong.opcode == OP_PONG and pong.payload == b"between", pong
        assert c.recv_message() == (opcode, b"fragment1fragment2")


def test_ping_between_fragments_separate_packets(gw):
    f1, f2 = fragments(OP_TEXT, [b"part one ", b"part two"])
    with WSClient(gw.port) as c:
        c.send_raw(f1)
        c.send_ping(b"p")
        pong = c.recv_frame()  # answered before the message can be complete
        assert pong.opcode == OP_PONG and pong.payload == b"p", pong
        c.send_raw(f2)
        assert c.recv_message() == (OP_TEXT, b"part one part two")


def test_pong_between_fragments_ignored(gw):
    f1, f2 = fragments(OP_TEXT, [b"a", b"b"])
    with WSClient(gw.port) as c:
        c.send_raw(f1 + build_frame(OP_PONG, b"unsolicited") + f2)
        controls = []
        assert c.recv_message(controls=controls, auto_pong=False) == (OP_TEXT, b"ab")
        assert controls == []


def test_close_between_fragments(gw):
    f1, _ = fragments(OP_TEXT, [b"unfinished", b"never"])
    with WSClient(gw.port) as c:
        c.send_raw(f1 + build_frame(OP_CLOSE, close_payload(1000, "bye")))
        res = c.expect_close(reply=False)
        assert res.code == 1000, res
        assert [f for f in res.frames_before if f.fin] == [], res
        assert res.tcp_closed


@pytest.mark.parametrize("fin", [True, False], ids=["fin", "nofin"])
def test_continuation_without_start_fails_1002(gw, fin):
    with WSClient(gw.port) as c:
        c.send_frame(OP_CONT, b"orphan", fin=fin)
        assert_fails_1002(c)


def test_continuation_after_complete_message_fails_1002(gw):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, b"done") + build_frame(OP_CONT, b"late"))
        assert_fails_1002(c, before=[(OP_TEXT, b"done")])


@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
@pytest.mark.parametrize("second_fin", [True, False], ids=["fin", "nofin"])
def test_new_data_frame_inside_fragmented_message_fails_1002(gw, second, second_fin):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, b"start", fin=False)
                   + build_frame(second, b"intruder", fin=second_fin))
        assert_fails_1002(c)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE], ids=["ping", "pong", "close"])
def test_fragmented_control_fails_1002(gw, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"ctl"
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(opcode, payload, fin=False) + build_frame(OP_CONT, b"more"))
        assert_fails_1002(c)


def test_fragmented_control_inside_fragmented_message_fails_1002(gw):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, b"a", fin=False) + build_frame(OP_PING, b"p", fin=False)
                   + build_frame(OP_CONT, b"b"))
        assert_fails_1002(c)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_many_one_byte_fragments(gw, opcode):
    data = (b"0123456789" * 100)
    with WSClient(gw.port) as c:
        c.send_raw(b"".join(fragments(opcode, [data[i:i + 1] for i in range(len(data))])))
        assert c.recv_message() == (opcode, data)


def test_many_fragments_with_pings_interleaved(gw):
    parts = [bytes([65 + i % 26]) for i in range(200)]
    frames = fragments(OP_TEXT, parts)
    stream = b""
    for i, fr in enumerate(frames):
        stream += fr
        if i % 20 == 0:
            stream += build_frame(OP_PING, str(i).encode())
    with WSClient(gw.port) as c:
        c.send_raw(stream)
        controls = []
        assert c.recv_message(controls=controls, auto_pong=False) == (OP_TEXT, b"".join(parts))
        assert [(f.opcode, f.payload) for f in controls] == \
            [(OP_PONG, str(i).encode()) for i in range(0, 200, 20)]


def test_messages_after_fragmented_one_still_work(gw):
    with WSClient(gw.port) as c:
        c.send_raw(b"".join(fragments(OP_BINARY, [b"1", b"2"])) + build_frame(OP_TEXT, b"3"))
        assert c.recv_message() == (OP_BINARY, b"12")
        assert c.recv_message() == (OP_TEXT, b"3")
