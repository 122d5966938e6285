#!/usr/bin/env python3
"""
WebSocket (``--web``) against TCP (``--listen``): what one connection costs the server, and
fan-out to 100 receivers of each kind.

Starts ``twistd -n hbchat`` with one ``--listen`` and one ``--web`` on loopback (``--rate 0``,
``--ping`` as given), and measures the server process only (its ``/proc``: resident memory,
user + system CPU time), never the load clients, which run in this process with raw
protocols (a WebSocket client here is a hand-made RFC 6455 client: one upgrade, masked
text frames out, text frames in).

- **idle**: ``--idle`` connections of one kind register and then only answer the server's
  PINGs for ``--window`` seconds: the server's memory per connection (resident growth over
  the empty server) and its CPU per connection for the heartbeat (µs per connection per
  second).  One server per kind, so each starts from the same empty process.
- **fanout**: ``--receivers`` registered receivers of one kind and one TCP sender, which
  SAYs ``--messages`` lines (a window of 64 in flight, paced by its echoes); deliveries/s =
  receivers x messages / the time until every receiver has the last one, and the server's
  CPU µs per delivery.  Both kinds in the same server run, alternating, ``--rounds`` times.

Loopback only; every phase is bounded in count and time; the servers it started are
stopped by PID.  Prints JSON.

    python benchmarks/websocket.py                        # idle 5,000 each, fanout 100 x 2,000, ~2 min
    python benchmarks/websocket.py --idle 1000 --messages 500
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
KEY = base64.b64encode(b"hbchat bench key").decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class Server:
    def __init__(self, ping: float) -> None:
        self.tcp, self.web = free_port(), free_port()
        self.directory = tempfile.mkdtemp(prefix="hbchat-wsbench-")
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        argv = [twistd, "-n", "--pidfile=", "hbchat", "--listen", f"tcp:{self.tcp}:interface=127.0.0.1"]
        argv += ["--web", f"tcp:{self.web}:interface=127.0.0.1", "--rate", "0", "--max-clients", "100000"]
        argv += ["--max-handshakes", "5000", "--ping", str(ping), "--timeout", str(max(3 * ping, ping + 10))]
        self.log = open(os.path.join(self.directory, "twistd.log"), "wb")
        self.process = subprocess.Popen(argv, cwd=self.directory, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_listening(self, deadline: float = 30.0) -> None:
        start = time.monotonic()
        while time.monotonic() - start < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.web), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("twistd did not listen")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.log.close()


def mask(payload: bytes) -> bytes:
    """A masked client text frame (mask 0: RFC 6455 allows any key, and XOR with zeros is the payload)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    return head + b"\0\0\0\0" + payload


class Client(Protocol):
    """One load connection: registers, answers PINGs, counts MSGs; lines via ``onLine``."""

    def __init__(self, nick: str, websocket: bool, port: int) -> None:
        self.nick = nick
        self.websocket = websocket
        self.port = port
        self.buffer = b""
        self.upgraded = not websocket
        self.welcomed: Deferred[None] = Deferred()
        self.onLine: Callable[[bytes], None] | None = None

    def connectionMade(self) -> None:
        if self.websocket:
            self.transport.write(  # type: ignore[union-attr]
                (
                    f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Protocol: hbchat.v1\r\n\r\n"
                ).encode()
            )
        else:
            self.send(b"NICK " + self.nick.encode())

    def send(self, line: bytes) -> None:
        self.transport.write(mask(line) if self.websocket else line + b"\n")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                raise SystemExit(f"upgrade refused: {head[:80]!r}")
            self.upgraded, self.buffer = True, rest
            self.send(b"NICK " + self.nick.encode())
        for line in self.websocket_lines() if self.websocket else self.tcp_lines():
            self.line(line)

    def tcp_lines(self) -> list[bytes]:
        *lines, self.buffer = self.buffer.split(b"\n")
        return lines

    def websocket_lines(self) -> list[bytes]:
        lines, buffer, offset = [], self.buffer, 0
        while len(buffer) - offset >= 2:
            size = buffer[offset + 1] & 0x7F
            start = offset + 2
            if size == 126:
                if len(buffer) - offset < 4:
                    break
                size, start = struct.unpack_from("!H", buffer, offset + 2)[0], offset + 4
            elif size == 127:
                if len(buffer) - offset < 10:
                    break
                size, start = struct.unpack_from("!Q", buffer, offset + 2)[0], offset + 10
            if len(buffer) < start + size:
                break
            if buffer[offset] & 0x0F == 1:
                lines.append(buffer[start : start + size])
            offset = start + size
        self.buffer = buffer[offset:]
        return lines

    def line(self, line: bytes) -> None:
        if line.startswith(b"PING"):
            self.send(b"PONG" + line[4:])
        elif line.startswith(b"WELCOME ") and not self.welcomed.called:
            self.welcomed.callback(None)
        elif self.onLine is not None:
            self.onLine(line)


@inlineCallbacks
def connect_all(count: int, websocket: bool, port: int, prefix: str) -> Any:
    clients = []
    batch = 200
    for start in range(0, count, batch):
        group = [Client(f"{prefix}{index}", websocket, port) for index in range(start, min(count, start + batch))]
        yield gatherResults(
            [connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=30), c) for c in group]
        )
        yield gatherResults([c.welcomed for c in group]).addTimeout(60, reactor)
        clients.extend(group)
    return clients


@inlineCallbacks
def idle(kind: str, count: int, window: float, ping: float) -> Any:
    server = Server(ping)
    try:
        server.wait_listening()
        yield deferLater(reactor, 1.0, lambda: None)
        pid = server.process.pid
        rss0 = rss_bytes(pid)
        websocket = kind == "websocket"
        clients = yield connect_all(count, websocket, server.web if websocket else server.tcp, kind[0])
        yield deferLater(reactor, 2 * ping, lambda: None)  # settle: every heartbeat running
        rss1, cpu1, t1 = rss_bytes(pid), cpu_seconds(pid), time.monotonic()
        yield deferLater(reactor, window, lambda: None)
        cpu2, t2 = cpu_seconds(pid), time.monotonic()
        for client in clients:
            client.transport.abortConnection()
        return {
            "kind": kind,
            "connections": count,
            "rss_per_connection_bytes": round((rss1 - rss0) / count),
            "heartbeat_cpu_us_per_connection_second": round((cpu2 - cpu1) / (t2 - t1) / count * 1e6, 2),
            "server_cpu_share": round((cpu2 - cpu1) / (t2 - t1), 3),
        }
    finally:
        server.stop()


@inlineCallbacks
def fanout_round(server: Server, kind: str, receivers: int, messages: int, round_: int) -> Any:
    websocket = kind == "websocket"
    group = yield connect_all(receivers, websocket, server.web if websocket else server.tcp, f"{kind[0]}{round_}r")
    senders = yield connect_all(1, False, server.tcp, f"s{round_}{kind[0]}")
    sender = senders[0]
    done: Deferred[None] = Deferred()
    counts = [0] * receivers
    finished = [0]
    tag = f"f{round_}{kind[0]}".encode()

    def receiver(index: int) -> Callable[[bytes], None]:
        def on_line(line: bytes) -> None:
            if line.startswith(b"MSG ") and tag in line:
                counts[index] += 1
                if counts[index] == messages:
                    finished[0] += 1
                    if finished[0] == receivers and not done.called:
                        done.callback(None)

        return on_line

    for index, client in enumerate(group):
        client.onLine = receiver(index)
    state = {"sent": 0, "echoed": 0}

    def pump() -> None:
        while state["sent"] < messages and state["sent"] - state["echoed"] < 64:
            sender.send(b"SAY " + tag + b" %d " % state["sent"] + b"x" * 40)
            state["sent"] += 1

    def on_echo(line: bytes) -> None:
        if line.startswith(b"MSG ") and tag in line:
            state["echoed"] += 1
            pump()

    sender.onLine = on_echo
    pid = server.process.pid
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    pump()
    yield done.addTimeout(300, reactor)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    for client in [*group, sender]:
        client.transport.abortConnection()
    yield deferLater(reactor, 1.0, lambda: None)
    deliveries = receivers * messages
    return {
        "kind": kind,
        "round": round_,
        "deliveries_per_second": round(deliveries / (t1 - t0)),
        "server_cpu_us_per_delivery": round((cpu1 - cpu0) / deliveries * 1e6, 2),
    }


def parts(count: int = 20000) -> dict[str, float]:
    """
    The reasons, in this process: the server's protocol objects over in-memory transports,
    timed per PONG received (a masked frame through autobahn's parser, unmasking and UTF-8
    check, against a line through the line splitter) and per PING sent (framed against not).
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from hbchat.config import ServerConfig
    from hbchat.server.factory import ChatFactory
    from hbchat.web.service import WebListener
    from hbchat.web.socket import ChatSocketFactory

    chat = ChatFactory(ServerConfig(rate=0, ping=30, timeout=90), reactor)
    ws = ChatSocketFactory(WebListener(chat, "tcp:0"), reactor, False).buildProtocol(None)
    ws.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)))
    ws.dataReceived(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: hbchat.v1\r\n\r\n"
        ).encode()
    )
    ws.dataReceived(mask(b"NICK wsuser"))
    tcp = chat.buildProtocol(None)
    tcp.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40001)))
    tcp.dataReceived(b"NICK tcpuser\n")
    assert ws.chat is not None and ws.chat.nick == b"wsuser" and tcp.nick == b"tcpuser"
    out: dict[str, float] = {}
    for name, feed, data in (("tcp", tcp.dataReceived, b"PONG 1\n"), ("websocket", ws.dataReceived, mask(b"PONG 1"))):
        start = time.perf_counter()
        for _ in range(count):
            feed(data)
        out[f"{name}_receive_pong_us"] = round((time.perf_counter() - start) / count * 1e6, 2)
    for name, proto in (("tcp", tcp), ("websocket", ws.chat)):
        start = time.perf_counter()
        for index in range(count):
            proto.deliver(b"PING %d\n" % index)
        out[f"{name}_send_ping_us"] = round((time.perf_counter() - start) / count * 1e6, 2)
        ws.transport.clear()
        tcp.transport.clear()
    return out


@inlineCallbacks
def main(options: argparse.Namespace) -> Any:
    results: dict[str, Any] = {"load": os.getloadavg(), "cores": os.cpu_count()}
    results["parts"] = parts()
    results["idle"] = []
    for kind in ("tcp", "websocket"):
        results["idle"].append((yield idle(kind, options.idle, options.window, options.ping)))
    server = Server(30.0)
    try:
        server.wait_listening()
        results["fanout"] = []
        for round_ in range(options.rounds):
            for kind in ("tcp", "websocket") if round_ % 2 == 0 else ("websocket", "tcp"):
                result = yield fanout_round(server, kind, options.receivers, options.messages, round_)
                results["fanout"].append(result)
    finally:
        server.stop()
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=5000, help="idle connections of each kind [5000]")
    parser.add_argument("--window", type=float, default=20.0, help="seconds the idle CPU is measured over [20]")
    parser.add_argument("--ping", type=float, default=1.0, help="--ping of the idle servers, seconds [1]")
    parser.add_argument("--receivers", type=int, default=100, help="fan-out receivers of each kind [100]")
    parser.add_argument("--messages", type=int, default=2000, help="messages per fan-out round [2000]")
    parser.add_argument("--rounds", type=int, default=3, help="fan-out rounds (each kind once a round) [3]")
    arguments = parser.parse_args()
    failure: list[Any] = []

    def run() -> None:
        d = main(arguments)
        d.addErrback(failure.append)
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(run)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if failure:
        failure[0].printTraceback(file=sys.stderr)
        print(repr(failure[0].value), file=sys.stderr)
        raise SystemExit(1)
