"""test_heartbeat.py - the [heartbeat] section: server pings every ping_interval; a client that
never answers is dropped after pong_timeout (reason logged); one that answers stays; idle_timeout
closes a silent client with 1001 and spares an active one; app_message is sent as an exact text
frame every ping_interval. Timer assertions are generous bounds, never precision."""

import json
import re
import time

import pytest

from wsharness import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, WSClient, start_gateway

APP_MESSAGE = '{"type":1,"message":"心跳检测"}'


@pytest.fixture(scope="module")
def hb_gw(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="hb", gateway={"log_level": "info"},
                      heartbeat={"ping_interval": "200ms", "pong_timeout": "400ms"})
    yield g
    g.stop()


@pytest.fixture(scope="module")
def idle_gw(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="idle",
                      heartbeat={"ping_interval": "0", "idle_timeout": "300ms"})
    yield g
    g.stop()


@pytest.fixture(scope="module")
def app_gw(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="app",
                      heartbeat={"ping_interval": "200ms", "pong_timeout": "2s",
                                 "app_message": APP_MESSAGE})
    yield g
    g.stop()


# ---- ping / pong


def test_server_sends_pings(hb_gw):
    with WSClient(hb_gw.port) as c:
        frames, eof = c.pump(1.0, auto_pong=True)
        assert not eof, "a client answering pings was dropped"
        pings = [f for f in frames if f.opcode == OP_PING]
        assert len(pings) >= 2, f"expected >= 2 pings within 1 s at 200ms, got {frames!r}"
        assert all(f.opcode == OP_PING for f in frames), frames


def test_client_answering_pongs_stays(hb_gw):
    with WSClient(hb_gw.port) as c:
        frames, eof = c.pump(1.6, auto_pong=True)
        assert not eof, "dropped although every ping was answered"
        assert len([f for f in frames if f.opcode == OP_PING]) >= 2
        c.send_frame(OP_TEXT, b"still alive")
        assert c.recv_message() == (OP_TEXT, b"still alive")


def test_client_never_answering_is_dropped(hb_gw):
    log_before = len(hb_gw.stderr())
    with WSClient(hb_gw.port) as c:
        t0 = time.monotonic()
        assert c.wait_eof(4.0), "a client that never answers pings was not dropped"
        elapsed = time.monotonic() - t0
        assert any(f.opcode == OP_PING for f in c.received), "dropped without being pinged"
        assert elapsed >= 0.3, f"dropped after {elapsed:.2f}s, before interval+pong_timeout"
    # The drop is logged (log_level = info) with its reason, on that connection's line.
    pat = re.compile(r"\[conn \d+\].*(pong|heartbeat)", re.I)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not pat.search(hb_gw.stderr()[log_before:]):
        time.sleep(0.05)
    assert pat.search(hb_gw.stderr()[log_before:]), \
        f"no pong-timeout reason logged:\n{hb_gw.stderr()[log_before:]}"


def test_client_answering_late_is_dropped(hb_gw):
    # Pongs that come after pong_timeout do not save the connection.
    with WSClient(hb_gw.port) as c:
        f = c.recv_frame(timeout=3.0)
        assert f is not None and f.opcode == OP_PING, f
        time.sleep(1.0)
        try:
            c.send_pong(f.payload)
        except OSError:
            pass
        assert c.wait_eof(3.0)


def test_client_ping_answered_with_heartbeat_on(hb_gw):
    with WSClient(hb_gw.port) as c:
        c.send_ping(b"client ping")
        deadline = time.monotonic() + 5
        while True:
            f = c.recv_frame(timeout=max(0.0, deadline - time.monotonic()))
            assert f is not None, "closed before answering the client's ping"
            if f.opcode == OP_PING:
                c.send_pong(f.payload)
                continue
            assert f.opcode == OP_PONG, f
            assert f.payload == b"client ping"
            break


def test_unsolicited_pong_does_not_break_heartbeat(hb_gw):
    with WSClient(hb_gw.port) as c:
        c.send_pong(b"nobody asked")
        frames, eof = c.pump(1.0, auto_pong=True)
        assert not eof
        assert any(f.opcode == OP_PING for f in frames)


# ---- idle timeout


def test_silent_client_closed_1001(idle_gw):
    with WSClient(idle_gw.port) as c:
        t0 = time.monotonic()
        res = c.expect_close(timeout=4.0)
        elapsed = time.monotonic() - t0
        assert res.code == 1001, res
        assert res.frames_before == [], "ping_interval = 0 must send no pings"
        assert res.tcp_closed
        assert elapsed >= 0.2, f"closed after {elapsed:.2f}s, before idle_timeout (300ms)"


def test_active_client_stays_then_idles_out(idle_gw):
    with WSClient(idle_gw.port) as c:
        t_end = time.monotonic() + 1.2
        i = 0
        while time.monotonic() < t_end:
            msg = f"tick {i}".encode()
            c.send_frame(OP_TEXT, msg)
            assert c.recv_message() == (OP_TEXT, msg), f"message {i}"
            time.sleep(0.1)
            i += 1
        assert i >= 5
        res = c.expect_close(timeout=4.0)
        assert res.code == 1001, res


def test_client_sending_only_pings_stays(idle_gw):
    with WSClient(idle_gw.port) as c:
        for i in range(12):
            c.send_ping(str(i).encode())
            f = c.recv_control(OP_PONG)
            assert f.payload == str(i).encode()
            time.sleep(0.1)
        assert c.is_open(0.01)
        res = c.expect_close(timeout=4.0)
        assert res.code == 1001, res


# ---- app_message


def test_app_message_sent_repeatedly(app_gw):
    expected = APP_MESSAGE.encode("utf-8")
    assert json.loads(APP_MESSAGE)["message"] == "心跳检测"
    with WSClient(app_gw.port) as c:
        frames, eof = c.pump(1.3, auto_pong=True)
        assert not eof
        texts = [f for f in frames if f.opcode == OP_TEXT]
        assert len(texts) >= 2, f"expected >= 2 app messages in 1.3 s, got {frames!r}"
        for f in texts:
            assert f.fin and f.payload == expected, f
        assert [f for f in frames if f.opcode not in (OP_TEXT, OP_PING)] == []


def test_app_message_does_not_mix_into_echo(app_gw):
    with WSClient(app_gw.port) as c:
        c.send_frame(OP_TEXT, b"mine")
        deadline = time.monotonic() + 5
        while True:
            op, payload = c.recv_message(timeout=max(0.0, deadline - time.monotonic()))
            if payload == APP_MESSAGE.encode():
                continue
            assert (op, payload) == (OP_TEXT, b"mine")
            break


def test_no_app_message_when_unset(hb_gw):
    with WSClient(hb_gw.port) as c:
        frames, eof = c.pump(0.8, auto_pong=True)
        assert not eof
        assert [f for f in frames if f.opcode != OP_PING] == []
        assert not any(f.opcode == OP_CLOSE for f in frames)
