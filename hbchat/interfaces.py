"""The interfaces between hbchat's client and the programs that embed it."""

from __future__ import annotations

from zope.interface import Interface


class IChatObserver(Interface):
    """
    Told everything a chat client sees, once each, in order.

    Events replayed after a reconnect are reported like live ones; an event already
    reported is never reported again.  The terminal client is one implementation.
    """

    def registered(nick: str, resumed: bool) -> None:
        """The server welcomed us: a new session, or ours resumed."""

    def message(seq: int, nick: str, text: str, own: bool) -> None:
        """A MSG; ``own`` when it is the echo of something we said."""

    def private(sender: str, text: str) -> None:
        """A PRIV for us."""

    def joined(seq: int, nick: str) -> None:
        """A JOIN."""

    def left(seq: int, nick: str, reason: str) -> None:
        """A LEFT (reason: quit, timeout, slow, error or kicked)."""

    def users(nicks: list[str]) -> None:
        """The answer to WHO."""

    def resumed(count: int, complete: bool, missing: int | None) -> None:
        """
        A replay ended, after ``count`` missed messages were reported.  ``complete`` is False
        when the server's history no longer held every event since our last one; then
        ``missing`` is how many events (messages, joins, leaves) are gone, or ``None`` when
        that cannot be told.
        """

    def historyLost() -> None:
        """The server did not know our session any more: we registered afresh."""

    def serverError(code: int, text: str) -> None:
        """An ERR that the client did not handle itself."""

    def disconnected(reason: str) -> None:
        """The connection ended; a reconnect follows unless we gave up."""

    def reconnecting(delay: float, attempt: int, reason: str) -> None:
        """
        The next attempt is ``delay`` seconds away; ``reason`` says, in words for a person,
        why the last attempt failed or the connection ended (``could not connect:
        connection refused``, ``the server was silent for 90.0s``).
        """

    def gaveUp(reason: str) -> None:
        """No more attempts: ``reason`` says why, in words for a person."""

    def rtt(seconds: float) -> None:
        """A round-trip time was measured."""
