"""
The outbox sent at the server's pace: what the user typed goes out no faster than allowed.

The server advertises its rate limit in HELLO (``rate=``, ``burst=``); :func:`pace_for`
turns that into the share the client uses for its chat lines.  A refused line (ERR 429)
goes back to the front of the outbox, the pace halves, and from then on (on that
connection) one SAY is in flight at a time so that the order holds.  The lines and their
echoes are the :class:`~hbchat.client.session.ClientSession`'s; this module only decides
when each goes out, with the clock it is given.

A TELL has no echo, so its fate is learnt another way: right after it goes ``PING told``
(:data:`TELL_BARRIER`), whose ``PONG told`` says the TELL was handled (the server answers a
connection's lines in order); an ERR for the TELL comes before that PONG.  So one TELL is in
flight at a time, and those PINGs go no faster than :data:`BARRIER_RATE` (the server's
PING budget is one a second).  A line refused with ``ERR 503 cluster unavailable``
(hbchat.client.unavailable) goes back to the front of the outbox, which then holds
everything for a jittered wait (:meth:`PacedOutbox.hold_for`) before it tries again.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hbchat.client.session import ClientSession
from hbchat.client.unavailable import retry_wait
from hbchat.config import DEFAULT_BURST, DEFAULT_RATE
from hbchat.ratelimit import Bucket

#: The longest line the client sends, for a server on the default --max-line.
MAX_LINE = 4096
#: The longest text the client sends in one SAY.
MAX_TEXT = MAX_LINE - len(b"SAY ")

#: The shortest wait for the pace's next token, in seconds.
MIN_PACE_WAIT = 0.001

#: The PING sent right after a TELL; its PONG says the TELL was handled.
TELL_BARRIER = b"PING told"
#: The answer to it (what follows ``PONG``).
TELL_BARRIER_ANSWER = b"told"
#: How many of those PINGs a second, and at once: under the server's PING budget (one a
#: second, ten at once), with room for the heartbeat's.
BARRIER_RATE = 0.8
BARRIER_BURST = 5.0

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
        #: After an ERR 429 or 503 on this connection: one SAY in flight at a time, so that a
        #: line sent again is not overtaken by the ones behind it.
        self.oneAtATime = False
        #: The budget of the PINGs sent after TELLs (TELL_BARRIER).
        self._barriers = Bucket(BARRIER_RATE, BARRIER_BURST)
        self._barriersFullAt = 0.0
        #: A PING after a TELL to be sent again (its first one was refused, ERR 429).
        self._barrierCall: IDelayedCall | None = None
        #: Until when the outbox holds its lines (hold_for).
        self._heldUntil = -math.inf
        #: Refusals in a row for an unavailable cluster (hbchat.client.unavailable); 0 once a line got through.
        self.unavailable = 0

    def greeted(self, pace: Bucket | None) -> None:
        """A new connection's HELLO: its server's pace, and all lines may be in flight at once."""
        self.pace, self._fullAt = pace, 0.0
        self.oneAtATime = False
        # A TELL in flight when the last connection ended is not known to have arrived or
        # not (as with any line without an echo): it is not sent again.
        self.session.tellInFlight = None

    def ready(self, sink: Callable[[bytes], None]) -> None:
        """The connection is registered: lines (without their newline) go to ``sink`` from now on."""
        self._sink = sink
        self.flush()

    def stop(self) -> None:
        """The connection is gone (or we quit): nothing is sent until the next one is ready."""
        self._sink = None
        for call in (self._call, self._barrierCall):
            if call is not None and call.active():
                call.cancel()
        self._call = self._barrierCall = None
        self._heldUntil = -math.inf  # the next connection (perhaps another node) starts unheld

    def submit(self, line: bytes) -> None:
        """Keep a line (raises OutboxFullError) and send what may go now."""
        self.session.queue(line)
        self.flush()

    def echoed(self) -> None:
        """One of our SAYs came back: with one in flight at a time, the next may go."""
        self.unavailable = 0
        if self.oneAtATime:
            self.flush()

    def told(self) -> None:
        """``PONG told``: the TELL in flight was handled; the next one may go."""
        if self.session.tell_handled() is not None:
            self.unavailable = 0
        self.flush()

    def tell_refused(self, again: bool) -> None:
        """
        An ERR for the TELL in flight: with ``again`` (the server could not handle it now)
        it goes back to the outbox, in its place; else it is dropped (ERR 406: no such nick).
        """
        line = self.session.tell_handled()
        if line is not None and again:
            self.requeue(line)
            return  # the caller holds the outbox
        self.flush()

    def requeue(self, line: bytes) -> None:
        """A refused line goes back to the front of the outbox, after those refused before it (in the order sent)."""
        self.session.outbox.insert(self._requeued, line)
        self._requeued += 1

    def _ask_again(self) -> None:
        if self._barrierCall is None or not self._barrierCall.active():
            self._barrierCall = self.clock.callLater(1.0, self._barrier_again)

    def _barrier_again(self) -> None:
        self._barrierCall = None
        if self._sink is not None and self.session.tellInFlight is not None:
            self._sink(TELL_BARRIER)

    def hold_for(self, rng: random.Random) -> float:
        """
        The cluster is unavailable (ERR 503): send nothing for a jittered wait that doubles
        with each refusal in a row (hbchat.client.unavailable), then go on, one SAY at a time;
        the refusals of lines already in flight meanwhile do not make it longer.  The wait
        (what is left of it, if one is under way).
        """
        now = self.clock.seconds()
        if self._heldUntil > now:
            return self._heldUntil - now
        self.unavailable += 1
        wait = retry_wait(self.unavailable, rng)
        self._heldUntil = now + wait
        self.oneAtATime = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = self.clock.callLater(wait, self._again)
        return wait

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
            tell = outbox[0].startswith(b"TELL ")
            if tell:
                if self.session.tellInFlight is not None:
                    return  # sent when the one in flight is known handled (told, tell_refused)
                barriers = self._barriers.take(self._barriersFullAt, now)
                if barriers is None:
                    delay = max(MIN_PACE_WAIT, self._barriers.wait(self._barriersFullAt, now))
                    self._call = self.clock.callLater(delay, self._again)
                    return
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
            if tell:
                assert barriers is not None
                self._barriersFullAt = barriers
                sink(TELL_BARRIER)

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
                self.requeue(b"SAY " + refused)
        elif refused_verb == "TELL":
            refused_tell = self.session.tell_handled()
            if refused_tell is not None:
                self.requeue(refused_tell)
        elif refused_verb == "PING" and self.session.tellInFlight is not None:
            # Perhaps the PING after our TELL: ask again, later, whether the TELL was handled.
            self._ask_again()
        now = self.clock.seconds()
        if now - self._slowedAt >= 1.0:  # one burst of refusals halves the pace once
            self._slowedAt = now
            pace = self.pace or pace_for(DEFAULT_RATE, DEFAULT_BURST)
            assert pace is not None  # the default rate is not 0
            self.pace = Bucket(max(1.0, pace.rate / 2), max(1.0, pace.burst / 2))
        assert self.pace is not None
        self.oneAtATime = True
        note = f"slowing down to {self.pace.rate:g} lines/s"
        if refused_verb not in ("SAY", "TELL", "PING", "PONG"):
            note += f"; a {refused_verb or 'line'} was not handled"
        return note
