"""test_pubsub_redis.py - pubsub routes bridged through a real redis-server (started here on a
free loopback port, no persistence): three gateway instances on one Redis deliver every
message to every client exactly once and in order, text and binary; app services publish with
redis-cli; direct messages on wsgate:conn:<id>; one SUBSCRIBE per channel per instance and an
UNSUBSCRIBE when the last client leaves; channel_prefix; placeholders, json envelope,
publish-not-allowed and slow consumers through Redis; and the outage behaviour: Redis killed
and restarted on the same port (clients stay, /readyz 503 then 200, resubscribe, queued
publishes delivered, a flood past publish_queue closed with 1013) and Redis hung (SIGSTOP:
the canary times out, the link is rebuilt)."""

import base64
import json
import re
import struct
import time

import pytest

from test_pubsub_local import (ID_RE, SLOW_CASES, SLOW_ROUTES, assert_silent, drain, handshake_status,
                               numbered, recv_messages, slow_consumer_scenario, welcome_id)
from wsharness import (OP_BINARY, OP_TEXT, Gateway, RedisServer, RespConn, WSClient,
                       add_config_sections, http_status, wait_until)

ROUTES = {
    "/chat": {"type": "pubsub", "subscribe": "chat", "publish": "chat"},
    "/dm": {"type": "pubsub", "subscribe": "dm-all", "publish": "dm-all", "announce_id": "yes"},
    "/rooms/{room}": {"type": "pubsub", "subscribe": "room:{room}", "publish": "room:{room}"},
    "/q": {"type": "pubsub", "subscribe": "q:{query.topic}", "publish": "q:{query.topic}"},
    "/feed": {"type": "pubsub", "subscribe": "feed"},
    "/feed-empty": {"type": "pubsub", "subscribe": "feed", "publish": ""},
    "/json": {"type": "pubsub", "subscribe": "ev", "publish": "ev", "envelope": "json",
              "announce_id": "yes"},
}
ROUTES.update(SLOW_ROUTES)

# Short timers so outages are noticed and repaired within a second or two.
REDIS_KEYS = {"connect_timeout": "1s", "probe_interval": "300ms", "probe_timeout": "3s",
              "reconnect_max": "500ms"}


def make_gateway(tmp_path_factory, redis, name, routes=ROUTES, **redis_keys):
    keys = {"url": f"redis://127.0.0.1:{redis.port}/0"}
    keys.update(REDIS_KEYS)
    keys.update(redis_keys)
    g = Gateway(workdir=str(tmp_path_factory.mktemp(name)), routes=routes)
    add_config_sections(g, {"redis": keys})
    g.start()
    wait_until(lambda: http_status(g.port, "/readyz") == 200, 10,
               what=f"{name} /readyz 200 with Redis up")
    return g


def stop_all(gateways):
    errors = []
    for g in gateways:
        try:
            g.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    r = RedisServer(str(tmp_path_factory.mktemp("redis")))
    r.start()
    yield r
    r.kill()


@pytest.fixture(scope="module")
def trio(redis, tmp_path_factory):
    """Three gateway instances on the module's Redis."""
    gs = [make_gateway(tmp_path_factory, redis, f"gw{i}") for i in range(3)]
    yield gs
    stop_all(gs)


@pytest.fixture
def gws(trio):
    yield trio
    for g in trio:
        assert g.running(), f"wsgate died during this test; stderr:\n{g.stderr()}"


@pytest.fixture
def fresh(tmp_path_factory):
    """For outage tests: a Redis and gateways of their own (the test kills that Redis)."""
    made = {"redis": None, "gws": []}

    def make(n=1, **redis_keys):
        made["redis"] = RedisServer(str(tmp_path_factory.mktemp("redis-own"))).start()
        made["gws"] = [make_gateway(tmp_path_factory, made["redis"], f"own{i}", **redis_keys)
                       for i in range(n)]
        return made["redis"], made["gws"]

    yield make
    try:
        stop_all(made["gws"])
    finally:
        if made["redis"]:
            made["redis"].kill()


class Monitor:
    """MONITOR on a RespConn: the commands Redis executed, as (client address, [args])."""

    LINE = re.compile(r'^[0-9.]+ \[\d+ ([^\]]+)\] (.*)$')

    def __init__(self, redis):
        self.conn = RespConn(redis.port)
        assert self.conn.command("MONITOR") == "OK"

    def read(self, seconds):
        out = []
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = self.conn.read_reply(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return out
            m = self.LINE.match(line)
            if m:
                args = [a.encode("latin-1").decode("unicode_escape")
                        for a in re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2))]
                out.append((m.group(1), args))

    def close(self):
        self.conn.close()


def commands_naming(cmds, verb, channel):
    """(client, args) of the commands `verb` whose arguments include channel."""
    return [(who, args) for who, args in cmds if args and args[0].upper() == verb and
            channel in args[1:]]


def clients_on(gateways, path, per_instance):
    return [[WSClient(g.port, path) for _ in range(per_instance)] for g in gateways]


def close_all(groups):
    for grp in groups:
        for c in (grp if isinstance(grp, list) else [grp]):
            c.close()


# ---------------------------------------------------------------------------------------------
# delivery across instances


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_three_instances_once_in_order(gws, redis, opcode):
    groups = clients_on(gws, "/chat", 3)
    try:
        redis.wait_numsub("chat", 3)
        n = 200
        for i in range(n):
            groups[0][0].send_frame(opcode, numbered(i, opcode))
        want = [(opcode, numbered(i, opcode)) for i in range(n)]
        for gi, grp in enumerate(groups):
            for k, c in enumerate(grp):
                assert recv_messages(c, n) == want, f"instance {gi} client {k}"
        for grp in groups:
            for c in grp:
                assert_silent(c, 0.2)
    finally:
        close_all(groups)


def test_redis_cli_publish_reaches_every_instance(gws, redis):
    groups = clients_on(gws, "/chat", 2)
    try:
        redis.wait_numsub("chat", 3)
        assert redis.cli("PUBLISH", "chat", "hello from redis-cli").strip() == b"3"
        binary = b"\xff\x00\x01bin"
        redis.cli("-x", "PUBLISH", "chat", stdin=binary)
        for grp in groups:
            for c in grp:
                assert recv_messages(c, 2) == [(OP_TEXT, b"hello from redis-cli"),
                                               (OP_BINARY, binary)]
                assert_silent(c, 0.1)
    finally:
        close_all(groups)


def test_direct_message_reaches_one_connection(gws, redis):
    groups = clients_on(gws, "/dm", 2)
    try:
        ids = [[welcome_id(c) for c in grp] for grp in groups]
        flat = [i for grp in ids for i in grp]
        assert len(set(flat)) == len(flat), f"connection ids not unique: {flat}"
        prefixes = [{ID_RE.match(i).group(1) for i in grp} for grp in ids]
        assert all(len(p) == 1 for p in prefixes), prefixes
        assert len(set().union(*prefixes)) == 3, f"instance ids not distinct: {prefixes}"
        redis.wait_numsub("dm-all", 3)
        target = ids[1][1]
        wait_until(lambda: redis.numsub(f"wsgate:conn:{target}") == 1, 5,
                   what=f"wsgate:conn:{target} subscribed once")
        assert redis.cli("PUBLISH", f"wsgate:conn:{target}", "hi").strip() == b"1"
        assert recv_messages(groups[1][1], 1) == [(OP_TEXT, b"hi")]
        for gi, grp in enumerate(groups):
            for k, c in enumerate(grp):
                assert_silent(c, 0.3 if (gi, k) == (0, 0) else 0.05)
        # a route channel still reaches everyone
        groups[2][0].send_text("all")
        for grp in groups:
            for c in grp:
                assert recv_messages(c, 1) == [(OP_TEXT, b"all")]
    finally:
        close_all(groups)


def test_one_subscribe_per_channel_per_instance(gws, redis):
    mon = Monitor(redis)
    chat = clients_on(gws, "/chat", 8)
    rooms = clients_on(gws[:2], "/rooms/numsub", 5)
    dm = [WSClient(gws[0].port, "/dm")]
    try:
        redis.wait_numsub("chat", 3)
        redis.wait_numsub("room:numsub", 2)
        time.sleep(0.3)  # no late extra SUBSCRIBE from the other clients
        # NUMSUB counts subscribed Redis connections: one per instance, however many clients.
        assert redis.numsub("chat") == 3
        assert redis.numsub("room:numsub") == 2
        did = welcome_id(dm[0])
        assert redis.numsub(f"wsgate:conn:{did}") == 1
        # And each instance sent SUBSCRIBE for a channel once, not once per client.
        cmds = mon.read(0.2)
        subs = commands_naming(cmds, "SUBSCRIBE", "room:numsub")
        assert len(subs) == 2 and len({who for who, _ in subs}) == 2, subs
        for c in rooms[0] + rooms[1][:4]:
            c.close()
        time.sleep(0.3)
        assert redis.numsub("room:numsub") == 1, "instance 1 still has a client in the room"
        rooms[1][4].close()
        redis.wait_numsub("room:numsub", 0)
        for c in chat[0]:
            c.close()
        redis.wait_numsub("chat", 2)
        dm[0].close()
        redis.wait_numsub(f"wsgate:conn:{did}", 0)
        close_all(chat)
        redis.wait_numsub("chat", 0)
        cmds = mon.read(0.3)
        unsubs = commands_naming(cmds, "UNSUBSCRIBE", "room:numsub")
        assert len(unsubs) == 2 and len({who for who, _ in unsubs}) == 2, unsubs
        unsubs = commands_naming(cmds, "UNSUBSCRIBE", "chat")
        assert len(unsubs) == 3 and len({who for who, _ in unsubs}) == 3, unsubs
        wait_until(lambda: [ch for ch in redis.channels()
                            if not ch.startswith("wsgate:probe:")] == [], 3,
                   what="no channel left subscribed without a client "
                        f"(now {redis.channels()})")
        probes = [ch for ch in redis.channels() if ch.startswith("wsgate:probe:")]
        assert len(probes) == 3, f"one canary channel per instance: {probes}"
    finally:
        mon.close()
        close_all(chat + rooms + [dm])


def test_placeholders_through_redis(gws, redis):
    assert handshake_status(gws[0].port, "/rooms/a%20b") == 400
    assert handshake_status(gws[1].port, "/q") == 400
    assert handshake_status(gws[2].port, "/q?topic=bad*") == 400
    a = WSClient(gws[0].port, "/rooms/ok.1")
    b = WSClient(gws[1].port, "/rooms/ok.1")
    q = WSClient(gws[2].port, "/q?topic=t.9")
    try:
        redis.wait_numsub("room:ok.1", 2)
        redis.wait_numsub("q:t.9", 1)
        redis.cli("PUBLISH", "room:ok.1", "room msg")
        redis.cli("PUBLISH", "q:t.9", "query msg")
        assert recv_messages(a, 1) == [(OP_TEXT, b"room msg")]
        assert recv_messages(b, 1) == [(OP_TEXT, b"room msg")]
        assert recv_messages(q, 1) == [(OP_TEXT, b"query msg")]
        with RespConn(redis.port) as sub:
            sub.subscribe("q:t.9")
            q.send_text("from client")
            assert sub.next_message() == ("q:t.9", b"from client")
    finally:
        close_all([a, b, q])


def test_envelope_json_through_redis(gws, redis):
    a = WSClient(gws[0].port, "/json")
    b = WSClient(gws[1].port, "/json")
    try:
        aid, bid = welcome_id(a), welcome_id(b)
        redis.wait_numsub("ev", 2)
        with RespConn(redis.port) as app:
            app.subscribe("ev")
            a.send_text("hello \"json\"")
            ch, data = app.next_message()
            env = json.loads(data)
            assert ch == "ev"
            assert env == {"conn": aid, "route": "/json", "channel": "ev", "type": "text",
                           "data": "hello \"json\""}, env
            b.send_binary(b"\xff\x00\x01")
            env = json.loads(app.next_message()[1])
            assert (env["conn"], env["type"]) == (bid, "binary"), env
            assert base64.b64decode(env["data"]) == b"\xff\x00\x01"
        for c in (a, b):
            msgs = recv_messages(c, 2)
            assert [json.loads(p)["conn"] for op, p in msgs] == [aid, bid]
            assert all(op == OP_TEXT for op, p in msgs)
    finally:
        close_all([a, b])


@pytest.mark.parametrize("path", ["/feed", "/feed-empty"])
def test_publish_not_allowed_through_redis(gws, redis, path):
    c = WSClient(gws[1].port, path)
    try:
        redis.wait_numsub("feed", 1)
        redis.cli("PUBLISH", "feed", "news")
        assert recv_messages(c, 1) == [(OP_TEXT, b"news")]
        with RespConn(redis.port) as app:
            app.subscribe("feed")
            c.send_text("may I?")
            res = c.expect_close()
            assert res.code == 1008, res
            with pytest.raises(TimeoutError):
                app.next_message(timeout=0.3)
    finally:
        c.close()


@pytest.mark.parametrize("policy,max_queue", SLOW_CASES)
def test_slow_consumer_through_redis(gws, redis, policy, max_queue):
    """Publisher on instance 0, fast and slow subscribers on instance 1."""
    def sync():
        redis.wait_numsub("flood", 1)
    slow_consumer_scenario(gws[0], gws[1], policy, max_queue, sync=sync)


def test_channel_prefix(tmp_path_factory, redis):
    g = make_gateway(tmp_path_factory, redis, "prefixed", channel_prefix="pfx:")
    try:
        a = WSClient(g.port, "/chat")
        d = WSClient(g.port, "/dm")
        try:
            redis.wait_numsub("pfx:chat", 1)
            did = welcome_id(d)
            assert redis.numsub(f"pfx:wsgate:conn:{did}") == 1
            assert redis.numsub(f"wsgate:conn:{did}") == 0
            redis.cli("PUBLISH", "chat", "unprefixed")  # not ours
            redis.cli("PUBLISH", "pfx:chat", "prefixed")
            assert recv_messages(a, 1) == [(OP_TEXT, b"prefixed")]
            redis.cli("PUBLISH", f"pfx:wsgate:conn:{did}", "direct")
            assert recv_messages(d, 1) == [(OP_TEXT, b"direct")]
            with RespConn(redis.port) as app:
                app.subscribe("pfx:chat", "chat")
                a.send_text("out")
                assert app.next_message() == ("pfx:chat", b"out")
                assert recv_messages(a, 1) == [(OP_TEXT, b"out")]
            assert_silent(a, 0.2)
        finally:
            close_all([a, d])
    finally:
        g.stop()


# ---------------------------------------------------------------------------------------------
# outages


def log_tail(g, n=25):
    return "\n".join(g.stderr().splitlines()[-n:])


def statuses(g):
    return http_status(g.port, "/healthz"), http_status(g.port, "/readyz")


def test_redis_killed_and_restarted(fresh):
    redis, gws = fresh(2)
    a = WSClient(gws[0].port, "/chat")
    a2 = WSClient(gws[0].port, "/chat")
    b = WSClient(gws[1].port, "/chat")
    try:
        redis.wait_numsub("chat", 2)
        a.send_text("before")
        for c in (a, a2, b):
            assert recv_messages(c, 1) == [(OP_TEXT, b"before")]

        redis.kill()
        for g in gws:
            wait_until(lambda: statuses(g) == (200, 503), 10,
                       what="/healthz 200 and /readyz 503 while Redis is down")
        # Publishes while down: held (publish_queue 1MiB), delivered after the restart.
        for i in range(5):
            a.send_text(f"while down {i}")
        a.send_binary(b"\xff\x00down")
        time.sleep(0.5)
        for c in (a, a2, b):
            assert c.is_open(0.05), "clients must stay connected while Redis is down"
        for g in gws:
            assert statuses(g) == (200, 503)

        redis.start()
        for g in gws:
            wait_until(lambda: http_status(g.port, "/readyz") == 200, 15,
                       what="/readyz 200 again after Redis came back")
        redis.wait_numsub("chat", 2)
        # Instance 0 held those messages; its own clients must get them all, in order.
        want = [(OP_TEXT, f"while down {i}".encode()) for i in range(5)] + \
               [(OP_BINARY, b"\xff\x00down")]
        for c in (a, a2):
            got = drain(c, 1.0, 15)
            assert got == want, \
                f"publishes held while Redis was down: got {got!r}\n" \
                f"instance 0 log:\n{log_tail(gws[0])}"
        # Instance 1 may have resubscribed after instance 0 flushed: no promise for those.
        drain(b, 0.3, 10)
        # Delivery resumed everywhere, from clients and from app services.
        b.send_text("after")
        redis.cli("PUBLISH", "chat", "app after")
        for c in (a, a2, b):
            assert recv_messages(c, 2) == [(OP_TEXT, b"after"), (OP_TEXT, b"app after")]
            assert_silent(c, 0.1)
        for g in gws:
            assert statuses(g) == (200, 200)
    finally:
        close_all([a, a2, b])


def test_publish_queue_overflow_closes_1013(fresh):
    redis, gws = fresh(1, publish_queue="64KiB")
    g = gws[0]
    pub = WSClient(g.port, "/chat")
    other = WSClient(g.port, "/chat")
    try:
        redis.wait_numsub("chat", 1)
        redis.kill()
        wait_until(lambda: http_status(g.port, "/readyz") == 503, 10, what="/readyz 503")
        n = 100
        for i in range(n):
            try:
                pub.send_binary(struct.pack("!I", i) + b"\xff" * 4092)
            except OSError:
                break  # closed by the gateway: fine, the close frame is what we check
        res = pub.expect_close(timeout=10)
        assert res.code == 1013, res
        assert [f for f in res.frames_before if f.opcode in (OP_TEXT, OP_BINARY)] == [], \
            "nothing can have been delivered while Redis is down"
        assert other.is_open(0.2), "a client that did not publish must stay connected"
        assert http_status(g.port, "/healthz") == 200

        redis.start()
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 15, what="/readyz 200")
        # What was accepted before the 1013 is delivered, in order, nothing after it.
        msgs = drain(other, 1.0, 15)
        ids = [struct.unpack("!I", p[:4])[0] for op, p in msgs]
        assert ids == list(range(len(ids))), \
            f"accepted publishes lost or reordered: {ids}\nlog:\n{log_tail(g)}"
        assert 1 <= len(ids) < n, f"{ids}\nlog:\n{log_tail(g)}"
        assert len(ids) * 4096 <= 64 * 1024, f"{len(ids)} x 4 KiB held in a 64 KiB queue"
        other.send_text("alive")
        assert recv_messages(other, 1) == [(OP_TEXT, b"alive")]
    finally:
        close_all([pub, other])


def test_redis_hung_canary_rebuilds_link(fresh):
    """SIGSTOP: the TCP link stays up but nothing answers; the canary (probe_interval 300ms,
    probe_timeout 3s) must notice, /readyz 503; after SIGCONT the link is rebuilt."""
    redis, gws = fresh(1)
    g = gws[0]
    a = WSClient(g.port, "/chat")
    try:
        redis.wait_numsub("chat", 1)
        redis.pause()
        try:
            wait_until(lambda: statuses(g) == (200, 503), 8,
                       what="/readyz 503 while Redis is hung (canary timeout)")
            assert a.is_open(0.05)
        finally:
            redis.resume()
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 15, what="/readyz 200")
        redis.wait_numsub("chat", 1)
        redis.cli("PUBLISH", "chat", "after hang")
        msgs = drain(a, 0.5, 10)
        assert msgs and msgs[-1] == (OP_TEXT, b"after hang"), msgs
        assert msgs.count((OP_TEXT, b"after hang")) == 1, msgs
        a.send_text("mine")
        assert recv_messages(a, 1) == [(OP_TEXT, b"mine")]
    finally:
        a.close()


def test_gateway_starts_while_redis_down(tmp_path_factory):
    """Redis absent at start: the gateway runs (/healthz 200, /readyz 503), clients connect;
    when Redis appears, the channels are subscribed and delivery works."""
    redis = RedisServer(str(tmp_path_factory.mktemp("redis-late")))
    g = Gateway(workdir=str(tmp_path_factory.mktemp("late")), routes=ROUTES)
    keys = {"url": f"redis://127.0.0.1:{redis.port}/0"}
    keys.update(REDIS_KEYS)
    add_config_sections(g, {"redis": keys})
    g.start()
    c = None
    try:
        assert statuses(g) == (200, 503)
        c = WSClient(g.port, "/chat")
        redis.start()
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 15, what="/readyz 200")
        redis.wait_numsub("chat", 1)
        redis.cli("PUBLISH", "chat", "late")
        assert recv_messages(c, 1) == [(OP_TEXT, b"late")]
    finally:
        if c:
            c.close()
        try:
            g.stop()
        finally:
            redis.kill()
