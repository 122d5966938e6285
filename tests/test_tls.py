"""
TLS listeners (hbchat.tls): reading ssl: descriptions, building and reloading contexts,
mutual TLS and --tls-identity, and the registration deadline that covers the handshake.

Certificates are made in the test (tests.tlscerts).  Unit tests drive time with a Clock and
carry TLS bytes between two in-memory TLS protocols; integration tests use real loopback
sockets through the same service twistd builds.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, cast

from OpenSSL import SSL
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from hbchat import wire
from hbchat.config import LISTEN_BACKLOG, ConfigError, ServerConfig
from hbchat.ops.observed import ObservedChatFactory as ChatFactory
from hbchat.server.flow import CLOSE_GRACE
from hbchat.server.listeners import Listener
from hbchat.server.tls import ServerTLS, TLSListen, identity_refusal, load_certificates, parse_ssl
from tests.test_integration import DEADLINE, ChatTestCase, LineClient, tcpPortOf, within
from tests.test_metrics import scrape
from tests.tlscerts import CertificateAuthority, Issued


def tempdir(case: SynchronousTestCase) -> Path:
    directory = Path(case.mktemp())
    directory.mkdir(parents=True)
    return directory


def sslDescription(directory: Path, issued: Issued, stem: str = "server", port: int = 0) -> str:
    """An ssl: description on 127.0.0.1 serving ``issued`` (written to ``directory``)."""
    cert, key = issued.write(directory, stem)
    return f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"


def clientOptions(trust: CertificateAuthority, hostname: str = "localhost", certificate: Issued | None = None) -> Any:
    """What a verifying client uses: trust ``trust`` only, check ``hostname``, maybe present a certificate."""
    return optionsForClientTLS(
        hostname,
        trustRoot=Certificate.loadPEM(trust.cert_pem),
        clientCertificate=None
        if certificate is None
        else PrivateCertificate.loadPEM(certificate.cert_pem + certificate.key_pem),
    )


class ParseTests(SynchronousTestCase):
    def test_keywords_as_twisted_takes_them(self) -> None:
        description = (
            r"ssl:6697:privateKey=k.pem:certKey=c.pem:extraCertChain=chain.pem:dhParameters=dh.pem"
            r":interface=\:\:1:backlog=77"
        )
        self.assertEqual(
            parse_ssl(description),
            TLSListen(description, 6697, "::1", 77, *map(os.path.abspath, ["k.pem", "c.pem", "chain.pem", "dh.pem"])),
        )

    def test_file_names_are_made_absolute_before_twistd_changes_directory(self) -> None:
        listen = parse_ssl("ssl:6697:privateKey=k.pem", client_ca="ca.pem")
        self.assertEqual((listen.private_key, listen.client_ca), (os.path.abspath("k.pem"), os.path.abspath("ca.pem")))

    def test_defaults_are_twisteds_but_the_backlog(self) -> None:
        listen = parse_ssl("ssl:6697")
        self.assertEqual((listen.private_key, listen.cert_key), (os.path.abspath("server.pem"),) * 2)
        self.assertEqual((listen.interface, listen.backlog), ("", LISTEN_BACKLOG))
        self.assertEqual(parse_ssl("ssl:1:privateKey=both.pem").cert_key, os.path.abspath("both.pem"))

    def test_positional_parameters_and_escapes(self) -> None:
        listen = parse_ssl(r"SSL:6697:my\:key.pem:cert\=1.pem", client_ca="ca.pem")
        self.assertEqual(
            (listen.port, listen.private_key, listen.cert_key),
            (6697, os.path.abspath("my:key.pem"), os.path.abspath("cert=1.pem")),
        )
        self.assertEqual(listen.client_ca, os.path.abspath("ca.pem"))

    def test_mistakes_are_config_errors(self) -> None:
        for description, message in [
            ("ssl:6697:sslmethod=TLSv1_METHOD", "sslmethod= is not supported"),
            ("ssl:6697:nonsense=1", "unknown parameter 'nonsense'"),
            ("ssl:x", "whole numbers"),
            ("ssl:privateKey=k.pem", "names no port"),
            ("tcp:6697", "not an ssl: endpoint"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                parse_ssl(description)
            self.assertIn(message, str(caught.exception), description)


class ContextTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = CertificateAuthority()
        self.directory = tempdir(self)

    def test_a_key_that_does_not_match_its_certificate_is_refused(self) -> None:
        cert, _ = self.ca.server().write(self.directory, "a")
        _, key = self.ca.server().write(self.directory, "b")
        with self.assertRaises(ConfigError) as caught:
            ServerTLS(parse_ssl(f"ssl:0:privateKey={key}:certKey={cert}"))
        self.assertIn("no usable key and certificate", str(caught.exception))

    def test_a_missing_file_is_named(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            ServerTLS(parse_ssl(f"ssl:0:privateKey={self.directory / 'nope.pem'}"))
        self.assertIn("nope.pem", str(caught.exception))

    def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(self) -> None:
        issued = self.ca.server()
        cert, key = issued.write(self.directory, "server")
        for traditional in (False, True):
            key.write_bytes(issued.encrypted_key_pem(traditional))
            with self.assertRaises(ConfigError) as caught:
                ServerTLS(parse_ssl(f"ssl:0:privateKey={key}:certKey={cert}"))
            self.assertIn("is encrypted", str(caught.exception))

    def test_key_and_certificate_in_one_file(self) -> None:
        both = self.directory / "both.pem"
        both.write_bytes(self.ca.server().combined_pem)
        tls = ServerTLS(parse_ssl(f"ssl:0:privateKey={both}"))
        self.assertEqual(tls.certificate.getSubject().commonName, b"localhost")

    def test_client_ca_file_must_hold_a_pem_certificate(self) -> None:
        garbage = self.directory / "garbage.pem"
        garbage.write_text("not a certificate\n")
        for path, message in [(garbage, "holds no PEM certificate"), (self.directory / "none", "cannot be read")]:
            with self.assertRaises(ConfigError) as caught:
                load_certificates(str(path), "--tls-client-ca")
            self.assertIn(message, str(caught.exception))


class ReloadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = CertificateAuthority()
        self.directory = tempdir(self)
        self.first = self.ca.server("localhost")
        self.description = sslDescription(self.directory, self.first)
        self.tls = ServerTLS(parse_ssl(self.description))

    def test_reload_serves_the_new_certificate_to_new_connections(self) -> None:
        old = self.tls.serverConnectionForTLS(None)
        second = self.ca.server("localhost")
        second.write(self.directory, "server")
        with capturedLogs() as events:
            self.assertTrue(self.tls.reload())
        self.assertEqual(self.tls.certificate.original.to_cryptography(), second.certificate)
        self.assertIsNot(self.tls.serverConnectionForTLS(None).get_context(), old.get_context())
        [event] = [e for e in events if e.get("listener") == self.description]
        self.assertEqual(event["log_format"].split(":")[0], "reloaded TLS certificate for {listener}")
        self.assertEqual(self.tls.reloads, 1)

    def test_a_bad_file_at_reload_keeps_the_old_certificate_and_logs_one_error(self) -> None:
        (self.directory / "server.key").write_text("truncated\n")
        with capturedLogs() as events:
            self.assertFalse(self.tls.reload())
        self.assertEqual(self.tls.certificate.original.to_cryptography(), self.first.certificate)
        errors = [e for e in events if e["log_level"].name == "error"]
        self.assertEqual(len(errors), 1, events)
        self.assertEqual(errors[0]["listener"], self.description)
        self.assertNotIn("log_failure", errors[0])
        (self.directory / "server.key").unlink()
        self.assertFalse(self.tls.reload())
        self.assertEqual(self.tls.reloads, 0)


class Recorder(Protocol):
    """The application side of an in-memory TLS client: what arrived, and how it ended."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason


class InMemoryTLS:
    """
    A server-side TLS connection to a ChatFactory on a Clock, and a client whose bytes a
    test carries across by hand (:meth:`pump`), so that a handshake happens when told to.
    """

    def __init__(self, factory: ChatFactory, tls: ServerTLS, client: Any) -> None:
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        self.serverTransport = StringTransport(peerAddress=peer)
        # The factories' clock too: TLS transports gather small writes for one reactor turn.
        clock = self.clock = cast(Clock, factory.clock)
        self.server: TLSMemoryBIOProtocol = TLSMemoryBIOFactory(
            tls, False, Listener(factory, "ssl:test"), clock=clock
        ).buildProtocol(peer)
        self.server.makeConnection(self.serverTransport)
        self.chat = next(iter(factory.connections))
        self.recorder = Recorder()
        self.clientTransport = StringTransport()
        self.client = TLSMemoryBIOFactory(
            client, True, Factory.forProtocol(lambda: self.recorder), clock=clock
        ).buildProtocol(peer)
        self.client.makeConnection(self.clientTransport)

    def settle(self) -> None:
        """Let everything due now happen (gathered writes, the chat's end of turn) and carry the bytes across."""
        for _ in range(5):
            self.clock.advance(0)
            self.pump()

    def send(self, data: bytes) -> None:
        self.client.write(data)
        self.settle()

    def pump(self) -> None:
        while True:
            toServer, toClient = self.clientTransport.value(), self.serverTransport.value()
            if not toServer and not toClient:
                return
            self.clientTransport.clear()
            self.serverTransport.clear()
            if toServer and not self.serverTransport.disconnecting:
                self.server.dataReceived(toServer)
            if toClient:
                self.client.dataReceived(toClient)


class DeadlineTests(SynchronousTestCase):
    """The registration deadline counts from the TCP accept, handshake included, and gives way to the heartbeat."""

    def setUp(self) -> None:
        self.ca = CertificateAuthority()
        self.clock = Clock()
        self.config = ServerConfig(ping=5, timeout=15, register_timeout=10)
        self.factory = ChatFactory(self.config, self.clock)
        self.tls = ServerTLS(parse_ssl(sslDescription(tempdir(self), self.ca.server())))
        self.link = InMemoryTLS(self.factory, self.tls, clientOptions(self.ca))

    def test_a_stalled_handshake_is_cut_at_the_registration_deadline(self) -> None:
        self.clock.advance(self.config.register_timeout - 0.01)
        self.assertFalse(self.link.serverTransport.disconnecting)
        self.clock.advance(0.01)
        self.clock.advance(0)  # the verdict is given one turn after the timer
        self.assertEqual(self.link.chat.closeReason, "register_timeout")
        # The ERR cannot be sent before a handshake: the close grace ends it.
        self.clock.advance(CLOSE_GRACE)
        self.assertTrue(self.link.serverTransport.disconnected)  # StringTransport's mark of an abort

    def test_handshake_time_counts_toward_the_registration_deadline(self) -> None:
        self.clock.advance(self.config.register_timeout * 0.9)
        self.link.settle()
        self.assertIn(b"HELLO hbchat/1", self.link.recorder.received)
        self.clock.advance(self.config.register_timeout * 0.1)
        self.link.settle()
        self.assertTrue(self.link.recorder.received.endswith(wire.ERR_REGISTRATION_TIMEOUT))

    def test_the_registration_timer_gives_way_to_the_heartbeat(self) -> None:
        self.link.settle()
        self.link.send(b"NICK alice\n")
        self.assertIn(b"WELCOME alice ", self.link.recorder.received)
        # One idle timer (the heartbeat's), one pinger; nothing left of the registration deadline.
        # (Both are on the connections' shared clocks, hbchat.coarseclock.)
        calls = [*self.factory.pingerClock.getDelayedCalls(), *self.factory.deadlineClock.getDelayedCalls()]
        due = sorted(call.getTime() for call in calls)
        self.assertEqual(due, [self.config.ping, self.config.timeout])
        self.clock.advance(self.config.register_timeout)
        self.assertFalse(self.link.serverTransport.disconnecting)


class IdentityTests(SynchronousTestCase):
    """--tls-identity, on connections in memory."""

    def setUp(self) -> None:
        self.ca = CertificateAuthority()
        self.directory = tempdir(self)
        self.clock = Clock()
        ca = str(self.ca.write(self.directory))
        self.config = ServerConfig(tls_client_ca=ca, tls_identity=True)
        self.factory = ChatFactory(self.config, self.clock, identity_refusal=identity_refusal)
        self.tls = ServerTLS(parse_ssl(sslDescription(self.directory, self.ca.server()), ca))

    def nick(self, certificate: Issued, nick: bytes) -> bytes:
        link = InMemoryTLS(self.factory, self.tls, clientOptions(self.ca, certificate=certificate))
        link.settle()
        link.send(b"NICK " + nick + b"\n")
        return link.recorder.received.split(b"\n", 1)[1]

    def test_nick_equal_to_the_certificates_common_name_is_welcomed(self) -> None:
        self.assertTrue(self.nick(self.ca.client("alice"), b"alice").startswith(b"WELCOME alice "))

    def test_another_nick_is_err_401_and_counts_as_a_failed_login(self) -> None:
        self.assertEqual(self.nick(self.ca.client("alice"), b"bob"), wire.ERR_UNAUTHORIZED)
        self.assertEqual(self.factory.stats.authFailures, 1)

    def test_the_comparison_is_case_sensitive(self) -> None:
        self.assertEqual(self.nick(self.ca.client("alice"), b"Alice"), wire.ERR_UNAUTHORIZED)

    def test_with_auth_too_the_certificate_names_the_nick_and_the_password_confirms_it(self) -> None:
        self.factory = ChatFactory(
            self.config,
            self.clock,
            InMemoryUsernamePasswordDatabaseDontUse(alice=b"pw"),
            identity_refusal=identity_refusal,
        )
        alice = self.ca.client("alice")
        self.assertEqual(self.nick(alice, b"alice"), wire.ERR_UNAUTHORIZED)
        self.assertEqual(self.nick(alice, b"bob pw"), wire.ERR_UNAUTHORIZED)
        self.assertTrue(self.nick(alice, b"alice pw").startswith(b"WELCOME alice "))

    def test_a_connection_without_tls_cannot_prove_a_nick(self) -> None:
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40001))
        protocol = self.factory.buildProtocol(None)
        protocol.makeConnection(transport)
        self.assertEqual(identity_refusal(transport, b"alice"), "no client certificate")
        protocol.dataReceived(b"NICK alice\n")
        self.clock.advance(0)
        self.assertTrue(transport.value().endswith(wire.ERR_UNAUTHORIZED))

    def test_the_third_mismatch_closes_the_connection(self) -> None:
        link = InMemoryTLS(self.factory, self.tls, clientOptions(self.ca, certificate=self.ca.client("alice")))
        link.settle()
        link.send(b"NICK bob\nNICK carol\nNICK dave\n")
        self.assertEqual(link.recorder.received.count(wire.ERR_UNAUTHORIZED), 3)
        self.assertEqual(link.chat.closeReason, "unauthorized")


class HalfClientHello(Protocol):
    """A TCP client that sends ``data`` (maybe nothing) and waits; records when it was closed."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.openedAt = 0.0
        self.closedAt: float | None = None
        self.received = b""
        self.whenClosed: Any = None

    def connectionMade(self) -> None:
        self.openedAt = reactor.seconds()
        if self.data:
            assert self.transport is not None
            self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.closedAt = reactor.seconds()
        if self.whenClosed is not None:
            self.whenClosed.callback(None)


#: A TLS record header announcing a 512-byte ClientHello, and its first few bytes.
HALF_CLIENT_HELLO = b"\x16\x03\x01\x02\x00" + b"\x01\x00\x01\xfc\x03\x03" + b"\x00" * 16


class TLSIntegrationTests(ChatTestCase):
    """ssl: listeners on real loopback sockets, built by the twistd options as in production."""

    def setUp(self) -> None:
        super().setUp()
        self.ca = CertificateAuthority()
        self.directory = tempdir(self)

    def serve(self, server: Issued | None = None, *arguments: str) -> Any:
        description = sslDescription(self.directory, server or self.ca.server())
        self.service = self.startService("--listen", description, "--ping", "5", "--timeout", "30", *arguments)
        return self.service, tcpPortOf(self.service.factory)

    @inlineCallbacks
    def connectTLS(self, port: int, name: str, options: Any) -> Any:
        endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE))
        client = yield self._connect(endpoint, LineClient(name))
        return client

    @inlineCallbacks
    def assertRefused(self, client: LineClient, alert: str) -> Any:
        """The handshake failed: no HELLO, and the connection ended with a TLS error naming ``alert``."""
        [reason] = yield within(client.whenLost(), DEADLINE, f"{client.name}: the refused connection closing")
        self.assertEqual(client.lines, [])
        self.assertTrue(reason.check(SSL.Error), reason)
        self.assertIn(alert, str(reason.value))

    @inlineCallbacks
    def test_the_soft_output_bound_is_set_on_the_tcp_transport_beneath_tls(self) -> Any:
        service, port = self.serve(None, "--sendq-soft", "100000")
        alice = yield self.connectTLS(port, "alice", clientOptions(self.ca))
        yield self.register(alice, "alice")
        (protocol,) = service.factory.connections
        self.assertEqual(protocol.transport.transport.bufferSize, 100_000)

    @inlineCallbacks
    def test_over_max_handshakes_a_tls_connection_waits_until_the_oldest_makes_way(self) -> Any:
        service, port = self.serve(None, "--max-handshakes", "1", "--register-timeout", "60")
        first = yield self.connectTLS(port, "first", clientOptions(self.ca))
        yield first.waitForLine(r"HELLO .*")
        # TCP is established by the kernel, but the server accepts it (and handshakes) only
        # once the unregistered first has had its grace (0.1 s here, not the 60 s timeout).
        second = yield self.connectTLS(port, "second", clientOptions(self.ca))
        yield second.waitForLine(r"HELLO .*")
        yield first.waitForLine(r"ERR 503 too many connections registering")
        self.assertEqual(service.factory.handshaking, 1)
        yield self.register(second, "second")

    @inlineCallbacks
    def test_plain_tls_chat_works(self) -> Any:
        _, port = self.serve()
        alice = yield self.connectTLS(port, "alice", clientOptions(self.ca))
        yield self.register(alice, "alice")
        alice.sendLine("SAY over TLS")
        yield alice.waitForLine(r"MSG \d+ alice over TLS")

    @inlineCallbacks
    def test_mutual_tls_with_a_certificate_from_the_client_ca_chats(self) -> Any:
        _, port = self.serve(None, "--tls-client-ca", str(self.ca.write(self.directory)))
        alice = yield self.connectTLS(port, "alice", clientOptions(self.ca, certificate=self.ca.client("alice")))
        yield self.register(alice, "alice")

    @inlineCallbacks
    def test_mutual_tls_refuses_a_client_without_a_certificate(self) -> Any:
        _, port = self.serve(None, "--tls-client-ca", str(self.ca.write(self.directory)))
        with capturedLogs() as events:
            client = yield self.connectTLS(port, "anonymous", clientOptions(self.ca))
            yield self.assertRefused(client, "certificate required")
            yield within(self._noConnections(), DEADLINE, "the server forgetting the connection")
        closes = [e for e in events if e.get("log_format", "").startswith("{peer} closed")]
        self.assertEqual(len(closes), 1, events)
        self.assertEqual(closes[0]["log_level"].name, "info")
        self.assertEqual(closes[0]["reason"], "tls_error")
        self.assertEqual(self.service.factory.stats.closes["tls_error"], 1)

    @inlineCallbacks
    def test_mutual_tls_takes_a_client_ca_that_is_an_intermediate(self) -> Any:
        intermediate = self.ca.intermediate()
        self.serve(None, "--tls-client-ca", str(intermediate.write(self.directory, "intermediate")))
        port = tcpPortOf(self.service.factory)
        alice = yield self.connectTLS(port, "alice", clientOptions(self.ca, certificate=intermediate.client("alice")))
        yield alice.waitForLine(r"HELLO .*")

    @inlineCallbacks
    def test_mutual_tls_refuses_a_certificate_from_another_ca(self) -> Any:
        _, port = self.serve(None, "--tls-client-ca", str(self.ca.write(self.directory)))
        stranger = CertificateAuthority("another CA").client("alice")
        client = yield self.connectTLS(port, "stranger", clientOptions(self.ca, certificate=stranger))
        yield self.assertRefused(client, "unknown ca")

    @inlineCallbacks
    def test_identity_refuses_another_nick_and_welcomes_its_own(self) -> Any:
        _, port = self.serve(None, "--tls-client-ca", str(self.ca.write(self.directory)), "--tls-identity")
        alice = yield self.connectTLS(port, "alice", clientOptions(self.ca, certificate=self.ca.client("alice")))
        yield alice.waitForLine(r"HELLO .*")
        alice.sendLine("NICK bob")
        yield alice.waitForLine(r"ERR 401 invalid nick or password")
        yield self.register(alice, "alice")

    @inlineCallbacks
    def test_a_verifying_client_rejects_a_certificate_for_another_host_name(self) -> Any:
        _, port = self.serve(self.ca.server("chat.example"))
        client = yield self.connectTLS(port, "client", clientOptions(self.ca, hostname="localhost"))
        [reason] = yield within(client.whenLost(), DEADLINE, "the client giving up")
        self.assertEqual(client.lines, [])
        self.assertIn("localhost", reason.getErrorMessage())

    @inlineCallbacks
    def test_a_verifying_client_rejects_a_certificate_from_an_untrusted_ca(self) -> Any:
        _, port = self.serve(CertificateAuthority("self-made").server())
        client = yield self.connectTLS(port, "client", clientOptions(self.ca))
        [reason] = yield within(client.whenLost(), DEADLINE, "the client giving up")
        self.assertEqual(client.lines, [])
        self.assertIn("certificate verify failed", reason.getErrorMessage())

    @inlineCallbacks
    def test_a_verifying_client_rejects_an_expired_certificate(self) -> Any:
        _, port = self.serve(self.ca.server(expired=True))
        client = yield self.connectTLS(port, "client", clientOptions(self.ca))
        [reason] = yield within(client.whenLost(), DEADLINE, "the client giving up")
        self.assertEqual(client.lines, [])
        self.assertIn("certificate verify failed", reason.getErrorMessage())

    @inlineCallbacks
    def test_reload_serves_new_connections_the_new_certificate_while_old_ones_chat_on(self) -> Any:
        service, port = self.serve(self.ca.server("localhost"))
        old = yield self.connectTLS(port, "old", clientOptions(self.ca))
        yield self.register(old, "old")
        oldServed = Certificate.peerFromTransport(old.transport)

        second = self.ca.server("localhost")
        second.write(self.directory, "server")
        service.reloadTLS()
        new = yield self.connectTLS(port, "new", clientOptions(self.ca))
        yield self.register(new, "new")
        self.assertEqual(Certificate.peerFromTransport(new.transport).original.to_cryptography(), second.certificate)
        self.assertNotEqual(oldServed.original.to_cryptography(), second.certificate)
        old.sendLine("SAY still here")
        yield new.waitForLine(r"MSG \d+ old still here")

    @inlineCallbacks
    def test_a_connection_that_never_starts_the_handshake_is_cut_at_the_registration_deadline(self) -> Any:
        yield self._assertCutAtDeadline(b"")

    @inlineCallbacks
    def test_a_connection_that_stalls_in_the_client_hello_is_cut_at_the_registration_deadline(self) -> Any:
        yield self._assertCutAtDeadline(HALF_CLIENT_HELLO)

    @inlineCallbacks
    def _assertCutAtDeadline(self, data: bytes) -> Any:
        registerTimeout = 1.0
        _, port = self.serve(None, "--register-timeout", str(registerTimeout))
        staller = HalfClientHello(data)
        closed = staller.whenClosed = within(Deferred(), DEADLINE, "the server cutting the stalled handshake")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE)
        yield connectProtocol(endpoint, staller)
        yield closed
        assert staller.closedAt is not None
        took = staller.closedAt - staller.openedAt
        # Registration deadline, then the close grace (the ERR cannot go out before a handshake);
        # the upper bound is generous for a busy machine.
        self.assertGreaterEqual(took, registerTimeout * 0.9)
        self.assertLess(took, registerTimeout + CLOSE_GRACE + 10)
        self.assertNotIn(b"HELLO", staller.received)

    @inlineCallbacks
    def _noConnections(self) -> Any:
        """Fires once the server has no connection left (checked every 50 ms)."""
        while self.service.factory.connections:
            yield deferLater(reactor, 0.05, lambda: None)


def harmlessAfterStop(before: Any) -> Any:
    """SIGHUP's handler once the service stopped: the one before, but ignored where that was death."""
    return signal.SIG_IGN if before in (signal.SIG_DFL, None) else before


class HangupTests(ChatTestCase):
    """SIGHUP reloads the TLS listeners' files, or says there is nothing to reload; it never kills."""

    @inlineCallbacks
    def waitForOutcome(self, service: Any, outcome: str) -> Any:
        outcomes = service.factory.stats.reloads
        deadline = reactor.seconds() + DEADLINE
        while outcomes[outcome] == 0 and reactor.seconds() < deadline:
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(outcomes[outcome], 1)

    @inlineCallbacks
    def test_sighup_reloads_the_certificates_and_stopping_leaves_it_harmless(self) -> Any:
        ca = CertificateAuthority()
        directory = tempdir(self)
        before = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, before)
        service = self.startService("--listen", sslDescription(directory, ca.server()))
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), before)
        [tls] = service.tls
        second = ca.server()
        second.write(directory, "server")
        os.kill(os.getpid(), signal.SIGHUP)
        yield self.waitForOutcome(service, "reloaded")
        self.assertEqual(tls.reloads, 1)
        self.assertEqual(tls.certificate.original.to_cryptography(), second.certificate)
        yield service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), harmlessAfterStop(before))

    @inlineCallbacks
    def test_sighup_still_reloads_while_the_server_drains(self) -> Any:
        ca = CertificateAuthority()
        before = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, before)
        service = self.startService("--listen", sslDescription(tempdir(self), ca.server()), "--drain", "1")
        # A connection that never completes its handshake keeps the drain going for a while.
        yield self._connect(
            TCP4ClientEndpoint(reactor, "127.0.0.1", tcpPortOf(service.factory), timeout=DEADLINE), LineClient("x")
        )
        stopped = service.stopService()
        self.assertFalse(stopped.called)
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), before)
        os.kill(os.getpid(), signal.SIGHUP)
        yield self.waitForOutcome(service, "reloaded")
        yield within(stopped, DEADLINE, "the drain")
        self.assertEqual(signal.getsignal(signal.SIGHUP), harmlessAfterStop(before))

    @inlineCallbacks
    def test_without_tls_listeners_sighup_logs_nothing_to_reload(self) -> Any:
        before = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, before)
        service = self.startService("--listen", "tcp:0:interface=127.0.0.1")
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), before)
        with capturedLogs() as events:
            os.kill(os.getpid(), signal.SIGHUP)
            yield self.waitForOutcome(service, "nothing")
        said = [event for event in events if event["log_namespace"] == "hbchat.hangup"]
        self.assertEqual([event["log_format"] for event in said], ["SIGHUP: nothing to reload (no ssl: listener)"])
        yield service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), harmlessAfterStop(before))

    def test_the_reload_count_is_a_metric(self) -> None:
        service = self.startService("--listen", "tcp:0:interface=127.0.0.1")
        service.reloadTLS()
        values = scrape(service.factory)
        self.assertEqual(values["hbchat_reloads_total{outcome=nothing}"], 1)
        self.assertEqual(values["hbchat_reloads_total{outcome=reloaded}"], 0)
        self.assertEqual(values["hbchat_reloads_total{outcome=failed}"], 0)
