"""
A histogram of plain numbers, cheap enough to observe on a hot path.

``prometheus_client``'s own ``Histogram`` takes a lock on every observation; this one is a
list of counts that only the reactor thread touches.  :mod:`hbchat.metrics` turns it into
a Prometheus histogram (cumulative buckets) when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left


class Histogram:
    """Counts of observations per bucket (``value <= bound``), their sum and their number."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"bucket bounds must be distinct and increasing: {bounds!r}")
        self.bounds = bounds
        #: One count per bound, and a last one for values above every bound (+Inf).
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """Prometheus-style buckets: ``(upper bound, observations <= it)``, ending with ``inf``."""
        buckets: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets
