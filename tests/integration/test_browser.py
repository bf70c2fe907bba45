"""test_browser.py - Debian's headless Chromium (driven by playwright-core, tests/node/
browser_test.js) loads tests/node/echo_page.html from a tiny local HTTP server; the page's own
WebSocket API sends text and an ArrayBuffer through the gateway, gets them back equal, negotiates
a subprotocol and closes with 1000 + reason (code 1000, wasClean, reason seen in onclose)."""

import functools
import http.server
import os
import shutil
import subprocess
import threading

import pytest

from wsharness import (ECHO_ROUTES, free_port, node_env, node_modules_dir, node_modules_missing,
                       node_script, srcdir)

GATEWAY_SETTINGS = {"routes": ECHO_ROUTES}
CHROMIUM = os.environ.get("WSGATE_CHROMIUM", "/usr/bin/chromium")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass


@pytest.fixture(scope="module")
def page_server():
    """Serves tests/node (read-only is fine) on a free loopback port."""
    directory = os.path.join(srcdir(), "tests", "node")
    handler = functools.partial(QuietHandler, directory=directory)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser_env():
    node = shutil.which("node")
    assert node, "node is not installed"
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing: apt-get install chromium"
    missing = node_modules_missing("playwright-core")
    assert not missing, (f"node modules {missing} not found in {node_modules_dir()}: run "
                         "`npm ci` in tests/node or set WSGATE_NODE_MODULES")
    env = node_env()
    env["WSGATE_CHROMIUM"] = CHROMIUM
    return node, env


def test_chromium_websocket_echo(gw, page_server, browser_env, tmp_path):
    node, env = browser_env
    env = dict(env, TMPDIR=str(tmp_path))  # the fresh --user-data-dir lands here
    r = subprocess.run([node, node_script("browser_test.js"), f"{page_server}/echo_page.html",
                        f"ws://127.0.0.1:{gw.port}"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"browser_test.js failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "ok: browser round trips" in r.stdout, r.stdout
