"""test_redis_sentinel.py - [redis] sentinels + master_name against real processes on loopback:
one master, two replicas and three redis-sentinel processes (down-after 1 s, failover-timeout
3 s), two gateway instances with clients on both. Broadcasts reach every client; the master is
SIGKILLed (or hung with DEBUG SLEEP) while a client publishes every 50 ms: a replica is
promoted, both gateways follow (+switch-master), every client stays connected and delivery
resumes (the time from the master's death to the first message delivered after it is printed
and bounded). /readyz is 503 while no master is known. A fake sentinel that names a replica
proves the gateway checks ROLE and never writes there."""

import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from wsharness import (OP_TEXT, Gateway, HarnessError, RespConn, WSClient, _set_pdeathsig,
                       add_config_sections, free_port, http_status, wait_until)

MASTER = "mymaster"
ROUTES = {"/chat": {"type": "pubsub", "subscribe": "chat", "publish": "chat"}}
REDIS_KEYS = {"connect_timeout": "1s", "probe_interval": "300ms", "probe_timeout": "2s",
              "reconnect_max": "500ms"}


class Proc:
    """A redis-server (or sentinel) with the given argv tail, on a free loopback port."""

    def __init__(self, workdir, name, args, sentinel=False):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.name, self.args, self.sentinel = name, args, sentinel
        self.logfile = os.path.join(self.dir, "log")
        self.proc = None

    def start(self):
        if self.sentinel:
            conf = os.path.join(self.dir, "sentinel.conf")
            with open(conf, "w") as f:
                f.write(f"port {self.port}\nbind 127.0.0.1\ndaemonize no\n"
                        f"logfile {self.logfile}\ndir {self.dir}\n" + self.args)
            exe = shutil.which("redis-sentinel")
            argv = [exe, conf] if exe else ["redis-server", conf, "--sentinel"]
        else:
            argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save",
                    "", "--appendonly", "no", "--dir", self.dir, "--logfile", self.logfile,
                    "--daemonize", "no", *self.args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=_set_pdeathsig)
        wait_until(self.pings, 10, what=f"{self.name} answers PING")
        return self

    def pings(self):
        try:
            with RespConn(self.port, timeout=1.0) as r:
                return r.command("PING") == "PONG"
        except (OSError, HarnessError, TimeoutError):
            return False

    def command(self, *args, timeout=5.0):
        with RespConn(self.port, timeout=timeout) as r:
            return r.command(*args, timeout=timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


def role(p):
    try:
        return p.command("ROLE")[0].decode()
    except (OSError, HarnessError, TimeoutError):
        return None


@pytest.fixture
def cluster(tmp_path):
    """master + 2 replicas + 3 sentinels, all agreed and in sync."""
    procs = []
    try:
        master = Proc(str(tmp_path), "master", ["--enable-debug-command", "yes"]).start()
        procs.append(master)
        replicas = [Proc(str(tmp_path), f"replica{i}",
                         ["--replicaof", "127.0.0.1", str(master.port)]).start()
                    for i in range(2)]
        procs += replicas
        conf = (f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 3000\n"
                f"sentinel parallel-syncs {MASTER} 1\n")
        sentinels = [Proc(str(tmp_path), f"sentinel{i}", conf, sentinel=True).start()
                     for i in range(3)]
        procs += sentinels

        def agreed():
            for s in sentinels:
                if len(s.command("SENTINEL", "replicas", MASTER)) != 2:
                    return False
                if len(s.command("SENTINEL", "sentinels", MASTER)) != 2:
                    return False
            return all(b"master_link_status:up" in r.command("INFO", "replication")
                       for r in replicas)
        wait_until(agreed, 30, interval=0.2, what="sentinels see 2 replicas and each other")
        yield {"master": master, "replicas": replicas, "sentinels": sentinels,
               "all": [master] + replicas}
    finally:
        for p in procs:
            p.kill()


def sentinel_keys(sentinels):
    keys = {"sentinels": ", ".join(f"127.0.0.1:{s.port}" for s in sentinels),
            "master_name": MASTER}
    keys.update(REDIS_KEYS)
    return keys


def start_gateway(tmp_path, name, keys, ready=True):
    g = Gateway(workdir=str(tmp_path / name), routes=ROUTES)
    add_config_sections(g, {"redis": keys})
    g.start()
    if ready:
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 15,
                   what=f"{name} /readyz 200 through Sentinel")
    return g


class Receiver(threading.Thread):
    """Reads a client's messages into (time, payload) pairs until stopped."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.c, self.got, self.stop_ = client, [], threading.Event()

    def run(self):
        while not self.stop_.is_set():
            try:
                op, data = self.c.recv_message(timeout=0.2)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - a closed client ends the reader
                return
            self.got.append((time.monotonic(), data))

    def stop(self):
        self.stop_.set()
        self.join(5)


def broadcast_reaches_all(pub, clients, text):
    pub.send_text(text)
    for c in clients:
        wait = time.monotonic() + 5
        while True:
            op, data = c.recv_message(timeout=max(0.1, wait - time.monotonic()))
            if data == text.encode():
                break


def failover_under_load(cluster, tmp_path, how):
    gws = [start_gateway(tmp_path, f"gw{i}", sentinel_keys(cluster["sentinels"]))
           for i in range(2)]
    clients = []
    try:
        clients = [WSClient(g.port, "/chat") for g in gws for _ in range(3)]
        pub = WSClient(gws[0].port, "/chat")
        broadcast_reaches_all(pub, clients, "before")
        recv = [Receiver(c) for c in clients]
        for r in recv:
            r.start()
        seq, stop = [0], threading.Event()

        def publish():
            while not stop.is_set():
                seq[0] += 1
                try:
                    pub.send_text(f"m{seq[0]}")
                except OSError:
                    return
                time.sleep(0.05)
        t = threading.Thread(target=publish, daemon=True)
        t.start()
        time.sleep(0.5)
        old = cluster["master"]
        t0 = time.monotonic()
        if how == "kill":
            old.proc.kill()
        else:
            # The master hangs (accepts, answers nothing) for 30 s: far longer than down-after,
            # and long enough for the sentinels to retry an election that split their votes
            # (the next try comes 2 x failover-timeout = 6 s later). With 8 s, a split vote
            # followed by a master that answered again meant no failover at all (the fresh
            # Debian 12 container: "a replica promoted not reached within 20s").
            with RespConn(old.port) as r:
                r.sock.sendall(b"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$2\r\n30\r\n")
                time.sleep(0.1)
        # A replica is promoted by the sentinels.
        wait_until(lambda: any(role(p) == "master" for p in cluster["replicas"]), 20,
                   interval=0.1, what="a replica promoted")
        t_promoted = time.monotonic() - t0
        # Delivery resumes on every client of both gateways.
        deadline = time.monotonic() + 20
        resumed = []
        for r in recv:
            while not [x for x in r.got if x[0] > t0 + 0.05] and time.monotonic() < deadline:
                time.sleep(0.02)
            after = [x for x in r.got if x[0] > t0 + 0.05]
            assert after, "delivery did not resume on a client"
            # The first message delivered after the master died that was published after it.
            resumed.append(after[0][0] - t0)
        stop.set()
        t.join(5)
        for r in recv:
            r.stop()
        print(f"\nfailover ({how}): replica promoted after {t_promoted:.2f} s; delivery "
              f"resumed after {min(resumed):.2f} s (first client) .. {max(resumed):.2f} s "
              f"(last of {len(resumed)}) from the master's death")
        for g in gws:
            assert "redis sentinel: master mymaster is" in g.stderr()
            assert http_status(g.port, "/readyz") == 200
        # Every client is still connected and gets a fresh broadcast.
        broadcast_reaches_all(pub, clients, "after")
        pub.close()
        return max(resumed)
    finally:
        for c in clients:
            c.close()
        for g in gws:
            g.stop()


def test_sentinel_failover_sigkill(cluster, tmp_path):
    assert failover_under_load(cluster, tmp_path, "kill") < 15


def test_sentinel_failover_debug_sleep(cluster, tmp_path):
    assert failover_under_load(cluster, tmp_path, "sleep") < 15


def test_readyz_red_while_no_master_known(cluster, tmp_path):
    """Every sentinel down from the start: no master can be known, /readyz 503; the first
    sentinel to come back names the master and /readyz turns 200."""
    for s in cluster["sentinels"]:
        s.kill()
    g = start_gateway(tmp_path, "gw-nomaster", sentinel_keys(cluster["sentinels"]), ready=False)
    try:
        time.sleep(1.5)
        assert http_status(g.port, "/readyz") == 503
        cluster["sentinels"][1].start()
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 15,
                   what="/readyz 200 once a sentinel answers")
    finally:
        g.stop()


class FakeSentinel(threading.Thread):
    """Answers SENTINEL get-master-addr-by-name with a fixed address and accepts SUBSCRIBE."""

    def __init__(self, answer_port):
        super().__init__(daemon=True)
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.answer = str(answer_port).encode()
        self.asked = 0

    def run(self):
        while True:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        buf = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    return
                buf += d
                if b"get-master-addr-by-name" in buf:
                    self.asked += 1
                    buf = b""
                    s.sendall(b"*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%s\r\n" %
                              (len(self.answer), self.answer))
                elif b"SUBSCRIBE" in buf:
                    buf = b""
                    s.sendall(b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n")
        except OSError:
            return


def test_never_writes_to_a_replica(cluster, tmp_path):
    fake = FakeSentinel(cluster["replicas"][0].port)
    fake.start()
    keys = dict(REDIS_KEYS, sentinels=f"127.0.0.1:{fake.port}", master_name=MASTER)
    # Whatever the gateway would publish there (its canary first) would show here.
    spy = RespConn(cluster["replicas"][0].port)
    spy.sock.sendall(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$8\r\nwsgate:*\r\n")
    spy.read_reply()
    g = start_gateway(tmp_path, "gw-replica", keys, ready=False)
    try:
        wait_until(lambda: fake.asked >= 3, 10, what="the gateway asks again after ROLE")
        assert http_status(g.port, "/readyz") == 503
        assert f"127.0.0.1:{cluster['replicas'][0].port} is not a master (role slave)" in \
            g.stderr(), g.stderr()
        with pytest.raises(TimeoutError):
            spy.read_reply(timeout=1.0)
    finally:
        spy.close()
        g.stop()
        fake.srv.close()


def test_sentinel_password(tmp_path):
    """Sentinels with requirepass: sentinel_password is sent as AUTH on both sentinel links
    (issue 14); a wrong one is refused, logged, and the gateway never becomes ready."""
    procs = []
    try:
        master = Proc(str(tmp_path), "master", []).start()
        procs.append(master)
        conf = (f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 1\n"
                "requirepass s3cret\n")
        sent = Proc(str(tmp_path), "sentinel", conf, sentinel=True)
        sent.pings = lambda: _auth_ping(sent.port)
        sent.start()
        procs.append(sent)
        keys = sentinel_keys([sent])
        good = start_gateway(tmp_path, "good", dict(keys, sentinel_password="s3cret"))
        bad = start_gateway(tmp_path, "bad", dict(keys, sentinel_password="nope"), ready=False)
        try:
            a, b = WSClient(good.port, "/chat"), WSClient(good.port, "/chat")
            broadcast_reaches_all(a, [a, b], "through an authenticated sentinel")
            a.close()
            b.close()
            wait_until(lambda: "sentinel AUTH refused" in bad.stderr(), 10,
                       what="the wrong password refused and logged")
            assert http_status(bad.port, "/readyz") == 503
        finally:
            good.stop()
            bad.stop()
    finally:
        for p in procs:
            p.kill()


def _auth_ping(port):
    try:
        with RespConn(port, timeout=1.0) as r:
            return r.command("AUTH", "s3cret") == "OK" and r.command("PING") == "PONG"
    except (OSError, HarnessError, TimeoutError):
        return False
