"""test_workers.py - several event-loop workers in one process ([gateway] workers = N or auto):
the threads exist and /metrics counts them; the kernel spreads connections over the workers'
SO_REUSEPORT listeners and the per-worker gauges add up; connection ids stay unique across
workers; the in-process hub carries every message to subscribers on every worker exactly once
and in each publisher's order, text and binary; on a real redis-server each instance holds one
SUBSCRIBE per channel however many of its workers have subscribers, and a message from Redis
reaches the clients of every worker; a SIGHUP reload reaches every worker; SIGTERM drains
every worker with 1001 and exits 0; a port already taken (by a plain socket, a SO_REUSEPORT
socket or another multi-worker gateway) is still a startup error; workers = auto follows the
CPU affinity."""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from test_admin import get, m, metrics
from test_pubsub_local import ID_RE, assert_silent, numbered, recv_messages, welcome_id
from test_pubsub_redis import REDIS_KEYS
from wsharness import (OP_BINARY, OP_TEXT, Gateway, RedisServer, WSClient, add_config_sections,
                       free_port, http_request, http_status, run_wsgate, upgrade_request,
                       wait_until)

CHAT = {"type": "pubsub", "subscribe": "chat", "publish": "chat"}
ROUTES = {
    "/echo": {"type": "echo"},
    "/chat": CHAT,
    "/welcome": {"type": "pubsub", "subscribe": "chat", "publish": "chat", "announce_id": "yes"},
}


def workers_gateway(tmp_path, workers, routes=ROUTES, name="wsgate.ini", **gateway):
    """A Gateway (not started) with `workers` loops and an admin listener at g.admin."""
    admin = free_port()
    gw = {"workers": str(workers), "admin_listen": f"127.0.0.1:{admin}"}
    gw.update(gateway)
    g = Gateway(workdir=str(tmp_path), gateway=gw, routes=routes, name=name)
    g.admin = admin
    return g


def worker_conns(admin):
    """[connections of worker 0, of worker 1, ...] from one scrape."""
    ms = metrics(admin)
    per = {}
    for (name, labels), value in ms.items():
        if name == "wsgate_worker_connections":
            per[int(dict(labels)["worker"])] = int(value)
    assert sorted(per) == list(range(len(per))), f"worker labels {sorted(per)}"
    assert len(per) == int(m(ms, "wsgate_workers")), per
    return [per[i] for i in range(len(per))]


def open_clients(port, path, n):
    clients = []
    try:
        for _ in range(n):
            clients.append(WSClient(port, path))
    except BaseException:
        close_all(clients)
        raise
    return clients


def close_all(clients):
    for c in clients:
        c.close()


# ---------------------------------------------------------------------------------------------
# threads, metrics, spreading


def test_connections_spread_over_workers(tmp_path):
    with workers_gateway(tmp_path, 4) as g:
        tasks = os.listdir(f"/proc/{g.proc.pid}/task")
        assert len(tasks) >= 5, f"4 workers and the main loop, but threads {tasks}"
        ms = metrics(g.admin)
        assert m(ms, "wsgate_workers") == 4
        assert m(ms, "wsgate_bus_refused_total") == 0
        # The readiness probes' connections (GET /healthz) end when the worker reads their
        # EOF, which may come after start() returned (1 on worker 3, fresh Debian 12 container).
        wait_until(lambda: worker_conns(g.admin) == [0, 0, 0, 0], 5,
                   what="the readiness probes' connections gone")
        n = 64
        clients = open_clients(g.port, "/echo", n)
        try:
            # Every client finished its handshake: each one is counted on exactly one worker.
            per = worker_conns(g.admin)
            assert sum(per) == n, per
            assert sum(1 for x in per if x) > 1, f"all {n} connections on one worker: {per}"
            assert m(metrics(g.admin), "wsgate_connections_open", route="/echo") == n
            # and each worker serves its own
            for i, c in enumerate(clients):
                c.send_text(f"hi {i}")
            for i, c in enumerate(clients):
                assert c.recv_message() == (OP_TEXT, f"hi {i}".encode())
        finally:
            close_all(clients)
        wait_until(lambda: worker_conns(g.admin) == [0, 0, 0, 0], 5,
                   what="per-worker gauges back to 0")
        assert m(metrics(g.admin), "wsgate_connections_open", route="/echo") == 0


def test_connection_ids_unique_across_workers(tmp_path):
    with workers_gateway(tmp_path, 4) as g:
        clients = open_clients(g.port, "/welcome", 40)
        try:
            ids = [welcome_id(c) for c in clients]
            per = worker_conns(g.admin)
            assert sum(1 for x in per if x) > 1, f"the ids all came from one worker: {per}"
        finally:
            close_all(clients)
        assert len(set(ids)) == len(ids), sorted(ids)
        assert len({ID_RE.match(i).group(1) for i in ids}) == 1, "one process, one prefix"


# ---------------------------------------------------------------------------------------------
# the in-process hub across workers


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_local_hub_reaches_every_worker_once_in_order(tmp_path, opcode):
    with workers_gateway(tmp_path, 4) as g:
        clients = open_clients(g.port, "/chat", 40)
        try:
            per = worker_conns(g.admin)
            assert sum(1 for x in per if x) > 1, f"subscribers all on one worker: {per}"
            n = 200
            for i in range(n):
                clients[0].send_frame(opcode, numbered(i, opcode))
            want = [(opcode, numbered(i, opcode)) for i in range(n)]
            for k, c in enumerate(clients):
                assert recv_messages(c, n, timeout=10) == want, f"client {k} (0 is the sender)"
            for c in clients:
                assert_silent(c, 0.05)
            assert m(metrics(g.admin), "wsgate_bus_refused_total") == 0
        finally:
            close_all(clients)


def test_local_hub_keeps_each_publisher_order(tmp_path):
    """Eight publishers (on whichever workers the kernel chose) interleave; every client gets
    each publisher's messages once and in that publisher's order."""
    with workers_gateway(tmp_path, 4) as g:
        clients = open_clients(g.port, "/chat", 40)
        pubs = clients[::5]
        try:
            n = 25
            for i in range(n):
                for k, p in enumerate(pubs):
                    p.send_text(f"{k}:{i}")
            for j, c in enumerate(clients):
                got = [p.decode() for _, p in recv_messages(c, n * len(pubs), timeout=10)]
                assert sorted(got) == sorted(f"{k}:{i}" for k in range(len(pubs))
                                             for i in range(n)), f"client {j}"
                for k in range(len(pubs)):
                    mine = [int(x.split(":")[1]) for x in got if x.startswith(f"{k}:")]
                    assert mine == list(range(n)), f"client {j}: publisher {k} out of order"
            for c in clients:
                assert_silent(c, 0.05)
        finally:
            close_all(clients)


# ---------------------------------------------------------------------------------------------
# Redis: one SUBSCRIBE per channel per worker that has a subscriber


@pytest.fixture
def redis(tmp_path_factory):
    r = RedisServer(str(tmp_path_factory.mktemp("redis")))
    r.start()
    yield r
    r.kill()


def busy_workers(admin):
    """Workers of one instance that have a /chat client (every client is on /chat)."""
    return sum(1 for x in worker_conns(admin) if x)


def test_redis_one_subscription_per_process(tmp_path, redis):
    gs = []
    clients = []
    try:
        for name in ("a", "b"):
            g = workers_gateway(tmp_path / name, 2, routes={"/chat": CHAT})
            add_config_sections(g, {"redis": dict(REDIS_KEYS,
                                                  url=f"redis://127.0.0.1:{redis.port}/0")})
            gs.append(g)
            g.start()
        for g in gs:
            wait_until(lambda: http_status(g.port, "/readyz") == 200, 10,
                       what="/readyz 200 with Redis up")
            ms = metrics(g.admin)
            assert m(ms, "wsgate_workers") == 2
            assert m(ms, "wsgate_redis_link_up", link="subscribe") == 1
            assert m(ms, "wsgate_redis_link_up", link="publish") == 1
        for g in gs:
            clients.append(open_clients(g.port, "/chat", 20))
        ca, cb = clients
        # Clients on both workers of each instance, yet one SUBSCRIBE per instance.
        assert [busy_workers(g.admin) for g in gs] == [2, 2]
        redis.wait_numsub("chat", 2)
        everyone = ca + cb
        # one sender per instance, each on whichever worker it landed
        n = 20
        for i in range(n):
            ca[0].send_text(f"a:{i}")
            cb[0].send_text(f"b:{i}")
        for j, c in enumerate(everyone):
            got = [p.decode() for _, p in recv_messages(c, 2 * n, timeout=10)]
            for s in "ab":
                mine = [int(x.split(":")[1]) for x in got if x.startswith(f"{s}:")]
                assert mine == list(range(n)), f"client {j}: from {s} {mine}"
        # An application service publishing with plain Redis reaches every worker's clients.
        redis.cli("PUBLISH", "chat", "from redis-cli")
        for j, c in enumerate(everyone):
            got = [p.decode() for _, p in recv_messages(c, 1, timeout=5)]
            assert got == ["from redis-cli"], f"client {j}: {got}"
        for c in everyone:
            assert_silent(c, 0.05)
        for g in gs:
            assert http_status(g.port, "/readyz") == 200
            assert m(metrics(g.admin), "wsgate_bus_refused_total") == 0
        # b's clients leave: b's one subscription goes, a's stays
        close_all(cb)
        clients = [ca]
        redis.wait_numsub("chat", 1)
        # and with a's clients gone, none
        close_all(ca)
        clients = []
        redis.wait_numsub("chat", 0)
    finally:
        for cs in clients:
            close_all(cs)
        errors = []
        for g in gs:
            try:
                g.stop()
            except AssertionError as e:
                errors.append(str(e))
        assert not errors, "\n".join(errors)


# ---------------------------------------------------------------------------------------------
# reload and drain reach every worker


def test_reload_reaches_every_worker(tmp_path):
    with workers_gateway(tmp_path, 4) as g:
        live = WSClient(g.port, "/echo")
        fresh = []
        try:
            live.send_text("before")
            assert live.recv_message() == (OP_TEXT, b"before")
            status = http_request(g.port, upgrade_request(g.port, path="/later")).status
            assert status == 404
            base = worker_conns(g.admin)
            with open(g.config_path, "w", encoding="utf-8") as f:
                f.write(g.config_text + "\n[route /later]\ntype = echo\n")
            g.send_signal(signal.SIGHUP)
            wait_until(lambda: "in force for new connections" in g.stderr(), 5,
                       what="reload logged")
            # Connect until every worker has served the new route (the kernel picks the
            # worker): each one must have the new snapshot, so every upgrade succeeds.
            while len(fresh) < 200:
                for _ in range(4):
                    c = WSClient(g.port, "/later")
                    fresh.append(c)
                    c.send_text(f"new {len(fresh)}")
                    assert c.recv_message() == (OP_TEXT, f"new {len(fresh)}".encode())
                per = worker_conns(g.admin)
                if len(fresh) >= 16 and all(x > y for x, y in zip(per, base)):
                    break
            assert all(x > y for x, y in zip(per, base)), \
                f"some worker got none of {len(fresh)} connections: {base} -> {per}"
            live.send_text("after")
            assert live.recv_message() == (OP_TEXT, b"after")
        finally:
            close_all(fresh + [live])


def test_drain_every_worker(tmp_path):
    g = workers_gateway(tmp_path, 4, drain_window="1s", shutdown_timeout="3s")
    g.start()
    clients = []
    try:
        clients = open_clients(g.port, "/echo", 20)
        for c in clients:
            c.send_text("hi")
            assert c.recv_message() == (OP_TEXT, b"hi")
        per = worker_conns(g.admin)
        assert sum(per) == 20 and sum(1 for x in per if x) > 1, per
        results = [None] * len(clients)

        def await_close(i):
            try:
                results[i] = (clients[i].expect_close(timeout=6), time.monotonic() - t0)
            except Exception as e:  # reported below with the others
                results[i] = (e, None)

        threads = [threading.Thread(target=await_close, args=(i,)) for i in range(len(clients))]
        t0 = time.monotonic()
        g.send_signal(signal.SIGTERM)
        for t in threads:
            t.start()
        assert wait_until(lambda: get(g.admin, "/readyz")[0] == 503, 1,
                          what="/readyz 503 while draining")
        for t in threads:
            t.join(10)
        codes = [r.code if hasattr(r, "code") else r for r, _ in results]
        assert codes == [1001] * len(clients), results
        times = sorted(t for _, t in results)
        # Each worker spreads its own clients over the window: some wait for a later slot.
        assert times[-1] > 0.4, f"closes were not spread: {times}"
        assert times[-1] < 3.0, times
        assert g.wait(5) == 0, g.stderr()
        g.check_clean_exit()
        assert "shutdown_timeout reached" not in g.stderr(), g.stderr()
    finally:
        close_all(clients)
        g.kill_quietly()


# ---------------------------------------------------------------------------------------------
# startup


def assert_port_taken_error(g, port):
    """g's binary must exit non-zero naming the address. Run directly, not with g.start():
    the port answers /healthz already (the other listener), and a gateway that wrongly joined
    a reuseport group would run on instead of exiting."""
    try:
        r = run_wsgate(["-c", g.config_path], cwd=g.workdir, timeout=5)
    except subprocess.TimeoutExpired:
        r = None  # killed by subprocess.run; failed below, outside the except
    assert r is not None, f"wsgate started on 127.0.0.1:{port}, which was already in use"
    assert r.returncode != 0, r.stderr
    assert "Address already in use" in r.stderr and f"127.0.0.1:{port}" in r.stderr, r.stderr


@pytest.mark.parametrize("reuseport", [False, True], ids=["plain", "reuseport"])
def test_port_taken_by_a_socket(tmp_path, reuseport):
    """A SO_REUSEPORT listener of the same user would even let the workers join its group
    without the probe."""
    g = workers_gateway(tmp_path, 2)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if reuseport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", g.port))
        s.listen(8)
        assert_port_taken_error(g, g.port)


def test_port_taken_by_another_gateway(tmp_path):
    with workers_gateway(tmp_path / "first", 2) as first:
        second = workers_gateway(tmp_path / "second", 2)
        with open(second.config_path, "w", encoding="utf-8") as f:
            f.write(second.config_text.replace(f"127.0.0.1:{second.port}",
                                               f"127.0.0.1:{first.port}"))
        assert_port_taken_error(second, first.port)
        # the first one is untouched
        with WSClient(first.port, "/echo") as c:
            c.send_text("still here")
            assert c.recv_message() == (OP_TEXT, b"still here")


# ---------------------------------------------------------------------------------------------
# workers = auto


def test_workers_auto_follows_affinity(tmp_path):
    cpus = os.sched_getaffinity(0)
    with workers_gateway(tmp_path / "all", "auto") as g:
        assert m(metrics(g.admin), "wsgate_workers") == min(64, len(cpus))
    # The CPUs the process may run on, not those of the machine: the child inherits the
    # affinity of the thread that starts it.
    one = {min(cpus)}
    os.sched_setaffinity(0, one)
    try:
        g = workers_gateway(tmp_path / "one", "auto")
        g.start()
    finally:
        os.sched_setaffinity(0, cpus)
    try:
        assert m(metrics(g.admin), "wsgate_workers") == 1
        with WSClient(g.port, "/echo") as c:
            c.send_text("x")
            assert c.recv_message() == (OP_TEXT, b"x")
    finally:
        g.stop()
