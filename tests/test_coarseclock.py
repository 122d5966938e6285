"""
hbchat.coarseclock: timed calls that share one reactor timer per tick, never run early,
and at most a tick late.
"""

from __future__ import annotations

from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.task import Clock, LoopingCall
from twisted.trial.unittest import SynchronousTestCase

from hbchat.coarseclock import CoarseClock


class CoarseClockTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = Clock()
        self.clock = CoarseClock(self.reactor, ticks=10)
        self.ran: list[tuple[str, float]] = []

    def record(self, name: str) -> None:
        self.ran.append((name, self.reactor.seconds()))

    def test_a_call_on_a_tick_runs_at_its_time(self) -> None:
        self.clock.callLater(0.5, self.record, "a")
        self.reactor.advance(0.49)
        self.assertEqual(self.ran, [])
        self.reactor.advance(0.01)
        self.assertEqual(self.ran, [("a", 0.5)])

    def test_a_call_between_ticks_runs_at_the_next_tick_never_before_its_time(self) -> None:
        self.clock.callLater(0.31, self.record, "a")
        self.reactor.advance(0.31)
        self.assertEqual(self.ran, [])
        self.reactor.advance(0.09)
        self.assertEqual(self.ran, [("a", 0.4)])

    def test_calls_of_one_tick_share_one_reactor_timer(self) -> None:
        for name, delay in (("a", 0.21), ("b", 0.25), ("c", 0.3)):
            self.clock.callLater(delay, self.record, name)
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.reactor.advance(0.3)
        self.assertEqual([name for name, _ in self.ran], ["a", "b", "c"])

    def test_the_reactor_timer_is_for_the_earliest_tick(self) -> None:
        self.clock.callLater(2, self.record, "late")
        self.clock.callLater(1, self.record, "early")
        (timer,) = self.reactor.getDelayedCalls()
        self.assertEqual(timer.getTime(), 1.0)
        self.reactor.advance(1)
        self.assertEqual(self.ran, [("early", 1.0)])
        (timer,) = self.reactor.getDelayedCalls()
        self.assertEqual(timer.getTime(), 2.0)

    def test_a_cancelled_call_does_not_run_and_is_forgotten(self) -> None:
        call = self.clock.callLater(1, self.record, "a")
        call.cancel()
        self.assertFalse(call.active())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.reactor.advance(2)
        self.assertEqual(self.ran, [])

    def test_with_nothing_pending_the_clock_holds_no_reactor_timer(self) -> None:
        calls = [self.clock.callLater(delay, self.record, "x") for delay in (1, 2, 3)]
        for call in calls:
            call.cancel()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.clock.callLater(0.5, self.record, "y")
        self.reactor.advance(0.5)
        self.assertEqual(self.ran, [("y", 0.5)])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_reset_moves_a_call_later_or_earlier(self) -> None:
        call = self.clock.callLater(1, self.record, "a")
        call.reset(3)
        self.reactor.advance(2)
        self.assertEqual(self.ran, [])
        call.reset(0.5)
        self.assertEqual(call.getTime(), 2.5)
        self.reactor.advance(0.5)
        self.assertEqual(self.ran, [("a", 2.5)])

    def test_delay_postpones_a_call(self) -> None:
        call = self.clock.callLater(1, self.record, "a")
        call.delay(1)
        self.reactor.advance(1.5)
        self.assertEqual(self.ran, [])
        self.reactor.advance(0.5)
        self.assertEqual(self.ran, [("a", 2.0)])

    def test_a_call_cancelled_by_an_earlier_call_of_its_tick_does_not_run(self) -> None:
        # All three are in the tick at 1.0, run in the order they were filed.
        self.clock.callLater(0.95, lambda: later.cancel())
        later = self.clock.callLater(1, self.record, "cancelled")
        self.clock.callLater(0.97, self.record, "third")
        self.reactor.advance(1)
        self.assertEqual(self.ran, [("third", 1.0)])

    def test_a_call_moved_by_an_earlier_call_of_its_tick_runs_at_its_new_time(self) -> None:
        self.clock.callLater(0.95, lambda: moved.reset(1))
        moved = self.clock.callLater(1, self.record, "moved")
        self.reactor.advance(1)
        self.assertEqual(self.ran, [])
        self.reactor.advance(1)
        self.assertEqual(self.ran, [("moved", 2.0)])

    def test_a_call_that_fails_is_logged_and_the_others_still_run(self) -> None:
        def fail() -> None:
            raise RuntimeError("boom")

        self.clock.callLater(1, fail)
        self.clock.callLater(1, self.record, "after")
        self.reactor.advance(1)
        self.assertEqual(self.ran, [("after", 1.0)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_a_run_or_cancelled_call_cannot_be_cancelled_or_reset(self) -> None:
        ran = self.clock.callLater(1, self.record, "a")
        self.reactor.advance(1)
        self.assertRaises(AlreadyCalled, ran.cancel)
        self.assertRaises(AlreadyCalled, ran.reset, 1)
        cancelled = self.clock.callLater(1, self.record, "b")
        cancelled.cancel()
        self.assertRaises(AlreadyCancelled, cancelled.cancel)
        self.assertRaises(AlreadyCancelled, cancelled.delay, 1)

    def test_a_call_made_while_a_tick_runs_waits_for_its_own_tick(self) -> None:
        self.clock.callLater(1, lambda: self.clock.callLater(0.5, self.record, "next"))
        self.reactor.advance(1)
        self.assertEqual(self.ran, [])
        self.reactor.advance(0.5)
        self.assertEqual(self.ran, [("next", 1.5)])

    def test_arguments_and_keywords_are_passed(self) -> None:
        got: list[object] = []
        self.clock.callLater(0.1, lambda *a, **k: got.append((a, k)), 1, 2, key="v")
        self.clock.callLater(0.1, lambda *a, **k: got.append((a, k)))
        self.reactor.advance(0.1)
        self.assertEqual(got, [((1, 2), {"key": "v"}), ((), {})])

    def test_lateness_is_one_tick(self) -> None:
        self.assertEqual(self.clock.lateness, 0.1)
        self.assertEqual(CoarseClock(self.reactor).lateness, 0.01)

    def test_ticks_must_be_positive(self) -> None:
        self.assertRaises(ValueError, CoarseClock, self.reactor, 0)

    def test_seconds_is_the_reactors(self) -> None:
        self.reactor.advance(7.25)
        self.assertEqual(self.clock.seconds(), 7.25)


class LoopingCallOnACoarseClockTests(SynchronousTestCase):
    """What the heartbeat relies on: a LoopingCall on this clock keeps its grid, one run per interval."""

    def test_a_looping_call_runs_once_per_interval_on_its_grid(self) -> None:
        reactor = Clock()
        clock = CoarseClock(reactor, ticks=100)
        reactor.advance(0.123)
        runs: list[float] = []
        loop = LoopingCall(lambda: runs.append(reactor.seconds()))
        loop.clock = clock
        loop.start(1.0, now=False)
        for _ in range(500):
            reactor.advance(0.01)
        loop.stop()
        self.assertEqual(len(runs), 4)
        for count, at in enumerate(runs, start=1):
            self.assertGreaterEqual(at, 0.123 + count - 1e-9)
            self.assertLessEqual(at, 0.123 + count + clock.lateness + 1e-9)
        self.assertEqual(reactor.getDelayedCalls(), [])


class ExactCoarseClockTests(SynchronousTestCase):
    """An exact clock: deadlines put off cheaply, run at their time as a reactor's would."""

    def setUp(self) -> None:
        self.reactor = Clock()
        self.clock = CoarseClock(self.reactor, ticks=10, exact=True)
        self.ran: list[float] = []

    def record(self) -> None:
        self.ran.append(self.reactor.seconds())

    def test_a_call_between_ticks_runs_at_its_time_exactly(self) -> None:
        self.clock.callLater(0.31, self.record)
        self.reactor.advance(0.3)
        self.assertEqual(self.ran, [])
        self.reactor.advance(0.009)
        self.assertEqual(self.ran, [])
        self.reactor.advance(0.001)
        self.assertEqual(self.ran, [0.31])

    def test_a_call_put_off_again_and_again_runs_at_its_last_time(self) -> None:
        call = self.clock.callLater(1, self.record)
        for _ in range(30):
            self.reactor.advance(0.25)
            call.reset(1)
        self.assertEqual(self.ran, [])
        self.reactor.advance(0.999)
        self.assertEqual(self.ran, [])
        self.reactor.advance(0.001)
        self.assertEqual(self.ran, [8.5])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_putting_a_call_off_leaves_the_reactor_timer_alone(self) -> None:
        call = self.clock.callLater(1, self.record)
        (timer,) = self.reactor.getDelayedCalls()
        call.reset(5)
        self.assertEqual(self.reactor.getDelayedCalls(), [timer])
        self.assertEqual(call.getTime(), 5)

    def test_a_call_brought_forward_runs_at_its_new_time(self) -> None:
        call = self.clock.callLater(5, self.record)
        call.reset(0.55)
        self.reactor.advance(0.55)
        self.assertEqual(self.ran, [0.55])

    def test_a_call_handed_to_the_reactor_can_still_be_cancelled(self) -> None:
        call = self.clock.callLater(0.35, self.record)
        self.reactor.advance(0.3)  # its tick: handed to the reactor for the last 50 ms
        self.assertEqual(self.clock.getDelayedCalls(), [call])
        call.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.reactor.advance(1)
        self.assertEqual(self.ran, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_a_call_handed_to_the_reactor_can_still_be_put_off(self) -> None:
        call = self.clock.callLater(0.35, self.record)
        self.reactor.advance(0.3)
        call.reset(1)
        self.reactor.advance(0.05)
        self.assertEqual(self.ran, [])
        self.reactor.advance(0.949)
        self.assertEqual(self.ran, [])
        self.reactor.advance(0.002)
        self.assertEqual(len(self.ran), 1)
        self.assertTrue(1.3 - 1e-9 <= self.ran[0] <= 1.302, self.ran)
        self.assertFalse(call.active())

    def test_an_exact_clock_is_never_late(self) -> None:
        self.assertEqual(self.clock.lateness, 0.0)
