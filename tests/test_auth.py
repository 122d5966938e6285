"""Authentication (``--auth``): NICK with a password, ERR 401, three strikes."""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import FilePasswordDB, ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from hbchat import tap
from hbchat.testing import FakeServer

UNAUTHORIZED = b"ERR 401 invalid nick or password"


@implementer(ICredentialsChecker)
class PendingChecker:
    """A checker whose verdicts the test gives, one Deferred per request."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes, Deferred[bytes | tuple[()]]]] = []

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        d: Deferred[bytes | tuple[()]] = Deferred()
        self.requests.append((credentials.username, credentials.password, d))
        return d


class FileCheckerTests(SynchronousTestCase):
    """The standard ``file:`` checker (plain text, for trying things out)."""

    def setUp(self) -> None:
        self.path = path = self.mktemp()
        with open(path, "w") as handle:
            handle.write("alice:wonderland\nbob:builder\n")
        self.server = FakeServer(checker=FilePasswordDB(path))

    def test_auth_option_takes_standard_checkers(self) -> None:
        options = tap.ServerOptions()
        options.parseOptions(["--auth", f"file:{self.path}"])
        self.assertIsInstance(options.checker, FilePasswordDB)
        self.assertIsNone(tap.ServerOptions().checker)
        twice = ["--auth", f"file:{self.path}", "--auth", f"file:{self.path}"]
        self.assertRaises(usage.UsageError, tap.ServerOptions().parseOptions, twice)
        self.assertRaises(usage.UsageError, tap.ServerOptions().parseOptions, ["--auth", "nosuchkind:x"])

    def test_hello_says_auth_required(self) -> None:
        peer = self.server.connect()
        self.assertEqual(peer.received(), [b"HELLO hbchat/1 ping=30 timeout=90 auth=required"])

    def test_without_auth_hello_says_nothing_of_it(self) -> None:
        peer = FakeServer().connect()
        self.assertEqual(peer.received(), [b"HELLO hbchat/1 ping=30 timeout=90"])

    def test_right_password_registers(self) -> None:
        peer = self.server.connect()
        peer.received()
        lines = peer.register("alice", "wonderland")
        self.assertTrue(lines[0].startswith(b"WELCOME alice "), lines)
        self.assertEqual(lines[1:], [b"JOIN 1 alice"])

    def test_wrong_password_is_err_401_and_the_connection_stays(self) -> None:
        peer = self.server.connect()
        peer.received()
        self.assertEqual(peer.register("alice", "builder"), [UNAUTHORIZED])
        self.assertFalse(peer.closing)
        self.assertTrue(peer.register("alice", "wonderland")[0].startswith(b"WELCOME alice "))

    def test_unknown_nick_is_err_401(self) -> None:
        peer = self.server.connect()
        peer.received()
        self.assertEqual(peer.register("carol", "wonderland"), [UNAUTHORIZED])

    def test_missing_password_is_err_401(self) -> None:
        peer = self.server.connect()
        peer.received()
        self.assertEqual(peer.register("alice"), [UNAUTHORIZED])

    def test_nick_rules_come_first(self) -> None:
        peer = self.server.connect()
        peer.received()
        self.assertEqual(peer.register("no/good", "x"), [b"ERR 432 erroneous nickname"])
        self.assertEqual(peer.protocol.authFailures, 0)

    def test_a_taken_nick_is_433_after_the_password_is_checked(self) -> None:
        self.server.registered("alice", "wonderland")
        peer = self.server.connect()
        peer.received()
        self.assertEqual(peer.register("alice", "wrong"), [UNAUTHORIZED])
        self.assertEqual(peer.register("alice", "wonderland"), [b"ERR 433 nick in use"])

    def test_three_failures_close_the_connection(self) -> None:
        peer = self.server.connect()
        peer.received()
        self.assertEqual(peer.register("alice", "one"), [UNAUTHORIZED])
        self.assertEqual(peer.register("alice"), [UNAUTHORIZED])
        self.assertFalse(peer.closing)
        peer.sendLine("NICK alice three\nNICK alice wonderland")
        self.assertEqual(peer.received(), [UNAUTHORIZED])
        self.assertTrue(peer.closing)
        peer.finishClose()
        self.assertEqual(self.server.factory.stats.closes["unauthorized"], 1)
        self.assertEqual(self.server.factory.stats.authFailures, 3)

    def test_resume_works_with_auth_on(self) -> None:
        peer = self.server.connect()
        peer.received()
        token = peer.register("alice", "wonderland")[0].split()[2].decode()
        peer.lose()
        again = self.server.connect()
        again.received()
        again.sendLine(f"RESUME {token} 1")
        lines = again.received()
        self.assertTrue(lines[0].startswith(b"WELCOME alice "), lines)
        self.assertTrue(any(line.startswith(b"RESUMED") for line in lines), lines)
        self.assertEqual(lines[-1], b"JOIN 3 alice")

    def test_quit_invalidates_the_token_with_auth_on(self) -> None:
        peer = self.server.connect()
        peer.received()
        token = peer.register("alice", "wonderland")[0].split()[2].decode()
        peer.sendLine("QUIT")
        peer.finishClose()
        again = self.server.connect()
        again.received()
        again.sendLine(f"RESUME {token} 1")
        self.assertEqual(again.received(), [b"ERR 404 unknown session"])

    def test_grace_expiry_invalidates_the_token_with_auth_on(self) -> None:
        peer = self.server.connect()
        peer.received()
        token = peer.register("alice", "wonderland")[0].split()[2].decode()
        peer.lose()
        self.server.advance(self.server.config.grace + 1)
        again = self.server.connect()
        again.received()
        again.sendLine(f"RESUME {token} 1")
        self.assertEqual(again.received(), [b"ERR 404 unknown session"])


class PendingVerdictTests(SynchronousTestCase):
    """While a password is checked, later lines wait, and are handled in order after the verdict."""

    def setUp(self) -> None:
        self.checker = PendingChecker()
        self.server = FakeServer(checker=self.checker)
        self.peer = self.server.connect()
        self.peer.received()

    def test_lines_in_the_same_read_wait_for_the_verdict(self) -> None:
        self.peer.send(b"NICK alice secret\nSAY one\nWHO\n")
        self.assertEqual(self.peer.received(), [])
        self.assertEqual(self.peer.transport.producerState, "paused")
        [(username, password, verdict)] = self.checker.requests
        self.assertEqual((username, password), (b"alice", b"secret"))
        self.peer.send(b"SAY two\n")
        self.assertEqual(self.peer.received(), [])
        verdict.callback(b"alice")
        lines = self.peer.received()
        self.assertTrue(lines[0].startswith(b"WELCOME alice "), lines)
        self.assertEqual(lines[1:], [b"JOIN 1 alice", b"MSG 2 alice one", b"USERS alice", b"MSG 3 alice two"])
        self.assertEqual(self.peer.transport.producerState, "producing")

    def test_after_a_rejection_the_held_lines_are_handled_unregistered(self) -> None:
        self.peer.send(b"NICK alice wrong\nSAY one\nNICK alice right\nSAY two\n")
        [(_, _, first)] = self.checker.requests
        first.errback(UnauthorizedLogin())
        self.assertEqual(self.peer.received(), [UNAUTHORIZED, b"ERR 403 register first"])
        self.assertEqual(self.peer.transport.producerState, "paused")
        second = self.checker.requests[1][2]
        second.callback(b"alice")
        lines = self.peer.received()
        self.assertEqual(lines[1:], [b"JOIN 1 alice", b"MSG 2 alice two"])
        self.assertEqual(self.peer.transport.producerState, "producing")

    def test_a_checker_error_counts_as_a_failure(self) -> None:
        self.peer.send(b"NICK alice secret\n")
        self.checker.requests[0][2].errback(RuntimeError("database down"))
        self.assertEqual(self.peer.received(), [UNAUTHORIZED])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_a_verdict_after_the_connection_ended_is_ignored(self) -> None:
        self.peer.send(b"NICK alice secret\n")
        self.peer.lose()
        self.checker.requests[0][2].callback(b"alice")
        self.assertEqual(len(self.server.factory.sessions), 0)

    def test_the_registration_deadline_still_applies(self) -> None:
        self.peer.send(b"NICK alice secret\n")
        self.server.advance(self.server.config.register_timeout + 1)
        self.assertEqual(self.peer.received(), [b"ERR 408 registration timeout"])
        self.checker.requests[0][2].callback(b"alice")
        self.assertEqual(self.peer.received(), [])
