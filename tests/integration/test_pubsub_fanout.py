"""test_pubsub_fanout.py - the end-of-turn writer (src/conn_flush.c) in a broadcast: every
subscriber's output of a turn is handed to the kernel together (io_uring where the build and the
kernel have it, writev otherwise); a subscriber whose socket is full takes part of a send or
none of it, and the rest waits for its write event. Neither may cost another subscriber its
messages or their order, nor that subscriber its own."""

import socket
import struct

from wsharness import OP_BINARY, WSClient, build_frame

from test_pubsub_local import recv_messages

GATEWAY_SETTINGS = {"routes": {
    "/fan": {"type": "pubsub", "subscribe": "fan", "max_queue": "64MiB"},
    "/fan-pub": {"type": "pubsub", "subscribe": "fan-sink", "publish": "fan"},
}}

N_READERS = 20
N_MESSAGES = 120
SIZE = 16 << 10  # 120 x 16 KiB: far more than a 4 KiB receive window and the send buffer hold


def message(i):
    """Not UTF-8 (so binary on the wire), numbered."""
    return b"\xff" + struct.pack("!I", i) + bytes([i & 0xFF]) * (SIZE - 5)


def small(i):
    return b"\xff" + struct.pack("!I", i)


def test_stalled_subscriber_delays_nobody_and_loses_nothing(gw):
    stalled = WSClient(gw.port, "/fan", handshake=False)
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.handshake()
    readers = [WSClient(gw.port, "/fan") for _ in range(N_READERS)]
    pub = WSClient(gw.port, "/fan-pub")
    try:
        # The publisher's own subscription confirms the route is live; the subscribers joined
        # before it, in the same worker, so they are subscribed too.
        for i in range(N_MESSAGES):
            pub.send_frame(OP_BINARY, message(i))
        want = [(OP_BINARY, message(i)) for i in range(N_MESSAGES)]
        # Everyone else gets every message in order while the stalled one has read nothing.
        for k, c in enumerate(readers):
            assert recv_messages(c, N_MESSAGES, timeout=30) == want, f"reader {k}"
        # Its socket held only part: the rest was sent piecewise (partial sends, EAGAIN, the
        # write event) as it now reads (with a normal window: 4 KiB would take minutes), and
        # arrives whole and in order.
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        assert recv_messages(stalled, N_MESSAGES, timeout=60) == want
    finally:
        for c in readers + [stalled, pub]:
            c.close()


def test_many_frames_per_turn_keep_order(gw):
    """A burst of small messages: several frames per subscriber per turn, one send each."""
    readers = [WSClient(gw.port, "/fan") for _ in range(50)]
    pub = WSClient(gw.port, "/fan-pub")
    try:
        n = 500
        burst = b"".join(build_frame(OP_BINARY, small(i)) for i in range(n))
        pub.sock.sendall(burst)  # one write: the gateway reads many messages in one turn
        want = [(OP_BINARY, small(i)) for i in range(n)]
        for k, c in enumerate(readers):
            assert recv_messages(c, n, timeout=30) == want, f"reader {k}"
    finally:
        for c in readers + [pub]:
            c.close()
