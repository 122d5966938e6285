"""
Fakes for testing code that talks to an hbchat server, without sockets or real time.

A :class:`FakeServer` is a real :class:`~hbchat.server.ChatFactory` on a ``task.Clock``;
each :class:`FakePeer` is one connection to it over a ``StringTransport``.  Time moves only
when the test says so, and output appears at the end of each simulated reactor turn,
exactly as the real server batches it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from hbchat.config import ServerConfig
from hbchat.server import ChatFactory, ChatServerProtocol


class RecordingTransport(StringTransport):
    """A ``StringTransport`` that records whether the connection was aborted or closed."""

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


class FakePeer:
    """One connection to a :class:`FakeServer`, seen from the client's side."""

    def __init__(self, server: FakeServer, port: int) -> None:
        self.server = server
        self.transport = RecordingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.protocol: ChatServerProtocol = server.factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        self._unread = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        """Deliver raw bytes to the server and let the reactor turn end."""
        self.protocol.dataReceived(data)
        self.server.turn()

    def sendLine(self, line: str | bytes) -> None:
        self.send((line.encode("utf-8") if isinstance(line, str) else line) + b"\n")

    def received(self) -> list[bytes]:
        """Lines the server wrote since the last call, without their LF."""
        self.server.turn()
        data: bytes = self._unread + self.transport.value()
        self.transport.clear()
        *lines, self._unread = data.split(b"\n")
        return lines

    def receivedText(self) -> list[str]:
        return [line.decode("utf-8") for line in self.received()]

    def register(self, nick: str) -> list[bytes]:
        """HELLO, NICK, and everything up to and including our own JOIN."""
        self.sendLine(f"NICK {nick}")
        return self.received()

    @property
    def closing(self) -> bool:
        """The server asked to close (gracefully or not)."""
        return bool(self.transport.disconnecting)

    @property
    def aborted(self) -> bool:
        """The server aborted the connection (did not wait for output to drain)."""
        return self.transport.aborted

    def finishClose(self) -> None:
        """Complete a close the server asked for, as the reactor would."""
        if not self.closed and self.transport.disconnecting:
            self.lose(ConnectionAborted() if self.aborted else ConnectionDone())

    def lose(self, reason: BaseException | None = None) -> None:
        """The connection ends (the client vanished, or a close completed)."""
        if self.closed:
            return
        self.closed = True
        self.protocol.connectionLost(Failure(reason or ConnectionDone()))
        self.server.turn()


class FakeServer:
    """An hbchat server on a fake clock; connect peers with :meth:`connect`."""

    def __init__(self, **settings: Any) -> None:
        self.clock = Clock()
        self.config = ServerConfig(**settings)
        self.factory = ChatFactory(self.config, self.clock)
        self._nextPort = 40000

    def connect(self) -> FakePeer:
        self._nextPort += 1
        return FakePeer(self, self._nextPort)

    def registered(self, nick: str) -> FakePeer:
        """A peer that has registered as ``nick`` and read everything so far."""
        peer = self.connect()
        peer.register(nick)
        return peer

    def turn(self) -> None:
        """End the current reactor turn: flush queued output."""
        self.clock.advance(0)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
