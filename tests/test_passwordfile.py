"""
The password file's hardening: unknown nicks cost what known ones do, a file others may read
is warned about and not kept so by ``hbchat-passwd``, a vanished file is one log line, and a
missing directory is named as such.
"""

from __future__ import annotations

import os
import sys
from typing import Any, cast

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from hbchat.auth import authoption, passwdcli, passwords
from hbchat.auth.passwords import Hashed, HashedPasswordChecker, hash_password, read_entries, write_entries
from hbchat.testing import FakeServer
from tests.test_auth import CHEAP, UNAUTHORIZED, synchronously


class RecordingHashed(Hashed):
    """A Hashed that notes the cost of each check instead of paying it."""

    checked: list[tuple[int, int, int]] = []

    def matches(self, password: bytes) -> bool:
        RecordingHashed.checked.append((self.n, self.r, self.p))
        return False


class DummyCostTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        self.checker = HashedPasswordChecker(self.path, run=synchronously)

    def test_an_unknown_nick_is_checked_at_the_cost_of_the_entries(self) -> None:
        costly = {"n": 2**5, "r": 4, "p": 2}
        write_entries(self.path, {"alice": hash_password("pw", **costly), "bob": hash_password("pw", **costly)})
        dummy = self.checker.dummyFor(read_entries(self.path))
        self.assertEqual((dummy.n, dummy.r, dummy.p), (2**5, 4, 2))

    def test_mixed_costs_use_the_most_common(self) -> None:
        entries = {
            "a": hash_password("pw", **CHEAP),
            "b": hash_password("pw", n=2**5, r=8, p=1),
            "c": hash_password("pw", n=2**5, r=8, p=1),
        }
        self.assertEqual(self.checker.dummyFor(entries).n, 2**5)

    def test_an_empty_file_uses_the_default_cost(self) -> None:
        dummy = self.checker.dummyFor({})
        self.assertEqual((dummy.n, dummy.r, dummy.p), (passwords.SCRYPT_N, passwords.SCRYPT_R, passwords.SCRYPT_P))

    def test_the_dummy_is_really_checked_for_an_unknown_nick(self) -> None:
        write_entries(self.path, {"alice": hash_password("pw", n=2**5, r=8, p=1)})
        entries = read_entries(self.path)
        cost = (2**5, 8, 1, 32)
        RecordingHashed.checked = []
        self.checker._dummies[cost] = RecordingHashed(2**5, 8, 1, b"salt", b"x" * 32)
        failure = self.failureResultOf(self.checker.requestAvatarId(UsernamePassword(b"nobody", b"pw")))
        failure.trap(UnauthorizedLogin)
        self.assertEqual(RecordingHashed.checked, [(2**5, 8, 1)])
        self.assertIs(self.checker.dummyFor(entries), self.checker._dummies[cost])

    def test_no_password_matches_the_dummy(self) -> None:
        self.assertFalse(self.checker.dummyFor({}).matches(b""))


class RemovedFileTests(SynchronousTestCase):
    def test_a_removed_file_is_one_log_line_and_err_401(self) -> None:
        path = self.mktemp()
        write_entries(path, {"alice": hash_password("pw", **CHEAP)})
        checker = HashedPasswordChecker(path, run=synchronously)
        events: list[dict[str, Any]] = []
        checker.log = Logger(observer=cast(ILogObserver, events.append))
        peer = FakeServer(checker=checker).connect()
        peer.received()
        os.unlink(path)
        self.assertEqual(peer.register("alice", "pw"), [UNAUTHORIZED])
        errors = [event for event in events if event["log_level"] >= LogLevel.warn]
        self.assertEqual(len(errors), 1)
        self.assertIsNone(errors[0].get("log_failure"))
        self.assertIn("No such file", errors[0]["why"])
        self.assertEqual(self.flushLoggedErrors(), [])


class ExposedFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        write_entries(self.path, {"alice": hash_password("pw", **CHEAP)})
        self.events: list[dict[str, Any]] = []
        self.patch(authoption, "log", Logger(observer=cast(ILogObserver, self.events.append)))

    def warnings(self) -> list[dict[str, Any]]:
        return [event for event in self.events if event["log_level"] == LogLevel.warn]

    def test_a_file_others_may_read_is_warned_about_at_start(self) -> None:
        for mode in (0o644, 0o666):
            self.events.clear()
            os.chmod(self.path, mode)
            authoption.make_checker(f"hbpasswd:{self.path}")
            [warning] = self.warnings()
            self.assertEqual(warning["mode"], f"{mode:04o}")

    def test_a_private_file_is_not(self) -> None:
        for mode in (0o600, 0o640):
            os.chmod(self.path, mode)
            authoption.make_checker(f"hbpasswd:{self.path}")
        self.assertEqual(self.warnings(), [])

    def test_a_plain_file_others_may_read_is_warned_about_too(self) -> None:
        plain = self.mktemp()
        with open(plain, "w") as handle:
            handle.write("alice:wonderland\n")
        os.chmod(plain, 0o644)
        authoption.make_checker(f"file:{plain}")
        self.assertEqual(len(self.warnings()), 1)


class PasswdModeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        self.patch(sys, "stdin", _Lines("pw\n"))
        self.stderr = _Lines("")
        self.patch(sys, "stderr", self.stderr)
        self.patch(passwdcli, "hash_password", lambda password: hash_password(password, **CHEAP))

    def add(self, nick: str) -> int:
        self.patch(sys, "stdin", _Lines("pw\n"))
        return passwdcli.passwd_main(["add", self.path, nick, "--stdin"])

    def test_a_new_file_is_0600(self) -> None:
        self.assertEqual(self.add("alice"), 0)
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    def test_a_world_readable_file_loses_the_others_bits(self) -> None:
        self.add("alice")
        os.chmod(self.path, 0o644)
        self.add("bob")
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o640)
        os.chmod(self.path, 0o666)
        self.add("carol")
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o660)
        self.assertIn("was readable by others (mode 0666); it is now 0660", self.stderr.getvalue())

    def test_a_group_readable_file_keeps_its_mode(self) -> None:
        self.add("alice")
        os.chmod(self.path, 0o640)
        self.add("bob")
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o640)

    def test_a_missing_directory_is_named(self) -> None:
        directory = os.path.abspath(self.mktemp())
        self.path = os.path.join(directory, "passwd")
        self.assertEqual(self.add("bot"), 1)
        self.assertEqual(
            self.stderr.getvalue(),
            f"hbchat-passwd: error: {directory}: no such directory "
            f"(hbchat-passwd does not create it; e.g. install -d -m 750 {directory})\n",
        )


class _Lines:
    """A minimal text stream: readline() from given text, write() collected."""

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines(keepends=True)
        self._written: list[str] = []

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""

    def write(self, text: str) -> int:
        self._written.append(text)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self._written)
