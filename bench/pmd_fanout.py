#!/usr/bin/python3
"""pmd_fanout.py - permessage-deflate on a pub/sub fan-out (issue 19): SUBS subscribers of one
wsgate (workers = 1), one publisher sending MSGS JSON messages of SIZE bytes; reports the wire
bytes each delivery took and the gateway's CPU (utime + stime from /proc) per delivery, for
subscribers that negotiated compression and for ones that did not. With `idle`, reports the
gateway's RSS per idle connection with and without compression negotiated.

usage: pmd_fanout.py fanout PORT PID MODE SUBS MSGS SIZE      (MODE: plain | deflate | takeover)
       pmd_fanout.py idle PORT PID MODE N                     (MODE: plain | deflate)
The route /ps is a pubsub route without compression, /zps the same channel with it.
Prints one "RESULT key=value ..." line."""

import base64
import json
import os
import selectors
import socket
import struct
import sys
import time
import zlib

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) * 1000 / TICK  # utime + stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def connect(port, path, offer):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if offer:
        req += f"Sec-WebSocket-Extensions: {offer}\r\n"
    s.sendall((req + "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise SystemExit(f"handshake refused on {path}")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"no 101: {head[:80]!r}")
    negotiated = b"permessage-deflate" in head
    if bool(offer) != negotiated:
        raise SystemExit(f"offer {offer!r} but answer {head!r}")
    s.setblocking(False)
    return s, rest


def frame(op, payload):
    mask = os.urandom(4)
    n = len(payload)
    h = struct.pack("!BB", 0x80 | op, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x80 | op, 0xFE, n)
    return h + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def json_message(i, size):
    items = []
    k = 0
    while sum(len(x) + 1 for x in items) < size:
        items.append(json.dumps({"seq": i, "k": k, "symbol": "ABC%d" % ((i + k) % 50),
                                 "bid": round(100 + ((i * 7 + k) % 300) / 7, 2),
                                 "ask": round(100.5 + ((i * 3 + k) % 300) / 7, 2),
                                 "ts": 1764650000000 + i * 10 + k}))
        k += 1
    return (",".join(items)).encode()[:size]


class Sub:
    __slots__ = ("sock", "buf", "frames", "bytes", "compressed")

    def __init__(self, sock, rest):
        self.sock, self.buf, self.frames, self.bytes, self.compressed = sock, rest, 0, len(rest), 0

    def parse(self):
        b = self.buf
        pos = 0
        while len(b) - pos >= 2:
            n = b[pos + 1] & 0x7F
            off = 2
            if n == 126:
                if len(b) - pos < 4:
                    break
                n = (b[pos + 2] << 8) | b[pos + 3]
                off = 4
            elif n == 127:
                if len(b) - pos < 10:
                    break
                n = struct.unpack("!Q", b[pos + 2:pos + 10])[0]
                off = 10
            if len(b) - pos < off + n:
                break
            if b[pos] & 0x40:
                self.compressed += 1
            self.frames += 1
            pos += off + n
        self.buf = b[pos:]


def fanout(port, pid, mode, subs, msgs, size):
    offer = {"plain": None, "deflate": "permessage-deflate; client_max_window_bits",
             "takeover": "permessage-deflate"}[mode]
    path = "/ps" if offer is None else "/zps"
    sel = selectors.DefaultSelector()
    all_subs = []
    for _ in range(subs):
        s, rest = connect(port, path, offer)
        sub = Sub(s, rest)
        all_subs.append(sub)
        sel.register(s, selectors.EVENT_READ, sub)
    pub, _ = connect(port, "/pub", None)  # a publish-only route: it gets nothing back
    time.sleep(0.5)
    bodies = [json_message(i, size) for i in range(msgs)]
    want = msgs
    c0 = cpu_ms(pid)
    t0 = time.monotonic()
    sent = 0
    done = 0
    while done < subs:
        if sent < msgs:
            # Paced so no subscriber reaches max_queue: a burst of 20, then read.
            burst = b"".join(frame(1, bodies[i]) for i in range(sent, min(msgs, sent + 20)))
            pub.setblocking(True)
            pub.sendall(burst)
            pub.setblocking(False)
            sent = min(msgs, sent + 20)
        for key, _ in sel.select(timeout=0.01 if sent < msgs else 1.0):
            sub = key.data
            try:
                d = sub.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not d:
                raise SystemExit("a subscriber was closed")
            sub.bytes += len(d)
            sub.buf += d
            sub.parse()
            if sub.frames >= want:
                sel.unregister(sub.sock)
                done += 1
        if time.monotonic() - t0 > 300:
            raise SystemExit(f"only {done} of {subs} subscribers got everything")
    c1 = cpu_ms(pid)
    deliveries = subs * msgs
    wire = sum(s.bytes for s in all_subs)
    compressed = sum(s.compressed for s in all_subs)
    for s in all_subs:
        s.sock.close()
    pub.close()
    print(f"RESULT mode={mode} subs={subs} msgs={msgs} size={size} deliveries={deliveries} "
          f"compressed_frames={compressed} wire_bytes={wire} "
          f"bytes_per_delivery={wire / deliveries:.1f} cpu_ms={c1 - c0:.0f} "
          f"cpu_us_per_delivery={(c1 - c0) * 1000 / deliveries:.3f}")


def idle(port, pid, mode, n):
    """plain: no compression; deflate: negotiated as Chrome offers it (the client keeps its
    context), never used; kept: the same on an echo route, and each client sent one compressed
    message, so wsgate holds the client's inflate context (what compression_memory bounds)."""
    offer = None if mode == "plain" else "permessage-deflate; client_max_window_bits"
    path = {"plain": "/ps", "deflate": "/zps", "kept": "/zecho"}[mode]
    time.sleep(0.3)
    r0 = rss_kib(pid)
    socks = [connect(port, path, offer)[0] for _ in range(n)]
    if mode == "kept":
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        z = (c.compress(b'{"hello": "world"}') + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        for s in socks:
            s.setblocking(True)
            s.sendall(bytes([0xC1, 0x80 | len(z)]) + b"\0\0\0\0" + z)
            s.recv(4096)
    time.sleep(1.0)
    r1 = rss_kib(pid)
    for s in socks:
        s.close()
    print(f"RESULT mode={mode} conns={n} rss_before_kib={r0} rss_after_kib={r1} "
          f"kib_per_conn={(r1 - r0) / n:.2f}")


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "fanout" and len(a) == 7:
        fanout(int(a[1]), int(a[2]), a[3], int(a[4]), int(a[5]), int(a[6]))
    elif a and a[0] == "idle" and len(a) == 5:
        idle(int(a[1]), int(a[2]), a[3], int(a[4]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
