"""
``ChatClientFactory`` over :mod:`hbchat.clienttls` against real TLS servers on loopback, with
certificates made in the test: plain and mutual TLS chat, and each way verification fails,
which must end the client at once, in one line, without a retry.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from hbchat.client.connector import connect
from hbchat.client.tls import TLSAddress, TLSClient, load_client_certificate, load_trust_roots, parse_tls_description
from hbchat.server.listeners import Listener
from tests.test_client_integration import (
    QUICK,
    ClientTestCase,
    TrackedClientFactory,
    TrackingEndpoint,
    WatchingObserver,
)
from tests.tlscerts import CertificateAuthority
from tests.tlsserver import TLSServers


class TLSClientTestCase(ClientTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.tls = TLSServers(self)

    def tlsClient(
        self, port: int, host: str = "127.0.0.1", ca: str | None = None, nick: str | None = None
    ) -> TLSClient:
        """Trusting our CA (or ``ca``), with ``nick``'s client certificate if a nick is given."""
        certificate = None
        if nick is not None:
            certificate = load_client_certificate(*self.tls.write(self.tls.ca.client(nick), nick))
        return TLSClient(TLSAddress(host, port, timeout=10), load_trust_roots(ca or self.tls.caFile), certificate)

    def startTLSClient(self, nick: str, tls: TLSClient) -> tuple[TrackedClientFactory, WatchingObserver]:
        observer = WatchingObserver(nick, self.conditions)
        factory = TrackedClientFactory(
            nick, observer, backoff=QUICK, clock=reactor, rng=random.Random(1), diagnose=tls.diagnose
        )
        connect(reactor, TrackingEndpoint(tls.endpoint(reactor), factory), factory)
        self.addCleanup(self._stopClient, factory)
        return factory, observer

    @inlineCallbacks
    def chatsOver(self, tls: TLSClient, nick: str) -> Any:
        """The client registers and its SAY comes back."""
        factory, observer = self.startTLSClient(nick, tls)
        yield self.waitRegistered(observer)
        factory.say("hello over TLS")
        yield self.waitOwn(observer, "hello over TLS")

    @inlineCallbacks
    def assertGivesUpAtOnce(self, tls: TLSClient, server: Listener, expected: str) -> Any:
        """One ``gaveUp`` with exactly ``expected``, nothing else reported, one connection only."""
        factory, observer = self.startTLSClient("bob", tls)
        yield self.waitFor(lambda: observer.count("gave up") > 0, "the client to give up", observer)
        self.assertEqual(observer.events, [f"gave up: {expected}"], observer.transcript())
        self.assertFalse(factory.continueTrying)
        self.assertFalse(factory.reconnectPending, "a reconnect is scheduled")
        self.assertEqual(server.accepted, 1)


class TLSChatTests(TLSClientTestCase):
    def test_chat_over_tls_with_a_private_ca(self) -> Any:
        _, port = self.tls.start()
        return self.chatsOver(self.tlsClient(port), "alice")

    def test_chat_over_tls_by_host_name(self) -> Any:
        _, port = self.tls.start()
        return self.chatsOver(self.tlsClient(port, host="localhost"), "alice")

    def test_chat_over_tls_through_another_endpoint(self) -> Any:
        _, port = self.tls.start()
        address = parse_tls_description(rf"tls:localhost:{port}:endpoint=tcp\:127.0.0.1\:{port}")
        return self.chatsOver(TLSClient(address, load_trust_roots(self.tls.caFile)), "alice")

    def test_chat_over_tls_with_bind_address_and_timeout(self) -> Any:
        _, port = self.tls.start()
        address = parse_tls_description(f"tls:127.0.0.1:{port}:bindAddress=127.0.0.1:timeout=10")
        return self.chatsOver(TLSClient(address, load_trust_roots(self.tls.caFile)), "alice")

    def test_mutual_tls_with_a_client_certificate(self) -> Any:
        _, port = self.tls.start(clientCA=self.tls.ca)
        return self.chatsOver(self.tlsClient(port, nick="alice"), "alice")

    def test_mutual_tls_1_2_with_a_client_certificate(self) -> Any:
        _, port = self.tls.start(clientCA=self.tls.ca, tls12=True)
        return self.chatsOver(self.tlsClient(port, nick="alice"), "alice")


class VerificationFailureTests(TLSClientTestCase):
    def test_a_certificate_for_another_name_gives_up_naming_both(self) -> Any:
        server, port = self.tls.start(self.tls.ca.server("localhost"))
        return self.assertGivesUpAtOnce(
            self.tlsClient(port),
            server,
            f'TLS: the certificate of 127.0.0.1:{port} is not valid for "127.0.0.1": it is for localhost',
        )

    def test_an_untrusted_ca_gives_up_naming_the_issuer(self) -> Any:
        server, port = self.tls.start()
        other = CertificateAuthority("some other CA").write(self.tls.directory, "other")
        return self.assertGivesUpAtOnce(
            self.tlsClient(port, ca=str(other)),
            server,
            f'TLS: the certificate of 127.0.0.1:{port} is issued by "hbchat test CA", which is not a trusted CA '
            "(--ca FILE trusts a private CA)",
        )

    def test_an_expired_certificate_gives_up_with_its_date(self) -> Any:
        expired = self.tls.ca.server("localhost", "127.0.0.1", expired=True)
        server, port = self.tls.start(expired)
        when = f"{expired.certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        return self.assertGivesUpAtOnce(
            self.tlsClient(port), server, f"TLS: the certificate of 127.0.0.1:{port} expired on {when}"
        )

    def test_a_certificate_not_meant_for_a_server_gives_up(self) -> Any:
        server, port = self.tls.start(self.tls.ca.client("127.0.0.1"))
        return self.assertGivesUpAtOnce(
            self.tlsClient(port),
            server,
            f"TLS: the certificate of 127.0.0.1:{port} is not meant for a TLS server (its key usage forbids it)",
        )


class NotTLSTests(TLSClientTestCase):
    @inlineCallbacks
    def test_a_plain_tcp_server_gives_up_at_once(self) -> Any:
        _, port = self.startServer(ping=5, timeout=30)
        factory, observer = self.startTLSClient("bob", self.tlsClient(port))
        yield self.waitFor(lambda: observer.count("gave up") > 0, "the client to give up", observer)
        # OpenSSL's own words in the parentheses vary with its version.
        self.assertEqual(len(observer.events), 1, observer.transcript())
        self.assertRegex(
            observer.events[0],
            rf"^gave up: TLS: the server at 127\.0\.0\.1:{port} does not speak TLS \(.+\); is it a tcp: port\?$",
        )
        self.assertFalse(factory.continueTrying)


class ClientCertificateRefusedTests(TLSClientTestCase):
    def test_no_client_certificate_for_a_server_that_requires_one(self) -> Any:
        server, port = self.tls.start(clientCA=self.tls.ca)
        return self.assertGivesUpAtOnce(
            self.tlsClient(port),
            server,
            f'TLS: the server at 127.0.0.1:{port} requires a client certificate (TLS alert "certificate required"); '
            "give one with --cert FILE --key FILE",
        )

    def test_no_client_certificate_for_a_tls_1_2_server_that_requires_one(self) -> Any:
        server, port = self.tls.start(clientCA=self.tls.ca, tls12=True)
        return self.assertGivesUpAtOnce(
            self.tlsClient(port),
            server,
            f'TLS: the server at 127.0.0.1:{port} refused the connection (TLS alert "handshake failure"); '
            "it may require a client certificate (--cert FILE)",
        )

    def test_a_client_certificate_from_a_ca_the_server_does_not_trust(self) -> Any:
        server, port = self.tls.start(clientCA=CertificateAuthority("the server's client CA"))
        return self.assertGivesUpAtOnce(
            self.tlsClient(port, nick="alice"),
            server,
            f'TLS: the server at 127.0.0.1:{port} refused our client certificate (TLS alert "unknown ca")',
        )
