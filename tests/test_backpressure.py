"""Backpressure: senders are held back while receivers are congested; only outliers are cut."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.backpressure import Backpressure, kernel_user_timeout, slow_deadline
from hbchat.testing import FakeServer


class Connection:
    def __init__(self, name: str) -> None:
        self.name = name
        self.reading = True
        self.cut: str | None = None
        #: Bytes the peer has taken (None: not measurable).
        self.taken: int | None = None

    def delivered(self) -> int | None:
        return self.taken

    def pauseReading(self) -> None:
        self.reading = False

    def resumeReading(self) -> None:
        self.reading = True

    def cutAsSlow(self, why: str) -> None:
        self.cut = why


class BackpressureTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.population = 10
        self.pressure = Backpressure(
            self.clock, patience=1, timeout=5, max_backlog=1000, population=lambda: self.population
        )
        self.sender, self.receiver, self.other = Connection("sender"), Connection("receiver"), Connection("other")

    def test_speakers_of_the_turn_that_congested_a_receiver_are_held(self) -> None:
        self.pressure.spoke(self.sender)
        self.pressure.congested(self.receiver)
        self.assertFalse(self.sender.reading)
        self.assertFalse(self.receiver.reading)
        self.assertTrue(self.other.reading)

    def test_speakers_of_earlier_turns_are_not_held(self) -> None:
        self.pressure.spoke(self.sender)
        self.pressure.turn_ended()
        self.pressure.congested(self.receiver)
        self.assertTrue(self.sender.reading)

    def test_whoever_speaks_while_held_is_held(self) -> None:
        self.pressure.congested(self.receiver)
        self.pressure.spoke(self.other)
        self.assertFalse(self.other.reading)

    def test_everyone_is_read_again_once_the_receiver_drains(self) -> None:
        self.pressure.spoke(self.sender)
        self.pressure.congested(self.receiver)
        self.pressure.drained(self.receiver)
        self.assertTrue(self.sender.reading)
        self.assertTrue(self.receiver.reading)
        self.assertFalse(self.pressure.holding)

    def test_senders_wait_for_every_congested_receiver(self) -> None:
        self.pressure.spoke(self.sender)
        self.pressure.congested(self.receiver)
        self.pressure.congested(self.other)
        self.pressure.drained(self.receiver)
        self.assertFalse(self.sender.reading)
        self.assertTrue(self.receiver.reading)
        self.pressure.drained(self.other)
        self.assertTrue(self.sender.reading)

    def test_a_lone_laggard_stops_holding_the_others_after_its_patience(self) -> None:
        self.pressure.spoke(self.sender)
        self.pressure.congested(self.receiver)
        self.clock.advance(1)
        self.assertTrue(self.sender.reading)
        self.assertFalse(self.receiver.reading)  # its own soft bound still applies

    def test_a_lone_laggard_that_never_drains_is_cut_after_the_timeout(self) -> None:
        self.pressure.congested(self.receiver)
        self.clock.advance(4.9)
        self.assertIsNone(self.receiver.cut)
        self.clock.advance(0.1)
        self.assertEqual(self.receiver.cut, "its output did not drain for 5s")

    def test_when_most_receivers_lag_nobody_is_blamed_and_senders_stay_held(self) -> None:
        self.population = 4
        third = Connection("third")
        self.pressure.congested(third)
        self.pressure.spoke(self.sender)
        self.pressure.congested(self.receiver)
        self.pressure.congested(self.other)
        self.clock.advance(20)
        self.assertFalse(self.sender.reading)
        self.assertIsNone(self.receiver.cut)
        self.assertIsNone(self.other.cut)

    def test_a_forgotten_connection_releases_its_hold(self) -> None:
        self.pressure.spoke(self.sender)
        self.pressure.congested(self.receiver)
        self.pressure.forget(self.receiver)
        self.assertTrue(self.sender.reading)
        self.clock.advance(100)
        self.assertIsNone(self.receiver.cut)


class StalledReceiverTests(SynchronousTestCase):
    """Receivers that take nothing at all (a zero window) are stopped, not slow (issue #14, item 4)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.pressure = Backpressure(self.clock, patience=1, timeout=5, max_backlog=1000, population=lambda: 5)
        self.sender = Connection("sender")
        self.receivers = [Connection(f"r{n}") for n in range(3)]
        for receiver in self.receivers:
            receiver.taken = 0
        self.pressure.spoke(self.sender)
        for receiver in self.receivers:
            self.pressure.congested(receiver)

    def progress(self) -> None:
        for receiver in self.receivers:
            assert receiver.taken is not None
            receiver.taken += 100

    def test_a_crowd_of_receivers_that_take_nothing_holds_the_senders_only_for_the_patience(self) -> None:
        self.clock.advance(0.9)
        self.assertFalse(self.sender.reading)
        self.clock.advance(0.1)
        self.assertTrue(self.sender.reading)
        self.assertEqual(self.pressure.stalled, 3)

    def test_a_crowd_of_receivers_that_take_nothing_is_cut_after_the_timeout(self) -> None:
        self.clock.advance(5)
        self.assertEqual([receiver.cut for receiver in self.receivers], ["its output did not drain for 5s"] * 3)
        self.assertEqual(self.pressure.stalled, 0)

    def test_most_receivers_still_taking_output_hold_the_senders(self) -> None:
        for _ in range(20):
            self.progress()
            self.clock.advance(1)
        self.assertFalse(self.sender.reading)
        self.assertEqual([receiver.cut for receiver in self.receivers], [None] * 3)

    def test_a_stalled_receiver_that_takes_output_again_counts_again(self) -> None:
        self.clock.advance(1)
        self.assertTrue(self.sender.reading)
        self.progress()
        self.clock.advance(4)  # the timeout's look finds them taking output: most lag again
        self.assertEqual([receiver.cut for receiver in self.receivers], [None] * 3)
        self.assertEqual(self.pressure.stalled, 0)


class ServerBackpressureTests(SynchronousTestCase):
    """The server wires its connections' output (push producers) into backpressure."""

    def setUp(self) -> None:
        self.server = FakeServer(ping=30, timeout=90)
        self.alice = self.server.registered("alice")
        self.bob = self.server.registered("bob")
        self.carol = self.server.registered("carol")

    def test_connections_register_as_streaming_producers_of_their_output(self) -> None:
        self.assertIs(self.alice.transport.producer, self.alice.protocol)
        self.assertTrue(self.alice.transport.streaming)

    def test_a_full_receiver_holds_back_the_speaker_until_it_drains(self) -> None:
        self.alice.protocol.dataReceived(b"SAY flood\n")
        self.bob.protocol.pauseProducing()  # bob's transport: output over the high-water mark
        self.assertEqual(self.alice.transport.producerState, "paused")
        self.assertEqual(self.bob.transport.producerState, "paused")
        self.assertEqual(self.carol.transport.producerState, "producing")
        self.bob.protocol.resumeProducing()
        self.assertEqual(self.alice.transport.producerState, "producing")

    def test_a_held_sender_is_not_timed_out_while_we_do_not_read_it(self) -> None:
        dave, erin = self.server.registered("dave"), self.server.registered("erin")
        self.bob.protocol.pauseProducing()
        self.carol.protocol.pauseProducing()
        dave.protocol.pauseProducing()  # most receivers lag: the hold lasts
        self.alice.sendLine("SAY more")
        self.assertEqual(self.alice.transport.producerState, "paused")
        self.server.clock.pump([1] * 200)
        self.assertFalse(self.alice.aborted)
        self.bob.protocol.resumeProducing()
        self.carol.protocol.resumeProducing()
        dave.protocol.resumeProducing()
        self.assertEqual(self.alice.transport.producerState, "producing")
        erin.sendLine("PONG")
        self.server.clock.pump([1] * 90)
        self.assertTrue(self.alice.aborted)  # read again, and silent: now it is judged

    def test_a_slow_consumer_whose_backlog_passes_the_limit_is_cut_as_slow(self) -> None:
        self.server.factory.maxBacklog = 100
        self.bob.protocol.pauseProducing()
        for n in range(5):
            self.alice.sendLine(f"SAY message number {n} with some padding to fill the backlog")
        self.assertTrue(self.bob.aborted)
        self.bob.finishClose()
        lefts = [line for line in self.alice.received() if line.startswith(b"LEFT")]
        self.assertEqual([line.split(b" ", 2)[2] for line in lefts], [b"bob slow"])

    def test_the_backlog_counts_from_the_first_pause_although_the_transport_repeats_it(self) -> None:
        # Twisted's transports call pauseProducing on every write made over the high-water mark.
        self.server.factory.maxBacklog = 100
        for n in range(5):
            self.bob.protocol.pauseProducing()
            self.alice.sendLine(f"SAY message number {n} with some padding to fill the backlog")
        self.assertTrue(self.bob.aborted)

    def test_a_slow_consumer_can_resume_its_session(self) -> None:
        self.server.factory.maxBacklog = 10
        self.bob.protocol.pauseProducing()
        self.alice.sendLine("SAY overflow the small backlog")
        self.bob.finishClose()
        self.assertIsNotNone(self.server.factory.chat.sessions.by_nick(b"bob"))


class BoundedPatienceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.population = 5
        self.pressure = Backpressure(
            self.clock, patience=1, timeout=5, max_backlog=1000, population=lambda: self.population
        )

    def test_even_when_most_lag_a_receiver_that_never_drains_is_cut_in_the_end(self) -> None:
        stuck = [Connection(f"r{n}") for n in range(3)]
        for receiver in stuck:
            self.pressure.congested(receiver)
        self.clock.pump([1] * 29)
        self.assertTrue(all(receiver.cut is None for receiver in stuck))
        self.clock.pump([1] * 6)
        self.assertTrue(all(receiver.cut is not None for receiver in stuck))

    def test_a_handful_of_connections_is_never_the_consumers_as_a_whole(self) -> None:
        self.population = 2
        receiver = Connection("alone")
        self.pressure.congested(receiver)
        self.clock.advance(5)
        self.assertEqual(receiver.cut, "its output did not drain for 5s")


class KernelUserTimeoutTests(SynchronousTestCase):
    """TCP_USER_TIMEOUT must not pre-empt the slow-consumer rule (a zero window counts against it)."""

    def test_the_slow_consumer_deadline_is_three_timeouts_or_thirty_seconds(self) -> None:
        self.assertEqual(slow_deadline(15), 45)
        self.assertEqual(slow_deadline(5), 30)

    def test_the_kernel_gives_up_only_well_after_the_slow_consumer_deadline(self) -> None:
        for timeout in (0.5, 5, 15, 90, 600):
            self.assertEqual(kernel_user_timeout(timeout), 2 * slow_deadline(timeout))
            self.assertGreater(kernel_user_timeout(timeout), slow_deadline(timeout) + timeout)
