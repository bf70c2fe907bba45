"""test_redis_cluster_tls.py - [redis] cluster = yes over TLS: a Redis Cluster of 3 masters and
3 replicas whose nodes listen only on a tls-port (port 0), with tls-cluster yes (the cluster
bus, and the port the nodes announce in CLUSTER SLOTS, is the TLS one), tls-replication yes
and tls-auth-clients yes (a client certificate is required), made with
redis-cli --tls ... --cluster create; certificates made at test time by the openssl CLI. Two
gateways with cluster = yes and tls = yes learn the masters from the seeds and reach each over
TLS with their client certificate: broadcasts on channels spread over every master reach every
client of both gateways exactly once. A gateway trusting another CA never becomes ready and
says why. The cluster harness is test_redis_cluster.py's, the certificates test_redis_tls.py's."""

import pytest

from test_redis_cluster import (check_broadcast_spread, make_cluster, masters_of,
                                pytestmark, start_gateway)  # noqa: F401 - pytestmark: its skip
from test_redis_tls import issue, make_ca
from wsharness import http_status, wait_until

SERVER_NAME = "redis.test"


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("cluster-tls-certs"))
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other-ca")
    cert, key = issue(d, "ca", "redis", SERVER_NAME)
    ccert, ckey = issue(d, "ca", "client", "wsgate.test")
    tls = {"ca": ca, "cert": cert, "key": key, "client_cert": ccert, "client_key": ckey,
           "name": SERVER_NAME}
    nodes = make_cluster(str(tmp_path_factory.mktemp("cluster-tls")), tls=tls)
    try:
        yield nodes, tls, other_ca
    finally:
        for n in nodes:
            n.kill()


def redis_keys(tls, ca=None):
    return {"tls": "yes", "ca_file": ca or tls["ca"], "cert": tls["client_cert"],
            "key": tls["client_key"], "tls_server_name": tls["name"]}


def test_cluster_over_tls(tls_cluster, tmp_path):
    nodes, tls, _ = tls_cluster
    # What the gateways will learn: with tls-cluster yes each master announces its tls-port
    # (the only port it has) in CLUSTER SLOTS.
    announced = sorted(port for port, _ in masters_of(nodes[0]).values())
    assert len(announced) == 3 and set(announced) <= {n.port for n in nodes}, announced
    logs = check_broadcast_spread(nodes, tmp_path, 2, extra=redis_keys(tls))
    for log in logs:
        # the operator can tell the links are TLS, and every master learned is the TLS port
        assert "sharded pub/sub, TLS" in log, log
        for port in announced:
            assert f"redis cluster: master 127.0.0.1:{port} " in log, log


def test_cluster_other_ca_never_ready(tls_cluster, tmp_path):
    nodes, tls, other_ca = tls_cluster
    g = start_gateway(tmp_path, "gw-other-ca", nodes, extra=redis_keys(tls, other_ca),
                      wait_ready=False)
    try:
        # Two failed attempts (the seeds in turn): the refusal is lasting, not a first try.
        wait_until(lambda: g.stderr().count("certificate verify failed") >= 2, 10,
                   what="the verification failure logged twice")
        assert http_status(g.port, "/readyz") == 503
        assert "redis cluster: map of" not in g.stderr(), g.stderr()
    finally:
        g.stop()
