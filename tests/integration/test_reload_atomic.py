"""test_reload_atomic.py - a reload is all or nothing: SIGHUP with a file that adds a route but
names a broken certificate, a key of another certificate, a broken JWT public key or a broken
route leaves the running configuration whole (the new route absent, the old certificate served,
live connections working), with every error logged; `wsgate -t` loads certificates and keys and
names the one that fails."""

import os
import shutil
import signal

import pytest

from test_security import bearer, claims, es256, make_keys
from test_tls import Pki, peer_sha256, tls_config, tls_socket, wss_client
from wsharness import (OP_TEXT, Gateway, WSClient, free_port, http_request, run_wsgate, upgrade_request,
                       wait_until)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI missing")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(str(tmp_path_factory.mktemp("pki")))
    p.issue("default", "default.test", ["default.test", "localhost"])
    p.issue("one", "one.test", ["one.test"])
    p.issue("wild", "*.wild.test", ["*.wild.test"])
    return p


def status_of(g, path):
    return http_request(g.port, upgrade_request(g.port, path=path)).status


def reload(g, text, expect):
    with open(g.config_path, "w", encoding="utf-8") as f:
        f.write(text)
    mark = len(g.stderr())
    g.send_signal(signal.SIGHUP)
    g.stopped_by = None
    wait_until(lambda: expect in g.stderr()[mark:], 5, what=repr(expect))
    return g.stderr()[mark:]


@pytest.fixture
def tgw(pki, tmp_path):
    keys = make_keys(str(tmp_path))
    g = Gateway(workdir=str(tmp_path), config_text="; placeholder\n")
    g.tls_port = free_port()
    g.jwt_key = keys["ec"][1]
    g.good = tls_config(g.port, g.tls_port, pki, routes={
        "/echo": {"type": "echo"},
        "/es": {"type": "echo", "auth": "jwt", "jwt_public_key": g.jwt_key}})
    g.config_text = g.good
    with open(g.config_path, "w", encoding="utf-8") as f:
        f.write(g.good)
    g.start()
    yield g
    g.stop()


def assert_old_config_whole(g, pki, live, old_one):
    """The new route is absent, the old certificate and routes serve, live connections work."""
    assert status_of(g, "/new") == 404
    assert status_of(g, "/echo") == 101
    with tls_socket(g.tls_port, pki, "one.test") as s:
        assert peer_sha256(s) == old_one
    c = wss_client(g.tls_port, pki)
    assert c.roundtrip(OP_TEXT, b"old") == (OP_TEXT, b"old")
    c.close()
    assert live.roundtrip(OP_TEXT, b"live") == (OP_TEXT, b"live")


NEW_ROUTE = "\n[route /new]\ntype = echo\n"


def test_broken_certificate_keeps_everything(tgw, pki, tmp_path):
    g = tgw
    bogus = str(tmp_path / "bogus.pem")
    with open(bogus, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    old_one = pki.der_sha256("one")
    with WSClient(g.port, "/echo") as live:
        text = g.good.replace(pki.path("one")[0], bogus) + NEW_ROUTE
        log = reload(g, text, "rejected")
        assert f"[tls one.test]: cert {bogus}" in log, log
        assert "wsgate.ini:" in log
        assert_old_config_whole(g, pki, live, old_one)


def test_key_of_another_certificate_keeps_everything(tgw, pki):
    g = tgw
    old_one = pki.der_sha256("one")
    with WSClient(g.port, "/echo") as live:
        text = g.good.replace(pki.path("one")[1], pki.path("wild")[1]) + NEW_ROUTE
        log = reload(g, text, "rejected")
        assert "[tls one.test]: key" in log and "mismatch" in log, log
        assert_old_config_whole(g, pki, live, old_one)


def test_broken_jwt_key_keeps_everything(tgw, pki, tmp_path):
    g = tgw
    bad = str(tmp_path / "bad.pub")
    with open(bad, "w") as f:
        f.write("not a key\n")
    old_one = pki.der_sha256("one")
    with WSClient(g.port, "/echo") as live:
        text = g.good + NEW_ROUTE + f"\n[route /jwt2]\ntype = echo\nauth = jwt\n" \
            f"jwt_public_key = {bad}\n"
        log = reload(g, text, "rejected")
        assert f"route /jwt2: jwt_public_key {bad}" in log, log
        assert_old_config_whole(g, pki, live, old_one)
        assert status_of(g, "/jwt2") == 404


def test_broken_jwt_key_never_read_per_handshake(tgw, tmp_path):
    """A key that failed to load is not read again for each client (the old binary swapped in
    the route anyway and re-read and re-logged the broken file at every handshake)."""
    g = tgw
    bad = str(tmp_path / "bad.pub")
    with open(bad, "w") as f:
        f.write("not a key\n")
    text = g.good.replace(g.jwt_key, bad)
    with open(g.config_path, "w", encoding="utf-8") as f:
        f.write(text)
    mark = len(g.stderr())
    g.send_signal(signal.SIGHUP)
    g.stopped_by = None
    wait_until(lambda: "rejected" in g.stderr()[mark:] or "in force" in g.stderr()[mark:], 5,
               what="reload done")
    tok = es256(claims(), g.jwt_key.replace(".pub", ".key"))
    for _ in range(5):
        resp = http_request(g.port, upgrade_request(g.port, "/es", extra=bearer(tok)))
        assert resp.status == 101, resp  # the key loaded before stays in force
    assert g.stderr()[mark:].count(bad) == 1, g.stderr()[mark:]


def test_broken_route_keeps_everything(tgw, pki):
    g = tgw
    old_one = pki.der_sha256("one")
    with WSClient(g.port, "/echo") as live:
        text = g.good + NEW_ROUTE + "\n[route /broken]\ntype = nonsense\n"
        log = reload(g, text, "rejected")
        assert "nonsense" in log, log
        assert_old_config_whole(g, pki, live, old_one)


def test_every_error_of_a_reload_is_logged(tgw, pki, tmp_path):
    g = tgw
    bogus = str(tmp_path / "bogus.pem")
    with open(bogus, "w") as f:
        f.write("garbage\n")
    bad = str(tmp_path / "bad.pub")
    with open(bad, "w") as f:
        f.write("not a key\n")
    text = (g.good.replace(pki.path("one")[0], bogus).replace(pki.path("wild")[1],
                                                              pki.path("one")[1])
            + NEW_ROUTE + f"\n[route /jwt2]\ntype = echo\nauth = jwt\njwt_public_key = {bad}\n")
    log = reload(g, text, "rejected")
    assert f"cert {bogus}" in log and "mismatch" in log and bad in log, log
    assert "(3 error(s))" in log, log
    # and a good file afterwards is taken whole
    log = reload(g, g.good + NEW_ROUTE, "in force for new connections")
    assert status_of(g, "/new") == 101


def check(tmp_path, text):
    path = tmp_path / "t.ini"
    path.write_text(text)
    return run_wsgate(["-t", "-c", str(path)], cwd=str(tmp_path))


def test_check_mode_loads_certificates(pki, tmp_path):
    good = tls_config(18080, 18443, pki)
    r = check(tmp_path, good)
    assert r.returncode == 0, r.stderr
    # missing certificate file
    missing = str(tmp_path / "missing.pem")
    r = check(tmp_path, good.replace(pki.path("one")[0], missing))
    assert r.returncode == 1
    assert "t.ini:" in r.stderr and missing in r.stderr, r.stderr
    # garbage certificate, and a key of another certificate, both reported
    bogus = str(tmp_path / "bogus.pem")
    with open(bogus, "w") as f:
        f.write("garbage\n")
    r = check(tmp_path, good.replace(pki.path("default")[0], bogus)
              .replace(pki.path("wild")[1], pki.path("one")[1]))
    assert r.returncode == 1
    assert f"[tls]: cert {bogus}" in r.stderr, r.stderr
    assert "[tls *.wild.test]: key" in r.stderr and "mismatch" in r.stderr, r.stderr


def test_check_mode_loads_jwt_keys(tmp_path):
    bad = str(tmp_path / "bad.pub")
    with open(bad, "w") as f:
        f.write("not a key\n")
    text = ("[gateway]\nlisten = 127.0.0.1:18080\n\n[route /es]\ntype = echo\nauth = jwt\n"
            f"jwt_public_key = {bad}\n")
    r = check(tmp_path, text)
    assert r.returncode == 1
    assert f"t.ini:4: route /es: jwt_public_key {bad}" in r.stderr, r.stderr


def test_check_mode_loads_backend_ca_files(tmp_path):
    bad = str(tmp_path / "not-a-ca.pem")
    with open(bad, "w") as f:
        f.write("not a certificate\n")
    text = ("[gateway]\nlisten = 127.0.0.1:18080\n\n[route /s]\ntype = proxy\n"
            f"backend = wss://localhost:1/x\nca_file = {bad}\n")
    r = check(tmp_path, text)
    assert r.returncode == 1
    assert f"t.ini:4: route /s: cannot load ca_file {bad}" in r.stderr, r.stderr
