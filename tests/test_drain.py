"""Graceful drain: BYEs spread over --drain seconds, the chat going on meanwhile; a second signal ends it."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from hbchat.testing import FakePeer, FakeServer


class DrainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(retry_hint=10)
        self.peers = [self.server.registered(f"user{n}") for n in range(20)]
        for peer in self.peers:
            peer.received()

    def byes(self) -> int:
        return sum(1 for peer in self.peers if b"BYE shutdown retry=10" in peer.transport.value())

    def test_byes_are_spread_over_the_drain(self) -> None:
        self.server.factory.shutdown(drain=1.0)
        self.server.turn()
        self.assertEqual(self.byes(), 2)  # 20 connections in 10 batches, one every 0.1 s
        self.server.clock.pump([0.1] * 4)
        self.assertEqual(self.byes(), 10)
        self.server.clock.pump([0.1] * 5)
        self.assertEqual(self.byes(), 20)

    def test_every_connection_gets_exactly_one_bye_and_then_nothing(self) -> None:
        done = self.server.factory.shutdown(drain=1.0)
        self.server.clock.pump([0.1] * 12)
        for peer in self.peers:
            lines = peer.received()
            self.assertRegex(lines[-1], rb"^BYE shutdown retry=10 at=[0-9.]+$")
            self.assertEqual(sum(1 for line in lines if line.startswith(b"BYE")), 1)
            peer.finishClose()
        self.successResultOf(done)

    def test_those_not_yet_told_keep_chatting_and_hear_of_no_departures(self) -> None:
        self.server.factory.shutdown(drain=1.0)
        self.server.turn()
        for peer in self.peers:
            if peer.closing:
                peer.finishClose()
        waiting = [peer for peer in self.peers if not peer.closing]
        speaker, listener = waiting[0], waiting[1]
        speaker.sendLine("SAY still here")
        listener.sendLine("WHO")
        lines = listener.received()
        assert speaker.protocol.nick is not None
        self.assertIn(b"MSG 21 " + speaker.protocol.nick + b" still here", lines)
        self.assertFalse(any(line.startswith(b"LEFT") for line in lines))
        self.assertTrue(lines[-1].startswith(b"USERS "))

    def test_a_second_signal_closes_everything_at_once(self) -> None:
        self.server.factory.shutdown(drain=5.0)
        self.server.turn()
        self.server.factory.closeNow()
        self.assertTrue(all(peer.aborted for peer in self.peers))
        self.assertEqual(self.byes(), 20)

    def test_without_a_drain_everyone_is_told_at_once(self) -> None:
        self.server.factory.shutdown()
        self.server.turn()
        self.assertEqual(self.byes(), 20)

    def test_no_grace_timer_outlives_the_drain(self) -> None:
        lost: FakePeer = self.peers[0]
        lost.lose()  # its session waits in grace
        self.server.factory.shutdown(drain=1.0)
        self.server.clock.pump([0.1] * 12)
        for peer in self.peers[1:]:
            peer.finishClose()
        self.server.clock.advance(3)
        self.assertEqual(len(self.server.factory.chat.sessions), 0)
