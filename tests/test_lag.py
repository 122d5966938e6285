"""Reactor lag, measured on a fake clock: advancing it in one step is a stall of that length."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from hbchat.ops.histogram import Histogram
from hbchat.ops.lag import ReactorLag


def ticking(clock: Clock, seconds: float, step: float = 0.0625) -> None:
    """A healthy reactor: time passes in small steps (exact in binary), each timer runs when due."""
    for _ in range(round(seconds / step)):
        clock.advance(step)


class ReactorLagTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.lag = ReactorLag(self.clock, interval=0.25, window=10)
        self.lag.start()
        self.addCleanup(self.lag.stop)

    def test_no_lag_while_timers_run_on_time(self) -> None:
        ticking(self.clock, 5)
        self.assertEqual(self.lag.last, 0)
        self.assertEqual(self.lag.recent_max(), 0)
        self.assertEqual(self.lag.histogram.count, 20)
        self.assertEqual(self.lag.histogram.counts[0], 20)

    def test_a_stall_is_measured_by_the_first_tick_after_it(self) -> None:
        ticking(self.clock, 1)
        self.clock.advance(3.25)  # the reactor blocked for 3 s past the next tick
        self.assertAlmostEqual(self.lag.last, 3.0)
        self.assertAlmostEqual(self.lag.recent_max(), 3.0)
        ticking(self.clock, 1)
        self.assertEqual(self.lag.last, 0)
        self.assertAlmostEqual(self.lag.recent_max(), 3.0)

    def test_a_stall_is_forgotten_after_the_window(self) -> None:
        self.clock.advance(2.25)
        self.assertAlmostEqual(self.lag.recent_max(), 2.0)
        ticking(self.clock, 9)
        self.assertAlmostEqual(self.lag.recent_max(), 2.0)
        ticking(self.clock, 2)
        self.assertEqual(self.lag.recent_max(), 0)
        self.assertAlmostEqual(self.lag.recent_max(window=60), 0)

    def test_current_shows_a_stall_before_the_tick_measures_it(self) -> None:
        # As a timer that fires right after a stall sees it: the tick is overdue.
        self.clock.callLater(2.0, lambda: seen.append((self.lag.current(), self.lag.recent_max(), self.lag.last)))
        seen: list[tuple[float, float, float]] = []
        self.clock.advance(0.1)
        self.assertEqual(self.lag.current(), 0)
        self.clock.advance(2.0)  # one step: the timer due at 2.0 runs at 2.1, after the tick
        [(current, recent, last)] = seen
        self.assertAlmostEqual(last, 1.85)
        self.assertAlmostEqual(recent, 1.85)
        self.assertEqual(current, 0)  # the tick ran first and rescheduled

        self.clock.callLater(0.2, lambda: seen.append((self.lag.current(), self.lag.recent_max(), self.lag.last)))
        self.clock.pump([0.2])  # this timer is due before the next tick: it sees the tick is not overdue
        self.assertEqual(seen[-1][0], 0)

    def test_current_when_the_timer_runs_before_the_tick(self) -> None:
        seen: list[float] = []
        self.clock.advance(0.2)  # the tick is due at 0.25
        self.clock.callLater(0.04, lambda: seen.append(self.lag.current()))  # due at 0.24
        self.clock.advance(3)  # both run at 3.2: ours first
        self.assertAlmostEqual(seen[0], 2.95)

    def test_histogram_buckets_each_measurement(self) -> None:
        self.clock.advance(0.25 + 0.007)
        histogram = self.lag.histogram
        self.assertEqual(histogram.count, 1)
        self.assertAlmostEqual(histogram.sum, 0.007)
        cumulative = dict(histogram.cumulative())
        self.assertEqual(cumulative[0.005], 0)
        self.assertEqual(cumulative[0.01], 1)
        self.assertEqual(cumulative[float("inf")], 1)

    def test_stop_cancels_the_timer_and_start_again_resumes(self) -> None:
        self.assertTrue(self.lag.running)
        self.lag.stop()
        self.assertFalse(self.lag.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.lag.current(), 0)
        self.lag.start()
        self.lag.start()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_interval_must_be_positive(self) -> None:
        self.assertRaises(ValueError, ReactorLag, self.clock, 0)


class HistogramTests(SynchronousTestCase):
    def test_values_on_a_bound_count_in_its_bucket(self) -> None:
        histogram = Histogram((1.0, 2.0))
        for value in (0.5, 1.0, 1.5, 2.0, 9.0):
            histogram.observe(value)
        self.assertEqual(histogram.cumulative(), [(1.0, 2), (2.0, 4), (float("inf"), 5)])
        self.assertEqual((histogram.count, histogram.sum), (5, 14.0))

    def test_bounds_must_increase(self) -> None:
        self.assertRaises(ValueError, Histogram, (2.0, 1.0))
        self.assertRaises(ValueError, Histogram, ())
