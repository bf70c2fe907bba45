"""test_history.py - channel history on the in-process hub (issue 11, CONTRACT.md): positions
"E:O" in the json envelope and in wsgate.meta frames on raw routes, since= replay then live with
no duplicate and no gap at the boundary (while a publisher keeps publishing), gap notices when
the range was trimmed or the epoch changed, drops of a slow consumer reported as gaps, the drain
close carrying the resume position, since= validated, and a client forging a position header
on a plain route getting nowhere."""

import json
import signal
import threading
import time

import pytest

from test_pubsub_local import SmallRcvbufClient
from wsharness import (OP_BINARY, OP_TEXT, Gateway, HarnessError, WSClient, http_request,
                       upgrade_request, wait_until)

ROUTES = {
    "/h": {"type": "pubsub", "subscribe": "h", "publish": "h", "envelope": "json",
           "history_size": "1000"},
    "/h-pub": {"type": "pubsub", "subscribe": "sink", "publish": "h"},
    "/small": {"type": "pubsub", "subscribe": "small", "publish": "small",
               "envelope": "json", "history_size": "5"},
    "/raw": {"type": "pubsub", "subscribe": "r", "publish": "r", "history_size": "100",
             "subprotocols": "wsgate.meta"},
    "/two": {"type": "pubsub", "subscribe": "a, b", "envelope": "json",
             "history_size": "100"},
    "/a-pub": {"type": "pubsub", "subscribe": "sink", "publish": "a"},
    "/b-pub": {"type": "pubsub", "subscribe": "sink", "publish": "b"},
    "/plain": {"type": "pubsub", "subscribe": "p", "publish": "p"},
    "/slow": {"type": "pubsub", "subscribe": "flood", "envelope": "json",
              "history_size": "100000", "max_queue": "64KiB",
              "slow_consumer": "drop_newest"},
    "/slow-old": {"type": "pubsub", "subscribe": "flood", "envelope": "json",
                  "history_size": "100000", "max_queue": "64KiB",
                  "slow_consumer": "drop_oldest"},
    "/flood-pub": {"type": "pubsub", "subscribe": "sink", "publish": "flood"},
    "/ticker": {"type": "pubsub", "subscribe": "tick", "max_queue": "64KiB",
                "slow_consumer": "conflate", "conflate_key": "json:sym"},
    "/tick-pub": {"type": "pubsub", "subscribe": "sink", "publish": "tick"},
}

GATEWAY_SETTINGS = {"routes": ROUTES}


def msg(c, timeout=5.0):
    op, payload = c.recv_message(timeout)
    assert op == OP_TEXT, (op, payload)
    return json.loads(payload)


def pos_of(m):
    epoch, off = m["pos"].rsplit(":", 1)
    return epoch, int(off)


def publish_n(port, path, prefix, n, start=0):
    with WSClient(port, path) as p:
        for i in range(start, start + n):
            p.send_text(f"{prefix}-{i}")
        # the publisher's messages are taken in order; a round trip on the same worker
        # loop is not needed: the subscribers wait for what they expect


def test_json_envelope_carries_positions(gw):
    with WSClient(gw.port, "/h") as s:
        publish_n(gw.port, "/h-pub", "x", 3)
        got = [msg(s) for _ in range(3)]
        epochs = {pos_of(m)[0] for m in got}
        assert len(epochs) == 1, got
        offs = [pos_of(m)[1] for m in got]
        assert offs == list(range(offs[0], offs[0] + 3)), got
        for i, m in enumerate(got):
            assert m["type"] == "message" and m["channel"] == "h" and m["data"] == f"x-{i}", m


def test_plain_route_unchanged_and_no_forged_positions(gw):
    with WSClient(gw.port, "/plain") as s, WSClient(gw.port, "/plain") as p:
        p.send_text("hello")
        assert s.recv_message() == (OP_TEXT, b"hello")
        forged = b"\x00WSGpE:99\nforged"
        p.send_binary(forged)
        assert s.recv_message()[1] == forged


def test_since_replays_then_live_without_duplicate_or_gap(gw):
    with WSClient(gw.port, "/h") as s:
        publish_n(gw.port, "/h-pub", "r", 5)
        got = [msg(s) for _ in range(5)]
    last = got[-1]["pos"]
    epoch, off = pos_of(got[-1])
    publish_n(gw.port, "/h-pub", "r", 5, start=5)
    # wait until the five are in the history: a fresh subscriber with since sees them
    with WSClient(gw.port, f"/h?since={last}") as s2:
        replay = [msg(s2) for _ in range(5)]
        assert [m["data"] for m in replay] == [f"r-{i}" for i in range(5, 10)]
        assert [pos_of(m) for m in replay] == [(epoch, off + i) for i in range(1, 6)]
        publish_n(gw.port, "/h-pub", "r", 2, start=10)
        live = [msg(s2) for _ in range(2)]
        assert [pos_of(m) for m in live] == [(epoch, off + 6), (epoch, off + 7)]
        with pytest.raises(TimeoutError):
            s2.recv_message(0.3)


def test_since_boundary_under_concurrent_publishing(gw):
    """A publisher on another connection (often another worker) publishes all along while
    clients reconnect with their last position: each sees every offset once, in order."""
    with WSClient(gw.port, "/h") as s:
        publish_n(gw.port, "/h-pub", "c", 1)
        first = msg(s)
    epoch, base = pos_of(first)
    n = 600
    stop = threading.Event()

    def publisher():
        with WSClient(gw.port, "/h-pub") as p:
            for i in range(n):
                p.send_text(f"b-{i}")
                if i % 50 == 0:
                    time.sleep(0.01)
        stop.set()

    t = threading.Thread(target=publisher)
    t.start()
    seen = []
    pos = first["pos"]
    try:
        while len(seen) < n:
            with WSClient(gw.port, f"/h?since={pos}") as c:
                for _ in range(37):
                    if len(seen) >= n:
                        break
                    m = msg(c, timeout=10)
                    seen.append(pos_of(m))
                    pos = m["pos"]
    finally:
        t.join()
    assert seen == [(epoch, base + 1 + i) for i in range(n)], seen[:20]


def test_trimmed_range_is_a_gap_notice(gw):
    with WSClient(gw.port, "/small") as s:
        s.send_text("first")
        first = msg(s)
        epoch, off = pos_of(first)
        for i in range(12):
            s.send_text(f"t-{i}")
        got = [msg(s) for _ in range(12)]
    assert pos_of(got[-1]) == (epoch, off + 12)
    with WSClient(gw.port, f"/small?since={first['pos']}") as c:
        gap = msg(c)
        assert gap == {"type": "gap", "channel": "small", "epoch": epoch, "from": off + 1,
                       "to": off + 7, "reason": "trimmed"}, gap
        rest = [msg(c) for _ in range(5)]
        assert [pos_of(m)[1] for m in rest] == list(range(off + 8, off + 13))
        assert [json.loads(m["data"])["data"] for m in rest] == [f"t-{i}" for i in range(7, 12)]


def test_unknown_epoch_is_epoch_changed(gw):
    with WSClient(gw.port, "/small") as s:
        s.send_text("e")
        cur = msg(s)
    epoch, off = pos_of(cur)
    with WSClient(gw.port, "/small?since=gone-epoch:3") as c:
        gap = msg(c)
        assert gap["type"] == "gap" and gap["reason"] == "epoch_changed", gap
        assert gap["epoch"] == epoch and gap["channel"] == "small", gap
        first_kept = off - min(off, 5) + 1
        assert (gap["from"], gap["to"]) == (1, first_kept - 1), gap
        kept = [msg(c) for _ in range(off - first_kept + 1)]
        assert [pos_of(m)[1] for m in kept] == list(range(first_kept, off + 1))


@pytest.mark.parametrize("since", ["x", "E:", ":1", "E:1,F:2", "a@E:1,b", "E%2:1"])
def test_malformed_since_400(gw, since):
    resp = http_request(gw.port, upgrade_request(gw.port, f"/h?since={since}"), close_timeout=0)
    assert resp.status == 400, resp


def test_raw_meta_subprotocol_shows_positions(gw):
    with WSClient(gw.port, "/raw", protocols=["wsgate.meta"]) as s, \
            WSClient(gw.port, "/raw") as plain:
        assert s.response.header("Sec-WebSocket-Protocol") == "wsgate.meta"
        plain.send_binary(b"\xff\x01raw")
        op, meta = s.recv_message()
        assert op == OP_TEXT
        meta = json.loads(meta)
        assert meta["type"] == "pos" and meta["channel"] == "r", meta
        assert s.recv_message() == (OP_BINARY, b"\xff\x01raw")
        # without the subprotocol: the payload alone
        assert plain.recv_message() == (OP_BINARY, b"\xff\x01raw")
    # since= on a raw route: replay (with positions only for meta clients), notices allowed
    with WSClient(gw.port, f"/raw?since={meta['pos'].rsplit(':', 1)[0]}:0") as c:
        assert c.recv_message() == (OP_BINARY, b"\xff\x01raw")


def test_several_channels_named_since(gw):
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
    with WSClient(gw.port, f"/two?since=a@{ma['pos']},b@{mb['pos']}") as c:
        got = sorted((m["channel"], m["data"]) for m in (msg(c), msg(c)))
        assert got == [("a", "a2"), ("b", "b2")]
        with pytest.raises(TimeoutError):
            c.recv_message(0.3)


@pytest.mark.parametrize("path", ["/slow", "/slow-old"])
def test_slow_consumer_drops_are_gap_notices(gw, path):
    """A client that does not read while 3,000 messages of ~1 KiB go by: afterwards every
    offset is either received or named by exactly one "dropped" gap notice, in order."""
    n = 3000
    c = SmallRcvbufClient(gw.port, path)
    try:
        with WSClient(gw.port, "/flood-pub") as p:
            for i in range(n):
                p.send_text(f"{i:06d}" + "z" * 1000)
        covered = []
        epoch = None
        log = []
        while True:
            m = msg(c, timeout=5)
            log.append((m["type"], m.get("pos"), m.get("from"), m.get("to")))
            if m["type"] == "gap":
                assert m["reason"] == "dropped", m
                covered += list(range(m["from"], m["to"] + 1))
                epoch = epoch or m["epoch"]
            else:
                e, off = pos_of(m)
                epoch = epoch or e
                assert e == epoch, m
                covered.append(off)
            if len(covered) >= n:
                break
        want = list(range(covered[0], covered[0] + n))
        bad = [i for i, (a, b) in enumerate(zip(covered, want)) if a != b]
        if bad:
            b0 = covered[bad[0]]
            near = [x for x in log if (x[1] and abs(int(x[1].rsplit(":", 1)[1]) - b0) < 40)
                    or (x[2] and abs(x[2] - b0) < 40)]
        if bad:
            open("/tmp/hist-near.txt", "w").write("\n".join(map(str, near)))
        assert covered == want, bad[:3]
        assert len(covered) == n
    finally:
        c.close()


def test_drain_close_carries_since(tmp_path):
    g = Gateway(workdir=str(tmp_path), routes=ROUTES)
    g.start()
    try:
        one = WSClient(g.port, "/h")
        two = WSClient(g.port, "/two")
        with WSClient(g.port, "/h-pub") as p, WSClient(g.port, "/a-pub") as pa:
            p.send_text("d1")
            p.send_text("d2")
            pa.send_text("a1")
            last = [msg(one), msg(one)][-1]["pos"]
            alast = msg(two)["pos"]
            g.send_signal(signal.SIGTERM)
            res = one.expect_close()
            assert res.code == 1001, res
            reason = res.reason.decode() if isinstance(res.reason, bytes) else res.reason
            assert reason.split()[-1] == f"since={last}", res
            # several channels: a resume message before the close
            resume = msg(two)
            assert resume["type"] == "resume" and resume["since"]["a"] == alast, resume
            assert set(resume["since"]) == {"a", "b"}, resume
            assert two.expect_close().code == 1001
        g.wait(10)
    finally:
        if g.running():
            g.kill_quietly()


def test_conflate_keeps_the_newest_per_key(gw):
    """A client that does not read while 3,000 ~3 KiB quotes for 5 symbols go by (more than
    the kernel's socket buffers hold, so it lags whatever the speeds) with
    slow_consumer = conflate, conflate_key = json:sym: afterwards it has, per symbol, quotes
    in publishing order ending with the newest one of each symbol."""
    n, syms = 3000, ["A", "B", "C", "D", "E"]
    c = SmallRcvbufClient(gw.port, "/ticker")
    try:
        with WSClient(gw.port, "/tick-pub") as p:
            for i in range(n):
                p.send_text(json.dumps({"sym": syms[i % 5], "seq": i, "pad": "x" * 3000}))
            p.send_text(json.dumps({"sym": "END", "seq": n}))
        got = []
        while True:
            op, payload = c.recv_message(10)
            m = json.loads(payload)
            if m["sym"] == "END":
                break
            got.append(m)
        assert len(got) < n, "nothing was conflated: the test did not make the client lag"
        for k, sym in enumerate(syms):
            seqs = [m["seq"] for m in got if m["sym"] == sym]
            assert seqs == sorted(seqs), (sym, seqs[:10])
            assert seqs[-1] == n - 5 + k, (sym, seqs[-3:])
    finally:
        c.close()
