"""test_shutdown.py - graceful stop on SIGTERM and SIGINT: every client gets close 1001; when
they all answer the gateway exits 0 at once (long before shutdown_timeout); a client that never
answers holds it only until shutdown_timeout; no new connection is accepted meanwhile. Every
exit is checked for status 0 and a stderr free of sanitizer reports."""

import signal
import socket
import time

import pytest

from wsharness import (OP_CLOSE, OP_TEXT, WSClient, build_frame, start_gateway, upgrade_request,
                       wait_closed)

SIGNALS = [signal.SIGTERM, signal.SIGINT]
SIG_IDS = ["SIGTERM", "SIGINT"]


def connected_clients(g, n):
    clients = []
    for i in range(n):
        c = WSClient(g.port)
        assert c.roundtrip(OP_TEXT, f"client {i}".encode()) == (OP_TEXT, f"client {i}".encode())
        clients.append(c)
    return clients


@pytest.mark.parametrize("sig", SIGNALS, ids=SIG_IDS)
def test_clients_get_1001_and_gateway_exits_when_they_answer(tmp_path_factory, sig):
    g = start_gateway(tmp_path_factory, name="drain", gateway={"shutdown_timeout": "30s"})
    clients = connected_clients(g, 3)
    try:
        t0 = time.monotonic()
        g.send_signal(sig)
        for i, c in enumerate(clients):
            res = c.expect_close(timeout=5.0, reply=True)
            assert res.code == 1001, f"client {i}: {res!r}"
            assert res.tcp_closed, f"client {i}: TCP left open after the closing handshake"
        rc = g.wait(10.0)
        elapsed = time.monotonic() - t0
        assert rc is not None, "gateway still running 10 s after every client answered " \
                               "(shutdown_timeout is 30s)"
        assert elapsed < 10.0
        g.check_clean_exit()
    finally:
        for c in clients:
            c.close()
        g.kill_quietly()


@pytest.mark.parametrize("sig", SIGNALS, ids=SIG_IDS)
def test_idle_gateway_exits_on_signal(tmp_path_factory, sig):
    g = start_gateway(tmp_path_factory, name="idle", gateway={"shutdown_timeout": "30s"})
    try:
        g.send_signal(sig)
        assert g.wait(10.0) is not None, "gateway with no clients did not exit"
        g.check_clean_exit()
    finally:
        g.kill_quietly()


def test_unanswering_client_bounded_by_shutdown_timeout(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="stuck", gateway={"shutdown_timeout": "500ms",
                                                               "close_timeout": "30s"})
    (c,) = connected_clients(g, 1)
    try:
        t0 = time.monotonic()
        g.send_signal(signal.SIGTERM)
        f = c.recv_frame(timeout=5.0)
        assert f is not None and f.opcode == OP_CLOSE and f.close_code == 1001, f
        # never answer
        rc = g.wait(8.0)
        elapsed = time.monotonic() - t0
        assert rc is not None, "gateway outlived shutdown_timeout (500ms) by more than 7 s"
        assert elapsed >= 0.4, f"exited after {elapsed:.2f}s without waiting for the client"
        g.check_clean_exit()
        assert c.wait_eof(2.0), "client connection not closed when the gateway exited"
    finally:
        c.close()
        g.kill_quietly()


def test_new_connections_refused_after_signal(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="refuse", gateway={"shutdown_timeout": "2s",
                                                                "close_timeout": "30s"})
    (holder,) = connected_clients(g, 1)
    try:
        g.send_signal(signal.SIGTERM)
        f = holder.recv_frame(timeout=5.0)  # the gateway is draining now
        assert f is not None and f.opcode == OP_CLOSE and f.close_code == 1001, f
        assert g.running(), "the unanswered holder should keep the gateway draining"
        got = b""
        try:
            with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
                try:
                    s.sendall(upgrade_request(g.port).encode())
                except OSError:
                    pass
                closed, got = wait_closed(s, 8.0)
                assert closed, "a connection made during shutdown was left hanging"
        except ConnectionRefusedError:
            pass
        assert not got.startswith(b"HTTP/1.1 101"), f"upgraded during shutdown: {got!r}"
        assert g.wait(8.0) is not None
        g.check_clean_exit()
    finally:
        holder.close()
        g.kill_quietly()


def test_client_mid_message_gets_1001(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="mid", gateway={"shutdown_timeout": "30s"})
    c = WSClient(g.port)
    try:
        c.send_raw(build_frame(OP_TEXT, b"half of a", fin=False))
        time.sleep(0.1)
        g.send_signal(signal.SIGTERM)
        res = c.expect_close(timeout=5.0)
        assert res.code == 1001, res
        assert g.wait(10.0) is not None
        g.check_clean_exit()
    finally:
        c.close()
        g.kill_quietly()
