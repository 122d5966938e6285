"""
The installed ``twistd hbchat`` as a real process: its options, its errors, and a stop by SIGTERM.

These tests run the ``twistd`` next to the running Python (a virtualenv's or tox env's
``bin/``), falling back to the one on PATH, always from a fresh temporary directory so the
plugin is found where it is installed, not in a source checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from typing import Any, cast

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionRefusedError, ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial import unittest

import hbchat
import twisted
from tests.test_integration import BYE_SHUTDOWN, DEADLINE, LineClient, within


def findExecutable(name: str) -> str | None:
    """A console script installed beside this Python (a tox env's bin/), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return shutil.which(name)


TWISTD = findExecutable("twistd")

#: What ``twistd hbchat --help`` must show for each option.
DEFAULTS = {
    "listen": "tcp:6464",
    "ping": "30",
    "timeout": "90",
    "register-timeout": "10",
    "max-line": "4096",
    "max-clients": "10000",
    "history": "1000",
}


def freePort() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (twistd cannot report tcp:0's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TwistdProcess(ProcessProtocol):
    """Collects a child's output and tells when it has ended."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.reason: Failure | None = None
        self._notify: list[Deferred[Any]] = []

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        notify, self._notify = self._notify, []
        for d in notify:
            d.callback(None)

    def whenEnded(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        if self.reason is not None:
            d.callback(None)
        else:
            self._notify.append(d)
        return d

    def output(self) -> str:
        status = "still running" if self.reason is None else self.reason.getErrorMessage()
        return (
            f"twistd ({status})\n--- stdout ---\n{self.out.decode(errors='replace')}"
            f"--- stderr ---\n{self.err.decode(errors='replace')}"
        )


class TwistdTestCase(unittest.TestCase):
    def setUp(self) -> None:
        if TWISTD is None:
            raise unittest.SkipTest("no twistd executable next to sys.executable or on PATH")
        self.twistd = TWISTD

    def freshDirectory(self) -> str:
        directory = os.path.abspath(str(self.mktemp()))
        os.makedirs(directory)
        return directory

    def runTwistd(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """Run twistd to completion (only for commands that exit at once)."""
        return subprocess.run(
            [self.twistd, *arguments],
            cwd=self.freshDirectory(),
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    @inlineCallbacks
    def _connect(self, process: TwistdProcess, port: int) -> Any:
        """Connect to the starting server, retrying until it listens (deadline: DEADLINE)."""
        deadline = reactor.seconds() + DEADLINE
        while True:
            client = LineClient("tester")
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE)
            try:
                yield within(connectProtocol(endpoint, client), DEADLINE, "connecting to twistd")
            except ConnectionRefusedError:
                if process.reason is not None:
                    self.fail(f"twistd exited before it listened\n{process.output()}")
                if reactor.seconds() > deadline:
                    self.fail(f"twistd did not listen on {port} within {DEADLINE}s\n{process.output()}")
                yield deferLater(reactor, 0.1, lambda: None)
                continue
            self.addCleanup(client.disconnect)
            return client

    def spawn(self, *arguments: str, before: tuple[str, ...] = ()) -> tuple[TwistdProcess, Any]:
        """``twistd -n hbchat`` with these options (``before``: twistd's own), killed at cleanup."""
        process = TwistdProcess()
        argv = [self.twistd, "-n", "--pidfile=", *before, "hbchat", *arguments]
        transport = reactor.spawnProcess(process, self.twistd, argv, env=dict(os.environ), path=self.freshDirectory())
        self.addCleanup(self._kill, process, transport)
        return process, transport

    @inlineCallbacks
    def _kill(self, process: TwistdProcess, transport: Any) -> Any:
        if process.reason is None:
            transport.signalProcess("KILL")
            yield within(process.whenEnded(), DEADLINE, "twistd dying of SIGKILL")


class TwistdServerTests(TwistdTestCase):
    @inlineCallbacks
    def test_serves_and_stops_on_sigterm(self) -> Any:
        """
        ``twistd -n hbchat`` serves the protocol; SIGTERM makes it say BYE shutdown to its
        clients and exit cleanly.
        """
        port = freePort()
        process = TwistdProcess()
        arguments = [
            self.twistd,
            "-n",
            "--pidfile=",
            "hbchat",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--ping",
            "1",
            "--timeout",
            "3",
        ]
        transport = reactor.spawnProcess(
            process, self.twistd, arguments, env=dict(os.environ), path=self.freshDirectory()
        )
        self.addCleanup(self._kill, process, transport)

        client = yield self._connect(process, port)
        hello = yield client.waitForLine(r"HELLO .*")
        self.assertEqual(hello.group(0), "HELLO hbchat/1 ping=1 timeout=3")
        client.sendLine("NICK tester")
        welcome = yield client.waitForLine(r"WELCOME tester (\S+) (\d+)")
        yield client.waitForLine(rf"JOIN {int(welcome.group(2)) + 1} tester")
        client.sendLine("SAY hello from a real process \u2713")
        yield client.waitForLine(r"MSG \d+ tester hello from a real process \u2713")

        transport.signalProcess("TERM")
        yield client.waitForLine(BYE_SHUTDOWN)
        [reason] = yield within(client.whenLost(), DEADLINE, "the server closing the connection")
        self.assertTrue(reason.check(ConnectionDone), reason.getErrorMessage())
        yield within(process.whenEnded(), DEADLINE, f"twistd exiting after SIGTERM\n{process.output()}")

        # twistd (Twisted >= 22.1) stops the reactor cleanly on SIGTERM, then re-raises the
        # signal so that its parent sees it was terminated: "killed by SIGTERM after a clean
        # shutdown" is as good an exit as status 0. A crash shows up as a Traceback or as a
        # missing "Server Shut Down." instead.
        ended = process.reason
        assert ended is not None
        if ended.check(ProcessTerminated) and cast(ProcessTerminated, ended.value).signal == signal.SIGTERM:
            pass
        else:
            self.assertTrue(ended.check(ProcessDone), process.output())
        text = process.out.decode(errors="replace") + process.err.decode(errors="replace")
        self.assertNotIn("Traceback", text, process.output())
        self.assertIn("Server Shut Down.", text, process.output())

    @inlineCallbacks
    def test_a_second_sigterm_ends_the_drain_at_once(self) -> Any:
        """With ``--drain 30`` the first SIGTERM starts a long drain; the second ends it."""
        port = freePort()
        process = TwistdProcess()
        arguments = [self.twistd, "-n", "--pidfile=", "hbchat", "--listen", f"tcp:{port}:interface=127.0.0.1"]
        arguments += ["--ping", "1", "--timeout", "3", "--drain", "30"]
        transport = reactor.spawnProcess(
            process, self.twistd, arguments, env=dict(os.environ), path=self.freshDirectory()
        )
        self.addCleanup(self._kill, process, transport)
        clients = []
        for n in range(20):
            client = yield self._connect(process, port)
            yield client.waitForLine(r"HELLO .*")
            client.sendLine(f"NICK user{n}")
            yield client.waitForLine(rf"WELCOME user{n} .*")
            clients.append(client)

        transport.signalProcess("TERM")
        yield task.deferLater(reactor, 1.0, lambda: None)
        told = [client for client in clients if any(re.fullmatch(BYE_SHUTDOWN, line) for line in client.lines)]
        self.assertLess(len(told), len(clients), "the first SIGTERM told everyone at once: no drain")
        started = reactor.seconds()
        transport.signalProcess("TERM")
        yield within(process.whenEnded(), DEADLINE, f"twistd exiting after a second SIGTERM\n{process.output()}")
        self.assertLess(reactor.seconds() - started, 10, "the second SIGTERM did not cut the 30 s drain short")
        for client in clients:
            yield within(client.whenLost(), DEADLINE, "the connection closing")
        text = process.out.decode(errors="replace") + process.err.decode(errors="replace")
        self.assertNotIn("Traceback", text, process.output())


class TwistdOptionTests(TwistdTestCase):
    def test_twistd_help_lists_hbchat(self) -> None:
        result = self.runTwistd("--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"(?m)^\s+hbchat\s", result.stdout)

    def test_hbchat_version_is_hbchats_not_only_twisteds(self) -> None:
        result = self.runTwistd("hbchat", "--version")
        self.assertEqual(result.returncode, 0, result)
        self.assertEqual(result.stdout.splitlines()[0], f"hbchat {hbchat.__version__}", result)
        self.assertIn(f"Twisted {twisted.__version__}", result.stdout.splitlines(), result)

    def test_hbchat_help_lists_options_and_defaults(self) -> None:
        result = self.runTwistd("hbchat", "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        # Each option's text: its line and the indented lines that continue it, joined.
        described: dict[str, str] = {}
        current: str | None = None
        for line in result.stdout.splitlines():
            found = re.match(r"\s*(?:-\w, )?--([\w-]+)=?\s*(.*)", line)
            if found:
                current = found.group(1)
                described[current] = found.group(2)
            elif current is not None and line.startswith(" " * 8) and line.strip():
                described[current] += " " + line.strip()
            else:
                current = None
        for option, default in DEFAULTS.items():
            self.assertIn(option, described, f"--{option} missing from:\n{result.stdout}")
            text = " ".join(described[option].split())
            self.assertIn(f"[default: {default}]", text, f"--{option}: {text!r}")

    def assertOneLineError(self, arguments: list[str], *options: str) -> None:
        # -n and --pidfile= keep a server that wrongly accepted these options in the
        # foreground and killable (by the subprocess timeout), instead of daemonized.
        result = self.runTwistd("-n", "--pidfile=", "hbchat", *arguments)
        shown = f"twistd hbchat {' '.join(arguments)}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"
        self.assertNotEqual(result.returncode, 0, shown)
        self.assertNotIn("Traceback", result.stdout, shown)
        self.assertNotIn("Traceback", result.stderr, shown)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, shown)
        for option in options:
            self.assertRegex(lines[0], rf"(?<![\w-]){re.escape(option)}(?![\w-])", shown)

    def test_timeout_not_above_ping(self) -> None:
        self.assertOneLineError(
            ["--ping", "2", "--timeout", "1", "--listen", "tcp:0:interface=127.0.0.1"], "--timeout", "--ping"
        )

    def test_ping_not_a_number(self) -> None:
        self.assertOneLineError(["--ping", "abc", "--listen", "tcp:0:interface=127.0.0.1"], "--ping")

    def test_listen_not_an_endpoint(self) -> None:
        self.assertOneLineError(["--listen", "bogus:thing"], "--listen")

    def test_max_clients_zero(self) -> None:
        self.assertOneLineError(["--max-clients", "0", "--listen", "tcp:0:interface=127.0.0.1"], "--max-clients")
