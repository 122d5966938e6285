"""
The installed ``hbchat-client`` as a real process, against a server in trial's reactor.

From a pipe it says every line and exits once each was echoed; on a terminal (a pty made
by the test, so nothing needs installing) it is an interactive chat.  The script is the
one next to the running Python, falling back to the one on PATH.
"""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from tests.test_client_integration import ClientTestCase, Conditions, requireExecutable
from tests.test_integration import DEADLINE, LineClient
from tests.test_twistd import findExecutable, freePort

CLIENT = findExecutable("hbchat-client")

#: A timestamped chat line as the client shows it.
STAMP = r"(?P<hh>[01]\d|2[0-3]):(?P<mm>[0-5]\d):(?P<ss>[0-5]\d)"


class ClientProcess(ProcessProtocol):
    """Collects a child's output (on a pty, stderr comes with stdout) and wakes up waits."""

    def __init__(self, conditions: Conditions) -> None:
        self.conditions = conditions
        self.out = bytearray()
        self.err = bytearray()
        self.reason: Failure | None = None

    def outReceived(self, data: bytes) -> None:
        self.out += data
        self.conditions.check()

    def errReceived(self, data: bytes) -> None:
        self.err += data
        self.conditions.check()

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        self.conditions.check()

    @property
    def running(self) -> bool:
        return self.reason is None

    @property
    def process(self) -> IProcessTransport:
        assert self.transport is not None, "not started"
        return self.transport

    @staticmethod
    def _lines(data: bytes) -> list[str]:
        """Complete lines; a terminal's CR LF and stray CRs are taken out."""
        text = data.decode("utf-8", "replace").replace("\r", "")
        return text.split("\n")[:-1]

    def outLines(self) -> list[str]:
        return self._lines(bytes(self.out))

    def errLines(self) -> list[str]:
        return self._lines(bytes(self.err))

    def exitCode(self) -> int | None:
        """The exit status, or None while running or when killed by a signal."""
        reason = self.reason
        if reason is None:
            return None
        if reason.check(ProcessDone):
            return 0
        ended = cast(ProcessTerminated, reason.value)
        return None if ended.exitCode is None else int(ended.exitCode)

    def output(self) -> str:
        status = "still running" if self.reason is None else self.reason.getErrorMessage()
        return (
            f"hbchat-client ({status})\n--- stdout ---\n{self.out.decode(errors='replace')}"
            f"\n--- stderr ---\n{self.err.decode(errors='replace')}"
        )


class CliTestCase(ClientTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client = requireExecutable(CLIENT, "hbchat-client")

    def spawnClient(self, *arguments: str, usePTY: bool = False) -> ClientProcess:
        directory = os.path.abspath(str(self.mktemp()))
        os.makedirs(directory)
        process = ClientProcess(self.conditions)
        reactor.spawnProcess(
            process,
            self.client,
            [self.client, *arguments],
            env=dict(os.environ, TERM=os.environ.get("TERM", "xterm")),
            path=directory,
            usePTY=usePTY,
        )
        self.addCleanup(self._kill, process)
        return process

    @inlineCallbacks
    def _kill(self, process: ClientProcess) -> Any:
        if process.running:
            process.process.signalProcess(int(signal.SIGKILL))
        yield self.waitEnded(process)

    def waitEnded(self, process: ClientProcess, timeout: float = DEADLINE) -> Deferred[None]:
        return self.conditions.waitFor(lambda: not process.running, "hbchat-client to exit", process.output, timeout)

    @inlineCallbacks
    def waitForOutput(self, process: ClientProcess, pattern: str, start: int = 0) -> Any:
        """The first line of stdout at or after ``start`` that matches ``pattern`` (whole line)."""
        compiled = re.compile(pattern)
        found: list[re.Match[str]] = []

        def matched() -> bool:
            for line in process.outLines()[start:]:
                match = compiled.fullmatch(line)
                if match is not None:
                    found.append(match)
                    return True
            return False

        yield self.conditions.waitFor(
            lambda: matched() or not process.running, f"a line matching {pattern!r}", process.output
        )
        if not found:
            self.fail(f"hbchat-client exited before printing a line matching {pattern!r}\n{process.output()}")
        return found[0]

    @inlineCallbacks
    def watcher(self, port: int) -> Any:
        """A raw protocol client, registered as ``watcher``, to see what reaches the server."""
        watcher: LineClient = yield self.connect(port, "watcher")
        yield self.register(watcher, "watcher")
        return watcher


class PipeTests(CliTestCase):
    @inlineCallbacks
    def test_piped_lines_are_said_and_the_client_exits_0_once_echoed(self) -> Any:
        _, port = self.startServer(ping=5, timeout=30)
        watcher = yield self.watcher(port)
        process = self.spawnClient(f"tcp:127.0.0.1:{port}", "--nick", "bot")
        process.process.write(b"one\ntwo\n")
        process.process.closeStdin()

        yield self.waitEnded(process)
        self.assertEqual(process.exitCode(), 0, process.output())
        self.assertEqual(process.errLines(), [], process.output())
        shown = [line for line in process.outLines() if "<bot>" in line]
        self.assertEqual(len(shown), 2, process.output())
        for line, text in zip(shown, ["one", "two"], strict=True):
            self.assertRegex(line, rf"^{STAMP} <bot> {text}$")

        first, second = yield watcher.waitForLines(r"MSG (\d+) bot (\S+)", 2)
        self.assertEqual(first.group(2), "one", watcher.transcript())
        self.assertEqual(second.group(2), "two", watcher.transcript())
        self.assertEqual(int(second.group(1)), int(first.group(1)) + 1, watcher.transcript())
        # It left on purpose (QUIT), not by dropping the connection.
        yield watcher.waitForLine(r"LEFT \d+ bot quit")

    @inlineCallbacks
    def test_more_lines_than_the_outbox_holds_are_all_delivered(self) -> Any:
        """stdin is read no faster than the server takes it: 1,500 lines, outbox of 1,000."""
        _, port = self.startServer(ping=5, timeout=30)
        process = self.spawnClient(f"tcp:127.0.0.1:{port}", "--nick", "bulk")
        process.process.write(b"".join(b"line %d\n" % n for n in range(1500)))
        process.process.closeStdin()
        yield self.waitEnded(process)
        self.assertEqual(process.exitCode(), 0, process.output()[-2000:])
        self.assertEqual(process.errLines(), [])
        self.assertEqual(sum(1 for line in process.outLines() if "<bulk> line " in line), 1500)

    @inlineCallbacks
    def test_nobody_listening_gives_up_after_max_retries(self) -> Any:
        process = self.spawnClient(
            f"tcp:127.0.0.1:{freePort()}", "--nick", "bot", "--max-retries", "2", "--backoff-cap", "1"
        )
        process.process.write(b"lost\n")
        process.process.closeStdin()

        yield self.waitEnded(process)
        self.assertNotIn(process.exitCode(), (0, None), process.output())
        errors = process.errLines()
        self.assertEqual(len(errors), 1, process.output())
        self.assertIn("gave up", errors[0], process.output())
        self.assertNotIn("Traceback", process.output())
        # Two retries after the first attempt, each announced.
        self.assertEqual(sum(1 for line in process.outLines() if "reconnecting in" in line), 2, process.output())

    @inlineCallbacks
    def test_a_dead_port_is_given_up_on_after_give_up_after_with_the_reason_on_each_line(self) -> Any:
        started = reactor.seconds()
        process = self.spawnClient(f"tcp:127.0.0.1:{freePort()}", "--nick", "bot", "--give-up-after", "3")
        process.process.write(b"lost\n")
        process.process.closeStdin()

        yield self.waitEnded(process)
        elapsed = reactor.seconds() - started
        self.assertEqual(process.exitCode(), 1, process.output())
        self.assertGreaterEqual(elapsed, 3.0, process.output())
        self.assertLess(elapsed, 3.0 + DEADLINE / 2, process.output())
        retries = [line for line in process.outLines() if "reconnecting in" in line]
        self.assertTrue(retries, process.output())
        for line in retries:
            self.assertRegex(
                line, r"^-- could not connect: connection refused; reconnecting in \d+\.\d s \(attempt \d+\)$"
            )
        self.assertEqual(
            process.errLines(),
            ["hbchat-client: could not connect: connection refused; gave up after 3 s without a connection"],
            process.output(),
        )


class EscapeInjectionTests(CliTestCase):
    #: What a hostile user sends: clear screen, OSC title, OSC 52 clipboard write, BEL, BS,
    #: NUL, a CR that would overwrite the line with a fake notice, DEL, a C1 CSI, bidi overrides.
    PAYLOAD = (
        "\x1b[2J\x1b]0;owned\x07\x1b]52;c;cm0gLXJmIH4=\x07\x07\x08\x08\x00"
        "x\r-- alice left (quit)\x7f\x9b2J\u202eevil\u2066"
    )
    SHOWN = "^[[2J^[]0;owned^G^[]52;c;cm0gLXJmIH4=^G^G^H^H^@x^M-- alice left (quit)^?\\x9b2J<U+202E>evil<U+2066>"

    @inlineCallbacks
    def test_control_characters_from_another_user_reach_the_terminal_rendered(self) -> Any:
        _, port = self.startServer(ping=5, timeout=30)
        process = self.spawnClient(f"tcp:127.0.0.1:{port}", "--nick", "bot")
        yield self.waitForOutput(process, r"-- connected as bot")
        mallory: LineClient = yield self.connect(port, "mallory")
        yield self.register(mallory, "mallory")
        mallory.sendLine("SAY " + self.PAYLOAD)
        mallory.sendLine("TELL bot " + self.PAYLOAD)

        said = yield self.waitForOutput(process, rf"{STAMP} <mallory> (?P<text>.*)")
        told = yield self.waitForOutput(process, rf"{STAMP} \*mallory\* (?P<text>.*)")
        self.assertEqual(said.group("text"), self.SHOWN, process.output())
        self.assertEqual(told.group("text"), self.SHOWN, process.output())
        raw = bytes(process.out).decode("utf-8")
        obeyed = [
            char for char in raw if (char < " " and char != "\n") or "\x7f" <= char <= "\x9f" or char in "\u202e\u2066"
        ]
        self.assertEqual(obeyed, [], process.output())
        process.process.closeStdin()
        yield self.waitEnded(process)


class UsageTests(CliTestCase):
    @inlineCallbacks
    def assertUsageError(self, arguments: list[str], *expected: str) -> Any:
        """Exit status 2, no traceback, and a last stderr line starting ``hbchat-client:``."""
        process = self.spawnClient(*arguments)
        process.process.closeStdin()
        yield self.waitEnded(process)
        shown = f"hbchat-client {arguments!r}\n{process.output()}"
        self.assertEqual(process.exitCode(), 2, shown)
        self.assertNotIn("Traceback", process.output(), shown)
        errors = process.errLines()
        self.assertTrue(errors, shown)
        self.assertTrue(errors[-1].startswith("hbchat-client: "), shown)
        for text in expected:
            self.assertIn(text, errors[-1], shown)
        return errors

    @inlineCallbacks
    def test_bad_nicks(self) -> Any:
        for nick in ["has space", "", "x" * 33, "semi;colon"]:
            yield self.assertUsageError(
                ["tcp:127.0.0.1:1", "--nick", nick], f"--nick {nick!r}", "1 to 32 letters, digits"
            )

    @inlineCallbacks
    def test_bad_give_up_after_values(self) -> Any:
        for value in ["0", "-1", "soon", "inf", "nan"]:
            yield self.assertUsageError(
                ["tcp:127.0.0.1:1", "--nick", "bot", "--give-up-after", value],
                f"--give-up-after must be a positive number of seconds or 'never', not {value!r}",
            )

    @inlineCallbacks
    def test_bad_endpoints(self) -> Any:
        for endpoint in ["bogus:thing", "tcp:127.0.0.1:notaport"]:
            errors = yield self.assertUsageError([endpoint, "--nick", "bot"], f"ENDPOINT {endpoint!r}", "not usable")
            self.assertEqual(len(errors), 1, errors)


class TerminalTests(CliTestCase):
    @inlineCallbacks
    def test_interactive_chat_on_a_terminal(self) -> Any:
        """On a pty: a typed line echoes with a timestamp, /who, /help, and /quit exits 0."""
        _, port = self.startServer(ping=5, timeout=30)
        watcher = yield self.watcher(port)
        process = self.spawnClient(f"tcp:127.0.0.1:{port}", "--nick", "alice", usePTY=True)
        yield self.waitForOutput(process, r"-- connected as alice; /help lists commands")

        start = len(process.outLines())
        typedAt = time.localtime()
        process.process.write(b"hello from a terminal\n")
        shown = yield self.waitForOutput(process, rf"{STAMP} <alice> hello from a terminal", start)
        clock = int(shown.group("hh")) * 3600 + int(shown.group("mm")) * 60 + int(shown.group("ss"))
        typed = typedAt.tm_hour * 3600 + typedAt.tm_min * 60 + typedAt.tm_sec
        self.assertLessEqual((clock - typed) % 86400, DEADLINE, f"timestamp {shown.group(0)!r} is not now")
        yield watcher.waitForLine(r"MSG \d+ alice hello from a terminal")

        start = len(process.outLines())
        process.process.write(b"/who\n")
        yield self.waitForOutput(process, r"-- here: alice watcher", start)

        start = len(process.outLines())
        process.process.write(b"/help\n")
        yield self.waitForOutput(process, r"-- commands:", start)
        yield self.waitForOutput(process, r"--\s+/help\s+.*", start)
        listed = "\n".join(process.outLines()[start:])
        for command in ["/who", "/tell", "/rtt", "/quit", "/help"]:
            self.assertIn(command, listed, process.output())

        process.process.write(b"/quit\n")
        yield self.waitEnded(process)
        self.assertEqual(process.exitCode(), 0, process.output())
        self.assertNotIn("Traceback", process.output())
        yield watcher.waitForLine(r"LEFT \d+ alice quit")
