"""test_history_sentinel.py - channel history through a Sentinel failover (issues 11 and 14): one
master, two replicas, three sentinels (the harness of test_redis_sentinel.py), two gateway
instances with three clients each on a json route with history, an application publishing
numbered messages with FCALL wsgate_publish to whichever node Sentinel names. Mid-run the
replicas are stopped while the master takes enough writes (plain SETs) to fill the
replication stream, so the next published messages reach the gateways (pub/sub) but not the
replicas; then the master is SIGKILLed and the replicas continued: a replica without those
messages is promoted.

What the old master had replicated is not lost; what it had not is either delivered already or
named in a gap notice; new messages on the new master must never reuse the offsets already
delivered (they would be taken for duplicates and dropped silently). Every client must end
with every acknowledged message once, in order, or a gap notice covering its position."""

import json
import signal
import threading
import time

from test_redis_sentinel import (MASTER, REDIS_KEYS, cluster, role,  # noqa: F401 - fixture
                                 sentinel_keys)
from wsharness import (Gateway, HarnessError, RespConn, ServerClosed, WSClient,
                       add_config_sections, http_status, wait_until)

ROUTES = {"/h": {"type": "pubsub", "subscribe": "h", "envelope": "json",
                 "history_size": "100000"}}


def start_gateway(tmp_path, name, keys):
    g = Gateway(workdir=str(tmp_path / name), routes=ROUTES)
    add_config_sections(g, {"redis": keys})
    g.start()
    wait_until(lambda: http_status(g.port, "/readyz") == 200, 15,
               what=f"{name} /readyz 200 through Sentinel")
    return g


class Reader(threading.Thread):
    """A client: records ("m", offset, data) and ("g", from, to, reason) in arrival order and
    reconnects with since= to either instance when it is closed."""

    def __init__(self, k, gws):
        super().__init__(daemon=True)
        self.k, self.gws = k, gws
        self.entries, self.pos, self.reconnects = [], None, 0
        self.stop, self.error = threading.Event(), None
        self.c = self.connect()

    def connect(self):
        for attempt in range(100):
            g = self.gws[(self.k + self.reconnects + attempt) % len(self.gws)]
            try:
                return WSClient(g.port, "/h" + (f"?since={self.pos}" if self.pos else ""))
            except (OSError, HarnessError):
                time.sleep(0.1)
        raise HarnessError(f"client {self.k}: no instance accepts")

    def run(self):
        try:
            while not self.stop.is_set():
                try:
                    _, payload = self.c.recv_message(0.2)
                except TimeoutError:
                    continue
                except (ServerClosed, HarnessError, OSError):
                    self.c.close()
                    self.reconnects += 1
                    self.c = self.connect()
                    continue
                m = json.loads(payload)
                if m["type"] == "message":
                    self.entries.append(("m", int(m["pos"].rsplit(":", 1)[1]), m["data"]))
                    self.pos = m["pos"]
                elif m["type"] == "gap":
                    self.entries.append(("g", m["from"], m["to"], m["reason"], m["epoch"]))
                    if m["to"] >= m["from"]:
                        self.pos = f"{m['epoch']}:{m['to']}"
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            self.c.close()


class Publisher:
    """FCALL wsgate_publish to the master Sentinel names; acked: payload -> offset."""

    def __init__(self, sentinels):
        self.sentinels, self.conn, self.acked, self.unacked = sentinels, None, {}, set()
        self.epoch = None

    def master_port(self):
        for s in self.sentinels:
            try:
                return int(s.command("SENTINEL", "get-master-addr-by-name", MASTER)[1])
            except (OSError, HarnessError, TimeoutError, TypeError, IndexError):
                continue
        return None

    def publish(self, data, deadline=20.0):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                if self.conn is None:
                    port = self.master_port()
                    if port is None:
                        raise OSError("no master known")
                    self.conn = RespConn(port, timeout=2.0)
                    if self.conn.command("ROLE")[0] != b"master":
                        raise OSError("not a master yet")
                pos = self.conn.command("FCALL", "wsgate_publish", "1", "h", data, "100000",
                                        timeout=2.0)
                pos = pos.decode() if isinstance(pos, bytes) else pos
                epoch, off = pos.rsplit(":", 1)
                self.epoch = epoch
                self.acked[data] = int(off)
                self.unacked.discard(data)
                return int(off)
            except (OSError, HarnessError, TimeoutError) as e:
                # Sent but unanswered: it may or may not exist (the checks allow both).
                self.unacked.add(data)
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if "READONLY" in str(e) or "not a master" in str(e):
                    pass
                time.sleep(0.05)
        raise HarnessError(f"could not publish {data} within {deadline} s")


def check(rd, acked, unacked, epoch):
    """Problems in one reader's record (see the module's docstring)."""
    problems, seen, last = [], set(), 0
    gaps = []
    for e in rd.entries:
        if e[0] == "m":
            off, data = e[1], e[2]
            if off <= last:
                problems.append(f"client {rd.k}: offset {off} after {last} ({data})")
            last = max(last, off)
            if data in seen:
                problems.append(f"client {rd.k}: {data} twice")
            seen.add(data)
            if data in acked and acked[data] != off:
                problems.append(f"client {rd.k}: {data} at offset {off}, published at "
                                f"{acked[data]}")
            elif data not in acked and data not in unacked:
                problems.append(f"client {rd.k}: {data} was never published")
        else:
            if e[2] >= e[1]:
                if e[1] <= last:
                    problems.append(f"client {rd.k}: gap {e[1]}..{e[2]} after offset {last}")
                last = max(last, e[2])
                gaps.append((e[1], e[2]))
            if e[3] != "dropped" or e[4] != epoch:
                problems.append(f"client {rd.k}: unexpected notice {e}")
    for data, off in acked.items():
        if data not in seen and not any(a <= off <= b for a, b in gaps):
            problems.append(f"client {rd.k}: {data} (offset {off}) neither delivered nor in "
                            f"a gap notice")
    return problems


def test_failover_with_unreplicated_messages_loses_nothing_silently(cluster, tmp_path):  # noqa: F811
    keys = sentinel_keys(cluster["sentinels"])
    gws = [start_gateway(tmp_path, f"gw{i}", keys) for i in range(2)]
    readers = []
    master = cluster["master"]
    try:
        readers = [Reader(k, gws) for k in range(6)]
        for rd in readers:
            rd.start()
        pub = Publisher(cluster["sentinels"])
        for i in range(50):
            pub.publish(f"a{i}")
            time.sleep(0.01)
        # Every replica has the 50 (WAIT), then stops reading: what follows stays with the
        # master, first 80 MiB of plain writes (more than the sockets between them hold),
        # then five published messages that the gateways get and the replicas never will.
        assert master.command("WAIT", "2", "5000") == 2
        for r in cluster["replicas"]:
            r.proc.send_signal(signal.SIGSTOP)
        try:
            with RespConn(master.port, timeout=30) as w:
                blob = b"x" * (1 << 20)
                for i in range(80):
                    w.command("SET", f"filler:{i}", blob, timeout=30)
            lost = [pub.publish(f"b{i}") for i in range(5)]
            info = master.command("INFO", "replication").decode()
            lag = [line for line in info.split("\r\n") if line.startswith("slave")]
            master.proc.kill()
            master.proc.wait()
        finally:
            for r in cluster["replicas"]:
                r.proc.send_signal(signal.SIGCONT)
        t0 = time.monotonic()
        wait_until(lambda: any(role(p) == "master" for p in cluster["replicas"]), 30,
                   interval=0.1, what="a replica promoted")
        new = next(p for p in cluster["replicas"] if role(p) == "master")
        kept = new.command("HGET", "wsgate:{h}:m", "seq")
        # The promoted replica must lack the five (or the test proves nothing).
        assert int(kept) < lost[0], (kept, lost, lag)
        for i in range(50):
            pub.publish(f"c{i}")
            time.sleep(0.01)
        print(f"\nfailover: promoted after {time.monotonic() - t0:.2f} s; old master "
              f"published up to {lost[-1]}, the new one had {int(kept)}; next offset "
              f"{pub.acked['c0']}")
        for g in gws:
            wait_until(lambda: http_status(g.port, "/readyz") == 200, 20,
                       what="/readyz 200 after the failover")
        want_last = pub.acked["c49"]

        def all_done():
            for rd in readers:
                if not rd.entries or rd.entries[-1][0] != "m" or rd.entries[-1][1] < want_last:
                    return False
            return True
        wait_until(all_done, 30, what="every client has the last message")
        for rd in readers:
            rd.stop.set()
        for rd in readers:
            rd.join(5)
        problems = []
        for rd in readers:
            if rd.error is not None:
                problems.append(f"client {rd.k}: {rd.error!r}")
            problems += check(rd, pub.acked, pub.unacked, pub.epoch)
        assert not problems, "\n".join(problems[:20])
        # The old master's unreplicated five were delivered live before it died, so every
        # client has them; whatever lay between them and the new offsets is one gap notice.
        for rd in readers:
            got = {e[2] for e in rd.entries if e[0] == "m"}
            assert {f"b{i}" for i in range(5)} <= got, rd.k
    finally:
        for rd in readers:
            rd.stop.set()
        for g in gws:
            try:
                g.stop()
            except (AssertionError, HarnessError):
                g.kill_quietly()
