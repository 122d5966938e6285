"""
Rate limits as plain arithmetic, so that the rules can be tested without a reactor.

A token bucket of ``rate`` tokens a second holding at most ``burst`` is kept here as one
number, the *theoretical arrival time* of the generic cell rate algorithm (GCRA): the
moment the bucket would be full again.  That is one float per connection instead of two
(tokens and a time stamp), and one comparison per line, which matters with ten thousand
connections each handling every line through it.

The server's own pauses (backpressure, a password check) must never count against a
client: lines a client sent at its rate while the server was not reading arrive together
once it reads again.  Each such pause is a *credit*: the bucket may go that many seconds
further into debt (``rate`` lines per second of pause beyond the burst), until the bucket
has refilled after the backlog (:func:`credit_left`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: A connection refused this many times in a row (each refusal less than
#: ``STRIKE_MEMORY`` seconds after the one before) is cut: it is not listening.
MAX_STRIKES = 10

#: Seconds after which a refusal is forgiven: a client that slowed down starts afresh.
STRIKE_MEMORY = 10.0


@dataclass(frozen=True)
class Bucket:
    """A token bucket: ``rate`` per second on average, ``burst`` at once."""

    rate: float
    burst: float

    def take(self, full_at: float, now: float, credit: float = 0.0) -> float | None:
        """
        One token, if there is one: the bucket's new full-again time; ``None`` if it is empty.

        ``full_at`` is the bucket's current full-again time (0 for a new, full bucket). A
        refused line takes nothing, so a client that keeps trying is not punished more
        than one that waits.  ``credit`` is seconds of the server's own pauses not yet made
        good: the bucket may owe that many seconds' worth of tokens more.
        """
        interval = 1.0 / self.rate
        if full_at <= now:
            return now + interval
        # The bucket is in debt by full_at - now; it may owe at most burst - 1 tokens.  Half
        # a token of slack: clock readings near 1.7e9 s are floats 2**-22 s apart, and
        # full_at adds up those roundings, so a token that is due can look a little short
        # of it (a bucket of burst 1 would then refuse every line for ever).  Debts are
        # whole tokens less the time elapsed, so the slack never adds a token to a burst.
        if full_at - now > (self.burst - 0.5) * interval + credit:
            return None
        return full_at + interval

    def wait(self, full_at: float, now: float) -> float:
        """Seconds until :meth:`take` gives a token again (0 if it would now)."""
        return max(0.0, full_at - now - (self.burst - 1) / self.rate)


def credit_left(credit: float, full_at: float, now: float, since: float) -> float:
    """
    What is left of a pause credit when a line arrives at ``now``: all of it until the
    bucket, drawn on after the pause (its full-again time past ``since``, the later of the
    resume and the full-again time then), is full again; then none, for the backlog of
    the pause has been read.
    """
    return 0.0 if since < full_at <= now else credit


def ping_bucket(ping_interval: float, burst: float = 10) -> Bucket:
    """
    How often a peer may PING us: once a second, or twice per ``--ping`` interval if that
    is more, with bursts of ``burst``.  Each PING costs us a write; a peer that checks on
    us far more often than we check on it is abusing the heartbeat (gRPC's "ping strikes").
    """
    return Bucket(max(1.0, 2.0 / ping_interval), burst)


def strikes_after(strikes: int, last_strike: float, now: float) -> int:
    """The refusal count after one more refusal at ``now``."""
    return strikes + 1 if now - last_strike < STRIKE_MEMORY else 1
