"""
What a client connection needs from whoever owns it: the seam between
:class:`~hbchat.client.protocol.ChatClientProtocol` and
:class:`~hbchat.client.factory.ChatClientFactory`, so that neither module imports the other's
class for its types (the factory builds protocols; a protocol only knows this interface).
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure
from zope.interface import Interface

from hbchat.client.lifecycle import Phase
from hbchat.ratelimit import Bucket


class IConnectionOwner(Interface):
    """The session a connection serves: it hears what the connection heard, in order."""

    def phaseOf(protocol: Any) -> Phase | None:  # noqa: N805 (zope: no self)
        """Where the client is in its life if ``protocol`` is the connection in use, else ``None``."""

    def helloOverdue(protocol: Any) -> bool:  # noqa: N805 (zope: no self)
        """No HELLO came on ``protocol`` within HELLO_TIMEOUT; whether that ends the attempt."""

    def greeted(protocol: Any, auth: bool, pace: Bucket | None) -> None:  # noqa: N805 (zope: no self)
        """A valid HELLO: ``auth`` if the server requires a password; its pace for our chat lines."""

    def welcomed(protocol: Any, nick: bytes, token: bytes, seq: int) -> None:  # noqa: N805 (zope: no self)
        """WELCOME nick token seq."""

    def replayEnded(protocol: Any, count: int, complete: bool) -> None:  # noqa: N805 (zope: no self)
        """RESUMED count complete|partial."""

    def event(seq: int, kind: bytes, nick: bytes, detail: bytes) -> None:  # noqa: N805 (zope: no self)
        """A MSG, JOIN or LEFT numbered ``seq``."""

    def serverError(protocol: Any, code: int, text: str) -> None:  # noqa: N805 (zope: no self)
        """ERR code text."""

    def farewell(protocol: Any, reason: str, retry: float | None, at: float | None) -> None:  # noqa: N805 (zope: no self)
        """BYE reason, with the server's retry hint if it gave one."""

    def told(protocol: Any) -> None:  # noqa: N805 (zope: no self)
        """``PONG told``: the TELL sent before it was handled (hbchat.client.outbox)."""

    def lost(protocol: Any, reason: Failure) -> None:  # noqa: N805 (zope: no self)
        """The connection ended."""
