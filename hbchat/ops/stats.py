"""
What the server counts, in plain numbers, for :mod:`hbchat.metrics` to show at scrape time.

Nothing here takes a lock or calls into ``prometheus_client``: the server handles millions
of deliveries and tens of thousands of heartbeats a second, so the hot paths only add to
ints (per read, per write, per PONG), and everything else is computed when ``/metrics``
is scraped.  Per-connection counts live on the connection while it is open
(``bytesIn``, ``bytesOut``, ``pongsReceived``, and the heartbeat's own PING counter) and
are added to the totals here when it closes, so a scrape sums the totals and the open
connections.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from zope.interface import implementer

from hbchat.closereasons import CLOSE_LABELS
from hbchat.ops.histogram import Histogram
from hbchat.server.interfaces import Counted, IServerEvents

#: Bucket upper bounds of the PING round-trip histogram, in seconds.
RTT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

#: Outcomes of RESUME: every missed event replayed, some lost, or the token unknown.
RESUME_OUTCOMES = ("complete", "partial", "unknown")

#: Why connections close, as ``hbchat_connections_closed_total`` labels them: the LEFT
#: reasons (quit, timeout, slow, error), and for closes that announce no LEFT or that
#: the LEFT reason lumps together: replaced (another connection resumed the session),
#: shutdown, register_timeout, line_too_long, full (refused: ERR 503), unauthorized,
#: auth_busy and auth_backoff (a login refused unchecked, hbchat.authlimit), evicted (closed
#: unregistered to admit a newcomer, hbchat.server.handshakes) and tls_error (mostly a failed TLS
#: handshake, or a TLS connection closed before it was done).
#: What the server logs for each, in words, is hbchat.server.closes'; all are views of
#: hbchat.closereasons.CloseReason.
CLOSE_REASONS = CLOSE_LABELS


@dataclass
class Totals:
    """Counts over every connection, closed and open."""

    pingsSent: int = 0
    pongsReceived: int = 0
    bytesIn: int = 0
    bytesOut: int = 0


@implementer(IServerEvents)
class ServerStats:
    """The chat's counters; one per :class:`~hbchat.server.ChatFactory`, told by the core as IServerEvents."""

    def __init__(self) -> None:
        #: Connections closed, by reason (see ``CLOSE_REASONS``).
        self.closes: Counter[str] = Counter()
        #: RESUMEs, by outcome (see ``RESUME_OUTCOMES``).
        self.resumes: Counter[str] = Counter()
        #: Failed logins (ERR 401) with --auth.
        self.authFailures = 0
        #: Lines refused with ERR 429 (--rate, --burst, too many PINGs).
        self.rateLimited = 0
        #: Times accepting was paused because --max-handshakes connections were registering.
        self.acceptPauses = 0
        #: SIGHUPs, by outcome (see ``hbchat.hangup.RELOAD_OUTCOMES``).
        self.reloads: Counter[str] = Counter()
        #: Connections closed unregistered to admit a newcomer (--max-handshakes full).
        self.evictions = 0
        #: Round trips of answered PINGs, in seconds.
        self.rtt = Histogram(RTT_BUCKETS)
        #: What closed connections counted; open ones still hold theirs.
        self._closed = Totals()

    def roundTrip(self, seconds: float) -> None:
        self.rtt.observe(seconds)

    def resumed(self, outcome: str) -> None:
        self.resumes[outcome] += 1

    def lineRateLimited(self) -> None:
        self.rateLimited += 1

    def loginFailed(self) -> None:
        self.authFailures += 1

    def handshakeEvicted(self) -> None:
        self.evictions += 1

    def acceptingPaused(self) -> None:
        self.acceptPauses += 1

    def connectionClosed(self, protocol: Counted) -> None:
        """``protocol`` is gone: count why, and keep what it counted."""
        self.closes[protocol.closeReason or "error"] += 1
        closed = self._closed
        closed.pingsSent += protocol._pingsSent
        closed.pongsReceived += protocol.pongsReceived
        closed.bytesIn += protocol.bytesIn
        closed.bytesOut += protocol.bytesOut

    def totals(self, open_connections: Iterable[Counted]) -> Totals:
        """The closed connections' counts plus those of ``open_connections``."""
        closed = self._closed
        pings, pongs, received, sent = closed.pingsSent, closed.pongsReceived, closed.bytesIn, closed.bytesOut
        for protocol in open_connections:
            pings += protocol._pingsSent
            pongs += protocol.pongsReceived
            received += protocol.bytesIn
            sent += protocol.bytesOut
        return Totals(pings, pongs, received, sent)
