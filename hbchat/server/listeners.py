"""
One ``--listen`` endpoint in front of the chat: which connections came through it, and
whether it is listening.

A :class:`Listener` is the factory an endpoint listens with.  It hands every connection to
the one :class:`~hbchat.server.ChatFactory` (so all endpoints serve one chat), labels it
with the endpoint's description for ``/connections`` and the metrics, and counts it.  The
port tells it when it starts and stops listening (``doStart``/``doStop``), which is what
``/readyz`` reports.  Only the factory is wrapped, never the connection: the protocol
talks to its transport directly, as before (write-through depends on it).
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IAddress, IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from zope.interface import implementer

from hbchat.config import with_listen_backlog
from hbchat.server.activation import with_real_family
from hbchat.server.connection import ChatServerProtocol
from hbchat.server.factory import ChatFactory
from hbchat.server.reuseport import PortAddress, ReusePortEndpoint, address_family, reuse_port_address
from hbchat.server.tls import ServerTLS


class Listener(Factory):
    """The factory of one listening endpoint, registered in ``chat.listeners``."""

    noisy = False

    def __init__(self, chat: ChatFactory, description: str) -> None:
        self.chat = chat
        #: The endpoint as given to --listen (without the backlog hbchat may add).
        self.description = description
        #: Connections accepted so far (including those then refused as ERR 503).
        self.accepted = 0
        #: Between the port's start and stop.
        self.listening = False
        #: The listening port, once listening (see :class:`_RecordingEndpoint`).
        self.port: IListeningPort | None = None
        #: An ssl: listener's TLS (its ALPN counts are metrics).
        self.tls: ServerTLS | None = None
        self._paused = False
        chat.listeners.append(self)
        chat.gates.append(self)

    def acceptAtMost(self, count: int) -> None:
        """
        Accept at most ``count`` more connections for now (--max-handshakes); with 0,
        leave new ones in the kernel's listen queue until told otherwise.

        A Twisted port accepts up to its ``numberAccepts`` connections each time the
        socket is readable, without looking back: stopping it only stops the next batch, so
        the batch is kept to ``count`` too.
        """
        port: Any = self.port
        if port is None or not getattr(port, "connected", False):
            return
        if count <= 0:
            if not self._paused:
                self._paused = True
                port.stopReading()
            return
        if isinstance(getattr(port, "numberAccepts", None), int):
            port.numberAccepts = count
        if self._paused:
            self._paused = False
            port.startReading()

    def boundBatches(self, port: Any) -> None:
        """
        Size each of ``port``'s accept batches to the room at its start.  After a batch that
        used up its ``numberAccepts``, Twisted adds 20 to it, past what :meth:`acceptAtMost`
        allowed, while we still accept (a full room that made way keeps accepting): the next
        batch would then overfill --max-handshakes by up to 20.
        """
        read = getattr(port, "doRead", None)
        if read is None or not isinstance(getattr(port, "numberAccepts", None), int):
            return

        def doRead() -> Any:
            room = self.chat.admission.room()
            if room <= 0:  # e.g. the oldest's password check began: pause until one may make way
                self.chat.admission.open_gates()
                return None
            port.numberAccepts = room
            return read()

        port.doRead = doRead

    def buildProtocol(self, addr: IAddress | None) -> ChatServerProtocol:  # type: ignore[override]
        self.accepted += 1
        protocol = self.chat.buildProtocol(addr)
        protocol.listener = self.description
        return protocol

    def doStart(self) -> None:
        self.listening = True
        self.chat.doStart()

    def doStop(self) -> None:
        self.listening = False
        self.chat.doStop()

    def logPrefix(self) -> str:
        # The port logs "<prefix> starting on <port>": name the chat, as before.
        return self.chat.logPrefix()  # type: ignore[no-any-return]


@implementer(IStreamServerEndpoint)
class _RecordingEndpoint:
    """An endpoint that tells the :class:`Listener` which port it listens on."""

    def __init__(self, endpoint: IStreamServerEndpoint, listener: Listener) -> None:
        self.endpoint = endpoint
        self.listener = listener

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:  # noqa: N803
        def listening(port: IListeningPort) -> IListeningPort:
            self.listener.port = port
            self.listener.boundBatches(port)
            self.listener.acceptAtMost(self.listener.chat.admission.room())
            return port

        return self.endpoint.listen(protocolFactory).addCallback(listening)


def server_endpoint(
    reactor: Any, description: str, tls: ServerTLS | None = None, reuse_port: bool = False
) -> IStreamServerEndpoint:
    """
    The endpoint a listener of ``description`` (--listen or --web) listens on: Twisted's for
    the description (tcp:, ssl: and unix: with backlog=1024 unless they name one), the TCP
    socket under an ``ssl:`` one's ``tls``, or, with ``reuse_port``, a socket of our own with
    ``SO_REUSEPORT`` (tcp: and ssl: only).
    """
    if tls is None:
        if reuse_port:
            return ReusePortEndpoint(reactor, reuse_port_address(description))
        return with_real_family(serverFromString(reactor, with_listen_backlog(description)), description)
    if reuse_port:
        where = tls.listen
        family = address_family(where.interface)
        return ReusePortEndpoint(reactor, PortAddress(where.port, where.interface, where.backlog, family))
    return tls.endpoint(reactor)


def listener_service(
    chat: ChatFactory, description: str, reactor: Any, tls: ServerTLS | None = None, reuse_port: bool = False
) -> StreamServerEndpointService:
    """
    The service that serves ``chat`` on ``description`` (a --listen endpoint string; tcp:,
    ssl: and unix: get backlog=1024 unless they name one), as ``twistd`` runs it.  An
    ``ssl:`` listener comes with its ``tls`` (hbchat.tls), whose context SIGHUP reloads.
    With ``reuse_port`` (``--reuse-port``; tcp: and ssl: only) its socket has ``SO_REUSEPORT``.
    """
    listener = Listener(chat, description)
    endpoint = server_endpoint(reactor, description, tls, reuse_port)
    factory: IProtocolFactory = listener
    if tls is not None:
        factory = tls.wrap(listener)
        listener.tls = tls
    service = StreamServerEndpointService(_RecordingEndpoint(endpoint, listener), factory)
    # As twisted.application.strports.service does: a listen failure (port in use, bad
    # path) stops twistd with an error instead of leaving a server that listens on nothing.
    service._raiseSynchronously = True
    return service
