"""test_pubsub_local.py - pubsub routes on the in-process hub (no [redis] section): broadcast to
every client of a route exactly once and in order (the sender included), text and binary;
rooms isolation; channel placeholders from the path and the query (bad characters -> 400);
publishing refused with 1008 where the route has no publish channel; the json envelope; the
welcome frame of announce_id; forced message types; the three slow-consumer policies with the
gateway's memory bounded. The scenario helpers at the top are shared with test_pubsub_redis.py."""

import base64
import json
import re
import socket
import struct
import time

import pytest

from wsharness import (DEFAULT_TIMEOUT, OP_BINARY, OP_CLOSE, OP_TEXT, HarnessError,
                       WSClient, http_request, upgrade_request, vm_rss_kib,
                       wait_until)

# ---------------------------------------------------------------------------------------------
# helpers shared with test_pubsub_redis.py

# "<instance>-<128 random bits in hex>": unguessable, not a counter (issue 17).
ID_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]{32})$")


def numbered(i, opcode):
    """Message i of a sequence: text "msg-<i>" or binary bytes that are not UTF-8."""
    if opcode == OP_TEXT:
        return f"msg-{i:05d}".encode("ascii")
    return b"\xff\x00" + struct.pack("!I", i) + b"\xfe"


def recv_messages(c, n, timeout=DEFAULT_TIMEOUT):
    """The next n data messages [(opcode, payload)], failing with what arrived so far."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        try:
            got.append(c.recv_message(max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            raise HarnessError(f"{c.path}: {len(got)} of {n} messages within {timeout}s; "
                               f"last {got[-3:]!r}") from None
    return got


def assert_silent(c, seconds=0.3):
    """No data message (nor close) reaches c within seconds."""
    frames, eof = c.pump(seconds)
    data = [f for f in frames if f.opcode != 0x9 and f.opcode != 0xA]
    assert not data and not eof, f"{c.path}: unexpected {data!r} eof={eof}"


def welcome_id(c):
    """Reads the announce_id welcome frame; returns the id."""
    op, payload = c.recv_message()
    assert op == OP_TEXT, (op, payload)
    msg = json.loads(payload)
    assert set(msg) == {"type", "id"} and msg["type"] == "welcome", msg
    assert ID_RE.match(msg["id"]), msg
    return msg["id"]


def handshake_status(port, path):
    """The status of an upgrade request to path (101 or the refusal)."""
    resp = http_request(port, upgrade_request(port, path), close_timeout=0)
    return resp.status


def gw_log_since(g, offset):
    return g.stderr()[offset:]


class SmallRcvbufClient(WSClient):
    """A WSClient whose socket has a small SO_RCVBUF set before connect (so the window stays
    small); the test then simply never reads from it."""

    def __init__(self, port, path, rcvbuf=4096, timeout=DEFAULT_TIMEOUT):
        self.port = port
        self.path = path
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.received = []
        self.response = None
        self.key = __import__("wsharness").new_key()
        self.timeout = timeout
        self.handshake()


FLOOD_MSG = 4096
FLOOD_BATCH = 64


def flood_payload(i):
    """Binary under auto too: 0xff never occurs in UTF-8."""
    return b"\xff" + struct.pack("!I", i) + bytes([i & 0xFF]) * (FLOOD_MSG - 5)


def flood_id(payload):
    return struct.unpack("!I", payload[1:5])[0]


def slow_consumer_scenario(g_pub, g_sub, policy, max_queue="64KiB", flood_bytes=48 << 20,
                           pub_path="/flood-pub", fast_path="/fast", sync=None):
    """One publisher (on g_pub) floods channel "flood" with FLOOD_MSG-byte binary messages; a
    fast client (route with a huge max_queue) reads everything; a slow client (route
    /slow-<policy>-<max_queue>, SO_RCVBUF 4 KiB) never reads during the flood.
    The publisher waits for the fast client after each batch so that only the slow client can
    make the gateway hold memory. sync(): called once every client is connected (e.g. to wait
    for Redis subscriptions). Asserts the policy's outcome and a bounded RSS of g_sub."""
    n = flood_bytes // FLOOD_MSG
    log_off = len(g_sub.stderr())
    pub = WSClient(g_pub.port, pub_path)
    fast = WSClient(g_sub.port, fast_path)
    slow = SmallRcvbufClient(g_sub.port, f"/slow-{policy}-{max_queue}")
    try:
        if sync:
            sync()
        rss0 = vm_rss_kib(g_sub.proc.pid)
        rss_max = rss0
        for start in range(0, n, FLOOD_BATCH):
            end = min(n, start + FLOOD_BATCH)
            for i in range(start, end):
                pub.send_binary(flood_payload(i))
            for i, (op, payload) in enumerate(recv_messages(fast, end - start, timeout=20),
                                              start):
                assert op == OP_BINARY and payload == flood_payload(i), \
                    f"fast client: message {i} wrong or missing (got {payload[:8]!r})"
            if (start // FLOOD_BATCH) % 16 == 0:
                rss_max = max(rss_max, vm_rss_kib(g_sub.proc.pid))
        rss_max = max(rss_max, vm_rss_kib(g_sub.proc.pid))
        growth_mib = (rss_max - rss0) / 1024
        # Had the gateway kept the slow client's backlog, it would have grown by ~flood_bytes.
        assert growth_mib < flood_bytes / (1 << 20) / 3, \
            f"gateway RSS grew {growth_mib:.1f} MiB during a {flood_bytes >> 20} MiB flood " \
            f"(policy {policy}): the slow consumer's backlog is not bounded"
        assert pub.is_open(0.05) and fast.is_open(0.05)

        if policy == "close":
            # The close frame is queued behind what was already sent; or, the close timeout
            # having passed unanswered, the connection is dropped. Either way it is closed.
            outcome = read_to_end(slow, timeout=15)
            log = wait_until(lambda: "slow consumer" in gw_log_since(g_sub, log_off) and
                             gw_log_since(g_sub, log_off), 5, what="'slow consumer' log line")
            if outcome["close"] is not None:
                assert outcome["close"].close_code == 1008, outcome
                assert outcome["close"].close_reason == b"slow consumer", outcome
            else:
                assert outcome["eof"], outcome
            ids = outcome["ids"]
            assert ids == sorted(set(ids)), "slow client: messages out of order or repeated"
            assert len(ids) < n, "a closed slow consumer cannot have received the whole flood"
            assert "slow consumer" in log
        else:
            # Stays connected; drains what was kept; then gets new messages again.
            msgs = drain(slow, quiet=1.0, timeout=30)
            ids = [flood_id(p) for op, p in msgs]
            for op, p in msgs:
                assert op == OP_BINARY and p == flood_payload(flood_id(p))
            assert ids == sorted(set(ids)), f"slow client ({policy}): out of order or repeated"
            assert 0 < len(ids) < n, f"slow client ({policy}) got {len(ids)} of {n}"
            if policy == "drop_oldest":
                assert ids[-1] == n - 1, \
                    f"drop_oldest must keep the newest message {n - 1}; last kept {ids[-1]}"
            else:
                assert ids[0] == 0, f"drop_newest must keep the oldest message; first {ids[0]}"
                assert ids[-1] != n - 1, "drop_newest kept the newest message of the flood"
            pub.send_binary(flood_payload(n))
            assert recv_messages(slow, 1) == [(OP_BINARY, flood_payload(n))]
            assert recv_messages(fast, 1) == [(OP_BINARY, flood_payload(n))]
            log = gw_log_since(g_sub, log_off)
            assert log.count("slow consumer: dropping messages") == 1, \
                f"expected the drop warning once:\n{log[-3000:]}"
    finally:
        for c in (pub, fast, slow):
            c.close()


def read_to_end(c, timeout):
    """Reads c until its close frame or EOF: {"ids": data message numbers, "close": frame,
    "eof": bool}. A broken frame at EOF (close dropped mid-write) counts as EOF."""
    out = {"ids": [], "close": None, "eof": False}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            f = c.recv_frame(max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        except HarnessError as e:
            if "inside a frame" in str(e):
                out["eof"] = True
                return out
            raise
        if f is None:
            out["eof"] = True
            return out
        if f.opcode == OP_CLOSE:
            out["close"] = f
            return out
        if f.opcode == OP_BINARY:
            out["ids"].append(flood_id(f.payload))
    raise HarnessError(f"slow client neither closed nor got a close frame in {timeout}s: "
                       f"{len(out['ids'])} messages read")


def drain(c, quiet, timeout):
    """Every data message until none arrives for `quiet` seconds."""
    msgs = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msgs.append(c.recv_message(quiet))
        except TimeoutError:
            return msgs
    raise HarnessError(f"still receiving after {timeout}s ({len(msgs)} messages)")


# ---------------------------------------------------------------------------------------------
# the in-process hub

SLOW_POLICIES = ["close", "drop_oldest", "drop_newest"]
SLOW_QUEUES = ["64KiB", "1MiB"]
SLOW_CASES = [(p, q) for q in SLOW_QUEUES for p in SLOW_POLICIES]
SLOW_ROUTES = {
    "/flood-pub": {"type": "pubsub", "subscribe": "sink", "publish": "flood"},
    "/fast": {"type": "pubsub", "subscribe": "flood", "max_queue": "64MiB"},
}
for _p, _q in SLOW_CASES:
    SLOW_ROUTES[f"/slow-{_p}-{_q}"] = {"type": "pubsub", "subscribe": "flood",
                                       "max_queue": _q, "slow_consumer": _p}

PUBSUB_ROUTES = {
    "/chat": {"type": "pubsub", "subscribe": "chat", "publish": "chat"},
    "/rooms/{room}": {"type": "pubsub", "subscribe": "room:{room}", "publish": "room:{room}"},
    "/q": {"type": "pubsub", "subscribe": "q:{query.topic}", "publish": "q:{query.topic}"},
    "/qr/{room}": {"type": "pubsub", "subscribe": "qr:{room}:{query.tag}, all-qr",
                   "publish": "qr:{room}:{query.tag}"},
    "/feed": {"type": "pubsub", "subscribe": "feed"},
    "/feed-empty": {"type": "pubsub", "subscribe": "feed", "publish": ""},
    "/feed-pub": {"type": "pubsub", "subscribe": "sink", "publish": "feed"},
    "/json": {"type": "pubsub", "subscribe": "ev", "publish": "ev", "envelope": "json",
              "announce_id": "yes"},
    "/welcome": {"type": "pubsub", "subscribe": "chat", "publish": "chat",
                 "announce_id": "yes"},
    "/mt-auto": {"type": "pubsub", "subscribe": "mt", "publish": "mt"},
    "/mt-text": {"type": "pubsub", "subscribe": "mt", "publish": "mt", "message_type": "text"},
    "/mt-binary": {"type": "pubsub", "subscribe": "mt", "publish": "mt",
                   "message_type": "binary"},
}
PUBSUB_ROUTES.update(SLOW_ROUTES)

GATEWAY_SETTINGS = {"routes": PUBSUB_ROUTES}


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_broadcast_all_clients_once_in_order(gw, opcode):
    clients = [WSClient(gw.port, "/chat") for _ in range(20)]
    try:
        n = 200
        for i in range(n):
            clients[0].send_frame(opcode, numbered(i, opcode))
        want = [(opcode, numbered(i, opcode)) for i in range(n)]
        for k, c in enumerate(clients):
            assert recv_messages(c, n) == want, f"client {k} (0 is the sender)"
        for c in clients:
            assert_silent(c, 0.2)
    finally:
        for c in clients:
            c.close()


def test_broadcast_from_several_senders(gw):
    """Each sender's messages arrive in its own order at every client, each exactly once."""
    clients = [WSClient(gw.port, "/chat") for _ in range(4)]
    try:
        for i in range(50):
            for k, c in enumerate(clients):
                c.send_text(f"{k}:{i}")
        for c in clients:
            got = [p.decode() for op, p in recv_messages(c, 200)]
            assert sorted(got) == sorted(f"{k}:{i}" for k in range(4) for i in range(50))
            for k in range(4):
                mine = [int(x.split(":")[1]) for x in got if x.startswith(f"{k}:")]
                assert mine == list(range(50)), f"sender {k} out of order"
            assert_silent(c, 0.1)
    finally:
        for c in clients:
            c.close()


def test_rooms_are_isolated(gw):
    a = [WSClient(gw.port, "/rooms/a") for _ in range(2)]
    b = [WSClient(gw.port, "/rooms/b") for _ in range(2)]
    try:
        a[0].send_text("to a")
        for c in a:
            assert recv_messages(c, 1) == [(OP_TEXT, b"to a")]
        b[1].send_binary(b"\xffto b")
        for c in b:
            assert recv_messages(c, 1) == [(OP_BINARY, b"\xffto b")]
        for c in a + b:
            assert_silent(c, 0.2)
    finally:
        for c in a + b:
            c.close()


@pytest.mark.parametrize("path", ["/rooms/a%20b", "/rooms/a*b", "/rooms/a%2Fb", "/rooms/a%00",
                                  "/rooms/%C3%A9", "/rooms/a{b}", "/q?topic=a%20b",
                                  "/q?topic=a,b", "/q?topic=a/b",
                                  # ':' separates namespaces: no longer a value character
                                  "/rooms/a:b", "/q?topic=conn:1"])
def test_placeholder_bad_characters_400(gw, path):
    assert handshake_status(gw.port, path) == 400
    assert gw.running()


@pytest.mark.parametrize("path", ["/q", "/q?other=1", "/qr/x", "/qr/x?tagg=1"])
def test_missing_query_placeholder_400(gw, path):
    assert handshake_status(gw.port, path) == 400


@pytest.mark.parametrize("value", ["ok.1", "A-Z_0.9", "x" * 100])
def test_placeholder_allowed_characters(gw, value):
    a = WSClient(gw.port, f"/rooms/{value}")
    b = WSClient(gw.port, f"/rooms/{value}")
    other = WSClient(gw.port, "/rooms/ok")
    try:
        a.send_text(value)
        assert recv_messages(b, 1) == [(OP_TEXT, value.encode())]
        assert recv_messages(a, 1) == [(OP_TEXT, value.encode())]
        assert_silent(other, 0.2)
    finally:
        for c in (a, b, other):
            c.close()


def test_query_placeholders_fill_channels(gw):
    t1 = [WSClient(gw.port, "/q?topic=t1"), WSClient(gw.port, "/q?x=1&topic=t1&y=2")]
    t2 = WSClient(gw.port, "/q?topic=t2")
    r1 = WSClient(gw.port, "/qr/r?tag=1")
    r2 = WSClient(gw.port, "/qr/r?tag=2")
    try:
        t1[1].send_text("hello t1")
        for c in t1:
            assert recv_messages(c, 1) == [(OP_TEXT, b"hello t1")]
        assert_silent(t2, 0.2)
        # /qr/{room}?tag= : its own qr:<room>:<tag> plus the shared all-qr
        r1.send_text("r1 only")
        assert recv_messages(r1, 1) == [(OP_TEXT, b"r1 only")]
        assert_silent(r2, 0.2)
        for c in t1 + [t2, r1, r2]:
            assert_silent(c, 0.05)
    finally:
        for c in t1 + [t2, r1, r2]:
            c.close()


@pytest.mark.parametrize("path", ["/feed", "/feed-empty"])
def test_publish_not_allowed_1008(gw, path):
    listener = WSClient(gw.port, path)
    pub = WSClient(gw.port, "/feed-pub")
    c = WSClient(gw.port, path)
    try:
        # The route still delivers what is published on its channel ...
        pub.send_text("news")
        assert recv_messages(c, 1) == [(OP_TEXT, b"news")]
        assert recv_messages(listener, 1) == [(OP_TEXT, b"news")]
        # ... but its clients may not publish.
        c.send_text("may I?")
        res = c.expect_close()
        assert res.code == 1008, res
        assert res.data_frames_before() == [], res
        assert res.tcp_closed, res
        assert_silent(listener, 0.3)
        assert listener.is_open()
    finally:
        for x in (listener, pub, c):
            x.close()


def test_envelope_json(gw):
    a = WSClient(gw.port, "/json")
    b = WSClient(gw.port, "/json")
    try:
        aid, bid = welcome_id(a), welcome_id(b)
        assert aid != bid
        text = 'hé "quoted" \\ back\nslash \t \x01 ✓'
        a.send_text(text)
        for c in (a, b):
            op, payload = recv_messages(c, 1)[0]
            assert op == OP_TEXT
            env = json.loads(payload)
            assert env == {"conn": aid, "route": "/json", "channel": "ev", "type": "text",
                           "data": text}, env
        raw = bytes(range(256)) + b"\xff\x00\x01"
        b.send_binary(raw)
        for c in (a, b):
            op, payload = recv_messages(c, 1)[0]
            assert op == OP_TEXT
            env = json.loads(payload)
            assert set(env) == {"conn", "route", "channel", "type", "data"}, env
            assert (env["conn"], env["route"], env["channel"], env["type"]) == \
                (bid, "/json", "ev", "binary"), env
            assert base64.b64decode(env["data"], validate=True) == raw
        b.send_binary(b"")
        for c in (a, b):
            env = json.loads(recv_messages(c, 1)[0][1])
            assert env["type"] == "binary" and env["data"] == "", env
    finally:
        a.close()
        b.close()


def test_announce_id_welcome_first(gw):
    plain = WSClient(gw.port, "/chat")
    cs = [WSClient(gw.port, "/welcome") for _ in range(5)]
    try:
        ids = []
        for c in cs:
            f = c.recv_frame()
            assert f.opcode == OP_TEXT and f.fin, f
            msg = json.loads(f.payload)
            assert msg["type"] == "welcome" and ID_RE.match(msg["id"]), msg
            ids.append(msg["id"])
        assert len(set(ids)) == len(ids), ids
        assert len({ID_RE.match(i).group(1) for i in ids}) == 1, "one instance, one prefix"
        # Without announce_id nothing precedes the first published message.
        cs[0].send_text("after welcome")
        assert plain.recv_frame().payload == b"after welcome"
        for c in cs:
            assert recv_messages(c, 1) == [(OP_TEXT, b"after welcome")]
    finally:
        for c in cs + [plain]:
            c.close()


def test_message_types(gw):
    auto, text, binary = (WSClient(gw.port, p) for p in ("/mt-auto", "/mt-text", "/mt-binary"))
    try:
        cases = [
            (OP_TEXT, b"plain text", OP_TEXT),
            (OP_BINARY, b"\xff\x00\x01", OP_BINARY),
            (OP_BINARY, "utf-8 in binary \u2713".encode(), OP_TEXT),  # auto: valid UTF-8 -> text
            (OP_TEXT, b"", OP_TEXT),
            (OP_TEXT, "caf\u00e9 \U0001F600".encode(), OP_TEXT),
        ]
        for sent_op, payload, auto_op in cases:
            auto.send_frame(sent_op, payload)
            assert recv_messages(auto, 1) == [(auto_op, payload)], (sent_op, payload)
            assert recv_messages(binary, 1) == [(OP_BINARY, payload)], (sent_op, payload)
            if auto_op == OP_TEXT:
                assert recv_messages(text, 1) == [(OP_TEXT, payload)], (sent_op, payload)
            else:
                text.pump(0.3)  # the invalid-UTF-8 case has its own test below
        for c in (auto, text, binary):
            assert_silent(c, 0.1)
    finally:
        for c in (auto, text, binary):
            c.close()


def test_forced_text_never_sends_invalid_utf8(gw):
    """message_type = text and a payload that is not UTF-8: a text frame cannot carry it
    (RFC 6455 8.1, the client would fail the connection). Whatever the gateway does instead
    (binary, drop, ...), the text client must not receive an invalid text frame and must stay
    usable."""
    pub, text = WSClient(gw.port, "/mt-binary"), WSClient(gw.port, "/mt-text")
    try:
        pub.send_binary(b"\xff\x00\x01")
        frames, eof = text.pump(0.3)
        bad = [f for f in frames if f.opcode == OP_TEXT]
        assert not bad, f"text frame with invalid UTF-8 sent to the client: {bad!r}"
        assert not eof
        pub.send_text("still fine")
        assert drain(text, 0.3, 5)[-1] == (OP_TEXT, b"still fine")
    finally:
        pub.close()
        text.close()


def test_client_churn(gw):
    """Clients coming and going (some closing abruptly) leave the channel usable."""
    for round_ in range(3):
        cs = [WSClient(gw.port, "/rooms/churn") for _ in range(10)]
        for c in cs[:5]:
            c.close()  # abrupt
        for c in cs[5:8]:
            c.send_close(1000)
            assert c.expect_close().code == 1000
        cs[8].send_text(f"round {round_}")
        for c in cs[8:]:
            assert recv_messages(c, 1) == [(OP_TEXT, f"round {round_}".encode())]
            c.close()
    assert gw.running()


@pytest.mark.parametrize("policy,max_queue", SLOW_CASES)
def test_slow_consumer(gw, policy, max_queue):
    slow_consumer_scenario(gw, gw, policy, max_queue)


def test_connections_survive_module(gw):
    """After everything above, a fresh pair still talks (the hub is not left broken)."""
    a, b = WSClient(gw.port, "/chat"), WSClient(gw.port, "/chat")
    try:
        a.send_text("bye")
        assert recv_messages(b, 1) == [(OP_TEXT, b"bye")]
    finally:
        a.close()
        b.close()

