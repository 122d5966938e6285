"""
The server's protocol factory: it builds one :class:`ChatServerProtocol` per connection and
holds what they share: the chat (:mod:`hbchat.server.chat`), admission
(:mod:`hbchat.server.admission`), the drain (:mod:`hbchat.server.drain`), backpressure, and
the per-connection limits of the configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from hbchat import wire
from hbchat.auth.authlimit import BoundedChecker, FailureLimit
from hbchat.coarseclock import CoarseClock
from hbchat.config import ServerConfig
from hbchat.lognames import NamedLogger
from hbchat.ratelimit import Bucket, ping_bucket
from hbchat.server import verbs
from hbchat.server.admission import Admission, Gate
from hbchat.server.backpressure import Backpressure
from hbchat.server.chat import Chat
from hbchat.server.connection import ChatServerProtocol
from hbchat.server.drain import Drain
from hbchat.server.flow import SLOW_PATIENCE
from hbchat.server.host import IdentityRefusal
from hbchat.server.interfaces import Counted, IServerEvents
from hbchat.server.pacing import ReadPacer


class Listening(Protocol):
    """A listener as operations see it (:class:`hbchat.server.listeners.Listener`)."""

    description: str
    accepted: int
    listening: bool


@implementer(IServerEvents)
class NoEvents:
    """Nobody counts: the events of a chat without operations wired in."""

    def connectionClosed(self, connection: Counted) -> None:
        pass

    def roundTrip(self, seconds: float) -> None:
        pass

    def resumed(self, outcome: str) -> None:
        pass

    def lineRateLimited(self) -> None:
        pass

    def loginFailed(self) -> None:
        pass

    def handshakeEvicted(self) -> None:
        pass

    def acceptingPaused(self) -> None:
        pass


#: Builds the chat instead of the in-memory one (``--redis``: hbchat.cluster.chat.ClusterChat),
#: from the configuration, the clock, the events and the end-of-turn hook; what it builds
#: offers IChat and, for operations, ``fanout`` and ``sessions`` as :class:`Chat` does.
ChatMaker = Callable[[ServerConfig, IReactorTime, IServerEvents, Callable[[], None]], Any]


class ChatFactory(ServerFactory):
    """Builds the connections of one chat, and holds what they share."""

    log = NamedLogger("hbchat.server.ChatFactory")

    def __init__(
        self,
        config: ServerConfig,
        clock: IReactorTime,
        checker: ICredentialsChecker | None = None,
        events: IServerEvents | None = None,
        identity_refusal: IdentityRefusal | None = None,
        chat_maker: ChatMaker | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        #: With a checker, NICK must carry a password it accepts (``--auth``); at most
        #: --auth-checks checks at once and --auth-queue waiting (hbchat.authlimit).
        self.checker = None if checker is None else BoundedChecker(checker, config.auth_checks, config.auth_queue)
        #: Failed logins per address (--auth-failures).
        self.loginFailures = FailureLimit(clock, config.auth_failures)
        #: With --tls-identity: why a connection may not take a nick (None: it may); the
        #: check is TLS policy, handed in by the service (hbchat.server.tls.identity_refusal).
        if config.tls_identity and identity_refusal is None:
            raise ValueError("--tls-identity needs the check of a certificate's identity (identity_refusal)")
        self.identityRefusal = identity_refusal if config.tls_identity else None
        #: Where the core's countable events go (hbchat.server.interfaces.IServerEvents); the
        #: service wires in hbchat.ops (hbchat.ops.observed), else nobody counts them.
        self.events: IServerEvents = NoEvents() if events is None else events
        #: The listeners serving this chat, in the order of ``--listen`` (hbchat.server.listeners).
        self.listeners: list[Listening] = []
        self.maxBacklog = config.sendq_max
        #: The verbs its connections understand (hbchat.server.verbs), by their upper-case bytes.
        self.commands = verbs.COMMANDS
        #: Per-connection limits on lines and on PINGs; None with --rate 0.
        self.lineBucket = Bucket(config.rate, config.burst) if config.rate > 0 else None
        self.pingBucket = ping_bucket(config.ping)
        self.greeting = wire.hello(
            config.ping, config.timeout, auth_required=checker is not None, rate=config.rate, burst=config.burst
        )
        maker: ChatMaker = Chat if chat_maker is None else chat_maker
        self.chat: Chat = maker(config, clock, self.events, self._turnEnded)
        self.admission: Admission[ChatServerProtocol] = Admission(
            config, clock, self.events, lambda: self.chat.stopping
        )
        #: Every connection admitted and not yet closed.
        self.connections: set[ChatServerProtocol] = self.admission.connections
        #: What stops and restarts accepting (the listeners); paused at --max-handshakes.
        self.gates: list[Gate] = self.admission.gates
        self.drain = Drain(self.chat, self.connections, clock, lambda: self.config.retry_hint)
        self.backpressure = Backpressure(
            clock, SLOW_PATIENCE, config.timeout, config.sendq_max, population=lambda: len(self.connections)
        )
        #: The clock of the connections' pingers: their thousands of LoopingCalls share one
        #: reactor timer per hundredth of a second (hbchat.coarseclock).
        self.pingerClock = CoarseClock(clock)
        #: The clock of their idle timeouts (TimeoutMixin), reset by every read: exact, but
        #: a reset is an assignment rather than a reactor heap's work (hbchat.coarseclock).
        self.deadlineClock = CoarseClock(clock, exact=True)
        #: Lets a busy server's reads pile up between polls (--batch-window).
        self.pacer = ReadPacer(clock, config.batch_window)
        #: Timeout verdicts withdrawn because the peer had spoken during a server stall.
        self.sparedVerdicts = 0
        #: Timeout verdicts put off to PING first: no PING had been sent in time (a stall).
        self.askedVerdicts = 0

    def _turnEnded(self) -> None:
        self.backpressure.turn_ended()

    def stopFactory(self) -> None:
        self.admission.stop()

    @property
    def stopping(self) -> bool:
        """True once the chat is shutting down."""
        return bool(self.chat.stopping)

    @property
    def handshaking(self) -> int:
        """Connections admitted and not yet registered."""
        return self.admission.handshaking

    def buildProtocol(self, addr: IAddress | None) -> ChatServerProtocol:  # type: ignore[override]
        return ChatServerProtocol(self)

    def connectionLost(self, protocol: ChatServerProtocol, reason: Failure) -> None:
        self.events.connectionClosed(protocol)
        if self.admission.release(protocol):
            self.log.info(
                "{peer} closed ({reason}): {why}",
                peer=protocol.peer,
                reason=protocol.closeReason,
                why=protocol.closeWhy or reason.getErrorMessage(),
            )
        self.drain.connection_gone()

    def shutdown(self, drain: float = 0.0) -> Deferred[None]:
        """Lame duck: BYE shutdown to every connection, spread over ``drain`` seconds (hbchat.server.drain)."""
        return self.drain.shutdown(drain)

    def closeNow(self) -> None:
        """Stop draining: every connection still open is closed at once (a second signal)."""
        self.drain.close_now()
