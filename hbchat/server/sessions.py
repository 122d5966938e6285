"""
Sessions: who holds which nick, by which token, and for how long after their connection drops.

A session outlives its connection by a grace period when the connection ended by accident
(timeout, error, slow consumer), so that the client can RESUME it and its nick stays
reserved meanwhile.  A session that ended on purpose (QUIT, kicked) dies at once.

Sessions in grace are bounded, in all (``--max-grace``) and per address
(``--max-grace-per-ip``; loopback and UNIX sockets are exempt, as from ``--max-per-ip``):
when a bound is reached, the oldest session in grace (of that address, or in all) ends early,
as if its grace had run out, so that new users are never refused for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hbchat import wire
from hbchat.closereasons import RESUMABLE_ENDINGS as _RESUMABLE_ENDINGS
from hbchat.lognames import NamedLogger

#: Ways a connection can end (the LEFT words) that leave its session resumable.
RESUMABLE_ENDINGS = _RESUMABLE_ENDINGS

Connection = TypeVar("Connection")


class Session(Generic[Connection]):
    """One user's identity on the server, attached to a connection or waiting in grace."""

    __slots__ = ("_expiry", "connection", "host", "nick", "token")

    def __init__(self, nick: bytes, token: bytes, connection: Connection | None) -> None:
        self.nick = nick
        self.token = token
        self.connection: Connection | None = connection
        self._expiry: IDelayedCall | None = None
        #: While in grace: the address it counts against for --max-grace-per-ip (None: exempt).
        self.host: str | None = None


class SessionTable(Generic[Connection]):
    """Sessions by nick (regardless of case) and by token, with grace-period expiry."""

    log = NamedLogger("hbchat.sessions.SessionTable")

    def __init__(
        self,
        clock: IReactorTime,
        grace: float,
        expired: Callable[[Session[Connection]], None],
        max_grace: int = 10000,
        max_grace_per_host: int = 50,
    ) -> None:
        self.clock = clock
        self.grace = grace
        self._expired = expired
        self.maxGrace = max_grace
        self.maxGracePerHost = max_grace_per_host
        self._byNick: dict[bytes, Session[Connection]] = {}
        self._byToken: dict[bytes, Session[Connection]] = {}
        #: Sessions in grace, oldest first; and those of each (non-exempt) address.
        self._inGrace: dict[Session[Connection], None] = {}
        self._graceByHost: dict[str, dict[Session[Connection], None]] = {}
        #: Sessions ended early because a bound was reached, by bound.
        self.evicted: Counter[str] = Counter()

    @property
    def in_grace(self) -> int:
        return len(self._inGrace)

    def __len__(self) -> int:
        return len(self._byNick)

    def __iter__(self) -> Iterator[Session[Connection]]:
        return iter(self._byNick.values())

    def nick_taken(self, nick: bytes) -> bool:
        """Held by a connected user or reserved for one in grace."""
        return wire.nick_key(nick) in self._byNick

    def by_nick(self, nick: bytes) -> Session[Connection] | None:
        return self._byNick.get(wire.nick_key(nick))

    def by_token(self, token: bytes) -> Session[Connection] | None:
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
        self._leave_grace(session)
        session.connection = connection

    def detach(self, session: Session[Connection], ending: str, host: str | None = None) -> None:
        """
        The session's connection (from ``host``; None: exempt from --max-grace-per-ip) is
        gone: keep the session in grace, or end it.
        """
        session.connection = None
        if ending not in RESUMABLE_ENDINGS:
            self.close(session)
            return
        self._enter_grace(session, host, self.grace)

    def _enter_grace(self, session: Session[Connection], host: str | None, seconds: float) -> None:
        """Keep a session without a connection for ``seconds``, within --max-grace and --max-grace-per-ip."""
        if host is not None:
            of_host = self._graceByHost.get(host)
            if of_host is not None and len(of_host) >= self.maxGracePerHost:
                self._evict(next(iter(of_host)), "max_grace_per_ip")
        if len(self._inGrace) >= self.maxGrace:
            self._evict(next(iter(self._inGrace)), "max_grace")
        session.host = host
        self._inGrace[session] = None
        if host is not None:
            self._graceByHost.setdefault(host, {})[session] = None
        session._expiry = self.clock.callLater(seconds, self._expire, session)

    def remaining(self, session: Session[Connection]) -> float:
        """
        Seconds of grace the session has left: all of ``--grace`` while it has a
        connection, or lost it to the server's stop (which keeps no grace timer).
        """
        expiry = session._expiry
        if expiry is None or not expiry.active():
            return self.grace
        return max(0.0, expiry.getTime() - self.clock.seconds())

    def restore(self, nick: bytes, token: bytes, seconds: float, host: str | None = None) -> Session[Connection] | None:
        """
        A session saved by an earlier run (``--state``), resumable by its token for ``seconds``
        more; ``None`` if its nick or token is taken already or its grace is over.
        """
        if seconds <= 0 or self.nick_taken(nick) or token in self._byToken:
            return None
        session: Session[Connection] = Session(nick, token, None)
        self._byNick[wire.nick_key(nick)] = session
        self._byToken[token] = session
        self._enter_grace(session, host, seconds)
        return session

    def _leave_grace(self, session: Session[Connection]) -> None:
        if session not in self._inGrace:
            return
        del self._inGrace[session]
        if session.host is not None:
            of_host = self._graceByHost[session.host]
            del of_host[session]
            if not of_host:
                del self._graceByHost[session.host]
            session.host = None

    def _evict(self, session: Session[Connection], bound: str) -> None:
        self.evicted[bound] += 1
        self.log.info(
            "session of {nick} ended before its grace ran out: {bound} sessions were in grace",
            nick=session.nick.decode(),
            bound=f"--{bound.replace('_', '-')}",
        )
        if session._expiry is not None and session._expiry.active():
            session._expiry.cancel()
        self._expire(session)

    def close(self, session: Session[Connection]) -> None:
        """End a session now: its token dies and its nick is free."""
        if session._expiry is not None and session._expiry.active():
            session._expiry.cancel()
        session._expiry = None
        self._leave_grace(session)
        key = wire.nick_key(session.nick)
        if self._byNick.get(key) is session:
            del self._byNick[key]
        if self._byToken.get(session.token) is session:
            del self._byToken[session.token]

    def close_all(self) -> None:
        """End every session (the server is stopping): no grace timer outlives it."""
        for session in list(self._byNick.values()):
            self.close(session)

    def _expire(self, session: Session[Connection]) -> None:
        session._expiry = None
        self.close(session)
        self._expired(session)
