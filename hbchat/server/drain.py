"""
The end of the chat: a lame-duck drain that says ``BYE shutdown`` in batches, and the
close at once of a second signal.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from typing import Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hbchat import wire
from hbchat.closereasons import CloseReason
from hbchat.lognames import NamedLogger
from hbchat.server.comeback import comeback_delay
from hbchat.server.interfaces import IChat

#: Seconds between two batches of BYEs while draining.
DRAIN_STEP = 0.1


class Closable(Protocol):
    """A connection as the drain sees it."""

    def closeWith(self, line: bytes, reason: CloseReason) -> None: ...  # noqa: N802 (the connection's Twisted-style name)

    def closeNow(self, line: bytes) -> None: ...  # noqa: N802 (the connection's Twisted-style name)


class Drain:
    """Closes every connection of ``connections`` (the live set, which shrinks as they go)."""

    # Its log lines were the factory's, and keep their namespace.
    log = NamedLogger("hbchat.server.ChatFactory")

    def __init__(
        self, chat: IChat, connections: Collection[Closable], clock: IReactorTime, retry_hint: Callable[[], float]
    ) -> None:
        self.chat = chat
        self.connections = connections
        self.clock = clock
        #: The configured --retry-hint, read when the drain begins.
        self.retryHint = retry_hint
        self._draining: list[Closable] = []
        #: Connections told BYE shutdown, when the stop began, the drain (hbchat.server.comeback).
        self._comeback = (0, 0.0, 0.0)
        #: Where each connection's moment to come back is drawn from.
        self.rng = random.Random()
        self._drainCall: IDelayedCall | None = None
        self._whenAllClosed: list[Deferred[None]] = []

    def shutdown(self, drain: float = 0.0) -> Deferred[None]:
        """
        Lame duck: say ``BYE shutdown retry=<hint>`` to every connection, in batches spread
        over ``drain`` seconds, and close each; fires once all are gone.

        Until its batch comes, a connection is served as usual (but nobody is told of the
        departures).  Calling it again while it is under way returns another Deferred for
        the same end.
        """
        if not self.chat.stopping:
            self.chat.stopping = True
            self._draining = list(self.connections)
            self._comeback = (len(self._draining), self.clock.seconds(), drain)
            batches = max(1, round(drain / DRAIN_STEP))
            size = max(1, -(-len(self._draining) // batches))
            self.log.info("draining {count} connections over {drain}s", count=len(self._draining), drain=drain)
            self._drain_batch(size, drain / batches)
        if not self.connections:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._whenAllClosed.append(waiting)
        return waiting

    def connection_gone(self) -> None:
        """A connection ended: the drain may be over."""
        if self._drainCall is not None and not self.connections:
            # Everyone left before their batch came (closed to make way, say): drain no more.
            self._drainCall.cancel()
            self._drain_batch(max(1, len(self._draining)), 0.0)
        if self._whenAllClosed and not self.connections:
            waiting, self._whenAllClosed = self._whenAllClosed, []
            for deferred in waiting:
                deferred.callback(None)

    def _drain_batch(self, size: int, step: float) -> None:
        self._drainCall = None
        batch, self._draining = self._draining[:size], self._draining[size:]
        count, stopped_at, drain = self._comeback
        hint = self.retryHint()
        first, sent_at = count - len(self._draining) - len(batch), self.clock.seconds() - stopped_at
        for offset, connection in enumerate(batch):
            # Each its own moment to come back, so that the returns are evenly spread.
            at = comeback_delay(first + offset, count, sent_at, drain, hint, self.rng.random())
            connection.closeWith(wire.bye("shutdown", retry=hint, at=at), CloseReason.SHUTDOWN)
        if self._draining:
            self._drainCall = self.clock.callLater(step, self._drain_batch, size, step)
        else:
            self.chat.closeSessions()
            self.log.info("said BYE shutdown to every connection")

    def close_now(self) -> None:
        """Stop draining: every connection still open is closed at once (a second signal)."""
        if self._drainCall is not None and self._drainCall.active():
            self._drainCall.cancel()
        self._drainCall = None
        self._draining = []
        self.chat.stopping = True
        line = wire.bye("shutdown", retry=self.retryHint())
        count = len(self.connections)
        for connection in list(self.connections):
            connection.closeNow(line)
        self.chat.closeSessions()
        self.log.info("closed {count} connections at once", count=count)
