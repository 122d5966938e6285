"""The shape of the house: the server core imports nothing from hbchat.ops, and ops is wired in by the service."""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import hbchat
from hbchat.config import ServerConfig
from hbchat.ops.observed import ObservedChatFactory
from hbchat.server.factory import ChatFactory, NoEvents
from hbchat.server.interfaces import IServerEvents

#: The service and twistd pieces: where operations and TLS policy are wired into the server.
WIRING = {"service.py", "tap.py"}
#: The modules that make up TLS and its listeners.
TLS_ROOMS = WIRING | {"tls.py", "listeners.py"}


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, wherever in the file (TYPE_CHECKING blocks included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


class CoreTests(SynchronousTestCase):
    def test_the_server_core_imports_nothing_from_ops(self) -> None:
        server = Path(hbchat.__file__).parent / "server"
        offenders = {
            path.name: sorted(name for name in imported(path) if name.startswith("hbchat.ops"))
            for path in server.glob("*.py")
            if path.name not in WIRING
        }
        self.assertEqual({name: found for name, found in offenders.items() if found}, {})

    def test_the_server_core_imports_no_tls_policy(self) -> None:
        server = Path(hbchat.__file__).parent / "server"
        offenders = {path.name for path in server.glob("*.py") if "hbchat.server.tls" in imported(path)}
        self.assertEqual(offenders - TLS_ROOMS, set())

    def test_tls_identity_without_a_check_handed_in_is_refused(self) -> None:
        config = ServerConfig(tls_client_ca="ca.pem", tls_identity=True)
        self.assertRaises(ValueError, ChatFactory, config, Clock())

    def test_a_chat_without_operations_counts_nothing_and_still_serves(self) -> None:
        factory = ChatFactory(ServerConfig(), Clock())
        self.assertIsInstance(factory.events, NoEvents)
        self.assertTrue(verifyObject(IServerEvents, factory.events))
        self.assertFalse(hasattr(factory, "stats"))

    def test_the_observed_chat_tells_its_events_to_its_stats(self) -> None:
        factory = ObservedChatFactory(ServerConfig(), Clock())
        self.assertIs(factory.events, factory.stats)
        factory.events.lineRateLimited()
        self.assertEqual(factory.stats.rateLimited, 1)
