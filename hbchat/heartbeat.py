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
from twisted.protocols.policies import TimeoutMixin

from hbchat import wire
from hbchat.coarseclock import CoarseClock
from hbchat.pinger import Pinger

#: The share of a ping interval a peer is given to answer a PING before its idle timeout
#: may cut it (docs/protocol.md, section 6: "within half an interval").
ANSWER_SHARE = 0.5


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
        "_askedAt",
        "_deadlineClock",
        "_heardSincePing",
        "_pingSentAt",
        "_pingToken",
        "_pinger",
        "_pingerClock",
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

    _pinger: Pinger | None
    _verdict: IDelayedCall | None
    _skipWhileIdleBelow: float
    _heardSincePing: bool
    _pingsSent: int
    _pingToken: bytes
    _pingSentAt: float
    #: When the first PING since the peer was last heard went out (None: none yet).
    _askedAt: float | None

    def __init__(
        self, clock: IReactorTime, pinger_clock: CoarseClock | None = None, deadline_clock: CoarseClock | None = None
    ) -> None:
        self.clock = clock
        #: What TimeoutMixin's timer runs on: a server's connections share an exact coarse
        #: clock (reset by every read, the timer is put off by an assignment); without one,
        #: ``clock``.
        self._deadlineClock = deadline_clock
        #: What the pinger's LoopingCall runs on: a server's thousands of pingers share a
        #: coarse clock (hbchat.coarseclock); without one, ``clock``.
        self._pingerClock = pinger_clock
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
        self._askedAt = None

    @property
    def link(self) -> ITCPTransport:
        """The transport of a connected protocol (``abortConnection`` included)."""
        assert self.transport is not None, "not connected"
        return cast(ITCPTransport, self.transport)

    # TimeoutMixin schedules through this; route it to the injected clock.
    def callLater(self, period: float, func: Callable[..., Any]) -> IDelayedCall:
        if self._deadlineClock is not None:
            return self._deadlineClock.callLater(period, func)
        return self.clock.callLater(period, func)

    def sendLine(self, line: bytes) -> None:
        """Send one complete line (LF included)."""
        raise NotImplementedError

    def startHeartbeat(self, interval: float, timeout: float) -> None:
        """Ping every ``interval`` seconds; abort after ``timeout`` seconds of silence."""
        self.changeIdleTimeout(timeout)
        self.pingInterval = interval
        # A coarse pinger clock may send a PING up to its lateness after its time, and that
        # comes off the time the peer has to answer the PING after a skipped one.
        lateness = 0.0 if self._pingerClock is None else self._pingerClock.lateness
        self._skipWhileIdleBelow = timeout - 1.5 * interval - lateness
        # Intervals are counted from here; what came before does not excuse the first PING.
        self._heardSincePing = False
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        pinger = self._pinger = Pinger(self._ping)
        pinger.clock = self.clock if self._pingerClock is None else self._pingerClock
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
        self._askedAt = None
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
        self._sendPing()

    def _sendPing(self) -> None:
        self._pingsSent += 1
        self._pingToken = b"%d" % self._pingsSent
        self._pingSentAt = now = self.clock.seconds()
        if self._askedAt is None:
            self._askedAt = now
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
        if self.pingInterval is not None:
            if self.lastReceived != heard_at:
                self._spare(heard_at)
                return
            if not self._askedInTime(self.pingInterval):
                self._askFirst(self.pingInterval, heard_at)
                return
        self.silent()

    def _spare(self, heard_at: float) -> None:
        self.heartbeatSpared(self.lastReceived - heard_at)
        if self.timeOut is not None:
            self.setTimeout(self.timeOut)

    def _askedInTime(self, interval: float) -> bool:
        """
        Whether the silent peer was sent a PING it had time to answer: one that went out
        after it was last heard, at least :data:`ANSWER_SHARE` of an interval ago (or the
        timeout less an interval, if that is shorter).

        A server that runs on time always has (the skipping rule of :meth:`_ping` sees to
        it, and a PING goes out at most an interval after the peer was heard); one that was
        stalled sent no PINGs meanwhile, and a peer that speaks only when asked had nothing
        to answer.
        """
        asked = self._askedAt
        if asked is None:
            return False
        share = ANSWER_SHARE * interval
        if self.timeOut is not None:
            share = min(share, max(0.0, self.timeOut - interval))
        # A microsecond of slack: the timer and the PING were set from the same instants.
        return self.clock.seconds() - asked >= share - 1e-6

    def _askFirst(self, interval: float, heard_at: float) -> None:
        """Ask (PING now, unless a PING just went out) and judge one interval after asking."""
        if self._askedAt is None:
            self._sendPing()
        asked = self._askedAt
        assert asked is not None
        self.heartbeatAsked()
        wait = max(0.0, asked + interval - self.clock.seconds())
        self._verdict = self.clock.callLater(wait, self._judgeAnswer, heard_at)

    def _judgeAnswer(self, heard_at: float) -> None:
        """The interval after asking is over: an answer spares the peer, else it is judged."""
        self._verdict = None
        if self.lastReceived != heard_at:
            self._spare(heard_at)
            return
        # Judged like any expired timer: on the next turn, after reading what has arrived.
        self.timeoutConnection()

    def silent(self) -> None:
        """Nothing arrived for the whole idle timeout: abort the connection."""
        self.heartbeatTimedOut(self.idleSeconds())
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        if self.transport is not None:
            self.link.abortConnection()

    def heartbeatAsked(self) -> None:
        """A timeout verdict was put off to PING first: no PING had been asked in time (a stall)."""

    def heartbeatSpared(self, late: float) -> None:
        """A timeout verdict was withdrawn: the peer's data was waiting behind a stall."""

    def heartbeatTimedOut(self, idle: float) -> None:
        """Called right before a silent connection is aborted."""
