"""
The real client (ChatClientFactory, as hbchat-client uses it) against cluster nodes: through
a Redis outage (its refused lines sent again, nothing lost) and the death of its node (back
on another node with its session, nothing lost).
"""

from __future__ import annotations

import os
import random
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.trial import unittest

from hbchat.client.connector import connect
from hbchat.cluster.chat import ClusterChat
from tests.clusternodes import ClusterTestCase, until
from tests.redisserver import RedisServer, require_redis
from tests.test_client_integration import (
    QUICK,
    ClientTestCase,
    TrackedClientFactory,
    TrackingEndpoint,
    WatchingObserver,
)
from tests.test_integration import DEADLINE, within
from tests.test_twistd import TWISTD, TwistdProcess, freePort


def start_cluster_client(
    case: ClientTestCase, nick: str, ports: list[int]
) -> tuple[TrackedClientFactory, WatchingObserver]:
    """A real client given every node's endpoint, first ``ports[0]``; stopped at cleanup."""
    observer = WatchingObserver(nick, case.conditions)
    factory = TrackedClientFactory(nick, observer, backoff=QUICK, clock=reactor, rng=random.Random(1))
    endpoints = [TrackingEndpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), factory) for port in ports]
    connect(reactor, endpoints, factory)
    case.addCleanup(case._stopClient, factory)
    return factory, observer


def own_lines(observer: WatchingObserver) -> list[str]:
    return [text for _, nick, text, own in observer.messages if own]


class ClusterClientTests(ClientTestCase, ClusterTestCase):
    @inlineCallbacks
    def test_lines_refused_while_redis_is_away_are_sent_again(self) -> Any:
        """Redis stopped and started (with its data): a line said meanwhile is echoed once it is back, once."""
        redis = RedisServer(self, persist=True)
        yield redis.start()
        node, port = yield self.startNode(redis.url, "a")
        chat = cast(ClusterChat, node.chat)
        factory, observer = start_cluster_client(self, "ann", [port])
        yield self.waitRegistered(observer)
        factory.say("before")
        yield self.waitOwn(observer, "before")
        yield redis.stop()
        yield until(lambda: not chat.available, "the node noticing Redis is gone")
        factory.say("during")
        yield self.waitFor(
            lambda: observer.count("error 503 cluster unavailable: SAY not handled") >= 1, "a 503", observer
        )
        yield deferLater(reactor, 1.0, lambda: None)
        yield redis.start()
        yield self.waitOwn(observer, "during")
        factory.say("after")
        yield self.waitOwn(observer, "after")
        self.assertEqual(own_lines(observer), ["before", "during", "after"])
        self.assertEqual(observer.disconnects, [])


class ClusterClientProcessTests(ClientTestCase):
    @inlineCallbacks
    def spawnNode(self, redis: RedisServer, name: str) -> Any:
        """``twistd -n hbchat --redis``, once it has joined: (its transport, its port); killed at cleanup."""
        if TWISTD is None:
            raise unittest.SkipTest("no twistd executable next to sys.executable or on PATH")
        port = freePort()
        process = TwistdProcess()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        argv = [TWISTD, "-n", "--pidfile=", "hbchat", "--listen", f"tcp:{port}:interface=127.0.0.1"]
        argv += ["--redis", redis.url, "--node-name", name, "--node-timeout", "2"]
        transport = reactor.spawnProcess(process, TWISTD, argv, env=dict(os.environ), path=directory)
        self.addCleanup(self._killNode, process, transport)
        yield until(lambda: b"joined the cluster" in process.out or process.reason is not None, f"node {name}")
        if process.reason is not None:
            self.fail(process.output())
        return transport, port

    @inlineCallbacks
    def _killNode(self, process: TwistdProcess, transport: Any) -> Any:
        if process.reason is None:
            transport.signalProcess("KILL")
            yield within(process.whenEnded(), DEADLINE, "twistd dying of SIGKILL")

    @inlineCallbacks
    def test_node_killed_client_resumes_on_another(self) -> Any:
        """kill -9 of the client's node: it reconnects to the next node and resumes; nothing lost, nothing twice."""
        require_redis()
        redis = RedisServer(self)
        yield redis.start()
        node_a, port_a = yield self.spawnNode(redis, "a")
        _, port_b = yield self.spawnNode(redis, "b")
        factory, observer = start_cluster_client(self, "ann", [port_a, port_b])
        yield self.waitRegistered(observer)
        factory.say("on a")
        yield self.waitOwn(observer, "on a")
        node_a.signalProcess("KILL")
        factory.say("after the death")
        yield self.waitOwn(observer, "after the death")
        self.assertEqual(own_lines(observer), ["on a", "after the death"])
        resumed = [event for event in observer.events if event.startswith("resumed ")]
        self.assertEqual(len(resumed), 1, observer.transcript())
        self.assertTrue(resumed[0].endswith(" complete"), observer.transcript())
