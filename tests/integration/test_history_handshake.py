"""test_history_handshake.py - the resume position passed in the handshake itself, for clients
that cannot change the URL (issue 11 item 4, CONTRACT.md): the `Wsgate-Since` header, and the
`wsgate.since.<encodeURIComponent(since)>` subprotocol for browsers (which can set neither the
URL nor a header conveniently). Each replays exactly as `?since=` does, the 101 names the token
when the route offers nothing the client asked for (a browser fails the handshake otherwise), a
malformed position is 400 whichever way it came, and `?since=` wins when several are given."""

import json
from urllib.parse import quote

import pytest

from test_history import msg, pos_of, publish_n
from wsharness import OP_BINARY, OP_TEXT, WSClient, http_request, upgrade_request

ROUTES = {
    "/h": {"type": "pubsub", "subscribe": "h", "envelope": "json", "history_size": "1000"},
    "/h-pub": {"type": "pubsub", "subscribe": "sink", "publish": "h"},
    "/raw": {"type": "pubsub", "subscribe": "r", "publish": "r", "history_size": "100",
             "subprotocols": "wsgate.meta"},
    "/two": {"type": "pubsub", "subscribe": "room:a, b.c", "envelope": "json",
             "history_size": "100"},
    "/a-pub": {"type": "pubsub", "subscribe": "sink", "publish": "room:a"},
    "/b-pub": {"type": "pubsub", "subscribe": "sink", "publish": "b.c"},
    "/plain": {"type": "pubsub", "subscribe": "p", "publish": "p"},
}

GATEWAY_SETTINGS = {"routes": ROUTES}


def token(since):
    """What a browser writes: 'wsgate.since.' + encodeURIComponent(since)."""
    return "wsgate.since." + quote(since, safe="-_.!~*'()")


def five_then_five(port):
    """Publishes r-0..r-4, returns the position of r-4 once a subscriber saw it, then
    publishes r-5..r-9 (already in the history when the caller resumes)."""
    with WSClient(port, "/h") as s:
        publish_n(port, "/h-pub", "r", 5)
        got = [msg(s) for _ in range(5)]
        publish_n(port, "/h-pub", "r", 5, start=5)
        rest = [msg(s) for _ in range(5)]
    return got[-1], rest


def expect_replay(c, last, rest):
    epoch, off = pos_of(last)
    replay = [msg(c) for _ in range(5)]
    assert [m["data"] for m in replay] == [m["data"] for m in rest]
    assert [pos_of(m) for m in replay] == [(epoch, off + i) for i in range(1, 6)]
    with pytest.raises(TimeoutError):
        c.recv_message(0.3)


def test_header_replays_like_the_query(gw):
    last, rest = five_then_five(gw.port)
    with WSClient(gw.port, "/h", headers=[("Wsgate-Since", last["pos"])]) as c:
        assert c.response.header("Sec-WebSocket-Protocol") is None
        expect_replay(c, last, rest)


def test_subprotocol_replays_and_is_echoed(gw):
    last, rest = five_then_five(gw.port)
    tok = token(last["pos"])
    assert ":" not in tok and "%3A" in tok
    with WSClient(gw.port, "/h", protocols=[tok]) as c:
        # the only token offered: named in the 101, or a browser fails the connection
        assert c.response.header("Sec-WebSocket-Protocol") == tok
        expect_replay(c, last, rest)
        # then live, no duplicate
        publish_n(gw.port, "/h-pub", "r", 1, start=10)
        m = msg(c)
        assert m["data"] == "r-10" and pos_of(m)[1] == pos_of(last)[1] + 6, m


def test_subprotocol_with_meta_on_a_raw_route(gw):
    """The route's own subprotocol is chosen when offered too; the position still counts."""
    with WSClient(gw.port, "/raw", protocols=["wsgate.meta"]) as s:
        with WSClient(gw.port, "/raw") as p:
            p.send_binary(b"\xff\x01one")
            p.send_binary(b"\xff\x02two")
        first = json.loads(s.recv_message()[1])
        assert s.recv_message() == (OP_BINARY, b"\xff\x01one")
        json.loads(s.recv_message()[1])
        assert s.recv_message() == (OP_BINARY, b"\xff\x02two")
    with WSClient(gw.port, "/raw", protocols=[token(first["pos"]), "wsgate.meta"]) as c:
        assert c.response.header("Sec-WebSocket-Protocol") == "wsgate.meta"
        op, meta = c.recv_message()
        assert op == OP_TEXT and json.loads(meta)["pos"].endswith(
            f":{int(first['pos'].rsplit(':', 1)[1]) + 1}"), meta
        assert c.recv_message() == (OP_BINARY, b"\xff\x02two")
    # a raw client without meta resuming through the subprotocol gets the payload alone
    with WSClient(gw.port, "/raw", protocols=[token(first["pos"])]) as c:
        assert c.recv_message() == (OP_BINARY, b"\xff\x02two")


def test_subprotocol_list_form_with_channel_names_holding_colons(gw):
    with WSClient(gw.port, "/two") as s:
        with WSClient(gw.port, "/a-pub") as pa, WSClient(gw.port, "/b-pub") as pb:
            pa.send_text("a1")
            ma = msg(s)
            pb.send_text("b1")
            mb = msg(s)
            pa.send_text("a2")
            pb.send_text("b2")
            msg(s)
            msg(s)
    since = f"room:a@{ma['pos']},b.c@{mb['pos']}"
    for how in ("protocol", "header"):
        kw = ({"protocols": [token(since)]} if how == "protocol"
              else {"headers": [("Wsgate-Since", since)]})
        with WSClient(gw.port, "/two", **kw) as c:
            got = sorted((m["channel"], m["data"]) for m in (msg(c), msg(c)))
            assert got == [("b.c", "b2"), ("room:a", "a2")], how
            with pytest.raises(TimeoutError):
                c.recv_message(0.3)


def test_query_wins_over_header_and_subprotocol(gw):
    last, rest = five_then_five(gw.port)
    epoch, off = pos_of(last)
    older = f"{epoch}:{off - 2}"
    with WSClient(gw.port, f"/h?since={last['pos']}", headers=[("Wsgate-Since", older)],
                  protocols=[token(older)]) as c:
        expect_replay(c, last, rest)
    with WSClient(gw.port, "/h", headers=[("Wsgate-Since", last["pos"])],
                  protocols=[token(older)]) as c:
        expect_replay(c, last, rest)


@pytest.mark.parametrize("how,value", [
    ("header", "x"), ("header", "E:"), ("header", "E:1,F:2"),
    ("protocol", "wsgate.since.E.1"), ("protocol", "wsgate.since.E%3A1%00"),
    ("protocol", "wsgate.since.E%3Ax"), ("protocol", "wsgate.since.a%40E%3A1%2Cb"),
])
def test_malformed_position_is_400(gw, how, value):
    extra = [("Wsgate-Since", value)] if how == "header" else [("Sec-WebSocket-Protocol", value)]
    resp = http_request(gw.port, upgrade_request(gw.port, "/h", extra=extra), close_timeout=0)
    assert resp.status == 400, resp


def test_two_headers_are_400(gw):
    extra = [("Wsgate-Since", "E:1"), ("Wsgate-Since", "E:2")]
    resp = http_request(gw.port, upgrade_request(gw.port, "/h", extra=extra), close_timeout=0)
    assert resp.status == 400, resp


def test_routes_without_history_ignore_the_token(gw):
    """No history: the token is not the route's to answer (the route offers no protocol)."""
    with WSClient(gw.port, "/plain", protocols=[token("E:1")]) as c, \
            WSClient(gw.port, "/plain") as p:
        assert c.response.header("Sec-WebSocket-Protocol") is None
        p.send_text("x")
        assert c.recv_message() == (OP_TEXT, b"x")
