"""Per-turn coalescing: one write per connection per turn, order preserved per connection."""

from __future__ import annotations

from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.fanout import Fanout


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def deliver(self, data: bytes) -> None:
        self.writes.append(data)


class FanoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.scheduled: list[Callable[[], None]] = []
        self.fanout = Fanout(self.scheduled.append)

    def endTurn(self) -> None:
        calls, self.scheduled[:] = list(self.scheduled), []
        for call in calls:
            call()

    def member(self) -> Recorder:
        sink = Recorder()
        self.fanout.add(sink)
        return sink

    def test_nothing_is_delivered_before_the_turn_ends(self) -> None:
        sink = self.member()
        self.fanout.broadcast(b"a\n")
        self.assertEqual(sink.writes, [])
        self.endTurn()
        self.assertEqual(sink.writes, [b"a\n"])

    def test_one_flush_is_scheduled_per_turn(self) -> None:
        self.member()
        for _ in range(5):
            self.fanout.broadcast(b"a\n")
        self.assertEqual(len(self.scheduled), 1)

    def test_members_share_one_bytes_object_when_nothing_else_was_sent(self) -> None:
        first, second = self.member(), self.member()
        self.fanout.broadcast(b"a\n")
        self.fanout.broadcast(b"b\n")
        self.endTurn()
        self.assertEqual(first.writes, [b"a\nb\n"])
        self.assertIs(first.writes[0], second.writes[0])

    def test_direct_lines_keep_their_place_among_broadcasts(self) -> None:
        sink, other = self.member(), self.member()
        self.fanout.broadcast(b"1\n")
        self.fanout.send(sink, b"direct\n")
        self.fanout.broadcast(b"2\n")
        self.endTurn()
        self.assertEqual(sink.writes, [b"1\ndirect\n2\n"])
        self.assertEqual(other.writes, [b"1\n2\n"])

    def test_a_member_added_mid_turn_gets_only_later_broadcasts(self) -> None:
        early = self.member()
        self.fanout.broadcast(b"before\n")
        late = Recorder()
        self.fanout.send(late, b"welcome\n")
        self.fanout.add(late)
        self.fanout.broadcast(b"after\n")
        self.endTurn()
        self.assertEqual(early.writes, [b"before\nafter\n"])
        self.assertEqual(late.writes, [b"welcome\nafter\n"])

    def test_non_members_get_only_their_direct_lines(self) -> None:
        self.member()
        outsider = Recorder()
        self.fanout.broadcast(b"event\n")
        self.fanout.send(outsider, b"a\n")
        self.fanout.send(outsider, b"b\n")
        self.endTurn()
        self.assertEqual(outsider.writes, [b"a\nb\n"])

    def test_take_returns_what_is_queued_and_it_is_not_delivered_again(self) -> None:
        sink = self.member()
        self.fanout.broadcast(b"1\n")
        self.fanout.send(sink, b"x\n")
        self.assertEqual(self.fanout.take(sink), b"1\nx\n")
        self.fanout.broadcast(b"2\n")
        self.endTurn()
        self.assertEqual(sink.writes, [b"2\n"])

    def test_discarded_sinks_get_nothing_more(self) -> None:
        sink = self.member()
        self.fanout.broadcast(b"1\n")
        self.fanout.send(sink, b"x\n")
        self.fanout.discard(sink)
        self.endTurn()
        self.assertEqual(sink.writes, [])
        self.assertNotIn(sink, self.fanout)

    def test_each_turn_starts_fresh(self) -> None:
        sink = self.member()
        self.fanout.broadcast(b"1\n")
        self.endTurn()
        self.fanout.broadcast(b"2\n")
        self.endTurn()
        self.assertEqual(sink.writes, [b"1\n", b"2\n"])


class DiscardingSink(Recorder):
    def __init__(self, fanout: Fanout, victim: Recorder) -> None:
        super().__init__()
        self.fanout = fanout
        self.victim = victim

    def deliver(self, data: bytes) -> None:
        super().deliver(data)
        self.fanout.discard(self.victim)


class DiscardDuringFlushTests(FanoutTests):
    def test_a_delivery_that_ends_another_member_does_not_break_the_flush(self) -> None:
        victim = Recorder()
        cutter = DiscardingSink(self.fanout, victim)
        self.fanout.add(cutter)
        self.fanout.add(victim)
        self.fanout.broadcast(b"x\n")
        self.endTurn()
        self.assertEqual(cutter.writes, [b"x\n"])


class DirectDeliveryTests(FanoutTests):
    def test_a_reply_with_nothing_queued_ahead_is_delivered_at_once(self) -> None:
        sink = self.member()
        self.fanout.send(sink, b"PONG\n")
        self.assertEqual(sink.writes, [b"PONG\n"])
        self.assertEqual(self.scheduled, [])

    def test_a_reply_after_a_broadcast_of_the_same_turn_waits_for_it(self) -> None:
        sink = self.member()
        self.fanout.broadcast(b"MSG\n")
        self.fanout.send(sink, b"PONG\n")
        self.assertEqual(sink.writes, [])
        self.endTurn()
        self.assertEqual(sink.writes, [b"MSG\nPONG\n"])
