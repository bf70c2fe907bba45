"""test_history_redis.py - channel history through a real redis-server (issue 11): the wsgate
function library loaded at startup, FCALL wsgate_publish from an application (redis-cli style)
and from clients, positions in the json envelope on every instance, plain PUBLISH unchanged on
routes without history, since= replayed from Redis on another instance then live with no
duplicate or gap, a trimmed range and a lost (restarted, non-persistent) Redis reported as gap
notices, and a message an instance missed reported to its clients."""

import json
import threading
import time

import pytest

from test_pubsub_redis import make_gateway, stop_all
from wsharness import (OP_TEXT, RedisServer, ServerClosed, WSClient, http_status,
                       wait_until)

ROUTES = {
    "/h": {"type": "pubsub", "subscribe": "h", "publish": "h", "envelope": "json",
           "history_size": "1000"},
    "/h-pub": {"type": "pubsub", "subscribe": "sink", "publish": "h"},
    "/small": {"type": "pubsub", "subscribe": "small", "envelope": "json",
               "history_size": "5"},
    "/plain": {"type": "pubsub", "subscribe": "p", "publish": "p"},
}


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    r = RedisServer(str(tmp_path_factory.mktemp("redis")))
    r.start()
    yield r
    r.kill()


@pytest.fixture(scope="module")
def pair(redis, tmp_path_factory):
    gs = [make_gateway(tmp_path_factory, redis, f"h{i}", routes=ROUTES) for i in range(2)]
    yield gs
    stop_all(gs)


def msg(c, timeout=5.0):
    op, payload = c.recv_message(timeout)
    assert op == OP_TEXT, (op, payload)
    return json.loads(payload)


def pos_of(m):
    epoch, off = m["pos"].rsplit(":", 1)
    return epoch, int(off)


def test_fcall_publish_reaches_every_instance_with_positions(redis, pair):
    a, b = pair
    with WSClient(a.port, "/h") as ca, WSClient(b.port, "/h") as cb:
        p1 = redis.command("FCALL", "wsgate_publish", "1", "h", "from-app")
        p2 = redis.command("FCALL", "wsgate_publish", "1", "h", "again")
        p1 = p1.decode() if isinstance(p1, bytes) else p1
        p2 = p2.decode() if isinstance(p2, bytes) else p2
        for c in (ca, cb):
            m1, m2 = msg(c), msg(c)
            assert (m1["pos"], m1["data"]) == (p1, "from-app"), m1
            assert (m2["pos"], m2["data"]) == (p2, "again"), m2
            assert pos_of(m2)[1] == pos_of(m1)[1] + 1
        # a client publishing through wsgate goes through the same function
        with WSClient(a.port, "/h-pub") as pub:
            pub.send_text("client")
        for c in (ca, cb):
            m = msg(c)
            assert pos_of(m) == (pos_of(m1)[0], pos_of(m1)[1] + 2), m
            assert json.loads(m["data"])["data"] == "client" if m["data"].startswith("{") \
                else m["data"] == "client"


def test_plain_publish_unchanged(redis, pair):
    a, _ = pair
    with WSClient(a.port, "/plain") as c:
        redis.command("PUBLISH", "p", "plain message")
        assert c.recv_message() == (OP_TEXT, b"plain message")


@pytest.mark.parametrize("how", ["query", "header", "subprotocol"])
def test_since_replayed_from_redis_on_another_instance(redis, pair, how):
    a, b = pair
    with WSClient(a.port, "/h") as ca:
        redis.command("FCALL", "wsgate_publish", "1", "h", "s0")
        last = msg(ca)
    epoch, off = pos_of(last)
    for i in range(1, 6):
        redis.command("FCALL", "wsgate_publish", "1", "h", f"s{i}")
    # the three ways to pass the position (README, "Delivery guarantees")
    kw = {"query": {"path": f"/h?since={last['pos']}"},
          "header": {"path": "/h", "headers": [("Wsgate-Since", last["pos"])]},
          "subprotocol": {"path": "/h", "protocols": [
              "wsgate.since." + last["pos"].replace(":", "%3A")]}}[how]
    with WSClient(b.port, **kw) as cb:
        got = [msg(cb) for _ in range(5)]
        assert [m["data"] for m in got] == [f"s{i}" for i in range(1, 6)]
        assert [pos_of(m) for m in got] == [(epoch, off + i) for i in range(1, 6)]
        redis.command("FCALL", "wsgate_publish", "1", "h", "live")
        m = msg(cb)
        assert (pos_of(m), m["data"]) == ((epoch, off + 6), "live")
        with pytest.raises(TimeoutError):
            cb.recv_message(0.3)


def test_since_boundary_while_publishing(redis, pair):
    """An application publishes all along (FCALL) while a client hops between the two
    instances every 25 messages with its last position: every offset once, in order."""
    a, b = pair
    with WSClient(a.port, "/h") as ca:
        redis.command("FCALL", "wsgate_publish", "1", "h", "start")
        first = msg(ca)
    epoch, base = pos_of(first)
    n = 400

    def publisher():
        from wsharness import RespConn
        with RespConn(redis.port) as r:
            for i in range(n):
                r.command("FCALL", "wsgate_publish", "1", "h", f"b{i}")
                if i % 40 == 0:
                    time.sleep(0.02)

    t = threading.Thread(target=publisher)
    t.start()
    seen, pos, k = [], first["pos"], 0
    try:
        while len(seen) < n:
            g = pair[k % 2]
            k += 1
            with WSClient(g.port, f"/h?since={pos}") as c:
                for _ in range(25):
                    if len(seen) >= n:
                        break
                    m = msg(c, timeout=10)
                    assert m["type"] == "message", m
                    seen.append(pos_of(m))
                    pos = m["pos"]
    finally:
        t.join()
    assert seen == [(epoch, base + 1 + i) for i in range(n)], seen[:10]


def test_trimmed_since_is_a_gap_notice(redis, pair):
    a, _ = pair
    # exact trimming bound: ~ keeps whole macro nodes (about 100 entries) at least
    for i in range(300):
        redis.command("FCALL", "wsgate_publish", "1", "small", f"t{i}", "5")
    rng = redis.command("FCALL_RO", "wsgate_range", "1", "small", "1", "1")
    epoch = rng[0].decode()
    first, last = int(rng[1]), int(rng[2])
    assert first > 2, rng
    with WSClient(a.port, f"/small?since={epoch}:1") as c:
        gap = msg(c)
        assert gap == {"type": "gap", "channel": "small", "epoch": epoch, "from": 2,
                       "to": first - 1, "reason": "trimmed"}, gap
        got = [pos_of(msg(c))[1] for _ in range(last - first + 1)]
        assert got == list(range(first, last + 1))


def test_redis_restart_without_persistence_is_epoch_changed(tmp_path_factory):
    r = RedisServer(str(tmp_path_factory.mktemp("redis-lost"))).start()
    gs = []
    try:
        g = make_gateway(tmp_path_factory, r, "lost", routes=ROUTES)
        gs.append(g)
        with WSClient(g.port, "/h") as c:
            r.command("FCALL", "wsgate_publish", "1", "h", "before")
            old = msg(c)
        r.kill()
        r.start()
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 10, what="ready again")
        # the function is loaded again by the reconnecting link
        wait_until(lambda: _fcall_ok(r), 10, what="wsgate library loaded again")
        # a worker whose own Redis link is not back yet answers 1013: a client retries
        deadline = time.monotonic() + 10
        while True:
            c = WSClient(g.port, f"/h?since={old['pos']}")
            try:
                gap = msg(c)
                break
            except ServerClosed as e:
                c.close()
                assert b"try again" in (e.frame.close_reason or b""), e
                assert time.monotonic() < deadline, e
                time.sleep(0.2)
        with c:
            assert gap["type"] == "gap" and gap["reason"] == "epoch_changed", gap
            assert gap["epoch"] != pos_of(old)[0]
            m = msg(c)
            assert m["data"] == "after", m
    finally:
        stop_all(gs)
        r.kill()


def _fcall_ok(r):
    try:
        r.command("FCALL", "wsgate_publish", "1", "h", "after")
        return True
    except Exception:  # noqa: BLE001 - NOSCRIPT until the gateway reloads the library
        return False


def test_missed_offset_is_told_to_clients(redis, pair):
    """A message the instance never got (published with the position prefix straight into
    the stream and the channel skipped): the next one reveals the jump, the client is told."""
    a, _ = pair
    with WSClient(a.port, "/h") as c:
        redis.command("FCALL", "wsgate_publish", "1", "h", "one")
        m1 = msg(c)
        epoch, off = pos_of(m1)
        # bump the sequence behind wsgate's back: offset off+1 is never published
        redis.command("HINCRBY", "wsgate:{h}:m", "seq", "1")
        redis.command("FCALL", "wsgate_publish", "1", "h", "three")
        gap = msg(c)
        assert gap == {"type": "gap", "channel": "h", "epoch": epoch, "from": off + 1,
                       "to": off + 1, "reason": "dropped"}, gap
        m3 = msg(c)
        assert pos_of(m3) == (epoch, off + 2) and m3["data"] == "three"


def test_instance_fills_a_jump_from_the_stream(redis, pair):
    """A message appended to the stream but never published (as if this instance missed it):
    the next one reveals the jump, the instance reads the missing one back and delivers it
    first -- the client sees no gap at all."""
    a, _ = pair
    with WSClient(a.port, "/h") as c:
        redis.command("FCALL", "wsgate_publish", "1", "h", "one")
        m1 = msg(c)
        epoch, off = pos_of(m1)
        seq = redis.command("HINCRBY", "wsgate:{h}:m", "seq", "1")
        redis.command("XADD", "wsgate:{h}:s", f"{seq}-1", "d", "missed")
        redis.command("FCALL", "wsgate_publish", "1", "h", "three")
        m2, m3 = msg(c), msg(c)
        assert (pos_of(m2), m2["data"]) == ((epoch, off + 1), "missed"), m2
        assert (pos_of(m3), m3["data"]) == ((epoch, off + 2), "three"), m3


def test_no_gap_when_subscribers_are_cut_off(redis, pair):
    """Redis drops every subscriber connection (CLIENT KILL TYPE pubsub) while an application
    publishes: both instances resubscribe and read back what they missed; every client gets
    every offset once, in order, and no gap notice."""
    a, b = pair
    n = 300
    with WSClient(a.port, "/h") as ca, WSClient(b.port, "/h") as cb:
        redis.command("FCALL", "wsgate_publish", "1", "h", "start")
        epoch, base = pos_of(msg(ca))
        assert pos_of(msg(cb)) == (epoch, base)

        def publisher():
            from wsharness import RespConn
            with RespConn(redis.port) as r:
                for i in range(n):
                    r.command("FCALL", "wsgate_publish", "1", "h", f"k{i}")
                    if i == n // 3:
                        r.command("CLIENT", "KILL", "TYPE", "pubsub")
                    time.sleep(0.003)

        t = threading.Thread(target=publisher)
        t.start()
        try:
            for c in (ca, cb):
                got = []
                while len(got) < n:
                    m = msg(c, timeout=15)
                    assert m["type"] == "message", m
                    got.append(pos_of(m))
                assert got == [(epoch, base + 1 + i) for i in range(n)], got[:5]
        finally:
            t.join()
    for g in pair:
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 10, what="ready")


def test_malformed_position_header_dropped_and_logged(redis, pair):
    a, _ = pair
    with WSClient(a.port, "/plain") as c:
        for _ in range(50):
            redis.command("PUBLISH", "p", b"\x00WSGpnot a position\nx")
        redis.command("PUBLISH", "p", "after")
        assert c.recv_message() == (OP_TEXT, b"after")
    wait_until(lambda: "malformed position header" in a.stderr(), 5, what="logged")
    assert a.stderr().count("malformed position header") <= 2, "not rate limited"
