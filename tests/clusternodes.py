"""
Cluster nodes for tests: in-process nodes (a ChatFactory whose chat is a ClusterChat, on a
loopback port) against a real ``redis-server`` (:mod:`tests.redisserver`).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.protocol import ServerFactory
from twisted.internet.task import deferLater
from twisted.trial import unittest

from hbchat.cluster.chat import ClusterChat
from hbchat.cluster.url import parse_redis_url
from hbchat.config import ServerConfig
from hbchat.ops.observed import ObservedChatFactory
from tests.test_integration import DEADLINE, ChatTestCase, within


@inlineCallbacks
def until(condition: Any, what: str, timeout: float = DEADLINE, step: float = 0.02) -> Any:
    """Wait (polling the reactor, never sleeping) until ``condition()`` is true."""
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise unittest.FailTest(f"{what}: not within {timeout}s")
        yield deferLater(reactor, step, lambda: None)


class ClusterTestCase(ChatTestCase):
    """A ChatTestCase whose servers are nodes of one cluster on a Redis of the test's own."""

    clusterName = "test"

    @inlineCallbacks
    def startNode(self, redis_url: str, name: str, node_timeout: float = 2.0, **settings: Any) -> Any:
        """A node serving on a loopback port, once it has joined: (factory, port)."""
        config = ServerConfig(**settings)
        url = parse_redis_url(redis_url, {})

        def maker(config: ServerConfig, clock: Any, events: Any, turn_ended: Any) -> ClusterChat:
            return ClusterChat(config, clock, events, turn_ended, url, self.clusterName, name, node_timeout)

        factory = ObservedChatFactory(config, reactor, chat_maker=maker)
        chat = cast(ClusterChat, factory.chat)
        chat.start()
        port = reactor.listenTCP(0, cast(ServerFactory, factory), interface="127.0.0.1")
        self.addCleanup(self._stopNode, factory, port)
        yield until(lambda: chat.available, f"node {name} joining the cluster")
        return factory, cast(IPv4Address, port.getHost()).port

    @inlineCallbacks
    def _stopNode(self, factory: ObservedChatFactory, port: Any) -> Any:
        chat = cast(ClusterChat, factory.chat)
        stopped = gatherResults([port.stopListening(), factory.shutdown()], consumeErrors=True)
        yield within(stopped, DEADLINE, "stopping the node")
        yield within(chat.stop(), DEADLINE, "the node leaving the cluster")

    @inlineCallbacks
    def join(self, port: int, nick: str) -> Any:
        """A client registered as ``nick``: (client, token, welcome seq)."""
        client = yield self.connect(port, nick)
        yield client.waitForLine("HELLO .*")
        client.sendLine(f"NICK {nick}")
        welcome = yield client.waitForLine(rf"WELCOME {nick} (\S+) (\d+)")
        return client, welcome.group(1), int(welcome.group(2))
