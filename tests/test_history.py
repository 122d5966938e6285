"""The event ring replayed to reconnecting clients."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.history import History
from hbchat.testing import FakeServer


def filled(capacity: int, events: int) -> History:
    history = History(capacity)
    for seq in range(1, events + 1):
        history.append(seq, b"E%d\n" % seq)
    return history


class HistoryTests(SynchronousTestCase):
    def test_ring_holds_at_most_its_capacity(self) -> None:
        history = filled(3, 10)
        self.assertEqual(len(history), 3)
        self.assertEqual((history.first_seq, history.last_seq), (8, 10))

    def test_since_returns_later_events_in_order_and_complete(self) -> None:
        self.assertEqual(filled(5, 10).since(7), ([b"E8\n", b"E9\n", b"E10\n"], True))

    def test_since_the_last_event_is_empty_and_complete(self) -> None:
        self.assertEqual(filled(5, 10).since(10), ([], True))

    def test_since_an_evicted_event_is_partial(self) -> None:
        lines, complete = filled(3, 10).since(2)
        self.assertEqual((lines, complete), ([b"E8\n", b"E9\n", b"E10\n"], False))

    def test_since_just_before_the_oldest_is_complete(self) -> None:
        self.assertEqual(filled(3, 10).since(7)[1], True)

    def test_events_must_be_consecutive(self) -> None:
        history = filled(3, 2)
        self.assertRaises(ValueError, history.append, 4, b"x")

    def test_capacity_must_be_positive(self) -> None:
        self.assertRaises(ValueError, History, 0)


class ServerHistoryTests(SynchronousTestCase):
    def test_server_keeps_the_last_events_exactly_as_sent(self) -> None:
        server = FakeServer(history=3)
        alice = server.registered("alice")
        for n in range(5):
            alice.sendLine(f"SAY {n}")
        history = server.factory.chat.history
        self.assertEqual(len(history), 3)
        self.assertEqual(history.since(0)[0], [b"MSG 4 alice 2\n", b"MSG 5 alice 3\n", b"MSG 6 alice 4\n"])
