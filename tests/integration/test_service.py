"""test_service.py - wsgate under a service manager, played by the test: readiness datagrams on
NOTIFY_SOCKET (READY=1, RELOADING=1, STOPPING=1; with Redis, READY only once subscribed),
listening sockets passed with LISTEN_FDS/LISTEN_PID (served, kept across a restart without
refusing a client, unclaimed ones closed), and journald's log format when JOURNAL_STREAM names
stderr."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from wsharness import (OP_TEXT, Gateway, HarnessError, RedisServer, WSClient, _set_pdeathsig,
                       add_config_sections, free_port, wait_until, wsgate_bin)

# Runs argv[2:] as the same process with the socket of fd argv[1] at fd 3 and LISTEN_PID set to
# its own pid, as systemd does (sd_listen_fds(3)).
ACTIVATE = (
    "import os, sys\n"
    "n = int(sys.argv[1])\n"
    "if n != 3:\n"
    "    os.dup2(n, 3)\n"
    "    os.close(n)\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.environ['LISTEN_FDS'] = '1'\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def launch(g, env=None, listen_sock=None, ready=True):
    """Starts Gateway g (not started) with extra environment and, optionally, a listening
    socket passed the systemd way. g.stop() works as for g.start()."""
    argv = [wsgate_bin(), "-c", g.config_path]
    pass_fds = ()
    if listen_sock is not None:
        argv = [sys.executable, "-c", ACTIVATE, str(listen_sock.fileno())] + argv
        pass_fds = (listen_sock.fileno(),)
    e = dict(os.environ)
    e.update(env or {})
    g._err = open(g.stderr_path, "wb")
    g._out = open(g.stdout_path, "wb")
    g.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=g._out, stderr=g._err,
                              cwd=g.workdir, env=e, pass_fds=pass_fds,
                              preexec_fn=_set_pdeathsig)
    if ready:
        def up():
            if g.proc.poll() is not None:
                raise HarnessError(f"wsgate exited with {g.proc.returncode}; stderr:\n"
                                   f"{g.stderr()}")
            try:
                return g.healthz() == 200
            except (OSError, HarnessError, TimeoutError):
                return False
        wait_until(up, 10, what="GET /healthz 200")
    return g


@pytest.fixture
def gateways(tmp_path_factory):
    made = []

    def make(**kw):
        g = Gateway(workdir=str(tmp_path_factory.mktemp("svc")), **kw)
        made.append(g)
        return g

    yield make
    for g in made:
        g.kill_quietly()


class Notify:
    """The manager's end of NOTIFY_SOCKET: an AF_UNIX datagram socket in a temp dir."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.got = []

    def next(self, timeout=5.0):
        self.sock.settimeout(timeout)
        msg = self.sock.recv(4096).decode()
        self.got.append(msg)
        return dict(line.split("=", 1) for line in msg.split("\n") if "=" in line)

    def expect(self, key, timeout=5.0):
        """The first datagram with key=1 (STATUS-only ones are skipped); its fields."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f"no {key}=1 within {timeout}s; got {self.got}")
            try:
                f = self.next(left)
            except socket.timeout:
                raise HarnessError(f"no {key}=1 within {timeout}s; got {self.got}") from None
            if f.get(key) == "1":
                return f

    def silent(self, key, seconds):
        """No datagram with key=1 for that long."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                f = self.next(left)
            except socket.timeout:
                return
            assert f.get(key) != "1", f"{key}=1 too early: {self.got}"

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    n = Notify(str(tmp_path / "notify.sock"))
    yield n
    n.close()


def echo_once(port, text="hello"):
    with WSClient(port) as c:
        c.send_text(text)
        assert c.recv_message() == (OP_TEXT, text.encode())


def test_notify_ready_reload_stopping(gateways, notify):
    g = launch(gateways(), env={"NOTIFY_SOCKET": notify.path}, ready=False)
    f = notify.expect("READY")
    assert "STATUS" in f
    # READY means serving: the listener accepts right now.
    echo_once(g.port)
    g.send_signal(signal.SIGHUP)
    f = notify.expect("RELOADING")
    assert int(f["MONOTONIC_USEC"]) > 0
    notify.expect("READY")
    g.stop()
    assert notify.expect("STOPPING", timeout=1).get("STATUS") == "draining"


def test_notify_rejected_reload_is_ready_again(gateways, notify):
    g = launch(gateways(), env={"NOTIFY_SOCKET": notify.path})
    notify.expect("READY")
    with open(g.config_path, "a", encoding="utf-8") as f:
        f.write("\n[gateway]\nno_such_key = 1\n")
    g.send_signal(signal.SIGHUP)
    notify.expect("RELOADING")
    f = notify.expect("READY")
    assert "rejected" in f.get("STATUS", ""), notify.got
    g.stop()


def test_notify_ready_waits_for_redis(gateways, notify, tmp_path):
    redis = RedisServer(str(tmp_path / "redis"))
    g = gateways(routes={"/chat": {"type": "pubsub", "subscribe": "chat", "publish": "chat"}})
    add_config_sections(g, {"redis": {"url": f"redis://127.0.0.1:{redis.port}/0",
                                      "reconnect_max": "200ms", "connect_timeout": "200ms"}})
    launch(g, env={"NOTIFY_SOCKET": notify.path})
    try:
        # Listening, but a publish would reach nobody through Redis yet: not ready.
        notify.silent("READY", 1.0)
        assert any("waiting for the Redis" in m for m in notify.got), notify.got
        redis.start()
        f = notify.expect("READY", timeout=10)
        assert "Redis" in f.get("STATUS", "")
        g.stop()
    finally:
        redis.kill()


def listening_socket(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def test_socket_activation_serves_inherited_socket(gateways):
    port = free_port()
    sock = listening_socket(port)
    try:
        # Two workers: without the inherited socket wsgate would bind 127.0.0.1:port itself,
        # which the test's socket (no SO_REUSEPORT) holds: the start would fail.
        g = launch(gateways(nports=0, config_text=f"[gateway]\nlisten = 127.0.0.1:{port}\n"
                            "workers = 2\nshutdown_timeout = 2s\ndrain_window = 0\n\n"
                            "[route /echo]\ntype = echo\n"), listen_sock=sock, ready=False)
        g.ports = [port]
        wait_until(lambda: g.proc.poll() is not None or "started" in g.stderr(), 10,
                   what="start")
        assert g.proc.poll() is None, g.stderr()
        assert "socket from the service manager" in g.stderr()
        for i in range(8):  # both workers' duplicates serve
            echo_once(port, f"m{i}")
        g.stop()
    finally:
        sock.close()


def test_socket_activation_restart_refuses_nobody(gateways):
    """The manager's socket outlives the process: a client that connects while no wsgate runs
    waits in the kernel's queue and is served by the next one."""
    port = free_port()
    sock = listening_socket(port)
    text = (f"[gateway]\nlisten = 127.0.0.1:{port}\nworkers = 1\nshutdown_timeout = 2s\n"
            "drain_window = 0\n\n[route /echo]\ntype = echo\n")
    try:
        g1 = launch(gateways(nports=0, config_text=text), listen_sock=sock, ready=False)
        g1.ports = [port]
        wait_until(lambda: "started" in g1.stderr() or g1.proc.poll() is not None, 10,
                   what="start")
        echo_once(port)
        g1.stop()
        # Nobody accepts now; the connect still succeeds (queued by the kernel) and the
        # upgrade request waits in the socket.
        c = WSClient(port, handshake=False, timeout=10)
        try:
            c.sock.sendall(c.request_bytes())
            g2 = launch(gateways(nports=0, config_text=text), listen_sock=sock, ready=False)
            g2.ports = [port]
            resp = c._read_http_head(time.monotonic() + 10)
            assert resp.status == 101, (resp.status_line, g2.stderr())
            c.send_text("after the restart")
            assert c.recv_message() == (OP_TEXT, b"after the restart")
            g2.stop()
        finally:
            c.close()
    finally:
        sock.close()


def test_socket_activation_unclaimed_socket_closed(gateways):
    other = free_port()
    sock = listening_socket(other)
    try:
        g = gateways()
        launch(g, listen_sock=sock)
        assert re.search(rf"LISTEN_FDS: socket 127\.0\.0\.1 port {other} matches no listen "
                         "line; closed", g.stderr()), g.stderr()
        echo_once(g.port)
        g.stop()
    finally:
        sock.close()


def test_journal_stream_priority_prefix(gateways):
    g = gateways()
    # stderr is g.stderr_path: name it as the journal's stream, as systemd does.
    open(g.stderr_path, "wb").close()
    st = os.stat(g.stderr_path)
    g_env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    # launch() reopens the file (same inode: truncated in place).
    launch(g, env=g_env)
    with open(g.config_path, "a", encoding="utf-8") as f:
        f.write("\n[gateway]\nno_such_key = 1\n")
    g.send_signal(signal.SIGHUP)
    wait_until(lambda: "rejected" in g.stderr(), 5, what="rejected reload logged")
    g.stop()
    lines = [ln for ln in g.stderr().splitlines() if ln]
    assert lines
    for ln in lines:
        assert re.match(r"<[3467]>(error|warn|info|debug) ", ln), ln
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", ln), ln
    assert any(ln.startswith("<6>info  wsgate") for ln in lines), lines
    assert any(ln.startswith("<4>warn ") and "rejected" in ln for ln in lines), lines


def test_journal_stream_of_another_file_keeps_timestamps(gateways, tmp_path):
    other = tmp_path / "not-stderr"
    other.write_bytes(b"")
    st = os.stat(other)
    g = launch(gateways(), env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    g.stop()
    first = g.stderr().splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info ", first), first


def test_journal_stream_json_lines_get_the_prefix_too(gateways):
    g = gateways(gateway={"log_format": "json"})
    open(g.stderr_path, "wb").close()
    st = os.stat(g.stderr_path)
    launch(g, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    g.stop()
    lines = [ln for ln in g.stderr().splitlines() if ln]
    assert lines
    for ln in lines:
        m = re.match(r"<([3467])>(\{.*\})$", ln)
        assert m, ln
        obj = json.loads(m.group(2))
        assert {"3": "error", "4": "warn", "6": "info", "7": "debug"}[m.group(1)] == obj["level"]
