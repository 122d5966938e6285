"""--max-handshakes: at most N connections between accept and registration; more wait in the listen queue."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase

from hbchat.testing import FakeServer
from tests.test_integration import DEADLINE, ChatTestCase, tcpPortOf


class RecordingGate:
    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0
        self.allowed: int | None = None

    def acceptAtMost(self, count: int) -> None:
        self.allowed = count
        if count <= 0 and not self.paused:
            self.pauses += 1
        self.paused = count <= 0


class HandshakeBoundTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(max_handshakes=2, ping=5, timeout=15, register_timeout=10)
        self.gate = RecordingGate()
        self.server.factory.gates.append(self.gate)

    def test_accepting_pauses_when_the_bound_is_reached(self) -> None:
        self.server.connect()
        self.assertFalse(self.gate.paused)
        self.server.connect()
        self.assertTrue(self.gate.paused)
        self.assertEqual(self.server.factory.handshaking, 2)

    def test_a_registration_lets_the_next_one_in(self) -> None:
        first = self.server.connect()
        self.server.connect()
        first.register("alice")
        self.assertFalse(self.gate.paused)
        self.assertEqual(self.server.factory.handshaking, 1)

    def test_a_connection_that_ends_unregistered_lets_the_next_one_in(self) -> None:
        first = self.server.connect()
        self.server.connect()
        first.lose()
        self.assertFalse(self.gate.paused)

    def test_a_registration_timeout_lets_the_next_one_in(self) -> None:
        self.server.connect()
        self.server.connect()
        self.server.advance(10)
        self.server.turn()  # the verdict comes the turn after the timer (stall sparing)
        self.assertFalse(self.gate.paused)
        self.assertEqual(self.server.factory.handshaking, 0)

    def test_registered_connections_do_not_count(self) -> None:
        for nick in ("a", "b", "c", "d"):
            self.server.registered(nick)
        self.assertFalse(self.gate.paused)
        self.assertEqual(self.server.factory.handshaking, 0)

    def test_listeners_may_accept_only_as_many_as_there_is_room_for(self) -> None:
        server = FakeServer(max_handshakes=5)
        gate = RecordingGate()
        server.factory.gates.append(gate)
        first = server.connect()
        server.connect()
        self.assertEqual(gate.allowed, 3)
        first.register("alice")
        self.assertEqual(gate.allowed, 4)

    def test_pauses_are_counted(self) -> None:
        first = self.server.connect()
        self.server.connect()
        first.register("alice")
        self.server.connect()
        self.assertEqual(self.server.factory.stats.acceptPauses, 2)
        self.assertEqual(self.gate.pauses, 2)


class ListenQueueTests(ChatTestCase):
    def startBounded(self) -> tuple[Any, int]:
        """A service that lets at most two connections register at once."""
        service = self.startService(
            *("--listen", "tcp:0:interface=127.0.0.1", "--max-handshakes", "2", "--register-timeout", "60")
        )
        return service, tcpPortOf(service.factory)

    @inlineCallbacks
    def test_a_connection_over_the_bound_waits_for_its_hello_until_one_registers(self) -> Any:
        service, port = self.startBounded()
        first = yield self.connect(port, "first")
        yield first.waitForLine(r"HELLO .*")
        second = yield self.connect(port, "second")
        yield second.waitForLine(r"HELLO .*")
        # The kernel completes the TCP handshake; the server does not accept it yet.
        third = yield self.connect(port, "third")
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(third.lines, [])
        self.assertEqual(len(service.factory.connections), 2)
        yield self.register(first, "first")
        yield third.waitForLine(r"HELLO .*")
        self.assertEqual(len(service.factory.connections), 3)

    @inlineCallbacks
    def test_connections_queued_at_once_are_accepted_only_up_to_the_bound(self) -> Any:
        """A port accepts many connections per wakeup; the bound holds within one such batch too."""
        service, port = self.startBounded()
        # Connected by the kernel before the reactor runs again: all in the listen queue at once.
        sockets = [socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) for _ in range(10)]
        for sock in sockets:
            self.addCleanup(sock.close)
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(len(service.factory.connections), 2)
