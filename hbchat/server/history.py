"""
The ring of recent events that reconnecting clients are replayed from.

Events carry consecutive sequence numbers, so the ring stores only their encoded lines
and derives each one's number from its position.
"""

from __future__ import annotations

from collections import deque


class History:
    """The last ``capacity`` events (MSG, JOIN, LEFT), exactly as they were first sent."""

    __slots__ = ("_lines", "capacity", "last_seq")

    def __init__(self, capacity: int, last_seq: int = 0) -> None:
        if capacity <= 0:
            raise ValueError("history capacity must be positive")
        self.capacity = capacity
        self.last_seq = last_seq
        self._lines: deque[bytes] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def first_seq(self) -> int:
        """The number of the oldest event still held (``last_seq + 1`` when empty)."""
        return self.last_seq - len(self._lines) + 1

    def append(self, seq: int, line: bytes) -> None:
        if seq != self.last_seq + 1:
            raise ValueError(f"event {seq} does not follow event {self.last_seq}")
        self._lines.append(line)
        self.last_seq = seq

    def lines(self) -> list[bytes]:
        """Every held event, oldest first (the last one is numbered ``last_seq``)."""
        return list(self._lines)

    def since(self, seq: int) -> tuple[list[bytes], bool]:
        """
        Every held event numbered above ``seq``, oldest first, and whether that is all of them.

        ``False`` means events after ``seq`` have already fallen out of the ring.
        """
        first = self.first_seq
        if seq >= self.last_seq:
            return [], True
        if seq + 1 >= first:
            skip = seq + 1 - first
            return list(self._lines)[skip:], True
        return list(self._lines), False
