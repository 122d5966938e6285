"""
--max-handshakes: at most N connections between accept and registration; more wait in the
listen queue, and once the oldest has had its grace (eviction_grace), each newcomer closes it.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.handshakes import MAX_GRACE, MIN_GRACE, HandshakeRoom, eviction_grace, longest_grace
from hbchat.testing import FakeServer
from tests.test_integration import DEADLINE, ChatTestCase, LineClient, tcpPortOf, within

log = Logger()


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


class HandshakeRoomTests(SynchronousTestCase):
    """The pure logic: who is in, and who makes way for a newcomer."""

    def setUp(self) -> None:
        self.checking: set[str] = set()
        self.room: HandshakeRoom[str] = HandshakeRoom(2, 0.25, lambda name: name not in self.checking)

    def test_free_places_are_offered_while_the_room_is_not_full(self) -> None:
        self.assertEqual(self.room.room(0.0), 2)
        self.room.enter("a", 0.0)
        self.assertEqual(self.room.room(0.0), 1)
        self.assertEqual(self.room.overflow(0.0), [])

    def test_a_full_room_offers_nothing_while_everyone_is_within_the_grace(self) -> None:
        self.room.enter("a", 0.0)
        self.room.enter("b", 0.1)
        self.assertEqual(self.room.room(0.2), 0)
        self.assertEqual(self.room.next_way_at(), 0.25)

    def test_the_oldest_makes_way_once_it_has_had_the_grace(self) -> None:
        self.room.enter("a", 0.0)
        self.room.enter("b", 0.1)
        self.assertEqual(self.room.room(0.3), 1)
        self.assertEqual(self.room.room(0.4), 2)
        self.room.enter("c", 0.4)
        self.assertEqual(self.room.overflow(0.4), ["a"])

    def test_a_connection_whose_password_is_checked_never_makes_way(self) -> None:
        self.room.enter("a", 0.0)
        self.room.enter("b", 0.1)
        self.checking.add("a")
        self.assertEqual(self.room.room(1.0), 1)
        self.assertEqual(self.room.next_way_at(), 0.35)
        self.room.enter("c", 1.0)
        self.assertEqual(self.room.overflow(1.0), ["b"])

    def test_one_who_left_is_no_longer_counted(self) -> None:
        self.room.enter("a", 0.0)
        self.room.enter("b", 0.1)
        self.room.leave("a")
        self.assertNotIn("a", self.room)
        self.assertEqual((len(self.room), self.room.room(0.1)), (1, 1))


class GraceTests(SynchronousTestCase):
    def test_the_defaults_give_a_second(self) -> None:
        self.assertEqual(eviction_grace(10, 500), MAX_GRACE)

    def test_a_small_room_gets_a_grace_that_moves_a_full_queue_within_half_the_register_timeout(self) -> None:
        grace = eviction_grace(10, 40)
        self.assertLess(grace, MAX_GRACE)
        self.assertAlmostEqual(1024 / 40 * grace, 5.0)

    def test_the_grace_has_a_floor(self) -> None:
        self.assertEqual(eviction_grace(10, 2), MIN_GRACE)

    def test_slow_registrations_may_lengthen_it_to_half_the_register_timeout_behind_a_full_queue(self) -> None:
        self.assertAlmostEqual(1024 / 500 * longest_grace(10, 500), 5.0)
        self.assertEqual(longest_grace(10, 2), MIN_GRACE)


class AdaptiveGraceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.room: HandshakeRoom[int] = HandshakeRoom(500, 0.25, lambda n: True, longest=2.0)

    def registerAfter(self, seconds: float, count: int = 20) -> None:
        for n in range(count):
            self.room.enter(n, 100.0)
            self.room.leave(n, 100.0 + seconds)

    def test_quick_registrations_keep_the_shortest_grace(self) -> None:
        self.registerAfter(0.01)
        self.assertEqual(self.room.grace, 0.25)

    def test_slow_registrations_lengthen_the_grace_to_twice_their_duration(self) -> None:
        self.registerAfter(0.6)
        self.assertAlmostEqual(self.room.grace, 1.2)

    def test_the_grace_grows_no_longer_than_the_longest(self) -> None:
        self.registerAfter(5.0)
        self.assertEqual(self.room.grace, 2.0)

    def test_connections_that_end_unregistered_do_not_count(self) -> None:
        for n in range(20):
            self.room.enter(n, 100.0)
            self.room.leave(n)
        self.assertEqual(self.room.grace, 0.25)

    def test_a_longer_grace_keeps_the_oldest_in_its_place_longer(self) -> None:
        self.registerAfter(0.6)
        room: HandshakeRoom[int] = self.room
        room.capacity = 1
        room.enter(1000, 200.0)
        self.assertEqual(room.room(200.5), 0)
        self.assertEqual(room.room(201.2), 1)


#: The grace of MakingWayTests' server (--register-timeout 10, --max-handshakes 2).
GRACE = eviction_grace(10, 2)


class MakingWayTests(SynchronousTestCase):
    """The factory with a full room, on a Clock."""

    def setUp(self) -> None:
        self.server = FakeServer(max_handshakes=2, register_timeout=10)
        self.gate = RecordingGate()
        self.server.factory.gates.append(self.gate)

    def test_a_full_room_pauses_accepting_until_the_oldest_has_had_its_grace(self) -> None:
        self.server.connect()
        self.server.advance(GRACE / 2)
        self.server.connect()
        self.assertTrue(self.gate.paused)
        self.server.advance(GRACE / 2)
        self.assertEqual(self.gate.allowed, 1)

    def test_a_newcomer_to_a_full_room_closes_the_oldest_with_err_503(self) -> None:
        first = self.server.connect()
        second = self.server.connect()
        self.server.advance(GRACE)
        third = self.server.connect()
        self.assertEqual(first.received()[-1], b"ERR 503 too many connections registering")
        self.assertTrue(first.closing)
        self.assertFalse(second.closing)
        self.assertTrue(third.received()[0].startswith(b"HELLO"))
        self.assertEqual(self.server.factory.handshaking, 2)
        self.assertEqual(self.server.factory.stats.evictions, 1)

    def test_a_connection_closed_to_make_way_is_counted_as_evicted(self) -> None:
        first = self.server.connect()
        self.server.connect()
        self.server.advance(GRACE)
        self.server.connect()
        first.lose()
        self.assertEqual(self.server.factory.stats.closes["evicted"], 1)

    def test_a_connection_whose_password_is_being_checked_keeps_its_place(self) -> None:
        from tests.test_auth import PendingChecker

        server = FakeServer(PendingChecker(), max_handshakes=2, register_timeout=10)
        checked = server.connect()
        checked.sendLine("NICK alice secret")
        silent = server.connect()
        server.advance(GRACE)
        server.connect()
        self.assertFalse(checked.closing)
        self.assertTrue(silent.closing)

    def test_registered_connections_are_not_in_the_room(self) -> None:
        alice = self.server.registered("alice")
        self.server.connect()
        self.server.connect()
        self.server.advance(GRACE)
        self.server.connect()
        self.assertFalse(alice.closing)

    def test_no_timer_is_left_once_the_room_has_space(self) -> None:
        first = self.server.connect()
        self.server.connect()
        self.assertTrue(self.server.factory.admission.makeWayCall is not None)
        first.register("alice")
        self.assertIsNone(self.server.factory.admission.makeWayCall)


class ListenQueueTests(ChatTestCase):
    def startBounded(self) -> tuple[Any, int]:
        """A service that lets at most two connections register at once."""
        service = self.startService(
            *("--listen", "tcp:0:interface=127.0.0.1", "--max-handshakes", "2", "--register-timeout", "60")
        )
        return service, tcpPortOf(service.factory)

    @inlineCallbacks
    def test_a_connection_over_the_bound_gets_in_when_the_oldest_makes_way(self) -> Any:
        service, port = self.startBounded()
        first = yield self.connect(port, "first")
        yield first.waitForLine(r"HELLO .*")
        second = yield self.connect(port, "second")
        yield second.waitForLine(r"HELLO .*")
        # The kernel completes the TCP handshake; the server accepts it once the oldest
        # silent connection has had its grace (0.1 s here; not --register-timeout, 60 s).
        third = yield self.connect(port, "third")
        yield third.waitForLine(r"HELLO .*")
        yield first.waitForLine(r"ERR 503 too many connections registering")
        yield within(first.whenLost(), DEADLINE, "first: closed to make way")
        self.assertEqual(second.lines[1:], [])
        self.assertEqual(service.factory.handshaking, 2)

    @inlineCallbacks
    def test_connections_queued_at_once_are_accepted_only_up_to_the_bound(self) -> Any:
        """A port accepts many connections per wakeup; the bound holds within one such batch too."""
        service, port = self.startBounded()
        # Connected by the kernel before the reactor runs again: all in the listen queue at once.
        sockets = [socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) for _ in range(10)]
        for sock in sockets:
            self.addCleanup(sock.close)
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(service.factory.handshaking, 2)


class SlowlorisTests(ChatTestCase):
    @inlineCallbacks
    def test_a_newcomer_behind_silent_loopback_connections_registers_within_the_register_timeout(self) -> Any:
        """
        docs/security.md: connections that never register (from loopback, exempt from
        --max-per-ip) delay a newcomer by less than --register-timeout, however many queue
        ahead of it: 200 here against a room of 20, where each batch used to hold the room
        for the whole timeout (90 s for this newcomer).
        """
        service = self.startService(
            *("--listen", "tcp:0:interface=127.0.0.1", "--max-handshakes", "20", "--register-timeout", "10")
        )
        port = tcpPortOf(service.factory)
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
            self.addCleanup(sock.close)
        started = reactor.seconds()
        newcomer: LineClient = yield self.connect(port, "newcomer")
        yield within(self.register(newcomer, "newcomer"), 10, "newcomer: registering behind 200 silent connections")
        log.info("registered behind 200 silent connections in {took:.2f}s", took=reactor.seconds() - started)
        self.assertGreater(service.factory.stats.evictions, 0)
