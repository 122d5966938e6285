"""
A stalled server does not blame its live clients.

The reactor is blocked for twice the idle timeout (as a long GC pause or a blocking call
would) while one client keeps sending from outside it: that client survives, and a client
that really said nothing is still cut, right after the stall.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from typing import Any, cast

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IReactorFDSet, IReactorTime
from twisted.trial import unittest

from tests.test_integration import DEADLINE, ChatTestCase

clock = cast(IReactorTime, reactor)


class Staller:
    """
    Blocks the reactor from its I/O phase, the way a GC pause in a ``dataReceived`` would:
    when it returns, the reactor runs its due timers before it reads sockets again.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.readEnd, self.writeEnd = os.pipe()
        self.endedAt = 0.0

    def fileno(self) -> int:
        return self.readEnd

    def doRead(self) -> None:
        os.read(self.readEnd, 1)
        cast(IReactorFDSet, reactor).removeReader(self)  # type: ignore[arg-type]
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            pass
        self.endedAt = time.monotonic()

    def logPrefix(self) -> str:
        return "staller"

    def connectionLost(self, reason: object) -> None:
        pass

    def stall(self) -> None:
        cast(IReactorFDSet, reactor).addReader(self)  # type: ignore[arg-type]
        os.write(self.writeEnd, b"x")

    def close(self) -> None:
        os.close(self.readEnd)
        os.close(self.writeEnd)


class SocketClient(threading.Thread):
    """A client on a plain socket in its own thread, so that it runs while the reactor is blocked."""

    def __init__(self, port: int, nick: str, chatty: bool, answerAfter: float | None = None) -> None:
        super().__init__(daemon=True, name=f"client-{nick}")
        self.port = port
        self.nick = nick
        self.chatty = chatty
        #: Answer every PING this many seconds later (a round trip well within the half
        #: interval the protocol allows), and say nothing else; None: never answer.
        self.answerAfter = answerAfter
        self.answers: list[tuple[float, bytes]] = []
        self.stop = threading.Event()
        self.quiet = threading.Event()
        self.registered = threading.Event()
        self.lines: list[str] = []
        self.closedAt: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the test, not lost in a thread
            self.error = error

    def _run(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
        sock.setblocking(False)
        sock.sendall(f"NICK {self.nick}\n".encode())
        pending = b""
        deadline = time.monotonic() + 4 * DEADLINE
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self.chatty and self.registered.is_set() and not self.quiet.is_set():
                sock.sendall(b"PING alive\n")
            while self.answers and self.answers[0][0] <= time.monotonic():
                sock.sendall(self.answers.pop(0)[1])
            wait = 0.1 if not self.answers else max(0.0, min(0.1, self.answers[0][0] - time.monotonic()))
            readable, _, _ = select.select([sock], [], [], wait)
            if not readable:
                continue
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.closedAt = time.monotonic()
                break
            *complete, pending = (pending + data).split(b"\n")
            for line in complete:
                text = line.decode()
                self.lines.append(text)
                if self.answerAfter is not None and (text == "PING" or text.startswith("PING ")):
                    self.answers.append((time.monotonic() + self.answerAfter, b"PONG" + line[4:] + b"\n"))
                if text.startswith("WELCOME "):
                    self.registered.set()
        sock.close()


class SocketClients(unittest.TestCase):
    """Blocking-socket clients in threads (they go on while the server stalls), stopped at cleanup."""

    @inlineCallbacks
    def waitFor(self, condition: Any, what: str) -> Any:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {what}")
            yield task.deferLater(clock, 0.05, lambda: None)

    def startClient(self, port: int, nick: str, chatty: bool, answerAfter: float | None = None) -> SocketClient:
        client = SocketClient(port, nick, chatty, answerAfter)
        client.start()

        def stop() -> None:
            client.stop.set()
            client.join(10)

        self.addCleanup(stop)
        return client


class StallTests(ChatTestCase, SocketClients):
    @inlineCallbacks
    def test_a_client_that_keeps_talking_survives_a_stall_of_twice_the_timeout(self) -> Any:
        ping, timeout = 0.5, 1.5
        # The live client PINGs as fast as the answers come: no rate limit here.
        factory, port = self.startServer(ping=ping, timeout=timeout, register_timeout=10, rate=0)
        live = self.startClient(port, "live", chatty=True)
        silent = self.startClient(port, "silent", chatty=False)
        yield self.waitFor(lambda: live.registered.is_set() and silent.registered.is_set(), "both to register")
        yield task.deferLater(clock, 0.2, lambda: None)

        # Block the reactor, as a long GC pause or a blocking call would. The live client
        # pauses just before, so that the stall is the only thing the reactor is handling
        # when it starts, and talks again during it: its lines wait in the socket while its
        # idle timer runs out.
        live.quiet.set()
        yield task.deferLater(clock, 0.3, lambda: None)
        staller = Staller(2 * timeout)
        self.addCleanup(staller.close)
        resume = threading.Timer(0.3, live.quiet.clear)
        resume.start()
        self.addCleanup(resume.cancel)
        staller.stall()
        yield self.waitFor(lambda: staller.endedAt > 0, "the stall")
        stallEnds = staller.endedAt

        yield self.waitFor(lambda: silent.closedAt is not None, "the silent client to be cut")
        yield task.deferLater(clock, 3 * ping, lambda: None)
        for client in (live, silent):
            self.assertIsNone(client.error, f"{client.nick}: {client.error!r}")
        self.assertIsNone(live.closedAt, "the live client was cut")
        self.assertTrue(any(line.endswith(" silent timeout") for line in live.lines), live.lines[-10:])
        self.assertFalse(any(line.endswith(" live timeout") for line in live.lines))
        self.assertGreaterEqual(factory.sparedVerdicts, 1)
        assert silent.closedAt is not None
        # Cut on the turn after the stall, at most about one ping interval late (plus
        # generous room for a slow machine).
        self.assertLess(silent.closedAt - stallEnds, ping + 2.0)

    @inlineCallbacks
    def test_clients_that_only_answer_pings_survive_a_stall_of_twice_the_timeout(self) -> Any:
        ping, timeout = 0.5, 1.5
        factory, port = self.startServer(ping=ping, timeout=timeout, register_timeout=10, rate=0)
        # Each answers after 50 ms (a modest round trip; the protocol allows half an
        # interval, 250 ms here): on waking, the server must not judge before that.
        answering = [self.startClient(port, f"answer{n}", chatty=False, answerAfter=0.05) for n in range(10)]
        dead = self.startClient(port, "dead", chatty=False)
        everyone = [*answering, dead]
        yield self.waitFor(lambda: all(c.registered.is_set() for c in everyone), "all to register")
        yield task.deferLater(clock, 0.3, lambda: None)

        # While the server is stalled it sends no PING, so these clients, which speak only
        # when asked, send nothing: their idle timers all run out during the stall.
        staller = Staller(2 * timeout)
        self.addCleanup(staller.close)
        staller.stall()
        yield self.waitFor(lambda: staller.endedAt > 0, "the stall")
        stallEnds = staller.endedAt

        yield self.waitFor(lambda: dead.closedAt is not None, "the dead client to be cut")
        yield task.deferLater(clock, 3 * ping, lambda: None)
        for client in everyone:
            self.assertIsNone(client.error, f"{client.nick}: {client.error!r}")
        cut = [c.nick for c in answering if c.closedAt is not None]
        self.assertEqual(cut, [], "clients that answered the PING after the stall were cut")
        watcher = answering[0]
        self.assertTrue(any(line.endswith(" dead timeout") for line in watcher.lines), watcher.lines[-10:])
        self.assertFalse(any(line.endswith(" timeout") and "answer" in line for line in watcher.lines))
        self.assertGreaterEqual(factory.askedVerdicts, len(everyone))
        assert dead.closedAt is not None
        # Asked on waking and cut one ping interval later (plus room for a slow machine).
        self.assertGreaterEqual(dead.closedAt - stallEnds, ping * 0.9)
        self.assertLess(dead.closedAt - stallEnds, ping + 2.0)
