"""
The chat itself, in memory: the sequence of events and their history, the sessions and
the nicks they hold, who is present (WHO), and the fan-out that delivers each event.

Connections talk to it through :class:`~hbchat.server.interfaces.IChat` and it talks
back to them through :class:`~hbchat.server.interfaces.IChatMember`; it knows nothing of
transports, listeners, admission or the drain.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from hbchat import wire
from hbchat.closereasons import CloseReason
from hbchat.config import ServerConfig
from hbchat.lognames import NamedLogger
from hbchat.server.fanout import Fanout
from hbchat.server.history import History
from hbchat.server.interfaces import IChat, IChatMember, IServerEvents
from hbchat.server.sessions import Session, SessionTable
from hbchat.server.statefile import ChatState, SessionRecord


@implementer(IChat)
class Chat:
    """The in-memory chat: every answer that may come later (a Deferred) has already come."""

    # Its log lines were the factory's, and keep their namespace.
    log = NamedLogger("hbchat.server.ChatFactory")

    def __init__(
        self, config: ServerConfig, clock: IReactorTime, events: IServerEvents, turn_ended: Callable[[], None]
    ) -> None:
        #: Called after each turn's output went out (the backpressure's bookkeeping).
        self._turnEnded = turn_ended
        self.events = events
        self.sessions: SessionTable[IChatMember] = SessionTable(
            clock, config.grace, self._sessionExpired, config.max_grace, config.max_grace_per_ip
        )
        self.seq = 0
        self.history = History(config.history)
        self.fanout = Fanout(lambda flush: clock.callLater(0, self._endTurn))
        self.stopping = False
        self._usersLine: bytes | None = None
        self._usersCount = -1
        self._usersSeq = -1
        #: Called once the drain is over, just before every session ends (``--state`` saves the chat then).
        self.beforeClose: list[Callable[[], None]] = []

    def register(self, member: IChatMember, nick: bytes) -> Deferred[bool]:
        if self.sessions.nick_taken(nick):
            return succeed(False)
        session = self.sessions.open(nick, member)
        member.attached(session)
        self.send(member, wire.welcome(nick, session.token, self.seq))
        self.fanout.add(member)
        self._publish(wire.join(self.seq + 1, nick))
        self.log.info("{nick} registered from {peer}", nick=nick.decode(), peer=member.peer)
        return succeed(True)

    def resume(self, member: IChatMember, token: bytes, last_seq: int) -> Deferred[bool]:
        """
        A session still attached to a connection (the client noticed the break before we
        did) is taken over quietly: the old connection gets ``BYE replaced`` and nobody is
        told anything left or joined.
        """
        session = self.sessions.by_token(token)
        if session is None:
            self.events.resumed("unknown")
            return succeed(False)
        previous = session.connection
        if previous is not None:
            previous.session = None
            previous.closeWith(wire.bye("replaced"), CloseReason.REPLACED)
        self.sessions.attach(session, member)
        member.attached(session)
        events, complete = self.history.since(last_seq)
        self.send(member, wire.welcome(session.nick, session.token, self.seq))
        for line in events:
            self.send(member, line)
        self.send(member, wire.resumed(len(events), complete))
        self.fanout.add(member)
        self.events.resumed("complete" if complete else "partial")
        if previous is None:
            self._publish(wire.join(self.seq + 1, session.nick))
        self.log.info(
            "{nick} resumed from {peer}: {count} events replayed, {outcome}",
            nick=session.nick.decode(),
            peer=member.peer,
            count=len(events),
            outcome="complete" if complete else "partial",
        )
        return succeed(True)

    def say(self, member: IChatMember, text: bytes) -> Deferred[int]:
        nick = member.nick
        assert nick is not None
        self._publish(wire.msg(self.seq + 1, nick, text))
        return succeed(self.seq)

    def tell(self, member: IChatMember, nick: bytes, text: bytes) -> bool:
        session = self.sessions.by_nick(nick)
        if session is None or session.connection is None:
            return False
        assert member.nick is not None
        self.send(session.connection, wire.priv(member.nick, text))
        return True

    def who(self) -> bytes:
        """
        Connected users only: a session in grace is not listed.

        The line is built once per change of membership, so that WHOs answered in a burst
        share one bytes object instead of each holding a copy of the user list.
        """
        if self._usersLine is None or self._usersCount != len(self.fanout) or self._usersSeq != self.seq:
            self._usersLine = wire.users(session.nick for session in self.sessions if session.connection is not None)
            self._usersCount, self._usersSeq = len(self.fanout), self.seq
        return self._usersLine

    def send(self, member: IChatMember, line: bytes) -> None:
        self.fanout.send(member, line)

    def take(self, member: IChatMember) -> bytes:
        return self.fanout.take(member)

    def leave(self, member: IChatMember, reason: CloseReason) -> None:
        self.fanout.discard(member)
        session: Session[IChatMember] | None = member.session
        if session is None:
            return
        member.session = None
        member.nick = None
        if session.connection is not member:
            return
        if self.stopping:
            session.connection = None
            return
        self._publish(wire.left(self.seq + 1, session.nick, reason.left))
        self.sessions.detach(session, reason.left, member.host)

    def closeSessions(self) -> None:
        hooks, self.beforeClose = self.beforeClose, []
        for hook in hooks:
            hook()
        self.sessions.close_all()

    def exportState(self, wall_now: float) -> ChatState:
        """
        The chat as ``--state`` saves it, ``wall_now`` being the wall-clock time: every
        session's grace is counted from now (all of ``--grace`` for one still connected).
        """
        records = tuple(
            SessionRecord(session.nick, session.token, wall_now + self.sessions.remaining(session), session.host)
            for session in self.sessions
        )
        return ChatState(self.seq, tuple(self.history.lines()), records, wall_now)

    def restoreState(self, state: ChatState, wall_now: float) -> int:
        """
        Continue a chat saved by an earlier run, before anyone connected: its seq, its
        history (the last ``--history`` events of it) and its sessions whose grace is not over
        at ``wall_now``; the number of sessions restored.
        """
        if self.seq or len(self.sessions):
            raise ValueError("a chat is restored before it has begun")
        self.seq = state.seq
        self.history = History(self.history.capacity, state.seq - len(state.history))
        for line in state.history:
            self.history.append(self.history.last_seq + 1, line)
        assert self.history.last_seq == self.seq
        restored = 0
        for record in state.sessions:
            seconds = min(record.expires - wall_now, self.sessions.grace)
            if self.sessions.restore(record.nick, record.token, seconds, record.host) is not None:
                restored += 1
        return restored

    def _sessionExpired(self, session: Session[IChatMember]) -> None:
        self.log.info("session of {nick} expired unresumed", nick=session.nick.decode())

    def _endTurn(self) -> None:
        """All output of this reactor turn goes out now, one write per connection."""
        self.fanout.flush()
        self._turnEnded()

    def _publish(self, line: bytes) -> None:
        """Give ``line`` (built with ``self.seq + 1``) its number, keep it, and broadcast it."""
        self.seq += 1
        self.history.append(self.seq, line)
        self.fanout.broadcast(line)
