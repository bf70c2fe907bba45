"""test_deflate.py - permessage-deflate (RFC 7692, issue 19) against the real binary, strict:
Autobahn 12.x/13.x-style echo of compressed messages of many sizes and fragmentations under
every parameter combination, directly, over wss and through a proxy route (whose backend
negotiated nothing); the negotiation answers and the 400; RSV1 where it is not allowed (1002),
bad compressed data and bad UTF-8 after inflation (1007), a compression bomb (1009 once
max_message_size bytes are inflated); a pubsub broadcast reaching compressing and plain
subscribers; the compression_memory budget; real clients that compress: python3-websockets
(default settings), Node ws with perMessageDeflate (direct and through the proxy), and Chromium
on a pubsub route with the gateway's frames checked on the wire (RSV1 through a relay)."""

import asyncio
import functools
import http.server
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib

import pytest

from wsharness import (OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, Gateway, PyWsBackend,
                       WSClient, build_frame, free_port, node_env, node_modules_dir,
                       node_modules_missing, node_script, read_http_response, render_config,
                       srcdir, wait_until)

MAX_MESSAGE = 1 << 20


def json_payload(n, seed=0):
    """n bytes of a realistic JSON stream (compresses the way broadcast data does)."""
    out = []
    i = seed
    size = 0
    while size < n:
        item = json.dumps({"id": i, "symbol": "ABC%d" % (i % 17), "price": 100 + (i * 37 % 1000) / 100,
                           "side": "buy" if i % 3 else "sell", "ts": 1700000000 + i})
        out.append(item)
        size += len(item) + 1
        i += 1
    return ("\n".join(out)).encode()[:n]


def binary_payload(n, seed=1):
    """n bytes half random, half repeated: compressible, not UTF-8."""
    r = os.urandom(n // 2)
    return (r + bytes((seed + i) % 251 for i in range(n - len(r))))[:n]


@pytest.fixture(scope="module")
def backend():
    b = PyWsBackend().start()  # compression=None: the backend negotiates nothing
    yield b
    b.stop()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    assert shutil.which("openssl"), "apt-get install openssl"
    d = str(tmp_path_factory.mktemp("pmdcert"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
                    "-days", "2", "-subj", "/CN=localhost"], cwd=d, check=True,
                   capture_output=True)
    return os.path.join(d, "c.pem"), os.path.join(d, "k.pem")


def routes(backend_url):
    z = {"type": "echo", "compression": "on", "compression_min_size": "0"}
    return {
        "/z": z,
        "/zmin": dict(z, compression_min_size="64"),
        "/zsmall": dict(z, compression_server_window_bits="9", compression_client_window_bits="9",
                        compression_level="1"),
        "/plain": {"type": "echo"},
        "/zproxy": {"type": "proxy", "backend": backend_url, "compression": "on",
                    "compression_min_size": "0"},
        "/zps": {"type": "pubsub", "subscribe": "news", "publish": "news", "compression": "on",
                 "compression_min_size": "32"},
        "/ps": {"type": "pubsub", "subscribe": "news", "publish": "news"},
    }


@pytest.fixture(scope="module")
def zgw(tmp_path_factory, backend, cert):
    g = Gateway(workdir=str(tmp_path_factory.mktemp("deflate")), config_text="; x\n")
    g.tls_port = free_port()
    text = render_config(g.ports, gateway={"max_message_size": str(MAX_MESSAGE), "workers": "2",
                                           "handshake_timeout": "5s", "close_timeout": "2s",
                                           "shutdown_timeout": "5s", "drain_window": "0"},
                         heartbeat={"ping_interval": "0"}, routes=routes(backend.url("/b")))
    text = text.replace(f"listen = 127.0.0.1:{g.port}\n",
                        f"listen = 127.0.0.1:{g.port}\nlisten = 127.0.0.1:{g.tls_port} tls\n")
    text += f"\n[tls]\ncert = {cert[0]}\nkey = {cert[1]}\n"
    g.config_text = text
    with open(g.config_path, "w", encoding="utf-8") as f:
        f.write(text)
    g.start()
    yield g
    g.stop()


def zclient(g, path="/z", offer="permessage-deflate; client_max_window_bits", tls=False):
    hdrs = [("Sec-WebSocket-Extensions", offer)] if offer is not None else []
    if not tls:
        return WSClient(g.port, path=path, headers=hdrs)
    c = WSClient(g.tls_port, path=path, handshake=False)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
    c.handshake(headers=hdrs)
    return c


def echo_compressed(c, op, data, fragments=None, expect_rsv1=True):
    """Sends data compressed, reads the echo: byte-exact, and compressed when expected (a JSON
    message under 64 bytes may not shrink: it then goes plain, which is fine)."""
    if expect_rsv1 and len(data) < 64:
        expect_rsv1 = None
    c.send_compressed(op, data, fragments=fragments)
    got_op, got = c.recv_message()
    first = [f for f in c.received if f.opcode in (OP_TEXT, OP_BINARY)][-1]
    assert (got_op, got) == (op, data), f"{len(data)} bytes in {fragments} fragments"
    if expect_rsv1 is not None:
        assert bool(first.rsv & 4) == expect_rsv1, f"RSV1 {first.rsv} for {len(data)} bytes"
    if first.rsv & 4:
        assert len(first.payload) < len(data), "compressed only when it is smaller"


# ---------------------------------------------------------------------------------------------
# negotiation

ANSWERS = [
    ("permessage-deflate", "permessage-deflate; server_no_context_takeover"),
    ("permessage-deflate; client_max_window_bits",
     "permessage-deflate; server_no_context_takeover"),
    ("permessage-deflate; client_no_context_takeover; server_max_window_bits=10",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=10"),
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits=10",
     "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"),
    ("x-webkit-deflate-frame, permessage-deflate; foo, permessage-deflate; "
     "server_no_context_takeover", "permessage-deflate; server_no_context_takeover"),
    ("permessage-deflate; client_max_window_bits=\"12\"",
     "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"),
    ("permessage-deflate; foo", None),
    ("permessage-deflate; server_max_window_bits=16", None),
    ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
]


@pytest.mark.parametrize("offer,answer", ANSWERS)
def test_negotiation_answer(zgw, offer, answer):
    with zclient(zgw, offer=offer) as c:
        assert c.response.header("Sec-WebSocket-Extensions") == answer


def test_small_windows_route(zgw):
    with zclient(zgw, path="/zsmall") as c:
        assert c.pmd == {"server_no_context_takeover": True, "client_max_window_bits": 9}
        for n in (100, 5000, 70000):
            echo_compressed(c, OP_TEXT, json_payload(n))
    # An offer that cannot limit the client's window is declined on this route.
    with zclient(zgw, path="/zsmall", offer="permessage-deflate") as c:
        assert c.pmd is None


def test_offers_on_several_lines(zgw):
    hdrs = [("Sec-WebSocket-Extensions", "foo"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover")]
    with WSClient(zgw.port, path="/z", headers=hdrs) as c:
        assert c.pmd == {"server_no_context_takeover": True, "client_no_context_takeover": True}


@pytest.mark.parametrize("bad", ["permessage-deflate; =1", "permessage-deflate x",
                                 "permessage-deflate; a=\"1", ";"])
def test_malformed_offer_400(zgw, bad):
    c = WSClient(zgw.port, path="/z", handshake=False)
    with c:
        c.sock.sendall(c.request_bytes([("Sec-WebSocket-Extensions", bad)]))
        resp, _ = read_http_response(c.sock, time.monotonic() + 5)
        assert resp.status == 400
    # A route without compression ignores the header, as before.
    with zclient(zgw, path="/plain", offer=bad) as c:
        assert c.pmd is None


def test_route_off_answers_nothing(zgw):
    with zclient(zgw, path="/plain") as c:
        assert c.response.header("Sec-WebSocket-Extensions") is None
        assert c.roundtrip(OP_TEXT, b"x" * 1000) == (OP_TEXT, b"x" * 1000)
        assert c.received[-1].rsv == 0


# ---------------------------------------------------------------------------------------------
# Autobahn 12.x / 13.x style echo

SIZES = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072]
# 13.x: (client_no_context_takeover, client_max_window_bits, server_max_window_bits)
OFFERS = {
    "default": "permessage-deflate",
    "cmwb": "permessage-deflate; client_max_window_bits",
    "cnct": "permessage-deflate; client_no_context_takeover",
    "cmwb9": "permessage-deflate; client_max_window_bits=9",
    "smwb9": "permessage-deflate; server_max_window_bits=9",
    "smwb9-cmwb9-cnct": "permessage-deflate; client_no_context_takeover; "
                        "server_max_window_bits=9; client_max_window_bits=9",
    "snct-cnct-15": "permessage-deflate; server_no_context_takeover; "
                    "client_no_context_takeover; server_max_window_bits=15; "
                    "client_max_window_bits=15",
}


@pytest.mark.parametrize("offer", list(OFFERS), ids=list(OFFERS))
@pytest.mark.parametrize("op", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_echo_sizes(zgw, offer, op):
    """12.x: messages of every size, several per connection (context takeover matters)."""
    with zclient(zgw, offer=OFFERS[offer]) as c:
        assert c.pmd is not None
        for n in SIZES:
            for k in range(3):
                data = json_payload(n, k) if op == OP_TEXT else binary_payload(n, k)
                # Half-random binary may not shrink: then it goes plain.
                echo_compressed(c, op, data, expect_rsv1=True if op == OP_TEXT else None)


@pytest.mark.parametrize("fragments", [2, 3, 16, 100])
def test_echo_fragmented(zgw, fragments):
    """12.x with fragmentation: a compressed message split over frames (empty ones too)."""
    with zclient(zgw) as c:
        for n in (64, 4096, 65536, 131072):
            echo_compressed(c, OP_TEXT, json_payload(n), fragments=fragments)
            echo_compressed(c, OP_BINARY, binary_payload(n), fragments=fragments,
                            expect_rsv1=None)


def test_interleaved_control_and_plain(zgw):
    """Pings between the fragments of a compressed message; plain messages between compressed
    ones (RSV1 clear: allowed on a negotiated connection)."""
    with zclient(zgw) as c:
        c.send_compressed(OP_TEXT, json_payload(10000), fragments=1)
        assert c.recv_message() == (OP_TEXT, json_payload(10000))
        zc = zlib.compressobj(6, zlib.DEFLATED, -15)
        z = (zc.compress(b"hello " * 100) + zc.flush(zlib.Z_SYNC_FLUSH))[:-4]
        c.send_raw(build_frame(OP_TEXT, z[:5], fin=False, rsv=4) + build_frame(OP_PING, b"p") +
                   build_frame(0, z[5:], fin=True))
        controls = []
        assert c.recv_message(controls=controls) == (OP_TEXT, b"hello " * 100)
        c.send_frame(OP_BINARY, b"plain")
        assert c.recv_message() == (OP_BINARY, b"plain")


def test_min_size(zgw):
    with zclient(zgw, path="/zmin") as c:
        echo_compressed(c, OP_TEXT, b"a" * 63, expect_rsv1=False)
        c.send_compressed(OP_TEXT, b"a" * 64)
        assert c.recv_message() == (OP_TEXT, b"a" * 64)
        assert c.received[-1].rsv == 4
        echo_compressed(c, OP_BINARY, b"", expect_rsv1=False)


def test_echo_over_wss(zgw):
    for offer in ("permessage-deflate", "permessage-deflate; client_no_context_takeover; "
                  "server_max_window_bits=10"):
        with zclient(zgw, offer=offer, tls=True) as c:
            for n in SIZES:
                echo_compressed(c, OP_TEXT, json_payload(n))
                echo_compressed(c, OP_BINARY, binary_payload(n), fragments=3, expect_rsv1=None)


def test_echo_through_proxy(zgw, backend):
    """The backend negotiated no compression: it receives plain messages (wsgate inflates) and
    its replies reach the client compressed, a large one relayed as it streams in compressed
    fragment by fragment."""
    for offer in OFFERS.values():
        with zclient(zgw, path="/zproxy", offer=offer) as c:
            for n in (16, 1024, 65536, 131072, 500000):
                echo_compressed(c, OP_TEXT, json_payload(n))
                echo_compressed(c, OP_BINARY, binary_payload(n), fragments=4, expect_rsv1=None)


# ---------------------------------------------------------------------------------------------
# what must fail

def expect_fail(c, code):
    res = c.expect_close()
    assert res.code == code, res


def test_rsv1_on_continuation_1002(zgw):
    with zclient(zgw) as c:
        c.send_raw(build_frame(OP_TEXT, b"\x4a", fin=False, rsv=4) +
                   build_frame(0, b"\x04\x00", fin=True, rsv=4))
        expect_fail(c, 1002)


@pytest.mark.parametrize("op", [OP_PING, OP_CLOSE])
def test_rsv1_on_control_1002(zgw, op):
    with zclient(zgw) as c:
        c.send_raw(build_frame(op, b"", rsv=4))
        expect_fail(c, 1002)


def test_rsv1_without_extension_1002(zgw):
    with zclient(zgw, path="/plain") as c:
        c.send_raw(build_frame(OP_TEXT, b"\x4a\x04\x00", rsv=4))
        expect_fail(c, 1002)
    with zclient(zgw, path="/z", offer=None) as c:
        c.send_raw(build_frame(OP_TEXT, b"\x4a\x04\x00", rsv=4))
        expect_fail(c, 1002)


def test_bad_compressed_data_1007(zgw):
    with zclient(zgw) as c:
        c.send_raw(build_frame(OP_BINARY, b"\xff\xff\xff\xff\xff", rsv=4))
        expect_fail(c, 1007)


def test_bad_utf8_after_inflation_1007(zgw):
    with zclient(zgw) as c:
        c.send_compressed(OP_TEXT, b"valid \xce\xba then bad \xff")
        expect_fail(c, 1007)
    with zclient(zgw) as c:  # a code point cut at the end of the message
        c.send_compressed(OP_TEXT, b"cut \xce")
        expect_fail(c, 1007)
    with zclient(zgw) as c:  # split across fragments, valid
        c.send_compressed(OP_TEXT, "κόσμε".encode() * 1000, fragments=7)
        assert c.recv_message() == (OP_TEXT, "κόσμε".encode() * 1000)


def test_bomb_1009(zgw):
    """A few KiB that inflate to 64 MiB: refused once max_message_size (1 MiB) is inflated,
    and the gateway's memory does not grow by the bomb's size."""
    zc = zlib.compressobj(9, zlib.DEFLATED, -15)
    z = (zc.compress(b"\0" * (64 << 20)) + zc.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(z) < 128 * 1024
    with zclient(zgw) as c:
        c.send_raw(build_frame(OP_BINARY, z, rsv=4))
        res = c.expect_close()
        assert res.code == 1009, res
        assert b"inflated" in res.close_frame.close_reason
    # Exactly max_message_size inflated is fine.
    with zclient(zgw) as c:
        echo_compressed(c, OP_BINARY, b"\0" * MAX_MESSAGE)


# ---------------------------------------------------------------------------------------------
# pubsub: one broadcast, compressed once, plain for the others

def test_pubsub_compressed_and_plain_subscribers(zgw):
    with zclient(zgw, path="/zps") as zs1, zclient(zgw, path="/zps",
                                                   offer="permessage-deflate; "
                                                   "client_no_context_takeover") as zs2, \
            zclient(zgw, path="/ps") as plain, zclient(zgw, path="/zps", offer=None) as nooffer:
        time.sleep(0.2)
        msgs = [json_payload(n, n) for n in (10, 100, 1024, 1024, 20000)]
        for m in msgs:
            plain.send_frame(OP_TEXT, m)
        for c in (zs1, zs2, plain, nooffer):
            for m in msgs:
                assert c.recv_message() == (OP_TEXT, m)
            data = [f for f in c.received if f.opcode == OP_TEXT]
            rsv = [bool(f.rsv & 4) for f in data]
            if c in (zs1, zs2):
                assert rsv == [False, True, True, True, True], rsv  # min size 32
                assert len(data[3].payload) < 1024 // 2
            else:
                assert not any(rsv)


def test_pubsub_client_publishes_compressed(zgw):
    with zclient(zgw, path="/zps") as pub, zclient(zgw, path="/ps") as sub:
        time.sleep(0.2)
        pub.send_compressed(OP_TEXT, json_payload(5000))
        assert sub.recv_message() == (OP_TEXT, json_payload(5000))
        assert pub.recv_message() == (OP_TEXT, json_payload(5000))


# ---------------------------------------------------------------------------------------------
# compression_memory

def test_compression_memory_budget(tmp_path_factory):
    """Room for one kept inflate context (15 bits, ~40 KiB): the second client is told
    client_no_context_takeover (it still compresses, and wsgate keeps no context for it), which
    it must honour; the budget comes back when the first leaves."""
    g = Gateway(workdir=str(tmp_path_factory.mktemp("pmdbudget")),
                gateway={"compression_memory": "60000"},
                routes={"/z": {"type": "echo", "compression": "on"}})
    g.start()
    try:
        a = zclient(g)
        assert a.pmd is not None
        assert "client_no_context_takeover" not in a.pmd
        with zclient(g) as b:
            assert b.pmd == {"server_no_context_takeover": True,
                             "client_no_context_takeover": True}
            for _ in range(3):  # each message compressed on its own
                echo_compressed(b, OP_TEXT, json_payload(5000))
        with zclient(g, offer="permessage-deflate; client_no_context_takeover") as d:
            assert d.pmd is not None
        a.send_close(1000)
        a.expect_close(reply=False)
        a.close()

        def fresh_gets_it():
            with zclient(g) as e:
                return "client_no_context_takeover" not in e.pmd
        wait_until(fresh_gets_it, 5, what="budget given back")
    finally:
        g.stop()


# ---------------------------------------------------------------------------------------------
# a real client: python3-websockets compresses by default

def test_python_websockets_default_compression(zgw):
    import websockets

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{zgw.port}/z", max_size=None) as ws:
            ext = ws.response_headers.get("Sec-WebSocket-Extensions")
            assert ext and ext.startswith("permessage-deflate"), ext
            for n in (0, 1, 100, 10000, 200000):
                t = json_payload(n).decode()
                await ws.send(t)
                assert await ws.recv() == t
                b = binary_payload(n)
                await ws.send(b)
                assert await ws.recv() == b

    asyncio.run(run())


# ---------------------------------------------------------------------------------------------
# real clients that compress: Node ws, Chromium (its frames checked on the wire)

class WireTap:
    """A TCP relay in front of the gateway that parses what the gateway writes (after the
    101's head) into frames: [(rsv, opcode, payload length)] per connection."""

    def __init__(self, port):
        self.port = port
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.listen_port = self.srv.getsockname()[1]
        self.frames = []
        self.threads = []
        self.stop = False
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.port))
            seen = []
            self.frames.append(seen)
            for a, b, tap in ((c, u, None), (u, c, seen)):
                t = threading.Thread(target=self._pipe, args=(a, b, tap), daemon=True)
                t.start()
                self.threads.append(t)

    @staticmethod
    def _pipe(a, b, tap):
        buf = b""
        head_done = False
        while True:
            try:
                d = a.recv(65536)
            except OSError:
                d = b""
            if not d:
                try:
                    b.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                b.sendall(d)
            except OSError:
                return
            if tap is None:
                continue
            buf += d
            if not head_done:
                if b"\r\n\r\n" not in buf:
                    continue
                buf = buf.split(b"\r\n\r\n", 1)[1]
                head_done = True
            while len(buf) >= 2:
                n = buf[1] & 0x7F
                off = 2
                if n == 126:
                    if len(buf) < 4:
                        break
                    n, off = struct.unpack("!H", buf[2:4])[0], 4
                elif n == 127:
                    if len(buf) < 10:
                        break
                    n, off = struct.unpack("!Q", buf[2:10])[0], 10
                if len(buf) < off + n:
                    break
                tap.append(((buf[0] >> 4) & 7, buf[0] & 0xF, n))
                buf = buf[off + n:]

    def close(self):
        self.stop = True
        self.srv.close()


@pytest.fixture(scope="module")
def node_exe():
    exe = shutil.which("node")
    assert exe, "node is not installed"
    missing = node_modules_missing("ws")
    assert not missing, f"node modules {missing} not found in {node_modules_dir()}"
    return exe


NODE_OPTIONS = ["{}", '{"clientNoContextTakeover":true}',
                '{"serverMaxWindowBits":10,"clientMaxWindowBits":9}',
                '{"serverNoContextTakeover":true,"clientNoContextTakeover":true,'
                '"serverMaxWindowBits":9,"clientMaxWindowBits":9}']


@pytest.mark.parametrize("opts", NODE_OPTIONS)
@pytest.mark.parametrize("path", ["/z", "/zproxy"])
def test_node_ws_per_message_deflate(zgw, node_exe, tmp_path, opts, path):
    r = subprocess.run([node_exe, node_script("ws_deflate.js"), f"ws://127.0.0.1:{zgw.port}{path}",
                        opts], cwd=tmp_path, env=node_env(), capture_output=True, text=True,
                       timeout=90)
    assert r.returncode == 0, f"ws_deflate.js failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "ok: 10 round trips, extensions: permessage-deflate" in r.stdout, r.stdout


def test_node_ws_deflate_can_fail(zgw, node_exe, tmp_path):
    # A route without compression: the script must see that nothing was negotiated.
    r = subprocess.run([node_exe, node_script("ws_deflate.js"), f"ws://127.0.0.1:{zgw.port}/plain"],
                       cwd=tmp_path, env=node_env(), capture_output=True, text=True, timeout=90)
    assert r.returncode == 1 and "not negotiated" in r.stderr, f"{r.stdout}\n{r.stderr}"


CHROMIUM = os.environ.get("WSGATE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def page_url():
    directory = os.path.join(srcdir(), "tests", "node")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(Quiet, directory=directory))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/deflate_page.html"
    srv.shutdown()
    srv.server_close()


def test_chromium_pubsub_receives_compressed_frames(zgw, node_exe, page_url, tmp_path):
    """Chromium on a compression = on pubsub route: it publishes 3 JSON messages (compressed by
    the browser) and receives them through the broadcast; on the wire, the gateway's frames of
    the 2000- and 5000-byte messages carry RSV1 and are smaller, the 10-byte one (under
    compression_min_size) is plain."""
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing: apt-get install chromium"
    assert not node_modules_missing("playwright-core")
    tap = WireTap(zgw.port)
    try:
        env = dict(node_env(), WSGATE_CHROMIUM=CHROMIUM, TMPDIR=str(tmp_path))
        r = subprocess.run([node_exe, node_script("browser_deflate.js"), page_url,
                            f"ws://127.0.0.1:{tap.listen_port}/zps", "[2000, 10, 5000]"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"browser_deflate.js failed:\n{r.stdout}\n{r.stderr}"
        wait_until(lambda: tap.frames and any(op == OP_CLOSE for _, op, _ in tap.frames[0]), 5,
                   what="the gateway's close frame on the wire")
        data = [(rsv, n) for rsv, op, n in tap.frames[0] if op == OP_TEXT]
        assert len(data) == 3, tap.frames
        assert data[0][0] == 4 and data[0][1] < 2000 // 2, data
        assert data[1] == (0, 10), data
        assert data[2][0] == 4 and data[2][1] < 5000 // 2, data
    finally:
        tap.close()
