"""
What a client remembers across reconnects so that nothing is lost and nothing doubled.

The server handles a connection's lines in order and echoes every SAY as a MSG, and a
RESUME replays every event after the last one we saw, our own MSGs included.  So after a
complete replay, the SAY lines still waiting for their echo are exactly the ones that never
reached the server: those, and then whatever was typed while disconnected, are sent again,
and nothing is lost or doubled.

After a partial replay (the history ring no longer held everything) or a lost session
(ERR 404), an echo may be gone with the history.  The order still tells a lot: if the echo
of a later line is replayed, every earlier line was delivered too.  A line about which
nothing can be known is sent again: a possible duplicate is preferred to a possible loss,
and the user has been told of the gap.
"""

from __future__ import annotations

from collections import deque


class OutboxFullError(Exception):
    """Too many lines are waiting to be sent; the caller must tell its user."""


class ClientSession:
    """The token, the last event seen, the outbox and the lines not yet echoed."""

    def __init__(self, nick: bytes, outbox_limit: int = 1000) -> None:
        self.nick = nick
        self.token: bytes | None = None
        self.last_seq = 0
        self.outbox_limit = outbox_limit
        #: Lines (``SAY ...``, ``TELL ...``) typed while they could not be sent.
        self.outbox: deque[bytes] = deque()
        #: Texts of SAY lines sent on a connection whose MSG echo has not arrived yet.
        self.unechoed: deque[bytes] = deque()
        #: The TELL line sent on this connection whose fate is not known yet (a TELL has no
        #: echo: the PONG of the PING sent right after it tells that it was handled, an ERR
        #: before that PONG that it was not).  One at a time (hbchat.client.outbox).
        self.tellInFlight: bytes | None = None

    @property
    def idle(self) -> bool:
        """Everything the user said has been delivered."""
        return not self.outbox and not self.unechoed and self.tellInFlight is None

    def queue(self, line: bytes) -> None:
        """Keep a line for when the connection is back."""
        if len(self.outbox) >= self.outbox_limit:
            raise OutboxFullError(f"{len(self.outbox)} lines are already waiting to be sent")
        self.outbox.append(line)

    def sending(self, line: bytes) -> None:
        """A line is going out on a live connection."""
        verb, _, text = line.partition(b" ")
        if verb == b"SAY":
            self.unechoed.append(text)
        elif verb == b"TELL":
            self.tellInFlight = line

    def tell_handled(self) -> bytes | None:
        """The TELL in flight was handled (or refused for good): forget it; return it."""
        line, self.tellInFlight = self.tellInFlight, None
        return line

    def registered(self, nick: bytes, token: bytes, seq: int) -> None:
        """WELCOME to a new session (NICK): events up to ``seq`` are not ours to see."""
        self.nick = nick
        self.token = token
        self.last_seq = seq

    def forget(self) -> None:
        """The server no longer knows our session (ERR 404): start over with NICK."""
        self.token = None

    def is_new(self, seq: int) -> bool:
        """Whether an event is one we have not seen; remembers it if so."""
        if seq <= self.last_seq:
            return False
        self.last_seq = seq
        return True

    def echoed(self, nick: bytes, text: bytes) -> bool:
        """
        A MSG arrived: if it echoes one of our unechoed SAYs, that one and every earlier one
        were delivered (the server handles our lines in order; earlier echoes may have been
        lost with a partial history).
        """
        unechoed = self.unechoed
        if nick != self.nick or not unechoed:
            return False
        if unechoed[0] == text:
            unechoed.popleft()
            return True
        for index, pending in enumerate(unechoed):
            if pending == text:
                for _ in range(index + 1):
                    unechoed.popleft()
                return True
        return False

    def refuse_oldest(self) -> bytes | None:
        """The server refused our oldest unechoed line (too long): forget it; return its text."""
        return self.unechoed.popleft() if self.unechoed else None

    def to_resend(self) -> list[bytes]:
        """
        After a replay (or a fresh registration): the lines to send now, in order.

        SAY lines still unechoed never reached the server; outbox lines were never sent.
        Both are handed back and forgotten here; sending them records them again.
        """
        lines = [b"SAY " + text for text in self.unechoed]
        lines.extend(self.outbox)
        self.unechoed.clear()
        self.outbox.clear()
        return lines
