"""test_redis_tls.py - TLS to Redis (rediss:// or [redis] tls = yes): Debian's redis-server on a
tls-port only (no plain port), with tls-auth-clients yes, certificates made at test time by the
openssl CLI. A pub/sub round trip between two clients goes through it; a gateway trusting
another CA never becomes ready and says why (certificate verify failed), and neither does
one whose tls_server_name the certificate does not carry."""

import os
import subprocess

import pytest

from wsharness import (OP_TEXT, Gateway, HarnessError, WSClient, _set_pdeathsig,
                       add_config_sections, free_port, http_status, wait_until)

ROUTES = {"/chat": {"type": "pubsub", "subscribe": "chat", "publish": "chat"}}
REDIS_KEYS = {"connect_timeout": "1s", "probe_interval": "300ms", "probe_timeout": "2s",
              "reconnect_max": "500ms"}


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj",
            f"/CN={name}", cwd=d)
    return os.path.join(d, f"{name}.pem")


def issue(d, ca, name, cn):
    """name.pem/name.key signed by ca, for server and client use, DNS SAN cn."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName=DNS:{cn}\nextendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("redis-tls"))
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other-ca")
    cert, key = issue(d, "ca", "redis", "redis.test")
    ccert, ckey = issue(d, "ca", "client", "wsgate.test")
    port = free_port()
    argv = ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca,
            "--tls-auth-clients", "yes", "--save", "", "--appendonly", "no", "--dir", d,
            "--logfile", os.path.join(d, "redis.log"), "--daemonize", "no"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=_set_pdeathsig)

    def pings():
        if proc.poll() is not None:
            raise HarnessError(f"redis-server exited: {open(argv[-3]).read()}")
        r = subprocess.run(["redis-cli", "--tls", "--cacert", ca, "--cert", ccert, "--key",
                            ckey, "--sni", "redis.test", "-h", "127.0.0.1", "-p", str(port),
                            "PING"], capture_output=True, timeout=5)
        return r.stdout.strip() == b"PONG"
    try:
        wait_until(pings, 10, interval=0.1, what="redis-server answers PING over TLS")
        yield {"port": port, "ca": ca, "other_ca": other_ca, "cert": ccert, "key": ckey}
    finally:
        proc.kill()
        proc.wait()


def gateway(tmp_path, name, keys):
    g = Gateway(workdir=str(tmp_path / name), routes=ROUTES)
    add_config_sections(g, {"redis": dict(REDIS_KEYS, **keys)})
    g.start()
    return g


def test_pubsub_round_trip_over_tls(tls_redis, tmp_path):
    r = tls_redis
    g = gateway(tmp_path, "gw-tls", {"url": f"rediss://127.0.0.1:{r['port']}/0",
                                     "ca_file": r["ca"], "cert": r["cert"], "key": r["key"],
                                     "tls_server_name": "redis.test"})
    try:
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 10,
                   what="/readyz 200 over TLS")
        with WSClient(g.port, "/chat") as a, WSClient(g.port, "/chat") as b:
            a.send_text("over tls")
            assert b.recv_message() == (OP_TEXT, b"over tls")
            assert a.recv_message() == (OP_TEXT, b"over tls")
        assert "(TLS)" in g.stderr()
    finally:
        g.stop()


@pytest.mark.parametrize("case", ["other-ca", "wrong-name"])
def test_unverified_redis_certificate_refused(tls_redis, tmp_path, case):
    r = tls_redis
    keys = {"url": f"redis://127.0.0.1:{r['port']}/0", "tls": "yes", "cert": r["cert"],
            "key": r["key"], "ca_file": r["other_ca"] if case == "other-ca" else r["ca"],
            "tls_server_name": "redis.test" if case == "other-ca" else "evil.test"}
    g = gateway(tmp_path, f"gw-{case}", keys)
    try:
        wait_until(lambda: "certificate verify failed" in g.stderr(), 10,
                   what="the verification failure logged")
        assert http_status(g.port, "/readyz") == 503
    finally:
        g.stop()


def test_config_test_loads_redis_tls_files(tmp_path):
    """`wsgate -t` loads the [redis] CA bundle as a start would (a PEM with no certificate)."""
    from wsharness import run_wsgate
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate\n")
    ini = tmp_path / "w.ini"
    ini.write_text("[gateway]\nlisten = 127.0.0.1:1\n[route /chat]\ntype = pubsub\n"
                   f"subscribe = chat\n[redis]\nurl = rediss://127.0.0.1:1\nca_file = {bad}\n")
    r = run_wsgate(["-t", "-c", str(ini)])
    assert r.returncode == 1, r
    assert f"{ini}: [redis]: cannot load ca_file {bad}" in r.stderr, r.stderr
