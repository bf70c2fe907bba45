"""test_pubsub_slicing.py - a large message costs its event loop no long turn (issue #10, item
3). A large message from Redis to subscribers that do not read used to be copied whole several
times inside one callback (the reply, the frame, a copy per other worker, a UTF-8 scan over all
of it): 64 MiB to 20 subscribers stalled the loop ~1 s here (3.5 s measured earlier), which
delayed every other client of that worker and, under the sanitizers, made the Redis canary miss
its deadline. Now its bytes go, a read (1 MiB at most) per loop turn, straight into the one
frame every subscriber of every worker shares; the loop stays responsive throughout.

Measured by a client on the same worker doing an echo round trip every 10 ms while the message
streams in and is handed out, and by wsgate_loop_lag_seconds (how late a 50 ms timer of each
worker ran)."""

import multiprocessing
import time

import pytest

from test_admin import m, metrics
from test_pubsub_limits import big_route, counter, redis, start  # noqa: F401 (fixture)
from test_workers import close_all, open_clients, worker_conns, workers_gateway
from wsharness import RespConn, WSClient, http_status, wait_until

MIB = 1 << 20
# Two bounds, both from measurements on this 2-core machine shared by six engineers' builds and
# tests (load average 7 to 19 while measuring):
# - BUSY_S: the part of a loop's lateness its own work explains (wsgate_loop_busy_seconds: its
#   thread's CPU time beyond the timer interval, so a machine short of CPU does not count). A
#   streamed message costs a turn ~1-3 ms (a 1 MiB read copied and UTF-8 checked); the old code
#   copied and scanned the whole message in one turn: ~150-300 ms at 8 MiB, 0.5-1 s at 32 MiB.
# - ECHO_S: what the echo client sees, machine noise included. An idle gateway's round trips
#   reach 50-400 ms at those loads (194 ms at 8 MiB with the fixed code while a chaos run took
#   both cores), so the bound is the larger of ECHO_S and twice the worst round trip of the
#   1.5 s before the message (+100 ms): the machine's noise of the moment. The old binary
#   stalled 577-1035 ms at 32 MiB against 7-80 ms before; at 8 MiB its 201-246 ms are within
#   the noise, and there BUSY_S, which noise does not move, tells.
BUSY_S = "0.05"
ECHO_S = 0.25


class Pinger:
    """Echo round trips every 10 ms on its own connection, from a process of its own (so the
    test's threads, building a 32 MiB PUBLISH, cannot hold it up); (start, seconds) of each."""

    def __init__(self, port):
        self.port = port
        self.ctx = multiprocessing.get_context("fork")
        self.stop = self.ctx.Event()
        self.rx, self.tx = self.ctx.Pipe(duplex=False)
        self.proc = self.ctx.Process(target=self.run, daemon=True)
        self.rtts = []
        self.error = None

    def run(self):
        out = []
        try:
            with WSClient(self.port, "/echo") as c:
                while not self.stop.is_set():
                    t = time.monotonic()
                    _, data = c.roundtrip(0x1, b"ping")
                    assert data == b"ping", data
                    out.append((t, time.monotonic() - t))
                    time.sleep(0.01)
            self.tx.send((out, None))
        except BaseException as e:  # reported by the test
            self.tx.send((out, repr(e)))

    def __enter__(self):
        self.proc.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.rx.poll(30):
            self.rtts, self.error = self.rx.recv()
        else:
            self.error = "the echo process sent nothing"
        self.proc.join(10)

    def worst(self, since):
        return max((r for t, r in self.rtts if t >= since), default=None)


def on_every_worker(g, path):
    """Clients on path until every worker has one (the kernel spreads them)."""
    subs = []
    for _ in range(8):
        subs += open_clients(g.port, path, 2)
        if all(worker_conns(g.admin)):
            return subs
    close_all(subs)
    raise AssertionError(f"all clients on one worker: {worker_conns(g.admin)}")


def busy_over(ms, worker, le):
    """Ticks of worker's loop its own work made late by more than le seconds, so far."""
    total = m(ms, "wsgate_loop_busy_seconds_bucket", worker=str(worker), le="+Inf")
    under = m(ms, "wsgate_loop_busy_seconds_bucket", worker=str(worker), le=le)
    return total - under


def publish_raw(redis, channel, payload):
    """PUBLISH over a plain socket (no redis-cli reading 32 MiB from a pipe: less CPU taken
    from the gateway while it works)."""
    with RespConn(redis.port, timeout=60) as r:
        return r.command("PUBLISH", channel, payload, timeout=60)


@pytest.mark.parametrize("size_mib", [8, 32])
def test_large_message_does_not_stall_the_loop(tmp_path, redis, size_mib):
    # probe_timeout: redis-server itself, reading a 32 MiB PUBLISH on this machine at load 18,
    # left the canary's PUBLISH unanswered for over 1 s (logged "canary PUBLISH not answered":
    # Redis, not wsgate); 3 s still catches a loop held as long as the old code held it under
    # the sanitizers, and wsgate's own share is measured by BUSY_S.
    g = start(tmp_path, redis, routes={"/big": big_route(max_queue="128MiB"),
                                       "/echo": {"type": "echo"}},
              max_message_size="64MiB", probe_interval="100ms", probe_timeout="3s")
    subs = []
    try:
        subs = open_clients(g.port, "/big", 20)
        redis.wait_numsub("big", 1)
        before = metrics(g.admin)
        with Pinger(g.port) as p:
            tq = time.monotonic()
            time.sleep(1.5)  # the machine's own noise, measured before the message
            t0 = time.monotonic()
            assert publish_raw(redis, "big", b"s" * (size_mib * MIB)) == 1
            try:
                wait_until(lambda: counter(g, "wsgate_redis_delivered_total") == 1, 60,
                           what="the message delivered")
            except AssertionError:
                raise AssertionError(g.stderr()[-3000:])
            # Handed to all 20 (it fits their max_queue): the fan-out is part of the work.
            wait_until(lambda: counter(g, "wsgate_messages_out_total", route="/big") == 20, 10,
                       what="the message queued to all 20 subscribers")
            time.sleep(0.5)  # a stall just after the hand-out counts too
            assert http_status(g.port, "/readyz") == 200
        assert p.error is None, f"the echo client failed: {p.error!r}"
        worst = p.worst(t0)
        quiet = max((r for t, r in p.rtts if tq <= t < t0), default=0.0)
        assert worst is not None
        n = sum(1 for t, _ in p.rtts if t >= t0)
        bound = max(ECHO_S, 2 * quiet + 0.1)
        assert worst < bound, (f"an echo round trip took {worst * 1000:.0f} ms while a "
                               f"{size_mib} MiB message was handled ({n} round trips; "
                               f"{quiet * 1000:.0f} ms at worst before it)")
        after = metrics(g.admin)
        # The gateway's own view: no turn of worker 0 was long because of its own work.
        assert busy_over(after, 0, BUSY_S) == busy_over(before, 0, BUSY_S), \
            f"worker 0's own work held its loop more than {BUSY_S} s (" \
            f"{busy_over(after, 0, '0.1') - busy_over(before, 0, '0.1')} turns over 100 ms)"
        # The canary never missed its deadline: the link was not rebuilt.
        for name in ("wsgate_redis_probes_lost_total", "wsgate_redis_reconnects_total"):
            assert m(after, name) == m(before, name), f"{name} moved:\n{g.stderr()[-2000:]}"
        assert m(after, "wsgate_redis_link_up", link="subscribe") == 1
        print(f"{size_mib} MiB: worst echo round trip {worst * 1000:.1f} ms over {n} "
              f"(before: {quiet * 1000:.1f} ms)")
    finally:
        close_all(subs)
        g.stop()


def test_large_message_reaches_both_workers_intact(tmp_path, redis):
    """The frame is shared across workers by reference: a reading subscriber on each worker
    gets the whole message, byte for byte, and a small message published after it arrives
    after it (never overtakes it)."""
    g = start(tmp_path, redis, workers=2, routes={"/big": big_route(max_queue="64MiB")},
              max_message_size="32MiB")
    subs = []
    try:
        subs = on_every_worker(g, "/big")
        redis.wait_numsub("big", 1)
        payload = bytes(range(256)) * (12 * MIB // 256) + b"\xff"  # binary: not UTF-8
        text = "€".encode() * (2 * MIB)  # 6 MiB of valid UTF-8, characters across reads
        assert publish_raw(redis, "big", payload) == 1
        assert publish_raw(redis, "big", text) == 1
        assert publish_raw(redis, "big", b"after") == 1
        for c in subs:
            got = [c.recv_message(timeout=60) for _ in range(3)]
            assert got[0][0] == 0x2 and got[0][1] == payload, "binary message damaged"
            assert got[1][0] == 0x1 and got[1][1] == text, "text message damaged"
            assert got[2] == (0x1, b"after")
    finally:
        close_all(subs)
        g.stop()


def test_worker_scratch_shrinks_back(tmp_path):
    """Buffers sized by the largest message ever seen give the memory back (issue #10, item
    4): a 512 KiB message through a JSON-envelope route grows the worker's scratch buffer to
    the envelope's worst case (6 bytes per payload byte), and within a few seconds of quiet it
    is back to nothing. Read from wsgate_worker_scratch_bytes, not RSS (glibc's mmap threshold
    makes RSS say little about one buffer)."""
    routes = {"/json": {"type": "pubsub", "subscribe": "ev", "publish": "ev",
                        "envelope": "json"},
              "/sink": {"type": "pubsub", "subscribe": "ev"}}
    g = workers_gateway(tmp_path, 1, routes=routes)
    g.start()
    try:
        with WSClient(g.port, "/json") as pub, WSClient(g.port, "/sink") as sink:
            assert m(metrics(g.admin), "wsgate_worker_scratch_bytes", worker="0") <= 64 * 1024
            pub.send_text("q" * (512 * 1024))
            op, env = sink.recv_message(timeout=10)
            assert b'"data":"' + b"q" * 1000 in env
            grown = m(metrics(g.admin), "wsgate_worker_scratch_bytes", worker="0")
            assert grown >= 6 * 512 * 1024, f"scratch {grown} bytes after a 3 MiB envelope"
            wait_until(lambda: m(metrics(g.admin), "wsgate_worker_scratch_bytes",
                                 worker="0") <= 64 * 1024, 5,
                       what="the scratch buffer given back")
            # And it still works afterwards (built again from nothing).
            pub.send_text("again")
            assert b'"data":"again"' in sink.recv_message(timeout=10)[1]
    finally:
        g.stop()


def test_large_local_message_shared_by_both_workers(tmp_path):
    """The in-process hub frames a large client message once and both workers' subscribers
    share it (a reference through the mailbox): every subscriber gets it intact, the small
    message sent after it arrives after it, and the mailbox accounting gives its room back
    (a second large message is not refused)."""
    routes = {"/chat": {"type": "pubsub", "subscribe": "chat", "publish": "chat",
                        "max_queue": "64MiB"},
              "/pub": {"type": "pubsub", "subscribe": "elsewhere", "publish": "chat"}}
    g = workers_gateway(tmp_path, 2, routes=routes, max_message_size="4MiB")
    g.start()
    subs = []
    try:
        subs = on_every_worker(g, "/chat")
        big = bytes(range(256)) * (3 * MIB // 256)
        text = "ü".encode() * MIB
        with WSClient(g.port, "/pub") as pub:  # reads nothing: not a subscriber of chat
            for i in range(3):
                pub.send_binary(big)
                pub.send_text(text.decode())
                pub.send_text(f"after {i}")
            for c in subs:
                for i in range(3):
                    got = [c.recv_message(timeout=30) for _ in range(3)]
                    assert got[0][0] == 0x2 and got[0][1] == big, "binary message damaged"
                    assert got[1][0] == 0x1 and got[1][1] == text, "text message damaged"
                    assert got[2] == (0x1, f"after {i}".encode())
        assert m(metrics(g.admin), "wsgate_broadcasts_refused_total") == 0
    finally:
        close_all(subs)
        g.stop()
