"""test_admin.py - the admin listener (admin_listen): /healthz, /readyz, /metrics in the
Prometheus text format with counts that follow real traffic, /status shown in headless Chromium,
and log_format = json."""

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from wsharness import (WSClient, Gateway, free_port, node_env, node_modules_missing,
                       node_script, wait_until)
from wsharness import OP_TEXT

CHROMIUM = os.environ.get("WSGATE_CHROMIUM", "/usr/bin/chromium")


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def metrics(port):
    """{(name, frozenset(labels)): value} from a scrape; checks the format on the way."""
    status, headers, body = get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    out, typed = {}, set()
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        name, _, rest = key.partition("{")
        labels = frozenset()
        if rest:
            pairs = [p.split("=", 1) for p in rest.rstrip("}").split(",")]
            labels = frozenset((k, v.strip('"')) for k, v in pairs)
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in typed:
                base = name[: -len(suffix)]
        assert base in typed, f"{name} has no # TYPE line"
        out[(name, labels)] = float(value)
    return out


def m(ms, name, **labels):
    return ms[(name, frozenset(labels.items()))]


def admin_gateway(tmp_path, ping_interval):
    admin = free_port()
    g = Gateway(workdir=str(tmp_path), gateway={"admin_listen": f"127.0.0.1:{admin}"},
                heartbeat={"ping_interval": ping_interval, "pong_timeout": "2s"},
                routes={"/echo": {"type": "echo"},
                        "/chat": {"type": "pubsub", "subscribe": "chat", "publish": "chat"}})
    g.admin = admin
    return g


@pytest.fixture
def gw(tmp_path):
    with admin_gateway(tmp_path, "100ms") as g:
        yield g


@pytest.fixture
def quiet_gw(tmp_path):
    """No pings: raw clients that do not read stay connected while the browser starts."""
    with admin_gateway(tmp_path, "0") as g:
        yield g


def test_health_and_ready(gw):
    assert get(gw.admin, "/healthz")[0] == 200
    status, _, body = get(gw.admin, "/readyz")
    assert (status, body) == (200, "ready\n")
    assert get(gw.admin, "/nope")[0] == 404


def test_metrics_follow_traffic(gw):
    before = metrics(gw.admin)
    assert m(before, "wsgate_up") == 1
    assert m(before, "wsgate_connections_open", route="/echo") == 0
    with WSClient(gw.port, "/echo") as a, WSClient(gw.port, "/chat") as b:
        for i in range(5):
            a.send_text(f"hello {i}")
            assert a.recv_message()[1] == f"hello {i}".encode()
        b.send_text("to all")
        assert b.recv_message()[1] == b"to all"
        # a raw client answers pings only while it reads: let a few round trips happen
        wait_until(lambda: (a.pump(0.1) or True) and (b.pump(0.1) or True) and
                   m(metrics(gw.admin), "wsgate_ping_rtt_seconds_count") >= 2, 5,
                   what="two ping round trips")
        now = metrics(gw.admin)
        assert m(now, "wsgate_connections_open", route="/echo") == 1
        assert m(now, "wsgate_connections_open", route="/chat") == 1
        assert m(now, "wsgate_messages_in_total", route="/echo") == 5
        assert m(now, "wsgate_messages_out_total", route="/echo") == 5
        assert m(now, "wsgate_messages_in_total", route="/chat") == 1
        assert m(now, "wsgate_messages_out_total", route="/chat") == 1
        assert m(now, "wsgate_bytes_in_total", route="/echo") == sum(len(f"hello {i}") for i in range(5))
        assert m(now, "wsgate_handshakes_total", result="accepted", status="101") == 2
        assert m(now, "wsgate_ping_rtt_seconds_bucket", le="+Inf") == m(now, "wsgate_ping_rtt_seconds_count")
    # a refused handshake is counted by status
    assert get(gw.port, "/no-such-route")[0] == 404
    after = metrics(gw.admin)
    assert m(after, "wsgate_handshakes_total", result="rejected", status="404") == 1
    wait_until(lambda: m(metrics(gw.admin), "wsgate_connections_open", route="/echo") == 0, 5,
               what="closed connections leave the gauge")


def test_status_page_in_chromium(quiet_gw, tmp_path):
    gw = quiet_gw
    node = shutil.which("node")
    assert node and os.access(CHROMIUM, os.X_OK), "node and chromium are needed"
    missing = node_modules_missing("playwright-core")
    assert not missing, f"node modules {missing} missing: run npm ci in tests/node"
    status, headers, body = get(gw.admin, "/status")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "http://" not in body and "https://" not in body, "the page must be self-contained"
    env = dict(node_env(), WSGATE_CHROMIUM=CHROMIUM, TMPDIR=str(tmp_path))
    with WSClient(gw.port, "/echo"), WSClient(gw.port, "/echo"):
        r = subprocess.run([node, node_script("status_page_test.js"),
                            f"http://127.0.0.1:{gw.admin}/status", "/echo", "2",
                            str(tmp_path / "status.png")],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "OK: /echo shows 2 open" in r.stdout


def test_log_format_json(tmp_path):
    with Gateway(workdir=str(tmp_path), gateway={"log_format": "json"}) as g:
        with WSClient(g.port, "/echo") as c:
            c.send_text("x")
            c.recv_message()
    lines = [l for l in g.stderr().splitlines() if l.strip()]
    assert lines, "no log lines"
    objs = [json.loads(l) for l in lines]
    for o in objs:
        assert {"time", "level", "msg"} <= set(o), o
    assert any("conn" in o and "upgraded" in o["msg"] for o in objs), objs


def test_backend_state_metric(tmp_path):
    """A proxy backend that refuses is marked down, and /metrics says so."""
    admin, dead = free_port(), free_port()
    url = f"ws://127.0.0.1:{dead}/socket"
    g = Gateway(workdir=str(tmp_path), gateway={"admin_listen": f"127.0.0.1:{admin}"},
                routes={"/app": {"type": "proxy", "backend": url, "retries": "0",
                                 "fail_timeout": "60s", "max_fails": "1"}})
    with g:
        status, _, _ = get(g.port, "/app")  # plain GET: refused before any backend is tried
        assert status == 426
        from wsharness import http_request, upgrade_request
        assert http_request(g.port, upgrade_request(g.port, path="/app")).status == 502
        ms = metrics(admin)
        assert m(ms, "wsgate_backend_up", route="/app", backend=url) == 0
        assert m(ms, "wsgate_backend_sessions", route="/app", backend=url) == 0
        assert m(ms, "wsgate_handshakes_total", result="rejected", status="502") == 1


def test_outbound_queue_bytes_follow_a_slow_reader_and_its_close(tmp_path):
    """wsgate_outbound_queue_bytes is kept by the connections' queues as bytes come and go
    (issue #12: no walk of every connection each second): it rises while a client that does not
    read has echoes waiting, and is back to 0 once that client is gone — nothing left counted
    for a freed connection."""
    import socket
    import time

    from wsharness import build_frame, read_http_response, upgrade_request, wait_until

    g = admin_gateway(tmp_path, "0")
    g.start()
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", g.port))
        sock.sendall(upgrade_request(g.port, "/echo").encode())
        resp, _ = read_http_response(sock, time.monotonic() + 5)
        assert resp.status == 101
        # Until the gateway stops reading us (its output past the high watermark) and our own
        # send buffer is full: megabytes, more than the kernel's send buffer towards us takes.
        sock.settimeout(2)
        try:
            for _ in range(256):
                sock.sendall(build_frame(0x2, b"q" * 65536))
        except socket.timeout:
            pass
        wait_until(lambda: m(metrics(g.admin), "wsgate_outbound_queue_bytes") > 64 * 1024, 10,
                   what="echoes queued towards a client that does not read")
        sock.close()
        wait_until(lambda: m(metrics(g.admin), "wsgate_outbound_queue_bytes") == 0, 10,
                   what="the queue gauge back to 0 after the client went")
    finally:
        g.stop()


def test_heap_in_use_follows_what_the_gateway_holds(tmp_path):
    """wsgate_heap_in_use_bytes counts the heap the process has in use (what a leak grows, and
    what the chaos run's memory bound reads): it rises by what a client that does not read has
    queued towards it, and comes back down once that client is gone."""
    import socket
    import time

    from wsharness import build_frame, read_http_response, upgrade_request, wait_until

    g = admin_gateway(tmp_path, "0")
    g.start()
    try:
        before = m(metrics(g.admin), "wsgate_heap_in_use_bytes")
        assert before > 0
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", g.port))
        sock.sendall(upgrade_request(g.port, "/echo").encode())
        resp, _ = read_http_response(sock, time.monotonic() + 5)
        assert resp.status == 101
        sock.settimeout(2)
        try:
            for _ in range(256):
                sock.sendall(build_frame(0x2, b"q" * 65536))
        except socket.timeout:
            pass
        wait_until(lambda: m(metrics(g.admin), "wsgate_outbound_queue_bytes") > 256 * 1024, 10,
                   what="echoes queued towards a client that does not read")
        held = metrics(g.admin)
        queued = m(held, "wsgate_outbound_queue_bytes")
        grown = m(held, "wsgate_heap_in_use_bytes") - before
        assert grown >= queued, (grown, queued)
        sock.close()
        wait_until(lambda: m(metrics(g.admin), "wsgate_heap_in_use_bytes") < before + grown / 4,
                   10, what="the heap given back after the client went")
    finally:
        g.stop()
