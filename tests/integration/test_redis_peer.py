"""test_redis_peer.py - wsgate against a Redis peer that sends what Redis never does (issue 10
item 1: no peer, Redis included, can reach an abort). A fake Redis written here speaks RESP2
(AUTH, SELECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH with real delivery, PING) so the gateway comes up
ready, with its canary working; then it sends on one link one of the replies that tripped
hiredis 0.14's assert()s in its async layer (async.c:478, 378, 379, 409; the inputs of
fuzz/corpus/redis/redis-*). The gateway must survive, log a protocol error, count it in
wsgate_redis_protocol_errors_total, rebuild that link (AUTH and SELECT from the URL again) and
go on delivering both ways."""

import select
import socket
import threading

import pytest

from test_admin import metrics
from test_pubsub_redis import REDIS_KEYS, ROUTES, recv_messages
from wsharness import (OP_TEXT, Gateway, WSClient, add_config_sections, free_port, http_status,
                       wait_until)

PASSWORD = "s3cret-pass"
DB = "3"


def _bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)


def _push(*items):
    out = [b"*%d\r\n" % len(items)]
    for it in items:
        out.append(b":%d\r\n" % it if isinstance(it, int) else _bulk(it))
    return b"".join(out)


def _parse_command(buf):
    """(args, rest) for one RESP array of bulk strings at the start of buf, or (None, buf)."""
    if not buf.startswith(b"*"):
        if buf:
            raise ValueError(f"not a command: {bytes(buf[:40])!r}")
        return None, buf
    end = buf.find(b"\r\n")
    if end < 0:
        return None, buf
    n, pos, args = int(buf[1:end]), end + 2, []
    for _ in range(n):
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None, buf
        size = int(buf[pos + 1:end])
        if len(buf) < end + 2 + size + 2:
            return None, buf
        args.append(bytes(buf[end + 2:end + 2 + size]))
        pos = end + 2 + size + 2
    return args, buf[pos:]


class FakeConn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.kind = None  # "sub" after SUBSCRIBE, "pub" after SELECT
        self.auth = []
        self.select = []
        self.subs = set()
        self.alive = True


class FakeRedis:
    """A RESP2 server on a free loopback port, one thread; pub/sub delivery between its
    connections as Redis does it. inject() writes raw bytes to the live links of one kind."""

    def __init__(self, password=None):
        self.password = password
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _send(self, c, data):
        try:
            c.sock.sendall(data)
        except OSError:
            c.alive = False

    def _handle(self, c, args):
        cmd = args[0].upper()
        if cmd == b"AUTH":
            c.auth.append(args[1].decode())
            ok = self.password is not None and args[1].decode() == self.password
            self._send(c, b"+OK\r\n" if ok else b"-WRONGPASS invalid password\r\n")
        elif cmd == b"SELECT":
            c.kind = "pub"
            c.select.append(args[1].decode())
            self._send(c, b"+OK\r\n")
        elif cmd in (b"SUBSCRIBE", b"UNSUBSCRIBE"):
            c.kind = "sub"
            for ch in args[1:]:
                (c.subs.add if cmd == b"SUBSCRIBE" else c.subs.discard)(ch)
                self._send(c, _push(cmd.lower(), ch, len(c.subs)))
        elif cmd == b"PUBLISH":
            self._send(c, b":%d\r\n" % self._deliver(args[1], args[2]))
        elif cmd == b"PING":
            self._send(c, b"+PONG\r\n")
        else:
            self._send(c, b"-ERR unknown command\r\n")

    def _deliver(self, ch, msg):
        n = 0
        for o in self.conns:
            if o.alive and ch in o.subs:
                self._send(o, _push(b"message", ch, msg))
                n += 1
        return n

    def _run(self):
        while not self.stopping:
            with self.lock:
                socks = [self.lsock] + [c.sock for c in self.conns if c.alive]
            r, _, _ = select.select(socks, [], [], 0.05)
            with self.lock:
                for s in r:
                    if s is self.lsock:
                        cs, _ = s.accept()
                        self.conns.append(FakeConn(cs))
                        continue
                    c = next(c for c in self.conns if c.sock is s)
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        c.alive = False
                        s.close()
                        continue
                    c.buf += data
                    while c.alive:
                        args, c.buf = _parse_command(c.buf)
                        if args is None:
                            break
                        self._handle(c, args)

    def live(self, kind):
        with self.lock:
            return [c for c in self.conns if c.alive and c.kind == kind]

    def total(self, kind):
        with self.lock:
            return sum(1 for c in self.conns if c.kind == kind)

    def subscribed(self, ch):
        return any(ch in c.subs for c in self.live("sub"))

    def inject(self, kind, data):
        with self.lock:
            targets = [c for c in self.conns if c.alive and c.kind == kind]
            for c in targets:
                self._send(c, data)
        return len(targets)

    def publish(self, ch, msg):
        with self.lock:
            return self._deliver(ch, msg)

    def close(self):
        self.stopping = True
        self.thread.join(5)
        with self.lock:
            for c in self.conns:
                if c.alive:
                    c.sock.close()
            self.lsock.close()


# The four replies of fuzz/corpus/redis/redis-*, each on the link where it tripped hiredis.
FAULTS = {
    # One reply more than commands sent (async.c:478).
    "pub-unsolicited-reply": ("pub", b"+OK\r\n"),
    # A push array of one element (async.c:378).
    "sub-short-array": ("sub", b"*1\r\n:1\r\n"),
    # A push whose kind is an integer (async.c:379).
    "sub-nonstring-kind": ("sub", b"*3\r\n:7\r\n$4\r\nchat\r\n$1\r\nx\r\n"),
    # An unsubscribe confirmation whose count is a string (async.c:409).
    "sub-unsubscribe-nonint": ("sub", _push(b"unsubscribe", b"chat", b"x")),
}


def protocol_errors(admin):
    return int(metrics(admin).get(("wsgate_redis_protocol_errors_total", frozenset()), 0))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_reply_redis_never_sends_rebuilds_link(tmp_path, fault):
    link, data = FAULTS[fault]
    fake = FakeRedis(password=PASSWORD)
    admin = free_port()
    g = Gateway(workdir=str(tmp_path), routes=ROUTES,
                gateway={"workers": "2", "admin_listen": f"127.0.0.1:{admin}"})
    keys = {"url": f"redis://:{PASSWORD}@127.0.0.1:{fake.port}/{DB}"}
    keys.update(REDIS_KEYS)
    add_config_sections(g, {"redis": keys})
    c = None
    try:
        g.start()
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 10, what="/readyz 200")
        c = WSClient(g.port, "/chat")
        wait_until(lambda: fake.subscribed(b"chat"), 5, what="SUBSCRIBE chat")
        before = fake.total(link)
        assert fake.inject(link, data) >= 1

        wait_until(lambda: not g.running() or fake.total(link) > before, 10,
                   what=f"a new {link} connection")
        assert g.running(), f"wsgate died on {fault}; stderr:\n{g.stderr()[-3000:]}"
        wait_until(lambda: "protocol error" in g.stderr(), 5, what="protocol error logged")
        assert protocol_errors(admin) >= 1
        wait_until(lambda: http_status(g.port, "/readyz") == 200, 10, what="/readyz 200 again")
        wait_until(lambda: fake.subscribed(b"chat"), 5, what="SUBSCRIBE chat again")

        # Still serving: a message from Redis reaches the client, and the client's own
        # publish goes out through a pub link and comes back.
        assert fake.publish(b"chat", b"after") >= 1
        assert recv_messages(c, 1) == [(OP_TEXT, b"after")]
        c.send_text("mine")
        assert recv_messages(c, 1) == [(OP_TEXT, b"mine")]

        # Every connection, the rebuilt ones too, authenticated with the URL's password;
        # every publish link selected its db.
        with fake.lock:
            conns = [x for x in fake.conns if x.kind is not None]
        assert conns and all(x.auth == [PASSWORD] for x in conns), [x.auth for x in conns]
        assert all(x.select == [DB] for x in conns if x.kind == "pub")
        assert g.running()
    finally:
        if c:
            c.close()
        try:
            g.stop()
        finally:
            fake.close()
