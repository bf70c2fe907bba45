"""wsharness.py - the integration suite's real parts: the wsgate binary started on a free
loopback port from a generated config, a raw WebSocket client over plain sockets (hand-made
upgrade, frames with any FIN/RSV/opcode/mask/length encoding, chunked sends) and a raw HTTP
request helper. Nothing here talks to anything but 127.0.0.1."""

import base64
import collections
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import zlib

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
DATA_OPCODES = (OP_CONT, OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:")

DEFAULT_TIMEOUT = 5.0


class HarnessError(AssertionError):
    """A failure found by the harness itself (bad server frame, timeout, unexpected EOF)."""


# ---------------------------------------------------------------------------------------------
# ports, environment


# Ports this process handed out lately: the kernel may give the same free port to two binds in
# a row, and a test asking for two (listen and admin_listen) then wrote one address twice
# (CI, 2026-12-03: "duplicate admin_listen address 127.0.0.1:57169").
_given_ports = collections.deque(maxlen=4096)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now, and not one this process
    handed out lately."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given_ports:
            break
    _given_ports.append(port)
    return port


def wsgate_bin():
    path = os.environ.get("WSGATE_BIN")
    if not path:
        raise HarnessError("WSGATE_BIN is not set: run through run-integration.sh / make check")
    if not os.access(path, os.X_OK):
        raise HarnessError(f"WSGATE_BIN={path} is not an executable file (build it with make)")
    return path


def srcdir():
    d = os.environ.get("WSGATE_SRCDIR")
    if d:
        return d
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def sanitizer_findings(text):
    """The sanitizer markers present in a process's stderr."""
    return [m for m in SANITIZER_MARKERS if m in text]


def _set_pdeathsig():
    # The gateway dies with the test run even if pytest is killed.
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ---------------------------------------------------------------------------------------------
# WebSocket frames


def ws_accept(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    if isinstance(key, bytes):
        key = key.decode("ascii")
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def new_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


def mask_bytes(data, key):
    """XORs data with the 4-byte key (fast for 16 MiB payloads)."""
    n = len(data)
    if n == 0:
        return b""
    rep = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(rep, "little")).to_bytes(n, "little")


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None,
                length_bits=None, declared_length=None):
    """Encodes one frame exactly as asked, broken or not.

    opcode: 0..15, any value; rsv: 3-bit value (4=RSV1, 2=RSV2, 1=RSV3); mask: client frames
    must be masked, False builds an unmasked one; length_bits: 7, 16 or 64 to force an encoding
    (None = minimal); declared_length: the length written in the header when it should differ
    from len(payload) (e.g. a header that promises more bytes than are sent)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    payload = bytes(payload)
    n = len(payload) if declared_length is None else declared_length
    if length_bits is None:
        length_bits = 7 if n <= 125 else (16 if n <= 0xFFFF else 64)
    b0 = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if length_bits == 7:
        if n > 127:
            raise ValueError("7-bit length field holds at most 127")
        head = bytes([b0, mbit | n])
    elif length_bits == 16:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    elif length_bits == 64:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    else:
        raise ValueError("length_bits must be 7, 16 or 64")
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        if len(key) != 4:
            raise ValueError("mask key is 4 bytes")
        return head + key + mask_bytes(payload, key)
    return head + payload


def close_payload(code=None, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    if code is None:
        return b""
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, rsv, opcode, payload, masked=False, header=b""):
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.payload = payload
        self.masked = masked
        self.header = header

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self):
        return self.payload[2:] if self.opcode == OP_CLOSE else b""

    def __repr__(self):
        shown = self.payload[:40]
        more = "..." if len(self.payload) > 40 else ""
        return (f"Frame(fin={int(self.fin)} rsv={self.rsv} op={self.opcode:#x} "
                f"len={len(self.payload)} {shown!r}{more})")


def parse_frame(buf):
    """Decodes one frame from the start of buf. Returns (Frame, consumed) or (None, 0) when buf
    holds only part of it."""
    if len(buf) < 2:
        return None, 0
    b0, b1 = buf[0], buf[1]
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None, 0
        n = struct.unpack("!H", buf[2:4])[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None, 0
        n = struct.unpack("!Q", buf[2:10])[0]
        pos = 10
    key = None
    if masked:
        if len(buf) < pos + 4:
            return None, 0
        key = bytes(buf[pos:pos + 4])
        pos += 4
    if len(buf) < pos + n:
        return None, 0
    payload = bytes(buf[pos:pos + n])
    if masked:
        payload = mask_bytes(payload, key)
    f = Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, payload, masked, bytes(buf[:pos]))
    return f, pos + n


def check_server_frame(f, deflate=False):
    """What RFC 6455 demands of every frame a server sends (5.1, 5.2, 5.5, 7.4); with deflate
    (permessage-deflate negotiated), RSV1 is allowed on a message's first frame only (RFC 7692
    6.1)."""
    problems = []
    if f.masked:
        problems.append("server frame is masked (RFC 6455 5.1)")
    if f.rsv and not (deflate and f.rsv == 4 and f.opcode in (OP_TEXT, OP_BINARY)):
        problems.append(f"server frame has RSV bits {f.rsv:#x} without an extension")
    if f.opcode not in DATA_OPCODES + CONTROL_OPCODES:
        problems.append(f"server frame has reserved opcode {f.opcode:#x}")
    n = len(f.payload)
    lenfield = f.header[1] & 0x7F
    minimal = n if n <= 125 else (126 if n <= 0xFFFF else 127)
    if lenfield != minimal:
        problems.append(f"server frame length {n} not in minimal encoding (field {lenfield})")
    if f.opcode in CONTROL_OPCODES:
        if not f.fin:
            problems.append("server control frame is fragmented")
        if n > 125:
            problems.append("server control frame payload > 125")
    if f.opcode == OP_CLOSE:
        if n == 1:
            problems.append("server close frame with a 1-byte payload")
        if n >= 2:
            code = f.close_code
            if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
                problems.append(f"server close frame with code {code} not allowed on the wire")
            try:
                f.close_reason.decode("utf-8")
            except UnicodeDecodeError:
                problems.append("server close reason is not UTF-8")
    return problems  # text messages are checked for UTF-8 whole, in recv_message


class CloseResult:
    """How a connection ended, seen from the client."""

    def __init__(self):
        self.close_frame = None     # the server's close Frame, None if none came
        self.frames_before = []     # every frame that arrived before the close frame
        self.tcp_closed = False     # the server closed TCP (EOF or reset) after that
        self.reset = False          # ... by a reset

    @property
    def code(self):
        return self.close_frame.close_code if self.close_frame else None

    @property
    def reason(self):
        return self.close_frame.close_reason if self.close_frame else None

    def data_frames_before(self):
        return [f for f in self.frames_before if f.opcode in DATA_OPCODES]

    def __repr__(self):
        return (f"CloseResult(code={self.code} reason={self.reason!r} close_frame="
                f"{self.close_frame is not None} tcp_closed={self.tcp_closed} "
                f"frames_before={self.frames_before!r})")


class ServerClosed(HarnessError):
    def __init__(self, msg, frame=None, frames=None):
        super().__init__(msg)
        self.frame = frame
        self.frames = frames or []


class WSClient:
    """A WebSocket client over a plain socket, every byte under the test's control.

    Frames from the server are checked against RFC 6455 as they arrive; any violation raises.
    Received frames are all kept in .received (in order)."""

    def __init__(self, port, path="/echo", host="127.0.0.1", headers=None, protocols=None,
                 pipelined=b"", timeout=DEFAULT_TIMEOUT, handshake=True, key=None):
        self.port = port
        self.path = path
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.received = []
        self.response = None
        self.key = key if key is not None else new_key()
        self.timeout = timeout
        self.pmd = None  # permessage-deflate terms the server answered (deflate_terms)
        if handshake:
            self.handshake(headers=headers, protocols=protocols, pipelined=pipelined)

    # -- context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- handshake
    def request_bytes(self, headers=None, protocols=None):
        hdrs = [("Host", f"127.0.0.1:{self.port}"), ("Upgrade", "websocket"),
                ("Connection", "Upgrade"), ("Sec-WebSocket-Key", self.key),
                ("Sec-WebSocket-Version", "13")]
        if protocols:
            hdrs.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
        hdrs += list(headers or [])
        lines = [f"GET {self.path} HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def handshake(self, headers=None, protocols=None, pipelined=b""):
        self.sock.sendall(self.request_bytes(headers, protocols) + pipelined)
        resp = self._read_http_head(time.monotonic() + self.timeout)
        self.response = resp
        if resp.status != 101:
            raise HarnessError(f"upgrade refused: {resp.status_line!r} {resp.headers!r}")
        check_101(resp, self.key)
        ext = resp.header("Sec-WebSocket-Extensions")
        self.pmd = deflate_terms(ext) if ext else None
        return resp

    def _read_http_head(self, deadline):
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise HarnessError(f"connection closed during handshake; got {bytes(self.buf)!r}")
        end = self.buf.index(b"\r\n\r\n") + 4
        head = bytes(self.buf[:end])
        del self.buf[:end]
        return HttpResponse.parse_head(head)

    # -- socket plumbing
    def _fill(self, deadline):
        """Reads more bytes into buf. False on EOF/reset; raises TimeoutError at deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data from the server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("timed out waiting for data from the server") from None
        except ConnectionResetError:
            self.eof = True
            self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def send_raw(self, data, chunk=None, delay=0.0):
        """Sends bytes, optionally in chunks of `chunk` bytes with `delay` seconds between."""
        data = bytes(data)
        if not chunk:
            self.sock.settimeout(self.timeout * 4)
            self.sock.sendall(data)
            return
        for i in range(0, len(data), chunk):
            self.sock.sendall(data[i:i + chunk])
            if delay:
                time.sleep(delay)

    def send_frame(self, opcode, payload=b"", chunk=None, delay=0.0, **kw):
        self.send_raw(build_frame(opcode, payload, **kw), chunk=chunk, delay=delay)

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text.encode("utf-8") if isinstance(text, str) else text, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(OP_BINARY, data, **kw)

    def send_ping(self, payload=b"", **kw):
        self.send_frame(OP_PING, payload, **kw)

    def send_pong(self, payload=b"", **kw):
        self.send_frame(OP_PONG, payload, **kw)

    def send_close(self, code=None, reason=b"", payload=None, **kw):
        self.send_frame(OP_CLOSE, close_payload(code, reason) if payload is None else payload,
                        **kw)

    # -- receiving
    def recv_frame(self, timeout=DEFAULT_TIMEOUT):
        """The next server frame, or None when the server closed TCP. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            f, used = parse_frame(self.buf)
            if f is not None:
                del self.buf[:used]
                problems = check_server_frame(f, self.pmd is not None)
                if problems:
                    raise HarnessError(f"bad frame from server {f!r}: {'; '.join(problems)}")
                self.received.append(f)
                return f
            if not self._fill(deadline):
                if self.buf:
                    raise HarnessError(f"server closed TCP inside a frame: {bytes(self.buf)!r}")
                return None

    def recv_message(self, timeout=DEFAULT_TIMEOUT, auto_pong=True, controls=None):
        """The next complete data message as (opcode, payload). Pings are answered with pongs
        when auto_pong; control frames met on the way are appended to `controls` when given.
        A server close frame raises ServerClosed; TCP EOF raises HarnessError."""
        deadline = time.monotonic() + timeout
        opcode = None
        parts = []
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                raise HarnessError("server closed TCP while a message was expected")
            if f.opcode == OP_CLOSE:
                raise ServerClosed(f"server sent close {f.close_code} {f.close_reason!r} while a "
                                   "message was expected", f)
            if f.opcode in CONTROL_OPCODES:
                if controls is not None:
                    controls.append(f)
                if f.opcode == OP_PING and auto_pong:
                    self.send_pong(f.payload)
                continue
            if opcode is None:
                if f.opcode == OP_CONT:
                    raise HarnessError("server sent a continuation frame without a message start")
                opcode = f.opcode
            elif f.opcode != OP_CONT:
                raise HarnessError("server started a new message inside a fragmented one")
            if not parts:
                compressed = bool(f.rsv & 4)
            parts.append(f.payload)
            if f.fin:
                payload = b"".join(parts)
                if compressed:
                    payload = self.inflate(payload)
                if opcode == OP_TEXT:
                    try:
                        payload.decode("utf-8")
                    except UnicodeDecodeError:
                        raise HarnessError("server sent a text message that is not UTF-8")
                return opcode, payload

    def inflate(self, payload):
        """A compressed message from the server: wsgate answers server_no_context_takeover,
        so each one inflates on its own, in the window it announced (a larger back reference
        fails here)."""
        d = zlib.decompressobj(-self.pmd.get("server_max_window_bits", 15))
        out = d.decompress(payload + b"\x00\x00\xff\xff")
        if d.unconsumed_tail or d.unused_data:
            raise HarnessError("compressed message from the server has trailing data")
        return out

    def send_compressed(self, opcode, data, fragments=None, level=6, **kw):
        """One message compressed as permessage-deflate terms allow: RSV1 on the first frame,
        the sync-flush tail removed, split in `fragments` frames when given. The client keeps
        its context unless client_no_context_takeover was answered."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        bits = self.pmd.get("client_max_window_bits", 15)
        if "client_no_context_takeover" in self.pmd or getattr(self, "_zc", None) is None:
            self._zc = zlib.compressobj(level, zlib.DEFLATED, -max(bits, 9))
        z = self._zc.compress(data) + self._zc.flush(zlib.Z_SYNC_FLUSH)
        assert z.endswith(b"\x00\x00\xff\xff")
        z = z[:-4]
        n = max(1, fragments or 1)
        step = -(-len(z) // n) if z else 0
        pieces = [z[i * step:(i + 1) * step] for i in range(n)] if step else [z] + [b""] * (n - 1)
        out = b""
        for i, piece in enumerate(pieces):
            out += build_frame(opcode if i == 0 else OP_CONT, piece, fin=i == n - 1,
                               rsv=4 if i == 0 else 0)
        self.send_raw(out, **kw)
        return len(z)

    def recv_control(self, opcode, timeout=DEFAULT_TIMEOUT):
        """The next frame, which must be the given control opcode."""
        f = self.recv_frame(timeout)
        if f is None:
            raise HarnessError(f"server closed TCP; expected opcode {opcode:#x}")
        if f.opcode != opcode:
            raise HarnessError(f"expected opcode {opcode:#x}, got {f!r}")
        return f

    def expect_close(self, timeout=DEFAULT_TIMEOUT, reply=True, eof_timeout=DEFAULT_TIMEOUT,
                     auto_pong=False):
        """Reads until the server's close frame (keeping every frame before it), answers it
        with a close carrying the same code when reply, then waits for the server to close
        TCP. Returns a CloseResult; the caller asserts on it."""
        res = CloseResult()
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise HarnessError(f"no close frame from the server within {timeout}s; "
                                   f"frames so far {res.frames_before!r}") from None
            if f is None:
                res.tcp_closed = True
                res.reset = self.reset
                self.close()
                return res
            if f.opcode == OP_CLOSE:
                res.close_frame = f
                break
            res.frames_before.append(f)
            if auto_pong and f.opcode == OP_PING:
                self.send_pong(f.payload)
        if reply:
            try:
                self.send_close(res.code)
            except OSError:
                pass  # the server may already have dropped us; EOF is what counts
        res.tcp_closed = self.wait_eof(eof_timeout)
        res.reset = self.reset
        return res

    def wait_eof(self, timeout=DEFAULT_TIMEOUT):
        """True when the server closes TCP within timeout; the client then closes its socket
        too, as a real client does. Frames arriving meanwhile are checked and kept in
        .received."""
        eof = self.pump(timeout, auto_pong=False)[1]
        if eof:
            self.close()
        return eof

    def pump(self, seconds, auto_pong=True):
        """Reads frames for `seconds` (answering pings when auto_pong). Returns (frames, eof):
        the frames read and whether the server closed TCP. Stops early at EOF."""
        deadline = time.monotonic() + seconds
        frames = []
        while True:
            try:
                f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return frames, False
            if f is None:
                return frames, True
            frames.append(f)
            if auto_pong and f.opcode == OP_PING:
                try:
                    self.send_pong(f.payload)
                except OSError:
                    pass

    def is_open(self, wait=0.05):
        """True when the server has not closed TCP within `wait` seconds (pings answered)."""
        if self.eof:
            return False
        frames, eof = self.pump(wait)
        return not eof

    def roundtrip(self, opcode, payload, timeout=DEFAULT_TIMEOUT):
        self.send_frame(opcode, payload)
        return self.recv_message(timeout)


def deflate_terms(value):
    """The permessage-deflate answer of a 101 as {param: value or True}; raises unless it is
    exactly one permessage-deflate element (what a client offering only it may accept)."""
    elems = [e.strip() for e in value.split(",") if e.strip()]
    if len(elems) != 1:
        raise HarnessError(f"more than one extension answered: {value!r}")
    parts = [p.strip() for p in elems[0].split(";")]
    if parts[0] != "permessage-deflate":
        raise HarnessError(f"an extension not offered was answered: {value!r}")
    terms = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        k = k.strip()
        if k in terms:
            raise HarnessError(f"parameter {k} twice in {value!r}")
        terms[k] = int(v.strip().strip('"')) if v else True
    return terms


def check_101(resp, key):
    """RFC 6455 4.2.2: status 101, Upgrade: websocket, Connection: Upgrade, the right accept."""
    problems = []
    if resp.status != 101:
        problems.append(f"status {resp.status}")
    if not token_list_has(resp.header("Upgrade") or "", "websocket"):
        problems.append(f"Upgrade header {resp.header('Upgrade')!r}")
    if not token_list_has(resp.header("Connection") or "", "upgrade"):
        problems.append(f"Connection header {resp.header('Connection')!r}")
    if resp.header("Sec-WebSocket-Accept") != ws_accept(key):
        problems.append(f"Sec-WebSocket-Accept {resp.header('Sec-WebSocket-Accept')!r} != "
                        f"{ws_accept(key)!r}")
    if problems:
        raise HarnessError("bad 101 reply: " + "; ".join(problems) + f" in {resp.raw_head!r}")


def token_list_has(value, token):
    return any(t.strip().lower() == token.lower() for t in value.split(","))


# ---------------------------------------------------------------------------------------------
# raw HTTP


class HttpResponse:
    def __init__(self):
        self.status_line = ""
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers = []       # (name, value) in order, names as sent
        self.body = b""
        self.raw_head = b""
        self.closed = False     # the server closed the connection after the response
        self.elapsed = 0.0      # seconds from the end of sending to the complete response
        self.trailing = b""     # bytes after the response (before the server closed)

    @classmethod
    def parse_head(cls, head):
        r = cls()
        r.raw_head = head
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        r.status_line = lines[0]
        m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise HarnessError(f"malformed status line {lines[0]!r}")
        r.version, r.status, r.reason = m.group(1), int(m.group(2)), m.group(3) or ""
        for line in lines[1:]:
            if not line:
                continue
            if ":" not in line:
                raise HarnessError(f"malformed header line {line!r}")
            k, v = line.split(":", 1)
            r.headers.append((k.strip(), v.strip()))
        return r

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f"HttpResponse({self.status_line!r}, {self.headers!r}, body={self.body[:200]!r})"


def read_http_response(sock, deadline, buf=b""):
    """Reads one response head and its Content-Length body. Returns (response, rest)."""
    buf = bytearray(buf)
    while b"\r\n\r\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete HTTP response head; got {bytes(buf)!r}")
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise TimeoutError(f"no complete HTTP response head; got {bytes(buf)!r}") from None
        except ConnectionResetError:
            data = b""
        if not data:
            raise HarnessError(f"connection closed before a complete response head; got "
                               f"{bytes(buf)!r}")
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    resp = HttpResponse.parse_head(bytes(buf[:end]))
    rest = bytearray(buf[end:])
    clen = resp.header("Content-Length")
    if clen is not None and resp.status != 101:
        n = int(clen)
        while len(rest) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("HTTP body incomplete")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("HTTP body incomplete") from None
            except ConnectionResetError:
                data = b""
            if not data:
                raise HarnessError("connection closed inside the HTTP body")
            rest += data
        resp.body = bytes(rest[:n])
        rest = rest[n:]
    return resp, bytes(rest)


def wait_closed(sock, timeout):
    """True when the peer closes (EOF or reset) within timeout; bytes read meanwhile are
    returned as the second element."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, bytes(got)
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False, bytes(got)
        except ConnectionResetError:
            return True, bytes(got)
        if not data:
            return True, bytes(got)
        got += data


def http_request(port, raw, timeout=DEFAULT_TIMEOUT, close_timeout=DEFAULT_TIMEOUT,
                 chunks=None, host="127.0.0.1"):
    """Sends raw request bytes (str or bytes) and reads one response. Records in .closed
    whether the server then closes the connection within close_timeout (0 = don't wait)."""
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            if chunks:
                for c in chunks:
                    s.sendall(c)
            else:
                s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a server may answer and close before reading everything (431)
        t0 = time.monotonic()
        resp, rest = read_http_response(s, time.monotonic() + timeout)
        resp.elapsed = time.monotonic() - t0
        if close_timeout:
            closed, more = wait_closed(s, close_timeout)
            resp.closed = closed
            resp.trailing = rest + more
        else:
            resp.trailing = rest
        return resp


def upgrade_request(port, path="/echo", method="GET", version="HTTP/1.1", key=None,
                    omit=(), replace=None, extra=()):
    """A WebSocket upgrade request as text, with headers omitted, replaced or added."""
    hdrs = [("Host", f"127.0.0.1:{port}"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key if key is not None else new_key()),
            ("Sec-WebSocket-Version", "13")]
    replace = {k.lower(): v for k, v in (replace or {}).items()}
    out = []
    for k, v in hdrs:
        if k.lower() in {o.lower() for o in omit}:
            continue
        out.append((k, replace.get(k.lower(), v)))
    out += list(extra)
    lines = [f"{method} {path} {version}"] + [f"{k}: {v}" for k, v in out]
    return "\r\n".join(lines) + "\r\n\r\n"


# ---------------------------------------------------------------------------------------------
# the gateway process


def render_config(ports, gateway=None, heartbeat=None, routes=None):
    """An ini text. ports: listen ports on 127.0.0.1; gateway/heartbeat: key -> value;
    routes: path -> {key: value} (default: /echo as echo)."""
    lines = ["[gateway]"]
    for p in ports:
        lines.append(f"listen = 127.0.0.1:{p}")
    for k, v in (gateway or {}).items():
        lines.append(f"{k} = {v}")
    lines.append("")
    if heartbeat:
        lines.append("[heartbeat]")
        for k, v in heartbeat.items():
            lines.append(f"{k} = {v}")
        lines.append("")
    for path, keys in (routes if routes is not None else {"/echo": {"type": "echo"}}).items():
        lines.append(f"[route {path}]")
        for k, v in keys.items():
            lines.append(f"{k} = {v}")
        lines.append("")
    return "\n".join(lines)


# Short timers so the suite stays quick; tests that need others pass their own.
BASE_GATEWAY = {
    "max_message_size": "1048576",
    "handshake_timeout": "5s",
    "shutdown_timeout": "5s",
    "close_timeout": "2s",
    "drain_window": "0",
    "log_level": "info",
    # Two event loops whatever the machine: the suite runs the multi-worker paths everywhere.
    # Tests of one loop's order or of per-instance Redis subscriptions ask for 1.
    "workers": "2",
}
BASE_HEARTBEAT = {"ping_interval": "0", "pong_timeout": "10s", "idle_timeout": "0"}


class Gateway:
    """The wsgate binary on a free loopback port. Use as a context manager, or start()/stop().

    stop() sends SIGTERM, waits, and asserts exit status 0 and a stderr free of sanitizer
    reports."""

    def __init__(self, workdir=None, gateway=None, heartbeat=None, routes=None, nports=1,
                 config_text=None, name="wsgate.ini", extra_args=()):
        self.workdir = workdir or tempfile.mkdtemp(prefix="wsgate-it-")
        os.makedirs(self.workdir, exist_ok=True)
        self.ports = [free_port() for _ in range(nports)]
        gw = dict(BASE_GATEWAY)
        gw.update(gateway or {})
        hb = dict(BASE_HEARTBEAT)
        hb.update(heartbeat or {})
        self.settings = {"gateway": gw, "heartbeat": hb}
        self.config_text = config_text or render_config(self.ports, gw, hb, routes)
        self.config_path = os.path.join(self.workdir, name)
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(self.config_text)
        self.stderr_path = self.config_path + ".stderr"
        self.stdout_path = self.config_path + ".stdout"
        self.extra_args = list(extra_args)
        self.proc = None
        self.returncode = None
        self.stopped_by = None

    @property
    def port(self):
        return self.ports[0]

    def url(self, path="/echo", port=None):
        return f"ws://127.0.0.1:{port or self.port}{path}"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            self.kill_quietly()

    def start(self, ready_timeout=10.0):
        argv = [wsgate_bin(), "-c", self.config_path] + self.extra_args
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, cwd=self.workdir,
                                     preexec_fn=_set_pdeathsig)
        deadline = time.monotonic() + ready_timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise HarnessError(f"wsgate exited with {self.proc.returncode} before it was "
                                   f"ready; stderr:\n{self.stderr()}\nconfig:\n{self.config_text}")
            try:
                ok = all(self.healthz(p) == 200 for p in self.ports)
                if ok:
                    return self
            except (OSError, HarnessError, TimeoutError) as e:
                last = e
            time.sleep(0.05)
        self.kill_quietly()
        raise HarnessError(f"wsgate did not answer GET /healthz 200 within {ready_timeout}s "
                           f"(last error {last!r}); stderr:\n{self.stderr()}")

    def healthz(self, port=None):
        resp = http_request(port or self.port,
                            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                            timeout=2.0, close_timeout=0)
        return resp.status

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)
        self.stopped_by = sig

    def wait(self, timeout):
        """Waits for exit; returns the exit status, or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._close_files()
        return self.returncode

    def _close_files(self):
        for f in (getattr(self, "_err", None), getattr(self, "_out", None)):
            if f and not f.closed:
                f.close()

    def check_clean_exit(self):
        err = self.stderr()
        found = sanitizer_findings(err)
        assert not found, f"sanitizer report in wsgate stderr ({found}):\n{err}"
        assert self.returncode == 0, f"wsgate exited with {self.returncode}; stderr:\n{err}"

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signals the gateway, waits, asserts a clean exit (status 0, no sanitizer report)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.send_signal(sig)
            if timeout is None:
                timeout = 15.0
            if self.wait(timeout) is None:
                self.kill_quietly()
                raise HarnessError(f"wsgate did not exit within {timeout}s of signal {sig}; "
                                   f"stderr:\n{self.stderr()}")
        else:
            self.returncode = self.proc.returncode
            self._close_files()
        self.check_clean_exit()

    def kill_quietly(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_files()


# Routes every protocol module uses: a plain echo and an echo with subprotocols.
ECHO_ROUTES = {
    "/echo": {"type": "echo"},
    "/chat": {"type": "echo", "subprotocols": "chat, superchat"},
}


def start_gateway(tmp_path_factory, name="gw", **kw):
    """A started Gateway in a fresh pytest temp dir (default routes: ECHO_ROUTES)."""
    kw.setdefault("routes", ECHO_ROUTES)
    g = Gateway(workdir=str(tmp_path_factory.mktemp(name)), **kw)
    g.start()
    return g


# ---------------------------------------------------------------------------------------------
# Node clients (tests/node)


def node_modules_dir():
    """WSGATE_NODE_MODULES if set, else <srcdir>/tests/node/node_modules."""
    return os.environ.get("WSGATE_NODE_MODULES") or os.path.join(srcdir(), "tests", "node",
                                                                 "node_modules")


def node_script(name):
    return os.path.join(srcdir(), "tests", "node", name)


def node_env():
    env = dict(os.environ)
    env["NODE_PATH"] = node_modules_dir()
    return env


def node_modules_missing(*packages):
    """The packages (of those named) not installed in node_modules_dir()."""
    return [p for p in packages
            if not os.path.isfile(os.path.join(node_modules_dir(), p, "package.json"))]


def run_wsgate(args, cwd=None, timeout=10.0):
    """Runs the binary to completion (-t, --version, ...). Returns CompletedProcess (text)."""
    return subprocess.run([wsgate_bin()] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, text=True, errors="replace")


# ---------------------------------------------------------------------------------------------
# pub/sub: extra config sections, a real redis-server, a raw RESP client, small waits


def add_config_sections(g, sections):
    """Appends sections (header -> {key: value}, e.g. {"redis": {"url": ...}}) to a Gateway's
    config before it is started. Headers are written as given: "redis" -> [redis]."""
    lines = [g.config_text.rstrip("\n"), ""]
    for header, keys in sections.items():
        lines.append(f"[{header}]")
        for k, v in keys.items():
            lines.append(f"{k} = {v}")
        lines.append("")
    g.config_text = "\n".join(lines)
    with open(g.config_path, "w", encoding="utf-8") as f:
        f.write(g.config_text)
    return g


def http_status(port, path, timeout=2.0):
    """Status of GET path (e.g. /readyz) on the gateway's WebSocket port."""
    return http_request(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                        timeout=timeout, close_timeout=0).status


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Polls pred() until it is truthy; returns its value or raises HarnessError."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise HarnessError(f"{what} not reached within {timeout}s (last {last!r})")
        time.sleep(interval)


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise HarnessError(f"no VmRSS for pid {pid}")


class RssPeak:
    """Samples a process's VmRSS every 10 ms in a thread while in a `with` block: .base and
    .peak in KiB, .grown_mib."""

    def __init__(self, pid):
        self.pid, self.base = pid, vm_rss_kib(pid)
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, vm_rss_kib(self.pid))
            except (OSError, HarnessError):
                return
            time.sleep(0.01)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    @property
    def grown_mib(self):
        return (self.peak - self.base) / 1024


class RespError(HarnessError):
    pass


def resp_encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode("utf-8")
        elif isinstance(a, int):
            a = str(a).encode("ascii")
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespConn:
    """A RESP2 connection to redis-server (commands, or a SUBSCRIBE-mode reader); over TLS
    when given an ssl.SSLContext (and the name the server's certificate must carry)."""

    def __init__(self, port, timeout=DEFAULT_TIMEOUT, ssl_context=None, server_hostname=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if ssl_context is not None:
            try:
                self.sock = ssl_context.wrap_socket(self.sock, server_hostname=server_hostname)
            except BaseException:
                self.sock.close()
                raise
        self.buf = bytearray()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        i = self.buf.index(b"\r\n")
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for redis")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 16)
        except socket.timeout:
            raise TimeoutError("timed out waiting for redis") from None
        if not data:
            raise HarnessError("redis closed the connection")
        self.buf += data

    def read_reply(self, timeout=DEFAULT_TIMEOUT):
        return self._reply(time.monotonic() + timeout)

    def _reply(self, deadline):
        line = self._line(deadline)
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode("utf-8", "replace")
        if t == b"-":
            return RespError(rest.decode("utf-8", "replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill(deadline)
            data = bytes(self.buf[:n])
            del self.buf[:n + 2]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply(deadline) for _ in range(n)]
        raise HarnessError(f"bad RESP line {line!r}")

    def command(self, *args, timeout=DEFAULT_TIMEOUT):
        self.sock.sendall(resp_encode(*args))
        r = self.read_reply(timeout)
        if isinstance(r, RespError):
            raise r
        return r

    def subscribe(self, *channels):
        self.sock.sendall(resp_encode("SUBSCRIBE", *channels))
        for _ in channels:
            r = self.read_reply()
            if not (isinstance(r, list) and r[0] == b"subscribe"):
                raise HarnessError(f"unexpected reply to SUBSCRIBE: {r!r}")

    def next_message(self, timeout=DEFAULT_TIMEOUT):
        """(channel, data) of the next pub/sub message on a subscribed connection."""
        deadline = time.monotonic() + timeout
        while True:
            r = self._reply(deadline)
            if isinstance(r, list) and r and r[0] == b"message":
                return r[1].decode("utf-8", "replace"), r[2]


class RedisServer:
    """redis-server on a free loopback port, no persistence; kill()/start() to simulate an
    outage on the same port, pause()/resume() (SIGSTOP/SIGCONT) to simulate a hung server."""

    def __init__(self, workdir, port=None):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = port or free_port()
        self.proc = None
        self.logfile = os.path.join(workdir, f"redis-{self.port}.log")

    def start(self, timeout=10.0):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.workdir,
                "--logfile", self.logfile, "--daemonize", "no"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=_set_pdeathsig)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"redis-server exited with {self.proc.returncode}: "
                                   f"{self.log()}")
            try:
                with RespConn(self.port, timeout=1.0) as r:
                    if r.command("PING") == "PONG":
                        return self
            except (OSError, HarnessError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise HarnessError(f"redis-server on {self.port} did not answer PING")
            time.sleep(0.05)

    def log(self):
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    stop = kill

    def command(self, *args, timeout=DEFAULT_TIMEOUT):
        with RespConn(self.port, timeout=timeout) as r:
            return r.command(*args, timeout=timeout)

    def cli(self, *args, stdin=None):
        """redis-cli -p PORT args... (stdin bytes for -x); returns stdout bytes."""
        p = subprocess.run(["redis-cli", "-p", str(self.port)] + [str(a) for a in args],
                           input=stdin, capture_output=True, timeout=10)
        if p.returncode != 0:
            raise HarnessError(f"redis-cli {args!r} failed: {p.stderr!r}")
        return p.stdout

    def numsub(self, channel):
        r = self.command("PUBSUB", "NUMSUB", channel)
        return int(r[1])

    def channels(self, pattern="*"):
        return sorted(c.decode("utf-8", "replace")
                      for c in self.command("PUBSUB", "CHANNELS", pattern))

    def wait_numsub(self, channel, n, timeout=5.0):
        return wait_until(lambda: self.numsub(channel) == n, timeout,
                          what=f"PUBSUB NUMSUB {channel} == {n} (now {self.numsub(channel)})")


# ---------------------------------------------------------------------------------------------
# proxy backends: the Node "ws" echo server, python3-websockets in a thread, a TCP echo, a raw
# scripted server, and a throwaway CA made with the openssl command at test time

import json  # noqa: E402  (kept with the helpers that use them, appended after the rest)
import threading  # noqa: E402


def proxy_route(*backends, **keys):
    """A [route] dict of type proxy over the given backend URLs; other keys as given."""
    route = {"type": "proxy", "backend": ", ".join(backends)}
    route.update({k: str(v) for k, v in keys.items()})
    return route


class NodeWsBackend:
    """tests/node/backend_ws_echo.js on 127.0.0.1 (a free port unless given). .events holds
    the JSON lines it printed after starting ({"open": {...}}, {"close": code, "reason": r})."""

    def __init__(self, port=0, protocol="first", cert=None, key=None, quiet=False):
        self.port = port
        self.args = ["--protocol", protocol] + (["--cert", cert, "--key", key] if cert else [])
        self.args += ["--quiet"] if quiet else []
        self.proc = None
        self.events = []
        self._lock = threading.Lock()

    def start(self, timeout=10.0):
        argv = ["node", node_script("backend_ws_echo.js"), "--port", str(self.port)] + self.args
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=node_env(),
                                     preexec_fn=_set_pdeathsig)
        ready = threading.Event()

        def reader():
            for line in self.proc.stdout:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if "listening" in ev:
                    self.port = ev["listening"]
                    ready.set()
                    continue
                with self._lock:
                    self.events.append(ev)

        threading.Thread(target=reader, daemon=True).start()
        if not ready.wait(timeout):
            self.kill()
            raise HarnessError("backend_ws_echo.js did not start listening")
        return self

    def url(self, path="/socket", scheme="ws", host="127.0.0.1"):
        return f"{scheme}://{host}:{self.port}{path}"

    def wait_event(self, key, timeout=DEFAULT_TIMEOUT):
        """The first event holding key (e.g. "close"), waiting for it."""
        def find():
            with self._lock:
                return next((e for e in self.events if key in e), None)
        return wait_until(find, timeout, what=f"backend event {key!r} (have {self.events!r})")

    def opens(self):
        with self._lock:
            return [e["open"] for e in self.events if "open" in e]

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class PyWsBackend:
    """A python3-websockets server in its own thread and event loop. handler(websocket) is an
    async function (default: echo every message with its type)."""

    def __init__(self, handler=None, port=0, ssl_context=None, subprotocols=None):
        self.handler = handler or self.echo
        self.port = port
        self.ssl_context = ssl_context
        self.subprotocols = subprotocols
        self.loop = None
        self.server = None
        self.thread = None
        self.requests = []      # (path, {lower-case name: value}) of each upgrade seen

    @staticmethod
    async def echo(ws):
        async for msg in ws:
            await ws.send(msg)

    def start(self, timeout=10.0):
        import asyncio
        import websockets

        started = threading.Event()

        async def handler(ws, path=None):
            self.requests.append((ws.path, {k.lower(): v for k, v in
                                            ws.request_headers.raw_items()}))
            try:
                await self.handler(ws)
            except websockets.ConnectionClosed:
                pass

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(websockets.serve(
                handler, "127.0.0.1", self.port, ssl=self.ssl_context, max_size=None,
                subprotocols=self.subprotocols, compression=None))
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()
            self.server.close()
            self.loop.run_until_complete(self.server.wait_closed())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not started.wait(timeout):
            raise HarnessError("python websockets backend did not start")
        return self

    def url(self, path="/", scheme="ws", host="127.0.0.1"):
        return f"{scheme}://{host}:{self.port}{path}"

    def stop(self):
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RawBackend:
    """A TCP listener on 127.0.0.1 that runs serve(sock) in a thread per connection: a TCP echo
    by default, or any scripted behaviour (see raw_upgrade)."""

    def __init__(self, serve=None, port=0):
        self.serve = serve or self.echo
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        self.errors = []
        self._stop = False

    @staticmethod
    def echo(sock):
        while True:
            data = sock.recv(65536)
            if not data:
                return
            sock.sendall(data)

    def start(self):
        self.lsock.listen(64)

        def accept_loop():
            while not self._stop:
                try:
                    s, _ = self.lsock.accept()
                except OSError:
                    return
                self.conns.append(s)
                threading.Thread(target=self._run, args=(s,), daemon=True).start()

        threading.Thread(target=accept_loop, daemon=True).start()
        return self

    def _run(self, s):
        try:
            self.serve(s)
        except Exception as e:  # reported by the tests that care
            self.errors.append(e)
        finally:
            try:
                s.close()
            except OSError:
                pass

    def url(self, path="/", scheme="ws"):
        return f"{scheme}://127.0.0.1:{self.port}{path}" if scheme != "tcp" else \
            f"tcp://127.0.0.1:{self.port}"

    def stop(self):
        self._stop = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def raw_upgrade(sock, status_line=None, extra=b"", accept=None, timeout=DEFAULT_TIMEOUT):
    """Server side of a handshake on a raw socket: reads the request head and answers 101 (or
    status_line with no upgrade fields). Returns (request head text, bytes read after it)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise HarnessError("client closed during the upgrade")
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    head = buf[:end].decode("latin-1")
    key = re.search(r"(?im)^Sec-WebSocket-Key:\s*(\S+)", head)
    if status_line is not None:
        sock.sendall(status_line.encode("latin-1") + b"\r\nContent-Length: 0\r\n" + extra +
                     b"\r\n")
        return head, buf[end:]
    acc = accept if accept is not None else ws_accept(key.group(1) if key else "")
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc.encode("ascii") +
                 b"\r\n" + extra + b"\r\n")
    return head, buf[end:]


def make_test_ca(workdir, san="DNS:localhost,IP:127.0.0.1"):
    """A throwaway CA and a server certificate for san (localhost and 127.0.0.1), made with the
    openssl command (never committed). Returns {"ca", "cert", "key"} paths."""
    os.makedirs(workdir, exist_ok=True)
    p = {n: os.path.join(workdir, f) for n, f in
         (("ca", "ca.pem"), ("ca_key", "ca.key"), ("cert", "server.pem"),
          ("key", "server.key"), ("csr", "server.csr"), ("ext", "server.ext"))}
    with open(p["ext"], "w", encoding="ascii") as f:
        f.write(f"subjectAltName={san}\n"
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in (["openssl", "req", "-x509"] + ec + ["-keyout", p["ca_key"], "-out", p["ca"],
                  "-days", "2", "-subj", "/CN=wsgate test CA"],
                 ["openssl", "req"] + ec + ["-keyout", p["key"], "-out", p["csr"],
                  "-subj", "/CN=localhost"],
                 ["openssl", "x509", "-req", "-in", p["csr"], "-CA", p["ca"], "-CAkey",
                  p["ca_key"], "-CAcreateserial", "-out", p["cert"], "-days", "2",
                  "-extfile", p["ext"]]):
        r = subprocess.run(argv, capture_output=True, timeout=30, cwd=workdir)
        if r.returncode != 0:
            raise HarnessError(f"{' '.join(argv)} failed: {r.stderr!r}")
    return p
