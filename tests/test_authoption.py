"""``--auth``: what hbchat accepts, and the ``file:`` traps it refuses at start."""

from __future__ import annotations

import os

from twisted.cred.checkers import FilePasswordDB
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from hbchat.auth.passwords import hash_password, write_entries
from hbchat.server import tap
from tests.test_twistd import TwistdTestCase

CHEAP = {"n": 2**4, "r": 8, "p": 1}


def usage_error(*arguments: str) -> str:
    options = tap.ServerOptions()
    error = SynchronousTestCase().assertRaises(usage.UsageError, options.parseOptions, list(arguments))
    return str(error)


class AuthOptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())

    def test_a_plain_file_is_taken(self) -> None:
        with open(self.path, "w") as handle:
            handle.write("alice:wonderland\n")
        options = tap.ServerOptions()
        options.parseOptions(["--auth", f"file:{self.path}"])
        self.assertIsInstance(options.checker, FilePasswordDB)

    def test_a_missing_file_is_refused_in_one_line(self) -> None:
        message = usage_error("--auth", f"file:{self.path}")
        self.assertEqual(message, f"--auth file:{self.path}: no such file")

    def test_a_missing_hbpasswd_file_is_refused_in_one_line(self) -> None:
        message = usage_error("--auth", f"hbpasswd:{self.path}")
        self.assertEqual(message, f"--auth hbpasswd:{self.path}: no such file")

    def test_a_directory_is_refused(self) -> None:
        os.mkdir(self.path)
        self.assertIn("not a regular file", usage_error("--auth", f"file:{self.path}"))

    def test_an_hbpasswd_file_given_to_file_points_to_hbpasswd(self) -> None:
        write_entries(self.path, {"alice": hash_password("wonder-land", **CHEAP)})
        message = usage_error("--auth", f"file:{self.path}")
        self.assertIn(f"use --auth hbpasswd:{self.path}", message)
        self.assertNotIn("\n", message)

    def test_an_unknown_checker_is_one_line(self) -> None:
        self.assertEqual(
            usage_error("--auth", "nosuchkind:x"),
            "--auth 'nosuchkind' is not a known checker (see twistd hbchat --help-auth)",
        )

    def test_a_checker_without_passwords_is_refused(self) -> None:
        self.assertIn("does not check a nick and password", usage_error("--auth", "anonymous"))

    def test_help_says_what_hbchat_accepts(self) -> None:
        text = str(tap.ServerOptions())
        flat = " ".join(text.split())
        self.assertIn("hbpasswd:FILE (salted scrypt hashes made with", flat)
        self.assertIn("file:FILE (plain-text nick:password lines", flat)
        self.assertNotIn("Specify an authentication method for the server", flat)


class TwistdAuthOptionTests(TwistdTestCase):
    def test_a_missing_file_stops_the_start_with_one_line_and_exit_1(self) -> None:
        missing = os.path.abspath(self.mktemp())
        result = self.runTwistd("-n", "--pidfile=", "hbchat", "--listen", "tcp:0", "--auth", f"file:{missing}")
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertEqual(
            result.stderr,
            f"twistd hbchat: error: --auth file:{missing}: no such file (see: twistd hbchat --help)\n",
        )
