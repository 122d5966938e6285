"""
Test clients of ``--web``: autobahn's WebSocket client carrying a :class:`LineClient`
(one text frame in is one line in; each line it sends is one text frame), and a raw HTTP
request over a real loopback socket, for the answers a browser never shows a program.
"""

from __future__ import annotations

from typing import Any, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from hbchat.web.service import WebListener
from tests.test_integration import DEADLINE, LineClient, within


def webPortOf(service: Any, index: int = 0) -> int:
    """The TCP port of a started service's ``index``-th --web listener."""
    listeners = [listener for listener in service.factory.listeners if isinstance(listener, WebListener)]
    port = listeners[index].port
    assert port is not None, "the --web listener does not listen"
    return int(cast(IPv4Address, port.getHost()).port)


class _FramesOut:
    """A LineClient's transport: each line it writes goes out as one text frame."""

    def __init__(self, socket: WSClient) -> None:
        self.socket = socket

    def write(self, data: bytes) -> None:
        for line in data.split(b"\n")[:-1]:
            self.socket.sendMessage(line, isBinary=False)

    def abortConnection(self) -> None:
        cast(ITCPTransport, self.socket.transport).abortConnection()

    def loseConnection(self) -> None:
        self.socket.sendClose()


class WSClient(WebSocketClientProtocol):
    """autobahn's client protocol, its lines handed to a LineClient."""

    lines: LineClient
    closeCode: int | None = None
    closeReason: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[WSClient] = Deferred()

    def onConnect(self, response: Any) -> None:
        self.subprotocol = response.protocol

    def onOpen(self) -> None:
        self.lines.makeConnection(_FramesOut(self))
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.lines.dataReceived(payload + b"\n")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closeCode, self.closeReason = code, reason
        if not self.opened.called:
            self.opened.errback(Failure(ConnectionError(f"the WebSocket did not open: {code} {reason}")))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if self.lines.transport is not None:
            self.lines.connectionLost(reason)


def wsFactory(url: str, origin: str | None = None, protocols: tuple[str, ...] = ("hbchat.v1",)) -> Any:
    factory = WebSocketClientFactory(url, origin=origin, protocols=list(protocols))
    factory.protocol = WSClient
    return factory


@inlineCallbacks
def connectWS(
    port: int,
    name: str,
    origin: str | None = None,
    protocols: tuple[str, ...] = ("hbchat.v1",),
    tls: Any = None,
    compression: bool = False,
    **kwargs: Any,
) -> Any:
    """
    A LineClient on a WebSocket to 127.0.0.1:``port``/ws (``tls``: client TLS options, for
    wss://localhost); fires with (LineClient, WSClient).
    """
    url = f"wss://localhost:{port}/ws" if tls is not None else f"ws://127.0.0.1:{port}/ws"
    factory = wsFactory(url, origin, protocols)
    if compression:  # as browsers do: offer permessage-deflate
        factory.setProtocolOptions(perMessageCompressionOffers=[PerMessageDeflateOffer()])
    endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE)
    if tls is not None:
        endpoint = wrapClientTLS(tls, endpoint)
    socket = yield within(endpoint.connect(factory), DEADLINE, f"{name}: connecting")
    socket.lines = LineClient(name, **kwargs)
    yield within(socket.opened, DEADLINE, f"{name}: the WebSocket handshake")
    return socket.lines, socket


class RawHTTP(Protocol):
    """Sends one request and collects the answer's status, headers and body."""

    def __init__(self, request: bytes, head: bool = False) -> None:
        self.request = request
        #: An answer to HEAD has a Content-Length but no body.
        self.head = head
        self.data = b""
        self.done: Deferred[RawHTTP] = Deferred()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        self._parse()

    def _parse(self) -> None:
        if self.done.called or b"\r\n\r\n" not in self.data:
            return
        head, _, body = self.data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if self.head else int(headers.get("content-length", "0"))
        if len(body) < length:
            return
        self.status = int(lines[0].split()[1])
        self.headers, self.body = headers, body[:length]
        self.done.callback(self)
        assert self.transport is not None
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.errback(Failure(ConnectionError(f"closed before a whole answer: {self.data!r}")))


@inlineCallbacks
def httpRequest(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    """One HTTP/1.1 request to 127.0.0.1:``port``; fires with the RawHTTP that holds the answer."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE)
    answer = RawHTTP(request, head=method == "HEAD")
    yield within(connectProtocol(endpoint, answer), DEADLINE, f"connecting for {method} {path}")
    yield within(answer.done, DEADLINE, f"the answer to {method} {path}")
    return answer


#: The headers of a WebSocket upgrade request (RFC 6455's example key).
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Protocol": "hbchat.v1",
}
