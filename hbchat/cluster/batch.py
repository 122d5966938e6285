"""
The batch of one reactor turn: every operation the chat asks of Redis in a turn (NICK,
RESUME, SAY, TELL, departures) goes out in one ``hb_batch`` call at the end of the turn, one
round trip, and each operation's Deferred fires with its own part of the answer.  Batches are
pipelined: the next one does not wait for the answer to the one before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger(namespace="hbchat.cluster.batch")


class ClusterUnavailableError(Exception):
    """Redis cannot be reached now: the request was not handled (ERR 503), or its outcome is unknown."""


#: Most operations sent and not yet answered, and collected for this turn, together: beyond
#: it the chat refuses new lines (ERR 429) instead of queueing without bound.
MAX_IN_FLIGHT = 20000

#: Most operations in one ``hb_batch`` call: a function blocks Redis while it runs (every
#: node's reads and leases wait), so a turn with more goes out as several calls, pipelined.
MAX_OPS_PER_CALL = 1000


class Batch:
    """Collects a turn's operations; ``send(ops)`` sends them (None: nobody to send them to)."""

    def __init__(
        self,
        clock: IReactorTime,
        send: Callable[[list[bytes | int]], Deferred[Any] | None],
        dead: Callable[[], None],
        latency: Callable[[float], None],
    ) -> None:
        self.clock = clock
        self._send = send
        self._dead = dead
        self._latency = latency
        self._ops: list[Sequence[bytes | int]] = []
        self._waiters: list[Deferred[Any]] = []
        self._call: IDelayedCall | None = None
        #: Batches sent, and operations in them (so their mean size is known).
        self.sent = 0
        self.operations = 0
        #: Operations sent and not yet answered.
        self.inFlight = 0

    @property
    def full(self) -> bool:
        """As many operations are out or waiting as may be: take no more for now."""
        return self.inFlight + len(self._waiters) >= MAX_IN_FLIGHT

    def submit(self, op: Sequence[bytes | int]) -> Deferred[Any]:
        """One operation (its letter and arguments); fires with its answer at the end of the turn's round trip."""
        waiter: Deferred[Any] = Deferred()
        self._ops.append(op)
        self._waiters.append(waiter)
        if self._call is None:
            self._call = self.clock.callLater(0, self.flush)
        return waiter

    def flush(self) -> None:
        """Send what was collected, now."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        ops, waiters = self._ops, self._waiters
        self._ops, self._waiters = [], []
        for start in range(0, len(waiters), MAX_OPS_PER_CALL):
            self._send_call(ops[start : start + MAX_OPS_PER_CALL], waiters[start : start + MAX_OPS_PER_CALL])

    def _send_call(self, ops: list[Sequence[bytes | int]], waiters: list[Deferred[Any]]) -> None:
        sent_at = self.clock.seconds()
        sending = self._send([argument for op in ops for argument in op])
        if sending is None:
            _fail(waiters)
            return
        self.sent += 1
        self.operations += len(waiters)
        self.inFlight += len(waiters)
        sending.addCallbacks(self._answered, self._failed, callbackArgs=(waiters, sent_at), errbackArgs=(waiters,))

    def fail_all(self) -> None:
        """Nothing collected will be sent (Redis is gone): every operation fails."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        waiters, self._waiters, self._ops = self._waiters, [], []
        _fail(waiters)

    def _answered(self, reply: Any, waiters: list[Deferred[Any]], sent_at: float) -> None:
        self.inFlight -= len(waiters)
        if reply[0] == b"dead":
            _fail(waiters)
            self._dead()
            return
        self._latency(self.clock.seconds() - sent_at)
        for waiter, answer in zip(waiters, reply[2:], strict=True):
            waiter.callback(answer)

    def _failed(self, failure: Failure, waiters: list[Deferred[Any]]) -> None:
        self.inFlight -= len(waiters)
        if not failure.check(ConnectionError, TimeoutError):
            # Redis refused the call itself (a script error): say so, the lines were not handled.
            log.failure("hb_batch failed", failure)
        _fail(waiters)


def _fail(waiters: list[Deferred[Any]]) -> None:
    for waiter in waiters:
        waiter.errback(ClusterUnavailableError())
