"""
An in-process hbchat server behind TLS, for the client's TLS tests: plain TLS through
Twisted's ``ssl:`` endpoint, or mutual TLS with ``CertificateOptions`` requiring a client
certificate from a given CA.

The chat listens through an :class:`hbchat.listeners.Listener`, which counts the
connections accepted, so that a test can tell the client did not retry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from OpenSSL import crypto
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.ssl import Certificate, CertificateOptions, KeyPair, TLSVersion
from twisted.trial import unittest

from hbchat.config import ServerConfig
from hbchat.ops.observed import ObservedChatFactory as ChatFactory
from hbchat.server.listeners import Listener
from tests.test_integration import DEADLINE, forgetSessions, within
from tests.tlscerts import CertificateAuthority, Issued


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
    ) -> tuple[Listener, int]:
        """
        A chat on 127.0.0.1 (ephemeral port) with ``certificate`` (default: ours, for
        localhost and 127.0.0.1); with ``clientCA``, a client certificate it issued is
        required, over TLS 1.2 only if ``tls12``.
        """
        issued = certificate if certificate is not None else self.ca.server("localhost", "127.0.0.1")
        chat = ChatFactory(ServerConfig(ping=5, timeout=30), reactor)
        listener = Listener(chat, "ssl:test")
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
        port: IListeningPort = self.case.successResultOf(endpoint.listen(listener))
        self.case.addCleanup(self._stop, chat, port)
        return listener, cast(IPv4Address, port.getHost()).port

    @inlineCallbacks
    def _stop(self, chat: ChatFactory, port: IListeningPort) -> Any:
        stopped = gatherResults([cast(Deferred[None], port.stopListening()), chat.shutdown()], consumeErrors=True)
        yield within(stopped, DEADLINE, "stopping the TLS server")
        forgetSessions(chat)
