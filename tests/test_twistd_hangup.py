"""
SIGHUP to a real ``twistd hbchat`` (``systemctl reload``, ``kill -HUP``) in every configuration:
without ``ssl:`` listeners, while draining, in the foreground and daemonised. It is never a
death: the server logs what it reloaded (here: nothing) and carries on.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import deferLater

from tests.test_integration import BYE_SHUTDOWN, DEADLINE, within
from tests.test_twistd import TwistdProcess, TwistdTestCase, freePort

NOTHING_TO_RELOAD = "SIGHUP: nothing to reload (no ssl: listener)"


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class TwistdHangupTests(TwistdTestCase):
    @inlineCallbacks
    def waitForOutput(self, process: TwistdProcess, text: str, count: int = 1) -> Any:
        deadline = reactor.seconds() + DEADLINE
        while process.out.count(text.encode()) < count:
            if process.reason is not None or reactor.seconds() > deadline:
                self.fail(f"twistd never logged {text!r} ({count} times)\n{process.output()}")
            yield deferLater(reactor, 0.05, lambda: None)

    @inlineCallbacks
    def chat(self, process: TwistdProcess, port: int, nick: str) -> Any:
        client = yield self._connect(process, port)
        yield client.waitForLine(r"HELLO .*")
        client.sendLine(f"NICK {nick}")
        yield client.waitForLine(rf"WELCOME {nick} .*")
        client.sendLine(f"SAY {nick} is here")
        yield client.waitForLine(rf"MSG \d+ {nick} {nick} is here")
        return client

    def assertEndedCleanly(self, process: TwistdProcess) -> None:
        """Exit status 0, or twistd's re-raised SIGTERM after a clean stop; never a death by SIGHUP."""
        ended = process.reason
        assert ended is not None
        if not (ended.check(ProcessTerminated) and cast(ProcessTerminated, ended.value).signal == signal.SIGTERM):
            self.assertTrue(ended.check(ProcessDone), process.output())
        text = process.out.decode(errors="replace") + process.err.decode(errors="replace")
        self.assertNotIn("Traceback", text, process.output())
        self.assertIn("Server Shut Down.", text, process.output())

    @inlineCallbacks
    def test_sighup_without_ssl_listeners_logs_nothing_to_reload_and_serves_on(self) -> Any:
        port = freePort()
        process, transport = self.spawn("--listen", f"tcp:{port}:interface=127.0.0.1")
        before = yield self.chat(process, port, "before")
        transport.signalProcess("HUP")
        yield self.waitForOutput(process, NOTHING_TO_RELOAD)
        transport.signalProcess("HUP")  # and again: a handler that lasts
        yield self.waitForOutput(process, NOTHING_TO_RELOAD, count=2)
        self.assertIsNone(process.reason, process.output())
        yield self.chat(process, port, "after")
        before.sendLine("SAY still here")
        yield before.waitForLine(r"MSG \d+ before still here")

        transport.signalProcess("TERM")
        yield within(process.whenEnded(), DEADLINE, f"twistd exiting after SIGTERM\n{process.output()}")
        self.assertEndedCleanly(process)

    @inlineCallbacks
    def test_sighup_while_draining_is_logged_and_no_death(self) -> Any:
        port = freePort()
        process, transport = self.spawn(
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--drain",
            "30",
            "--register-timeout",
            "60",
            before=("--logger", "hbchat.logs.json_observer"),
        )
        # The drain says BYE to one connection every 0.1 s: 60 of them keep it going for 6 s.
        clients = []
        for _ in range(60):
            client = yield self._connect(process, port)
            clients.append(client)
        for client in clients:
            yield client.waitForLine(r"HELLO .*")
        transport.signalProcess("TERM")
        yield self.waitForOutput(process, "draining 60 connections")
        transport.signalProcess("HUP")
        yield self.waitForOutput(process, NOTHING_TO_RELOAD)
        self.assertIsNone(process.reason, process.output())
        transport.signalProcess("TERM")  # the second SIGTERM ends the drain at once
        yield within(process.whenEnded(), DEADLINE, f"twistd exiting after a second SIGTERM\n{process.output()}")
        self.assertEndedCleanly(process)
        records = [json.loads(line) for line in process.out.decode().splitlines()]
        [hangup] = [record for record in records if record["text"] == NOTHING_TO_RELOAD]
        self.assertEqual(hangup["state"], "draining", process.output())
        self.assertTrue(any(record["text"].startswith("signal 15 while draining") for record in records))

    @inlineCallbacks
    def test_sighup_to_a_daemon_is_logged_and_it_serves_on(self) -> Any:
        """``twistd hbchat`` (no -n): the daemon writes twistd.pid and its log file; SIGHUP leaves it running."""
        directory = Path(self.freshDirectory())
        port = freePort()
        starter = TwistdProcess()
        argv = [self.twistd, "--pidfile=twistd.pid", "--logfile=twistd.log", "hbchat"]
        argv += ["--listen", f"tcp:{port}:interface=127.0.0.1"]
        reactor.spawnProcess(starter, self.twistd, argv, env=dict(os.environ), path=str(directory))
        # twistd's first process exits once the daemon reports that it started (so: listens).
        yield within(starter.whenEnded(), DEADLINE, "twistd daemonising")
        self.assertTrue(starter.reason is not None and starter.reason.check(ProcessDone), starter.output())
        pidfile, logfile = directory / "twistd.pid", directory / "twistd.log"
        pid = int(pidfile.read_text())

        def killDaemon() -> None:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

        self.addCleanup(killDaemon)

        def log() -> str:
            return logfile.read_text(errors="replace") if logfile.exists() else ""

        @inlineCallbacks
        def waitFor(condition: Any, what: str) -> Any:
            deadline = reactor.seconds() + DEADLINE
            while not condition():
                if reactor.seconds() > deadline:
                    self.fail(f"{what} within {DEADLINE}s; alive={alive(pid)}\n--- twistd.log ---\n{log()}")
                yield deferLater(reactor, 0.05, lambda: None)

        client = yield self.chat(starter, port, "alice")
        os.kill(pid, signal.SIGHUP)
        yield waitFor(lambda: NOTHING_TO_RELOAD in log() or not alive(pid), "no 'nothing to reload' in the log")
        self.assertTrue(alive(pid), log())
        client.sendLine("SAY still here")
        yield client.waitForLine(r"MSG \d+ alice still here")

        os.kill(pid, signal.SIGTERM)
        yield client.waitForLine(BYE_SHUTDOWN)
        yield waitFor(lambda: not alive(pid), "the daemon did not exit after SIGTERM")
        self.assertFalse(pidfile.exists(), "twistd.pid left behind: the daemon did not stop cleanly")
        self.assertIn("Server Shut Down.", log())
        self.assertNotIn("Traceback", log())
