"""test_topology.py - the no-container twin of `make check-docker`: three wsgate processes on
one redis-server with HAProxy in front, all on loopback. A broadcast sent through one replica
reaches clients on the others, redis-cli PUBLISH reaches all three, and a replica stopped with
SIGTERM drains its clients, who reconnect through HAProxy and keep receiving."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import websockets

from wsharness import Gateway, RedisServer, free_port, http_status, wait_until

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


class HAProxy:
    def __init__(self, workdir, backends):
        self.port = free_port()
        self.cfg = os.path.join(workdir, "haproxy.cfg")
        servers = "\n".join(
            f"    server g{i} 127.0.0.1:{p} check inter 200ms fall 1 rise 2"
            for i, p in enumerate(backends, 1))
        with open(self.cfg, "w", encoding="utf-8") as f:
            f.write(f"""global
    maxconn 1000
defaults
    mode http
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend fe
    bind 127.0.0.1:{self.port}
    default_backend wsgate
backend wsgate
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{servers}
""")
        self.proc = None

    def start(self):
        subprocess.run([HAPROXY, "-c", "-f", self.cfg], check=True, capture_output=True)
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self._up(), 10, what="haproxy listening")
        return self

    def _up(self):
        import socket
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture
def topology(tmp_path):
    assert os.access(HAPROXY, os.X_OK), "haproxy missing: apt-get install haproxy"
    redis = RedisServer(str(tmp_path / "redis")).start()
    gws = []
    try:
        for i in range(3):
            g = Gateway(workdir=str(tmp_path / f"gw{i}"),
                        routes={"/chat": {"type": "pubsub", "subscribe": "chat",
                                          "publish": "chat", "announce_id": "yes"}},
                        gateway={"drain_window": "0", "shutdown_timeout": "3s"})
            with open(g.config_path, "a", encoding="utf-8") as f:
                f.write(f"\n[redis]\nurl = redis://127.0.0.1:{redis.port}/0\n"
                        "probe_interval = 500ms\nprobe_timeout = 3s\n")
            g.start()
            gws.append(g)
        for g in gws:
            wait_until(lambda g=g: http_status(g.port, "/readyz") == 200, 10,
                       what="replica ready (Redis link up)")
        lb = HAProxy(str(tmp_path), [g.port for g in gws]).start()
        # every replica passed HAProxy's health check: /readyz through the balancer, 3 in a row
        wait_until(lambda: all(http_status(lb.port, "/readyz") == 200 for _ in range(3)), 10,
                   what="HAProxy sees the replicas up")
        yield redis, gws, lb
        lb.stop()
    finally:
        for g in gws:
            if g.running():
                g.stop()
        redis.kill()


async def connect(url):
    ws = await websockets.connect(url)
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome"
    return ws, welcome["id"].split("-")[0]


async def expect(ws, text, timeout=5):
    got = await asyncio.wait_for(ws.recv(), timeout)
    assert got == text, (got, text)


def test_broadcast_across_replicas_and_drain(topology):
    redis, gws, lb = topology
    url = f"ws://127.0.0.1:{lb.port}/chat"

    async def run():
        clients = [await connect(url) for _ in range(6)]
        instances = {inst for _, inst in clients}
        assert len(instances) == 3, f"HAProxy did not spread the clients: {instances}"
        wait_until(lambda: redis.numsub("chat") == 3, 5, what="one SUBSCRIBE per replica")
        # a client on one replica reaches clients on every replica, exactly once
        sender, sender_inst = clients[0]
        await sender.send("from a client")
        for ws, _ in clients:
            await expect(ws, "from a client")
        # an application service publishes with plain Redis
        redis.cli("PUBLISH", "chat", "from redis-cli")
        for ws, _ in clients:
            await expect(ws, "from redis-cli")
        # SIGTERM one replica: its clients get 1001, reconnect through HAProxy, keep receiving
        victim_idx = 1
        victim = gws[victim_idx]
        victim_inst = None
        # which instance id belongs to gws[1]: its start line names it
        for ws, inst in clients:
            if inst in victim.stderr():
                victim_inst = inst
        assert victim_inst, "cannot tell the victim's instance id"
        victim.send_signal(signal.SIGTERM)
        assert victim.wait(10) == 0
        victim.check_clean_exit()
        survivors = []
        for ws, inst in clients:
            if inst == victim_inst:
                await asyncio.wait_for(ws.wait_closed(), 5)
                assert ws.close_code == 1001
                nws, ninst = None, None
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        nws, ninst = await connect(url)
                        break
                    except (OSError, websockets.exceptions.InvalidStatusCode,
                            websockets.exceptions.InvalidMessage, asyncio.TimeoutError):
                        await asyncio.sleep(0.2)
                assert nws is not None and ninst != victim_inst, ninst
                survivors.append((nws, ninst))
            else:
                survivors.append((ws, inst))
        wait_until(lambda: redis.numsub("chat") == 2, 5, what="the stopped replica unsubscribed")
        redis.cli("PUBLISH", "chat", "after the drain")
        for ws, _ in survivors:
            await expect(ws, "after the drain")
        for ws, _ in survivors:
            await ws.close()

    asyncio.run(run())
