"""
Backpressure: when senders outrun receivers, slow the senders down, never drop messages.

A receiver whose unsent output passes the transport's high-water mark (``--sendq-soft``,
set with :func:`set_high_water`) is *congested*.  While
any receiver is congested the server stops reading from every connection that produces
broadcasts, so the backlog stops growing and each receiver's output stays bounded; the
senders are read again once every congested receiver has drained.  A congested client is
not read either: a peer that floods commands but never reads its answers throttles only
itself.

A healthy receiver drains in milliseconds.  One that stays congested for ``patience``
seconds while most receivers keep up is a slow consumer: it stops holding everyone else
back, and the server cuts it if its backlog passes ``max_backlog`` bytes or it has not
drained within ``timeout`` seconds.  When most receivers are congested at once, no one of
them is to blame (the consumers as a whole are slower than the senders): the senders stay
held back for as long as it takes.

A congested receiver that took nothing at all since the last look (``delivered`` did not
grow: its window is zero, it does not read) is *stalled*: not slow but stopped.  Stalled
receivers are not "the consumers as a whole", however many they are, so a crowd of
clients that do not read cannot hold the readers' chat for long: each stops holding the
senders after ``patience`` and is cut like a lone laggard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hbchat.sockopts import socket_transport


def slow_deadline(timeout: float) -> float:
    """
    However many receivers lag, one whose output has not drained for this long is cut as a
    slow consumer (seconds after it became congested; a lone laggard goes after ``timeout``).
    """
    return max(3 * timeout, 30.0)


def kernel_user_timeout(timeout: float) -> float:
    """
    TCP_USER_TIMEOUT for server connections, in seconds: twice :func:`slow_deadline`.

    Linux counts the probes of a zero window against TCP_USER_TIMEOUT, so a peer that is
    alive but does not read would otherwise be aborted by the kernel (and announced
    ``error``) before the slow-consumer rule could cut it as ``slow``.  Well above that
    rule's deadline, it is left for what it is for: a peer whose kernel stopped
    acknowledging, where nothing else is watching.
    """
    return 2 * slow_deadline(timeout)


def set_high_water(transport: Any, size: int) -> bool:
    """
    Make ``transport`` tell its producer to pause once ``size`` bytes of output are unsent.

    Twisted's stream transports do that at their ``bufferSize`` (64 KiB by default), which
    is also how much they read at a time (hence the bounds on --sendq-soft); under TLS it is
    the transport beneath the TLS layer that holds the bytes, so that is the one set.
    ``False`` if there is no such transport (a fake one in tests, say).
    """
    # The transport that owns the socket: a TLS wrapper forwards unknown attributes to the
    # transport beneath, so setting bufferSize on it would only shadow the real one.
    found = socket_transport(transport)
    if found is None:
        return False
    owner = found[0]
    if isinstance(getattr(owner, "bufferSize", None), int) and owner.bufferSize != size:
        owner.bufferSize = size
    return True


class Throttled(Protocol):
    """A connection as backpressure sees it."""

    def pauseReading(self) -> None: ...  # noqa: N802 (the connection's Twisted-style name)

    def resumeReading(self) -> None: ...  # noqa: N802 (the connection's Twisted-style name)

    def cutAsSlow(self, why: str) -> None: ...  # noqa: N802 (the connection's Twisted-style name)

    def delivered(self) -> int | None:
        """Bytes of output the peer has taken so far; None if that cannot be told."""
        ...


class Backpressure:
    """Who is congested, who is held back because of it, and when to give up on whom."""

    def __init__(
        self,
        clock: IReactorTime,
        patience: float,
        timeout: float,
        max_backlog: int,
        population: Callable[[], int],
    ) -> None:
        self.clock = clock
        self.population = population
        self.patience = patience
        self.timeout = timeout
        self.maxBacklog = max_backlog
        #: Congested receivers that hold the senders back, with their patience timers.
        self._holding: dict[Throttled, IDelayedCall] = {}
        #: Every congested receiver, with the timer that cuts it if it never drains.
        self._congested: dict[Throttled, IDelayedCall] = {}
        #: Connections we stopped reading.
        self._paused: set[Throttled] = set()
        #: When each congested receiver became congested.
        self._since: dict[Throttled, float] = {}
        #: Connections that produced broadcasts during the current reactor turn.
        self._speakers: set[Throttled] = set()
        #: What each congested receiver had taken at the last look, and those that took
        #: nothing since the look before (stalled).
        self._taken: dict[Throttled, tuple[int | None, float]] = {}
        self._stalled: set[Throttled] = set()
        #: Looks at every congested receiver, each ``patience`` while there are any.
        self._lookCall: IDelayedCall | None = None

    @property
    def holding(self) -> bool:
        """Senders are being held back."""
        return bool(self._holding)

    def is_congested(self, connection: Throttled) -> bool:
        return connection in self._congested

    def is_paused(self, connection: Throttled) -> bool:
        return connection in self._paused

    def spoke(self, connection: Throttled) -> None:
        """``connection`` produced a broadcast; while congested, it is not read further."""
        if self._holding:
            self._pause(connection)
        else:
            self._speakers.add(connection)

    def turn_ended(self) -> None:
        """The turn's output has been written; speakers from now on belong to the next turn."""
        self._speakers.clear()

    def congested(self, receiver: Throttled) -> None:
        """``receiver``'s output passed the high-water mark."""
        if receiver in self._congested:
            return
        self._congested[receiver] = self.clock.callLater(self.timeout, self._never_drained, receiver)
        self._holding[receiver] = self.clock.callLater(self.patience, self._lost_patience, receiver)
        self._since[receiver] = self.clock.seconds()
        self._taken[receiver] = (receiver.delivered(), self.clock.seconds())
        if self._lookCall is None:
            self._lookCall = self.clock.callLater(self.patience, self._look_all)
        self._pause(receiver)
        # The turn that filled it was made by these speakers: hold them back now.
        for speaker in self._speakers:
            self._pause(speaker)
        self._speakers.clear()

    def drained(self, receiver: Throttled) -> None:
        """``receiver`` sent everything it had."""
        timer = self._congested.pop(receiver, None)
        self._since.pop(receiver, None)
        self._forget_progress(receiver)
        if timer is None:
            return
        _cancel(timer)
        _cancel(self._holding.pop(receiver, None))
        if not self._holding:
            self._release_all()
        else:
            self._resume(receiver)

    def forget(self, connection: Throttled) -> None:
        """``connection`` is gone."""
        _cancel(self._congested.pop(connection, None))
        _cancel(self._holding.pop(connection, None))
        self._since.pop(connection, None)
        self._forget_progress(connection)
        self._paused.discard(connection)
        self._speakers.discard(connection)
        if not self._holding:
            self._release_all()

    #: Fewer connections than this are never "the consumers as a whole": a handful of
    #: peers that stop reading must not be able to hold a small server's chat for ever.
    MOST_LAG_MINIMUM = 4

    def _most_lag(self) -> bool:
        """
        Most connections are congested: the consumers as a whole are the bottleneck.
        Stalled receivers do not count, either way.
        """
        stalled = len(self._stalled)
        population = self.population() - stalled
        return population >= self.MOST_LAG_MINIMUM and 2 * (len(self._congested) - stalled) > population

    def _is_stalled(self, receiver: Throttled) -> bool:
        """
        Look again at what ``receiver`` has taken (unless the last look was less than half
        a patience ago): stalled if nothing since the last look.
        """
        now = self.clock.seconds()
        before, at = self._taken.get(receiver, (None, now - self.patience))
        if now - at >= self.patience / 2:
            taken = receiver.delivered()
            self._taken[receiver] = (taken, now)
            if taken is not None and before is not None and taken <= before:
                self._stalled.add(receiver)
            else:
                self._stalled.discard(receiver)
        return receiver in self._stalled

    def _look_all(self) -> None:
        """Every ``patience``: which congested receivers are stalled, so that all are counted right."""
        self._lookCall = None
        for receiver in list(self._congested):
            self._is_stalled(receiver)
        if self._congested:
            self._lookCall = self.clock.callLater(self.patience, self._look_all)

    def _forget_progress(self, receiver: Throttled) -> None:
        """``receiver`` is no longer congested."""
        self._taken.pop(receiver, None)
        self._stalled.discard(receiver)
        if not self._congested and self._lookCall is not None:
            _cancel(self._lookCall)
            self._lookCall = None

    @property
    def stalled(self) -> int:
        """Congested receivers that took nothing at all at the last look."""
        return len(self._stalled)

    def _hard_limit(self) -> float:
        """However many lag, a receiver that has not drained for this long is cut."""
        return slow_deadline(self.timeout)

    def _lost_patience(self, receiver: Throttled) -> None:
        if not self._is_stalled(receiver) and self._most_lag():
            self._holding[receiver] = self.clock.callLater(self.patience, self._lost_patience, receiver)
            return
        self._holding.pop(receiver, None)
        if not self._holding:
            self._release_all()

    def _never_drained(self, receiver: Throttled) -> None:
        since = self._since.get(receiver, self.clock.seconds())
        if not self._is_stalled(receiver) and self._most_lag() and self.clock.seconds() - since < self._hard_limit():
            # Senders are held, so its backlog is bounded: not its fault, not a cut.
            self._congested[receiver] = self.clock.callLater(self.timeout, self._never_drained, receiver)
            return
        self._congested.pop(receiver, None)
        self._forget_progress(receiver)
        waited = self.clock.seconds() - self._since.pop(receiver, self.clock.seconds())
        receiver.cutAsSlow(f"its output did not drain for {max(waited, self.timeout):g}s")

    def _release_all(self) -> None:
        """Read everyone again, except congested receivers (they wait for their own drain)."""
        for connection in list(self._paused):
            if connection not in self._congested:
                self._resume(connection)

    def _pause(self, connection: Throttled) -> None:
        if connection not in self._paused:
            self._paused.add(connection)
            connection.pauseReading()

    def _resume(self, connection: Throttled) -> None:
        if connection in self._paused:
            self._paused.discard(connection)
            connection.resumeReading()


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()
