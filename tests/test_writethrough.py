"""Write-through keeps the byte stream exactly as written, whatever the kernel accepts."""

from __future__ import annotations

from typing import cast

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.protocol import Factory, Protocol, ServerFactory
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from hbchat.server.writethrough import writer_for


class Collector(Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.done: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        self.done.callback(None)


class Sender(Protocol):
    def __init__(self) -> None:
        self.connected_: defer.Deferred[Sender] = defer.Deferred()

    def connectionMade(self) -> None:
        self.connected_.callback(self)


class OtherTransportTests(SynchronousTestCase):
    def test_non_tcp_transports_use_their_own_write(self) -> None:
        transport = StringTransport()
        write = writer_for(transport)
        write(b"abc")
        self.assertEqual(transport.value(), b"abc")


class LoopbackTests(TestCase):
    @defer.inlineCallbacks
    def test_direct_and_buffered_writes_arrive_in_order_when_the_kernel_fills_up(self):
        tcp = cast(IReactorTCP, reactor)
        collector = Collector()
        collector_factory = cast(ServerFactory, ServerFactory.forProtocol(lambda: collector))
        port = tcp.listenTCP(0, collector_factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        sender = Sender()
        client_factory = Factory.forProtocol(lambda: sender)
        from twisted.internet.endpoints import TCP4ClientEndpoint

        address = port.getHost()
        assert isinstance(address, IPv4Address)
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", address.port).connect(client_factory)
        yield sender.connected_
        assert sender.transport is not None
        write = writer_for(sender.transport)
        self.assertIsNot(write, sender.transport.write)
        # Far more than the kernel buffers take at once: later writes must queue behind
        # the remainder the transport holds, never jump ahead of it.
        expected = bytearray()
        for n in range(8000):
            chunk = (b"%05d:" % n) * 400
            write(chunk)
            expected += chunk
        self.assertGreater(sender.transport._tempDataLen, 0, "the kernel took everything: nothing was tested")  # type: ignore[attr-defined]
        sender.transport.loseConnection()
        yield collector.done
        self.assertEqual(len(collector.received), len(expected))
        self.assertEqual(bytes(collector.received), bytes(expected))
