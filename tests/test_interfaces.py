"""Every class that declares an interface really provides it."""

from __future__ import annotations

import io

from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass, verifyObject

from hbchat.client.console import Console
from hbchat.interfaces import IChatObserver
from hbchat.server.connection import ChatServerProtocol
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

    def test_cluster_chat_is_a_chat(self) -> None:
        """The chat kept in Redis stands in for the in-memory one (nothing connects until start())."""
        from hbchat.cluster.chat import ClusterChat
        from hbchat.cluster.url import parse_redis_url
        from hbchat.config import ServerConfig
        from hbchat.server.factory import NoEvents
        from hbchat.server.interfaces import IChat

        url = parse_redis_url("unix:///nonexistent/redis.sock", {})
        chat = ClusterChat(ServerConfig(), Clock(), NoEvents(), lambda: None, url, "hbchat", "node", 5.0)
        self.assertTrue(verifyObject(IChat, chat))
