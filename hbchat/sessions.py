"""
Sessions: who holds which nick, by which token, and for how long after their connection drops.

A session outlives its connection by a grace period when the connection ended by accident
(timeout, error, slow consumer), so that the client can RESUME it and its nick stays
reserved meanwhile.  A session that ended on purpose (QUIT, kicked) dies at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hbchat import wire

#: Ways a connection can end that leave its session resumable.
RESUMABLE_ENDINGS = frozenset({"timeout", "error", "slow"})

Connection = TypeVar("Connection")


class Session(Generic[Connection]):
    """One user's identity on the server, attached to a connection or waiting in grace."""

    __slots__ = ("_expiry", "connection", "nick", "token")

    def __init__(self, nick: bytes, token: bytes, connection: Connection) -> None:
        self.nick = nick
        self.token = token
        self.connection: Connection | None = connection
        self._expiry: IDelayedCall | None = None


class SessionTable(Generic[Connection]):
    """Sessions by nick (regardless of case) and by token, with grace-period expiry."""

    def __init__(self, clock: IReactorTime, grace: float, expired: Callable[[Session[Connection]], None]) -> None:
        self.clock = clock
        self.grace = grace
        self._expired = expired
        self._byNick: dict[bytes, Session[Connection]] = {}
        self._byToken: dict[bytes, Session[Connection]] = {}

    def __len__(self) -> int:
        return len(self._byNick)

    def __iter__(self) -> Iterator[Session[Connection]]:
        return iter(self._byNick.values())

    def nickTaken(self, nick: bytes) -> bool:
        """Held by a connected user or reserved for one in grace."""
        return wire.nick_key(nick) in self._byNick

    def byNick(self, nick: bytes) -> Session[Connection] | None:
        return self._byNick.get(wire.nick_key(nick))

    def byToken(self, token: bytes) -> Session[Connection] | None:
        return self._byToken.get(token)

    def open(self, nick: bytes, connection: Connection) -> Session[Connection]:
        """A new session for a nick that is not taken."""
        token = wire.new_session_token().encode("ascii")
        session = Session(nick, token, connection)
        self._byNick[wire.nick_key(nick)] = session
        self._byToken[token] = session
        return session

    def attach(self, session: Session[Connection], connection: Connection) -> None:
        """Give a session a (new) connection, ending its grace period if it was in one."""
        if session._expiry is not None:
            if session._expiry.active():
                session._expiry.cancel()
            session._expiry = None
        session.connection = connection

    def detach(self, session: Session[Connection], ending: str) -> None:
        """The session's connection is gone: keep the session in grace, or end it."""
        session.connection = None
        if ending in RESUMABLE_ENDINGS:
            session._expiry = self.clock.callLater(self.grace, self._expire, session)
        else:
            self.close(session)

    def close(self, session: Session[Connection]) -> None:
        """End a session now: its token dies and its nick is free."""
        if session._expiry is not None and session._expiry.active():
            session._expiry.cancel()
        session._expiry = None
        key = wire.nick_key(session.nick)
        if self._byNick.get(key) is session:
            del self._byNick[key]
        if self._byToken.get(session.token) is session:
            del self._byToken[session.token]

    def closeAll(self) -> None:
        """End every session (the server is stopping): no grace timer outlives it."""
        for session in list(self._byNick.values()):
            self.close(session)

    def _expire(self, session: Session[Connection]) -> None:
        session._expiry = None
        self.close(session)
        self._expired(session)
