"""
Every class that declares an interface really provides it (issue #10).

Each class is built the way hbchat builds it (real certificate and password files where it
reads them) and checked with ``verifyObject`` for every interface its instance provides,
declared on it or inherited.  :data:`VERIFIED` lists the classes checked here; the guard at
the end fails for any class in the project that declares an interface and is not listed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import io
import pkgutil
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from twisted.application.service import Service
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.strcred import ICheckerFactory
from twisted.internet import reactor
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IConsumer,
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementedBy, providedBy
from zope.interface.exceptions import Invalid
from zope.interface.interface import InterfaceClass
from zope.interface.verify import verifyClass, verifyObject

import hbchat
from hbchat.auth.authlimit import BoundedChecker
from hbchat.auth.authoption import make_checker
from hbchat.auth.passwords import HashedPasswordChecker, hash_password, write_entries
from hbchat.bench.conn import SENDER, BenchConnection, Tally
from hbchat.bench.storm import Observer
from hbchat.bench.stormrecord import Recorder
from hbchat.client.backoff import Backoff, IBackoff
from hbchat.client.cli import tls_client
from hbchat.client.connector import EndpointAddress, EndpointConnector
from hbchat.client.console import Console
from hbchat.client.factory import ChatClientFactory
from hbchat.client.owner import IConnectionOwner
from hbchat.client.tls import VerifyingCreator
from hbchat.cluster.chat import ClusterChat
from hbchat.cluster.url import parse_redis_url
from hbchat.coarseclock import CoarseCall, CoarseClock
from hbchat.config import ServerConfig
from hbchat.interfaces import IChatObserver
from hbchat.ops.exposure import WarnIfExposed
from hbchat.ops.logs import JSONLinesObserver, json_observer
from hbchat.ops.stats import ServerStats
from hbchat.ops.web import WithMetrics
from hbchat.server.chat import Chat
from hbchat.server.connection import ChatServerProtocol
from hbchat.server.factory import ChatFactory, NoEvents
from hbchat.server.flow import ConnectionFlow
from hbchat.server.interfaces import IChat, IChatMember, IServerEvents
from hbchat.server.listeners import _RecordingEndpoint, listener_service
from hbchat.server.reuseport import ReusePortEndpoint
from hbchat.server.tls import ServerTLS, parse_ssl
from hbchat.testing import FakeNetwork, FakeServer
from hbchat.web.frames import FrameCache
from hbchat.web.linetransport import LineTransport
from hbchat.web.origins import OriginPolicy
from hbchat.web.service import _RecordingEndpoint as _WebRecordingEndpoint
from hbchat.web.service import web_service
from tests.test_auth import CHEAP
from tests.test_tls import sslDescription, tempdir
from tests.tlscerts import CertificateAuthority
from twisted.plugins.hbchat_auth import HashedPasswordCheckerFactory, hbpasswd

#: Every class of the project that declares an interface, each checked by a test below.
VERIFIED: tuple[type, ...] = (
    HashedPasswordChecker,
    BoundedChecker,
    BenchConnection,
    Observer,
    Backoff,
    EndpointAddress,
    EndpointConnector,
    Console,
    ChatClientFactory,
    VerifyingCreator,
    WarnIfExposed,
    JSONLinesObserver,
    ServerStats,
    Chat,
    ChatServerProtocol,
    NoEvents,
    ConnectionFlow,
    _RecordingEndpoint,
    ServerTLS,
    FakeNetwork,
    HashedPasswordCheckerFactory,
    ReusePortEndpoint,
    LineTransport,
    _WebRecordingEndpoint,
    ClusterChat,
    CoarseClock,
    CoarseCall,
)


def name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class ProvidesTestCase(SynchronousTestCase):
    def assertProvidesAll(self, obj: object, cls: type, *expected: InterfaceClass) -> None:
        """
        ``obj``, a ``cls`` built as hbchat builds it, provides ``expected`` and passes
        ``verifyObject`` for every interface it provides (declared by ``cls`` or inherited).
        """
        self.assertIn(cls, VERIFIED, f"add {name(cls)} to VERIFIED")
        self.assertIsInstance(obj, cls)
        provided = list(providedBy(obj))
        for interface in [*expected, *implementedBy(cls)]:
            self.assertIn(interface, provided)
        for interface in provided:
            try:
                verifyObject(interface, obj)
            except Invalid as error:
                self.fail(f"{name(cls)} does not provide {interface.__identifier__}: {error}")


class ServerTests(ProvidesTestCase):
    def test_the_pingers_coarse_clock_is_a_reactor_clock(self) -> None:
        self.assertProvidesAll(CoarseClock(Clock()), CoarseClock, IReactorTime)

    def test_a_call_on_the_coarse_clock_is_a_delayed_call(self) -> None:
        call = CoarseClock(Clock()).callLater(1, lambda: None)
        self.assertProvidesAll(call, CoarseCall, IDelayedCall)

    def test_the_chat_provides_IChat(self) -> None:
        self.assertProvidesAll(FakeServer().factory.chat, Chat, IChat)

    def test_a_server_connection_is_a_chat_member_a_handshake_listener_and_a_push_producer(self) -> None:
        peer = FakeServer().connect()
        self.assertProvidesAll(peer.protocol, ChatServerProtocol, IChatMember, IHandshakeListener, IPushProducer)

    def test_the_flow_of_a_connection_is_a_push_producer(self) -> None:
        # ConnectionFlow is built only as the base of a server connection.
        self.assertTrue(verifyClass(IPushProducer, ConnectionFlow))
        self.assertProvidesAll(FakeServer().connect().protocol, ConnectionFlow, IPushProducer, IProtocol)

    def test_a_chat_without_operations_tells_its_events_to_nobody(self) -> None:
        factory = ChatFactory(ServerConfig(), Clock())
        self.assertProvidesAll(factory.events, NoEvents, IServerEvents)

    def test_a_tls_listener_makes_server_connections_for_tls(self) -> None:
        description = sslDescription(tempdir(self), CertificateAuthority().server("localhost"))
        self.assertProvidesAll(ServerTLS(parse_ssl(description)), ServerTLS, IOpenSSLServerConnectionCreator)

    def test_a_listener_records_its_port_through_a_server_endpoint(self) -> None:
        service = listener_service(FakeServer().factory, "tcp:0:interface=127.0.0.1", reactor)
        self.assertProvidesAll(service.endpoint, _RecordingEndpoint, IStreamServerEndpoint)

    def test_a_reuse_port_listener_listens_through_its_own_endpoint(self) -> None:
        service = listener_service(FakeServer().factory, "tcp:0:interface=127.0.0.1", reactor, None, True)
        endpoint = service.endpoint
        assert isinstance(endpoint, _RecordingEndpoint)
        self.assertProvidesAll(endpoint.endpoint, ReusePortEndpoint, IStreamServerEndpoint)


class ClusterTests(ProvidesTestCase):
    def test_the_chat_kept_in_redis_provides_IChat(self) -> None:
        """It stands in for the in-memory chat (nothing connects until start())."""
        url = parse_redis_url("unix:///nonexistent/redis.sock", {})
        chat = ClusterChat(ServerConfig(), Clock(), NoEvents(), lambda: None, url, "hbchat", "node", 5.0)
        self.assertProvidesAll(chat, ClusterChat, IChat)


class WebTests(ProvidesTestCase):
    def test_a_web_listener_records_its_port_through_an_endpoint(self) -> None:
        service = web_service(FakeServer().factory, "tcp:0:interface=127.0.0.1", reactor, OriginPolicy(()))
        self.assertProvidesAll(service.endpoint, _WebRecordingEndpoint, IStreamServerEndpoint)

    def test_the_websocket_line_transport_is_a_transport_consumer_and_producer(self) -> None:
        class Socket:
            transport = StringTransport()

            def isOpen(self) -> bool:
                return True

            def closeWithCode(self, code: int, reason: str) -> None:
                pass

        line = LineTransport(Socket(), FrameCache())
        self.assertProvidesAll(line, LineTransport, ITransport, IConsumer, IPushProducer)


class OperationsTests(ProvidesTestCase):
    def test_the_server_stats_hear_the_server_events(self) -> None:
        factory = FakeServer().factory
        self.assertIs(factory.events, factory.stats)
        self.assertProvidesAll(factory.stats, ServerStats, IServerEvents)

    def test_the_metrics_endpoint_warning_wraps_a_server_endpoint(self) -> None:
        service = WithMetrics(Service(), FakeServer().factory, "tcp:0:interface=127.0.0.1", reactor)
        self.assertProvidesAll(service.http.endpoint, WarnIfExposed, IStreamServerEndpoint)

    def test_the_json_log_is_a_log_observer(self) -> None:
        self.assertProvidesAll(json_observer(), JSONLinesObserver, ILogObserver)


class AuthTests(ProvidesTestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        write_entries(self.path, {"alice": hash_password("wonder-land", **CHEAP)})

    def test_the_password_file_checker_checks_credentials(self) -> None:
        self.assertProvidesAll(make_checker(f"hbpasswd:{self.path}"), HashedPasswordChecker, ICredentialsChecker)

    def test_the_bounded_checker_checks_credentials(self) -> None:
        server = FakeServer(checker=make_checker(f"hbpasswd:{self.path}"))
        self.assertProvidesAll(server.factory.checker, BoundedChecker, ICredentialsChecker)

    def test_the_auth_plugin_is_a_checker_factory_plugin(self) -> None:
        self.assertProvidesAll(hbpasswd, HashedPasswordCheckerFactory, ICheckerFactory, IPlugin)


class ClientTests(ProvidesTestCase):
    def setUp(self) -> None:
        self.console = Console(io.StringIO(), io.StringIO(), Clock(), interactive=True)
        self.factory = ChatClientFactory("ida", self.console, backoff=Backoff(cap=10.0), clock=Clock())

    def test_the_terminal_console_observes_the_chat(self) -> None:
        self.assertProvidesAll(self.console, Console, IChatObserver)

    def test_the_client_factory_owns_its_connections_and_builds_protocols(self) -> None:
        self.assertProvidesAll(self.factory, ChatClientFactory, IConnectionOwner, IProtocolFactory)

    def test_the_backoff_is_an_IBackoff(self) -> None:
        self.assertProvidesAll(Backoff(cap=10.0), Backoff, IBackoff)

    def test_the_endpoint_connector_is_a_connector(self) -> None:
        connector = EndpointConnector(FakeNetwork(FakeServer()), self.factory)
        self.assertProvidesAll(connector, EndpointConnector, IConnector)

    def test_the_endpoint_connector_destination_is_an_address(self) -> None:
        connector = EndpointConnector(FakeNetwork(FakeServer()), self.factory)
        self.assertProvidesAll(connector.getDestination(), EndpointAddress, IAddress)

    def test_the_fake_network_is_a_client_endpoint(self) -> None:
        self.assertProvidesAll(FakeNetwork(FakeServer()), FakeNetwork, IStreamClientEndpoint)

    def test_the_verifying_creator_makes_client_connections_for_tls(self) -> None:
        directory = tempdir(self)
        ca = CertificateAuthority()
        cert, key = ca.client("ida").write(directory, "ida")
        arguments = argparse.Namespace(
            endpoint="tls:localhost:6697", ca=str(ca.write(directory)), cert=str(cert), key=str(key)
        )
        creator = tls_client(arguments).creator()
        self.assertProvidesAll(creator, VerifyingCreator, IOpenSSLClientConnectionCreator)


class BenchTests(ProvidesTestCase):
    def test_the_storm_observer_observes_the_chat(self) -> None:
        self.assertProvidesAll(Observer("s00000", Recorder()), Observer, IChatObserver)

    def test_a_bench_connection_is_a_push_producer_protocol(self) -> None:
        connection = BenchConnection(
            Tally(b"0000"), Clock(), 0, b"bench-0", SENDER, 30.0, lambda c: None, lambda c: None
        )
        self.assertProvidesAll(connection, BenchConnection, IPushProducer, IProtocol)


# --- the guard ---


def optional_imports() -> set[str]:
    """Top-level names of hbchat's optional dependencies (its extras, not its dependencies)."""
    required: set[str] = set()
    extra: set[str] = set()
    for requirement in importlib.metadata.requires("hbchat") or []:
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert match is not None, requirement
        project = match.group(0).lower().replace("-", "_")
        (extra if "extra ==" in requirement else required).add(project)
    return extra - required


def missing_optional(error: BaseException | None) -> bool:
    """Whether ``error`` is an import failing only for a missing optional dependency."""
    if not isinstance(error, ModuleNotFoundError) or error.name is None:
        return False
    return error.name.split(".")[0].lower() in optional_imports()


def project_modules() -> Iterator[ModuleType]:
    """Every module under ``hbchat``, and the project's Twisted plugin dropins."""

    def package_failed(package: str) -> None:
        error = sys.exc_info()[1]
        if not missing_optional(error):
            raise AssertionError(f"{package} cannot be imported: {error!r}") from error

    names = [info.name for info in pkgutil.walk_packages(hbchat.__path__, "hbchat.", onerror=package_failed)]
    plugins = Path(hbchat.__file__).parent.parent / "twisted" / "plugins"
    names += [f"twisted.plugins.{path.stem}" for path in sorted(plugins.glob("hbchat*.py"))]
    for module_name in ["hbchat", *names]:
        try:
            yield importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if not missing_optional(error):
                raise


def declaring_classes() -> set[type]:
    """Every class defined in a project module that declares an interface."""
    return {
        value
        for module in project_modules()
        for value in vars(module).values()
        if isinstance(value, type) and value.__module__ == module.__name__ and implementedBy(value).declared
    }


class GuardTests(SynchronousTestCase):
    def test_every_class_that_declares_an_interface_is_verified_here(self) -> None:
        """
        Every class under ``hbchat`` (and in the project's plugin dropins) that declares an
        interface is in :data:`VERIFIED`, and so has a ``verifyObject`` test above.

        A class added later (hbchat/web/, hbchat/cluster/, ...) fails this test until
        someone builds it in a test here, checks it with ``assertProvidesAll`` and adds it
        to :data:`VERIFIED`.
        """
        missing = sorted(name(cls) for cls in declaring_classes() - set(VERIFIED))
        self.assertEqual(
            missing,
            [],
            f"classes declaring interfaces without a verifyObject test in tests/test_interfaces.py: {missing}",
        )

    def test_the_guard_finds_every_verified_class(self) -> None:
        found = declaring_classes()
        self.assertEqual([name(cls) for cls in VERIFIED if cls not in found], [])
