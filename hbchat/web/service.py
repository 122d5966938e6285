"""
One ``--web`` endpoint in front of the chat: an HTTP server (``twisted.web``) with the page
and ``/ws`` (:mod:`hbchat.web.pages`), whose WebSockets are chat connections of the one chat.

A :class:`WebListener` is to a ``--web`` endpoint what :class:`hbchat.server.listeners.
Listener` is to a ``--listen`` one: it is registered in ``chat.listeners`` (so
``/readyz``, the metrics and ``/connections`` show it, labelled ``web:`` and the endpoint),
builds the chat connection of each WebSocket, counts it, and is one of admission's gates:
while ``--max-handshakes`` has no room, upgrades are answered 503 (the HTTP connection that
asks for one is not a chat connection yet, so there is nothing to keep in a listen queue).

HTTP connections that are not WebSockets are bounded too (:mod:`hbchat.web.httproom`): at
most ``--max-per-ip`` from one address and ``--max-handshakes`` in all (more are closed at
once), and each request must come in whole within ``--register-timeout``.  The channel is
HTTP/1.1's (a WebSocket upgrade needs it).
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Site
from zope.interface import implementer

from hbchat.lognames import NamedLogger
from hbchat.server.addresses import describe_peer, limited_host
from hbchat.server.connection import ChatServerProtocol
from hbchat.server.factory import ChatFactory
from hbchat.server.listeners import server_endpoint
from hbchat.server.tls import ServerTLS
from hbchat.web.httproom import HTTPRoom
from hbchat.web.origins import OriginPolicy
from hbchat.web.pages import PageRequest, Root, Upgrade
from hbchat.web.socket import ChatSocketFactory

#: Seconds an HTTP connection may stay idle between requests (the WebSocket has its own timers).
HTTP_IDLE_TIMEOUT = 60

#: Seconds between two log lines about HTTP connections refused (a flood refuses many a second).
REFUSAL_LOG_INTERVAL = 10.0

log = NamedLogger("hbchat.web.service")

#: The prefix of a --web listener's label in chat.listeners, the metrics and /connections.
LABEL_PREFIX = "web:"


class WebListener:
    """The chat's view of one ``--web`` endpoint."""

    def __init__(self, chat: ChatFactory, description: str) -> None:
        self.chat = chat
        #: The endpoint as given to --web, prefixed: how its connections are labelled.
        self.description = LABEL_PREFIX + description
        #: WebSocket connections opened so far (including those then refused as ERR 503).
        self.accepted = 0
        self.listening = False
        #: The listening port, once listening.
        self.port: IListeningPort | None = None
        #: An ssl: endpoint's TLS (reloaded by SIGHUP with the others).
        self.tls: ServerTLS | None = None
        chat.listeners.append(self)
        chat.gates.append(self)

    def acceptAtMost(self, count: int) -> None:
        """A gate of admission: the upgrade asks :meth:`room` itself, when it comes."""

    def room(self) -> int:
        """How many more connections --max-handshakes has room for now."""
        return self.chat.admission.room()

    def buildProtocol(self, addr: IAddress | None) -> ChatServerProtocol:
        self.accepted += 1
        protocol = self.chat.buildProtocol(addr)
        protocol.listener = self.description
        return protocol


class GuardedChannel(HTTPChannel):
    """
    An HTTP/1.1 connection counted in its site's :class:`~hbchat.web.httproom.HTTPRoom` until
    it closes or becomes a WebSocket, whose every request must come in whole within a deadline
    from the moment the connection began waiting for it.
    """

    site: WebSite
    #: The address it counts against (None: exempt).
    host: str | None = None
    _headCall: IDelayedCall | None = None
    _counted = False
    #: Part of a request has come since the connection began waiting for one.
    _partial = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._counted = True
        self._awaitRequest()

    def _awaitRequest(self) -> None:
        self._cancelDeadline()
        self._partial = False
        deadline = self.site.listener.chat.config.register_timeout
        self._headCall = self.site.reactor.callLater(deadline, self._late, deadline)

    def _cancelDeadline(self) -> None:
        if self._headCall is not None and self._headCall.active():
            self._headCall.cancel()
        self._headCall = None

    def _late(self, deadline: float) -> None:
        self._headCall = None
        transport: Any = self.transport
        if transport is None:
            return
        if not self._partial:
            transport.loseConnection()  # an idle keep-alive connection: closed quietly
            return
        log.info(
            "closed an HTTP connection from {peer}: no whole request within {deadline} s",
            peer=describe_peer(transport.getPeer()),
            deadline=deadline,
        )
        transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._headCall is not None:
            self._partial = True
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        self._cancelDeadline()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.persistent and self._counted and self._headCall is None:
            self._awaitRequest()

    def upgrading(self) -> None:
        """The connection becomes a WebSocket (a chat connection, counted by admission)."""
        self._cancelDeadline()
        self._leave()

    def _leave(self) -> None:
        if self._counted:
            self._counted = False
            self.site.room.leave(self.host)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancelDeadline()
        self._leave()
        super().connectionLost(reason)


class Refused(Protocol):
    """An HTTP connection over the bounds: closed at once, unread."""

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.abortConnection()


class WebSite(Site):
    """The HTTP side; tells its :class:`WebListener` when it listens, and bounds its HTTP connections."""

    noisy = False
    displayTracebacks = False
    protocol = GuardedChannel  # type: ignore[assignment]

    def __init__(self, listener: WebListener, root: Root, reactor: Any = None) -> None:
        super().__init__(root, requestFactory=PageRequest, timeout=HTTP_IDLE_TIMEOUT, reactor=reactor)
        self.listener = listener
        #: The HTTP connections not upgraded (hbchat.web.httproom).
        self.room = HTTPRoom()
        #: HTTP connections refused so far, and since the last log line about it.
        self.refused = 0
        self._refusedUnlogged = 0
        self._refusalLoggedAt = -REFUSAL_LOG_INTERVAL

    def buildProtocol(self, addr: IAddress) -> Protocol | None:  # type: ignore[override]
        host = limited_host(addr)
        config = self.listener.chat.config
        refusal = self.room.enter(host, config.max_per_ip, config.max_handshakes)
        if refusal is not None:
            self._refusedOne(addr, refusal)
            return Refused()
        channel = super().buildProtocol(addr)
        assert isinstance(channel, GuardedChannel)
        channel.host = host
        return channel

    def _refusedOne(self, addr: IAddress, why: str) -> None:
        self.refused += 1
        self._refusedUnlogged += 1
        now = self.reactor.seconds()
        if now - self._refusalLoggedAt >= REFUSAL_LOG_INTERVAL:
            log.info(
                "closed an HTTP connection from {peer} at once: {why} ({count} refused since the last such line)",
                peer=describe_peer(addr),
                why=why,
                count=self._refusedUnlogged,
            )
            self._refusalLoggedAt = now
            self._refusedUnlogged = 0

    def startFactory(self) -> None:
        self.listener.listening = True
        super().startFactory()

    def stopFactory(self) -> None:
        self.listener.listening = False
        super().stopFactory()


@implementer(IStreamServerEndpoint)
class _RecordingEndpoint:
    """An endpoint that tells the :class:`WebListener` which port it listens on."""

    def __init__(self, endpoint: IStreamServerEndpoint, listener: WebListener) -> None:
        self.endpoint = endpoint
        self.listener = listener

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:  # noqa: N803
        def listening(port: IListeningPort) -> IListeningPort:
            self.listener.port = port
            return port

        return self.endpoint.listen(protocolFactory).addCallback(listening)


def web_site(chat: ChatFactory, description: str, reactor: Any, policy: OriginPolicy, secure: bool) -> WebSite:
    """The HTTP server of one --web endpoint: the page, its files and /ws."""
    listener = WebListener(chat, description)
    sockets = ChatSocketFactory(listener, reactor, secure)
    return WebSite(listener, Root(Upgrade(sockets, policy, listener.room)), reactor)


def web_service(
    chat: ChatFactory,
    description: str,
    reactor: Any,
    policy: OriginPolicy,
    tls: ServerTLS | None = None,
    reuse_port: bool = False,
) -> StreamServerEndpointService:
    """
    The service that serves the page and /ws for ``chat`` on ``description`` (a --web
    endpoint string; tcp:, ssl: and unix: get backlog=1024 unless they name one).  An
    ``ssl:`` one comes with its ``tls`` (hbchat.server.tls), whose context SIGHUP reloads.
    With ``reuse_port`` (``--reuse-port``; tcp: and ssl: only) its socket has ``SO_REUSEPORT``.
    """
    site = web_site(chat, description, reactor, policy, secure=tls is not None)
    listener = site.listener
    endpoint = server_endpoint(reactor, description, tls, reuse_port)
    factory: IProtocolFactory = site
    if tls is not None:
        factory = tls.wrap(site)
        listener.tls = tls
    service = StreamServerEndpointService(_RecordingEndpoint(endpoint, listener), factory)
    service._raiseSynchronously = True
    return service
