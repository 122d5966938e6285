"""
``--metrics``: /healthz, /readyz, /metrics and /connections over real loopback HTTP.

The chat and its HTTP endpoint are started as ``twistd hbchat ... --metrics ...`` would
start them (``makeService``), on ports the kernel picks; requests go through
``twisted.web.client.Agent``.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime
from typing import Any, cast

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import Service
from twisted.internet import reactor, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.python.usage import UsageError
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.server import Site

from hbchat.config import ServerConfig
from hbchat.ops.observed import ObservedChatFactory as ChatFactory
from hbchat.ops.web import WithMetrics, describe_connection, kernel_send_queue, readiness, unsent_bytes
from hbchat.server.service import ChatService
from hbchat.server.tap import ServerOptions, makeService
from hbchat.testing import FakeServer
from tests.test_integration import DEADLINE, ChatTestCase, tcpPortOf, within

LISTEN = "tcp:0:interface=127.0.0.1"


def httpPortOf(service: WithMetrics) -> int:
    for reader in reactor.getReaders():
        if isinstance(reader, tcp.Port) and reader.factory is service.http.factory:
            return cast(IPv4Address, reader.getHost()).port
    raise unittest.FailTest("the metrics endpoint is not listening")


class MetricsEndpointTests(ChatTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.service = cast(WithMetrics, self.startService("--listen", LISTEN, "--metrics", LISTEN, "--ping", "0.2"))
        self.assertIsInstance(self.service, WithMetrics)
        self.factory = self.service.factory
        self.chatPort = tcpPortOf(self.factory)
        self.httpPort = httpPortOf(self.service)
        self.agent = Agent(reactor)

    @inlineCallbacks
    def get(self, path: str, accept: str | None = None) -> Any:
        """(status, content type, body text) of ``GET path``."""
        headers = Headers({b"accept": [accept.encode()]}) if accept else None
        url = f"http://127.0.0.1:{self.httpPort}{path}".encode()
        response = yield within(self.agent.request(b"GET", url, headers), DEADLINE, f"GET {path}")
        body = yield within(readBody(response), DEADLINE, f"reading GET {path}")
        [content_type] = response.headers.getRawHeaders(b"content-type", [b""])
        return response.code, content_type.decode(), body.decode("utf-8")

    @inlineCallbacks
    def test_healthz_is_200(self) -> Any:
        status, content_type, body = yield self.get("/healthz")
        self.assertEqual(status, 200)
        self.assertTrue(content_type.startswith("text/plain"))
        self.assertTrue(body.startswith("ok"), body)

    @inlineCallbacks
    def test_readyz_is_200_while_listening_then_503_once_the_server_stops(self) -> Any:
        status, _, body = yield self.get("/readyz")
        self.assertEqual((status, body), (200, "ready\n"))
        yield within(self.factory.shutdown(), DEADLINE, "the chat shutting down")
        status, _, body = yield self.get("/readyz")
        self.assertEqual((status, body), (503, "not ready: stopping\n"))
        status, _, _ = yield self.get("/healthz")
        self.assertEqual(status, 200)

    @inlineCallbacks
    def test_readyz_is_503_once_a_listener_stops(self) -> Any:
        [endpoint] = list(cast(ChatService, self.service.chat))
        yield within(cast(Deferred[None], endpoint.stopService()), DEADLINE, "closing the listener")
        status, _, body = yield self.get("/readyz")
        self.assertEqual((status, body), (503, f"not ready: not listening on {LISTEN}\n"))

    @inlineCallbacks
    def test_metrics_is_the_prometheus_text_format(self) -> Any:
        client = yield self.connect(self.chatPort, "alice")
        client.sendLine("NICK alice")
        yield client.waitForLine(r"JOIN \d+ alice")
        yield client.waitForLine(r"PING \d+")  # answered by the client
        status, content_type, body = yield self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(content_type, "text/plain; version=0.0.4; charset=utf-8")
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        }
        self.assertEqual(samples[("hbchat_users_registered", ())], 1)
        self.assertEqual(samples[("hbchat_connections_open", (("listener", LISTEN),))], 1)
        self.assertEqual(samples[("hbchat_connections_accepted_total", (("listener", LISTEN),))], 1)
        self.assertEqual(samples[("hbchat_listening", (("listener", LISTEN),))], 1)
        self.assertGreaterEqual(samples[("hbchat_pings_sent_total", ())], 1)
        self.assertIn(("process_resident_memory_bytes", ()), samples)

    @inlineCallbacks
    def test_metrics_in_openmetrics_when_asked(self) -> Any:
        status, content_type, body = yield self.get("/metrics", accept="application/openmetrics-text; version=1.0.0")
        self.assertEqual(status, 200)
        self.assertTrue(content_type.startswith("application/openmetrics-text"), content_type)
        names = {family.name for family in parse_openmetrics(body)}
        self.assertIn("hbchat_reactor_lag_seconds", names)

    @inlineCallbacks
    def test_reactor_lag_is_measured_while_serving(self) -> Any:
        # The lag timer ticks every 0.25 s.  Blocking the reactor for longer than that (on
        # purpose: this is the stall being measured) makes a tick fire at least 0.05 s late.
        lag = self.factory.lag
        self.assertTrue(lag.running)
        yield waitUntil(lambda: lag.histogram.count >= 1, "a first lag tick")
        yield deferLater(reactor, 0, blockFor, 0.3)
        yield waitUntil(lambda: lag.recent_max() >= 0.05, "the stall to be measured")
        status, _, body = yield self.get("/metrics")
        self.assertEqual(status, 200)
        [lagCount] = [
            sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
            if sample.name == "hbchat_reactor_lag_seconds_count"
        ]
        self.assertGreaterEqual(lagCount, 2)

    @inlineCallbacks
    def test_connections_lists_each_connection(self) -> Any:
        alice = yield self.connect(self.chatPort, "alice")
        alice.sendLine("NICK alice")
        yield alice.waitForLine(r"JOIN \d+ alice")
        yield alice.waitForLine(r"PING \d+")
        stranger = yield self.connect(self.chatPort, "stranger")
        yield stranger.waitForLine("HELLO .*")
        # The PONG is answered on receipt; wait until the server has it.
        yield waitUntil(lambda: any(p.rtt is not None for p in self.factory.connections), "alice's PONG")
        status, content_type, body = yield self.get("/connections")
        self.assertEqual((status, content_type), (200, "application/json"))
        entries = json.loads(body)
        self.assertEqual(len(entries), 2)
        first, second = entries
        self.assertEqual(first["nick"], "alice")
        self.assertIsNone(second["nick"])
        alicePort = cast(IPv4Address, alice.transport.getHost()).port
        self.assertEqual(first["peer"], f"127.0.0.1:{alicePort}")
        for entry in entries:
            self.assertEqual(entry["listener"], LISTEN)
            self.assertTrue(entry["connected_since"].endswith("Z"))
            datetime.fromisoformat(entry["connected_since"].replace("Z", "+00:00"))
            self.assertGreaterEqual(entry["idle_seconds"], 0)
            self.assertLess(entry["idle_seconds"], DEADLINE)
            self.assertEqual(entry["unsent_bytes"], 0)
            self.assertIsInstance(entry["kernel_send_queue_bytes"], int)
            self.assertFalse(entry["congested"])
        self.assertGreater(first["rtt_seconds"], 0)
        self.assertIsNone(second["rtt_seconds"])
        self.assertGreater(first["received_bytes"], len("NICK alice\n"))

    @inlineCallbacks
    def test_index_and_unknown_paths(self) -> Any:
        status, _, body = yield self.get("/")
        self.assertEqual(status, 200)
        self.assertIn("/metrics", body)
        status, _, _ = yield self.get("/nothing-here")
        self.assertEqual(status, 404)


def blockFor(seconds: float) -> None:
    """Keep the reactor from turning, as a blocking call or a long GC pause would."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@inlineCallbacks
def waitUntil(condition: Any, what: str) -> Any:
    deadline = reactor.seconds() + DEADLINE
    while not condition():
        if reactor.seconds() > deadline:
            raise unittest.FailTest(f"{what}: not within {DEADLINE}s")
        yield deferLater(reactor, 0.02, lambda: None)


class SlowChat(Service):
    """A chat service whose stop takes until ``finish`` fires."""

    def __init__(self) -> None:
        self.finish: Deferred[None] = Deferred()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.finish


class WithMetricsTests(unittest.TestCase):
    @inlineCallbacks
    def test_the_endpoint_outlives_the_chat_when_stopping(self) -> Any:
        chat = SlowChat()
        service = WithMetrics(chat, ChatFactory(ServerConfig(), reactor), LISTEN, reactor)
        service.startService()
        stopped = service.stopService()
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertTrue(service.http.running)  # /readyz can still say 503 while the chat drains
        self.assertNoResult(stopped)
        chat.finish.callback(None)
        yield within(stopped, DEADLINE, "stopping")
        self.assertFalse(service.http.running)

    def test_a_metrics_port_in_use_is_one_line_and_exit_1(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            service = WithMetrics(
                SlowChat(), ChatFactory(ServerConfig(), reactor), f"tcp:{port}:interface=127.0.0.1", reactor
            )
            error = self.assertRaises(SystemExit, service.privilegedStartService)
        self.assertEqual(error.code, 1)


class ReadinessTests(unittest.SynchronousTestCase):
    def test_without_listeners_it_is_not_ready(self) -> None:
        self.assertEqual(readiness(FakeServer().factory), "no listener")


class ConnectionDescriptionTests(unittest.SynchronousTestCase):
    def test_a_fake_connection_is_described_without_buffers(self) -> None:
        server = FakeServer(ping=1, timeout=3)
        server.advance(100)
        peer = server.registered("alice")
        server.advance(0.5)
        entry = describe_connection(peer.protocol, server.clock.seconds())
        self.assertEqual(entry["nick"], "alice")
        self.assertEqual(entry["peer"], peer.protocol.peer)
        self.assertEqual(entry["listener"], "-")
        self.assertEqual(entry["connected_since"], "1970-01-01T00:01:40.000Z")
        self.assertEqual(entry["idle_seconds"], 0.5)
        self.assertIsNone(entry["unsent_bytes"])  # a StringTransport keeps no such buffer
        self.assertIsNone(entry["kernel_send_queue_bytes"])

    def test_unsent_bytes_of_a_tcp_transport_and_of_tls_over_it(self) -> None:
        class FileDescriptorLike:
            dataBuffer = b"x" * 100
            offset = 30
            _tempDataLen = 5

        self.assertEqual(unsent_bytes(FileDescriptorLike()), 75)

        class TLSLike:
            _appSendBuffer = [b"abc", b"de"]
            transport = FileDescriptorLike()

        self.assertEqual(unsent_bytes(TLSLike()), 80)
        self.assertIsNone(unsent_bytes(object()))

    def test_kernel_send_queue_of_tcp_sockets_only(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listening:
            client = socket.create_connection(listening.getsockname())
            self.addCleanup(client.close)
            unix, other = socket.socketpair()
            self.addCleanup(unix.close)
            self.addCleanup(other.close)

            class Transport:
                def __init__(self, sock: socket.socket) -> None:
                    self.socket = sock

                def getHandle(self) -> socket.socket:
                    return self.socket

            self.assertEqual(kernel_send_queue(Transport(client)), 0)
            # A UNIX socket reports memory, not bytes: nothing is said rather than that.
            self.assertIsNone(kernel_send_queue(Transport(unix)))
            self.assertIsNone(kernel_send_queue(object()))


class MetricsOptionTests(unittest.SynchronousTestCase):
    def parse(self, *arguments: str) -> ServerOptions:
        options = ServerOptions()
        options.parseOptions(list(arguments))
        return options

    def test_off_by_default(self) -> None:
        options = self.parse()
        self.assertIsNone(options["metrics"])
        self.assertIsInstance(makeService(options, Clock()), ChatService)

    def test_an_endpoint_adds_the_http_service_around_the_chat(self) -> None:
        options = self.parse("--metrics", "tcp:9464:interface=127.0.0.1")
        self.assertEqual(options["metrics"], "tcp:9464:interface=127.0.0.1")
        service = makeService(options, Clock())
        assert isinstance(service, WithMetrics)
        self.assertIsInstance(service.chat, ChatService)
        self.assertIs(service.factory, cast(ChatService, service.chat).factory)
        self.assertIsInstance(service.http.factory, Site)

    def test_a_bad_endpoint_names_the_option(self) -> None:
        error = self.assertRaises(UsageError, self.parse, "--metrics", "bogus:thing")
        self.assertIn("--metrics", str(error))

    def test_help_says_it_is_off_and_belongs_on_localhost(self) -> None:
        text = " ".join(str(ServerOptions()).split())
        self.assertIn("--metrics=", text)
        self.assertIn("[default: off]", text)
        self.assertIn("interface=127.0.0.1", text)
