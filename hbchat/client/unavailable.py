"""
``ERR 503 cluster unavailable: <VERB> not handled``: the server (a node of a cluster) cannot
reach the shared chat for a while, keeps the connection, and refuses ``NICK``, ``RESUME``,
``SAY`` and ``TELL`` (docs/protocol.md, section 8).  The client keeps each refused line and
sends it again later; this module is the pure part: which verb was refused, and how long to
wait, with jitter, before trying again.

The wait doubles with each refusal in a row, from :data:`FIRST_WAIT` up to :data:`MAX_WAIT`,
drawn from its upper half ("equal jitter": never a burst at once, never synchronised across
the clients of one node), and starts over once a line goes through.
"""

from __future__ import annotations

import random

#: The text of the ERR 503 that means "try again later, on this connection".
PREFIX = "cluster unavailable: "
#: Verbs a node refuses while the cluster is unavailable.
VERBS = frozenset({"NICK", "RESUME", "SAY", "TELL"})

#: The longest wait of the first refusal, and of any, in seconds.
FIRST_WAIT = 0.25
MAX_WAIT = 5.0


def refused_verb(text: str) -> str | None:
    """The verb of ``cluster unavailable: <VERB> not handled`` (an ERR 503's text); ``None`` for any other text."""
    if not text.startswith(PREFIX) or not text.endswith(" not handled"):
        return None
    verb = text[len(PREFIX) : -len(" not handled")]
    return verb if verb in VERBS else None


def retry_wait(refusals: int, rng: random.Random) -> float:
    """
    Seconds to wait after the ``refusals``-th refusal in a row (1 for the first): drawn from the
    upper half of a window that doubles, capped.
    """
    ceiling = min(MAX_WAIT, FIRST_WAIT * 2 ** max(0, min(refusals - 1, 16)))
    return rng.uniform(ceiling / 2, ceiling)
