"""
Fakes for testing code that talks to an hbchat server, without sockets or real time.

A :class:`FakeServer` is a real chat factory (:class:`~hbchat.ops.observed.ObservedChatFactory`,
with its counters) on a ``task.Clock``;
each :class:`FakePeer` is one connection to it over a ``StringTransport``.  A
:class:`FakeNetwork` is a client endpoint whose connections reach a ``FakeServer`` in
memory, for testing clients; it can cut every connection, losing whatever was in flight.  Time moves only
when the test says so, and output appears at the end of each simulated reactor turn,
exactly as the real server batches it.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from hbchat.config import ServerConfig
from hbchat.ops.observed import ObservedChatFactory
from hbchat.server.connection import ChatServerProtocol


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

    def register(self, nick: str, password: str | None = None) -> list[bytes]:
        """HELLO, NICK, and everything up to and including our own JOIN."""
        self.sendLine(f"NICK {nick} {password}" if password is not None else f"NICK {nick}")
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


class ReactorClock(Clock):
    """
    A ``task.Clock`` that orders calls the way the reactor does: a call scheduled while
    calls are being run (a ``callLater(0)`` from a timer) runs on the next turn, not in
    the same :meth:`advance`.
    """

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        self._sortCalls()
        now = self.seconds()
        for call in [call for call in self.calls if call.getTime() <= now]:
            if call in self.calls and call.getTime() <= now:
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)
        self._sortCalls()


class FakeServer:
    """An hbchat server on a fake clock; connect peers with :meth:`connect`."""

    def __init__(self, checker: ICredentialsChecker | None = None, **settings: Any) -> None:
        self.clock = ReactorClock()
        self.config = ServerConfig(**settings)
        self.factory = ObservedChatFactory(self.config, self.clock, checker)
        self._nextPort = 40000

    def connect(self) -> FakePeer:
        self._nextPort += 1
        return FakePeer(self, self._nextPort)

    def registered(self, nick: str, password: str | None = None) -> FakePeer:
        """A peer that has registered as ``nick`` and read everything so far."""
        peer = self.connect()
        peer.register(nick, password)
        return peer

    def turn(self) -> None:
        """End the current reactor turn: flush queued output."""
        self.clock.advance(0)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


@implementer(IStreamClientEndpoint)
class FakeNetwork:
    """
    A client endpoint that connects to a :class:`FakeServer` in memory.

    Bytes move only when :meth:`flush` is called, so a test decides what is in flight when
    it cuts the connections (:meth:`cut`), and a server that is never flushed looks frozen.
    """

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.reachable = True
        self.pumps: list[iosim.IOPump] = []
        self.connections = 0

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:  # noqa: N803
        if not self.reachable:
            return fail(ConnectionRefusedError("fake network: server unreachable"))
        self.connections += 1
        address = IPv4Address("TCP", "127.0.0.1", 50000 + self.connections)
        server_protocol = self.server.factory.buildProtocol(address)
        client_protocol = protocolFactory.buildProtocol(address)
        assert client_protocol is not None
        server_transport = iosim.FakeTransport(server_protocol, isServer=True, peerAddress=address)
        client_transport = iosim.FakeTransport(client_protocol, isServer=False)
        pump = iosim.connect(
            server_protocol, server_transport, client_protocol, client_transport, greet=False, clock=self.server.clock
        )
        self.pumps.append(pump)
        return succeed(client_protocol)

    def flush(self) -> None:
        """Deliver everything in flight, both ways, until nothing moves."""
        for pump in list(self.pumps):
            pump.flush()
            if pump.serverIO.disconnected and pump.clientIO.disconnected:
                self.pumps.remove(pump)

    def cut(self, reason: Exception | None = None) -> None:
        """
        Every connection breaks at once; bytes in flight are lost.  The client sees
        ``reason`` (a TLS failure, say) if given, else ``ConnectionLost``.
        """
        pumps, self.pumps = self.pumps, []
        for pump in pumps:
            for transport in (pump.clientIO, pump.serverIO):
                transport.stream = []
                transport.disconnecting = transport.disconnected = True
            for transport in (pump.clientIO, pump.serverIO):
                cause = reason if reason is not None and transport is pump.clientIO else None
                transport.protocol.connectionLost(Failure(cause or ConnectionLost("fake network: cut")))
        self.server.turn()

    def advance(self, seconds: float) -> None:
        """Let time pass, in steps, delivering traffic as it goes."""
        remaining = seconds
        while remaining > 0:
            step = min(0.5, remaining)
            self.server.advance(step)
            self.flush()
            remaining -= step
