"""
One ``--web`` endpoint in front of the chat: an HTTP server (``twisted.web``) with the page
and ``/ws`` (:mod:`hbchat.web.pages`), whose WebSockets are chat connections of the one chat.

A :class:`WebListener` is to a ``--web`` endpoint what :class:`hbchat.server.listeners.
Listener` is to a ``--listen`` one: it is registered in ``chat.listeners`` (so
``/readyz``, the metrics and ``/connections`` show it, labelled ``web:`` and the endpoint),
builds the chat connection of each WebSocket, counts it, and is one of admission's gates:
while ``--max-handshakes`` has no room, upgrades are answered 503 (the HTTP connection that
asks for one is not a chat connection yet, so there is nothing to keep in a listen queue).
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.web.server import Site
from zope.interface import implementer

from hbchat.server.connection import ChatServerProtocol
from hbchat.server.factory import ChatFactory
from hbchat.server.listeners import server_endpoint
from hbchat.server.tls import ServerTLS
from hbchat.web.origins import OriginPolicy
from hbchat.web.pages import PageRequest, Root, Upgrade
from hbchat.web.socket import ChatSocketFactory

#: Seconds an HTTP connection may stay idle between requests (the WebSocket has its own timers).
HTTP_IDLE_TIMEOUT = 60

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


class WebSite(Site):
    """The HTTP side; tells its :class:`WebListener` when it listens."""

    noisy = False
    displayTracebacks = False

    def __init__(self, listener: WebListener, root: Root) -> None:
        super().__init__(root, requestFactory=PageRequest, timeout=HTTP_IDLE_TIMEOUT)
        self.listener = listener

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
    return WebSite(listener, Root(Upgrade(sockets, policy, listener.room)))


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
