"""
The handshake room: the connections between accept and registration (``--max-handshakes``).

A full room used to stop accepting until one of its connections registered or reached
``--register-timeout``.  Connections that never register (a slowloris) then held every
place for the whole timeout, batch after batch, while a legitimate newcomer waited in the
listen queue behind all of them: 10,000 such connections from one (loopback, so exempt)
address delayed logins by 11-36 s.  Now a full room makes way: each connection accepted
while it is full closes the oldest one still registering, once that one has had its grace
(:class:`HandshakeRoom`: from :func:`eviction_grace` to :func:`longest_grace`) to say
NICK.  The queue then moves at ``--max-handshakes`` connections per grace at the least,
not per ``--register-timeout``.

A connection whose password is being checked is never closed to make way (its NICK came
in time); neither is one that got in less than the grace ago.  This module is pure logic:
it keeps the order and the times, and says who makes way; the factory does the closing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from hbchat.config import LISTEN_BACKLOG

#: The longest grace: a new connection keeps its place in a full room for this long,
#: whatever comes after it: enough to receive HELLO and answer NICK (on loopback,
#: milliseconds; over a link of up to about 200 ms round trip).  Longer, and a flood of
#: more silent connections than the listen queue holds keeps the room full for longer than
#: a client's SYN retries take (10,000 silent connections at 1 s: logins took up to 11 s).
MAX_GRACE = 0.25

#: The shortest grace, whatever the settings.
MIN_GRACE = 0.1


def eviction_grace(register_timeout: float, capacity: int, backlog: int = LISTEN_BACKLOG) -> float:
    """
    Seconds a connection keeps its place in a full room: ``MAX_GRACE``, or less where a
    newcomer behind a full listen queue (``backlog`` connections, all silent) would
    otherwise wait more than half of ``register_timeout`` for its HELLO (the queue moves
    ``capacity`` connections per grace), but not under ``MIN_GRACE``.  With the defaults
    (10 s, 500, 1024) it is 0.25 s: a newcomer waits at most about 0.5 s.
    """
    fitting = register_timeout * capacity / (2 * backlog)
    return max(MIN_GRACE, min(MAX_GRACE, fitting))


def longest_grace(register_timeout: float, capacity: int, backlog: int = LISTEN_BACKLOG) -> float:
    """
    The most a grace may grow to when registrations are slow (a reconnect storm): as long
    as a newcomer behind a full listen queue still waits at most half of
    ``register_timeout``, and never under :func:`eviction_grace`.  2.44 s with the defaults.
    """
    fitting = register_timeout * capacity / (2 * backlog)
    return max(eviction_grace(register_timeout, capacity, backlog), fitting)


#: Registrations whose durations (accept to WELCOME) set the grace.
RECENT = 64


#: At most this many evictions are counted ahead (the room offered to the listeners); the
#: count is taken again at every accept, so this only bounds the work of one count.
LOOKAHEAD = 64

T = TypeVar("T", bound=Hashable)


class HandshakeRoom(Generic[T]):
    """
    Connections still registering, oldest first, at most ``capacity`` of them once the
    oldest have made way.  ``mayMakeWay(connection)`` says whether one could be closed
    now (False while its password is checked).

    The grace adapts to how long registrations take: twice the 90th percentile of the last
    :data:`RECENT` ones (from accept to WELCOME), between ``grace`` and ``longest``.  When
    the room is full of clients that are only slow (a reconnect storm: a loaded server and
    loaded clients), they keep their places longer and are not made to start over; silent
    connections never register, so they cannot lengthen it but by registering slowly
    themselves, and ``longest`` still bounds a newcomer's wait.
    """

    def __init__(
        self,
        capacity: int,
        grace: float,
        mayMakeWay: Callable[[T], bool],  # noqa: N803
        longest: float | None = None,
    ) -> None:
        self.capacity = capacity
        self.shortest = grace
        self.longest = grace if longest is None else max(grace, longest)
        #: Seconds a connection keeps its place in a full room, now.
        self.grace = grace
        self._mayMakeWay = mayMakeWay
        self._recent: deque[float] = deque(maxlen=RECENT)
        #: Connection -> when it came in; dicts keep insertion order, so the oldest is first.
        self._entered: dict[T, float] = {}

    def __len__(self) -> int:
        return len(self._entered)

    def __contains__(self, connection: object) -> bool:
        return connection in self._entered

    def enter(self, connection: T, now: float) -> None:
        self._entered[connection] = now

    def leave(self, connection: T, registeredAt: float | None = None) -> None:  # noqa: N803
        """``connection`` is out: ended, or registered at ``registeredAt`` (which sets the grace)."""
        entered = self._entered.pop(connection, None)
        if entered is None or registeredAt is None:
            return
        self._recent.append(registeredAt - entered)
        ordered = sorted(self._recent)
        p90 = ordered[min(len(ordered) - 1, (len(ordered) * 9) // 10)]
        self.grace = min(self.longest, max(self.shortest, 2 * p90))

    def _candidates(self, now: float) -> list[T]:
        """The oldest connections that may make way now (at most LOOKAHEAD of them)."""
        found: list[T] = []
        for connection, entered in self._entered.items():
            if now - entered < self.grace:
                break  # everyone after it came in later still
            if self._mayMakeWay(connection):
                found.append(connection)
                if len(found) >= LOOKAHEAD:
                    break
        return found

    def room(self, now: float) -> int:
        """How many more connections may be accepted now: free places, plus those that would make way."""
        free = self.capacity - len(self._entered)
        if free > 0:
            return free
        return free + len(self._candidates(now))

    def overflow(self, now: float) -> list[T]:
        """The connections to close now so that the room holds ``capacity`` again (oldest first)."""
        over = len(self._entered) - self.capacity
        if over <= 0:
            return []
        return self._candidates(now)[:over]

    def next_way_at(self) -> float | None:
        """
        When the oldest connection that may make way will have had its grace: the time to
        look again at a full room (None: none may, e.g. all are having passwords checked).
        """
        for connection, entered in self._entered.items():
            if self._mayMakeWay(connection):
                return entered + self.grace
        return None
