"""test_clients_node.py - the Node "ws" client (tests/node/ws_roundtrip.js) against the gateway:
text and binary of 0, 125, 126, 65535, 65536 bytes and 16 MiB, echoed byte- and type-exactly,
then a 1000 close. Modules come from WSGATE_NODE_MODULES or tests/node/node_modules."""

import shutil
import subprocess

import pytest

from wsharness import node_env, node_modules_dir, node_modules_missing, node_script

GATEWAY_SETTINGS = {"gateway": {"max_message_size": "32MiB"}}


@pytest.fixture(scope="module")
def node():
    exe = shutil.which("node")
    assert exe, "node is not installed"
    missing = node_modules_missing("ws")
    assert not missing, (f"node modules {missing} not found in {node_modules_dir()}: run "
                         "`npm ci` in tests/node or set WSGATE_NODE_MODULES")
    return exe


def test_node_ws_roundtrip(gw, node, tmp_path):
    r = subprocess.run([node, node_script("ws_roundtrip.js"), gw.url("/echo")], cwd=tmp_path,
                       env=node_env(), capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, f"ws_roundtrip.js failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "ok: 12 round trips and close 1000" in r.stdout, r.stdout


def test_node_ws_roundtrip_can_fail(gw, node, tmp_path):
    # The script must report failure when the far end is wrong: here a route that does not
    # exist (404), so no round trip can succeed.
    r = subprocess.run([node, node_script("ws_roundtrip.js"), gw.url("/nope")], cwd=tmp_path,
                       env=node_env(), capture_output=True, text=True, timeout=90)
    assert r.returncode == 1, f"{r.stdout}\n{r.stderr}"
    assert "FAIL:" in r.stderr and "404" in r.stderr, r.stderr
