"""test_pubsub_join.py - with Redis, a pubsub client is subscribed once it is open: the 101 waits
until the instance's SUBSCRIBE of the route's channels is confirmed (relayed to the client's
worker), so every message published after a client's onopen reaches it, its own included, on
whichever worker it landed (workers = 2: half the clients are not on worker 0, which holds the
sub link). A client that leaves while waiting, and a confirmation for a channel everyone left,
change nothing; the handshake timer still answers a wait that lasts too long (408); with the
Redis link down the 101 goes at once. (The chaos run found the loss: the 101 went first.)"""

import socket
import time

import pytest

from test_pubsub_local import recv_messages
from test_pubsub_redis import REDIS_KEYS
from test_workers import worker_conns, workers_gateway
from wsharness import (OP_TEXT, HarnessError, RedisServer, WSClient, add_config_sections, http_request,
                       http_status, upgrade_request, wait_until)

ROUTES = {"/rooms/{room}": {"type": "pubsub", "subscribe": "room:{room}",
                            "publish": "room:{room}"}}


@pytest.fixture
def redis(tmp_path):
    r = RedisServer(str(tmp_path / "redis")).start()
    yield r
    r.kill()


def redis_gateway(tmp_path, redis, workers=2, **gateway):
    g = workers_gateway(tmp_path / "gw", workers, routes=ROUTES, **gateway)
    add_config_sections(g, {"redis": dict(REDIS_KEYS, url=f"redis://127.0.0.1:{redis.port}/0")})
    g.start()
    wait_until(lambda: http_status(g.port, "/readyz") == 200, 10, what="/readyz 200, Redis up")
    return g


def close_all(clients):
    for c in clients:
        c.close()


def collect(c, want, timeout=5.0):
    """Messages c receives until it has every one of want (a set); others may come too."""
    got = set()
    deadline = time.monotonic() + timeout
    while not want <= got:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            op, payload = recv_messages(c, 1, timeout=left)[0]
        except (HarnessError, socket.timeout, TimeoutError, OSError):
            break
        assert op == OP_TEXT
        got.add(payload.decode())
    return got


def test_open_means_subscribed(tmp_path, redis):
    """Rounds of clients joining a fresh channel one after the other, each publishing as soon
    as it is open: client j must get every message of clients j.. (published after its open),
    its own first among them. Without the wait the channel's SUBSCRIBE trails the 101 and the
    first messages are lost: this loses some within a few rounds."""
    g = redis_gateway(tmp_path, redis)
    rounds, per_round = 150, 4
    clients = []
    seen_workers = [0, 0]
    try:
        for rnd in range(rounds):
            clients = []
            for j in range(per_round):
                c = WSClient(g.port, f"/rooms/fresh{rnd}")
                clients.append(c)
                c.send_text(f"{rnd}:{j}")
            if rnd < 10:
                per = worker_conns(g.admin)
                for w in range(2):
                    seen_workers[w] += per[w] > 0
            for j, c in enumerate(clients):
                want = {f"{rnd}:{k}" for k in range(j, per_round)}
                got = collect(c, want)
                assert want <= got, f"round {rnd} client {j}: missing {sorted(want - got)}"
            close_all(clients)
        # The kernel spread the clients: worker 1 (not the sub link's) had some.
        assert seen_workers[1] > 0 and seen_workers[0] > 0, seen_workers
    finally:
        close_all(clients)
        g.stop()


def test_leaving_while_waiting_and_a_late_confirmation(tmp_path, redis):
    """Redis hung (SIGSTOP, before the canary notices): a client of a new channel waits for its
    101; it leaves; Redis resumes and confirms a channel nobody wants any more. Nothing breaks
    (no crash, no leak under ASan: checked at stop), and the channel works for the next one."""
    g = redis_gateway(tmp_path, redis, handshake_timeout="5s")
    try:
        redis.pause()
        try:
            waiting = []
            for i in range(6):  # on both workers, likely
                s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
                s.sendall(upgrade_request(g.port, path="/rooms/gone").encode())
                waiting.append(s)
            for s in waiting:
                s.settimeout(0.3)
                with pytest.raises(socket.timeout):
                    s.recv(1)  # no 101 while the SUBSCRIBE is unanswered
            for s in waiting:
                s.close()
            time.sleep(0.2)  # the closes reach the gateway while Redis still sleeps
        finally:
            redis.resume()
        wait_until(lambda: redis.numsub("room:gone") == 0, 5, what="room:gone unsubscribed")
        a = WSClient(g.port, "/rooms/gone")
        try:
            a.send_text("after")
            assert collect(a, {"after"}) == {"after"}
        finally:
            a.close()
    finally:
        g.stop()


def test_handshake_timeout_while_waiting(tmp_path, redis):
    """The wait is bounded by handshake_timeout: the timer cancels it (the target's close hook
    unsubscribes) and answers 408, once."""
    g = redis_gateway(tmp_path, redis, handshake_timeout="1s")
    try:
        redis.pause()
        try:
            t0 = time.monotonic()
            resp = http_request(g.port, upgrade_request(g.port, path="/rooms/slow"), timeout=5)
            took = time.monotonic() - t0
        finally:
            redis.resume()
        assert resp.status == 408, resp.status
        assert 0.8 <= took < 3, took
        b = WSClient(g.port, "/rooms/slow")
        try:
            b.send_text("x")
            assert collect(b, {"x"}) == {"x"}
        finally:
            b.close()
    finally:
        g.stop()


def test_link_down_answers_at_once(tmp_path, redis):
    """With the sub link down no confirmation can come soon: the 101 goes at once (publishing
    is refused or queued as before; delivery during an outage is not promised)."""
    g = redis_gateway(tmp_path, redis, handshake_timeout="10s")
    try:
        redis.kill()
        wait_until(lambda: http_status(g.port, "/readyz") == 503, 10, what="/readyz 503")
        t0 = time.monotonic()
        c = WSClient(g.port, "/rooms/outage", timeout=5)
        assert time.monotonic() - t0 < 1
        c.close()
    finally:
        g.stop()
