"""test_signals.py - no order of signals reaches an abort or a kill: many SIGHUPs at once (good
and broken files alternating) while clients connect, SIGHUP during the drain, SIGTERM in the
middle of a burst of reloads, and signals right up to the moment the process exits. Pass: the
service goes on answering, every exit is status 0, nothing logs an illegal state."""

import os
import signal
import time

from wsharness import Gateway, WSClient, free_port, http_request, upgrade_request, wait_until

BAD_LOG = ("illegal", "fatal", "Assertion", "AddressSanitizer", "runtime error")


def sig_gateway(tmp_path, **gateway):
    settings = {"workers": "2", "admin_listen": f"127.0.0.1:{free_port()}",
                "drain_window": "300ms", "shutdown_timeout": "2s"}
    settings.update(gateway)
    return Gateway(workdir=str(tmp_path), gateway=settings,
                   routes={"/echo": {"type": "echo"}})


def rewrite(g, text):
    with open(g.config_path + ".new", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(g.config_path + ".new", g.config_path)


def assert_clean_log(g):
    err = g.stderr()
    for word in BAD_LOG:
        assert word not in err, f"{word!r} in the log:\n{err[-3000:]}"


def test_burst_of_reloads_keeps_serving(tmp_path):
    g = sig_gateway(tmp_path)
    with g:
        good = g.config_text
        broken = good + "\n[route /broken]\ntype = nonsense\n"
        with WSClient(g.port, "/echo") as live:
            for i in range(60):
                rewrite(g, broken if i % 2 else good + f"\n[route /r{i}]\ntype = echo\n")
                g.proc.send_signal(signal.SIGHUP)
                if i % 10 == 0:
                    with WSClient(g.port, "/echo") as c:
                        assert c.roundtrip(1, b"during") == (1, b"during")
            assert live.roundtrip(1, b"live") == (1, b"live")
        rewrite(g, good + "\n[route /last]\ntype = echo\n")
        g.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: http_request(g.port, upgrade_request(g.port, "/last")).status == 101,
                   10, what="the last reload in force")
        assert g.running()
    assert_clean_log(g)


def test_sighup_during_drain_and_sigterm_during_reloads(tmp_path):
    g = sig_gateway(tmp_path, drain_window="1s", shutdown_timeout="3s")
    g.start()
    live = WSClient(g.port, "/echo")
    try:
        for _ in range(10):
            g.proc.send_signal(signal.SIGHUP)
        g.proc.send_signal(signal.SIGTERM)  # in the middle of the reloads
        for _ in range(20):
            g.proc.send_signal(signal.SIGHUP)  # while draining
            time.sleep(0.01)
        wait_until(lambda: "draining" in g.stderr(), 5, what="drain started")
        # The live client gets its close during the drain window and answers it.
        res = live.expect_close(timeout=5)
        assert res.code == 1001, res
    finally:
        live.close()
    assert g.wait(10) == 0, g.stderr()
    assert_clean_log(g)


def test_mixed_signals_until_exit(tmp_path):
    """SIGHUP, SIGTERM and SIGINT keep coming while the process drains, stops and frees: it
    must still exit 0, never be killed by a signal whose handler is already gone."""
    for attempt in range(3):
        g = sig_gateway(tmp_path / f"run{attempt}", drain_window="0", shutdown_timeout="1s")
        g.start()
        sigs = [signal.SIGHUP, signal.SIGHUP, signal.SIGTERM, signal.SIGHUP, signal.SIGINT]
        deadline = time.monotonic() + 10
        i = 0
        while g.proc.poll() is None and time.monotonic() < deadline:
            try:
                g.proc.send_signal(sigs[i % len(sigs)] if i < 50 else signal.SIGHUP)
            except ProcessLookupError:
                break
            i += 1
            time.sleep(0.0005)
        rc = g.wait(10)
        assert rc == 0, f"exit status {rc} after {i} signals; stderr:\n{g.stderr()[-3000:]}"
        assert_clean_log(g)
