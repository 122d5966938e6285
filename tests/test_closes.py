"""
How the server tells why a connection closed (hbchat.server.closes): the log line
``{peer} closed ({reason}): {why}`` says what happened in words, never Twisted's "closed
cleanly" for a client that left without QUIT, "non-clean fashion" for a clean TLS QUIT, or
OpenSSL's raw error tuples; a TLS connection that ends before its handshake is a failed
handshake (``tls_error``).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from typing import Any

from OpenSSL import SSL
from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from hbchat.ops.stats import CLOSE_REASONS
from hbchat.server.closes import PURPOSES, openssl_reasons, peer_ending, purpose_why
from hbchat.testing import FakeServer
from tests.test_integration import DEADLINE, ChatTestCase, tcpPortOf, within
from tests.test_tls import sslDescription, tempdir
from tests.tlscerts import CertificateAuthority


def tlsError(*reasons: str) -> Failure:
    return Failure(SSL.Error([("SSL routines", "", reason) for reason in reasons]))


def closedLines(events: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["reason"], e["why"]) for e in events if e.get("log_format", "").startswith("{peer} closed")]


class PeerEndingTests(SynchronousTestCase):
    def test_a_plain_client_closing_without_quit_says_so(self) -> None:
        ending = peer_ending(Failure(ConnectionDone()), tls=False, handshaken=True)
        self.assertEqual(ending.reason, "error")
        self.assertEqual(ending.why, "the client closed the connection without QUIT")

    def test_a_lost_plain_connection_is_not_called_clean(self) -> None:
        ending = peer_ending(Failure(ConnectionLost()), tls=False, handshaken=True)
        self.assertEqual(ending.reason, "error")
        self.assertIn("lost without QUIT", ending.why)

    def test_a_tls_error_after_the_handshake_is_in_openssls_words(self) -> None:
        ending = peer_ending(tlsError("decryption failed or bad record mac"), tls=True, handshaken=True)
        self.assertEqual(ending, ending.__class__("tls_error", "TLS error: decryption failed or bad record mac"))

    def test_a_tls_error_in_the_handshake_is_a_failed_handshake_with_a_hint(self) -> None:
        ending = peer_ending(tlsError("wrong version number"), tls=True, handshaken=False)
        self.assertEqual(ending.reason, "tls_error")
        self.assertEqual(
            ending.why, "TLS handshake failed: wrong version number (not TLS: a plain-text client on a TLS port?)"
        )

    def test_a_tls_connection_closed_before_its_handshake_is_a_failed_handshake(self) -> None:
        for failure, how in ((ConnectionDone(), "closed"), (ConnectionLost(), "dropped")):
            ending = peer_ending(Failure(failure), tls=True, handshaken=False)
            self.assertEqual(ending.reason, "tls_error")
            self.assertEqual(ending.why, f"TLS handshake failed: the client {how} the connection before it was done")

    def test_a_tls_connection_lost_after_its_handshake_is_not_a_tls_error(self) -> None:
        ending = peer_ending(Failure(ConnectionLost()), tls=True, handshaken=True)
        self.assertEqual(ending.reason, "error")
        self.assertIn("without QUIT", ending.why)
        self.assertNotIn("non-clean", ending.why)


class WordsTests(SynchronousTestCase):
    def test_openssl_reasons_never_show_the_tuples(self) -> None:
        text = openssl_reasons(tlsError("peer did not return a certificate", "other").value)
        self.assertEqual(text, "peer did not return a certificate (no client certificate); other")

    def test_an_openssl_error_without_reasons_still_says_something(self) -> None:
        self.assertEqual(openssl_reasons(SSL.Error([])), "an error without a reason from OpenSSL")

    def test_a_close_on_purpose_is_told_by_its_reason_not_the_transport(self) -> None:
        self.assertEqual(purpose_why("quit", Failure(ConnectionLost())), "the client quit (QUIT)")

    def test_every_close_on_purpose_has_words(self) -> None:
        self.assertEqual(set(PURPOSES), set(CLOSE_REASONS) - {"error", "tls_error"})


class ServerLogTests(SynchronousTestCase):
    def test_a_client_leaving_without_quit_is_logged_as_such(self) -> None:
        server = FakeServer()
        alice = server.registered("alice")
        with capturedLogs() as events:
            alice.lose(ConnectionDone())
        self.assertEqual(closedLines(events), [("error", "the client closed the connection without QUIT")])

    def test_a_quit_is_logged_as_a_quit_whatever_the_transport_says(self) -> None:
        server = FakeServer()
        alice = server.registered("alice")
        with capturedLogs() as events:
            alice.sendLine("QUIT")
            alice.lose(ConnectionLost())
        self.assertEqual(closedLines(events), [("quit", "the client quit (QUIT)")])

    def test_an_aborted_close_on_purpose_keeps_its_reason(self) -> None:
        server = FakeServer()
        peer = server.connect()
        with capturedLogs() as events:
            server.advance(10)  # the registration timeout
            server.turn()
            peer.lose(ConnectionAborted())
        self.assertEqual(closedLines(events), [("register_timeout", "not registered within --register-timeout")])


class TLSLogTests(ChatTestCase):
    """ssl: listeners on loopback: the log line of each way a TLS connection ends."""

    def setUp(self) -> None:
        super().setUp()
        self.ca = CertificateAuthority()
        directory = tempdir(self)
        self.caFile = str(self.ca.write(directory))
        self.service = self.startService("--listen", sslDescription(directory, self.ca.server()))
        self.port = tcpPortOf(self.service.factory)

    @inlineCallbacks
    def closedLine(self, client: Any) -> Any:
        """Runs ``client`` (blocking, in a thread) and fires with the server's one close line."""
        with capturedLogs() as events:
            yield deferToThread(client)
            yield within(self.noConnections(), DEADLINE, "the server forgetting the connection")
        lines = closedLines(events)
        self.assertEqual(len(lines), 1, events)
        self.assertNotIn("('SSL routines'", lines[0][1])
        return lines[0]

    @inlineCallbacks
    def noConnections(self) -> Any:
        while self.service.factory.connections:
            yield task.deferLater(reactor, 0.01, lambda: None)

    def tlsClient(self, lines: list[bytes], until: bytes) -> Any:
        """A verifying Python ssl client: says ``lines``, reads until ``until``, closes its socket."""

        def client() -> None:
            context = ssl.create_default_context(cafile=self.caFile)
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"".join(lines))
                    received = b""
                    while until not in received:
                        data = tls.recv(4096)
                        if not data:
                            break
                        received += data

        return client

    @inlineCallbacks
    def test_a_clean_tls_quit_is_logged_as_a_quit(self) -> Any:
        reason, why = yield self.closedLine(self.tlsClient([b"NICK alice\r\n", b"QUIT\r\n"], b"BYE quit"))
        self.assertEqual((reason, why), ("quit", "the client quit (QUIT)"))

    @inlineCallbacks
    def test_a_tls_client_leaving_without_quit_is_logged_as_such(self) -> Any:
        reason, why = yield self.closedLine(self.tlsClient([b"NICK alice\r\n"], b"WELCOME"))
        self.assertEqual(reason, "error")
        self.assertTrue(why.startswith("the connection ended without QUIT"), why)

    @inlineCallbacks
    def test_a_plain_text_client_on_a_tls_port_is_a_failed_handshake(self) -> Any:
        def client() -> None:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw:
                raw.sendall(b"NICK alice\r\n")
                raw.recv(100)

        reason, why = yield self.closedLine(client)
        self.assertEqual(reason, "tls_error")
        # OpenSSL 3.5 says "wrong version number", 3.3 "packet length too long": the hint is the same.
        self.assertTrue(why.startswith("TLS handshake failed: "), why)
        self.assertIn("(not TLS: a plain-text client on a TLS port?)", why)

    @inlineCallbacks
    def test_a_connection_closed_before_the_handshake_is_a_failed_handshake(self) -> Any:
        def client() -> None:
            socket.create_connection(("127.0.0.1", self.port), timeout=30).close()

        reason, why = yield self.closedLine(client)
        self.assertEqual(reason, "tls_error")
        self.assertTrue(why.startswith("TLS handshake failed: the client "), why)
