"""Every class that declares an interface really provides it."""

from __future__ import annotations

import io

from twisted.internet.interfaces import IConsumer, IPushProducer, IStreamClientEndpoint, ITransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass, verifyObject

from hbchat.client.console import Console
from hbchat.interfaces import IChatObserver
from hbchat.server.connection import ChatServerProtocol
from hbchat.testing import FakeNetwork, FakeServer
from hbchat.web.frames import FrameCache
from hbchat.web.linetransport import LineTransport


class InterfaceTests(SynchronousTestCase):
    def test_server_protocol_is_a_push_producer_of_its_output(self) -> None:
        self.assertTrue(verifyClass(IPushProducer, ChatServerProtocol))
        self.assertTrue(verifyObject(IPushProducer, FakeServer().connect().protocol))

    def test_terminal_console_observes_the_chat(self) -> None:
        console = Console(io.StringIO(), io.StringIO(), Clock(), interactive=True)
        self.assertTrue(verifyObject(IChatObserver, console))

    def test_fake_network_is_a_client_endpoint(self) -> None:
        self.assertTrue(verifyObject(IStreamClientEndpoint, FakeNetwork(FakeServer())))

    def test_websocket_line_transport_is_a_transport_consumer_and_producer(self) -> None:
        class Socket:
            transport = StringTransport()

            def isOpen(self) -> bool:
                return True

            def closeWithCode(self, code: int, reason: str) -> None:
                pass

        line = LineTransport(Socket(), FrameCache())
        for interface in (ITransport, IConsumer, IPushProducer):
            self.assertTrue(verifyObject(interface, line))
