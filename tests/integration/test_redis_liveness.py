"""test_redis_liveness.py - liveness is progress on the Redis links (#16: a 1,500-client
reconnect storm made an instance's subscribe link flap). A Redis that is slow but alive must
not be declared dead: here a real redis-server sits behind a proxy that passes what Redis sends
at a few KiB/s (real timings, no sleeps that happen to pass), so a resubscription of 200
clients' channels takes seconds, longer than connect_timeout. Before the fix the SYNCING link was given
up at connect_timeout however many confirmations were still arriving, and the retry started the
whole resubscription again: the link never came up. Now the deadline counts from the last bytes
Redis sent, so it comes up once, and a Redis that sends nothing is still given up."""

import socket
import threading
import time

from wsharness import (Gateway, RedisServer, WSClient, add_config_sections, free_port,
                       http_status, wait_until)

N = 200


class SlowProxy:
    """TCP proxy to Redis; Redis -> gateway is paced at `rate` bytes a second while slow is
    set (gateway -> Redis is never slowed). cut() closes every proxied connection."""

    def __init__(self, target_port, rate):
        self.target = target_port
        self.rate = rate
        self.slow = threading.Event()
        self.port = free_port()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(16)
        self.conns = []
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            r = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [c, r]
            threading.Thread(target=self._pump, args=(c, r, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(r, c, True), daemon=True).start()

    def _pump(self, src, dst, paced):
        step = 0.05
        try:
            while True:
                want = max(1, int(self.rate * step)) if paced and self.slow.is_set() else 65536
                data = src.recv(want)
                if not data:
                    break
                dst.sendall(data)
                if paced and self.slow.is_set():
                    time.sleep(step)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def stop(self):
        self.stopped = True
        self.lsock.close()
        self.cut()


def test_slow_resubscription_is_not_given_up(tmp_path):
    """200 clients' channels resubscribed through a Redis answering at 4 KiB/s (~6 s of
    confirmations) with connect_timeout = 1s: the link comes up once, no 'failed
    (syncing)' retry loop, and the clients get a message published after it."""
    redis = RedisServer(str(tmp_path / "redis"))
    redis.start()
    proxy = SlowProxy(redis.port, 4096)
    g = Gateway(workdir=str(tmp_path / "gw"), gateway={"workers": "1"},
                routes={"/q": {"type": "pubsub", "subscribe": "q:{query.topic}"}})
    add_config_sections(g, {"redis": {"url": f"redis://127.0.0.1:{proxy.port}/0",
                                      "connect_timeout": "1s", "reconnect_max": "300ms"}})
    clients = []
    try:
        g.start()
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 15, what="ready")
        for i in range(N):
            clients.append(WSClient(g.port, f"/q?topic=t{i:04d}"))
        redis.wait_numsub(f"q:t{N - 1:04d}", 1, timeout=15)
        mark = len(g.stderr())
        proxy.slow.set()
        t0 = time.monotonic()
        proxy.cut()
        wait_until(lambda: "redis sub link up" in g.stderr()[mark:], 30,
                   what="the sub link up again through the slow Redis")
        took = time.monotonic() - t0
        log = g.stderr()[mark:]
        # The pacing is what makes it slow: it must have taken longer than connect_timeout,
        # else this test proves nothing.
        assert took > 1.5, f"resubscribed in {took:.1f} s: not slow enough to test\n{log}"
        assert "failed (syncing)" not in log, log
        assert log.count("redis sub link up") == 1, log
        proxy.slow.clear()
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 15, what="ready again")
        redis.cli("PUBLISH", "q:t0007", "after")
        assert clients[7].recv_message(timeout=5)[1] == b"after"
    finally:
        for c in clients:
            c.close()
        g.kill_quietly() if g.running() else None
        proxy.stop()
        redis.kill()


def test_silent_redis_still_given_up(tmp_path):
    """The other side of the same rule: a Redis that accepts and never answers (SIGSTOP)
    while the link resubscribes sends no bytes, so the connect deadline still gives it up."""
    redis = RedisServer(str(tmp_path / "redis"))
    redis.start()
    g = Gateway(workdir=str(tmp_path / "gw"), gateway={"workers": "1"},
                routes={"/q": {"type": "pubsub", "subscribe": "q:{query.topic}"}})
    add_config_sections(g, {"redis": {"url": f"redis://127.0.0.1:{redis.port}/0",
                                      "connect_timeout": "1s", "probe_interval": "300ms",
                                      "probe_timeout": "1s", "reconnect_max": "300ms"}})
    try:
        g.start()
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 15, what="ready")
        c = WSClient(g.port, "/q?topic=x")
        mark = len(g.stderr())
        redis.pause()
        try:
            wait_until(lambda: "canary not delivered" in g.stderr()[mark:], 10,
                       what="the canary of a silent Redis declared lost")
            wait_until(lambda: "no answer within connect_timeout" in g.stderr()[mark:], 10,
                       what="a reconnect to a silent Redis given up")
        finally:
            redis.resume()
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 15, what="ready again")
        c.close()
    finally:
        g.kill_quietly() if g.running() else None
        redis.kill()
