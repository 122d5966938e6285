"""
A chat behind an ``ssl:`` endpoint: the handshake completes before the server becomes its
transport's producer, and the --sendq-soft high-water mark is set beneath the TLS layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, serverFromString
from twisted.internet.protocol import ServerFactory
from twisted.internet.ssl import Certificate, optionsForClientTLS

from hbchat.config import ServerConfig
from hbchat.server import ChatFactory
from tests.test_integration import DEADLINE, ChatTestCase, LineClient, serverSideOf, within
from tests.tlscerts import CertificateAuthority


class TLSListenerTests(ChatTestCase):
    @inlineCallbacks
    def startTLSServer(self, **settings: Any) -> Any:
        directory = Path(self.mktemp())
        directory.mkdir()
        self.ca = CertificateAuthority()
        cert, key = self.ca.server("localhost", "127.0.0.1").write(directory, "server")
        factory = ChatFactory(ServerConfig(**settings), reactor)
        endpoint = serverFromString(reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
        port = yield endpoint.listen(cast(ServerFactory, factory))
        self.addCleanup(self._stopServer, factory, port)
        return factory, port.getHost().port

    @inlineCallbacks
    def connectTLS(self, port: int, name: str) -> Any:
        options = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(self.ca.cert_pem))
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, options, timeout=DEADLINE)
        client = yield self._connect(endpoint, LineClient(name))
        return client

    @inlineCallbacks
    def test_a_tls_client_is_greeted_and_chats(self) -> Any:
        _, port = yield self.startTLSServer(ping=5, timeout=30)
        alice = yield self.connectTLS(port, "alice")
        yield self.register(alice, "alice")
        alice.sendLine("SAY over TLS")
        yield alice.waitForLine(r"MSG \d+ alice over TLS")

    @inlineCallbacks
    def test_the_soft_output_bound_is_set_on_the_tcp_transport_beneath_tls(self) -> Any:
        factory, port = yield self.startTLSServer(ping=5, timeout=30, sendq_soft=100_000)
        alice = yield self.connectTLS(port, "alice")
        yield self.register(alice, "alice")
        (protocol,) = factory.connections
        self.assertEqual(protocol.transport.transport.bufferSize, 100_000)

    @inlineCallbacks
    def test_a_client_that_stalls_the_handshake_is_cut_at_the_registration_deadline(self) -> Any:
        factory, port = yield self.startTLSServer(ping=5, timeout=30, register_timeout=0.5)
        # Plain TCP to the TLS port, and not a byte of ClientHello.
        staller = yield self._connect(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE), LineClient("x"))
        yield within(staller.whenLost(), DEADLINE, "the stalled handshake to be cut")
        self.assertEqual(len(factory.connections), 0)


class SoftBoundTests(ChatTestCase):
    @inlineCallbacks
    def test_the_soft_output_bound_is_the_tcp_transports_high_water_mark(self) -> Any:
        factory, port = self.startServer(ping=5, timeout=30, sendq_soft=123_456)
        alice = yield self.connect(port, "alice")
        yield self.register(alice, "alice")
        self.assertEqual(serverSideOf(factory, alice).transport.bufferSize, 123_456)
