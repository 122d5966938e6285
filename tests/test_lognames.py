"""
Log namespaces stay what they were when modules moved into hbchat/server, client, ops and auth
(hbchat.lognames): operators filter on them, and docs/operations.md shows them.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from hbchat.auth import authoption
from hbchat.auth.passwords import HashedPasswordChecker
from hbchat.client.factory import ChatClientFactory
from hbchat.client.protocol import ChatClientProtocol
from hbchat.lognames import NamedLogger
from hbchat.ops.exposure import WarnIfExposed
from hbchat.ops.web import WithMetrics
from hbchat.server.connection import ChatServerProtocol
from hbchat.server.factory import ChatFactory
from hbchat.server.service import ChatService
from hbchat.server.sessions import SessionTable
from hbchat.server.tls import ServerTLS


class Thing:
    log = NamedLogger("somewhere.else.Thing")


class NamedLoggerTests(SynchronousTestCase):
    def test_an_instance_logs_under_the_given_namespace_as_its_source(self) -> None:
        thing = Thing()
        with capturedLogs() as events:
            thing.log.info("hello")
        self.assertEqual(
            [(event["log_namespace"], event["log_source"]) for event in events], [("somewhere.else.Thing", thing)]
        )

    def test_the_namespace_is_the_given_one_not_the_class_module(self) -> None:
        self.assertEqual((Thing.log.namespace, Thing().log.namespace), ("somewhere.else.Thing",) * 2)

    def test_the_source_is_the_instance_or_the_class(self) -> None:
        thing = Thing()
        self.assertEqual((Thing.log.source, thing.log.source), (Thing, thing))


class KeptNamespacesTests(SynchronousTestCase):
    def test_the_moved_classes_log_under_their_old_namespaces(self) -> None:
        loggers: dict[Any, str] = {
            ChatServerProtocol: "hbchat.server.ChatServerProtocol",
            ChatFactory: "hbchat.server.ChatFactory",
            SessionTable: "hbchat.sessions.SessionTable",
            ChatService: "hbchat.service.ChatService",
            ServerTLS: "hbchat.tls.ServerTLS",
            ChatClientProtocol: "hbchat.client.ChatClientProtocol",
            ChatClientFactory: "hbchat.client.ChatClientFactory",
            WithMetrics: "hbchat.web.WithMetrics",
            WarnIfExposed: "hbchat.exposure.WarnIfExposed",
            HashedPasswordChecker: "hbchat.passwords.HashedPasswordChecker",
        }
        self.assertEqual({cls: cls.log.namespace for cls in loggers}, loggers)

    def test_the_auth_option_logs_under_its_old_module_name(self) -> None:
        self.assertEqual(authoption.log.namespace, "hbchat.authoption")
