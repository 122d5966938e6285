"""
``/ws``: one browser (or any WebSocket client) as a chat connection.

:class:`ChatSocket` is autobahn's WebSocket server protocol on Twisted.  Once the opening
handshake is done it builds the same :class:`~hbchat.server.connection.ChatServerProtocol`
a ``--listen`` endpoint would (through its :class:`~hbchat.web.service.WebListener`, so the
connection is admitted, counted and labelled like any other) and connects it to a
:class:`~hbchat.web.linetransport.LineTransport`: one text frame in is one line in, one
line out is one text frame out.  What only a WebSocket can do wrong is answered here:

- a message whose payload passes ``--max-line``: ``ERR 413 line too long``, then close
  1009 (counted as soon as its length is known; the rest of it is not kept);
- a binary message: close 1003 (``ERR 400 ...`` first, so a person sees why);
- a text frame holding CR or LF: ``ERR 400 one line per frame ...`` (the frame is dropped);
- WebSocket pings: answered by the WebSocket layer, no more often than the protocol's own
  PINGs may be sent (``--ping``'s bucket), else close 1008.  They are not the heartbeat:
  browsers cannot send or see them, so only protocol lines count as a client's traffic.
"""

from __future__ import annotations

from typing import Any, cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from hbchat import wire
from hbchat.closereasons import CloseReason
from hbchat.server.connection import ChatServerProtocol
from hbchat.web.frames import (
    POLICY_VIOLATION,
    UNSUPPORTED_DATA,
    FrameCache,
    frame_error,
    small_text_frame,
)
from hbchat.web.linetransport import LineTransport

#: The WebSocket subprotocol of hbchat's line protocol, version 1.
SUBPROTOCOL = "hbchat.v1"

#: autobahn's records of the opening handshake, done with once the WebSocket is open
#: (class attributes of each factory's subclass hold them as None).
_HANDSHAKE_LEFTOVERS = (
    "http_headers",
    "http_request_data",
    "http_response_data",
    "http_status_line",
    "http_request_params",
)


def _is_utf8(payload: bytes) -> bool:
    if payload.isascii():
        return True
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


#: The most frames one message may come in (a browser sends one; a line is short).
MAX_FRAGMENTS = 16

ERR_FRAGMENTS = wire.err(400, f"a line in at most {MAX_FRAGMENTS} frames")

ERR_BINARY = wire.err(400, "binary frames are not accepted, send text frames")


class ChatSocket(WebSocketServerProtocol):
    """One WebSocket connection and the chat connection on top of it."""

    # (its ``log`` stays autobahn's txaio logger, which drops its many debug events unless
    # asked for them; what hbchat says about a connection goes to the connection's log)
    factory: ChatSocketFactory

    chat: ChatServerProtocol | None = None
    line: LineTransport | None = None
    #: The message being received is dropped (too long, binary, or the chat is done).
    _discard = False
    #: Frames of the message being received.
    _fragments = 0
    #: The full-again time of this connection's WebSocket ping bucket.
    _pingsFullAt = 0.0

    # --- the opening handshake ---

    def onConnect(self, request: ConnectionRequest) -> str | None:
        offered = list(request.protocols)
        if not offered:
            return None
        if SUBPROTOCOL not in offered:
            raise ConnectionDeny(400, f"subprotocol {SUBPROTOCOL} required")
        return SUBPROTOCOL

    def onOpen(self) -> None:
        self._compact()
        self.line = line = LineTransport(self, self.factory.cache)
        assert self.transport is not None
        chat = self.factory.listener.buildProtocol(self.transport.getPeer())
        self.chat = chat
        line.protocol = chat
        chat.makeConnection(line)

    def _compact(self) -> None:
        """
        Make this connection's attributes smaller once it is open.  autobahn copies about
        thirty settings from its factory into every connection and keeps the opening
        handshake's records: the settings are class attributes of this factory's own
        subclass (:class:`ChatSocketFactory`), the records are not read again, and the
        dictionary without them is rebuilt at half the size (3.3 to 1.6 KiB a connection).
        """
        attributes = self.__dict__
        for name in (*self.CONFIG_ATTRS, *_HANDSHAKE_LEFTOVERS):
            if name in attributes and name in type(self).__dict__:
                del attributes[name]
        self.__dict__ = dict(attributes)

    # --- what LineTransport asks ---

    def isOpen(self) -> bool:
        return bool(self.state == self.STATE_OPEN)

    def closeWithCode(self, code: int, reason: str) -> None:
        self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123], isReply=False)

    # --- messages in ---

    def dataReceived(self, data: bytes) -> None:
        # The commonest read, one whole small text frame (a PONG, a chat line) between
        # messages, is taken here: autobahn's general path costs about 10 us a frame, eight
        # times the line splitter's, and the heartbeat is mostly such frames
        # (docs/performance.md).  Anything else, or anything wrong, goes through autobahn.
        chat = self.chat
        if (
            chat is not None
            and not chat.core.phase.ended
            and self.state == self.STATE_OPEN
            and not self.data
            and not self.inside_message
            and self.current_frame is None
        ):
            payload = small_text_frame(data)
            if payload is not None and len(payload) <= self.factory.maxLine and _is_utf8(payload):
                self._discard = False
                self.onMessage(payload, False)
                return
        # (autobahn's own dataReceived formats a debug line's arguments on every read.)
        self._dataReceived(data)

    def onMessageEnd(self) -> None:
        # autobahn's also fires a "message" event for observers (a Deferred a message);
        # this one has none.
        if not self.failedByMe:
            self._onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None  # type: ignore[assignment]  # as autobahn itself does

    def onMessageBegin(self, isBinary: bool) -> None:  # noqa: N803
        super().onMessageBegin(isBinary)
        chat = self.chat
        self._discard = chat is None or chat.core.phase.ended
        self._fragments = 0
        if isBinary and not self._discard:
            self._discard = True
            self._refuse(ERR_BINARY, UNSUPPORTED_DATA, "sent a binary frame")

    def onMessageFrameBegin(self, length: int) -> None:
        super().onMessageFrameBegin(length)
        chat = self.chat
        if self._discard or chat is None:
            return
        limit = self.factory.maxLine
        if self.message_data_total_length > limit:
            self._discard = True
            chat.log.info("{peer} sent a frame over {limit} bytes", peer=chat.peer, limit=limit)
            chat.closeWith(wire.ERR_LINE_TOO_LONG, CloseReason.LINE_TOO_LONG)
            return
        self._fragments += 1
        if self._fragments > MAX_FRAGMENTS:
            # Empty continuation frames would never pass --max-line: bounded by count.
            self._discard = True
            self._refuse(ERR_FRAGMENTS, POLICY_VIOLATION, f"sent a message in over {MAX_FRAGMENTS} frames")

    def onMessageFrameData(self, payload: bytes) -> None:
        if not self._discard:
            super().onMessageFrameData(payload)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N803
        chat = self.chat
        if self._discard or chat is None:
            return
        error = frame_error(payload)
        if error is not None:
            chat.sendLine(error)
            return
        chat.dataReceived(payload + b"\n")

    def _refuse(self, line: bytes, code: int, why: str) -> None:
        chat, transport = self.chat, self.line
        if chat is None or transport is None:
            return
        chat.log.info("{peer} {why}: closed ({code})", peer=chat.peer, why=why, code=code)
        transport.closeCode = code
        chat.closeWith(line, CloseReason.ERROR)

    def onPing(self, payload: bytes) -> None:
        now = self.factory.clock.seconds()
        full_at = self.factory.pingBucket.take(self._pingsFullAt, now)
        if full_at is None:
            self._refuse(wire.err(429, "WebSocket pings too often"), POLICY_VIOLATION, "sent WebSocket pings too often")
            return
        self._pingsFullAt = full_at
        super().onPing(payload)

    # --- the end ---

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        chat, self.chat = self.chat, None
        if chat is not None and chat.connected:
            chat.connected = 0
            chat.connectionLost(reason)


class ChatSocketFactory(WebSocketServerFactory):
    """Builds the :class:`ChatSocket` of each upgrade to ``/ws`` for one ``--web`` listener."""

    protocol = ChatSocket  # type: ignore[assignment]

    def __init__(self, listener: Any, clock: IReactorTime, secure: bool) -> None:
        super().__init__(protocols=[SUBPROTOCOL])
        #: The WebListener whose chat connections these are.
        self.listener = listener
        self.clock = clock
        chat = listener.chat
        self.maxLine: int = chat.config.max_line
        self.pingBucket = chat.pingBucket
        self.cache = FrameCache()
        self.isSecure = secure
        self.setProtocolOptions(
            # Sizes are checked against --max-line as a message arrives (ChatSocket).
            maxFramePayloadSize=0,
            maxMessagePayloadSize=0,
            # The heartbeat is the protocol's PING lines, not WebSocket pings.
            autoPingInterval=0,
            openHandshakeTimeout=chat.config.register_timeout,
            closeHandshakeTimeout=2,
            failByDrop=False,
            requireMaskedClientFrames=True,
            utf8validateIncoming=True,
            perMessageCompressionAccept=None,
            trustXForwardedFor=0,
        )
        # The settings every connection reads, as class attributes of this factory's own
        # subclass: connections drop their copies once open (ChatSocket._compact).
        # (Callables stay on each connection: as class attributes they would become methods.)
        shared = {
            name: value
            for name in ChatSocket.CONFIG_ATTRS
            if hasattr(self, name) and not callable(value := getattr(self, name))
        }
        shared.update(dict.fromkeys(_HANDSHAKE_LEFTOVERS))
        self.protocol = cast("type[ChatSocket]", type("ChatSocket", (ChatSocket,), shared))
