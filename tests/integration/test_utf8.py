"""test_utf8.py - Autobahn 6.x: text messages must be UTF-8. Valid multi-byte texts (whole,
fragmented at every byte, trickled in 1-byte chunks) are echoed; invalid ones (overlongs,
surrogates, > U+10FFFF, stray bytes, truncation) fail with 1007, also when the bad sequence
straddles two fragments; and validation fails fast, at the first bad byte, without waiting for
the rest of the frame."""

import time

import pytest

from wsharness import (OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WSClient, build_frame)

VALID = {
    "greek": "κόσμε".encode(),
    "latin": "Hello-µ@ßöäüàá-UTF-8!!".encode(),
    "cjk-emoji": "心跳检测 😀 𝄞".encode(),
    "nul": b"a\x00b",
    "u007f": b"\x7f",
    "u0080": b"\xc2\x80",
    "u07ff": b"\xdf\xbf",
    "u0800": b"\xe0\xa0\x80",
    "ud7ff": b"\xed\x9f\xbf",
    "ue000": b"\xee\x80\x80",
    "ufeff-bom": b"\xef\xbb\xbf",
    "ufffd": b"\xef\xbf\xbd",
    "ufffe-nonchar": b"\xef\xbf\xbe",
    "uffff-nonchar": b"\xef\xbf\xbf",
    "u10000": b"\xf0\x90\x80\x80",
    "u1ffff": b"\xf0\x9f\xbf\xbf",
    "u10ffff": b"\xf4\x8f\xbf\xbf",
}

INVALID = {
    "lone-cont-80": b"\x80",
    "lone-cont-bf": b"\xbf",
    "cont-run": b"\x80\xbf\x80\xbf",
    "overlong-c080": b"\xc0\x80",
    "overlong-c1bf": b"\xc1\xbf",
    "overlong-slash-2": b"\xc0\xaf",
    "overlong-e08080": b"\xe0\x80\x80",
    "overlong-e09fbf": b"\xe0\x9f\xbf",
    "overlong-slash-3": b"\xe0\x80\xaf",
    "overlong-f0808080": b"\xf0\x80\x80\x80",
    "overlong-f08fbfbf": b"\xf0\x8f\xbf\xbf",
    "overlong-slash-4": b"\xf0\x80\x80\xaf",
    "surrogate-d800": b"\xed\xa0\x80",
    "surrogate-dbff": b"\xed\xaf\xbf",
    "surrogate-dc00": b"\xed\xb0\x80",
    "surrogate-dfff": b"\xed\xbf\xbf",
    "surrogate-pair": b"\xed\xa0\x80\xed\xb0\x80",
    "above-10ffff-f490": b"\xf4\x90\x80\x80",
    "above-10ffff-f5": b"\xf5\x80\x80\x80",
    "above-10ffff-f7": b"\xf7\xbf\xbf\xbf",
    "five-byte": b"\xf8\x88\x80\x80\x80",
    "six-byte": b"\xfc\x84\x80\x80\x80\x80",
    "fe": b"\xfe",
    "ff": b"\xff",
    "fefeffff": b"\xfe\xfe\xff\xff",
    "c2-then-ascii": b"\xc2A",
    "e1-then-ascii": b"\xe1\x80A",
    "truncated-2": b"\xce",
    "truncated-3": b"\xe2\x82",
    "truncated-4": b"\xf0\x90\x80",
}


def assert_fails(c, code=1007):
    res = c.expect_close()
    assert res.code == code, res
    assert [f for f in res.frames_before if f.fin] == [], res
    assert res.tcp_closed, res
    return res


@pytest.mark.parametrize("data", list(VALID.values()), ids=list(VALID))
def test_valid_text_echoed(gw, data):
    with WSClient(gw.port) as c:
        c.send_frame(OP_TEXT, data)
        assert c.recv_message() == (OP_TEXT, data)


def test_valid_text_in_one_byte_chunks(gw):
    data = "κόσμε 心跳检测 😀".encode()
    with WSClient(gw.port) as c:
        c.send_frame(OP_TEXT, data, chunk=1)
        assert c.recv_message() == (OP_TEXT, data)


def test_valid_text_one_byte_per_fragment(gw):
    # Every multi-byte character straddles fragments (Autobahn 6.2.3/6.2.4).
    data = "κόσμε 心跳检测 😀 \U0010ffff".encode()
    frames = [build_frame(OP_TEXT if i == 0 else OP_CONT, data[i:i + 1], fin=(i == len(data) - 1))
              for i in range(len(data))]
    with WSClient(gw.port) as c:
        c.send_raw(b"".join(frames))
        assert c.recv_message() == (OP_TEXT, data)


def test_valid_text_split_at_every_position(gw):
    data = "aκ心😀z".encode()
    with WSClient(gw.port) as c:
        for k in range(len(data) + 1):
            c.send_raw(build_frame(OP_TEXT, data[:k], fin=False)
                       + build_frame(OP_CONT, data[k:], fin=True))
            assert c.recv_message() == (OP_TEXT, data), f"split at {k}"


@pytest.mark.parametrize("data", list(INVALID.values()), ids=list(INVALID))
def test_invalid_text_fails_1007(gw, data):
    with WSClient(gw.port) as c:
        c.send_frame(OP_TEXT, data)
        assert_fails(c)


@pytest.mark.parametrize("bad", [INVALID["surrogate-d800"], INVALID["above-10ffff-f490"],
                                 INVALID["overlong-c080"], INVALID["ff"]],
                         ids=["surrogate", "above-10ffff", "overlong", "ff"])
def test_invalid_inside_valid_text_fails_1007(gw, bad):
    with WSClient(gw.port) as c:
        c.send_frame(OP_TEXT, "κόσμε".encode() + bad + b"edited")
        assert_fails(c)


def test_text_echoed_before_invalid_one(gw):
    with WSClient(gw.port) as c:
        c.send_raw(build_frame(OP_TEXT, "κόσμε".encode()) + build_frame(OP_TEXT, b"\xc0\x80"))
        res = c.expect_close()
        assert res.code == 1007, res
        assert [(f.opcode, f.payload) for f in res.frames_before] == \
            [(OP_TEXT, "κόσμε".encode())]


@pytest.mark.parametrize("parts", [
    ["κόσμε".encode() + b"\xed", b"\xa0\x80edited"],   # surrogate across the boundary
    [b"\xf4", b"\x90\x80\x80"],                        # > U+10FFFF across the boundary
    [b"\xe0", b"\x80\x80"],                            # overlong across the boundary
    [b"ok", b"\xff", b"more"],                         # bad byte alone in the middle
    [b"\xe2\x82", b""],                                # truncated at the message's end
    ["κόσμε".encode(), b"\xce"],                       # truncated in the last fragment
], ids=["surrogate", "above-max", "overlong", "middle-ff", "trunc-empty-last",
        "trunc-last"])
def test_invalid_across_fragments_fails_1007(gw, parts):
    frames = b"".join(build_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
                      for i, p in enumerate(parts))
    with WSClient(gw.port) as c:
        c.send_raw(frames)
        assert_fails(c)


def test_fail_fast_bad_first_chunk_rest_never_sent(gw):
    # A 100-byte text frame whose first bytes already hold an invalid byte; the other bytes
    # never come. The gateway must answer 1007 without waiting for them.
    frame = build_frame(OP_TEXT, b"abc\xff" + b"x" * 96)
    header = 2 + 4
    with WSClient(gw.port) as c:
        c.send_raw(frame[:header + 4])
        assert_fails(c)


def test_fail_fast_after_valid_prefix(gw):
    # Autobahn 6.4.3: valid part, pause, invalid part, pause: close before the rest comes.
    payload = "κόσμε".encode() + b"\xf4\x90\x80\x80" + "edited".encode()
    frame = build_frame(OP_TEXT, payload)
    header = 2 + 4
    first = header + len("κόσμε".encode())
    with WSClient(gw.port) as c:
        c.send_raw(frame[:first])
        frames, eof = c.pump(0.3, auto_pong=False)
        assert frames == [] and not eof, "a valid prefix must not end the connection"
        c.send_raw(frame[first:first + 4])
        t0 = time.monotonic()
        assert_fails(c)
        assert time.monotonic() - t0 < 5


def test_fail_fast_in_second_fragment(gw):
    # Autobahn 6.4.1/6.4.2: a complete valid first fragment, then a fragment whose first bytes
    # are invalid; the rest of that fragment and the final one are never sent.
    f1 = build_frame(OP_TEXT, "κόσμε".encode(), fin=False)
    f2 = build_frame(OP_CONT, b"\xf4\x90\x80\x80" + b"y" * 50, fin=False)
    with WSClient(gw.port) as c:
        c.send_raw(f1 + f2[:6 + 4])
        assert_fails(c)


def test_fail_fast_two_byte_prefix_decides(gw):
    # 0xED 0xA0 starts a surrogate: invalid as soon as the second byte is seen.
    frame = build_frame(OP_TEXT, b"abc\xed\xa0\x80" + b"z" * 40)
    with WSClient(gw.port) as c:
        c.send_raw(frame[:6 + 5])
        assert_fails(c)


def test_binary_is_not_validated(gw):
    data = b"".join(INVALID.values())
    with WSClient(gw.port) as c:
        c.send_frame(OP_BINARY, data)
        assert c.recv_message() == (OP_BINARY, data)


def test_ping_payload_is_not_validated(gw):
    with WSClient(gw.port) as c:
        c.send_frame(OP_PING, b"\xff\xfe\xed\xa0\x80")
        f = c.recv_control(OP_PONG)
        assert f.payload == b"\xff\xfe\xed\xa0\x80"
