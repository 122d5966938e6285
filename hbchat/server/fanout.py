"""
Coalescing output: the broadcasts of one reactor turn leave in one write per connection.

A broadcast is appended once to a turn-wide list, not once per member, so the cost of an
event is O(1) and the cost of a turn is one join plus one write per member, however many
events the turn produced.  When nothing else was sent in the turn, every member is handed
the same bytes object.  Direct lines (replies to one connection) keep their place among the
broadcasts, so each connection sees exactly the order in which the server produced its lines.

The class knows nothing of transports: a sink is anything with ``deliver(bytes)``, and the
end-of-turn flush is scheduled through a callable, ``clock.callLater(0, ...)`` in the server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Sink(Protocol):
    """Where a connection's output goes at the end of the turn."""

    def deliver(self, data: bytes) -> None: ...


class Fanout:
    """Queues broadcasts and direct lines for one turn and flushes them together."""

    __slots__ = ("_direct", "_events", "_late", "_members", "_schedule", "_scheduled", "deliveries")

    def __init__(self, schedule: Callable[[Callable[[], None]], object]) -> None:
        self._schedule = schedule
        self._scheduled = False
        #: Broadcasts handed to members so far, one per event per member (counted once a
        #: turn, in :meth:`flush`; what :meth:`take` hands over before a close is not counted).
        self.deliveries = 0
        self._events: list[bytes] = []
        self._members: set[Sink] = set()
        # Members that must skip the first N of this turn's events (joined, or were
        # flushed early, during the turn).
        self._late: dict[Sink, int] = {}
        # Direct lines of this turn, each with the number of broadcasts queued before it.
        self._direct: dict[Sink, list[tuple[int, bytes]]] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, sink: object) -> bool:
        return sink in self._members

    def add(self, sink: Sink) -> None:
        """Make ``sink`` receive every broadcast from now on."""
        self._members.add(sink)
        if self._events:
            self._late[sink] = len(self._events)

    def broadcast(self, data: bytes) -> None:
        """Queue ``data`` for every member."""
        self._events.append(data)
        self._wake()

    def send(self, sink: Sink, data: bytes) -> None:
        """
        Send ``data`` to ``sink`` only, after whatever it was sent before.

        With nothing queued ahead of it (no broadcast this turn, no earlier direct line for
        this sink) it is delivered at once, so a reply (a PONG, say) costs no end-of-turn
        flush; order is kept, since nothing for this sink is waiting.
        """
        queued = self._direct.get(sink)
        if queued is not None:
            queued.append((len(self._events), data))
        elif not self._events:
            sink.deliver(data)
        else:
            self._direct[sink] = [(len(self._events), data)]
            self._wake()

    def take(self, sink: Sink) -> bytes:
        """
        Remove and return everything queued for ``sink`` this turn.

        Used right before a connection is closed on purpose, so that its last line (BYE,
        or an ERR) follows everything it was due.
        """
        direct = self._direct.pop(sink, None)
        if sink in self._members:
            events = self._events
            start = self._late.get(sink, 0)
            if start < len(events):
                self._late[sink] = len(events)
            return _interleave(events, start, direct)
        if direct is None:
            return b""
        return b"".join([data for _, data in direct])

    def discard(self, sink: Sink) -> None:
        """Forget ``sink``: no more broadcasts, and its queued output is dropped."""
        self._members.discard(sink)
        self._late.pop(sink, None)
        self._direct.pop(sink, None)

    def flush(self) -> None:
        """Deliver the turn's output: one ``deliver`` call per sink with anything to receive."""
        self._scheduled = False
        events, direct, late = self._events, self._direct, self._late
        if not events and not direct:
            return
        self._events, self._direct, self._late = [], {}, {}
        if events:
            blob = b"".join(events) if len(events) > 1 else events[0]
            # Iterate over a snapshot: a delivery may end a connection (a slow consumer cut
            # at its backlog limit), which discards it from the members.
            members = list(self._members)
            self.deliveries += len(events) * len(members) - sum(late.values())
            if not direct and not late:
                for member in members:
                    member.deliver(blob)
                return
            for member in members:
                start = late.get(member, 0)
                queued = direct.pop(member, None)
                if queued is None and start == 0:
                    member.deliver(blob)
                else:
                    data = _interleave(events, start, queued)
                    if data:
                        member.deliver(data)
        for sink, queued in direct.items():
            # Not members: nothing to interleave with.
            sink.deliver(b"".join([data for _, data in queued]))

    def _wake(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._schedule(self.flush)


def _interleave(events: list[bytes], start: int, direct: list[tuple[int, bytes]] | None) -> bytes:
    """Broadcasts from ``start`` on, with each direct line placed where it was sent."""
    if direct is None:
        return b"".join(events[start:])
    pieces: list[bytes] = []
    position = start
    for index, data in direct:
        if index > position:
            pieces.extend(events[position:index])
            position = index
        pieces.append(data)
    pieces.extend(events[position:])
    return b"".join(pieces)
