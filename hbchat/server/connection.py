"""
One client connection of the server: its lifecycle (hbchat.server.lifecycle), its input and
the verbs, its rate limits, the heartbeat's verdicts, and how it ends; its output is its base
:class:`~hbchat.server.flow.ConnectionFlow`'s.

It is a member of the chat (:class:`~hbchat.server.interfaces.IChatMember`) and talks to
the chat only through :class:`~hbchat.server.interfaces.IChat` (``factory.chat``).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IHandshakeListener,
)
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from hbchat import wire
from hbchat.closereasons import CloseReason
from hbchat.lognames import NamedLogger
from hbchat.ratelimit import MAX_STRIKES
from hbchat.server.addresses import describe_peer, limited_host
from hbchat.server.backpressure import kernel_user_timeout, set_high_water
from hbchat.server.closes import peer_ending, purpose_why
from hbchat.server.flow import FLOW_SLOTS, ConnectionFlow, awaits_handshake
from hbchat.server.host import Host
from hbchat.server.interfaces import IChatMember
from hbchat.server.lifecycle import (
    Attach,
    Closing,
    ConnectionLife,
    Deadline,
    Ending,
    LifeCore,
    Phase,
    connection_life,
)
from hbchat.server.limits import LIMIT_SLOTS
from hbchat.server.sendq import send_queue
from hbchat.server.sessions import Session
from hbchat.server.writethrough import writer_for
from hbchat.sockopts import enable_keepalive


@implementer(IHandshakeListener, IChatMember)
class ChatServerProtocol(ConnectionFlow):
    """
    One client connection: registration, commands, heartbeat, and how it ends.

    It is also the streaming producer of its own output: the transport calls
    :meth:`pauseProducing` when that output passes the high-water mark and
    :meth:`resumeProducing` once it has drained, which drives :mod:`hbchat.backpressure`.
    """

    __slots__ = (
        "_framer",
        "bytesIn",
        "closeReason",
        "connected",
        "connectedAt",
        "core",
        "factory",
        "life",
        "listener",
        "nick",
        "peer",
        "pongsReceived",
        "session",
        "transport",
        *FLOW_SLOTS,
        *LIMIT_SLOTS,
    )

    log = NamedLogger("hbchat.server.ChatServerProtocol")
    factory: Host

    #: Set while registered; the session outlives the connection when it may be resumed.
    session: Session[IChatMember] | None
    nick: bytes | None
    peer: str
    #: Its lifecycle (hbchat.server.lifecycle), and the state it is in (``core.phase``).
    life: ConnectionLife
    core: LifeCore

    # For hbchat.stats and /connections: the --listen endpoint it came through (set by
    # hbchat.listeners), when it connected, what it counted, and why it closed.
    listener: str
    connectedAt: float
    bytesIn: int
    pongsReceived: int

    #: While authenticating (a password, or the chat's answer to NICK or RESUME, is awaited):
    #: the lines that arrived after it, handled in order once the verdict is in (reading is
    #: paused meanwhile).
    held: list[bytes] | None = None
    heldOverflow = False
    authFailures = 0
    #: The password check under way (cancelled if the connection ends first).
    passwordCheck: Deferred[object] | None = None

    #: The address counted for --max-per-ip (None: exempt, or not admitted).
    host: str | None = None
    #: Through an ssl: listener.
    tls = False
    #: Why it closed, in words (hbchat.server.closes), for the factory's log line.
    closeWhy: str | None = None

    def __init__(self, factory: Host) -> None:
        super().__init__(factory.clock, factory.pingerClock, factory.deadlineClock)
        self.transport = None
        self.connected = 0
        self.factory = factory
        self._framer = wire.LineFramer(factory.config.max_line)
        self.startLimits()
        self.session = None
        self.nick = None
        self.peer = "?"
        self.core = LifeCore()
        self.life = connection_life(self.core)
        self.startFlow()
        self.listener = "-"
        self.connectedAt = 0.0
        self.bytesIn = 0
        self.pongsReceived = 0
        self.closeReason = None

    # --- connection lifecycle ---

    def connectionMade(self) -> None:
        factory = self.factory
        self.connectedAt = self.lastReceived = self.clock.seconds()
        address = self.link.getPeer()
        self.peer = describe_peer(address)
        self.tls = awaits_handshake(self.transport)
        refusal = factory.admission.admit(self, limited_host(address))
        if refusal is not None:
            self.log.warn("refused {peer}: {why}", peer=self.peer, why=refusal.decode().strip())
            self.life.refuse()
            self._writeAndClose(refusal, CloseReason.FULL)
            return
        config = factory.config
        # The registration deadline; once registered, the same timer is the idle timeout.
        self.setTimeout(config.register_timeout)
        if self.tls:
            self.life.admit_tls()
        else:
            self.life.admit_plain()
            self._produce()
        set_high_water(self.transport, config.sendq_soft)
        self._sendq = send_queue(self.transport, config.sendq_soft)
        try:
            enable_keepalive(self.transport, config.timeout, kernel_user_timeout(config.timeout))
        except OSError as error:
            self.log.debug("keepalive not set for {peer}: {error}", peer=self.peer, error=error)
        self.log.info("connection from {peer}", peer=self.peer, listener=self.listener)
        self._write = writer_for(self.transport)
        self.deliver(factory.greeting)

    def handshakeCompleted(self) -> None:
        """
        IHandshakeListener: a TLS connection's handshake is done.  Until now its transport
        held our output back for the handshake and would have paused us for it, which
        backpressure would take for a congested client (and stop reading the very
        handshake it waits for); from now on its pauses mean a backlog.
        """
        if self.life.handshake_done():
            self._produce()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._closeTimer is not None and self._closeTimer.active():
            self._closeTimer.cancel()
        self._closeTimer = None
        ending = self.life.lost()
        if ending is Ending.ON_PURPOSE:
            self.closeWhy = purpose_why(self.closeReason, reason)
        else:
            peer = peer_ending(reason, self.tls, handshaken=ending is not Ending.IN_HANDSHAKE)
            self.closeReason, self.closeWhy = peer.reason, peer.why
            self._ended(CloseReason.ERROR, registered=ending is Ending.REGISTERED)
        self.factory.backpressure.forget(self)
        self.factory.connectionLost(self, reason)

    def cutAsSlow(self, why: str) -> None:
        """A slow consumer: abort without waiting for the output it cannot take."""
        if self.core.phase.ended:
            return
        self.log.info(
            "{nick} ({peer}) cut as a slow consumer: {why}", nick=(self.nick or b"-").decode(), peer=self.peer, why=why
        )
        self._finish(CloseReason.SLOW)
        self.link.abortConnection()

    def sendLine(self, line: bytes) -> None:
        if not self.core.phase.ended:
            self.factory.chat.send(self, line)

    # --- input ---

    def dataReceived(self, data: bytes) -> None:
        phase = self.core.phase
        if phase.ended:
            return
        self.bytesIn += len(data)
        self.factory.pacer.read()
        self.noteTraffic()
        lines, overflowed = self._framer.feed(data)
        if phase is Phase.AUTHENTICATING:
            assert self.held is not None
            self.held.extend(lines)
            self.heldOverflow = self.heldOverflow or overflowed
            return
        self.handleLines(lines, overflowed)

    def handleLines(self, lines: list[bytes], overflowed: bool) -> None:
        commands = self.factory.commands
        factory = self.factory
        bucket, pings = factory.lineBucket, factory.pingBucket
        # When these lines arrived (noteTraffic read the clock for this read already; for
        # lines held during a password check, when the last bytes came).
        now = self.lastReceived
        core = self.core
        for index, line in enumerate(lines):
            if not line:
                continue
            verb, _, rest = line.partition(b" ")
            verb = verb.upper()
            if bucket is not None and not self.withinLimits(bucket, pings, verb, now):
                self._rateLimited(verb, now)
                if core.phase.ended:
                    return
                continue
            if not line.isascii():
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    self.sendLine(wire.ERR_INVALID_UTF8)
                    continue
            if core.phase is not Phase.REGISTERED and verb not in wire.PRE_REGISTRATION_VERBS:
                self.sendLine(wire.ERR_REGISTER_FIRST)
                continue
            command = commands.get(verb)
            if command is None:
                self.sendLine(wire.err_unknown_command(verb))
                continue
            command(self, rest)
            phase = core.phase
            if phase.ended:
                return
            if phase is Phase.AUTHENTICATING:
                # A verdict is awaited: the rest waits for it.
                assert self.held is not None
                self.held.extend(lines[index + 1 :])
                self.heldOverflow = overflowed
                return
        if overflowed:
            self.log.info("{peer} sent a line over {limit} bytes", peer=self.peer, limit=self._framer.max_line)
            self.closeWith(wire.ERR_LINE_TOO_LONG, CloseReason.LINE_TOO_LONG)

    # --- rate limits (--rate, --burst) ---

    def _rateLimited(self, verb: bytes, now: float) -> None:
        """A line over the limit: ERR 429 (not handled); a peer that keeps on is kicked."""
        self.factory.events.lineRateLimited()
        strikes = self.strike(now)
        if strikes > MAX_STRIKES:
            self.log.info(
                "{nick} ({peer}) kicked: still over the rate limit after {count} ERR 429",
                nick=(self.nick or b"-").decode(),
                peer=self.peer,
                count=MAX_STRIKES,
            )
            self.closeWith(wire.BYE_KICKED, CloseReason.KICKED)
            return
        if strikes == 1:
            self.log.info(
                "{nick} ({peer}) rate-limited: over {rate:g} lines/s (burst {burst:g}) or PINGs too often",
                nick=(self.nick or b"-").decode(),
                peer=self.peer,
                rate=self.factory.config.rate,
                burst=self.factory.config.burst,
            )
        self.sendLine(wire.err_rate_limited(verb))

    # --- heartbeat and endings ---

    def attached(self, session: Session[IChatMember]) -> None:
        """We hold ``session`` now: switch from the registration deadline to the heartbeat."""
        self.session = session
        self.nick = session.nick
        if self.life.attach() is Attach.TOO_LATE:
            # Ended while the chat was answering (one shared through a store may answer
            # late): the session is not held by this connection, so it is left at once.
            self.factory.chat.leave(self, CloseReason.ERROR)
            return
        self.factory.admission.handshake_over(self, registered=True)
        config = self.factory.config
        self.startHeartbeat(config.ping, config.timeout)

    def mayMakeWay(self) -> bool:
        """Whether this connection may be closed to admit a newcomer: not while a verdict on it is awaited."""
        phase = self.core.phase
        return phase is not Phase.AUTHENTICATING and not phase.ended

    def silent(self) -> None:
        """The connection's timer ran out: what that means is the state's (hbchat.server.lifecycle)."""
        deadline = self.life.deadline()
        if deadline is Deadline.REGISTRATION:
            self.log.info(
                "{peer} did not register within {limit}s", peer=self.peer, limit=self.factory.config.register_timeout
            )
            self.closeWith(wire.ERR_REGISTRATION_TIMEOUT, CloseReason.REGISTER_TIMEOUT)
        elif deadline is Deadline.IDLE:
            if self.factory.backpressure.is_paused(self):
                # We are not reading it, so we cannot have heard it: no verdict yet.
                self.setTimeout(self.timeOut)
                return
            super().silent()

    def heartbeatAsked(self) -> None:
        self.factory.askedVerdicts += 1
        self.log.info(
            "{nick} ({peer}) asked before judged: no PING had gone out in time (the server was stalled)",
            nick=(self.nick or b"-").decode(),
            peer=self.peer,
        )

    def heartbeatSpared(self, late: float) -> None:
        self.factory.sparedVerdicts += 1
        self.log.info(
            "{nick} ({peer}) spared: its data arrived {late:.1f}s after its timer fired (the server was stalled)",
            nick=(self.nick or b"-").decode(),
            peer=self.peer,
            late=late,
        )

    def roundTripMeasured(self, rtt: float) -> None:
        self.factory.events.roundTrip(rtt)

    def heartbeatTimedOut(self, idle: float) -> None:
        self.log.info(
            "{nick} ({peer}) timed out after {idle:.1f}s of silence",
            nick=(self.nick or b"-").decode(),
            peer=self.peer,
            idle=idle,
        )
        self._finish(CloseReason.TIMEOUT)

    def closeWith(self, line: bytes, reason: CloseReason) -> None:
        """
        End the connection on purpose: everything queued for it, then ``line`` (a BYE or
        the ERR that explains the close), then nothing more.
        """
        if self.core.phase.ended:
            return
        pending = self.factory.chat.take(self)
        self._finish(reason)
        self._writeAndClose(pending + line, reason)

    def closeNow(self, line: bytes) -> None:
        """Close at once: ``line`` if it still can be said, then abort without waiting."""
        if not self.core.phase.ended:
            pending = self.factory.chat.take(self)
            self._finish(CloseReason.ERROR)
            self._write(pending + line)
        self.link.abortConnection()

    def _finish(self, reason: CloseReason) -> None:
        """We end the connection on purpose, for ``reason``."""
        closing = self.life.close()
        if closing is not Closing.ALREADY:
            self._ended(reason, registered=closing is Closing.REGISTERED)

    def _ended(self, reason: CloseReason, registered: bool) -> None:
        """The connection is over as far as the chat is concerned: it stops, and leaves."""
        if self.closeReason is None:
            self.closeReason = reason.label
        self.stopHeartbeat()
        if self.passwordCheck is not None:
            check, self.passwordCheck = self.passwordCheck, None
            check.cancel()
        if not registered:
            self.factory.admission.handshake_over(self, registered=False)
        self.factory.chat.leave(self, reason)
