"""
The hbchat client: dead-server detection, gentle reconnects, and resume that loses nothing.

:class:`ChatClientProtocol` runs the same heartbeat as the server, at the interval and
timeout the server's HELLO advertises.  :class:`ChatClientFactory` is a
``ReconnectingClientFactory`` with full-jitter backoff that resets only after WELCOME, and
it keeps the :class:`~hbchat.clientsession.ClientSession` across connections.  An
:class:`EndpointConnector` lets it drive any Twisted client endpoint (``tcp:``, ``tls:``,
``unix:``).  Everything the client sees goes to an :class:`~hbchat.interfaces.IChatObserver`.
A failure that reconnecting cannot cure (a :class:`PermanentConnectionError`, or a final
:class:`Diagnosis` from the factory's ``diagnose``, as :mod:`hbchat.clienttls` gives for
TLS) ends the client at once instead of starting the backoff.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from automat import NoTransition
from twisted.internet.defer import Deferred
from twisted.internet.error import NotConnectingError
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IDelayedCall,
    INegotiated,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import ReconnectingClientFactory, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from hbchat import wire
from hbchat.client.backoff import DEFAULT_BACKOFF, IBackoff
from hbchat.client.lifecycle import Loss, Quit, Welcome, client_life
from hbchat.client.plainprobe import PROBE, closed_unheard, silent_unheard, tls_address
from hbchat.client.reasons import describe
from hbchat.client.reconnect import ReconnectPlan
from hbchat.client.session import ClientSession
from hbchat.config import DEFAULT_BURST, DEFAULT_RATE
from hbchat.heartbeat import HeartbeatProtocol
from hbchat.interfaces import IChatObserver
from hbchat.lognames import NamedLogger
from hbchat.ratelimit import Bucket
from hbchat.sockopts import enable_keepalive

#: Seconds to wait for HELLO before the server is taken for dead (its advertised timeout
#: is not known until then).  A server greets at once; a connection that stays mute is one
#: the server never accepted (an overflowing listen queue) or a server that hangs.
HELLO_TIMEOUT = 10.0
#: The longest line the client accepts from a server.  Generous: a MSG carries a text of
#: up to the server's --max-line plus a prefix, and USERS lists every nick.
MAX_SERVER_LINE = 1 << 20
#: The longest line the client sends, for a server on the default --max-line.
MAX_LINE = 4096
#: The longest text the client sends in one SAY.
MAX_TEXT = MAX_LINE - len(b"SAY ")

#: Seconds a QUIT waits for the server's BYE before the connection is simply dropped.
QUIT_WAIT = 5.0
#: The longest retry hint honoured from a BYE, in seconds.
MAX_RETRY_HINT = 300.0

#: BYE reasons after which reconnecting would be wrong.
FINAL_BYES = {
    "quit": "you quit",
    "kicked": "the server kicked us",
    "replaced": "another connection resumed our session",
}
#: Seconds after losing a NICK before WELCOME during which an ERR 433 is taken for our own
#: lost registration (whose session the server keeps for its --grace, 120 s by default)
#: and waited out without counting towards --max-retries.
OWN_NICK_WAIT = 150.0

#: ERRs during registration after which reconnecting cannot help.
FINAL_ERRORS = {401, 432, 433}

#: The shortest wait for the pace's next token, in seconds.
MIN_PACE_WAIT = 0.001

#: The largest burst= taken from a HELLO; more is no different in practice.
MAX_BURST = 10**9

#: The share of the server's advertised rate and burst the client uses for its chat
#: lines: the rest is room for heartbeats, WHO, and lines bunched up by the network.
PACE_SHARE = 0.8


def pace_for(rate: float, burst: int) -> Bucket | None:
    """How fast we send SAY and TELL to a server that allows ``rate`` lines/s, ``burst`` at once (0: no limit)."""
    if rate <= 0:
        return None
    return Bucket(rate * PACE_SHARE, max(1.0, burst * PACE_SHARE / 2))


class PermanentConnectionError(Exception):
    """
    A connection failed for a reason that reconnecting cannot cure (a certificate that
    does not verify, say); its text is one line for a person.  The factory gives up at once.
    """


@dataclass(frozen=True)
class Diagnosis:
    """What a failed or lost connection means, in words, and whether retrying could help."""

    text: str
    final: bool


#: Turns a connection's failure into a :class:`Diagnosis`, or ``None`` for "nothing special".
Diagnose = Callable[[Failure], Diagnosis | None]


class ChatClientProtocol(HeartbeatProtocol):
    """One connection to a server, driven by its factory."""

    log = NamedLogger("hbchat.client.ChatClientProtocol")
    factory: ChatClientFactory
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

    def __init__(self, factory: ChatClientFactory) -> None:
        super().__init__(factory.timer)
        self.factory = factory
        self._framer = wire.LineFramer(MAX_SERVER_LINE)

    def connectionMade(self) -> None:
        self.lastReceived = self.clock.seconds()
        self.setTimeout(HELLO_TIMEOUT)
        if self.factory.probePlain and not INegotiated.providedBy(self.transport):
            self.plainPeer = tls_address(self.link.getPeer())
            if self.plainPeer is not None:
                self.link.write(PROBE)

    def sendLine(self, line: bytes) -> None:
        self.link.write(line)

    def _isCurrent(self) -> bool:
        return self.factory.protocolInstance is self

    @property
    def ready(self) -> bool:
        """True from WELCOME (or the end of a replay) on: lines may be sent directly."""
        return self._isCurrent() and self.factory.life.isReady()

    @property
    def resuming(self) -> bool:
        """RESUME went out and its replay has not ended yet."""
        return self._isCurrent() and self.factory.life.isResuming()

    @property
    def registering(self) -> bool:
        """NICK went out and WELCOME has not come back yet."""
        return self._isCurrent() and self.factory.life.isRegistering()

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
        self.factory.greeted(self, auth=settings.get(b"auth") == b"required", pace=pace_for(rate, burst))

    def line_WELCOME(self, rest: bytes) -> None:
        nick, token, seq = rest.split(b" ")
        self.factory.welcomed(self, nick, token, int(seq))

    def line_RESUMED(self, rest: bytes) -> None:
        count, outcome = rest.split(b" ")
        self.factory.replayEnded(self, int(count), outcome == b"complete")

    def line_MSG(self, rest: bytes) -> None:
        seq, nick, text = rest.split(b" ", 2)
        self.factory.event(int(seq), b"MSG", nick, text)

    def line_JOIN(self, rest: bytes) -> None:
        seq, nick = rest.split(b" ")
        self.factory.event(int(seq), b"JOIN", nick, b"")

    def line_LEFT(self, rest: bytes) -> None:
        seq, nick, reason = rest.split(b" ")
        self.factory.event(int(seq), b"LEFT", nick, reason)

    def line_PRIV(self, rest: bytes) -> None:
        sender, text = rest.split(b" ", 1)
        self.factory.observer.private(sender.decode(), text.decode("utf-8", "replace"))

    def line_USERS(self, rest: bytes) -> None:
        self.factory.observer.users([nick.decode() for nick in rest.split(b" ") if nick])

    def line_PING(self, rest: bytes) -> None:
        self.answerPing(b" " + rest if rest else b"")

    def line_PONG(self, rest: bytes) -> None:
        self.pongReceived(rest)
        if self.rtt is not None:
            self.factory.observer.rtt(self.rtt)

    def line_ERR(self, rest: bytes) -> None:
        code, _, text = rest.partition(b" ")
        self.factory.serverError(self, int(code), text.decode("utf-8", "replace"))

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
        self.factory.farewell(self, fields[0].decode("ascii", "replace"), retry, at)

    # --- endings ---

    def heartbeatTimedOut(self, idle: float) -> None:
        self.problem = f"the server was silent for {idle:.1f}s"
        if self.plainPeer is not None and not self.heard:
            self.problem = silent_unheard(*self.plainPeer, idle)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.stopHeartbeat()
        if self.plainPeer is not None and not self.heard and self.problem is None:
            self.notPlain = closed_unheard(*self.plainPeer, reason)
        self.factory.lost(self, reason)


@implementer(IAddress)
@dataclass(frozen=True)
class EndpointAddress:
    """Where an :class:`EndpointConnector` connects to: its endpoint, as far as it can be told."""

    endpoint: IStreamClientEndpoint

    def __str__(self) -> str:
        return repr(self.endpoint)


@implementer(IConnector)
class EndpointConnector:
    """
    Lets ``ReconnectingClientFactory`` drive a client endpoint.

    The factory was made for ``reactor.connectTCP`` connectors; this is an ``IConnector``
    over ``endpoint.connect()`` so that one backoff works for TCP, TLS and UNIX sockets
    alike: ``connect`` starts an attempt, ``stopConnecting`` cancels it, ``disconnect``
    also ends the connection made.  An attempt's outcome goes to the factory
    (``clientConnectionFailed``, or its protocol's ``connectionMade``) and to the hooks
    :meth:`attemptSucceeded` and :meth:`attemptFailed`, which a subclass may extend
    (the storm benchmark timestamps them).
    """

    def __init__(self, endpoint: IStreamClientEndpoint, factory: ChatClientFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self._attempt: Deferred[Any] | None = None
        factory.connector = self

    def connect(self) -> None:
        self.factory.connecting()
        attempt = self._attempt = self.endpoint.connect(self.factory)
        attempt.addCallbacks(self.attemptSucceeded, self.attemptFailed)

    def attemptSucceeded(self, protocol: Any) -> None:
        """The endpoint connected ``protocol``."""
        self._attempt = None

    def attemptFailed(self, reason: Failure) -> None:
        """The attempt failed (or was cancelled): the factory decides what next."""
        self._attempt = None
        self.factory.clientConnectionFailed(self, reason)

    def stopConnecting(self) -> None:
        if self._attempt is None:
            raise NotConnectingError()
        attempt, self._attempt = self._attempt, None
        attempt.cancel()

    def disconnect(self) -> None:
        """Stop the attempt under way, or close the factory's connection."""
        if self._attempt is not None:
            self.stopConnecting()
            return
        protocol = self.factory.protocolInstance
        if protocol is not None and protocol.transport is not None:
            protocol.link.loseConnection()

    def getDestination(self) -> EndpointAddress:
        return EndpointAddress(self.endpoint)


class ChatClientFactory(ReconnectingClientFactory):
    """A chat session that survives its connections."""

    log = NamedLogger("hbchat.client.ChatClientFactory")
    noisy = False
    #: Start plain TCP connections with hbchat.client.plainprobe's empty lines, so that a TLS port
    #: is told apart from a silent server (hbchat-client turns it on).
    probePlain = False
    #: What :meth:`buildProtocol` builds (the storm benchmark builds a lighter subclass).
    protocolClass: type[ChatClientProtocol] = ChatClientProtocol

    def __init__(
        self,
        nick: str,
        observer: IChatObserver,
        password: str | None = None,
        backoff: IBackoff = DEFAULT_BACKOFF,
        max_retries: int | None = None,
        clock: IReactorTime | None = None,
        rng: random.Random | None = None,
        outbox_limit: int = 1000,
        diagnose: Diagnose | None = None,
        give_up_after: float | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        #: Our clock (ReconnectingClientFactory's own ``clock`` is only for its stock ``retry``).
        self.timer: IReactorTime = clock
        self.observer = observer
        self.password = password
        #: Seconds without a connection (since the start, or since the last one ended)
        #: after which we give up, whatever is under way; ``None``: never.
        self.giveUpAfter = give_up_after
        self._countdown: IDelayedCall | None = None
        #: The connection being set up or in use, if any (for the countdown to end it).
        self._current: ChatClientProtocol | None = None
        self.rng = rng or random.Random()
        #: When to try again (``max_retries`` is its limit, not RCF's ``maxRetries``).
        self.plan = ReconnectPlan(backoff, self.rng, max_retries)
        #: The next attempt, scheduled by :meth:`retry`.
        self._reconnectCall: IDelayedCall | None = None
        #: Explains transport failures the generic text would not (a TLS alert, say).
        self.diagnose = diagnose
        self.session = ClientSession(nick.encode("utf-8"), outbox_limit)
        self.protocolInstance: ChatClientProtocol | None = None
        self._lastProblem = "could not connect"
        #: Where the client is in its life (hbchat.client.lifecycle).
        self.life = client_life()
        #: When a NICK was last lost with its connection before WELCOME (the server may hold
        #: our nick for a session we never got the token of, until its grace period ends);
        #: ``None`` once a WELCOME came.  After a server's default --grace that session is
        #: gone, and a nick still in use is someone else's.
        self._nickLostAt: float | None = None
        self._quitDeadline: IDelayedCall | None = None
        #: How fast SAY and TELL may go out (hbchat.ratelimit), from the server's HELLO;
        #: ``_paceFullAt`` is the pace bucket's state, ``_paceCall`` the wait for its next token.
        self._pace: Bucket | None = None
        self._paceFullAt = 0.0
        self._paceCall: IDelayedCall | None = None
        #: Refused lines put back at the front of the outbox since it last sent one; when we last slowed down.
        self._requeued = 0
        self._slowedAt = -math.inf
        #: After an ERR 429 on this connection: one SAY in flight at a time, so that a line
        #: sent again is not overtaken by the ones behind it.
        self._oneAtATime = False

    # --- what the embedding program calls ---

    def say(self, text: str) -> None:
        """Send a chat line, now or once reconnected; raises OutboxFullError or ValueError."""
        self._submit(b"SAY " + _text(text))

    def tell(self, nick: str, text: str) -> None:
        """Send a private line, now or once reconnected; raises OutboxFullError or ValueError."""
        line = b"TELL " + nick.encode("utf-8") + b" " + _text(text)
        if len(line) > MAX_LINE:
            # The server would refuse it (ERR 413), and the client would take that for a SAY's refusal.
            raise ValueError(f"message too long ({len(line)} bytes with the TELL and nick; at most {MAX_LINE})")
        self._submit(line)

    def who(self) -> bool:
        """Ask for the user list; ``False`` when not connected."""
        return self._sendIfReady(b"WHO")

    def quit(self, text: str = "") -> None:
        """Leave for good: no reconnects.  ``gaveUp("you quit")`` follows, whatever happens."""
        line = b"QUIT" + (b" " + _text(text) if text else b"")
        action = self.life.quit()
        self.stopTrying()
        protocol = self.protocolInstance
        if action is Quit.SEND and protocol is not None:
            protocol.sendLine(line + b"\n")
            # A frozen server never answers: do not wait for its BYE for ever.
            self._quitDeadline = self.timer.callLater(QUIT_WAIT, self._quitWithoutBye)
            return
        if action is Quit.CLOSE:
            protocol = protocol or self._current
            if protocol is not None and protocol.transport is not None:
                protocol.link.loseConnection()
        self._giveUp("you quit")

    def _quitWithoutBye(self) -> None:
        self._quitDeadline = None
        if not self.life.quitTimedOut():
            return
        protocol = self.protocolInstance
        if protocol is not None and protocol.transport is not None:
            protocol.link.abortConnection()
        self._giveUp("you quit")

    @property
    def connected(self) -> bool:
        return self.protocolInstance is not None and self.protocolInstance.ready

    # --- ReconnectingClientFactory ---

    # (Twisted's Factory is generic over protocols whose ``factory`` is a ``Factory[Self]``;
    # ReconnectingClientFactory is not parameterized, so the narrower return needs the ignore.)
    def buildProtocol(self, addr: IAddress | None) -> ChatClientProtocol:  # type: ignore[override]
        protocol = self._current = self.protocolClass(self)
        return protocol

    def retry(self, connector: IConnector | None = None) -> None:
        """
        Have the connector connect again, after the plan's delay (hbchat.client.reconnect:
        full jitter over a window that grows with the outage's age, the server's retry hint
        first) instead of the stock Gaussian; give up once the retries are used up.
        """
        if not self.continueTrying:
            return
        if connector is None:
            connector = self.connector
        if connector is None:
            raise ValueError("no connector to retry")
        delay = self.plan.next_delay(self.timer.seconds())
        self.retries = self.plan.retries
        if delay is None:
            self._giveUp(f"{self._lastProblem}; gave up after {self.plan.max_retries} retries")
            return
        self.delay = delay
        self.observer.reconnecting(delay, self.plan.attempt, self._lastProblem)
        self._reconnectCall = self.timer.callLater(delay, self._reconnect, connector)

    def _reconnect(self, connector: IConnector) -> None:
        self._reconnectCall = None
        connector.connect()

    @property
    def reconnectPending(self) -> bool:
        """Whether a reconnect is scheduled."""
        return self._reconnectCall is not None

    def stopTrying(self) -> None:
        if self._reconnectCall is not None:
            if self._reconnectCall.active():
                self._reconnectCall.cancel()
            self._reconnectCall = None
        super().stopTrying()

    def resetDelay(self) -> None:
        super().resetDelay()
        self.plan.reset()

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if self.life.lost() is not Loss.UNGREETED:
            return  # we quit or gave up: nothing follows
        diagnosis = self._diagnose(reason)
        if diagnosis is not None and diagnosis.final:
            self._giveUp(diagnosis.text)
            return
        if self.continueTrying:
            problem = diagnosis.text if diagnosis is not None else describe(reason)
            self._lastProblem = f"could not connect: {problem}"
        super().clientConnectionFailed(connector, reason)

    def _diagnose(self, reason: Failure) -> Diagnosis | None:
        """A :class:`PermanentConnectionError` is final; anything else is ``diagnose``'s to explain."""
        if reason.check(PermanentConnectionError):
            return Diagnosis(str(reason.value), final=True)
        return self.diagnose(reason) if self.diagnose is not None else None

    # --- called by the protocol ---

    def greeted(self, protocol: ChatClientProtocol, auth: bool, pace: Bucket | None = None) -> None:
        if not self.life.hello():
            protocol.link.loseConnection()  # we quit or gave up meanwhile
            return
        if auth and not self.password:
            self._giveUp("the server requires a password, and we have none to give (hbchat-client: --password-file)")
            protocol.link.loseConnection()
            return
        self.protocolInstance = protocol
        self._pace, self._paceFullAt = pace, 0.0
        self._oneAtATime = False
        session = self.session
        if session.token is not None:
            self.life.resume()
            protocol.resumeFrom = session.last_seq
            protocol.sendLine(b"RESUME %s %d\n" % (session.token, session.last_seq))
        else:
            self._register(protocol)

    def _register(self, protocol: ChatClientProtocol) -> None:
        self.life.register()
        password = b" " + self.password.encode("utf-8") if self.password else b""
        protocol.sendLine(b"NICK " + self.session.nick + password + b"\n")

    def welcomed(self, protocol: ChatClientProtocol, nick: bytes, token: bytes, seq: int) -> None:
        meaning = self.life.welcome()
        if meaning is Welcome.LEAVE:
            protocol.sendLine(b"QUIT\n")
            return
        # Only a registration proves the server works: a bare TCP connect does not.
        self.resetDelay()
        self._nickLostAt = None
        if meaning is Welcome.REPLAY:
            self.session.token = token
            protocol.welcomeSeq = seq
            return
        self.session.registered(nick, token, seq)
        # Resend first, so that whoever is told we are registered sees the true backlog.
        self._ready(protocol)
        self.observer.registered(nick.decode(), False)

    def replayEnded(self, protocol: ChatClientProtocol, count: int, complete: bool) -> None:
        self.life.replayEnded()
        protocol.resumedSession = True
        self._ready(protocol)
        self.observer.registered(self.session.nick.decode(), True)
        self.observer.resumed(protocol.replayedMessages, complete, _missing(protocol, count, complete))

    def _ready(self, protocol: ChatClientProtocol) -> None:
        self._stopCountdown()
        session = self.session
        session.outbox.extend(session.toResend())
        self._sendOutbox()

    def event(self, seq: int, kind: bytes, nick: bytes, detail: bytes) -> None:
        if not self.session.isNew(seq):
            return
        if kind != b"MSG" and nick == self.session.nick and self._ownReturn(kind):
            return
        name = nick.decode("utf-8", "replace")
        if kind == b"MSG":
            own = self.session.echoed(nick, detail)
            protocol = self.protocolInstance
            if protocol is not None and protocol.resuming:
                protocol.replayedMessages += 1
            self.observer.message(seq, name, detail.decode("utf-8", "replace"), own)
            if own and self._oneAtATime:
                self._sendOutbox()
        elif kind == b"JOIN":
            self.observer.joined(seq, name)
        else:
            self.observer.left(seq, name, detail.decode("ascii", "replace"))

    def _ownReturn(self, kind: bytes) -> bool:
        """
        Whether our own JOIN or LEFT only tells of our own reconnect: the LEFT of our broken
        connection replayed on RESUME (the user was told of the loss when it happened), or
        the JOIN announced once the session is resumed.
        """
        protocol = self.protocolInstance
        if protocol is None:
            return False
        if kind == b"LEFT":
            return protocol.resuming
        return protocol.resumedSession

    def serverError(self, protocol: ChatClientProtocol, code: int, text: str) -> None:
        if code == 404 and protocol.resuming:
            self.session.forget()
            self.observer.historyLost()
            self._register(protocol)
        elif (
            code == 433
            and protocol.registering
            and self._nickLostAt is not None
            and self.timer.seconds() - self._nickLostAt < OWN_NICK_WAIT
        ):
            # Most likely our own interrupted registration: wait for its grace to end,
            # without using up the retries (the server will let the nick go).
            protocol.problem = "the nick is still held, probably by our own interrupted registration"
            self.life.ownNickHeld()
            protocol.link.loseConnection()
        elif code == 413:
            # The server answers lines in order: the line it refused is the oldest one not
            # yet echoed.  Sending it again would only be refused again, for ever.
            refused = self.session.refuseOldest()
            shown = refused.decode("utf-8", "replace")[:60] if refused is not None else "a line"
            protocol.problem = "the server refused a line as too long"
            self.observer.serverError(code, f"{text}: not sent again: {shown!r}")
        elif code == 429:
            self._rateLimited(protocol, text)
        elif code in FINAL_ERRORS and not protocol.ready:
            self._giveUp(f"the server refused us: ERR {code} {text}")
            protocol.link.loseConnection()
        else:
            if not protocol.ready:
                protocol.problem = f"the server said ERR {code} {text}"
            self.observer.serverError(code, text)

    def farewell(self, protocol: ChatClientProtocol, reason: str, retry: float | None, at: float | None = None) -> None:
        if reason in FINAL_BYES:
            self._giveUp(FINAL_BYES[reason])
        else:
            self.plan.hinted(retry, at)
            protocol.problem = f"the server closed the connection ({reason})"

    def lost(self, protocol: ChatClientProtocol, reason: Failure) -> None:
        if self._current is protocol:
            self._current = None
        loss = self.life.lost() if self.protocolInstance in (protocol, None) else Loss.STALE
        if loss is Loss.READY:
            self._startCountdown()  # the time without a connection starts now
        if self.protocolInstance is protocol:
            self.protocolInstance = None
            if self._paceCall is not None and self._paceCall.active():
                self._paceCall.cancel()
            self._paceCall = None
        if loss is Loss.QUIT:
            self._giveUp("you quit")
            return
        if loss in (Loss.FINAL, Loss.STALE):
            return
        diagnosis = self._diagnose(reason)
        if protocol.notPlain is not None:
            diagnosis = Diagnosis(protocol.notPlain, final=True)
        if diagnosis is not None and diagnosis.final and loss is not Loss.UNGREETED:
            # A connection that got as far as a HELLO spoke TLS with a certificate we
            # trusted: whatever breaks it later (a corrupted record, say) is worth a reconnect,
            # told in the diagnosis's words (not OpenSSL's raw error tuples).
            diagnosis = Diagnosis(diagnosis.text, final=False)
        if diagnosis is not None and diagnosis.final:
            self._giveUp(diagnosis.text)
            return
        if loss is Loss.REGISTRATION:
            # (Not a connection we closed ourselves on an ERR 433: that NICK was answered.)
            self._nickLostAt = self.timer.seconds()
        elif loss is Loss.OWN_NICK:
            self.plan.forgive_next()  # waiting for our own nick does not use up the retries
        if protocol.problem is not None:
            self._lastProblem = protocol.problem
        elif diagnosis is not None:
            self._lastProblem = f"connection lost: {diagnosis.text}"
        else:
            self._lastProblem = f"connection lost: {describe(reason)}"
        if self.continueTrying:
            self.observer.disconnected(self._lastProblem)
            if self.connector is not None:
                self.clientConnectionLost(self.connector, reason)

    # --- how long we may go without a connection ---

    def connecting(self) -> None:
        """An attempt starts (hbchat.client.connector): start the ``giveUpAfter`` countdown unless it runs already."""
        self.life.connect()
        self._startCountdown()

    def _startCountdown(self) -> None:
        """We are without a connection: start the ``giveUpAfter`` countdown unless it runs already."""
        if self.giveUpAfter is None or self._countdown is not None or not self.continueTrying:
            return
        self._countdown = self.timer.callLater(self.giveUpAfter, self._outOfTime)

    def _stopCountdown(self) -> None:
        if self._countdown is not None and self._countdown.active():
            self._countdown.cancel()
        self._countdown = None

    def _outOfTime(self) -> None:
        """``giveUpAfter`` seconds without a connection: give up, and end the attempt under way."""
        self._countdown = None
        if not self.life.outOfTime() or not self.continueTrying:
            return
        self._giveUp(f"{self._lastProblem}; gave up after {self.giveUpAfter:g} s without a connection")
        protocol = self._current
        if protocol is not None and protocol.transport is not None:
            protocol.link.abortConnection()

    def _giveUp(self, reason: str) -> None:
        """No more attempts; the observer hears of it exactly once."""
        self._stopCountdown()
        self.stopTrying()
        if self._quitDeadline is not None and self._quitDeadline.active():
            self._quitDeadline.cancel()
        self._quitDeadline = None
        if self.life.giveUp():
            self.observer.gaveUp(reason)

    def _rateLimited(self, protocol: ChatClientProtocol, text: str) -> None:
        """
        ERR 429: the server refused a line.  A refused SAY is our oldest unechoed one (the
        server answers lines in order): it goes back to the front of the outbox; we slow
        down to half our pace, so that the server never has to kick us, and from now on
        send a SAY only once the one before it has come back, so that the order holds.
        """
        refused_verb = text.rpartition(": ")[2].split(" ")[0]
        if refused_verb == "SAY":
            refused = self.session.refuseOldest()
            if refused is not None:
                # Several refusals in a row go back in the order they were sent.
                self.session.outbox.insert(self._requeued, b"SAY " + refused)
                self._requeued += 1
        now = self.timer.seconds()
        if now - self._slowedAt >= 1.0:  # one burst of refusals halves the pace once
            self._slowedAt = now
            pace = self._pace or pace_for(DEFAULT_RATE, DEFAULT_BURST)
            assert pace is not None  # the default rate is not 0
            self._pace = Bucket(max(1.0, pace.rate / 2), max(1.0, pace.burst / 2))
        assert self._pace is not None
        self._oneAtATime = True
        note = f"slowing down to {self._pace.rate:g} lines/s"
        if refused_verb not in ("SAY", "PING", "PONG"):
            note += f"; a {refused_verb or 'line'} was not handled"
        self.observer.serverError(429, f"{text}: {note}")
        self._sendOutbox()

    # --- sending ---

    def _submit(self, line: bytes) -> None:
        self.session.queue(line)
        self._sendOutbox()

    def _sendOutbox(self) -> None:
        """Send what waits in the outbox, as fast as the pace allows; come back for the rest."""
        protocol = self.protocolInstance
        if self._paceCall is not None or protocol is None or not protocol.ready:
            return
        outbox, pace = self.session.outbox, self._pace
        now = self.timer.seconds()
        while outbox:
            if self._oneAtATime and self.session.unechoed:
                return  # sent again when the echo comes (event)
            if pace is not None:
                full_at = pace.take(self._paceFullAt, now)
                if full_at is None:
                    # At least a millisecond: a wait that rounds to nothing must not spin.
                    delay = max(MIN_PACE_WAIT, pace.wait(self._paceFullAt, now))
                    self._paceCall = self.timer.callLater(delay, self._paceAgain)
                    return
                self._paceFullAt = full_at
            self._requeued = 0
            self._send(protocol, outbox.popleft())

    def _paceAgain(self) -> None:
        self._paceCall = None
        self._sendOutbox()

    def _sendIfReady(self, line: bytes) -> bool:
        protocol = self.protocolInstance
        if protocol is None or not protocol.ready:
            return False
        protocol.sendLine(line + b"\n")
        return True

    def _send(self, protocol: ChatClientProtocol, line: bytes) -> None:
        self.session.sending(line)
        protocol.sendLine(line + b"\n")


def _missing(protocol: ChatClientProtocol, replayed: int, complete: bool) -> int | None:
    """
    How many events a replay left out: those between our last one and the server's last
    one at WELCOME that were not replayed.  ``None`` when that cannot be told (sequence
    numbers that do not add up, as from a server that started counting again).
    """
    if complete:
        return 0
    if protocol.welcomeSeq is None:
        return None
    missing = protocol.welcomeSeq - protocol.resumeFrom - replayed
    return missing if missing > 0 else None


def _text(text: str) -> bytes:
    data = text.encode("utf-8")
    if not data:
        raise ValueError("empty message")
    if b"\n" in data or b"\r" in data:
        raise ValueError("a message is one line: no line breaks")
    if len(data) > MAX_TEXT:
        raise ValueError(f"message too long ({len(data)} bytes; at most {MAX_TEXT})")
    return data


def connect(reactor: Any, endpoint: IStreamClientEndpoint, factory: ChatClientFactory) -> EndpointConnector:
    """Start connecting ``factory`` through ``endpoint``, reconnecting as it decides."""
    connector = EndpointConnector(endpoint, factory)
    connector.connect()
    return connector
