"""
The heartbeat's pinger: a ``LoopingCall`` whose ticks build no Deferred.

A server runs one pinger per registered connection, each ticking once a ping interval, and
almost every tick only decides to skip its PING (the peer spoke meanwhile).  A plain
``LoopingCall`` wraps every tick in ``maybeDeferred`` and two callbacks, in case the function
returns a Deferred; the heartbeat's never does, and that wrapping was half of a tick's cost
(docs/performance.md, "The heart, cheaper").  :class:`Pinger` calls the function directly
and otherwise behaves as ``LoopingCall`` does: ``start()``'s Deferred fires with the pinger
when it is stopped, and fails (stopping it) if the function raises.

It overrides ``LoopingCall.__call__`` and reads the ``_deferred`` and ``_scheduleFrom`` it
shares with ``start()`` and ``stop()``: Twisted is pinned to its tested major version, and
tests/test_pinger.py holds the behaviour to ``LoopingCall``'s.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

#: The keywords of every pinger: none, and one shared dictionary for that rather than an
#: empty one per connection (``LoopingCall`` keeps its own; never written to).
_NO_KEYWORDS: dict[str, object] = {}


class Pinger(LoopingCall):
    """A ``LoopingCall`` for a function of no arguments that returns nothing."""

    def __init__(self, f: Callable[[], object]) -> None:
        super().__init__(f)
        self.kw = _NO_KEYWORDS

    def __call__(self) -> None:
        self.call = None
        try:
            self.f(*self.a, **self.kw)
        except BaseException:
            self.running = False
            failed, self._deferred = self._deferred, None
            assert failed is not None
            failed.errback(Failure())
            return
        if self.running:
            self._scheduleFrom(self.clock.seconds())
        else:
            # The function stopped its own pinger.
            stopped, self._deferred = self._deferred, None
            assert stopped is not None
            stopped.callback(self)
