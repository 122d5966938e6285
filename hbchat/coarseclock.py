"""
A coarse clock: timed calls that share one reactor timer per tick.

Every registered connection's pinger is a ``LoopingCall`` that wakes once a ping interval.
On the reactor's own clock each wake is a ``DelayedCall`` pushed into and popped from the
reactor's heap, whose every comparison is a Python method call; at 10,000 connections that
was a quarter of the heartbeat's CPU (docs/performance.md, "The heart, cheaper").  A pinger
does not need a microsecond's precision, so its ``LoopingCall`` is given this clock instead
(``LoopingCall.clock`` exists for exactly that): calls due in the same tick (a hundredth of
a second by default) are kept together in one bucket, and the reactor holds one timer for
the earliest bucket.

A call runs at or after its time, never before (``LoopingCall`` relies on that: a tick run
early would be scheduled again for the same instant), and at most one tick plus a reactor
turn after it: :attr:`CoarseClock.lateness` is what a caller allows for.

An *exact* clock (``exact=True``) is for deadlines that are put off again and again and
rarely reached, such as a connection's idle timeout, reset by every read: putting a call
off is an assignment (it is filed again only when its old tick comes), and a call whose
tick comes while its time is still ahead is handed to the reactor for the rest, so it runs
at its time exactly, as a reactor's ``DelayedCall`` would.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

log = Logger("hbchat.coarseclock")

#: Ticks a second of the pinger's clock: a PING goes out at most 10 ms after its time.
DEFAULT_TICKS = 100


@implementer(IDelayedCall)
class CoarseCall:
    """One timed call of a :class:`CoarseClock` (an ``IDelayedCall``)."""

    __slots__ = ("_clock", "args", "called", "cancelled", "func", "kw", "precise", "slot", "time")

    def __init__(
        self,
        clock: CoarseClock,
        when: float,
        func: Callable[..., object],
        args: tuple[Any, ...],
        kw: dict[str, Any] | None,
    ) -> None:
        self._clock = clock
        self.time = when
        self.func = func
        self.args = args
        self.kw = kw
        self.called = False
        self.cancelled = False
        self.slot = 0
        #: An exact clock's call handed to the reactor for the rest of its time.
        self.precise: IDelayedCall | None = None

    def getTime(self) -> float:
        return self.time

    def active(self) -> bool:
        return not (self.called or self.cancelled)

    def cancel(self) -> None:
        self._check()
        self.cancelled = True
        self._clock._unfile(self)

    def reset(self, secondsLater: float) -> None:
        self._check()
        self._clock._move(self, self._clock.seconds() + secondsLater)

    def delay(self, secondsLater: float) -> None:
        self._check()
        self._clock._move(self, self.time + secondsLater)

    def _check(self) -> None:
        if self.cancelled:
            raise AlreadyCancelled()
        if self.called:
            raise AlreadyCalled()

    def __repr__(self) -> str:
        return f"<CoarseCall at {self.time:.6f}: {self.func!r}>"


@implementer(IReactorTime)
class CoarseClock:
    """
    An ``IReactorTime`` over ``clock`` whose calls run in buckets of ``1/ticks`` seconds.

    A call due at time *t* joins the bucket of tick ``ceil(t * ticks)`` and runs when the
    reactor's timer for that tick fires.  Buckets are dictionaries, so cancelling or
    rescheduling a call is O(1) and a cancelled call is forgotten at once (it holds its
    function, and so its connection, until then).
    """

    def __init__(self, clock: IReactorTime, ticks: int = DEFAULT_TICKS, exact: bool = False) -> None:
        if ticks <= 0:
            raise ValueError(f"ticks must be positive, not {ticks}")
        self._clock = clock
        self._ticks = ticks
        #: Exact: a call is filed in the tick before its time and handed to the reactor
        #: for the rest; otherwise in the tick after it, and run then.
        self.exact = exact
        self._buckets: dict[int, dict[CoarseCall, None]] = {}
        #: The ticks that have a bucket, earliest first (a bucket emptied by cancels stays
        #: here until its tick comes).
        self._due: list[int] = []
        self._timer: IDelayedCall | None = None
        self._timerSlot = 0
        self._running = False
        #: Calls filed and neither run nor cancelled: at none, the reactor's timer goes too
        #: (a clock with nothing to do holds no timer, and a test's reactor ends clean).
        self._pending = 0
        #: An exact clock's calls handed to the reactor for the rest of their time.
        self._handed: dict[CoarseCall, None] = {}

    @property
    def lateness(self) -> float:
        """The most a call runs after its time, besides the reactor's own turn: one tick (none if exact)."""
        return 0.0 if self.exact else 1.0 / self._ticks

    def seconds(self) -> float:
        return self._clock.seconds()

    def callLater(self, delay: float, callable: Callable[..., object], *args: object, **kw: object) -> IDelayedCall:
        # No keywords is the usual case (a LoopingCall's): keep no empty dictionary per call.
        call = CoarseCall(self, self._clock.seconds() + delay, callable, args, kw or None)
        self._file(call)
        return call

    def getDelayedCalls(self) -> list[IDelayedCall]:
        filed = [call for bucket in self._buckets.values() for call in bucket]
        return [*filed, *self._handed]

    def _file(self, call: CoarseCall) -> None:
        self._pending += 1
        when = call.time * self._ticks
        slot = call.slot = math.floor(when) if self.exact else math.ceil(when)
        bucket = self._buckets.get(slot)
        if bucket is not None:
            bucket[call] = None
            return
        self._buckets[slot] = {call: None}
        heapq.heappush(self._due, slot)
        if not self._running and (self._timer is None or slot < self._timerSlot):
            self._arm(slot)

    def _move(self, call: CoarseCall, when: float) -> None:
        """``call`` is now due at ``when``."""
        if self.exact and call.precise is None and when >= call.time:
            # Put off: its tick still comes first, and files it anew then.
            call.time = when
            return
        self._unfile(call)
        call.time = when
        self._file(call)

    def _unfile(self, call: CoarseCall) -> None:
        self._pending -= 1
        if call.precise is not None:
            call.precise.cancel()
            call.precise = None
            del self._handed[call]
        bucket = self._buckets.get(call.slot)
        if bucket is not None:
            bucket.pop(call, None)
        if not self._pending and not self._running:
            self._idle()

    def _idle(self) -> None:
        """Nothing is pending: forget the empty buckets and stop the reactor's timer."""
        self._buckets.clear()
        self._due.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timerSlot = slot
        self._timer = self._clock.callLater(max(0.0, slot / self._ticks - self._clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._running = True
        try:
            self._runDue()
        finally:
            self._running = False
        if not self._pending:
            self._idle()
            return
        due = self._due
        while due and not self._buckets.get(due[0]):
            self._buckets.pop(heapq.heappop(due), None)
        if due:
            self._arm(due[0])

    def _runPrecisely(self, call: CoarseCall) -> None:
        """An exact clock's call, handed to the reactor within its last tick, is due."""
        call.precise = None
        del self._handed[call]
        call.called = True
        self._pending -= 1
        if not self._pending and not self._running:
            self._idle()
        if call.kw is None:
            call.func(*call.args)
        else:
            call.func(*call.args, **call.kw)

    def _runDue(self) -> None:
        now = self._clock.seconds()
        due, buckets, ticks = self._due, self._buckets, self._ticks
        # A tick's time is compared as the reactor would compare it, so a bucket is never
        # run early (float rounding may put it a hair after the reactor's ``now``: it then
        # waits for the next turn).
        while due and due[0] / ticks <= now:
            slot = heapq.heappop(due)
            bucket = buckets.pop(slot, None)
            if not bucket:
                continue
            for call in bucket:
                # Cancelled or moved by an earlier call of this very bucket.
                if call.cancelled or call.called or call.slot != slot or call.precise is not None:
                    continue
                if call.time > now:
                    # An exact clock's call put off since it was filed, or due within the tick.
                    self._pending -= 1
                    if call.time * ticks >= slot + 1:
                        self._file(call)
                    else:
                        self._pending += 1
                        call.precise = self._clock.callLater(call.time - now, self._runPrecisely, call)
                        self._handed[call] = None
                    continue
                call.called = True
                self._pending -= 1
                try:
                    if call.kw is None:
                        call.func(*call.args)
                    else:
                        call.func(*call.args, **call.kw)
                except Exception:
                    # As the reactor does for its own timed calls: logged, and the others run.
                    log.failure("while running timed call {call!r}", call=call)
