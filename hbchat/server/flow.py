"""
The flow of bytes through one server connection, as a base of
:class:`~hbchat.server.connection.ChatServerProtocol`: its output as a push producer (the
transport pauses it over the high-water mark, which drives :mod:`hbchat.server.backpressure`),
the backlog a congested connection may hold (``--sendq-max``), the pauses of its reading that
backpressure and a login ask for, and the last write of a close on purpose.

Apart from the connection's verbs and lifecycle because it is what every delivery runs
through: the hot path of a fan-out is :meth:`ConnectionFlow.deliver`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from hbchat.closereasons import CloseReason
from hbchat.heartbeat import HeartbeatProtocol
from hbchat.server.host import Host
from hbchat.server.lifecycle import LifeCore, Phase
from hbchat.server.limits import LineLimits
from hbchat.server.sendq import SendQueue

#: Seconds a congested receiver may hold every sender back before it counts as a slow
#: consumer; a healthy one drains in milliseconds.
SLOW_PATIENCE = 1.0

#: How long a connection closed on purpose may take to flush its last line before it is
#: aborted: a peer that does not read must not hold its socket, or a shutdown, for long.
CLOSE_GRACE = 3.0

#: The slots the flow's per-connection numbers live in, declared by the class that uses it
#: (one class of a hierarchy declares the slots; see :data:`hbchat.server.limits.LIMIT_SLOTS`).
FLOW_SLOTS = ("_backlog", "_closeTimer", "_producing", "_write", "bytesOut")


def awaits_handshake(transport: object) -> bool:
    """
    Whether ``transport`` is TLS (Twisted's) whose handshake has yet to happen: on a server,
    that is every TLS transport when its protocol's ``connectionMade`` runs (at the TCP
    accept), which then hears ``handshakeCompleted``.
    """
    return isinstance(transport, TLSMemoryBIOProtocol)


def unconnected(data: bytes) -> None:
    """The writer of a connection that has no transport yet."""
    raise RuntimeError("not connected")


@implementer(IPushProducer)
class ConnectionFlow(HeartbeatProtocol, LineLimits):
    """One connection's bytes out (and the pauses of its bytes in), for the connection class."""

    __slots__ = ()

    factory: Host
    #: The lifecycle's state (hbchat.server.lifecycle), set by the connection class.
    core: LifeCore
    _closeTimer: IDelayedCall | None
    _write: Callable[[bytes], None]
    _producing: bool
    #: Bytes written since the output went over the high-water mark (None: it is not).
    _backlog: int | None
    bytesOut: int
    #: Why it closed (a metric label), for hbchat.ops.
    closeReason: str | None
    #: What it holds unsent, in the transport and the kernel (None: not measurable).
    _sendq: SendQueue | None = None

    def startFlow(self) -> None:
        """Nothing written yet, nothing to write with until connected."""
        self._closeTimer = None
        self._write = unconnected
        self._producing = False
        self._backlog = None
        self.bytesOut = 0

    def cutAsSlow(self, why: str) -> None:
        """A slow consumer: abort without waiting for the output it cannot take."""
        raise NotImplementedError

    def _produce(self) -> None:
        """Become the streaming producer of our output: the transport reports its backlog."""
        cast(IConsumer, self.transport).registerProducer(self, True)
        self._producing = True

    def deliver(self, data: bytes) -> None:
        if self._backlog is not None:
            # Congested: what it holds unsent, here and in the kernel, must stay under
            # --sendq-max (without a meter, what was written since it congested); a write
            # that would pass it is not made: the client is cut first, so the bound holds
            # whatever one turn's batch weighs.
            sendq = self._sendq
            held = (self._backlog if sendq is None else sendq.unsent()) + len(data)
            if held > self.factory.maxBacklog:
                self.cutAsSlow(f"its backlog would pass {self.factory.maxBacklog} bytes")
                return
            self._backlog += len(data)
        self._write(data)
        self.bytesOut += len(data)

    # --- IPushProducer: the transport reports on our output ---

    def pauseProducing(self) -> None:
        # Twisted calls this on every write made while over the high-water mark, not only
        # on crossing it: count the backlog from the first call on.
        if self._backlog is None:
            self._backlog = 0
        self.factory.backpressure.congested(self)

    def resumeProducing(self) -> None:
        self._backlog = None
        self.factory.backpressure.drained(self)

    def stopProducing(self) -> None:
        pass

    # --- what backpressure asks of us ---

    def delivered(self) -> int | None:
        """Bytes of output the peer has acknowledged so far (None: not measurable)."""
        sendq = self._sendq
        return None if sendq is None else self.bytesOut - sendq.unsent()

    def unsent(self) -> int | None:
        """Output not yet acknowledged, in the transport and the kernel (None: not measurable)."""
        sendq = self._sendq
        return None if sendq is None or not self.connected else sendq.unsent()

    def pauseReading(self) -> None:
        self.readingPaused(self.clock.seconds())
        # Stream transports are push producers of what they read.
        cast(IPushProducer, self.transport).pauseProducing()

    def resumeReading(self) -> None:
        phase = self.core.phase
        if phase is not Phase.AUTHENTICATING and not phase.ended:
            self.readingResumed(self.clock.seconds())
            cast(IPushProducer, self.transport).resumeProducing()

    def _writeAndClose(self, data: bytes, reason: CloseReason) -> None:
        # The reason is handed in with the last line: nothing re-reads what was written.
        self.closeReason = reason.label
        self.bytesOut += len(data)
        link = self.link
        link.write(data)
        # While a producer is registered, a transport whose output drains resumes it
        # instead of finishing the close; without this a close over the high-water mark
        # ended in an abort (RST) after CLOSE_GRACE.
        if self._producing:
            self._producing = False
            cast(IConsumer, link).unregisterProducer()
        link.loseConnection()
        self._closeTimer = self.clock.callLater(CLOSE_GRACE, link.abortConnection)
