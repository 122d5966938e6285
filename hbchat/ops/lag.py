"""
Reactor lag: how late the reactor runs what it was asked to run.

A timer is set ``interval`` seconds ahead, again and again; each time it fires, the
difference between when it ran and when it was due is the lag of that moment.  On an idle,
healthy reactor it is a fraction of a millisecond (the granularity of ``epoll_wait``).  A
long GC pause, a blocking call or a CPU-starved machine shows up as a lag as long as the
stall, measured by the first tick after it.

While a stall is still going on (or has just ended and the tick has not run yet), the
pending tick is overdue: :meth:`ReactorLag.current` says by how much, so code that runs
right after a stall (a timer that fired late, say) can tell, before the next tick does.

Plain numbers only, no locks: the clock is the reactor (or a ``task.Clock`` in tests), and
:mod:`hbchat.metrics` reads the histogram at scrape time.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hbchat.ops.histogram import Histogram

#: Seconds between ticks.
INTERVAL = 0.25
#: Seconds over which :meth:`ReactorLag.recent_max` looks back by default.
WINDOW = 60.0
#: Bucket upper bounds of the lag histogram, in seconds.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ReactorLag:
    """
    Measures how late a timer fires, every ``interval`` seconds, on ``clock``.

    ``last`` is the lag the latest tick measured, :meth:`current` how overdue the pending
    tick is now, :meth:`recent_max` the largest lag of the last ``window`` seconds, and
    ``histogram`` every measurement so far.  Call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, clock: IReactorTime, interval: float = INTERVAL, window: float = WINDOW) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        self.clock = clock
        self.interval = interval
        self.window = window
        #: Lag measured by the latest tick, in seconds (0 before the first).
        self.last = 0.0
        #: When the latest tick ran (clock seconds), or None before the first.
        self.histogram = Histogram(LAG_BUCKETS)
        #: (time, lag) of the ticks of the last ``window`` seconds, oldest first.
        self._recent: deque[tuple[float, float]] = deque()
        self._due = 0.0
        self._call: IDelayedCall | None = None

    @property
    def running(self) -> bool:
        return self._call is not None

    def start(self) -> None:
        if self._call is None:
            self._schedule(self.clock.seconds())

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def current(self) -> float:
        """How overdue the pending tick is, in seconds: a stall not yet measured (0 if none)."""
        if self._call is None:
            return 0.0
        return max(0.0, self.clock.seconds() - self._due)

    def recent_max(self, window: float | None = None) -> float:
        """
        The largest lag of the last ``window`` seconds, the current one included.

        ``window`` defaults to, and cannot look further back than, the ``window`` given to
        the constructor.
        """
        since = self.clock.seconds() - (self.window if window is None else window)
        worst = self.current()
        for at, lag in reversed(self._recent):
            if at < since:
                break
            worst = max(worst, lag)
        return worst

    def _schedule(self, now: float) -> None:
        self._due = now + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        now = self.clock.seconds()
        lag = max(0.0, now - self._due)
        self.last = lag
        self.histogram.observe(lag)
        recent = self._recent
        recent.append((now, lag))
        while recent[0][0] < now - self.window:
            recent.popleft()
        self._schedule(now)
