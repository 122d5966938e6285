"""
IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``, what a dual-stack listener sees of an IPv4
client) are the IPv4 address for --max-per-ip, the loopback exemption, logs and /connections.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase

from hbchat.ops.web import describe_connection
from hbchat.server.addresses import describe_peer, limited_host, normal_host
from hbchat.testing import FakeServer, RecordingTransport
from tests.test_integration import ChatTestCase, tcpPortOf


class NormalHostTests(SynchronousTestCase):
    def test_an_ipv4_mapped_address_is_written_as_ipv4(self) -> None:
        self.assertEqual(normal_host("::ffff:127.0.0.1"), "127.0.0.1")
        self.assertEqual(normal_host("::FFFF:192.0.2.7"), "192.0.2.7")

    def test_ipv4_and_other_ipv6_addresses_are_kept(self) -> None:
        self.assertEqual(normal_host("192.0.2.7"), "192.0.2.7")
        self.assertEqual(normal_host("2001:db8::1"), "2001:db8::1")
        self.assertEqual(normal_host("::1"), "::1")
        self.assertEqual(normal_host("fe80::1%eth0"), "fe80::1%eth0")

    def test_something_that_is_not_an_address_is_kept(self) -> None:
        self.assertEqual(normal_host("::ffff:not-an-address"), "::ffff:not-an-address")


class LimitedHostTests(SynchronousTestCase):
    def test_mapped_loopback_is_exempt(self) -> None:
        self.assertIsNone(limited_host(IPv6Address("TCP", "::ffff:127.0.0.1", 4000)))
        self.assertIsNone(limited_host(IPv6Address("TCP", "::ffff:127.9.9.9", 4000)))

    def test_a_mapped_address_counts_as_its_ipv4_address(self) -> None:
        self.assertEqual(limited_host(IPv6Address("TCP", "::ffff:192.0.2.7", 4000)), "192.0.2.7")
        self.assertEqual(limited_host(IPv4Address("TCP", "192.0.2.7", 4000)), "192.0.2.7")

    def test_loopback_and_unix_sockets_are_exempt(self) -> None:
        self.assertIsNone(limited_host(IPv4Address("TCP", "127.0.0.1", 4000)))
        self.assertIsNone(limited_host(IPv6Address("TCP", "::1", 4000)))
        self.assertIsNone(limited_host(UNIXAddress(b"/run/hbchat.sock")))


class DescribePeerTests(SynchronousTestCase):
    def test_a_mapped_peer_is_shown_as_ipv4(self) -> None:
        self.assertEqual(describe_peer(IPv6Address("TCP", "::ffff:127.0.0.1", 35020)), "127.0.0.1:35020")

    def test_an_ipv6_peer_is_bracketed(self) -> None:
        self.assertEqual(describe_peer(IPv6Address("TCP", "2001:db8::1", 35020)), "[2001:db8::1]:35020")

    def test_a_unix_peer_is_named_by_its_path(self) -> None:
        self.assertEqual(describe_peer(UNIXAddress(b"/run/hbchat.sock")), "unix:/run/hbchat.sock")


class MappedPeerLimitTests(SynchronousTestCase):
    def connectFrom(self, server: FakeServer, host: str, port: int) -> RecordingTransport:
        transport = RecordingTransport(peerAddress=IPv6Address("TCP", host, port))
        protocol = server.factory.buildProtocol(transport.getPeer())
        protocol.makeConnection(transport)
        server.turn()
        return transport

    def test_mapped_loopback_connections_are_not_limited_per_address(self) -> None:
        server = FakeServer(max_per_ip=2)
        transports = [self.connectFrom(server, "::ffff:127.0.0.1", 40000 + n) for n in range(5)]
        self.assertTrue(all(transport.value().startswith(b"HELLO") for transport in transports))

    def test_mapped_and_plain_ipv4_connections_share_one_count(self) -> None:
        server = FakeServer(max_per_ip=2)
        plain = RecordingTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        server.factory.buildProtocol(plain.getPeer()).makeConnection(plain)
        self.connectFrom(server, "::ffff:192.0.2.7", 40001)
        third = self.connectFrom(server, "::ffff:192.0.2.7", 40002)
        self.assertEqual(third.value(), b"ERR 503 too many connections from your address\n")

    def test_connections_lists_a_mapped_peer_as_ipv4(self) -> None:
        server = FakeServer()
        self.connectFrom(server, "::ffff:192.0.2.7", 40000)
        (protocol,) = server.factory.connections
        self.assertEqual(describe_connection(protocol, server.clock.seconds())["peer"], "192.0.2.7:40000")


class DualStackListenerTests(ChatTestCase):
    @inlineCallbacks
    def test_ipv4_loopback_clients_of_a_dual_stack_listener_are_exempt_and_shown_as_ipv4(self) -> Any:
        service = self.startService("--listen", r"tcp6:0:interface=\:\:", "--max-per-ip", "2")
        port = tcpPortOf(service.factory)
        clients = []
        for n in range(6):
            client = yield self.connect(port, f"c{n}")  # from 127.0.0.1, over IPv4
            clients.append(client)
        for client in clients:
            yield client.waitForLine(r"HELLO hbchat/1 .*")
        peers = sorted(protocol.peer for protocol in service.factory.connections)
        self.assertEqual(len(peers), 6)
        for peer in peers:
            self.assertRegex(peer, r"^127\.0\.0\.1:\d+$")
