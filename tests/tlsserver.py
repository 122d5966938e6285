"""
An in-process hbchat server behind TLS, for the client's TLS tests: plain TLS through
Twisted's ``ssl:`` endpoint, or mutual TLS with ``CertificateOptions`` requiring a client
certificate from a given CA.

The chat protocol is only connected once the TLS handshake has completed
(:class:`HandshakeFirst`).  Without that, an hbchat server on a TLS transport never
finishes a handshake: its HELLO, written before the handshake is done, is buffered by
Twisted's TLS layer, which then pauses the protocol as a producer; hbchat's backpressure
answers by pausing *reading*, so the client's handshake messages are never read.  That is a
server matter (the server's TLS work fixes it for real); these tests are about the client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from OpenSSL import crypto
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IAddress, IHandshakeListener, IListeningPort
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import Certificate, CertificateOptions, KeyPair, TLSVersion
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from hbchat.config import ServerConfig
from hbchat.server import ChatFactory
from tests.test_integration import DEADLINE, forgetSessions, within
from tests.tlscerts import CertificateAuthority, Issued


@implementer(IHandshakeListener)
class HandshakeFirst(ProtocolWrapper):
    """Connects the wrapped protocol when the TLS handshake completes, not before."""

    started = False

    def makeConnection(self, transport: Any) -> None:
        self.connected = 1
        self.transport = transport
        self.factory.registerProtocol(self)

    def handshakeCompleted(self) -> None:
        self.started = True
        self.wrappedProtocol.makeConnection(cast(Any, self))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connected = 0
        self.factory.unregisterProtocol(self)
        if self.started:
            self.wrappedProtocol.connectionLost(reason)


class HandshakeFirstFactory(WrappingFactory):
    """Wraps the chat; counts the connections accepted, so a test can tell there was no retry."""

    protocol = HandshakeFirst

    def __init__(self, wrappedFactory: Any) -> None:
        super().__init__(wrappedFactory)
        self.accepted = 0

    def buildProtocol(self, addr: IAddress | None) -> ProtocolWrapper:
        self.accepted += 1
        return super().buildProtocol(addr)


class TLSServers:
    """Certificates in a scratch directory, and TLS chat servers that stop at the test's cleanup."""

    def __init__(self, case: unittest.TestCase) -> None:
        self.case = case
        self.directory = Path(case.mktemp()).absolute()
        self.directory.mkdir(parents=True)
        self.ca = CertificateAuthority()
        #: The CA file a client trusts with ``--ca``.
        self.caFile = str(self.ca.write(self.directory))

    def write(self, issued: Issued, stem: str) -> tuple[str, str]:
        cert, key = issued.write(self.directory, stem)
        return str(cert), str(key)

    def start(
        self, certificate: Issued | None = None, clientCA: CertificateAuthority | None = None, tls12: bool = False
    ) -> tuple[HandshakeFirstFactory, int]:
        """
        A chat on 127.0.0.1 (ephemeral port) with ``certificate`` (default: ours, for
        localhost and 127.0.0.1); with ``clientCA``, a client certificate it issued is
        required, over TLS 1.2 only if ``tls12``.
        """
        issued = certificate if certificate is not None else self.ca.server("localhost", "127.0.0.1")
        chat = ChatFactory(ServerConfig(ping=5, timeout=30), reactor)
        wrapper = HandshakeFirstFactory(chat)
        if clientCA is None:
            cert, key = self.write(issued, "server")
            endpoint = serverFromString(reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
        else:
            options = CertificateOptions(
                privateKey=KeyPair.load(issued.key_pem, crypto.FILETYPE_PEM).original,
                certificate=Certificate.loadPEM(issued.cert_pem).original,
                verify=True,
                requireCertificate=True,
                caCerts=[Certificate.loadPEM(clientCA.cert_pem).original],
                raiseMinimumTo=TLSVersion.TLSv1_2,
                **({"lowerMaximumSecurityTo": TLSVersion.TLSv1_2} if tls12 else {}),
            )
            endpoint = SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1")
        port: IListeningPort = self.case.successResultOf(endpoint.listen(wrapper))
        self.case.addCleanup(self._stop, chat, port)
        return wrapper, cast(IPv4Address, port.getHost()).port

    @inlineCallbacks
    def _stop(self, chat: ChatFactory, port: IListeningPort) -> Any:
        stopped = gatherResults([cast(Deferred[None], port.stopListening()), chat.shutdown()], consumeErrors=True)
        yield within(stopped, DEADLINE, "stopping the TLS server")
        forgetSessions(chat)
