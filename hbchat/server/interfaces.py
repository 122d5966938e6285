"""
The seams of the server: the chat, its members, and what the server tells operations.

A connection (:class:`~hbchat.server.connection.ChatServerProtocol`) talks to the chat
only through :class:`IChat`; the chat talks back to its members only through
:class:`IChatMember`.  The in-memory chat (:class:`~hbchat.server.chat.Chat`) is one
implementation; one shared by several processes (through Redis, say) is meant to stand in
without the connection code changing, so what appends to or replays the chat's history
answers with a ``Deferred`` (the in-memory chat's have already fired), and sequence
numbers are assigned by the chat, never by its caller.

The server core emits what an operator counts through :class:`IServerEvents`, which
``hbchat.ops.stats`` implements and the service wires in: nothing in the core imports
``hbchat.ops``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from hbchat.closereasons import CloseReason
    from hbchat.server.sessions import Session


class IChatMember(Interface):
    """One connection as the chat sees it."""

    nick = Attribute("The nick it registered under (bytes), or None before.")
    peer = Attribute("Its address in words, for log lines.")
    host = Attribute("The address counted for --max-per-ip and --max-grace-per-ip (None: exempt).")
    session = Attribute("The session it holds (None: not registered, or handed on).")

    def deliver(data: bytes) -> None:
        """Write ``data`` (whole lines, batched by the chat's fan-out) to the peer."""

    def attached(session: Session[IChatMember]) -> None:
        """It holds ``session`` now (registered or resumed)."""

    def closeWith(line: bytes, reason: CloseReason) -> None:
        """End the connection on purpose: what is queued for it, then ``line``, then nothing."""


class IChat(Interface):
    """One chat: its sequence of events, history, sessions, nicks, presence and fan-out."""

    seq = Attribute("The number of the latest event (0: none yet).")
    stopping = Attribute("True once the chat is shutting down: departures are no longer announced.")

    def register(member: IChatMember, nick: bytes) -> Deferred[bool]:
        """
        NICK: a new session, WELCOME, and a JOIN for everyone; fires False if the nick is
        taken (the caller answers ERR 433), True once the chat has answered (WELCOME, or an
        ERR of its own: a chat in Redis answers ERR 503 while it cannot reach it).
        """

    def resume(member: IChatMember, token: bytes, last_seq: int) -> Deferred[bool]:
        """
        RESUME: take a session back and replay what it missed; fires False if the token is
        unknown (the caller answers ERR 404), True once the chat has answered.
        """

    def say(member: IChatMember, text: bytes) -> Deferred[int]:
        """A MSG from a registered ``member`` for everyone; fires with its sequence number (0: not said)."""

    def tell(member: IChatMember, nick: bytes, text: bytes) -> bool:
        """A PRIV to ``nick``; False if nobody of that nick is connected (True: handled, or answered)."""

    def who() -> bytes:
        """The USERS line: the registered users with a connection now."""

    def send(member: IChatMember, line: bytes) -> None:
        """A line for ``member`` alone, in order with the broadcasts of this turn."""

    def take(member: IChatMember) -> bytes:
        """What is queued for ``member`` and not yet written, taken out of the queue."""

    def leave(member: IChatMember, reason: CloseReason) -> None:
        """``member`` is finished: announce it (``LEFT`` with ``reason.left``), keep or end the session."""

    def closeSessions() -> None:
        """The chat ends: every session, attached or in grace, is closed."""


class Counted(Protocol):
    """What a connection counted, as operations read it (at its close, or at a scrape)."""

    closeReason: str | None
    _pingsSent: int
    pongsReceived: int
    bytesIn: int
    bytesOut: int


class IServerEvents(Interface):
    """What the server core tells operations (the counters behind /metrics)."""

    def connectionClosed(connection: Counted) -> None:
        """``connection`` is gone; its ``closeReason`` says why, its counters what it counted."""

    def roundTrip(seconds: float) -> None:
        """An answered PING took ``seconds``."""

    def resumed(outcome: str) -> None:
        """A RESUME ended: ``complete``, ``partial`` or ``unknown``."""

    def lineRateLimited() -> None:
        """A line was refused with ERR 429."""

    def loginFailed() -> None:
        """A login failed (ERR 401)."""

    def handshakeEvicted() -> None:
        """A connection still registering was closed to admit a newcomer."""

    def acceptingPaused() -> None:
        """Accepting paused: --max-handshakes connections are registering."""
