"""test_reload.py - SIGHUP re-reads the ini file: new routes and settings apply to new
connections while live ones keep working; a file that fails validation is rejected with its
errors logged and the old configuration stays; settings that need a restart are reported."""

import signal

from wsharness import Gateway, WSClient, http_request, upgrade_request, wait_until


def rewrite(g, text):
    with open(g.config_path, "w", encoding="utf-8") as f:
        f.write(text)


def status_of(g, path):
    return http_request(g.port, upgrade_request(g.port, path=path)).status


def test_reload_adds_route_and_keeps_live_connections(tmp_path):
    with Gateway(workdir=str(tmp_path)) as g:
        assert status_of(g, "/later") == 404
        with WSClient(g.port, "/echo") as live:
            live.send_text("before")
            assert live.recv_message()[1] == b"before"
            rewrite(g, g.config_text + "\n[route /later]\ntype = echo\n")
            g.send_signal(signal.SIGHUP)
            wait_until(lambda: "in force for new connections" in g.stderr(), 5,
                       what="reload logged")
            assert status_of(g, "/later") == 101
            with WSClient(g.port, "/later") as fresh:
                fresh.send_text("new route")
                assert fresh.recv_message()[1] == b"new route"
            live.send_text("after")
            assert live.recv_message()[1] == b"after"


def test_bad_reload_keeps_old_config(tmp_path):
    with Gateway(workdir=str(tmp_path)) as g:
        good = g.config_text
        rewrite(g, good + "\n[route /broken]\ntype = nonsense\nbogus_key = 1\n")
        g.send_signal(signal.SIGHUP)
        wait_until(lambda: "rejected" in g.stderr(), 5, what="rejection logged")
        err = g.stderr()
        assert "bogus_key" in err and "wsgate.ini:" in err, err
        assert status_of(g, "/echo") == 101
        assert status_of(g, "/broken") == 404
        # a later good file is taken again
        rewrite(g, good + "\n[route /fixed]\ntype = echo\n")
        g.send_signal(signal.SIGHUP)
        wait_until(lambda: status_of(g, "/fixed") == 101, 5, what="good reload applied")


def test_restart_only_settings_are_reported(tmp_path):
    with Gateway(workdir=str(tmp_path)) as g:
        text = g.config_text.replace(f"listen = 127.0.0.1:{g.port}",
                                     f"listen = 127.0.0.1:{g.port}\nlisten = 127.0.0.1:1")
        assert text != g.config_text
        rewrite(g, text)
        g.send_signal(signal.SIGHUP)
        wait_until(lambda: "listen changed; it takes effect after a restart" in g.stderr(), 5,
                   what="listen change reported")
        assert status_of(g, "/echo") == 101
