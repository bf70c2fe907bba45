"""test_admission.py - the fleet-wide admission budget (#16): [gateway] admission_rate shared
by two instances through a real redis-server (a sliding window under wsgate:admission:), 503 +
jittered Retry-After over budget, open connections untouched, a route's own admission_rate,
the instance's share while Redis is down, the ramp after start, and the retry hint
("retry=S.s") in the close reason of a drain."""

import re
import signal
import threading
import time
import urllib.request

import pytest

from wsharness import (Gateway, RedisServer, RespConn, WSClient, add_config_sections,
                       free_port, http_request, http_status, upgrade_request, wait_until)

REDIS_KEYS = {"connect_timeout": "1s", "probe_interval": "300ms", "probe_timeout": "3s",
              "reconnect_max": "500ms"}
RETRY_RE = re.compile(r"^retry=(\d+)\.(\d)$")


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    r = RedisServer(str(tmp_path_factory.mktemp("redis")))
    r.start()
    yield r
    r.kill()


def gateway(tmp_path_factory, name, gw, routes=None, redis=None, start=True):
    g = Gateway(workdir=str(tmp_path_factory.mktemp(name)), gateway=gw, routes=routes)
    if redis is not None:
        keys = {"url": f"redis://127.0.0.1:{redis.port}/0"}
        keys.update(REDIS_KEYS)
        add_config_sections(g, {"redis": keys})
    if start:
        g.start()
    return g


def upgrade(port, path="/echo"):
    """(status, Retry-After or None, time) of one upgrade; the socket is closed at once."""
    r = http_request(port, upgrade_request(port, path), timeout=5, close_timeout=0)
    return r.status, r.header("Retry-After"), time.monotonic()


def hammer(port, seconds, path="/echo", out=None):
    """Upgrades back to back for seconds; returns [(status, retry_after, t)]."""
    res = [] if out is None else out
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        res.append(upgrade(port, path))
    return res


def admitted_per_second(results, t0):
    per = {}
    for st, _, t in results:
        if st == 101:
            per[int(t - t0)] = per.get(int(t - t0), 0) + 1
    return per


def check_refusals(results, max_s):
    refused = [r for r in results if r[0] != 101]
    assert all(st == 503 for st, _, _ in refused), {st for st, _, _ in refused}
    for _, ra, _ in refused:
        assert ra is not None and ra.isdigit() and 1 <= int(ra) <= max_s, ra
    return refused


def test_budget_is_shared_by_the_fleet_through_redis(redis, tmp_path_factory):
    """Two instances, 20 sessions/s for both: hammered together for 3 s they admit at most the
    budget (plus the bucket's burst and one batch each), both get some, the rest is 503 with a
    Retry-After; the window and the live set are in Redis under wsgate:admission:."""
    gw = {"admission_rate": "20", "admission_ramp": "0", "admission_retry_max": "10s"}
    gs = [gateway(tmp_path_factory, f"fleet{i}", gw, redis=redis) for i in range(2)]
    try:
        for g in gs:
            wait_until(lambda g=g: http_status(g.port, "/readyz") == 200, 10, what="ready")
        time.sleep(0.5)  # the bucket fills to its burst, the pools to one batch
        outs = [[], []]
        t0 = time.monotonic()
        ths = [threading.Thread(target=hammer, args=(g.port, 3.0), kwargs={"out": o})
               for g, o in zip(gs, outs)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        elapsed = time.monotonic() - t0
        ok = [sum(1 for r in o if r[0] == 101) for o in outs]
        total = sum(len(o) for o in outs)
        assert total > 150, f"only {total} handshakes: the test did not push the budget"
        # rate x time, + burst (2) + one batch held by each instance (1 + 1), + slack of 1.
        assert sum(ok) <= 20 * elapsed + 5, (ok, elapsed)
        assert sum(ok) >= 20 * elapsed * 0.6, (ok, elapsed)
        assert min(ok) >= 5, f"one instance starved: {ok}"
        for o in outs:
            check_refusals(o, 10)
        with RespConn(redis.port) as r:
            assert r.command("EXISTS", "wsgate:admission:fleet:held") == 1
            assert r.command("ZCARD", "wsgate:admission:live") == 2
    finally:
        for g in gs:
            g.stop()


def test_open_connections_are_never_affected(tmp_path_factory):
    """With the budget spent, refused newcomers do not touch the sessions already open."""
    g = gateway(tmp_path_factory, "open", {"admission_rate": "5", "admission_ramp": "0"})
    try:
        time.sleep(0.3)
        clients = []
        while len(clients) < 3:
            try:
                clients.append(WSClient(g.port))
            except AssertionError:
                time.sleep(0.2)
        res = hammer(g.port, 1.0)
        assert check_refusals(res, 30), "the budget was not exceeded"
        for i, c in enumerate(clients):
            assert c.roundtrip(1, f"still here {i}".encode())[1] == f"still here {i}".encode()
            c.close()
    finally:
        g.stop()


def test_route_override(tmp_path_factory):
    """A route's admission_rate is its own budget: /costly refuses beyond 5/s while /echo,
    under the fleet's 1000/s, admits everything it is asked."""
    routes = {"/echo": {"type": "echo"}, "/costly": {"type": "echo", "admission_rate": "5"}}
    g = gateway(tmp_path_factory, "route", {"admission_rate": "1000", "admission_ramp": "0"},
                routes=routes)
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        costly = hammer(g.port, 2.0, "/costly")
        el = time.monotonic() - t0
        assert sum(1 for r in costly if r[0] == 101) <= 5 * el + 3
        check_refusals(costly, 30)
        echo = [upgrade(g.port, "/echo") for _ in range(30)]
        assert all(r[0] == 101 for r in echo), [r[0] for r in echo]
    finally:
        g.stop()


def test_share_when_redis_is_down(tmp_path_factory):
    """Redis unreachable: the instance admits admission_share a second, not the whole budget."""
    dead = RedisServer(str(tmp_path_factory.mktemp("dead")))  # never started: a closed port
    g = gateway(tmp_path_factory, "down",
                {"admission_rate": "1000", "admission_share": "10", "admission_ramp": "0"},
                redis=dead)
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        res = hammer(g.port, 2.0)
        el = time.monotonic() - t0
        ok = sum(1 for r in res if r[0] == 101)
        assert ok <= 10 * el + 4, (ok, el)
        assert ok >= 10, ok
        check_refusals(res, 30)
    finally:
        g.stop()


def test_ramp_after_start(tmp_path_factory):
    """admission_ramp = 4s: the first second admits a small fraction of 100/s, the fifth the
    whole rate."""
    g = gateway(tmp_path_factory, "ramp", {"admission_rate": "100", "admission_ramp": "4s"},
                start=False)
    g.start()
    t0 = time.monotonic()
    try:
        res = hammer(g.port, 5.5)
        per = admitted_per_second(res, t0)
        assert per.get(0, 0) <= 25, per  # ramp 5%..25% over the first second: ~15
        assert per.get(4, 0) >= 60, per  # full rate (100/s) after 4 s, less the test's pace
        assert per.get(0, 0) < per.get(2, 0) < per.get(4, 0) + 10, per
    finally:
        g.stop()


def test_drain_close_carries_a_retry_hint(tmp_path_factory):
    """SIGTERM with drain_window: the 1001 close's reason is the contract's retry=S.s."""
    g = gateway(tmp_path_factory, "drain", {"drain_window": "500ms"})
    c = WSClient(g.port)
    g.send_signal(signal.SIGTERM)
    res = c.expect_close(timeout=5)
    c.close()
    g.wait(10)
    assert res.code == 1001, res
    m = RETRY_RE.match(res.reason.decode())
    assert m, res.reason
    assert 0.1 <= int(m.group(1)) + int(m.group(2)) / 10 <= 1.0, res.reason


def admission_instances(admin_port):
    """The instances an instance divides the budget by (wsgate_admission_instances)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        m = re.search(r"^wsgate_admission_instances (\d+)$", r.read().decode(), re.M)
    assert m
    return int(m.group(1))


def test_drained_instance_leaves_the_budget_at_once(tmp_path_factory):
    """A drained instance admits nobody, so it leaves the fleet's budget when the drain starts:
    out of Redis' live set and its held tokens given back at once, and the survivor divides the
    budget (and paces the clients it refuses) by the instances still there. Before, it stayed
    counted for the whole drain window (it kept asking) plus 2.5 s (ADMISSION_LIVE_MS): with
    three instances the survivors paced the displaced clients' returns at 2/3 of the budget."""
    redis = RedisServer(str(tmp_path_factory.mktemp("leave-redis")))
    redis.start()
    gs = []
    try:
        for i in range(2):
            gw = {"admission_rate": "100", "admission_ramp": "0", "drain_window": "4s",
                  "shutdown_timeout": "4s", "admin_listen": f"127.0.0.1:{free_port()}"}
            g = gateway(tmp_path_factory, f"leave{i}", gw, redis=redis)
            g.admin_port = int(gw["admin_listen"].rsplit(":", 1)[1])
            gs.append(g)
        survivor, drained = gs
        for g in gs:
            wait_until(lambda g=g: http_status(g.port, "/readyz") == 200, 10, what="ready")
        wait_until(lambda: admission_instances(survivor.admin_port) == 2, 10,
                   what="the survivor sees both instances")
        m = re.search(r"\(instance ([0-9a-f]+),", drained.stderr())
        assert m, drained.stderr()
        inst = m.group(1)
        with RespConn(redis.port) as r:
            assert r.command("ZSCORE", "wsgate:admission:live", inst) is not None
        c = WSClient(drained.port)  # keeps the drained instance draining for drain_window
        t0 = time.monotonic()
        drained.send_signal(signal.SIGTERM)
        # The live set in Redis: at once (no more asks from the drained instance).
        wait_until(lambda: redis.command("ZSCORE", "wsgate:admission:live", inst) is None, 2.0, what="the drained instance out of the live set")
        with RespConn(redis.port) as r:
            assert r.command("HEXISTS", "wsgate:admission:fleet:held", inst) == 0
        # The survivor: at its next ask (at least one a second), well before the drain ends.
        wait_until(lambda: admission_instances(survivor.admin_port) == 1, 3.0,
                   what="the survivor divides the budget by 1")
        assert drained.running() and time.monotonic() - t0 < 4.0, \
            "the drain ended first: the check proves nothing"
        c.close()
    finally:
        for g in gs:
            g.stop()
        redis.kill()


def test_reload_reports_admission_changes_need_a_restart(tmp_path_factory):
    """The budget is built at start: a SIGHUP that changes it (here a route's own
    admission_rate) says it needs a restart, and the running budget stays."""
    routes = {"/echo": {"type": "echo"}, "/costly": {"type": "echo", "admission_rate": "5"}}
    g = gateway(tmp_path_factory, "reload", {"admission_rate": "1000", "admission_ramp": "0"},
                routes=routes)
    try:
        text = g.config_text.replace("admission_rate = 5", "admission_rate = 500")
        assert text != g.config_text
        with open(g.config_path, "w", encoding="utf-8") as f:
            f.write(text)
        g.send_signal(signal.SIGHUP)
        wait_until(lambda: "admission settings changed; the budget keeps the old ones" in
                   g.stderr(), 5, what="admission change reported")
        time.sleep(0.3)
        res = hammer(g.port, 1.0, "/costly")
        assert sum(1 for r in res if r[0] == 101) <= 5 + 4, "the old budget no longer applies"
    finally:
        g.stop()
