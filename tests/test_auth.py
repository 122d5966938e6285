"""
Authentication (``--auth``): NICK with a password, ERR 401, three strikes, the hbpasswd
checker and file, ``hbchat-passwd``, and ``twistd hbchat --auth hbpasswd:FILE``.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from twisted.cred.checkers import FilePasswordDB, ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.threads import deferToThread
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface import implementer

from hbchat.auth import passwdcli, passwords
from hbchat.auth.passwords import HashedPasswordChecker, hash_password, read_entries, write_entries
from hbchat.server import tap
from hbchat.testing import FakeServer
from tests.test_twistd import TwistdProcess, TwistdTestCase, findExecutable, freePort

UNAUTHORIZED = b"ERR 401 invalid nick or password"

#: Cheap scrypt parameters for tests; real entries use passwords.SCRYPT_N.
CHEAP = {"n": 2**4, "r": 8, "p": 1}


def synchronously(function: Callable[..., bool], *arguments: Any) -> Deferred[bool]:
    return succeed(function(*arguments))


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
        self.assertEqual(len(self.server.factory.chat.sessions), 0)

    def test_the_registration_deadline_still_applies(self) -> None:
        self.peer.send(b"NICK alice secret\n")
        self.server.advance(self.server.config.register_timeout + 1)
        self.assertEqual(self.peer.received(), [b"ERR 408 registration timeout"])
        self.checker.requests[0][2].callback(b"alice")
        self.assertEqual(self.peer.received(), [])


class HashedCheckerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        write_entries(self.path, {"alice": hash_password("wonder-land", **CHEAP)})
        self.checker = HashedPasswordChecker(self.path, run=synchronously)

    def check(self, nick: bytes, password: bytes) -> Any:
        return self.checker.requestAvatarId(UsernamePassword(nick, password))

    def test_right_password(self) -> None:
        self.assertEqual(self.successResultOf(self.check(b"alice", b"wonder-land")), b"alice")

    def test_wrong_password_and_unknown_nick(self) -> None:
        self.failureResultOf(self.check(b"alice", b"wonderland"), UnauthorizedLogin)
        self.failureResultOf(self.check(b"bob", b"wonder-land"), UnauthorizedLogin)

    def test_the_file_is_read_on_every_check(self) -> None:
        write_entries(self.path, {"alice": hash_password("changed", **CHEAP)})
        self.failureResultOf(self.check(b"alice", b"wonder-land"), UnauthorizedLogin)
        self.successResultOf(self.check(b"alice", b"changed"))

    def test_entries_are_salted(self) -> None:
        self.assertNotEqual(hash_password("same", **CHEAP).encode(), hash_password("same", **CHEAP).encode())
        line = open(self.path).read()
        self.assertRegex(line, r"^alice:scrypt\$16\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+\n$")
        self.assertNotIn("wonder-land", line)

    def test_malformed_file_names_the_line(self) -> None:
        with open(self.path, "a") as handle:
            handle.write("bob:plain\n")
        error = self.assertRaises(passwords.PasswordFileError, read_entries, self.path)
        self.assertIn("line 2", str(error))

    def test_on_the_server(self) -> None:
        server = FakeServer(checker=self.checker)
        peer = server.connect()
        peer.received()
        self.assertEqual(peer.register("alice", "nope"), [UNAUTHORIZED])
        self.assertTrue(peer.register("alice", "wonder-land")[0].startswith(b"WELCOME alice "))

    def test_the_default_runs_in_a_thread(self) -> None:
        checker = HashedPasswordChecker(self.path)
        self.assertIs(checker._run, deferToThread)

    def test_auth_option_selects_the_plugin(self) -> None:
        options = tap.ServerOptions()
        options.parseOptions(["--auth", f"hbpasswd:{self.path}"])
        self.assertIsInstance(options.checker, HashedPasswordChecker)
        self.assertIsNone(tap.ServerOptions().checker)

    def test_auth_option_with_a_missing_file_is_a_usage_error(self) -> None:
        self.assertRaises(
            usage.UsageError, tap.ServerOptions().parseOptions, ["--auth", "hbpasswd:" + self.path + ".missing"]
        )


PASSWD = findExecutable("hbchat-passwd")


class PasswdCommandTests(SynchronousTestCase):
    """``hbchat-passwd`` as a process; ``--stdin`` stands in for the terminal."""

    def setUp(self) -> None:
        if PASSWD is None:
            raise SkipTest("hbchat-passwd is not installed")
        self.path = self.mktemp()

    def passwd(self, *arguments: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        assert PASSWD is not None
        return subprocess.run(
            [PASSWD, *arguments], input=stdin, capture_output=True, text=True, timeout=60, check=False
        )

    def test_add_list_remove(self) -> None:
        result = self.passwd("add", self.path, "alice", "--stdin", stdin="s3cret\n")
        self.assertEqual((result.returncode, result.stdout), (0, "added alice\n"), result.stderr)
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)
        self.assertEqual(self.passwd("add", self.path, "bob", "--stdin", stdin="pw\n").returncode, 0)
        self.assertEqual(self.passwd("add", self.path, "bob", "--stdin", stdin="pw2\n").stdout, "changed bob\n")
        self.assertEqual(self.passwd("list", self.path).stdout, "alice\nbob\n")
        self.assertTrue(read_entries(self.path)["alice"].matches(b"s3cret"))
        self.assertTrue(read_entries(self.path)["bob"].matches(b"pw2"))
        self.assertEqual(self.passwd("remove", self.path, "alice").stdout, "removed alice\n")
        self.assertEqual(self.passwd("list", self.path).stdout, "bob\n")
        self.assertEqual(sorted(os.listdir(os.path.dirname(os.path.abspath(self.path)))), [os.path.basename(self.path)])

    def test_errors_are_one_line_and_exit_1(self) -> None:
        cases = [
            (("remove", self.path, "alice"), ""),
            (("list", self.path), ""),
            (("add", self.path, "no/good", "--stdin"), "x\n"),
            (("add", self.path, "alice", "--stdin"), "two words\n"),
            (("add", self.path, "alice", "--stdin"), "\n"),
        ]
        for arguments, stdin in cases:
            result = self.passwd(*arguments, stdin=stdin)
            self.assertEqual(result.returncode, 1, (arguments, result.stderr))
            self.assertRegex(result.stderr, r"^hbchat-passwd: error: [^\n]+\n$")
        self.assertEqual(self.passwd("frobnicate").returncode, 2)

    def test_without_stdin_the_password_is_asked_on_the_terminal(self) -> None:
        asked: list[str] = []
        answers = iter(["one", "two"])

        def fake_getpass(prompt: str) -> str:
            asked.append(prompt)
            return next(answers)

        self.patch(getpass, "getpass", fake_getpass)
        self.patch(sys, "stderr", open(os.devnull, "w"))
        self.assertEqual(passwdcli.passwd_main(["add", self.path, "alice"]), 1)
        self.assertEqual(asked, ["Password for alice: ", "Again: "])
        self.assertFalse(os.path.exists(self.path))


class TwistdAuthTests(TwistdTestCase):
    @inlineCallbacks
    def test_twistd_with_hbpasswd(self) -> Any:
        path = os.path.abspath(self.mktemp())
        write_entries(path, {"tester": hash_password("pass-word")})
        port = freePort()
        process = TwistdProcess()
        arguments = [self.twistd, "-n", "--pidfile=", "hbchat", "--listen", f"tcp:{port}:interface=127.0.0.1"]
        arguments += ["--auth", f"hbpasswd:{path}"]
        transport = reactor.spawnProcess(
            process, self.twistd, arguments, env=dict(os.environ), path=self.freshDirectory()
        )
        self.addCleanup(self._kill, process, transport)
        client = yield self._connect(process, port)
        hello = yield client.waitForLine(r"HELLO .*")
        self.assertEqual(hello.group(0), "HELLO hbchat/1 ping=30 timeout=90 auth=required")
        client.sendLine("NICK tester wrong")
        yield client.waitForLine("ERR 401 .*")
        client.sendLine("NICK tester pass-word")
        yield client.waitForLine(r"WELCOME tester \S+ \d+")

    def test_help_auth_lists_hbpasswd(self) -> None:
        result = self.runTwistd("hbchat", "--help-auth")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("hbpasswd", result.stdout)
