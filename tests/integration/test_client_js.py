"""test_client_js.py - clients/js/wsgate-client.js (the reconnecting client module) in Node
with the "ws" package (tests/node/client_js_test.js): the delivery contract against a tiny
server in the script (pos, since=, resume, gap, retry=/since= close reasons, heartbeat
timeout), echo through wsgate with the app heartbeat as liveness only, the admission budget's
Retry-After obeyed, and a drained gateway's retry hint followed by a reconnect."""

import shutil
import signal
import subprocess
import time

import pytest

from wsharness import (Gateway, node_env, node_modules_missing, node_script, render_config,
                       BASE_GATEWAY, BASE_HEARTBEAT)


@pytest.fixture(scope="module")
def node():
    exe = shutil.which("node")
    assert exe, "node is not installed"
    assert not node_modules_missing("ws"), "node modules missing: run `npm ci` in tests/node"
    return exe


def run(node, tmp_path, *args, timeout=60):
    r = subprocess.run([node, node_script("client_js_test.js")] + list(args), cwd=tmp_path,
                       env=node_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"client_js_test.js {args[0]} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_contract_against_a_contract_server(node, tmp_path):
    assert "ok: contract" in run(node, tmp_path, "contract")


def test_echo_with_app_heartbeat(node, tmp_path):
    with Gateway(workdir=str(tmp_path), heartbeat={"ping_interval": "300ms",
                                                   "app_message": "hb"}) as g:
        assert "ok: echo" in run(node, tmp_path, "echo", g.url("/echo"), "hb")


def test_admission_retry_after_is_obeyed(node, tmp_path):
    with Gateway(workdir=str(tmp_path), gateway={"admission_rate": "2",
                                                 "admission_ramp": "0"}) as g:
        time.sleep(0.3)
        out = run(node, tmp_path, "admission", g.url("/echo"), "6")
        assert "ok: admission" in out, out


def test_drain_hint_then_reconnect(node, tmp_path):
    """SIGTERM: the client gets 1001 with retry=S.s, waits that long (its reported delay
    equals the hint), and reconnects to the gateway that takes the port over."""
    a = Gateway(workdir=str(tmp_path / "a"), gateway={"drain_window": "200ms"})
    a.start()
    p = subprocess.Popen([node, node_script("client_js_test.js"), "drain", a.url("/echo")],
                         cwd=tmp_path, env=node_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    b = None
    try:
        assert p.stdout.readline().strip() == "open"
        a.send_signal(signal.SIGTERM)
        line = p.stdout.readline().split()
        assert line[:2] == ["close", "1001"], line
        hint = float(line[2].split("=")[1])
        assert line[2].startswith("retry=") and abs(int(line[3]) - hint * 1000) < 1, line
        assert a.wait(10) == 0
        gw = dict(BASE_GATEWAY)
        b = Gateway(workdir=str(tmp_path / "b"),
                    config_text=render_config([a.port], gw, BASE_HEARTBEAT))
        b.ports = [a.port]
        b.start()
        assert p.stdout.readline().strip() == "reopened"
        assert p.wait(20) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
        if b is not None:
            b.stop()
        if a.running():
            a.kill_quietly()


def test_chromium_loads_the_module(node, tmp_path):
    """The module in Chromium with its own WebSocket: 4 clients at once on a 2/s budget; the
    refused ones (a browser sees only a failure before open) back off and all open and echo;
    the app heartbeat is never shown to the application."""
    import functools
    import http.server
    import os
    import threading

    from wsharness import free_port, srcdir

    chromium = os.environ.get("WSGATE_CHROMIUM", "/usr/bin/chromium")
    assert os.access(chromium, os.X_OK), f"{chromium} missing: apt-get install chromium"
    assert not node_modules_missing("playwright-core"), "run `npm ci` in tests/node"

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def end_headers(self):
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

    Quiet.extensions_map = dict(Quiet.extensions_map, **{".js": "text/javascript"})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()),
                                          functools.partial(Quiet, directory=srcdir()))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = dict(node_env(), TMPDIR=str(tmp_path), WSGATE_CHROMIUM=chromium)
    try:
        with Gateway(workdir=str(tmp_path), gateway={"admission_rate": "2", "admission_ramp": "0"},
                     heartbeat={"ping_interval": "300ms", "app_message": "hb"}) as g:
            time.sleep(0.3)
            page = f"http://127.0.0.1:{srv.server_address[1]}/tests/node/client_page.html"
            r = subprocess.run([node, node_script("client_browser_test.js"), page,
                                g.url("/echo"), "4", "hb"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, f"client_browser_test.js failed:\n{r.stdout}\n{r.stderr}"
            assert "ok: browser client module" in r.stdout
    finally:
        srv.shutdown()
        srv.server_close()
