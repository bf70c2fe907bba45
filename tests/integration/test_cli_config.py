"""test_cli_config.py - the command line (--version, -h, usage errors, -t) and the ini config:
every error is reported as FILE:LINE: message, all of them at once, with exit status 1; a good
file and the shipped etc/wsgate.ini pass; repeated listen lines all serve; log lines carry time,
level and [conn N], and log_level filters them."""

import os
import re

import pytest

from wsharness import OP_TEXT, WSClient, free_port, run_wsgate, srcdir, start_gateway

ERR_LINE = re.compile(r"bad\.ini:(\d+): \S")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def numbered_errors(stderr):
    """Line numbers of every 'bad.ini:N: message' line, in order."""
    out = []
    for line in stderr.splitlines():
        m = ERR_LINE.search(line)
        if m:
            out.append(int(m.group(1)))
    return out


# ---- command line


def test_version():
    r = run_wsgate(["--version"])
    assert r.returncode == 0, r
    assert "wsgate 0.1.0" in r.stdout.splitlines(), r


@pytest.mark.parametrize("opt", ["-h", "--help"])
def test_help(opt):
    r = run_wsgate([opt])
    assert r.returncode == 0, r
    text = r.stdout + r.stderr
    assert "usage" in text.lower(), r
    assert "-c" in text and "-t" in text, r


@pytest.mark.parametrize("args", [["--bogus"], ["-Z"], ["-c"]],
                         ids=["long", "short", "missing-arg"])
def test_usage_error_exit_2(args):
    r = run_wsgate(args)
    assert r.returncode == 2, r
    assert r.stderr.strip() != "", "a usage error must say what is wrong on stderr"


# ---- -t: good files


GOOD = """; a complete configuration
[gateway]
listen = 127.0.0.1:{p1}
listen = 127.0.0.1:{p2}
max_message_size = 1048576
handshake_timeout = 10s
shutdown_timeout = 1m
close_timeout = 500ms
log_level = debug

[heartbeat]
ping_interval = 25s
pong_timeout = 10s
idle_timeout = 0
app_message = {{"type":1,"message":"心跳检测"}}

[route /echo]
type = echo

[route /chat]
type = echo
subprotocols = chat, superchat
"""


def test_check_good_file(tmp_path):
    write(tmp_path, "good.ini", GOOD.format(p1=free_port(), p2=free_port()))
    r = run_wsgate(["-t", "-c", "good.ini"], cwd=tmp_path)
    assert r.returncode == 0, r
    assert "good.ini:" not in r.stderr, r


@pytest.mark.parametrize("size", ["32MiB", "64KiB", "1048576"])
@pytest.mark.parametrize("dur", ["200ms", "2s", "1m"])
def test_check_value_forms(tmp_path, size, dur):
    write(tmp_path, "forms.ini", f"[gateway]\nlisten = 127.0.0.1:{free_port()}\n"
          f"max_message_size = {size}\nclose_timeout = {dur}\n[heartbeat]\n"
          f"ping_interval = {dur}\n[route /echo]\ntype = echo\n")
    r = run_wsgate(["-t", "-c", "forms.ini"], cwd=tmp_path)
    assert r.returncode == 0, r


def test_shipped_config_passes_check():
    path = os.path.join(srcdir(), "etc", "wsgate.ini")
    assert os.path.isfile(path), f"{path} is missing"
    r = run_wsgate(["-t", "-c", path])
    assert r.returncode == 0, r


# ---- -t: broken files, each error at its exact line

BROKEN = {
    "unknown-section": ("[gateway]\nlisten = 127.0.0.1:{p}\n[bogus]\n[route /echo]\n"
                        "type = echo\n", [3]),
    "unknown-key-gateway": ("[gateway]\nlisten = 127.0.0.1:{p}\nfrobnicate = 1\n"
                            "[route /echo]\ntype = echo\n", [3]),
    "unknown-key-heartbeat": ("[gateway]\nlisten = 127.0.0.1:{p}\n[heartbeat]\n"
                              "ping_interval = 1s\nbeats_per_minute = 60\n[route /echo]\n"
                              "type = echo\n", [5]),
    "unknown-key-route": ("[gateway]\nlisten = 127.0.0.1:{p}\n[route /echo]\ntype = echo\n"
                          "colour = blue\n", [5]),
    "bad-size": ("[gateway]\nlisten = 127.0.0.1:{p}\nmax_message_size = lots\n"
                 "[route /echo]\ntype = echo\n", [3]),
    "bad-duration": ("[gateway]\nlisten = 127.0.0.1:{p}\nhandshake_timeout = 10parsecs\n"
                     "[route /echo]\ntype = echo\n", [3]),
    "negative-duration": ("[gateway]\nlisten = 127.0.0.1:{p}\n[heartbeat]\n"
                          "ping_interval = -5s\n[route /echo]\ntype = echo\n", [4]),
    "bad-log-level": ("[gateway]\nlisten = 127.0.0.1:{p}\nlog_level = loud\n[route /echo]\n"
                      "type = echo\n", [3]),
    "bad-listen": ("[gateway]\nlisten = 127.0.0.1:notaport\n[route /echo]\ntype = echo\n",
                   [2]),
    "bad-route-type": ("[gateway]\nlisten = 127.0.0.1:{p}\n[route /echo]\ntype = nosuch\n",
                       [4]),
    "duplicate-key": ("[gateway]\nlisten = 127.0.0.1:{p}\nmax_message_size = 1000\n"
                      "max_message_size = 2000\n[route /echo]\ntype = echo\n", [4]),
    "duplicate-route": ("[gateway]\nlisten = 127.0.0.1:{p}\n[route /echo]\ntype = echo\n"
                        "[route /echo]\ntype = echo\n", [5]),
    "route-without-type": ("[gateway]\nlisten = 127.0.0.1:{p}\n[route /echo]\n"
                           "subprotocols = chat\n", [3]),
    "several": ("[gateway]\n"                        # 1
                "listen = 127.0.0.1:{p}\n"           # 2
                "bogus_key = 1\n"                    # 3 unknown key
                "max_message_size = huge\n"          # 4 bad value
                "log_level = loud\n"                 # 5 bad value
                "[nosuch]\n"                         # 6 unknown section
                "[heartbeat]\n"                      # 7
                "ping_interval = fast\n"             # 8 bad value
                "[route /echo]\n"                    # 9
                "type = echo\n"                      # 10
                "[route /echo]\n"                    # 11 duplicate route
                "type = echo\n"                      # 12
                "[route /other]\n"                   # 13 route without type
                "subprotocols = x\n",                # 14
                [3, 4, 5, 6, 8, 11, 13]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_check_reports_errors_with_lines(tmp_path, case):
    text, lines = BROKEN[case]
    write(tmp_path, "bad.ini", text.format(p=free_port()))
    r = run_wsgate(["-t", "-c", "bad.ini"], cwd=tmp_path)
    assert r.returncode == 1, r
    got = numbered_errors(r.stderr)
    assert sorted(got) == sorted(lines), f"expected errors at lines {lines}, got {got}:\n" \
                                         f"{r.stderr}"
    assert "Sanitizer" not in r.stderr


def test_check_missing_file(tmp_path):
    r = run_wsgate(["-t", "-c", "does-not-exist.ini"], cwd=tmp_path)
    assert r.returncode == 1, r
    assert "does-not-exist.ini" in r.stderr, r


def test_run_with_bad_config_refuses_to_start(tmp_path):
    text, lines = BROKEN["bad-size"]
    write(tmp_path, "bad.ini", text.format(p=free_port()))
    r = run_wsgate(["-c", "bad.ini"], cwd=tmp_path, timeout=10)
    assert r.returncode != 0, r
    assert numbered_errors(r.stderr) == lines, r.stderr


# ---- listen may repeat


def test_two_listen_lines_both_serve(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="two", nports=2)
    try:
        for port in g.ports:
            assert g.healthz(port) == 200
            with WSClient(port) as c:
                assert c.roundtrip(OP_TEXT, f"via {port}".encode()) == \
                    (OP_TEXT, f"via {port}".encode())
    finally:
        g.stop()


# ---- logs

LOG_LINE = re.compile(r"^\S*\d\d:\d\d:\d\d\S*\s+(error|warn|info|debug)\b", re.I)


def test_log_lines_have_time_level_and_conn(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="logs", gateway={"log_level": "debug"})
    with WSClient(g.port) as c:
        c.send_frame(OP_TEXT, b"x", rsv=4)   # a protocol error: worth a connection line
        res = c.expect_close()
        assert res.code == 1002
    g.stop()
    lines = [ln for ln in g.stderr().splitlines() if ln.strip()]
    assert lines, "no log output at log_level = debug"
    bad = [ln for ln in lines if not LOG_LINE.search(ln)]
    assert not bad, f"log lines without time and level: {bad}"
    assert any(re.search(r"\[conn \d+\]", ln) for ln in lines), "\n".join(lines)
    assert g.stdout() == "", f"logs belong on stderr, stdout got:\n{g.stdout()}"


def test_log_level_error_hides_info(tmp_path_factory):
    g = start_gateway(tmp_path_factory, name="quiet", gateway={"log_level": "error"})
    with WSClient(g.port) as c:
        assert c.roundtrip(OP_TEXT, b"hi") == (OP_TEXT, b"hi")
        c.send_close(1000)
        assert c.expect_close(reply=False).code == 1000
    g.stop()
    levels = [LOG_LINE.search(ln).group(1).lower() for ln in g.stderr().splitlines()
              if LOG_LINE.search(ln)]
    assert not [lv for lv in levels if lv in ("info", "debug")], g.stderr()
