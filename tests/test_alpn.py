"""
ALPN on ssl: listeners (hbchat.tls.select_alpn): a client that offers ALPN, whatever it
offers, gets the TLS connection and the chat; ``http/1.1`` is chosen when offered, and with
nothing in common the handshake goes on without ALPN (RFC 7301), never with an alert.

The integration tests use Python's own ``ssl`` module as the client (a blocking socket in
a thread), as browsers and Go clients do: ALPN offered in the ClientHello.  The
``openssl s_client -alpn`` probes are in tests.test_tlsscan.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from OpenSSL import SSL
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.tls import ALPN_PROTOCOLS, choose_alpn, select_alpn
from tests.test_integration import ChatTestCase, tcpPortOf
from tests.test_metrics import scrape
from tests.test_tls import sslDescription, tempdir
from tests.tlscerts import CertificateAuthority


class ChooseTests(SynchronousTestCase):
    def test_http_1_1_is_chosen_when_offered(self) -> None:
        self.assertEqual(choose_alpn([b"h2", b"http/1.1"]), b"http/1.1")

    def test_nothing_in_common_chooses_nothing(self) -> None:
        self.assertIsNone(choose_alpn([b"foo"]))
        self.assertIsNone(choose_alpn([b"h2"]))

    def test_the_servers_preference_wins_over_the_clients_order(self) -> None:
        self.assertEqual(choose_alpn([b"b", b"a"], acceptable=[b"a", b"b"]), b"a")

    def test_http_1_1_is_what_the_listeners_offer(self) -> None:
        self.assertEqual(ALPN_PROTOCOLS, (b"http/1.1",))

    def test_no_overlap_tells_openssl_to_go_on_without_alpn(self) -> None:
        # Never b"": OpenSSL answers a zero-length choice with a fatal "internal error" alert.
        self.assertIs(select_alpn(None, [b"foo"]), SSL.NO_OVERLAPPING_PROTOCOLS)  # type: ignore[arg-type]
        self.assertEqual(select_alpn(None, [b"http/1.1"]), b"http/1.1")  # type: ignore[arg-type]


class PythonClientTests(ChatTestCase):
    """Python's ssl module, offering ALPN, against an ssl: listener on loopback."""

    def setUp(self) -> None:
        super().setUp()
        ca = CertificateAuthority()
        directory = tempdir(self)
        self.caFile = str(ca.write(directory))
        self.description = sslDescription(directory, ca.server("localhost", "127.0.0.1"))
        self.service = self.startService("--listen", self.description)
        self.port = tcpPortOf(self.service.factory)

    def handshake(self, protocols: list[str]) -> Any:
        """Fires with (the ALPN protocol chosen, the server's first line) of one verified connection."""

        def run() -> tuple[str | None, bytes]:
            context = ssl.create_default_context(cafile=self.caFile)
            context.set_alpn_protocols(protocols)
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    chosen = tls.selected_alpn_protocol()
                    line = b""
                    while not line.endswith(b"\n"):
                        data = tls.recv(1024)
                        if not data:
                            break
                        line += data
                    return chosen, line

        return deferToThread(run)

    @inlineCallbacks
    def test_a_client_offering_http_1_1_gets_it_and_the_greeting(self) -> Any:
        chosen, line = yield self.handshake(["h2", "http/1.1"])
        self.assertEqual(chosen, "http/1.1")
        self.assertTrue(line.startswith(b"HELLO hbchat/1 "), line)

    @inlineCallbacks
    def test_a_client_offering_only_unknown_protocols_connects_without_alpn(self) -> Any:
        chosen, line = yield self.handshake(["foo"])
        self.assertIsNone(chosen)
        self.assertTrue(line.startswith(b"HELLO hbchat/1 "), line)

    @inlineCallbacks
    def test_a_client_offering_only_h2_connects_without_alpn(self) -> Any:
        chosen, line = yield self.handshake(["h2"])
        self.assertIsNone(chosen)
        self.assertTrue(line.startswith(b"HELLO hbchat/1 "), line)

    @inlineCallbacks
    def test_alpn_offers_are_counted_by_the_protocol_chosen(self) -> Any:
        yield self.handshake(["h2", "http/1.1"])
        yield self.handshake(["foo"])
        yield self.handshake(["h2"])
        values = scrape(self.service.factory)
        key = f"hbchat_tls_alpn_total{{listener={self.description},protocol="
        self.assertEqual(values[key + "http/1.1}"], 1)
        self.assertEqual(values[key + "none}"], 2)
