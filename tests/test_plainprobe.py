"""
A plain ``tcp:`` client pointed at a TLS port (hbchat.client.plainprobe): told so in one line
naming the ``tls:`` endpoint, instead of "the server was silent" and retries for ever.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import INegotiated
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import alsoProvides

from hbchat.client.factory import ChatClientFactory
from hbchat.client.plainprobe import PROBE, closed_unheard, silent_unheard, tls_address
from hbchat.client.protocol import HELLO_TIMEOUT, ChatClientProtocol
from tests.test_cli import ClientProcess
from tests.test_cli_tls import TLSCliTestCase
from tests.test_client import RecordingObserver

TLS_PORT = IPv4Address("TCP", "127.0.0.1", 6697)


class AddressTests(SynchronousTestCase):
    def test_an_ipv4_peer_is_shown_and_suggested_as_tls(self) -> None:
        self.assertEqual(tls_address(TLS_PORT), ("127.0.0.1:6697", "tls:127.0.0.1:6697"))

    def test_an_ipv6_peer_is_bracketed_and_its_colons_escaped(self) -> None:
        self.assertEqual(tls_address(IPv6Address("TCP", "::1", 6697)), ("[::1]:6697", "tls:\\:\\:1:6697"))

    def test_a_unix_socket_is_never_taken_for_a_tls_port(self) -> None:
        self.assertIsNone(tls_address(UNIXAddress(b"/run/hbchat.sock")))


class VerdictTests(SynchronousTestCase):
    def test_a_clean_close_unheard_names_the_tls_endpoint(self) -> None:
        text = closed_unheard("127.0.0.1:6697", "tls:127.0.0.1:6697", Failure(ConnectionDone()))
        assert text is not None
        self.assertIn("does not speak plain hbchat", text)
        self.assertTrue(text.endswith("is it a TLS port? then use tls:127.0.0.1:6697"), text)

    def test_a_reset_says_nothing_of_tls(self) -> None:
        self.assertIsNone(closed_unheard("127.0.0.1:6697", "tls:127.0.0.1:6697", Failure(ConnectionLost())))

    def test_silence_keeps_the_timeout_and_adds_the_hint(self) -> None:
        text = silent_unheard("127.0.0.1:6697", "tls:127.0.0.1:6697", 10.0)
        self.assertTrue(text.startswith("the server at 127.0.0.1:6697 was silent for 10.0s"), text)
        self.assertIn("is it a TLS port? then use tls:127.0.0.1:6697", text)

    def test_the_probe_is_only_empty_lines_longer_than_a_tls_record_header(self) -> None:
        self.assertEqual(PROBE.replace(b"\r\n", b""), b"")
        self.assertGreater(len(PROBE), 5)


class ProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.observer = RecordingObserver()
        self.factory = ChatClientFactory("bot", self.observer, clock=self.clock)
        self.factory.probePlain = True

    def connect(self, peer: Any = TLS_PORT, tls: bool = False) -> tuple[ChatClientProtocol, StringTransport]:
        protocol = self.factory.buildProtocol(peer)
        assert isinstance(protocol, ChatClientProtocol)
        transport = StringTransport(peerAddress=peer)
        if tls:
            alsoProvides(transport, INegotiated)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_a_plain_tcp_connection_starts_with_the_probe(self) -> None:
        _, transport = self.connect()
        self.assertEqual(transport.value(), PROBE)

    def test_a_tls_connection_sends_no_probe(self) -> None:
        _, transport = self.connect(tls=True)
        self.assertEqual(transport.value(), b"")

    def test_without_probe_plain_nothing_is_sent_first(self) -> None:
        self.factory.probePlain = False
        _, transport = self.connect()
        self.assertEqual(transport.value(), b"")

    def test_a_clean_close_before_any_byte_gives_up_naming_tls(self) -> None:
        protocol, _ = self.connect()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.observer.events), 1, self.observer.events)
        self.assertTrue(self.observer.events[0].startswith("gave up: the server at 127.0.0.1:6697 does not speak"))
        self.assertFalse(self.factory.continueTrying)

    def test_a_close_after_the_hello_is_an_ordinary_loss(self) -> None:
        protocol, _ = self.connect()
        protocol.dataReceived(b"HELLO hbchat/1 ping=5 timeout=15\n")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(self.factory.continueTrying)
        self.assertNotIn("TLS", " ".join(self.observer.events))

    def test_silence_until_the_hello_deadline_hints_at_tls_and_retries(self) -> None:
        protocol, _ = self.connect()
        self.clock.advance(HELLO_TIMEOUT)
        self.clock.advance(0)  # the verdict is judged one turn later
        self.assertIn("is it a TLS port? then use tls:127.0.0.1:6697", protocol.problem or "")
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertTrue(self.factory.continueTrying)
        self.assertEqual(self.observer.events, [f"disconnected: {protocol.problem}"])

    def test_a_hello_in_the_turn_after_its_deadline_is_taken(self) -> None:
        protocol, transport = self.connect()
        # A stall of ours: the HELLO is read in the turn the deadline fired, after it.
        self.clock.callLater(HELLO_TIMEOUT, protocol.dataReceived, b"HELLO hbchat/1 ping=5 timeout=15\n")
        self.clock.advance(HELLO_TIMEOUT)
        self.assertIsNone(protocol.problem)
        self.assertFalse(transport.disconnecting)

    def test_the_hello_deadline_does_not_outlive_the_connection(self) -> None:
        protocol, _ = self.connect()
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertFalse(protocol.helloWait.running)


class CliTests(TLSCliTestCase):
    @inlineCallbacks
    def test_a_tcp_client_at_a_tls_port_stops_in_one_line_naming_tls(self) -> Any:
        _, port = self.tls.start()
        process: ClientProcess = yield self.pipe(f"tcp:127.0.0.1:{port}", "--nick", "bot")
        self.assertEqual(process.exitCode(), 1, process.output())
        self.assertEqual(
            process.errLines(),
            [
                f"hbchat-client: the server at 127.0.0.1:{port} does not speak plain hbchat (it closed the "
                f"connection at our first bytes, without a HELLO); is it a TLS port? then use tls:127.0.0.1:{port}"
            ],
            process.output(),
        )
        self.assertNotIn("reconnecting", process.output())
