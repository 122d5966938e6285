"""
When each client should come back after a graceful stop: even slots, not a random draw.

On SIGTERM the server says ``BYE shutdown retry=S`` to its connections in batches spread
over ``--drain`` seconds.  A client left to itself comes back after uniform(0, S): 300
clients over 10 s are 3 per 100 ms on average, and independent draws put twice or three
times that into the busiest 100 ms.  The server knows how many connections it is telling
and in which order, so it gives each one its own moment, ``at=A`` (0 <= A <= S): the
returns, counted from the stop, fall one after another over ``[earliest, drain + S]``,
each at a random point of its own slot.  None is sent back before ``earliest`` (2 s, or
S / 2 if that is shorter): a restarted twistd takes over a second to listen, and an
attempt refused before that comes back again within a second, on top of the crowd.

Pure arithmetic; :mod:`hbchat.server` calls :func:`comeback_delay` for each BYE.
"""

from __future__ import annotations

#: Seconds after the stop before which no client is asked to come back.
EARLIEST = 2.0


def comeback_delay(index: int, count: int, sent_at: float, drain: float, hint: float, u: float) -> float:
    """
    The ``at=`` delay for the ``index``-th (from 0) of ``count`` connections, whose BYE goes
    out ``sent_at`` seconds after the stop; ``u`` in [0, 1) is where in its slot it lands.

    Always within [0, ``hint``], so a client that follows ``at=`` also obeys ``retry=``.
    """
    if count <= 0 or hint <= 0:
        return 0.0
    earliest = min(EARLIEST, hint / 2)
    end = drain + hint
    target = earliest + (index + u) / count * (end - earliest)
    return min(hint, max(0.0, target - sent_at))
