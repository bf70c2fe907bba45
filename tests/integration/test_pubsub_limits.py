"""test_pubsub_limits.py - what one large message from Redis may cost (issue #10), on a real
redis-server: max_queue applies to the first message too (20 subscribers that do not read, a
message larger than max_queue: RSS stays bounded, the policy applies); a message over [redis]
max_message_size is skipped as it streams in (never buffered), counted and logged, and the link
stays up; with two workers a message one worker's mailbox cannot take is refused for every
worker, counted and logged, never delivered to half; and a large message does not stall the loop
long enough for the liveness canary to rebuild the subscribe link."""

import subprocess
import time

import pytest

from test_admin import m, metrics
from test_pubsub_local import recv_messages
from test_workers import close_all, open_clients, worker_conns, workers_gateway
from wsharness import (RedisServer, RssPeak, WSClient, add_config_sections, http_status,
                       wait_until)

MIB = 1 << 20
# These tests are about sizes, not the canary (its own test sets a tight probe_timeout): a
# probe_timeout a loaded machine cannot trip keeps a rebuilt link from eating the message.
QUICK = {"connect_timeout": "1s", "probe_interval": "200ms", "probe_timeout": "20s",
         "reconnect_max": "500ms"}


@pytest.fixture
def redis(tmp_path):
    r = RedisServer(str(tmp_path / "redis")).start()
    # Redis' own default would cut a subscriber whose output passes 32 MiB: here the gateway
    # alone must bound what it takes.
    r.command("CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0")
    yield r
    r.kill()


def big_route(max_queue="1MiB", policy="drop_newest"):
    return {"type": "pubsub", "subscribe": "big", "publish": "big", "max_queue": max_queue,
            "slow_consumer": policy}


def start(tmp_path, redis, workers=1, routes=None, **redis_keys):
    g = workers_gateway(tmp_path, workers, routes=routes or {"/big": big_route()})
    keys = dict(QUICK, url=f"redis://127.0.0.1:{redis.port}/0")
    keys.update(redis_keys)
    add_config_sections(g, {"redis": keys})
    g.start()
    wait_until(lambda: http_status(g.port, "/readyz") == 200, 10, what="/readyz 200")
    return g


def publish(redis, channel, payload):
    """PUBLISH through redis-cli -x (the payload on stdin); returns the receiver count."""
    p = subprocess.run(["redis-cli", "-p", str(redis.port), "-x", "PUBLISH", channel],
                       input=payload, capture_output=True, timeout=120, check=True)
    return int(p.stdout.strip())


def counter(g, name, **labels):
    return m(metrics(g.admin), name, **labels)


# ---------------------------------------------------------------------------------------------
# max_queue applies to the first message


@pytest.mark.parametrize("size_mib", [6, 16])
def test_first_message_larger_than_max_queue_never_queued(tmp_path, redis, size_mib):
    """The issue's case: 20 subscribers that do not read, max_queue = 1MiB, one message larger
    than that. It used to be copied into every socket buffer (16 MiB: +336 MiB RSS); now the
    slow-consumer policy (drop_newest) drops it for each of them, and RSS grows by what one
    copy in hiredis and one frame cost, not by 20 copies."""
    extra = {"max_message_size": "32MiB"} if size_mib > 8 else {}
    g = start(tmp_path, redis, **extra)
    subs = []
    try:
        subs = open_clients(g.port, "/big", 20)
        redis.wait_numsub("big", 1)
        with RssPeak(g.proc.pid) as rss:
            assert publish(redis, "big", b"x" * (size_mib * MIB)) == 1
            wait_until(lambda: counter(g, "wsgate_dropped_messages_total",
                                       policy="drop_newest") == 20, 30,
                       what="the message dropped for all 20 subscribers")
            time.sleep(0.2)
        bound = 3 * size_mib + 16
        assert rss.grown_mib < bound, f"RSS grew by {rss.grown_mib:.0f} MiB (bound {bound})"
        assert counter(g, "wsgate_messages_out_total", route="/big") == 0
        # Still subscribed, and a message that fits goes through.
        assert publish(redis, "big", b"small") == 1
        for c in subs:
            assert [p for _, p in recv_messages(c, 1, timeout=5)] == [b"small"]
    finally:
        close_all(subs)
        g.stop()


def test_first_message_larger_than_max_queue_closes_with_close_policy(tmp_path, redis):
    g = start(tmp_path, redis, routes={"/big": big_route(max_queue="64KiB", policy="close")})
    try:
        with WSClient(g.port, "/big") as c:
            redis.wait_numsub("big", 1)
            assert publish(redis, "big", b"y" * (256 * 1024)) == 1
            res = c.expect_close(timeout=5)
            assert res.code == 1008, res
            assert res.data_frames_before() == [], "the message went out before the close"
        assert counter(g, "wsgate_closes_total", reason="slow_consumer") == 1
    finally:
        g.stop()


# ---------------------------------------------------------------------------------------------
# [redis] max_message_size


def test_message_over_max_message_size_skipped_counted_logged(tmp_path, redis):
    g = start(tmp_path, redis, routes={"/big": big_route(max_queue="64MiB")},
              max_message_size="1MiB")
    try:
        with WSClient(g.port, "/big") as c:
            redis.wait_numsub("big", 1)
            reconnects = counter(g, "wsgate_redis_reconnects_total")
            with RssPeak(g.proc.pid) as rss:
                # streamed in over many reads, and one just over the limit
                assert publish(redis, "big", b"z" * (24 * MIB)) == 1
                assert publish(redis, "big", b"w" * (MIB + 1)) == 1
                assert publish(redis, "big", b"fits" * 1000) == 1
                got = [p for _, p in recv_messages(c, 1, timeout=20)]
            assert got == [b"fits" * 1000]
            assert counter(g, "wsgate_redis_oversized_total") == 2, g.stderr()
            assert counter(g, "wsgate_redis_reconnects_total") == reconnects
            assert counter(g, "wsgate_redis_link_up", link="subscribe") == 1
            # never buffered whole: far less than the 24 MiB message
            assert rss.grown_mib < 12, f"RSS grew by {rss.grown_mib:.0f} MiB"
            # exactly the limit is still a message
            assert publish(redis, "big", b"e" * MIB) == 1
            assert [len(p) for _, p in recv_messages(c, 1, timeout=10)] == [MIB]
        assert "over max_message_size" in g.stderr()
    finally:
        g.stop()


# ---------------------------------------------------------------------------------------------
# all or none across workers


def test_broadcast_refused_for_every_worker_or_delivered_to_all(tmp_path, redis):
    """Two workers, subscribers on both, that do not read. A 64 MiB message is more than a
    worker's mailbox holds (64 MiB): it used to reach worker 0's clients in full and none of
    worker 1's, with nothing logged. Now it is refused for all, counted and logged; a message
    that fits reaches every subscriber on both workers."""
    g = start(tmp_path, redis, workers=2, routes={"/big": big_route(max_queue="128MiB")},
              max_message_size="128MiB")
    subs = []
    try:
        for _ in range(5):
            subs += open_clients(g.port, "/big", 10)
            if all(worker_conns(g.admin)):
                break
        assert all(worker_conns(g.admin)), f"all clients on one worker: {worker_conns(g.admin)}"
        redis.wait_numsub("big", 1)
        with RssPeak(g.proc.pid) as rss:
            assert publish(redis, "big", b"b" * (64 * MIB)) == 1
            try:
                wait_until(lambda: counter(g, "wsgate_broadcasts_refused_total") == 1, 30,
                           what="the 64 MiB message refused")
            except AssertionError:
                raise AssertionError(g.stderr()[-2000:])
            time.sleep(0.2)
        assert counter(g, "wsgate_messages_out_total", route="/big") == 0
        assert "refused for every worker" in g.stderr()
        assert rss.grown_mib < 3 * 64 + 16, f"RSS grew by {rss.grown_mib:.0f} MiB"
        assert publish(redis, "big", b"fits") == 1
        for c in subs:
            assert [p for _, p in recv_messages(c, 1, timeout=10)] == [b"fits"]
        assert counter(g, "wsgate_messages_out_total", route="/big") == len(subs)
    finally:
        close_all(subs)
        g.stop()


# ---------------------------------------------------------------------------------------------
# the canary survives a large message


def test_large_message_does_not_cost_the_canary(tmp_path, redis):
    """An 8 MiB message (the default max_message_size) to 150 subscribers that do not read:
    it used to be copied for each of them inside one callback (1.2 GB of copies: seconds of
    loop time, more under the sanitizers), long enough for the canary to miss probe_timeout and
    the subscribe link to be rebuilt (the message lost everywhere). Now the frame is made once
    and every subscriber's share is decided without copying it."""
    g = start(tmp_path, redis, probe_interval="100ms", probe_timeout="1s")
    subs = []
    try:
        subs = open_clients(g.port, "/big", 150)
        redis.wait_numsub("big", 1)
        before = metrics(g.admin)
        assert publish(redis, "big", b"c" * (8 * MIB)) == 1
        try:
            wait_until(lambda: counter(g, "wsgate_redis_delivered_total") == 1, 30,
                       what="the message delivered")
        except AssertionError:
            raise AssertionError(g.stderr()[-3000:] + str(metrics(g.admin)))
        time.sleep(1.5)  # past probe_timeout: a canary lost meanwhile would show
        after = metrics(g.admin)
        for name in ("wsgate_redis_probes_lost_total", "wsgate_redis_reconnects_total"):
            assert m(after, name) == m(before, name), f"{name} moved:\n{g.stderr()}"
        assert m(after, "wsgate_redis_link_up", link="subscribe") == 1
        assert "canary not delivered" not in g.stderr()
    finally:
        close_all(subs)
        g.stop()
