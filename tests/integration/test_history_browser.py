"""test_history_browser.py - Debian's headless Chromium follows a channel with history
(tests/node/history_page.html, driven by browser_history_test.js) while messages are published;
the page is reloaded mid-stream and resumes with ?since= from sessionStorage, or through the
'wsgate.since.<encoded>' subprotocol (the form for clients that keep the URL): every offset once,
in order, across the reload. Node and Chromium run in their own process group, killed whole
whatever the outcome (a failed run left both behind)."""

import os
import signal
import subprocess
import threading
import time

import pytest

from test_browser import browser_env, page_server  # noqa: F401 - pytest fixtures
from wsharness import WSClient, node_script

GATEWAY_SETTINGS = {"routes": {
    "/h": {"type": "pubsub", "subscribe": "bh", "envelope": "json", "history_size": "10000"},
    "/h-pub": {"type": "pubsub", "subscribe": "sink", "publish": "bh"},
}}


def stop_group(proc):
    """Kills node and every Chromium process it started (one process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.mark.parametrize("resume", ["query", "protocol"])
def test_chromium_reload_mid_stream_resumes(gw, page_server, browser_env, tmp_path,  # noqa: F811
                                            resume):
    node, env = browser_env
    env = dict(env, TMPDIR=str(tmp_path))
    n, reload_at = 600, 100
    proc = subprocess.Popen([node, node_script("browser_history_test.js"),
                             f"{page_server}/history_page.html", f"ws://127.0.0.1:{gw.port}/h",
                             str(n), str(reload_at), resume], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    t = None
    try:
        # publish once the page's WebSocket is open ("ready": its 101 came, the channel is
        # subscribed), at ~150/s so the reload lands mid-stream
        line = proc.stdout.readline()
        assert "ready" in line, (line, proc.stderr.read() if proc.poll() is not None else "")

        def publish():
            with WSClient(gw.port, "/h-pub") as p:
                for i in range(n):
                    p.send_text(f"b{i}")
                    time.sleep(1 / 150)

        t = threading.Thread(target=publish)
        t.start()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"browser_history_test.js failed:\n{line}{out}\n{err}"
        assert f"ok: {n} messages" in out, out
    finally:
        if t is not None:
            t.join()
        stop_group(proc)
