"""
What a cluster node keeps of its own users: the sessions attached here (those in grace
live in Redis), and the refusal while Redis is unreachable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from hbchat import wire
from hbchat.server.interfaces import IChatMember
from hbchat.server.sessions import Session


def err_unavailable(verb: bytes) -> bytes:
    """``ERR 503 cluster unavailable: <VERB> not handled``."""
    return wire.err(503, f"cluster unavailable: {verb.decode()} not handled")


class LocalSessions:
    """The sessions attached here, as operations count them (those in grace live in Redis)."""

    def __init__(self) -> None:
        self.attached: dict[IChatMember, Session[IChatMember]] = {}
        #: Sessions ended early for --max-grace: none here (Redis expires them after --grace).
        self.evicted: Counter[str] = Counter()

    def __iter__(self) -> Iterator[Session[IChatMember]]:
        return iter(list(self.attached.values()))

    def __len__(self) -> int:
        return len(self.attached)
