"""
The outbox sent at the server's pace: what the user typed goes out no faster than allowed.

The server advertises its rate limit in HELLO (``rate=``, ``burst=``); :func:`pace_for`
turns that into the share the client uses for its chat lines.  A refused line (ERR 429)
goes back to the front of the outbox, the pace halves, and from then on (on that
connection) one SAY is in flight at a time so that the order holds.  The lines and their
echoes are the :class:`~hbchat.client.session.ClientSession`'s; this module only decides
when each goes out, with the clock it is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hbchat.client.session import ClientSession
from hbchat.config import DEFAULT_BURST, DEFAULT_RATE
from hbchat.ratelimit import Bucket

#: The longest line the client sends, for a server on the default --max-line.
MAX_LINE = 4096
#: The longest text the client sends in one SAY.
MAX_TEXT = MAX_LINE - len(b"SAY ")

#: The shortest wait for the pace's next token, in seconds.
MIN_PACE_WAIT = 0.001

#: The share of the server's advertised rate and burst the client uses for its chat
#: lines: the rest is room for heartbeats, WHO, and lines bunched up by the network.
PACE_SHARE = 0.8


def pace_for(rate: float, burst: int) -> Bucket | None:
    """How fast we send SAY and TELL to a server that allows ``rate`` lines/s, ``burst`` at once (0: no limit)."""
    if rate <= 0:
        return None
    return Bucket(rate * PACE_SHARE, max(1.0, burst * PACE_SHARE / 2))


def chat_text(text: str) -> bytes:
    """A user's text as it goes on the wire; ValueError for one that cannot (empty, several lines, too long)."""
    data = text.encode("utf-8")
    if not data:
        raise ValueError("empty message")
    if b"\n" in data or b"\r" in data:
        raise ValueError("a message is one line: no line breaks")
    if len(data) > MAX_TEXT:
        raise ValueError(f"message too long ({len(data)} bytes; at most {MAX_TEXT})")
    return data


def tell_line(nick: str, text: str) -> bytes:
    """A TELL line; ValueError for one the server would refuse as too long."""
    line = b"TELL " + nick.encode("utf-8") + b" " + chat_text(text)
    if len(line) > MAX_LINE:
        # The server would refuse it (ERR 413), and the client would take that for a SAY's refusal.
        raise ValueError(f"message too long ({len(line)} bytes with the TELL and nick; at most {MAX_LINE})")
    return line


class PacedOutbox:
    """Sends the session's outbox through the ready connection, at the pace of its server."""

    def __init__(self, session: ClientSession, clock: IReactorTime) -> None:
        self.session = session
        self.clock = clock
        #: How fast SAY and TELL may go out (hbchat.ratelimit), from the server's HELLO.
        self.pace: Bucket | None = None
        #: The pace bucket's state, and the wait for its next token.
        self._fullAt = 0.0
        self._call: IDelayedCall | None = None
        #: Where lines go (a ready connection), or ``None`` while there is none.
        self._sink: Callable[[bytes], None] | None = None
        #: Refused lines put back at the front of the outbox since it last sent one; when we last slowed down.
        self._requeued = 0
        self._slowedAt = -math.inf
        #: After an ERR 429 on this connection: one SAY in flight at a time, so that a line
        #: sent again is not overtaken by the ones behind it.
        self.oneAtATime = False

    def greeted(self, pace: Bucket | None) -> None:
        """A new connection's HELLO: its server's pace, and all lines may be in flight at once."""
        self.pace, self._fullAt = pace, 0.0
        self.oneAtATime = False

    def ready(self, sink: Callable[[bytes], None]) -> None:
        """The connection is registered: lines (without their newline) go to ``sink`` from now on."""
        self._sink = sink
        self.flush()

    def stop(self) -> None:
        """The connection is gone (or we quit): nothing is sent until the next one is ready."""
        self._sink = None
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def submit(self, line: bytes) -> None:
        """Keep a line (raises OutboxFullError) and send what may go now."""
        self.session.queue(line)
        self.flush()

    def echoed(self) -> None:
        """One of our SAYs came back: with one in flight at a time, the next may go."""
        if self.oneAtATime:
            self.flush()

    def flush(self) -> None:
        """Send what waits in the outbox, as fast as the pace allows; come back for the rest."""
        sink = self._sink
        if self._call is not None or sink is None:
            return
        outbox, pace = self.session.outbox, self.pace
        now = self.clock.seconds()
        while outbox:
            if self.oneAtATime and self.session.unechoed:
                return  # sent again when the echo comes (echoed)
            if pace is not None:
                full_at = pace.take(self._fullAt, now)
                if full_at is None:
                    # At least a millisecond: a wait that rounds to nothing must not spin.
                    delay = max(MIN_PACE_WAIT, pace.wait(self._fullAt, now))
                    self._call = self.clock.callLater(delay, self._again)
                    return
                self._fullAt = full_at
            self._requeued = 0
            line = outbox.popleft()
            self.session.sending(line)
            sink(line)

    def _again(self) -> None:
        self._call = None
        self.flush()

    def rate_limited(self, text: str) -> str:
        """
        ERR 429: the server refused a line.  A refused SAY is our oldest unechoed one (the
        server answers lines in order): it goes back to the front of the outbox; we slow
        down to half our pace, so that the server never has to kick us, and from now on
        send a SAY only once the one before it has come back, so that the order holds.
        Returns the note for the user; the caller flushes after telling it.
        """
        refused_verb = text.rpartition(": ")[2].split(" ")[0]
        if refused_verb == "SAY":
            refused = self.session.refuse_oldest()
            if refused is not None:
                # Several refusals in a row go back in the order they were sent.
                self.session.outbox.insert(self._requeued, b"SAY " + refused)
                self._requeued += 1
        now = self.clock.seconds()
        if now - self._slowedAt >= 1.0:  # one burst of refusals halves the pace once
            self._slowedAt = now
            pace = self.pace or pace_for(DEFAULT_RATE, DEFAULT_BURST)
            assert pace is not None  # the default rate is not 0
            self.pace = Bucket(max(1.0, pace.rate / 2), max(1.0, pace.burst / 2))
        assert self.pace is not None
        self.oneAtATime = True
        note = f"slowing down to {self.pace.rate:g} lines/s"
        if refused_verb not in ("SAY", "PING", "PONG"):
            note += f"; a {refused_verb or 'line'} was not handled"
        return note
