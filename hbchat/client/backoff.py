"""
Reconnect delays: exponential backoff with FULL jitter, applied after the cap.

``delay = uniform(0, min(cap, base * factor ** attempt))``.  Spreading each attempt over the
whole range (rather than ReconnectingClientFactory's Gaussian around the mean) is what
turns ten thousand clients returning after a restart into a flat line instead of waves,
and the cap is never exceeded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float = 1.0
    factor: float = 2.0
    cap: float = 30.0

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.factor >= 1 and self.cap >= self.base):
            raise ValueError("backoff needs base > 0, factor >= 1 and cap >= base")

    def ceiling(self, attempt: int) -> float:
        """The largest delay for the ``attempt``-th retry (0 for the first)."""
        ceiling = self.base
        for _ in range(max(0, attempt)):
            ceiling *= self.factor
            if ceiling >= self.cap:
                return self.cap
        return min(ceiling, self.cap)

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.ceiling(attempt))


DEFAULT_BACKOFF = Backoff()


def hinted_delay(retry: float, rng: random.Random) -> float:
    """A server that said ``BYE shutdown retry=S`` is come back to after uniform(0, S)."""
    return rng.uniform(0.0, retry)
