"""
The reconnecting chat client: one session that survives its connections.

:class:`ChatClientFactory` is a ``ReconnectingClientFactory`` that overrides only its
public hooks (``buildProtocol``, ``clientConnectionFailed``, ``retry``, ``stopTrying``,
``resetDelay``): when to try again is a :class:`~hbchat.client.reconnect.ReconnectPlan`
(full-jitter backoff that resets only after WELCOME, the server's retry hint first), where
the client is in its life an automat machine (:mod:`hbchat.client.lifecycle`), what an ERR
means a table (:mod:`hbchat.client.policy`), and how fast the outbox goes out
:mod:`hbchat.client.outbox`.  It keeps the :class:`~hbchat.client.session.ClientSession`
across connections, and an :class:`~hbchat.client.connector.EndpointConnector` lets it
drive any Twisted client endpoint (``tcp:``, ``tls:``, ``unix:``).  Everything the client
sees goes to an :class:`~hbchat.interfaces.IChatObserver`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from twisted.internet.interfaces import IAddress, IConnector, IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from hbchat.client.backoff import DEFAULT_BACKOFF, IBackoff
from hbchat.client.connector import EndpointConnector, connect
from hbchat.client.errors import LoginAgain, ServerErrors
from hbchat.client.lifecycle import Deadline, LifeCore, Loss, Phase, Quit, Welcome, client_life
from hbchat.client.outbox import PacedOutbox, chat_text, tell_line
from hbchat.client.owner import IConnectionOwner
from hbchat.client.policy import FINAL_BYES, OWN_NICK_WAIT, Diagnose, Diagnosis, PermanentConnectionError
from hbchat.client.protocol import ChatClientProtocol
from hbchat.client.reasons import describe
from hbchat.client.reconnect import ReconnectPlan
from hbchat.client.session import ClientSession
from hbchat.interfaces import IChatObserver
from hbchat.lognames import NamedLogger
from hbchat.ratelimit import Bucket

#: Seconds a QUIT waits for the server's BYE before the connection is simply dropped.
QUIT_WAIT = 5.0


@implementer(IConnectionOwner)
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
        endpoints: Sequence[IStreamClientEndpoint] = (),
    ) -> None:
        #: Where :meth:`startConnecting` connects: a cluster's nodes, each tried in turn.
        self.endpoints = tuple(endpoints)
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
        self._countdown = Deadline(clock, give_up_after, self._outOfTime)
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
        self._phase = LifeCore()
        self.life = client_life(self._phase)
        #: When a NICK was last lost with its connection before WELCOME (the server may hold
        #: our nick for a session we never got the token of, until its grace period ends);
        #: ``None`` once a WELCOME came.  After a server's default --grace that session is
        #: gone, and a nick still in use is someone else's.
        self._nickLostAt: float | None = None
        self._quitDeadline = Deadline(clock, QUIT_WAIT, self._quitWithoutBye)
        #: The session's outbox, sent at the server's pace (hbchat.client.outbox).
        self.outbox = PacedOutbox(self.session, clock)
        #: A NICK or RESUME sent again on its connection after ERR 503 cluster unavailable.
        self._loginAgain = LoginAgain(clock, self.session, self._nickLine, lambda p: p is self.protocolInstance)
        self._errors = ServerErrors(
            self.session, self.observer, self.outbox, self.life, self.register, self.giveUp, self.rng, self._loginAgain
        )

    # --- what the embedding program calls ---

    def say(self, text: str) -> None:
        """Send a chat line, now or once reconnected; raises OutboxFullError or ValueError."""
        self.outbox.submit(b"SAY " + chat_text(text))

    def tell(self, nick: str, text: str) -> None:
        """Send a private line, now or once reconnected; raises OutboxFullError or ValueError."""
        self.outbox.submit(tell_line(nick, text))

    def who(self) -> bool:
        """Ask for the user list; ``False`` when not connected."""
        return self._sendIfReady(b"WHO")

    def quit(self, text: str = "") -> None:
        """Leave for good: no reconnects.  ``gaveUp("you quit")`` follows, whatever happens."""
        line = b"QUIT" + (b" " + chat_text(text) if text else b"")
        action = self.life.quit()
        if action is Quit.NOTHING:
            return  # quitting already, or given up
        self.stopTrying()
        self.outbox.stop()
        protocol = self.protocolInstance
        if action is Quit.SEND and protocol is not None:
            protocol.sendLine(line + b"\n")
            # A frozen server never answers: do not wait for its BYE for ever.
            self._quitDeadline.start()
            return
        if action is Quit.CLOSE:
            protocol = protocol or self._current
            if protocol is not None and protocol.transport is not None:
                protocol.link.loseConnection()
        self.giveUp("you quit")

    def _quitWithoutBye(self) -> None:
        if not self.life.quit_timed_out():
            return
        protocol = self.protocolInstance
        if protocol is not None and protocol.transport is not None:
            protocol.link.abortConnection()
        self.giveUp("you quit")

    def phaseOf(self, protocol: ChatClientProtocol) -> Phase | None:
        return self._phase.phase if protocol is self.protocolInstance else None

    def startConnecting(self, reactor: Any = None) -> EndpointConnector:
        """
        Connect through :attr:`endpoints` (the first, then the next one at each reconnect,
        wrapping around) and keep reconnecting as this factory decides; as
        :func:`hbchat.client.connector.connect` does for endpoints given to it.
        """
        if not self.endpoints:
            raise ValueError("ChatClientFactory has no endpoints to connect to")
        return connect(reactor, self.endpoints, self)

    @property
    def connected(self) -> bool:
        return self.protocolInstance is not None and self.protocolInstance.ready

    # --- ReconnectingClientFactory ---

    def buildProtocol(self, addr: IAddress | None) -> ChatClientProtocol:
        protocol = self._current = self.protocolClass(self, self.timer, self.observer, self.probePlain)
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
            self.giveUp(f"{self._lastProblem}; gave up after {self.plan.max_retries} retries")
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
            self.giveUp(diagnosis.text)
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

    def helloOverdue(self, protocol: ChatClientProtocol) -> bool:
        return protocol is self._current and self.life.hello_overdue()

    def greeted(self, protocol: ChatClientProtocol, auth: bool, pace: Bucket | None = None) -> None:
        if not self.life.hello():
            protocol.link.loseConnection()  # we quit or gave up meanwhile
            return
        if auth and not self.password:
            self.giveUp("the server requires a password, and we have none to give (hbchat-client: --password-file)")
            protocol.link.loseConnection()
            return
        self.protocolInstance = protocol
        self.outbox.greeted(pace)
        session = self.session
        if session.token is not None:
            self.life.resume()
            protocol.resumeFrom = session.last_seq
            protocol.sendLine(b"RESUME %s %d\n" % (session.token, session.last_seq))
        else:
            self.register(protocol)

    def register(self, protocol: ChatClientProtocol) -> None:
        """Send NICK (with our password, if any)."""
        self.life.register()
        protocol.sendLine(self._nickLine())

    def _nickLine(self) -> bytes:
        password = b" " + self.password.encode("utf-8") if self.password else b""
        return b"NICK " + self.session.nick + password + b"\n"

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
        self.life.replay_ended()
        protocol.resumedSession = True
        self._ready(protocol)
        self.observer.registered(self.session.nick.decode(), True)
        self.observer.resumed(protocol.replayedMessages, complete, protocol.missing(count, complete))

    def _ready(self, protocol: ChatClientProtocol) -> None:
        self._countdown.stop()
        session = self.session
        session.outbox.extend(session.to_resend())
        self.outbox.ready(lambda line: protocol.sendLine(line + b"\n"))

    def event(self, seq: int, kind: bytes, nick: bytes, detail: bytes) -> None:
        if not self.session.is_new(seq):
            return
        protocol = self.protocolInstance
        if kind != b"MSG" and nick == self.session.nick and protocol is not None and protocol.ownReturn(kind):
            return
        name = nick.decode("utf-8", "replace")
        if kind == b"MSG":
            own = self.session.echoed(nick, detail)
            if protocol is not None:
                # Until RESUMED every MSG on a resuming connection is replay; the count is read
                # only then, so it needs no question to the lifecycle on this hot path.
                protocol.replayedMessages += 1
            self.observer.message(seq, name, detail.decode("utf-8", "replace"), own)
            if own:
                self.outbox.echoed()
        elif kind == b"JOIN":
            self.observer.joined(seq, name)
        else:
            self.observer.left(seq, name, detail.decode("ascii", "replace"))

    def serverError(self, protocol: ChatClientProtocol, code: int, text: str) -> None:
        lost_at = self._nickLostAt
        recent = lost_at is not None and self.timer.seconds() - lost_at < OWN_NICK_WAIT
        self._errors.handle(protocol, code, text, own_nick_recent=recent)

    def told(self, protocol: ChatClientProtocol) -> None:
        if protocol is self.protocolInstance:
            self.outbox.told()

    def farewell(self, protocol: ChatClientProtocol, reason: str, retry: float | None, at: float | None = None) -> None:
        if reason in FINAL_BYES:
            self.giveUp(FINAL_BYES[reason])
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
            self.outbox.stop()
            self._loginAgain.cancel()
        if loss is Loss.QUIT:
            self.giveUp("you quit")
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
            self.giveUp(diagnosis.text)
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
        if self.continueTrying:
            self._countdown.start()

    def _outOfTime(self) -> None:
        """``giveUpAfter`` seconds without a connection: give up, and end the attempt under way."""
        if not self.life.out_of_time() or not self.continueTrying:
            return
        self.giveUp(f"{self._lastProblem}; gave up after {self.giveUpAfter:g} s without a connection")
        protocol = self._current
        if protocol is not None and protocol.transport is not None:
            protocol.link.abortConnection()

    def giveUp(self, reason: str) -> None:
        """No more attempts; the observer hears of it exactly once."""
        self._countdown.stop()
        self.stopTrying()
        self._quitDeadline.stop()
        self._loginAgain.cancel()
        if self.life.give_up():
            self.observer.gaveUp(reason)

    def _sendIfReady(self, line: bytes) -> bool:
        protocol = self.protocolInstance
        if protocol is None or not protocol.ready:
            return False
        protocol.sendLine(line + b"\n")
        return True
