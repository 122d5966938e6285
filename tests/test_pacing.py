"""
hbchat.server.pacing: after a turn that read something, a busy server lets reads pile up
until one window has passed since its previous poll; an idle one reads at once.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.pacing import ReadPacer, pause_length


class PauseLengthTests(SynchronousTestCase):
    def test_the_rest_of_the_window_since_the_last_poll(self) -> None:
        self.assertAlmostEqual(pause_length(0.001, 10.0, 10.0004), 0.0006)

    def test_nothing_once_the_turn_took_the_whole_window(self) -> None:
        self.assertEqual(pause_length(0.001, 10.0, 10.001), 0.0)
        self.assertEqual(pause_length(0.001, 10.0, 10.5), 0.0)

    def test_never_more_than_a_window_even_if_the_clock_went_back(self) -> None:
        self.assertEqual(pause_length(0.001, 10.0, 9.0), 0.0)

    def test_a_zero_window_never_pauses(self) -> None:
        self.assertEqual(pause_length(0.0, 10.0, 10.0), 0.0)


class ReadPacerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = Clock()
        self.now = 100.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 9))
        self.now += seconds

    def pacer(self, window: float = 0.001) -> ReadPacer:
        return ReadPacer(self.reactor, window, sleep=self.sleep, now=lambda: self.now)

    def test_the_first_read_after_a_quiet_spell_is_not_paused(self) -> None:
        pacer = self.pacer()
        pacer.read()
        self.reactor.advance(0)
        self.assertEqual(self.slept, [])

    def test_a_busy_turn_pauses_until_a_window_after_the_previous_poll(self) -> None:
        pacer = self.pacer()
        pacer.read()
        self.reactor.advance(0)  # polled at 100.0
        self.now += 0.0003  # the next turn's reads took 0.3 ms
        pacer.read()
        pacer.read()
        self.reactor.advance(0)
        self.assertEqual(self.slept, [0.0007])

    def test_one_pause_per_turn_however_many_reads(self) -> None:
        pacer = self.pacer()
        for _ in range(50):
            pacer.read()
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)

    def test_a_turn_that_took_a_window_is_not_paused(self) -> None:
        pacer = self.pacer()
        pacer.read()
        self.reactor.advance(0)
        self.now += 0.002
        pacer.read()
        self.reactor.advance(0)
        self.assertEqual(self.slept, [])

    def test_a_zero_window_schedules_nothing(self) -> None:
        pacer = self.pacer(window=0.0)
        pacer.read()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
