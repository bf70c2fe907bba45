"""test_client_resume.py - clients/js/wsgate-client.js resuming through REAL wsgate history
(#11 + #16). For the lead: after merging s4-history and s4-storm, copy this file to
tests/integration/test_client_resume.py (it needs nothing else: it writes its Node script into
the test's tmp dir and imports the module from the source tree).

1. Redis history, drain and restart: a client on a json route with history_size reads 5
   messages; its gateway is drained (SIGTERM): the 1001 close says "retry=S.s since=E:5"; while
   it is away 5 more are published through Redis; a second gateway on the same Redis and port
   takes over; the client reconnects by itself with since=E:5 and gets 6..10 exactly once, in
   order, then live messages: no duplicate, no gap, no gap notice.
2. In-process history lost (no Redis): the same with a restarted in-process gateway: the epoch
   changes, so the client's onGap gets {"type":"gap","reason":"epoch_changed",...} and the
   messages after the restart still arrive.
Checked on the merged tree (and against s4-history's binary alone, which lacks only the retry=
hint: there the close reason is "going away since=E:O")."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from wsharness import (BASE_HEARTBEAT, Gateway, RedisServer, RespConn, add_config_sections,
                       http_status, node_env, node_modules_missing, render_config, srcdir,
                       wait_until, BASE_GATEWAY)

ROUTE = {"/chat": {"type": "pubsub", "subscribe": "chat", "publish": "chat", "envelope": "json",
                   "history_size": "100"}}

NODE_SCRIPT = r"""
'use strict';
// Prints one JSON line per event: {"ev":"open"}, {"ev":"msg","pos":..,"data":..},
// {"ev":"gap",...}, {"ev":"close","code":..,"reason":..,"delay":..}; "stop" on stdin ends it.
const path = require('path');
const readline = require('readline');
const WebSocket = require('ws');
(async () => {
  const { WsgateClient } = await import(process.env.CLIENT_MODULE);
  const out = (o) => console.log(JSON.stringify(o));
  const c = new WsgateClient(process.argv[2], {
    WebSocket, minDelay: 100, maxDelay: 300,
    onOpen() { out({ ev: 'open', url: this.ws && this.ws.url }); },
    onMessage(data, m) { if (m && m.type === 'message') out({ ev: 'msg', pos: m.pos, data: m.data }); },
    onGap(g) { out(Object.assign({ ev: 'gap' }, g)); },
    onClose(ev, delay) { out({ ev: 'close', code: ev.code, reason: ev.reason, delay }); },
  });
  readline.createInterface({ input: process.stdin }).on('line', () => { c.close(); process.exit(0); });
})();
"""


class Client:
    def __init__(self, tmp_path, url):
        script = tmp_path / "resume_client.js"
        script.write_text(NODE_SCRIPT)
        env = dict(node_env(), CLIENT_MODULE=os.path.join(srcdir(), "clients", "js",
                                                          "wsgate-client.js"))
        self.p = subprocess.Popen([shutil.which("node"), str(script), url], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def next(self, ev=None, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.p.stdout.readline()
            assert line, "client exited"
            o = json.loads(line)
            if ev is None or o["ev"] == ev:
                return o
        raise AssertionError(f"no {ev} within {timeout}s")

    def stop(self):
        if self.p.poll() is None:
            self.p.stdin.write("stop\n")
            self.p.stdin.flush()
            self.p.wait(10)


def text(m):
    """A client publish on a json route arrives wrapped: {"conn":..,"route":..,"data":TEXT}."""
    d = m["data"]
    if isinstance(d, str) and d.startswith("{"):
        return json.loads(d).get("data", d)
    return d


def publish_ws(port, texts):
    from wsharness import WSClient
    with WSClient(port, path="/chat") as w:
        for t in texts:
            w.send_text(t)
        time.sleep(0.3)


def gateway_on(tmp_path, name, port, redis=None):
    g = Gateway(workdir=str(tmp_path / name),
                config_text=render_config([port], dict(BASE_GATEWAY, drain_window="0"),
                                          BASE_HEARTBEAT, ROUTE))
    g.ports = [port]
    if redis is not None:
        add_config_sections(g, {"redis": {"url": f"redis://127.0.0.1:{redis.port}/0",
                                          "reconnect_max": "500ms"}})
    g.start()
    return g


@pytest.fixture
def node():
    assert shutil.which("node") and not node_modules_missing("ws")


def test_resume_across_a_drain_through_redis(node, tmp_path):
    redis = RedisServer(str(tmp_path / "redis"))
    redis.start()
    a = b = c = None
    try:
        from wsharness import free_port
        port = free_port()
        a = gateway_on(tmp_path, "a", port, redis)
        wait_until(lambda: http_status(port, "/readyz") == 200, 10, what="a ready")
        c = Client(tmp_path, f"ws://127.0.0.1:{port}/chat")
        c.next("open")
        publish_ws(port, [f"m{i}" for i in range(1, 6)])
        got = [c.next("msg") for _ in range(5)]
        assert [text(m) for m in got] == [f"m{i}" for i in range(1, 6)], got
        epoch, off = got[-1]["pos"].split(":")
        assert off == "5"
        a.send_signal(signal.SIGTERM)
        cl = c.next("close")
        assert cl["code"] == 1001, cl
        tokens = dict(t.split("=", 1) for t in cl["reason"].split() if "=" in t)
        assert tokens.get("since") == f"{epoch}:5", cl
        assert "retry" in tokens, cl  # the storm branch's hint
        assert a.wait(10) == 0
        b = gateway_on(tmp_path, "b", port, redis)
        wait_until(lambda: http_status(port, "/readyz") == 200, 10, what="b ready")
        # The client may reconnect before these are published, or after: either way each
        # arrives once, in order (replay then live).
        publish_ws(port, [f"m{i}" for i in range(6, 11)])
        after = []
        while len(after) < 5:
            o = c.next()
            assert o["ev"] in ("open", "msg", "close"), o  # no gap notice
            if o["ev"] == "msg":
                after.append(o)
        assert [text(m) for m in after] == [f"m{i}" for i in range(6, 11)], after
        assert [m["pos"] for m in after] == [f"{epoch}:{i}" for i in range(6, 11)], after
    finally:
        if c:
            c.stop()
        for g in (b, a):
            if g is not None and g.running():
                g.kill_quietly()
        redis.kill()


def test_in_process_history_lost_is_a_gap(node, tmp_path):
    from wsharness import free_port
    port = free_port()
    a = gateway_on(tmp_path, "a", port)
    b = c = None
    try:
        c = Client(tmp_path, f"ws://127.0.0.1:{port}/chat")
        c.next("open")
        publish_ws(port, ["x1", "x2"])
        got = [c.next("msg") for _ in range(2)]
        a.send_signal(signal.SIGTERM)
        c.next("close")
        assert a.wait(10) == 0
        b = gateway_on(tmp_path, "b", port)
        c.next("open")
        g = c.next("gap")
        assert g["reason"] == "epoch_changed" and g["channel"] == "chat", g
        assert g["epoch"] != got[-1]["pos"].split(":")[0], g
        publish_ws(port, ["y1"])
        assert text(c.next("msg")) == "y1"
    finally:
        if c:
            c.stop()
        for g in (b, a):
            if g is not None and g.running():
                g.kill_quietly()
