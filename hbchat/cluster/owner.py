"""What a cluster node tells the chat it serves (:class:`hbchat.cluster.chat.ClusterChat`)."""

from __future__ import annotations

from typing import Protocol


class NodeOwner(Protocol):
    """What the node tells the chat it serves."""

    def floor(self) -> int:
        """The highest seq delivered here: Redis's counter is moved above it if it is behind."""

    def joined(self, seq: int, present: list[bytes]) -> None:
        """A fresh lease: the log is at ``seq``, these nicks are present; delivery starts after it."""

    def records(self, entries: list[tuple[bytes, list[bytes]]]) -> None:
        """New log entries, in order."""

    def declaredDead(self) -> None:
        """The lease was taken: every connection must be closed (their sessions are in grace)."""

    def availability(self, up: bool) -> None:
        """The chat is served (True) or not (False: Redis is unreachable)."""
