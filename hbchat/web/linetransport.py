"""
The transport a :class:`~hbchat.server.connection.ChatServerProtocol` writes to when its
client is a WebSocket: each line it writes becomes one text frame, and its close becomes
the WebSocket's closing handshake with a close code that says why.

Everything else goes to the stream beneath the WebSocket (TCP, or TLS over TCP), so the
connection works as on a ``--listen`` endpoint: it registers itself as the producer of its
output there (the stream's buffer is what congests, :mod:`hbchat.server.backpressure`),
pauses and resumes reading there, and finds the socket through ``transport`` for
keepalive, ``TCP_USER_TIMEOUT`` and the send queue (:mod:`hbchat.sockopts`,
:mod:`hbchat.server.sendq`).
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IAddress, IConsumer, IPushProducer, ITransport
from zope.interface import implementer

from hbchat.server.writethrough import writer_for
from hbchat.web.frames import FrameCache, close_code


class Socket(Protocol):
    """The WebSocket side, as the line transport sees it (:class:`hbchat.web.socket.ChatSocket`)."""

    #: The stream beneath the WebSocket.
    transport: Any

    def isOpen(self) -> bool: ...

    def closeWithCode(self, code: int, reason: str) -> None: ...


class Closing(Protocol):
    """The connection on top, as far as its close goes."""

    closeReason: str | None


@implementer(ITransport, IConsumer, IPushProducer)
class LineTransport:
    """One WebSocket as a transport of lines."""

    __slots__ = ("_cache", "_write", "closeCode", "disconnecting", "protocol", "socket", "transport")

    def __init__(self, socket: Socket, cache: FrameCache) -> None:
        self.socket = socket
        #: The stream beneath (read by hbchat.sockopts to find the socket).
        self.transport = socket.transport
        self._cache = cache
        #: Straight to the socket when nothing is queued, as on --listen (hbchat.server.writethrough).
        self._write = writer_for(socket.transport)
        #: The connection on top, once connected.
        self.protocol: Closing | None = None
        #: A close code decided before the close (a binary frame: 1003); else the close
        #: reason's (hbchat.web.frames.close_code).
        self.closeCode: int | None = None
        self.disconnecting = False

    # --- ITransport ---

    def write(self, data: bytes) -> None:
        if self.disconnecting or not data or not self.socket.isOpen():
            return
        self._write(self._cache.frames(data))

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """The closing handshake, once: everything written goes first."""
        if self.disconnecting:
            return
        self.disconnecting = True
        code = self.closeCode
        if code is None:
            code = close_code(None if self.protocol is None else self.protocol.closeReason)
        reason = "" if self.protocol is None else (self.protocol.closeReason or "")
        self.socket.closeWithCode(code, reason)

    def abortConnection(self) -> None:
        self.disconnecting = True
        self.transport.abortConnection()

    def getPeer(self) -> IAddress:
        return self.transport.getPeer()  # type: ignore[no-any-return]

    def getHost(self) -> IAddress:
        return self.transport.getHost()  # type: ignore[no-any-return]

    def getPeerCertificate(self) -> Any:
        """The client's certificate through a TLS stream (``--tls-identity``); None otherwise."""
        get = getattr(self.transport, "getPeerCertificate", None)
        return None if get is None else get()

    # --- IConsumer: the connection as the producer of its output ---

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    # --- IPushProducer: reading, paused by backpressure ---

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.stopProducing()
