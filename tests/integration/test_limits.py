"""test_limits.py - Autobahn 9.x-like: max_message_size is exact (a message of exactly that
size is echoed, one byte more closes with 1009, in one frame or across fragments, decided from
the frame header without waiting for the payload); a 16 MiB message passes when the limit is
raised; unmasked client frames fail with 1002."""

import pytest

from wsharness import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WSClient,
                       build_frame, close_payload, start_gateway)

MAX = 100000
GATEWAY_SETTINGS = {"gateway": {"max_message_size": str(MAX)}}


def data(n, opcode=OP_BINARY):
    if opcode == OP_TEXT:
        return (b"limit-test " * (n // 11 + 1))[:n]
    return bytes(i % 251 for i in range(n))


def fragments(opcode, parts):
    return b"".join(build_frame(opcode if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
                    for i, p in enumerate(parts))


def assert_too_big(c):
    res = c.expect_close()
    assert res.code == 1009, res
    assert [f for f in res.frames_before if f.fin] == [], \
        f"no complete message may be echoed: {res!r}"
    assert res.tcp_closed, res
    return res


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_exact_max_single_frame_echoed(gw, opcode):
    with WSClient(gw.port) as c:
        c.send_frame(opcode, data(MAX, opcode))
        assert c.recv_message() == (opcode, data(MAX, opcode))


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_max_plus_one_single_frame_1009(gw, opcode):
    with WSClient(gw.port) as c:
        c.send_frame(opcode, data(MAX + 1, opcode))
        assert_too_big(c)


def test_exact_max_across_fragments_echoed(gw):
    parts = [data(MAX)[:40000], data(MAX)[40000:40001], data(MAX)[40001:]]
    with WSClient(gw.port) as c:
        c.send_raw(fragments(OP_BINARY, parts))
        assert c.recv_message() == (OP_BINARY, data(MAX))


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_max_plus_one_across_fragments_1009(gw, opcode):
    whole = data(MAX + 1, opcode)
    with WSClient(gw.port) as c:
        c.send_raw(fragments(opcode, [whole[:MAX], whole[MAX:]]))
        assert_too_big(c)


def test_many_small_fragments_over_max_1009(gw):
    part = b"z" * 1000
    with WSClient(gw.port) as c:
        c.send_raw(fragments(OP_BINARY, [part] * 101))  # 101000 bytes
        assert_too_big(c)


def test_oversized_header_alone_1009(gw):
    # Only the header announcing MAX+1 bytes is sent: the gateway must not wait for them.
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_BINARY, b"", declared_length=MAX + 1))
        assert_too_big(c)


def test_huge_64bit_length_header_alone_1009(gw):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_BINARY, b"", declared_length=1 << 40))
        assert_too_big(c)


def test_oversized_continuation_header_1009(gw):
    # First fragment within the limit, then a continuation header that would pass it.
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, data(MAX - 10, OP_TEXT), fin=False)
                   + build_frame(OP_CONT, b"", declared_length=11))
        assert_too_big(c)


def test_control_frames_do_not_count_toward_limit(gw):
    whole = data(MAX)
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_BINARY, whole[:MAX // 2], fin=False)
                   + build_frame(OP_PING, b"p" * 125)
                   + build_frame(OP_CONT, whole[MAX // 2:], fin=True))
        controls = []
        assert c.recv_message(controls=controls, auto_pong=False) == (OP_BINARY, whole)
        assert [(f.opcode, f.payload) for f in controls] == [(OP_PONG, b"p" * 125)]


def test_limit_is_per_message(gw):
    with WSClient(gw.port) as c:
        for i in range(3):
            c.send_frame(OP_BINARY, data(MAX))
            assert c.recv_message() == (OP_BINARY, data(MAX)), f"message {i}"
        c.send_raw(fragments(OP_TEXT, [data(MAX // 2, OP_TEXT), data(MAX // 2, OP_TEXT)]))
        assert c.recv_message() == (OP_TEXT, data(MAX // 2, OP_TEXT) * 2)


@pytest.mark.parametrize("opcode,payload", [(OP_TEXT, b"unmasked"), (OP_BINARY, b"\x00\x01"),
                                            (OP_PING, b"p"), (OP_CLOSE, close_payload(1000))],
                         ids=["text", "binary", "ping", "close"])
def test_unmasked_client_frame_1002(gw, opcode, payload):
    with WSClient(gw.port) as c:
        c.send_frame(opcode, payload, mask=False)
        res = c.expect_close()
        assert res.code == 1002, res
        assert res.frames_before == [], res
        assert res.tcp_closed


def test_unmasked_after_masked_message(gw):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, b"masked") + build_frame(OP_TEXT, b"not", mask=False))
        res = c.expect_close()
        assert res.code == 1002, res
        assert [(f.opcode, f.payload) for f in res.frames_before] == [(OP_TEXT, b"masked")]


# ---- 16 MiB with max_message_size raised to 32MiB


@pytest.fixture(scope="module")
def big_gw(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="big",
                      gateway={"max_message_size": "32MiB"})
    yield g
    g.stop()


SIXTEEN_MIB = 16 * 1024 * 1024


def test_16mib_binary_single_frame(big_gw):
    payload = bytes(range(256)) * (SIXTEEN_MIB // 256)
    with WSClient(big_gw.port, timeout=30) as c:
        c.send_frame(OP_BINARY, payload)
        op, got = c.recv_message(timeout=30)
        assert op == OP_BINARY and len(got) == SIXTEEN_MIB and got == payload


def test_16mib_text_in_fragments(big_gw):
    unit = "心跳检测 κόσμε 😀 ".encode()
    payload = (unit * (SIXTEEN_MIB // len(unit) + 1))[:SIXTEEN_MIB]
    while True:  # cut on a character boundary so the whole message is valid UTF-8
        try:
            payload.decode("utf-8")
            break
        except UnicodeDecodeError:
            payload = payload[:-1]
    # 1 MiB fragments split characters between fragments.
    parts = [payload[i:i + (1 << 20)] for i in range(0, len(payload), 1 << 20)]
    with WSClient(big_gw.port, timeout=30) as c:
        c.send_raw(fragments(OP_TEXT, parts))
        op, got = c.recv_message(timeout=30)
        assert op == OP_TEXT and got == payload


def test_over_32mib_rejected_on_raised_limit(big_gw):
    with WSClient(big_gw.port) as c:
        c.send_raw(build_frame(OP_BINARY, b"", declared_length=32 * 1024 * 1024 + 1))
        res = c.expect_close()
        assert res.code == 1009, res
