"""``--metrics`` bound beyond loopback is warned about, from the address it really listens on."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import capturedLogs
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from hbchat.config import ServerConfig
from hbchat.ops.exposure import WarnIfExposed, reachable_from_elsewhere
from hbchat.ops.observed import ObservedChatFactory as ChatFactory
from hbchat.ops.web import WithMetrics
from tests.test_integration import DEADLINE, within
from tests.test_web import SlowChat


class ReachableTests(unittest.SynchronousTestCase):
    def test_ipv4_loopback_is_local(self) -> None:
        self.assertFalse(reachable_from_elsewhere(IPv4Address("TCP", "127.0.0.1", 9464)))
        self.assertFalse(reachable_from_elsewhere(IPv4Address("TCP", "127.8.9.10", 9464)))

    def test_ipv6_loopback_is_local(self) -> None:
        self.assertFalse(reachable_from_elsewhere(IPv6Address("TCP", "::1", 9464)))
        self.assertFalse(reachable_from_elsewhere(IPv6Address("TCP", "::ffff:127.0.0.1", 9464)))

    def test_the_wildcards_are_reachable(self) -> None:
        self.assertTrue(reachable_from_elsewhere(IPv4Address("TCP", "0.0.0.0", 9464)))
        self.assertTrue(reachable_from_elsewhere(IPv6Address("TCP", "::", 9464)))

    def test_a_real_interface_is_reachable(self) -> None:
        self.assertTrue(reachable_from_elsewhere(IPv4Address("TCP", "192.0.2.7", 9464)))
        self.assertTrue(reachable_from_elsewhere(IPv6Address("TCP", "2001:db8::7", 9464)))
        self.assertTrue(reachable_from_elsewhere(IPv6Address("TCP", "fe80::1%eth0", 9464)))

    def test_a_unix_socket_is_local(self) -> None:
        self.assertFalse(reachable_from_elsewhere(UNIXAddress(b"/run/hbchat-metrics.sock")))


class FakePort:
    def __init__(self, address: Any) -> None:
        self.address = address

    def getHost(self) -> Any:
        return self.address


class FakeEndpoint:
    def __init__(self, address: Any) -> None:
        self.address = address

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        return succeed(cast(IListeningPort, FakePort(self.address)))


def warnings(address: Any) -> list[dict[str, Any]]:
    endpoint = WarnIfExposed(cast(IStreamServerEndpoint, FakeEndpoint(address)), "tcp:9464")
    with capturedLogs() as events:
        endpoint.listen(Factory())
    return [event for event in events if event["log_namespace"] == "hbchat.exposure.WarnIfExposed"]


class WarnIfExposedTests(unittest.SynchronousTestCase):
    def test_it_is_an_endpoint(self) -> None:
        endpoint = WarnIfExposed(cast(IStreamServerEndpoint, FakeEndpoint(None)), "tcp:9464")
        self.assertTrue(verifyObject(IStreamServerEndpoint, endpoint))

    def test_listening_on_every_interface_is_a_warning_naming_the_endpoint_and_address(self) -> None:
        [event] = warnings(IPv4Address("TCP", "0.0.0.0", 9464))
        self.assertEqual(event["log_level"].name, "warn")
        self.assertEqual(event["endpoint"], "tcp:9464")
        self.assertEqual(event["address"], "0.0.0.0:9464")
        self.assertIn("interface=127.0.0.1", event["log_format"])

    def test_listening_on_loopback_is_silent(self) -> None:
        self.assertEqual(warnings(IPv4Address("TCP", "127.0.0.1", 9464)), [])
        self.assertEqual(warnings(IPv6Address("TCP", "::1", 9464)), [])

    def test_a_unix_socket_is_silent(self) -> None:
        self.assertEqual(warnings(UNIXAddress(b"/run/hbchat-metrics.sock")), [])


class MetricsServiceWarningTests(unittest.TestCase):
    """The --metrics service as twistd starts it, on real sockets."""

    def started(self, endpoint: str) -> list[dict[str, Any]]:
        chat = SlowChat()
        chat.finish.callback(None)
        service = WithMetrics(chat, ChatFactory(ServerConfig(), reactor), endpoint, reactor)
        with capturedLogs() as events:
            # As twistd does; a real port listens at once, and the warning comes with it.
            service.privilegedStartService()
            service.startService()
        self.addCleanup(lambda: within(service.stopService(), DEADLINE, "stopping"))
        waiting = service.http._waitingForPort
        self.assertTrue(waiting is not None and waiting.called)
        return [event for event in events if event["log_namespace"] == "hbchat.exposure.WarnIfExposed"]

    def test_without_an_interface_it_warns(self) -> None:
        [event] = self.started("tcp:0")
        self.assertTrue(event["address"].startswith("0.0.0.0:"), event)

    def test_on_loopback_it_does_not_warn(self) -> None:
        events = self.started("tcp:0:interface=127.0.0.1")
        self.assertEqual(events, [])

    def test_on_a_unix_socket_it_does_not_warn(self) -> None:
        events = self.started(f"unix:{self.mktemp()}")
        self.assertEqual(events, [])
