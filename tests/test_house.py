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


def module_graph(package: Path, prefix: str) -> dict[str, set[str]]:
    """The modules under ``package`` (named from ``prefix``) and those of them each imports."""
    modules = {
        prefix + "." + str(path.relative_to(package).with_suffix("")).replace("/", "."): path
        for path in package.rglob("*.py")
    }
    modules = {name.removesuffix(".__init__"): path for name, path in modules.items()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            edges.update(target for target in targets if target in modules and target != name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Some import cycles of ``graph`` (none: it has none)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


class CoreTests(SynchronousTestCase):
    def test_the_server_and_ops_import_no_module_that_imports_them_back(self) -> None:
        graph = module_graph(Path(hbchat.__file__).parent, "hbchat")
        # The server, operations and what is shared; the client's and the bench's rooms are theirs.
        ours = {name for name in graph if name.startswith(("hbchat.server", "hbchat.ops")) or name.count(".") == 1}
        self.assertEqual(cycles({name: graph[name] & ours if name in ours else set() for name in graph}), [])

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
