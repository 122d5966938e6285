"""
Reconnect delays that spread a crowd evenly: the retry window grows with the outage's age.

A server restart drops every client at the same instant, and they all start the same
backoff.  With the usual exponential backoff (uniform(0, 2^n) after n refusals) each
client's attempts thin out fast: the first second holds as many attempts as everything
after it, and a client refused three times in the first second already waits up to 8 s, so
the return has a long tail.  Here instead:

* the first retry after a lost connection is drawn from uniform(0, ``spread``);
* every later one from uniform(c / 2, c), where ``c = min(cap, max(base, growth * age))``
  and ``age`` is how long the outage has lasted (seconds since that first retry was
  scheduled).

While the outage is young (``growth * age`` below ``base``) a client retries about once
every ``0.75 * base`` seconds, so the attempts of the whole crowd form a flat line instead
of a burst followed by a thin tail, and each client notices a restarted server within
``base`` seconds.  As the outage ages the waits grow in proportion to it (by a factor of
1.25 to 1.5 per attempt with the defaults), up to ``cap``: a long outage still costs the
server little.  The measurement is in docs/performance.md ("Reconnect storm").

Pure arithmetic: the caller passes the attempt number, the outage's age and the
random generator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from zope.interface import Interface, implementer


class IBackoff(Interface):
    """How long a reconnecting client waits before its next attempt (hbchat.client.reconnect asks)."""

    def delay(attempt: int, age: float, rng: random.Random) -> float:  # noqa: N805 (zope: no self)
        """The wait before the ``attempt``-th retry (0 for the first), ``age`` seconds into the outage."""


@implementer(IBackoff)
@dataclass(frozen=True)
class Backoff:
    #: Longest wait while the outage is young, in seconds.
    base: float = 1.0
    #: The window grows to this share of the outage's age once that exceeds ``base``.
    growth: float = 0.5
    #: Longest wait ever, in seconds.
    cap: float = 30.0
    #: The first retry is drawn from uniform(0, spread) (at most ``cap``).
    spread: float = 1.5

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.growth > 0 and self.cap >= self.base and self.spread > 0):
            raise ValueError("backoff needs base > 0, growth > 0, cap >= base and spread > 0")

    def ceiling(self, attempt: int, age: float) -> float:
        """The longest delay for the ``attempt``-th retry (0 for the first) ``age`` seconds into the outage."""
        if attempt <= 0:
            return min(self.spread, self.cap)
        return min(self.cap, max(self.base, self.growth * age))

    def floor(self, attempt: int, age: float) -> float:
        """The shortest delay: 0 for the first retry, half the ceiling after that."""
        return 0.0 if attempt <= 0 else self.ceiling(attempt, age) / 2

    def delay(self, attempt: int, age: float, rng: random.Random) -> float:
        return rng.uniform(self.floor(attempt, age), self.ceiling(attempt, age))


DEFAULT_BACKOFF = Backoff()


def hinted_delay(retry: float, rng: random.Random) -> float:
    """A server that said ``BYE shutdown retry=S`` is come back to after uniform(0, S)."""
    return rng.uniform(0.0, retry)
