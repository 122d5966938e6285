"""
Who gets in: --max-clients, --max-per-ip and --max-handshakes.

The room of connections not yet registered is :class:`~hbchat.server.handshakes.HandshakeRoom`;
this object counts connections in and out, refuses the ones over a bound, makes the oldest
registering connection make way for a newcomer, and tells the listeners (its gates) how
many more they may accept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hbchat import wire
from hbchat.closereasons import CloseReason
from hbchat.config import ServerConfig
from hbchat.lognames import NamedLogger
from hbchat.server.handshakes import HandshakeRoom, eviction_grace, longest_grace
from hbchat.server.interfaces import IServerEvents

#: Seconds between two log lines about accepting paused by --max-handshakes (a storm
#: may pause and resume it many times a second), or about evictions.
PAUSE_LOG_INTERVAL = 10.0


class Gate(Protocol):
    """Something that lets connections in: a listener (hbchat.server.listeners.Listener)."""

    def acceptAtMost(self, count: int) -> None: ...  # noqa: N802 (the connection's Twisted-style name)


class Admitted(Protocol):
    """A connection as admission sees it."""

    host: str | None

    def mayMakeWay(self) -> bool: ...  # noqa: N802 (the connection's Twisted-style name)

    def closeWith(self, line: bytes, reason: CloseReason) -> None: ...  # noqa: N802 (the connection's Twisted-style name)

    def __hash__(self) -> int: ...


A = TypeVar("A", bound=Admitted)


class Admission(Generic[A]):
    """The connections admitted, by address, and the ones still registering."""

    # Its log lines were the factory's, and keep their namespace.
    log = NamedLogger("hbchat.server.ChatFactory")

    def __init__(
        self, config: ServerConfig, clock: IReactorTime, events: IServerEvents, stopping: Callable[[], bool]
    ) -> None:
        self.config = config
        self.clock = clock
        self.events = events
        self._stopping = stopping
        self.connections: set[A] = set()
        self._perHost: dict[str, int] = {}
        #: Connections admitted and not yet registered (TLS handshake, NICK, password check),
        #: oldest first; when full, the oldest make way for newcomers (hbchat.server.handshakes).
        self.handshakes: HandshakeRoom[A] = HandshakeRoom(
            config.max_handshakes,
            eviction_grace(config.register_timeout, config.max_handshakes),
            lambda connection: connection.mayMakeWay(),
            longest_grace(config.register_timeout, config.max_handshakes),
        )
        #: When accepting is paused, the moment the oldest may make way (and accepting resumes).
        self.makeWayCall: IDelayedCall | None = None
        self.evictions = 0
        self.acceptPauses = 0
        self._evictionLoggedAt = -PAUSE_LOG_INTERVAL
        #: What stops and restarts accepting (the listeners); paused at --max-handshakes.
        self.gates: list[Gate] = []
        self.acceptPaused = False
        self._pauseLoggedAt = -PAUSE_LOG_INTERVAL

    def __len__(self) -> int:
        return len(self.connections)

    @property
    def handshaking(self) -> int:
        """Connections admitted and not yet registered."""
        return len(self.handshakes)

    def admit(self, connection: A, host: str | None) -> bytes | None:
        """
        Count a new connection in; or the ERR line that refuses it (server full or
        stopping, or too many connections from its address).
        """
        if self._stopping() or len(self.connections) >= self.config.max_clients:
            return wire.ERR_SERVER_FULL
        if host is not None:
            count = self._perHost.get(host, 0)
            if count >= self.config.max_per_ip:
                return wire.ERR_TOO_MANY_FROM_ADDRESS
            self._perHost[host] = count + 1
            connection.host = host
        self.connections.add(connection)
        now = self.clock.seconds()
        self.handshakes.enter(connection, now)
        for oldest in self.handshakes.overflow(now):
            self._make_way(oldest)
        self.open_gates()
        return None

    def release(self, connection: A) -> bool:
        """``connection`` is gone: count it out; False if it had not been admitted."""
        if connection not in self.connections:
            return False
        self.connections.discard(connection)
        host = connection.host
        if host is not None:
            remaining = self._perHost[host] - 1
            if remaining:
                self._perHost[host] = remaining
            else:
                del self._perHost[host]
        return True

    def handshake_over(self, connection: A, registered: bool) -> None:
        """``connection`` registered (or ended): one handshake fewer under way."""
        self.handshakes.leave(connection, self.clock.seconds() if registered else None)
        self.open_gates()

    def room(self) -> int:
        """
        How many more connections may be accepted now: free places under --max-handshakes,
        plus the oldest connections that would make way for them (hbchat.server.handshakes).
        """
        return self.handshakes.room(self.clock.seconds())

    def stop(self) -> None:
        """No more waiting for the oldest to make way (the listeners are stopping)."""
        self._cancel_make_way()

    def _make_way(self, connection: A) -> None:
        """--max-handshakes is full and a newcomer got in: the oldest still registering leaves."""
        self.evictions += 1
        self.events.handshakeEvicted()
        now = self.clock.seconds()
        if now - self._evictionLoggedAt >= PAUSE_LOG_INTERVAL:
            self._evictionLoggedAt = now
            self.log.info(
                "--max-handshakes full: closing the oldest connections still registering to admit newcomers "
                "({count} so far)",
                count=self.evictions,
            )
        connection.closeWith(wire.ERR_TOO_MANY_REGISTERING, CloseReason.EVICTED)

    def _cancel_make_way(self) -> None:
        call, self.makeWayCall = self.makeWayCall, None
        if call is not None and call.active():
            call.cancel()

    def _made_way(self) -> None:
        self.makeWayCall = None
        self.open_gates()

    def open_gates(self) -> None:
        """
        Let the listeners accept only as many connections as --max-handshakes has room
        for; with no room, the next ones wait in the listen queue, where they cost nothing
        and their registration deadline has not started, until one of these registers or ends.
        """
        room = self.room()
        for gate in self.gates:
            gate.acceptAtMost(room)
        if room > 0:
            self._cancel_make_way()
            self.acceptPaused = False
            return
        way_at = self.handshakes.next_way_at()
        if way_at is not None and self.makeWayCall is None and not self._stopping():
            self.makeWayCall = self.clock.callLater(max(0.0, way_at - self.clock.seconds()), self._made_way)
        if self.acceptPaused:
            return
        self.acceptPaused = True
        self.acceptPauses += 1
        self.events.acceptingPaused()
        now = self.clock.seconds()
        if now - self._pauseLoggedAt >= PAUSE_LOG_INTERVAL:
            self._pauseLoggedAt = now
            self.log.info(
                "{count} connections are registering (--max-handshakes): new ones wait in the listen queue "
                "(accepting paused {times} times so far)",
                count=self.handshaking,
                times=self.acceptPauses,
            )
