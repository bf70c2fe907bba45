"""test_dashboard.py - the Grafana dashboard (etc/grafana/wsgate.json) and the alert rules
(etc/prometheus/wsgate-alerts.yml) checked against a real Prometheus (Debian's `prometheus`,
started here with its own config and data dir on a free loopback port) scraping a real wsgate
under a little load: echo, pub/sub through redis-server, a proxy route, pings, a refused
handshake. Every PromQL expression of the dashboard must parse and return at least one series;
every alert expression must parse, and promtool must accept the rules file."""

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from wsharness import (Gateway, RedisServer, WSClient, _set_pdeathsig, add_config_sections,
                       free_port, http_request, srcdir, wait_until)

DASHBOARD = os.path.join(srcdir(), "etc", "grafana", "wsgate.json")
ALERTS = os.path.join(srcdir(), "etc", "prometheus", "wsgate-alerts.yml")
RATE_WINDOW = "15s"  # what $__rate_interval stands for: several 1 s scrapes


def need(tool):
    path = shutil.which(tool)
    # Like every other tool the suite needs: missing means failed, never skipped.
    if path is None:
        pytest.fail(f"{tool} not installed (tools/setup.sh installs the prometheus package)")
    return path


def dashboard_exprs():
    """(panel title, refId, expr) of every target of every panel, rows' panels included."""
    with open(DASHBOARD, encoding="utf-8") as f:
        dash = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t.get("refId", "?"), t["expr"]))
    walk(dash["panels"])
    return out


def grafana_to_promql(expr):
    """The query Grafana would send with every instance selected."""
    return (expr.replace("$__rate_interval", RATE_WINDOW).replace("$__interval", "1s")
            .replace("${instance}", ".*").replace("$instance", ".*"))


class Prometheus:
    def __init__(self, workdir, target):
        self.workdir = workdir
        self.port = free_port()
        self.config = os.path.join(workdir, "prometheus.yml")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    f"rule_files:\n  - {ALERTS}\n"
                    "scrape_configs:\n  - job_name: wsgate\n    static_configs:\n"
                    f"      - targets: ['{target}']\n")
        self.log = os.path.join(workdir, "prometheus.log")
        self.proc = None

    def start(self):
        argv = [need("prometheus"), f"--config.file={self.config}",
                f"--storage.tsdb.path={os.path.join(self.workdir, 'data')}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=logf, cwd=self.workdir,
                                         preexec_fn=_set_pdeathsig)

        def ready():
            assert self.proc.poll() is None, f"prometheus exited: {self.logtext()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_until(ready, 30, interval=0.2, what="prometheus /-/ready")
        return self

    def logtext(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def query(self, q):
        """Prometheus's JSON answer to an instant query (errors come back as JSON too)."""
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": q}))
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            return json.load(e)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_alert_rules_pass_promtool():
    r = subprocess.run([need("promtool"), "check", "rules", ALERTS], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """wsgate with Redis, pub/sub, proxy and pings, clients keeping it busy, and Prometheus
    scraping its admin_listen every second."""
    need("prometheus")
    redis = RedisServer(str(tmp_path_factory.mktemp("redis"))).start()
    admin = free_port()
    g = None
    prom = None
    clients = []
    try:
        g = Gateway(workdir=str(tmp_path_factory.mktemp("dash")),
                    gateway={"admin_listen": f"127.0.0.1:{admin}"},
                    heartbeat={"ping_interval": "1s", "pong_timeout": "5s"},
                    routes={"/echo": {"type": "echo"},
                            "/chat": {"type": "pubsub", "subscribe": "chat",
                                      "publish": "chat", "slow_consumer": "drop_oldest"},
                            "/proxy": {"type": "proxy", "backend": "ws://127.0.0.1:PORT/echo"}})
        # The proxy's backend is this gateway's own echo route.
        g.config_text = g.config_text.replace(":PORT/", f":{g.port}/")
        with open(g.config_path, "w", encoding="utf-8") as f:
            f.write(g.config_text)
        add_config_sections(g, {"redis": {"url": f"redis://127.0.0.1:{redis.port}/0"}})
        g.start()
        prom = Prometheus(str(tmp_path_factory.mktemp("prom")), f"127.0.0.1:{admin}").start()
        # A refused handshake (404) for the "rejected" series.
        http_request(g.port, "GET /nowhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", timeout=2.0, close_timeout=0)
        for path in ("/echo", "/echo", "/chat", "/chat", "/proxy"):
            clients.append(WSClient(g.port, path=path))
        wait_until(lambda: redis.numsub("chat") >= 1, 10, what="SUBSCRIBE chat")
        stop = time.monotonic() + 8

        def busy(c, i):
            n = 0
            while time.monotonic() < stop:
                if c.path != "/chat" or i == 2:
                    c.send_text(f"m{n}")
                    n += 1
                c.pump(0.2)  # answers pings, reads echoes and deliveries
        threads = [threading.Thread(target=busy, args=(c, i)) for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # The last scrapes saw everything.
        time.sleep(2)
        yield g, prom
    finally:
        for c in clients:
            c.close()
        if prom is not None:
            prom.stop()
        if g is not None:
            g.stop()
        redis.kill()


def test_dashboard_queries_return_series(loaded):
    g, prom = loaded
    up = prom.query("wsgate_up")
    assert up["status"] == "success" and up["data"]["result"], (up, prom.logtext())
    exprs = dashboard_exprs()
    assert len(exprs) >= 20, exprs
    problems = []
    for title, ref, expr in exprs:
        q = grafana_to_promql(expr)
        assert "$" not in q, f"panel {title!r} {ref}: a variable this test does not know: {q}"
        r = prom.query(q)
        if r.get("status") != "success":
            problems.append(f"panel {title!r} {ref}: does not parse: {q}: {r.get('error')}")
        elif not r["data"]["result"]:
            problems.append(f"panel {title!r} {ref}: no series: {q}")
    assert not problems, "\n".join(problems) + "\n\nscrape:\n" + g.stderr()[-2000:]


def test_alert_expressions_parse(loaded):
    g, prom = loaded
    with open(ALERTS, encoding="utf-8") as f:
        text = f.read()
    # The rules as Prometheus loaded them (the same parser as promtool, on the live server).
    with urllib.request.urlopen(f"http://127.0.0.1:{prom.port}/api/v1/rules", timeout=10) as r:
        rules = json.load(r)
    loaded_rules = [rule for grp in rules["data"]["groups"] for rule in grp["rules"]]
    assert len(loaded_rules) == len(re.findall(r"^\s*- alert:", text, re.M)), rules
    for rule in loaded_rules:
        assert rule["health"] in ("ok", "unknown"), rule
        res = prom.query(rule["query"])
        assert res["status"] == "success", (rule["name"], res)
    # Healthy gateway, no alert fires.
    assert all(rule["state"] == "inactive" for rule in loaded_rules), loaded_rules
