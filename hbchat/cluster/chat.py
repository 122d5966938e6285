"""
The chat of a cluster node (``--redis``): :class:`~hbchat.server.interfaces.IChat` with its
seq, history, sessions, nicks and presence kept in Redis (:mod:`hbchat.cluster.node`,
:file:`library.lua`), and its events delivered in the log's order to the connections here.

Every NICK, RESUME, SAY, TELL and departure of one reactor turn goes to Redis in one batch;
what a connection sees comes back through the log, the same for every node.  A connection
whose NICK or RESUME was answered at seq ``S`` waits (outside the fan-out) until this node
has delivered ``S``, then gets what was delivered since from the local ring: no event twice,
none missing.  While Redis is unreachable, NICK, RESUME, SAY and TELL are answered
``ERR 503 cluster unavailable: <VERB> not handled``; heartbeats never touch Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from hbchat import wire
from hbchat.closereasons import CloseReason
from hbchat.cluster.batch import ClusterUnavailableError
from hbchat.cluster.keys import BadRecordError, Control, Event, Keys, decode, events_in, replay
from hbchat.cluster.local import LocalSessions, err_unavailable
from hbchat.cluster.metrics import ClusterCollector
from hbchat.cluster.node import ClusterNode
from hbchat.cluster.url import RedisURL
from hbchat.config import ServerConfig
from hbchat.lognames import NamedLogger
from hbchat.server.fanout import Fanout
from hbchat.server.history import History
from hbchat.server.interfaces import IChat, IChatMember, IServerEvents
from hbchat.server.sessions import Session


@implementer(IChat)
class ClusterChat:
    """One node's share of a chat kept in Redis."""

    log = NamedLogger("hbchat.cluster.chat")

    def __init__(
        self,
        config: ServerConfig,
        clock: IReactorTime,
        events: IServerEvents,
        turn_ended: Callable[[], None],
        url: RedisURL,
        cluster_name: str,
        node_name: str,
        node_timeout: float,
    ) -> None:
        self.config = config
        self.clock = clock
        self.events = events
        self._turnEnded = turn_ended
        self.graceMs = int(config.grace * 1000)
        self.node = ClusterNode(
            url, Keys(cluster_name), node_name, node_timeout, config.history, clock, self, max_grace=config.max_grace
        )
        self.nodeName = node_name
        #: The latest event delivered here.
        self.seq = 0
        self.history = History(config.history)
        self.fanout = Fanout(lambda flush: clock.callLater(0, self._endTurn))
        self.sessions = LocalSessions()
        self.stopping = False
        #: Nick key -> nick of every user attached on any node (WHO), as of the log delivered here.
        self.present: dict[bytes, bytes] = {}
        self._attachments: dict[IChatMember, bytes] = {}
        self._byAttachment: dict[bytes, IChatMember] = {}
        self._attachmentCount = 0
        #: NICK or RESUME sent, answer not in: the close reason if the member left meanwhile.
        self._answering: dict[IChatMember, CloseReason | None] = {}
        #: Answered at seq S: joins the fan-out once this node has delivered S.
        self._waiting: dict[IChatMember, int] = {}
        #: Departures not yet told to Redis (it was unreachable): sent when it is back.
        self._unsentLeaves: list[list[bytes | int]] = []
        self._usersLine: bytes | None = None
        #: Times events were gone from the log before this node read them.
        self.gaps = 0
        #: For /metrics (hbchat.ops.metrics registers it).
        self.collector = ClusterCollector(self)

    @property
    def available(self) -> bool:
        """Redis is reachable and our lease is ours: the chat is served."""
        return self.node.up

    def start(self) -> None:
        self.node.start()

    def stop(self) -> Deferred[Any]:
        result: Deferred[Any] = self.node.stop()
        return result

    # --- IChat ---

    def register(self, member: IChatMember, nick: bytes) -> Deferred[bool]:
        if not self.node.up:
            self.send(member, err_unavailable(b"NICK"))
            return succeed(True)
        token = wire.new_session_token().encode("ascii")
        attachment = self._newAttachment()
        answer: Deferred[bool] = Deferred()
        self._answering[member] = None
        op: list[bytes | int] = [b"N", nick, wire.nick_key(nick), token, attachment, self.graceMs]
        asked = self.node.submit(op)
        asked.addCallbacks(
            self._registered,
            self._notAnswered,
            callbackArgs=(member, nick, token, attachment, answer),
            errbackArgs=(member, b"NICK", token, attachment, answer),
        )
        return answer

    def _registered(
        self, joined: int, member: IChatMember, nick: bytes, token: bytes, attachment: bytes, answer: Deferred[bool]
    ) -> None:
        left = self._answering.pop(member, None)
        if not joined:
            answer.callback(False)
            return
        session = Session(nick, token, member)
        if left is not None:
            self._leaveRedis(token, attachment, left)
            answer.callback(True)
            return
        self._attach(member, session, attachment)
        self.send(member, wire.welcome(nick, token, joined - 1))
        self._admitAfter(member, joined - 1)
        self.log.info("{nick} registered from {peer}", nick=nick.decode(), peer=member.peer)
        answer.callback(True)

    def resume(self, member: IChatMember, token: bytes, last_seq: int) -> Deferred[bool]:
        if not self.node.up:
            self.send(member, err_unavailable(b"RESUME"))
            return succeed(True)
        attachment = self._newAttachment()
        answer: Deferred[bool] = Deferred()
        self._answering[member] = None
        asked = self.node.submit([b"R", token, attachment, last_seq])
        asked.addCallbacks(
            self._resumed,
            self._notAnswered,
            callbackArgs=(member, token, attachment, last_seq, answer),
            errbackArgs=(member, b"RESUME", token, attachment, answer),
        )
        return answer

    def _resumed(
        self, reply: list[Any], member: IChatMember, token: bytes, attachment: bytes, last: int, answer: Deferred[bool]
    ) -> None:
        left = self._answering.pop(member, None)
        if reply[0] != 1:
            self.events.resumed("unknown")
            answer.callback(False)
            return
        _, nick, upto, previous_attachment, entries = reply
        upto = int(upto)
        previous = self._byAttachment.get(previous_attachment) if previous_attachment else None
        if previous is not None:
            self._detachLocal(previous)
            previous.session = None
            previous.closeWith(wire.bye("replaced"), CloseReason.REPLACED)
        session = Session(nick, token, member)
        if left is not None:
            self._leaveRedis(token, attachment, left)
            answer.callback(True)
            return
        self._attach(member, session, attachment)
        lines, complete = replay(events_in(entries), last, upto)
        self.send(member, wire.welcome(nick, token, upto))
        for line in lines:
            self.send(member, line)
        self.send(member, wire.resumed(len(lines), complete))
        self.events.resumed("complete" if complete else "partial")
        self._admitAfter(member, upto)
        self.log.info(
            "{nick} resumed from {peer}: {count} events replayed, {outcome}",
            nick=nick.decode(),
            peer=member.peer,
            count=len(lines),
            outcome="complete" if complete else "partial",
        )
        answer.callback(True)

    def _notAnswered(
        self,
        failure: Failure,
        member: IChatMember,
        verb: bytes,
        token: bytes,
        attachment: bytes,
        answer: Deferred[bool],
    ) -> None:
        """Redis went away with the question out: it may have been done, so it is undone when Redis is back."""
        failure.trap(ClusterUnavailableError)
        self._answering.pop(member, None)
        self._leaveRedis(token, attachment, CloseReason.ERROR)
        self.send(member, err_unavailable(verb))
        answer.callback(True)

    def say(self, member: IChatMember, text: bytes) -> Deferred[int]:
        session = member.session
        attachment = self._attachments.get(member)
        if not self.node.up or session is None or attachment is None:
            self.send(member, err_unavailable(b"SAY"))
            return succeed(0)
        if self.node.batch.full:
            # Redis is behind this node's input: refuse, as a rate limit would (the client
            # slows down and sends the line again), rather than queue without bound.
            self.send(member, wire.err_rate_limited(b"SAY"))
            return succeed(0)
        said = self.node.submit([b"M", session.token, attachment, text])
        # Not sent: ERR 503.  Sent and the answer lost: the echo comes (or not) with the log.
        said.addErrback(self._sayFailed, member)
        return said

    def _sayFailed(self, failure: Failure, member: IChatMember) -> int:
        failure.trap(ClusterUnavailableError)
        return 0

    def tell(self, member: IChatMember, nick: bytes, text: bytes) -> bool:
        """True when handled: sent towards ``nick`` (present on some node), or answered ERR 503."""
        if not self.node.up:
            self.send(member, err_unavailable(b"TELL"))
            return True
        key = wire.nick_key(nick)
        if key not in self.present or member.nick is None:
            return False
        self.node.submit([b"T", member.nick, key, text]).addErrback(lambda failure: None)
        return True

    def who(self) -> bytes:
        if self._usersLine is None:
            self._usersLine = wire.users(self.present.values())
        return self._usersLine

    def send(self, member: IChatMember, line: bytes) -> None:
        self.fanout.send(member, line)

    def take(self, member: IChatMember) -> bytes:
        return self.fanout.take(member)

    def leave(self, member: IChatMember, reason: CloseReason) -> None:
        self.fanout.discard(member)
        self._waiting.pop(member, None)
        if member in self._answering:
            self._answering[member] = reason
        session = member.session
        attachment = self._detachLocal(member)
        if session is None:
            return
        member.session = None
        member.nick = None
        if session.connection is not member or attachment is None:
            return
        self._leaveRedis(session.token, attachment, reason)

    def closeSessions(self) -> None:
        """Nothing here: the sessions live in Redis, resumable on any node for --grace."""

    # --- what the node tells ---

    def floor(self) -> int:
        return self.seq

    def joined(self, seq: int, present: list[bytes]) -> None:
        """A fresh lease: this node starts delivering after ``seq``."""
        if seq != self.seq:
            self.history = History(self.config.history, seq)
        self.seq = seq
        self.present = {wire.nick_key(nick): nick for nick in present}
        self._usersLine = None

    def records(self, entries: list[tuple[bytes, list[bytes]]]) -> None:
        for entry_id, fields in entries:
            try:
                record = decode(entry_id, fields)
            except BadRecordError as error:
                self.log.warn("skipping a log entry this node does not understand: {error}", error=error)
                continue
            if isinstance(record, Event):
                self._deliver(record)
            else:
                self._control(record)
        if self._waiting:
            for member, upto in list(self._waiting.items()):
                if upto <= self.seq:
                    del self._waiting[member]
                    self._admit(member, upto)

    def declaredDead(self) -> None:
        """Our users were announced gone and their sessions are in grace: every connection closes."""
        line = wire.bye("shutdown", retry=self.config.retry_hint)
        members = set(self._attachments) | set(self._waiting) | set(self._answering)
        self._unsentLeaves = []
        for member in list(self._attachments):
            self._detachLocal(member)
        for member in members:
            member.session = None
            member.closeWith(line, CloseReason.SHUTDOWN)

    def availability(self, up: bool) -> None:
        if up and self._unsentLeaves:
            unsent, self._unsentLeaves = self._unsentLeaves, []
            for op in unsent:
                self.node.submit(op).addErrback(self._leaveFailed, op)

    # --- inside ---

    def _newAttachment(self) -> bytes:
        self._attachmentCount += 1
        return b"%s/%d" % (self.node.incarnation, self._attachmentCount)

    def _attach(self, member: IChatMember, session: Session[IChatMember], attachment: bytes) -> None:
        self._attachments[member] = attachment
        self._byAttachment[attachment] = member
        self.sessions.attached[member] = session
        member.attached(session)

    def _detachLocal(self, member: IChatMember) -> bytes | None:
        attachment = self._attachments.pop(member, None)
        if attachment is not None:
            self._byAttachment.pop(attachment, None)
        self.sessions.attached.pop(member, None)
        return attachment

    def _leaveRedis(self, token: bytes, attachment: bytes, reason: CloseReason) -> None:
        op: list[bytes | int] = [b"L", token, attachment, reason.left.encode(), b"1" if reason.resumable else b"0"]
        if not self.node.up:
            self._unsentLeaves.append(op)
            return
        self.node.submit(op).addErrback(self._leaveFailed, op)

    def _leaveFailed(self, failure: Failure, op: list[bytes | int]) -> None:
        failure.trap(ClusterUnavailableError)
        # Told again when Redis is back (a no-op if it was done: the attachment no longer matches).
        self._unsentLeaves.append(op)

    def _admitAfter(self, member: IChatMember, upto: int) -> None:
        if upto <= self.seq:
            self._admit(member, upto)
        else:
            self._waiting[member] = upto

    def _admit(self, member: IChatMember, upto: int) -> None:
        """``member`` gets what was delivered after ``upto`` here, then every event."""
        lines, _ = self.history.since(upto)
        for line in lines:
            self.send(member, line)
        self.fanout.add(member)

    def _deliver(self, event: Event) -> None:
        if event.seq <= self.seq:
            return
        if event.seq != self.seq + 1:
            self._gap(event.seq)
        self.seq = event.seq
        self.history.append(event.seq, event.line)
        if event.kind == b"J":
            self.present[wire.nick_key(event.nick)] = event.nick
            self._usersLine = None
        elif event.kind == b"L":
            self.present.pop(wire.nick_key(event.nick), None)
            self._usersLine = None
        self.fanout.broadcast(event.line)

    def _gap(self, seq: int) -> None:
        """
        Events before ``seq`` are gone from the log before this node read them (it fell
        further behind than the log keeps, or Redis lost them): its users must not miss them
        silently, so every connection is closed; their RESUME then tells them (``partial``).
        """
        self.gaps += 1
        self.log.warn(
            "events {first} to {last} were gone from the log before this node read them: "
            "closing its connections so that their clients resume (partial)",
            first=self.seq + 1,
            last=seq - 1,
        )
        self.history = History(self.config.history, seq - 1)
        self.seq = seq - 1
        line = wire.bye("shutdown", retry=self.config.retry_hint)
        members = set(self._attachments) | set(self._waiting)
        for member in members:
            self.fanout.discard(member)
            self._waiting.pop(member, None)
            member.closeWith(line, CloseReason.SHUTDOWN)

    def _control(self, record: Control) -> None:
        member = self._byAttachment.get(record.attachment)
        if member is None:
            return
        if record.kind == b"R":
            self._detachLocal(member)
            self.fanout.discard(member)
            member.session = None
            member.closeWith(wire.bye("replaced"), CloseReason.REPLACED)
        elif record.kind == b"P":
            self.send(member, wire.priv(record.nick, record.text))

    def _endTurn(self) -> None:
        self.fanout.flush()
        self._turnEnded()
