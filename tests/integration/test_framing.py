"""test_framing.py - Autobahn 1.x: text and binary messages of every length class echoed
byte-exactly and type-exactly, across the 7-, 16- and 64-bit length encodings, and frames
arriving in arbitrary pieces (one byte at a time, several per packet)."""

import pytest

from wsharness import OP_BINARY, OP_TEXT, WSClient, build_frame

LENGTHS = [0, 125, 126, 127, 128, 65535, 65536]


def payload_for(opcode, n):
    if opcode == OP_TEXT:
        return (b"abcdefghijklmnopqrstuvwxyz0123456789" * (n // 36 + 1))[:n]
    return bytes(i * 7 % 256 for i in range(n))


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_echo_lengths(gw, opcode, n):
    data = payload_for(opcode, n)
    with WSClient(gw.port) as c:
        c.send_frame(opcode, data)
        got_op, got = c.recv_message()
        assert got_op == opcode
        assert len(got) == n
        assert got == data


@pytest.mark.parametrize("n,field", [(125, 125), (126, 126), (65535, 126), (65536, 127)])
def test_client_length_encodings(gw, n, field):
    frame = build_frame(OP_BINARY, payload_for(OP_BINARY, n))
    assert frame[1] & 0x7F == field  # the encoding this case exercises on the server
    with WSClient(gw.port) as c:
        c.send_raw(frame)
        assert c.recv_message() == (OP_BINARY, payload_for(OP_BINARY, n))


def test_text_and_binary_alternate_on_one_connection(gw):
    with WSClient(gw.port) as c:
        for i, n in enumerate(LENGTHS * 2):
            op = OP_TEXT if i % 2 == 0 else OP_BINARY
            data = payload_for(op, n)
            c.send_frame(op, data)
            assert c.recv_message() == (op, data), f"message {i} ({n} bytes)"


@pytest.mark.parametrize("n", [0, 7, 125, 200])
def test_frame_in_one_byte_chunks(gw, n):
    data = payload_for(OP_TEXT, n)
    with WSClient(gw.port) as c:
        c.send_frame(OP_TEXT, data, chunk=1)
        assert c.recv_message() == (OP_TEXT, data)


def test_64bit_frame_header_in_one_byte_chunks(gw):
    data = payload_for(OP_BINARY, 65536)
    frame = build_frame(OP_BINARY, data)
    with WSClient(gw.port) as c:
        c.send_raw(frame[:14], chunk=1, delay=0.005)  # 2 + 8 length + 4 mask
        c.send_raw(frame[14:], chunk=1000)
        assert c.recv_message() == (OP_BINARY, data)


def test_many_messages_in_one_packet(gw):
    msgs = [(OP_TEXT if i % 3 else OP_BINARY, payload_for(OP_TEXT, i)) for i in range(100)]
    with WSClient(gw.port) as c:
        c.send_raw(b"".join(build_frame(op, d) for op, d in msgs))
        for i, (op, d) in enumerate(msgs):
            assert c.recv_message() == (op, d), f"message {i}"


def test_frames_split_across_packets(gw):
    data = [payload_for(OP_BINARY, n) for n in (10, 300, 5)]
    stream = b"".join(build_frame(OP_BINARY, d) for d in data)
    with WSClient(gw.port) as c:
        # Cut points that fall inside headers, mask keys and payloads.
        c.send_raw(stream, chunk=7, delay=0.001)
        for d in data:
            assert c.recv_message() == (OP_BINARY, d)


def test_64bit_length_with_msb_set_fails(gw):
    # RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0.
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_BINARY, b"", declared_length=1 << 63))
        res = c.expect_close()
        assert res.code == 1002, res
        assert res.tcp_closed
