"""
One connection's place in the rate limits (``--rate``, ``--burst``, and the PING limit):
when its buckets are full again, the ERR 429 strikes so far, and the credit of the
server's own pauses of reading, which never count against the line budget.

The buckets themselves (:class:`hbchat.ratelimit.Bucket`) are shared by every connection;
this holds only the per-connection numbers.  Pure: time is passed in.
"""

from __future__ import annotations

from hbchat.ratelimit import Bucket, credit_left, strikes_after

#: The number every line touches, as a slot of the class that uses the mixin.
LIMIT_SLOTS = ("_fullAt",)


class LineLimits:
    """
    Where one connection stands against the line and PING buckets, as a mixin: the line
    bucket's full-again time lives in a slot of the class that uses it (:data:`LIMIT_SLOTS`,
    set by :meth:`startLimits`: every line touches it); the rest keep their class defaults
    until a connection first needs its own, so that a connection carries no extra object.
    """

    _fullAt: float
    #: When the PING bucket is full again.
    _pingFullAt = 0.0
    #: ERR 429 so far (forgotten after hbchat.ratelimit.STRIKE_MEMORY), and the last one.
    strikes = 0
    _lastStrike = 0.0
    #: Since when reading is paused (None: it is not), the seconds of pause not yet made
    #: good, and from when they count (hbchat.ratelimit.credit_left).
    _pausedAt: float | None = None
    _rateCredit = 0.0
    _creditSince = 0.0
    _pingCredit = 0.0
    _pingCreditSince = 0.0

    def startLimits(self) -> None:
        """A new connection: its line bucket is full."""
        self._fullAt = 0.0

    def withinLimits(self, lines: Bucket, pings: Bucket, verb: bytes, now: float) -> bool:
        """Whether a line (``verb``) arriving at ``now`` is within the limits; it is counted if so."""
        credit = self._rateCredit
        if credit:
            credit = self._rateCredit = credit_left(credit, self._fullAt, now, self._creditSince)
        full_at = lines.take(self._fullAt, now, credit)
        if full_at is None or (verb == b"PING" and not self._pingAllowed(pings, now)):
            return False
        self._fullAt = full_at
        return True

    def _pingAllowed(self, pings: Bucket, now: float) -> bool:
        credit = self._pingCredit
        if credit:
            credit = self._pingCredit = credit_left(credit, self._pingFullAt, now, self._pingCreditSince)
        full_at = pings.take(self._pingFullAt, now, credit)
        if full_at is None:
            return False
        self._pingFullAt = full_at
        return True

    def strike(self, now: float) -> int:
        """A line was refused at ``now``: the strikes so far."""
        strikes = self.strikes = strikes_after(self.strikes, self._lastStrike, now)
        self._lastStrike = now
        return strikes

    def readingPaused(self, now: float) -> None:
        """The server stopped reading the connection."""
        if self._pausedAt is None:
            self._pausedAt = now

    def readingResumed(self, now: float) -> None:
        """The server reads again: what the client sent meanwhile arrives at once, so the pause is its credit."""
        if self._pausedAt is not None:
            paused = now - self._pausedAt
            self._rateCredit += paused
            self._creditSince = max(now, self._fullAt)
            self._pingCredit += paused
            self._pingCreditSince = max(now, self._pingFullAt)
            self._pausedAt = None


class Standing(LineLimits):
    """The limits' numbers on their own (for tests, and for what is not a connection)."""

    def __init__(self) -> None:
        self.startLimits()
