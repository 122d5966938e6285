"""
One connection of the hbchat client: dead-server detection and the server's lines, parsed.

:class:`ChatClientProtocol` runs the same heartbeat as the server, at the interval and
timeout the server's HELLO advertises, and hands every line it understands to its
:class:`~hbchat.client.factory.ChatClientFactory`, which keeps the session across
connections.  It keeps only what is about this one connection (the resume's counts, why it
ends, what the plain-TCP probe found); whether it is ready, registering or resuming is the
factory's lifecycle (hbchat.client.lifecycle).
"""

from __future__ import annotations

import math

from automat import NoTransition
from twisted.internet.interfaces import IDelayedCall, INegotiated, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from hbchat import wire
from hbchat.client.lifecycle import Deadline, Phase
from hbchat.client.outbox import TELL_BARRIER_ANSWER, pace_for
from hbchat.client.owner import IConnectionOwner
from hbchat.client.plainprobe import PROBE, closed_unheard, silent_unheard, tls_address
from hbchat.config import DEFAULT_BURST, DEFAULT_RATE
from hbchat.heartbeat import HeartbeatProtocol
from hbchat.interfaces import IChatObserver
from hbchat.lognames import NamedLogger
from hbchat.sockopts import enable_keepalive

#: Seconds to wait for HELLO before the server is taken for dead (its advertised timeout
#: is not known until then).  A server greets at once; a connection that stays mute is one
#: the server never accepted (an overflowing listen queue) or a server that hangs.
HELLO_TIMEOUT = 10.0
#: The longest line the client accepts from a server.  Generous: a MSG carries a text of
#: up to the server's --max-line plus a prefix, and USERS lists every nick.
MAX_SERVER_LINE = 1 << 20

#: The longest retry hint honoured from a BYE, in seconds.
MAX_RETRY_HINT = 300.0


#: The largest burst= taken from a HELLO; more is no different in practice.
MAX_BURST = 10**9


class ChatClientProtocol(HeartbeatProtocol):
    """One connection to a server, serving its owner (the factory, through IConnectionOwner)."""

    log = NamedLogger("hbchat.client.ChatClientProtocol")
    #: This connection resumed our session (its replay ended): the JOIN the server then
    #: announces for our nick is our own return, not news.
    resumedSession = False
    #: For a RESUME: the last event we had seen, the last one the server had assigned when
    #: it welcomed us back, and how many missed messages the replay has shown so far.
    resumeFrom = 0
    welcomeSeq: int | None = None
    replayedMessages = 0
    #: Why this connection is ending, in words for a person, when we know better than
    #: the transport does (a BYE, a timeout).
    problem: str | None = None
    #: With the factory's ``probePlain``, on plain TCP: the peer as shown and the tls:
    #: endpoint to suggest should it turn out to be a TLS port (hbchat.client.plainprobe).
    plainPeer: tuple[str, str] | None = None
    #: Some bytes came from the server on this connection.
    heard = False
    #: Why this connection says the port is not a plain hbchat one: final, no reconnect.
    notPlain: str | None = None
    #: The verdict on a HELLO overdue, one reactor turn after its deadline (None: none pending).
    _helloVerdict: IDelayedCall | None = None

    def __init__(
        self, owner: IConnectionOwner, clock: IReactorTime, observer: IChatObserver, probe_plain: bool = False
    ) -> None:
        super().__init__(clock)
        self.owner = owner
        self.observer = observer
        #: Start plain TCP with hbchat.client.plainprobe's empty lines (the factory's ``probePlain``).
        self.probePlain = probe_plain
        self._framer = wire.LineFramer(MAX_SERVER_LINE)
        #: The wait for HELLO: a deadline of the lifecycle's ``connecting`` state (the
        #: heartbeat's idle timeout starts with the HELLO, which tells its length).
        self.helloWait = Deadline(clock, HELLO_TIMEOUT, self._helloOverdue)

    def connectionMade(self) -> None:
        self.lastReceived = self.clock.seconds()
        self.helloWait.start()
        if self.probePlain and not INegotiated.providedBy(self.transport):
            self.plainPeer = tls_address(self.link.getPeer())
            if self.plainPeer is not None:
                self.link.write(PROBE)

    def sendLine(self, line: bytes) -> None:
        self.link.write(line)

    @property
    def ready(self) -> bool:
        """True from WELCOME (or the end of a replay) on: lines may be sent directly."""
        return self.owner.phaseOf(self) is Phase.READY

    @property
    def resuming(self) -> bool:
        """RESUME went out and its replay has not ended yet."""
        return self.owner.phaseOf(self) is Phase.RESUMING

    @property
    def registering(self) -> bool:
        """NICK went out and WELCOME has not come back yet."""
        return self.owner.phaseOf(self) is Phase.REGISTERING

    def missing(self, replayed: int, complete: bool) -> int | None:
        """
        How many events this connection's replay left out: those between our last one and
        the server's last one at WELCOME that were not replayed.  ``None`` when that cannot
        be told (sequence numbers that do not add up, as from a server that started counting again).
        """
        if complete:
            return 0
        if self.welcomeSeq is None:
            return None
        missing = self.welcomeSeq - self.resumeFrom - replayed
        return missing if missing > 0 else None

    def ownReturn(self, kind: bytes) -> bool:
        """
        Whether our own JOIN or LEFT only tells of our own reconnect: the LEFT of our broken
        connection replayed on RESUME (the user was told of the loss when it happened), or
        the JOIN announced once the session is resumed.
        """
        return self.resuming if kind == b"LEFT" else self.resumedSession

    @property
    def midLine(self) -> bool:
        """Whether the bytes received so far end within a line (its rest is still to come)."""
        return self._framer.pending > 0

    def dataReceived(self, data: bytes) -> None:
        self.heard = True
        self.noteTraffic()
        lines, overflowed = self._framer.feed(data)
        for line in lines:
            if line:
                self.lineReceived(line)
        if overflowed:
            self.problem = "the server sent a line longer than 1 MiB"
            self.link.abortConnection()

    def lineReceived(self, line: bytes) -> None:
        verb, _, rest = line.partition(b" ")
        handler = getattr(self, "line_" + verb.decode("ascii", "replace").upper(), None)
        if handler is None:
            self.log.debug("ignored from server: {line!r}", line=line)
            return
        try:
            handler(rest)
        except (ValueError, IndexError, KeyError):
            self.log.warn("malformed line from server: {line!r}", line=line)
        except NoTransition:
            # A line the client's lifecycle does not expect now (a second HELLO, a WELCOME
            # when registered): the server is confused, not us.
            self.log.warn("unexpected line from server: {line!r}", line=line)

    # --- lines from the server ---

    def line_HELLO(self, rest: bytes) -> None:
        self.helloWait.stop()
        settings = dict(field.split(b"=", 1) for field in rest.split(b" ")[1:] if b"=" in field)
        try:
            ping, timeout = float(settings[b"ping"]), float(settings[b"timeout"])
        except (KeyError, ValueError):
            ping = timeout = math.nan
        if not rest.startswith(wire.PROTOCOL + b" ") or not (0 < ping < timeout < math.inf):
            self.problem = f"the server's greeting is not hbchat/1: {rest[:80]!r}"
            self.link.abortConnection()
            return
        # Without rate= the server has the default limits (docs/protocol.md, section 2).
        try:
            rate, burst = float(settings.get(b"rate", DEFAULT_RATE)), int(settings.get(b"burst", DEFAULT_BURST))
        except ValueError:
            rate, burst = DEFAULT_RATE, DEFAULT_BURST
        if not (0 <= rate < math.inf and 1 <= burst <= MAX_BURST):
            rate, burst = DEFAULT_RATE, DEFAULT_BURST
        self.startHeartbeat(ping, timeout)
        try:
            enable_keepalive(self.transport, timeout)
        except OSError:
            pass
        self.owner.greeted(self, auth=settings.get(b"auth") == b"required", pace=pace_for(rate, burst))

    def line_WELCOME(self, rest: bytes) -> None:
        nick, token, seq = rest.split(b" ")
        self.owner.welcomed(self, nick, token, int(seq))

    def line_RESUMED(self, rest: bytes) -> None:
        count, outcome = rest.split(b" ")
        self.owner.replayEnded(self, int(count), outcome == b"complete")

    def line_MSG(self, rest: bytes) -> None:
        seq, nick, text = rest.split(b" ", 2)
        self.owner.event(int(seq), b"MSG", nick, text)

    def line_JOIN(self, rest: bytes) -> None:
        seq, nick = rest.split(b" ")
        self.owner.event(int(seq), b"JOIN", nick, b"")

    def line_LEFT(self, rest: bytes) -> None:
        seq, nick, reason = rest.split(b" ")
        self.owner.event(int(seq), b"LEFT", nick, reason)

    def line_PRIV(self, rest: bytes) -> None:
        sender, text = rest.split(b" ", 1)
        self.observer.private(sender.decode(), text.decode("utf-8", "replace"))

    def line_USERS(self, rest: bytes) -> None:
        self.observer.users([nick.decode() for nick in rest.split(b" ") if nick])

    def line_PING(self, rest: bytes) -> None:
        self.answerPing(b" " + rest if rest else b"")

    def line_PONG(self, rest: bytes) -> None:
        if rest == TELL_BARRIER_ANSWER:
            self.owner.told(self)
            return
        self.pongReceived(rest)
        if self.rtt is not None:
            self.observer.rtt(self.rtt)

    def line_ERR(self, rest: bytes) -> None:
        code, _, text = rest.partition(b" ")
        self.owner.serverError(self, int(code), text.decode("utf-8", "replace"))

    def line_BYE(self, rest: bytes) -> None:
        fields = rest.split(b" ")
        retry = at = None
        for field in fields[1:]:
            if field.startswith(b"retry="):
                hint = float(field[len(b"retry=") :])
                if 0 <= hint < math.inf:
                    retry = min(hint, MAX_RETRY_HINT)
            elif field.startswith(b"at="):
                at = float(field[len(b"at=") :])
        # at= is the server's choice of moment within retry= (docs/protocol.md, section 9).
        if retry is None or at is None or not 0 <= at <= retry:
            at = None
        self.owner.farewell(self, fields[0].decode("ascii", "replace"), retry, at)

    # --- endings ---

    def heartbeatTimedOut(self, idle: float) -> None:
        self.problem = f"the server was silent for {idle:.1f}s"
        if self.plainPeer is not None and not self.heard:
            self.problem = silent_unheard(*self.plainPeer, idle)

    def _helloOverdue(self) -> None:
        # Judged one reactor turn later, as the heartbeat judges silence: after a stall of
        # ours, a HELLO that came in time may still wait unread.
        self._helloVerdict = self.clock.callLater(0, self._judgeHello)

    def _judgeHello(self) -> None:
        self._helloVerdict = None
        if self.owner.helloOverdue(self):
            self.heartbeatTimedOut(self.idleSeconds())
            self.link.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.helloWait.stop()
        if self._helloVerdict is not None and self._helloVerdict.active():
            self._helloVerdict.cancel()
        self._helloVerdict = None
        self.stopHeartbeat()
        if self.plainPeer is not None and not self.heard and self.problem is None:
            self.notPlain = closed_unheard(*self.plainPeer, reason)
        self.owner.lost(self, reason)
