"""
``--web``'s HTTP connections that are not WebSockets are bounded (hbchat.web.httproom): in
number (``--max-handshakes`` in all, ``--max-per-ip`` from one address) and in time (each
request whole within ``--register-timeout``, however slowly its bytes trickle in).  Over
real loopback sockets; the per-address count (loopback is exempt) on the pure room.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import LoopingCall, deferLater
from twisted.python.failure import Failure
from twisted.trial import unittest

from hbchat.web.httproom import TOO_MANY, TOO_MANY_FROM_ADDRESS, HTTPRoom
from hbchat.web.service import GuardedChannel, WebListener, WebSite
from tests.test_integration import DEADLINE, within
from tests.test_websocket import WebSocketTestCase
from tests.wsclient import httpRequest


def webSiteOf(service: Any) -> WebSite:
    [listener] = [listener for listener in service.factory.listeners if isinstance(listener, WebListener)]
    assert listener.port is not None
    return cast(WebSite, cast(Any, listener.port).factory)


class Silent(Protocol):
    """A connection that sends what it is told, and notes when it ends and what it got."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[float] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(reactor.seconds())


@inlineCallbacks
def connectRaw(port: int) -> Any:
    protocol = Silent()
    yield within(
        connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE), protocol),
        DEADLINE,
        "connecting",
    )
    return protocol


def abort(connection: Silent) -> None:
    transport: Any = connection.transport
    if transport is not None and connection.connected:
        transport.abortConnection()


class HTTPBoundTests(WebSocketTestCase):
    @inlineCallbacks
    def waitForCount(self, site: WebSite, count: int) -> Any:
        deadline = reactor.seconds() + DEADLINE
        while site.room.count != count:
            self.assertLess(reactor.seconds(), deadline, f"{site.room.count} HTTP connections counted, not {count}")
            yield deferLater(reactor, 0.01, lambda: None)

    @inlineCallbacks
    def test_http_connections_over_max_handshakes_are_closed_at_once(self) -> Any:
        service, _tcpPort, webPort = self.startWeb("--max-handshakes", "2")
        site = webSiteOf(service)
        held = []
        for _ in range(2):
            connection = yield connectRaw(webPort)
            self.addCleanup(abort, connection)
            held.append(connection)
        yield self.waitForCount(site, 2)
        refused = yield connectRaw(webPort)
        yield within(refused.lost, DEADLINE, "the connection over the bound closing")
        self.assertEqual(refused.received, b"")
        self.assertEqual(site.refused, 1)
        held[0].transport.abortConnection()
        yield within(held[0].lost, DEADLINE, "the held connection closing")
        yield self.waitForCount(site, 1)
        answer = yield httpRequest(webPort, "GET", "/")
        self.assertEqual(answer.status, 200)

    @inlineCallbacks
    def test_a_request_head_trickled_a_byte_at_a_time_is_cut_at_register_timeout(self) -> Any:
        service, _tcpPort, webPort = self.startWeb("--register-timeout", "1")
        site = webSiteOf(service)
        slow = yield connectRaw(webPort)
        started = reactor.seconds()
        head = iter(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 10000)
        loop = LoopingCall(lambda: slow.transport.write(bytes([next(head)])))
        loop.start(0.05)
        try:
            ended = yield within(slow.lost, DEADLINE, "the slow request's connection closing")
        finally:
            if loop.running:
                loop.stop()
        # An idle timer would never fire: a byte comes every 50 ms.
        self.assertGreaterEqual(ended - started, 0.9)
        self.assertLess(ended - started, 10)
        self.assertEqual(slow.received, b"")
        yield self.waitForCount(site, 0)

    @inlineCallbacks
    def test_an_idle_keep_alive_connection_is_closed_at_register_timeout(self) -> Any:
        service, _tcpPort, webPort = self.startWeb("--register-timeout", "1")
        site = webSiteOf(service)
        idle = yield connectRaw(webPort)
        idle.transport.write(f"GET /app.js HTTP/1.1\r\nHost: 127.0.0.1:{webPort}\r\n\r\n".encode())
        answered = reactor.seconds()
        ended = yield within(idle.lost, DEADLINE, "the idle connection closing")
        self.assertTrue(idle.received.startswith(b"HTTP/1.1 200 "), idle.received[:100])
        self.assertGreaterEqual(ended - answered, 0.9)
        self.assertLess(ended - answered, 10)  # not the 60 s idle timeout
        yield self.waitForCount(site, 0)

    @inlineCallbacks
    def test_an_upgraded_websocket_is_no_longer_counted(self) -> Any:
        service, _tcpPort, webPort = self.startWeb()
        site = webSiteOf(service)
        client, _ = yield self.connectWeb(webPort, "web")
        yield self.register(client, "web")
        yield self.waitForCount(site, 0)


class PerAddressTests(WebSocketTestCase):
    def test_max_per_ip_bounds_the_http_connections_of_one_address(self) -> None:
        service, _tcpPort, _webPort = self.startWeb("--max-per-ip", "2")
        site = webSiteOf(service)
        address = IPv4Address("TCP", "192.0.2.1", 40000)
        built = [site.buildProtocol(address) for _ in range(3)]
        self.assertEqual(
            [type(protocol).__name__ for protocol in built], ["GuardedChannel", "GuardedChannel", "Refused"]
        )
        self.assertIsInstance(site.buildProtocol(IPv4Address("TCP", "192.0.2.2", 40000)), GuardedChannel)


class HTTPRoomTests(unittest.SynchronousTestCase):
    def test_at_most_per_host_from_one_address(self) -> None:
        room = HTTPRoom()
        self.assertIsNone(room.enter("192.0.2.1", 2, 10))
        self.assertIsNone(room.enter("192.0.2.1", 2, 10))
        self.assertEqual(room.enter("192.0.2.1", 2, 10), TOO_MANY_FROM_ADDRESS)
        self.assertIsNone(room.enter("192.0.2.2", 2, 10))
        room.leave("192.0.2.1")
        self.assertIsNone(room.enter("192.0.2.1", 2, 10))
        self.assertEqual((room.count, room.from_host("192.0.2.1")), (3, 2))

    def test_exempt_addresses_count_only_in_the_total(self) -> None:
        room = HTTPRoom()
        for _ in range(3):
            self.assertIsNone(room.enter(None, 1, 3))
        self.assertEqual(room.enter(None, 1, 3), TOO_MANY)
        self.assertEqual(room.enter("192.0.2.1", 1, 3), TOO_MANY)
        room.leave(None)
        self.assertIsNone(room.enter("192.0.2.1", 1, 3))
