"""
The heartbeat shared by the server's and the client's protocols.

A ``LoopingCall`` sends ``PING <token>`` every interval, and ``TimeoutMixin`` aborts the
connection when nothing at all has arrived for the idle timeout.  Aborting, not closing:
``loseConnection()`` waits for buffered output to drain, and a dead peer never drains it.

The clock is injected (``IReactorTime``) so tests drive time with ``task.Clock``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.protocols.policies import TimeoutMixin

from hbchat import wire


class HeartbeatProtocol(Protocol, TimeoutMixin):
    """
    Liveness for one connection, in both directions.

    Subclasses call :meth:`noteTraffic` whenever bytes arrive, route PING and PONG lines to
    :meth:`answerPing` and :meth:`pongReceived`, implement :meth:`sendLine`, and may
    override :meth:`heartbeatTimedOut` to record why the connection is going away.
    """

    # Per-connection state in slots, not in an instance dictionary: with thousands of
    # connections the difference is a few hundred bytes each.
    __slots__ = (
        "_heardSincePing",
        "_pingSentAt",
        "_pingToken",
        "_pinger",
        "_pingsSent",
        "_skipWhileIdleBelow",
        "_verdict",
        "clock",
        "lastReceived",
        "pingInterval",
        "rtt",
    )

    clock: IReactorTime
    #: Skip a PING when the peer has sent something since the previous one: any traffic
    #: already proves it is alive, and under load this halves heartbeat traffic.  A PING is
    #: only skipped while the one after it will still be answered in time, so a peer that
    #: does nothing but answer PINGs is never cut (see :meth:`_ping`).
    skipPingWhenHeard = True

    pingInterval: float | None
    lastReceived: float
    #: Round-trip time of the last answered PING, in seconds.
    rtt: float | None

    _pinger: LoopingCall | None
    _verdict: IDelayedCall | None
    _skipWhileIdleBelow: float
    _heardSincePing: bool
    _pingsSent: int
    _pingToken: bytes
    _pingSentAt: float

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.pingInterval = None
        self.lastReceived = 0.0
        self.rtt = None
        self._pinger = None
        self._verdict = None
        self._skipWhileIdleBelow = 0.0
        self._heardSincePing = False
        self._pingsSent = 0
        self._pingToken = b""
        self._pingSentAt = 0.0

    @property
    def link(self) -> ITCPTransport:
        """The transport of a connected protocol (``abortConnection`` included)."""
        assert self.transport is not None, "not connected"
        return cast(ITCPTransport, self.transport)

    # TimeoutMixin schedules through this; route it to the injected clock.
    def callLater(self, period: float, func: Callable[..., Any]) -> IDelayedCall:
        return self.clock.callLater(period, func)

    def sendLine(self, line: bytes) -> None:
        """Send one complete line (LF included)."""
        raise NotImplementedError

    def startHeartbeat(self, interval: float, timeout: float) -> None:
        """Ping every ``interval`` seconds; abort after ``timeout`` seconds of silence."""
        self.changeIdleTimeout(timeout)
        self.pingInterval = interval
        self._skipWhileIdleBelow = timeout - 1.5 * interval
        # Intervals are counted from here; what came before does not excuse the first PING.
        self._heardSincePing = False
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        pinger = self._pinger = LoopingCall(self._ping)
        pinger.clock = self.clock
        pinger.start(interval, now=False)

    def stopHeartbeat(self) -> None:
        """Stop pinging and stop watching for silence (the connection is gone or going)."""
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        self._pinger = None
        if self._verdict is not None and self._verdict.active():
            self._verdict.cancel()
        self._verdict = None
        self.setTimeout(None)

    def changeIdleTimeout(self, period: float) -> None:
        """
        Restart the idle countdown with a new length.

        Lengthening a pending ``DelayedCall`` is O(1); moving one earlier searches the
        reactor's heap, so a shorter period replaces the call instead.
        """
        if self.timeOut is not None and period < self.timeOut:
            self.setTimeout(None)
        self.setTimeout(period)

    def noteTraffic(self) -> None:
        """
        Bytes arrived: the peer is alive.

        Before the heartbeat starts, the pending timeout is a deadline (to register, or to
        be greeted), and traffic does not postpone it.
        """
        self._heardSincePing = True
        self.lastReceived = self.clock.seconds()
        if self.pingInterval is not None:
            self.resetTimeout()

    def answerPing(self, token_part: bytes) -> None:
        """Answer ``PING<token_part>`` at once with the same token."""
        self.sendLine(wire.pong(token_part))

    def pongReceived(self, token: bytes) -> None:
        """
        A PONG arrived; if it answers our latest PING, it measures the round trip.

        That answer does not make the next PING redundant (it was caused by ours), so it
        does not count as the peer having spoken; it still resets the idle timer.
        """
        if token == self._pingToken and self._pingToken:
            self.rtt = self.clock.seconds() - self._pingSentAt
            self._pingToken = b""
            self._heardSincePing = False
            self.roundTripMeasured(self.rtt)

    def roundTripMeasured(self, rtt: float) -> None:
        """A PING of ours was answered after ``rtt`` seconds (a hook for statistics)."""

    def idleSeconds(self) -> float:
        """Seconds since the peer last sent anything."""
        return self.clock.seconds() - self.lastReceived

    def _ping(self) -> None:
        # Skipping this PING means the next one goes out an interval from now, and its
        # answer must still beat the idle timeout: allow half an interval for the round trip.
        heard, self._heardSincePing = self._heardSincePing, False
        if heard and self.skipPingWhenHeard and self.idleSeconds() < self._skipWhileIdleBelow:
            return
        self._pingsSent += 1
        self._pingToken = b"%d" % self._pingsSent
        self._pingSentAt = self.clock.seconds()
        self.sendLine(wire.ping(self._pingToken))

    def timeoutConnection(self) -> None:
        """
        The idle timer fired: judge the connection one reactor turn from now.

        The reactor runs due timers before it reads sockets.  After a stall (a long GC pause,
        a blocking call, a starved VM) every idle timer fires at once while the peers' data
        still waits unread; the next turn reads it.  A peer heard by then is spared.
        """
        self._verdict = self.clock.callLater(0, self._judgeSilence, self.lastReceived)

    def _judgeSilence(self, heard_at: float) -> None:
        self._verdict = None
        if self.pingInterval is not None and self.lastReceived != heard_at:
            self.heartbeatSpared(self.lastReceived - heard_at)
            if self.timeOut is not None:
                self.setTimeout(self.timeOut)
            return
        self.silent()

    def silent(self) -> None:
        """Nothing arrived for the whole idle timeout: abort the connection."""
        self.heartbeatTimedOut(self.idleSeconds())
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        if self.transport is not None:
            self.link.abortConnection()

    def heartbeatSpared(self, late: float) -> None:
        """A timeout verdict was withdrawn: the peer's data was waiting behind a stall."""

    def heartbeatTimedOut(self, idle: float) -> None:
        """Called right before a silent connection is aborted."""
