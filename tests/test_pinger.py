"""
hbchat.pinger: a LoopingCall without a Deferred per tick, that otherwise behaves as one.
"""

from __future__ import annotations

from twisted.internet.task import Clock, LoopingCall
from twisted.trial.unittest import SynchronousTestCase

from hbchat.pinger import Pinger


class PingerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.ticks: list[float] = []

    def tick(self) -> None:
        self.ticks.append(self.clock.seconds())

    def make(self, f: object = None) -> Pinger:
        pinger = Pinger(self.tick if f is None else f)  # type: ignore[arg-type]
        pinger.clock = self.clock
        return pinger

    def test_it_ticks_once_an_interval_like_a_looping_call(self) -> None:
        pinger = self.make()
        reference: list[float] = []
        loop = LoopingCall(lambda: reference.append(self.clock.seconds()))
        loop.clock = self.clock
        pinger.start(1.0, now=False)
        loop.start(1.0, now=False)
        self.clock.pump([0.4, 0.7, 1.5, 0.2, 3.1])
        self.assertEqual(self.ticks, reference)
        self.assertEqual(len(self.ticks), 3)

    def test_stopping_fires_the_deferred_start_returned(self) -> None:
        pinger = self.make()
        stopped = pinger.start(1.0, now=False)
        self.clock.advance(1)
        pinger.stop()
        self.assertIs(self.successResultOf(stopped), pinger)
        self.clock.advance(5)
        self.assertEqual(self.ticks, [1.0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_tick_that_stops_its_pinger_fires_the_deferred(self) -> None:
        pinger: Pinger = self.make(lambda: pinger.stop())
        stopped = pinger.start(1.0, now=False)
        self.clock.advance(1)
        self.assertIs(self.successResultOf(stopped), pinger)
        self.assertFalse(pinger.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_tick_that_raises_stops_it_and_fails_the_deferred(self) -> None:
        def fail() -> None:
            raise ValueError("no")

        pinger = self.make(fail)
        stopped = pinger.start(1.0, now=False)
        self.clock.advance(1)
        self.failureResultOf(stopped, ValueError)
        self.assertFalse(pinger.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_late_tick_does_not_bunch_up_the_next(self) -> None:
        pinger = self.make()
        pinger.start(1.0, now=False)
        self.clock.advance(2.5)
        self.clock.advance(0.5)
        self.assertEqual(self.ticks, [2.5, 3.0])
