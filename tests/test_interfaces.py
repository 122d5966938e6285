"""Every class that declares an interface really provides it."""

from __future__ import annotations

import io
import socket

from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass, verifyObject

from hbchat.client.console import Console
from hbchat.interfaces import IChatObserver
from hbchat.server.connection import ChatServerProtocol
from hbchat.server.reuseport import PortAddress, ReusePortEndpoint
from hbchat.testing import FakeNetwork, FakeServer


class InterfaceTests(SynchronousTestCase):
    def test_server_protocol_is_a_push_producer_of_its_output(self) -> None:
        self.assertTrue(verifyClass(IPushProducer, ChatServerProtocol))
        self.assertTrue(verifyObject(IPushProducer, FakeServer().connect().protocol))

    def test_terminal_console_observes_the_chat(self) -> None:
        console = Console(io.StringIO(), io.StringIO(), Clock(), interactive=True)
        self.assertTrue(verifyObject(IChatObserver, console))

    def test_fake_network_is_a_client_endpoint(self) -> None:
        self.assertTrue(verifyObject(IStreamClientEndpoint, FakeNetwork(FakeServer())))

    def test_reuse_port_endpoint_is_a_server_endpoint(self) -> None:
        endpoint = ReusePortEndpoint(Clock(), PortAddress(6464, "127.0.0.1", 50, socket.AF_INET))
        self.assertTrue(verifyObject(IStreamServerEndpoint, endpoint))
