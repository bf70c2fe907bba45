"""test_admin_hardening.py - the admin listener is as hard as the public one: at the process's
descriptor limit it pauses accepting instead of spinning (CPU and log lines bounded) and answers
again once descriptors are free; a deadline for the whole request cuts slow senders; a cap on
open admin connections answers 503 beyond it."""

import os
import resource
import socket
import time

from wsharness import Gateway, free_port, http_request, wait_until


def admin_gateway(tmp_path, **gateway):
    admin = free_port()
    settings = {"admin_listen": f"127.0.0.1:{admin}", "workers": "1"}
    settings.update(gateway)
    g = Gateway(workdir=str(tmp_path), gateway=settings, routes={"/echo": {"type": "echo"}})
    g.admin = admin
    return g


def admin_get(port, path="/healthz", timeout=3.0):
    return http_request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n", timeout=timeout,
                        close_timeout=0)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_admin_at_emfile_pauses_then_answers(tmp_path):
    with admin_gateway(tmp_path) as g:
        pid = g.proc.pid
        limit = nfds(pid) + 8
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        # Fill the process's table through the public port, as a remote client can.
        public = []
        try:
            for _ in range(40):
                public.append(socket.create_connection(("127.0.0.1", g.port), timeout=2))
            wait_until(lambda: nfds(pid) >= limit, 5, what="process at its descriptor limit")
            lines0 = len(g.stderr().splitlines())
            cpu0 = cpu_seconds(pid)
            admin = socket.create_connection(("127.0.0.1", g.admin), timeout=5)
            admin.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(3)
            cpu = cpu_seconds(pid) - cpu0
            new_lines = g.stderr().splitlines()[lines0:]
            admin_lines = [ln for ln in new_lines if "admin" in ln or "accept()" in ln]
            # The old admin listener spun on accept(): ~0.5 CPU-s and ~65,000 lines a second.
            assert cpu < 0.5, f"{cpu:.2f} CPU-s in 3 s at the descriptor limit"
            assert len(admin_lines) <= 2, admin_lines[:5]
            assert len(new_lines) < 100, new_lines[:5]
        finally:
            for s in public:
                s.close()
        # Descriptors freed: the waiting admin connection is accepted and answered.
        admin.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = admin.recv(4096)
            assert chunk, f"admin closed without an answer: {data!r}"
            data += chunk
        admin.close()
        assert data.startswith(b"HTTP/1.1 200"), data
        assert admin_get(g.admin).status == 200
        assert "admin: accepting again" in g.stderr()


def test_admin_slowloris_cut_by_deadline(tmp_path):
    with admin_gateway(tmp_path, admin_timeout="1s") as g:
        socks = [socket.create_connection(("127.0.0.1", g.admin), timeout=5) for _ in range(20)]
        try:
            t0 = time.monotonic()
            # One byte every 300 ms: each read alone is well inside any per-read timeout.
            request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            for i in range(8):
                for s in socks:
                    try:
                        s.send(request[i:i + 1])
                    except OSError:
                        pass
                time.sleep(0.3)
            for s in socks:
                s.settimeout(max(0.1, 3.5 - (time.monotonic() - t0)))
                try:
                    assert s.recv(4096) == b"", "a slow admin request was answered or kept"
                except ConnectionResetError:
                    pass
            assert time.monotonic() - t0 < 3.6
            assert admin_get(g.admin).status == 200
        finally:
            for s in socks:
                s.close()


def test_admin_connection_cap(tmp_path):
    with admin_gateway(tmp_path, admin_max_connections="4") as g:
        idle = [socket.create_connection(("127.0.0.1", g.admin), timeout=5) for _ in range(4)]
        try:
            time.sleep(0.2)
            resp = admin_get(g.admin)
            assert resp.status == 503, resp.status
            assert b"admin_max_connections" in resp.body
            wait_until(lambda: "admin_max_connections (4) open" in g.stderr(), 3,
                       what="refusal logged")
        finally:
            idle.pop().close()
        wait_until(lambda: admin_get(g.admin).status == 200, 3, what="admin answers under the cap")
        for s in idle:
            s.close()
