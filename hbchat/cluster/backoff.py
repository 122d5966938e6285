"""
How long a node waits before trying Redis again: capped exponential backoff with full jitter.

Every node of a cluster loses Redis at the same instant; drawing each wait uniformly from
``[0, min(cap, base * 2 ** attempt)]`` spreads their returns over the whole window instead of
bunching them at its end.  Pure arithmetic: the caller passes the attempt and the generator.
"""

from __future__ import annotations

import random

#: The first window, and the longest one, in seconds.
BASE = 0.1
CAP = 2.0


def full_jitter(attempt: int, rng: random.Random, base: float = BASE, cap: float = CAP) -> float:
    """The wait before retry number ``attempt`` (0 for the first)."""
    ceiling = cap if attempt >= 32 else min(cap, base * (2**attempt))
    return rng.uniform(0.0, ceiling)
