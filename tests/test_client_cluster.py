"""
The client follows a cluster (hbchat.client.connector): given several endpoints, each
reconnect tries the next one, wrapping around, with the same jittered backoff; on a fake
clock, and against two real loopback servers.
"""

from __future__ import annotations

import io
import random
import sys
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from hbchat.client.backoff import Backoff
from hbchat.client.cli import parse_arguments
from hbchat.client.connector import EndpointConnector, EndpointRing, connect
from hbchat.client.factory import ChatClientFactory
from hbchat.client.protocol import ChatClientProtocol
from tests.test_cli import CliTestCase
from tests.test_client import RecordingObserver
from tests.test_client_integration import (
    QUICK,
    ClientTestCase,
    TrackedClientFactory,
    TrackingEndpoint,
    WatchingObserver,
)
from tests.test_twistd import freePort


@implementer(IStreamClientEndpoint)
class PendingEndpoint:
    """An endpoint whose attempts stay pending until the test settles them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.attempts: list[Deferred[Any]] = []

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        attempt: Deferred[Any] = Deferred()
        self.attempts.append(attempt)
        return attempt


class RingTests(SynchronousTestCase):
    def test_the_first_attempt_uses_the_first_endpoint(self) -> None:
        a, b = PendingEndpoint("a"), PendingEndpoint("b")
        self.assertIs(EndpointRing([a, b]).nextAttempt(), a)

    def test_each_later_attempt_uses_the_next_one_wrapping_around(self) -> None:
        a, b, c = PendingEndpoint("a"), PendingEndpoint("b"), PendingEndpoint("c")
        ring = EndpointRing([a, b, c])
        self.assertEqual([ring.nextAttempt().name for _ in range(7)], list("abcabca"))  # type: ignore[attr-defined]

    def test_one_endpoint_is_always_that_one(self) -> None:
        a = PendingEndpoint("a")
        ring = EndpointRing([a])
        self.assertEqual({id(ring.nextAttempt()) for _ in range(5)}, {id(a)})

    def test_no_endpoint_is_refused(self) -> None:
        self.assertRaises(ValueError, EndpointRing, [])


class FollowTests(SynchronousTestCase):
    """Two nodes, on a fake clock: where each attempt goes, and after how long."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.observer = RecordingObserver()
        self.factory = ChatClientFactory("ida", self.observer, clock=self.clock, rng=random.Random(5))
        self.a, self.b = PendingEndpoint("a"), PendingEndpoint("b")
        self.connector = EndpointConnector([self.a, self.b], self.factory)

    def attempts(self) -> tuple[int, int]:
        return len(self.a.attempts), len(self.b.attempts)

    def refuse(self, endpoint: PendingEndpoint) -> None:
        """The endpoint's attempt is refused; the clock runs to the next attempt."""
        endpoint.attempts[-1].errback(Failure(ConnectionRefusedError()))
        self.clock.advance(self.observer.delays[-1])

    def registered(self, endpoint: PendingEndpoint) -> tuple[ChatClientProtocol, StringTransport]:
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        endpoint.attempts[-1].callback(protocol)
        protocol.dataReceived(b"HELLO hbchat/1 ping=5 timeout=15\nWELCOME ida tok 7\nJOIN 8 ida\n")
        return protocol, transport

    def test_a_refused_node_is_followed_by_the_next(self) -> None:
        self.connector.connect()
        self.assertEqual(self.attempts(), (1, 0))
        self.refuse(self.a)
        self.assertEqual(self.attempts(), (1, 1))
        self.refuse(self.b)
        self.assertEqual(self.attempts(), (2, 1))

    def test_losing_a_node_tries_the_next_one_first(self) -> None:
        self.connector.connect()
        protocol, _ = self.registered(self.a)
        self.assertTrue(self.factory.connected)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(self.factory.reconnectPending)
        self.clock.advance(self.observer.delays[-1])
        self.assertEqual(self.attempts(), (1, 1))

    def test_the_session_resumes_on_the_next_node(self) -> None:
        self.connector.connect()
        protocol, _ = self.registered(self.a)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.clock.advance(self.observer.delays[-1])
        _, transport = self.registered(self.b)
        self.assertIn(b"RESUME tok 8\n", transport.value())

    def test_the_reconnect_after_a_loss_keeps_its_jitter(self) -> None:
        delays = []
        for seed in range(20):
            clock = Clock()
            observer = RecordingObserver()
            factory = ChatClientFactory("ida", observer, clock=clock, rng=random.Random(seed))
            a, b = PendingEndpoint("a"), PendingEndpoint("b")
            EndpointConnector([a, b], factory).connect()
            a.attempts[-1].errback(Failure(ConnectionRefusedError()))
            delays.append(observer.delays[-1])
        self.assertTrue(all(0 <= delay <= Backoff().spread for delay in delays), delays)
        self.assertGreater(len(set(delays)), 15, delays)

    def test_the_endpoint_in_use_is_the_connectors_endpoint(self) -> None:
        self.connector.connect()
        self.assertIs(self.connector.endpoint, self.a)
        self.refuse(self.a)
        self.assertIs(self.connector.endpoint, self.b)

    def test_one_endpoint_as_before(self) -> None:
        factory = ChatClientFactory("ida", RecordingObserver(), clock=self.clock, rng=random.Random(5))
        only = PendingEndpoint("only")
        connector = EndpointConnector(cast(IStreamClientEndpoint, only), factory)
        connector.connect()
        for _ in range(3):
            only.attempts[-1].errback(Failure(ConnectionRefusedError()))
            self.clock.advance(60)
        self.assertEqual(len(only.attempts), 4)


class FactoryEndpointsTests(SynchronousTestCase):
    """ChatClientFactory takes the cluster's endpoints itself (endpoints=...), and startConnecting() follows them."""

    def test_the_factory_connects_through_its_endpoints_in_turn(self) -> None:
        clock, observer = Clock(), RecordingObserver()
        a, b = PendingEndpoint("a"), PendingEndpoint("b")
        factory = ChatClientFactory("ida", observer, clock=clock, rng=random.Random(5), endpoints=[a, b])
        factory.startConnecting()
        self.assertEqual((len(a.attempts), len(b.attempts)), (1, 0))
        a.attempts[-1].errback(Failure(ConnectionRefusedError()))
        clock.advance(observer.delays[-1])
        self.assertEqual((len(a.attempts), len(b.attempts)), (1, 1))

    def test_a_factory_without_endpoints_cannot_start(self) -> None:
        factory = ChatClientFactory("ida", RecordingObserver(), clock=Clock())
        self.assertRaises(ValueError, factory.startConnecting)


class CommandLineTests(SynchronousTestCase):
    def test_several_endpoints_are_taken_in_order(self) -> None:
        arguments = parse_arguments(["tcp:127.0.0.1:1", "tcp:127.0.0.1:2", "--nick", "ida"])
        self.assertEqual(arguments.endpoints, ["tcp:127.0.0.1:1", "tcp:127.0.0.1:2"])
        self.assertEqual(arguments.endpoint, "tcp:127.0.0.1:1")

    def test_an_ssl_endpoint_among_several_is_refused(self) -> None:
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        error = self.assertRaises(SystemExit, parse_arguments, ["tcp:127.0.0.1:1", "ssl:h:2", "--nick", "ida"])
        self.assertEqual(error.code, 2)
        self.assertIn("ENDPOINT 'ssl:h:2'", stderr.getvalue())


class TwoServersTests(ClientTestCase):
    """Two real loopback servers; the one the client is on stops: it lands on the other."""

    @inlineCallbacks
    def test_a_stopped_node_sends_its_client_to_the_other(self) -> Any:
        first, firstPort = self.startServer(ping=1, timeout=3, retry_hint=0.5)
        second, secondPort = self.startServer(ping=1, timeout=3)
        observer = WatchingObserver("ida", self.conditions)
        factory = TrackedClientFactory("ida", observer, backoff=QUICK, clock=reactor, rng=random.Random(1))
        endpoints = [
            TrackingEndpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), factory)
            for port in (firstPort, secondPort)
        ]
        connect(reactor, endpoints, factory)
        self.addCleanup(self._stopClient, factory)
        yield self.waitRegistered(observer)
        self.assertEqual(len(first.connections), 1)

        # BYE shutdown retry=0.5. The first node still listens: the client goes to the second
        # all the same, the next in its ring.
        yield first.shutdown()
        yield self.waitFor(lambda: len(second.connections) == 1 and factory.connected, "ida on the second", observer)
        yield self.waitRegistered(observer, times=2)
        # Without a shared chat the second node does not know the session: ERR 404, then NICK.
        self.assertIn("history lost", observer.events, observer.transcript())
        self.assertIsNotNone(second.chat.sessions.by_nick(b"ida"))


class CommandLineProcessTests(CliTestCase):
    @inlineCallbacks
    def test_hbchat_client_goes_on_to_the_next_endpoint(self) -> Any:
        """``hbchat-client DEAD LIVE``: the first is refused, the second takes the piped lines."""
        _, port = self.startServer(ping=5, timeout=30)
        process = self.spawnClient(f"tcp:127.0.0.1:{freePort()}", f"tcp:127.0.0.1:{port}", "--nick", "bot")
        process.process.write(b"over here\n")
        process.process.closeStdin()
        yield self.waitEnded(process)
        self.assertEqual(process.exitCode(), 0, process.output())
        self.assertEqual(sum(1 for line in process.outLines() if line.endswith("<bot> over here")), 1, process.output())
        self.assertEqual(sum(1 for line in process.outLines() if "connection refused" in line), 1, process.output())
