"""
``--metrics ENDPOINT``: health, readiness, Prometheus metrics and the connection list over HTTP.

- ``GET /healthz``: 200 whenever the reactor answers (liveness).
- ``GET /readyz``: 200 while every ``--listen`` endpoint listens and the server is not
  stopping, else 503 (readiness).
- ``GET /metrics``: the Prometheus exposition of :mod:`hbchat.metrics` (text format 0.0.4,
  or OpenMetrics when the scraper asks for it).
- ``GET /connections``: JSON, one object per connection.  It shows every client's address:
  serve it on localhost only (``--metrics tcp:9464:interface=127.0.0.1``).

Everything runs in the reactor thread, like the chat itself: a scrape sees a consistent
state and needs no locks.  (``prometheus_client.twisted.MetricsResource`` renders in a
thread pool instead, which would read the connections while the reactor changes them.)
"""

from __future__ import annotations

import fcntl
import json
import socket
import struct
import termios
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.application.service import IService, MultiService, Service
from twisted.application.strports import service as endpoint_service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from hbchat.lognames import NamedLogger
from hbchat.ops.exposure import WarnIfExposed
from hbchat.ops.metrics import chat_registry
from hbchat.ops.observed import ObservedChatFactory as ChatFactory
from hbchat.server.connection import ChatServerProtocol
from hbchat.sockopts import find_socket


def readiness(factory: ChatFactory) -> str | None:
    """None when ready to serve; otherwise why not, in a few words."""
    if factory.stopping:
        return "stopping"
    if getattr(factory.chat, "available", True) is False:
        return "cluster unavailable (Redis unreachable, or this node is rejoining)"
    listeners = factory.listeners
    if not listeners:
        return "no listener"
    idle = [listener.description for listener in listeners if not listener.listening]
    if idle:
        return "not listening on " + " ".join(idle)
    return None


def unsent_bytes(transport: Any) -> int | None:
    """
    Output the server has buffered for a connection and not yet handed to the kernel.

    Exact for TCP and UNIX connections (Twisted's write buffer); for TLS it adds the
    plaintext waiting for the handshake to the ciphertext buffered below it.  Output
    queued for the end of the current turn is not included (it is sent before the next
    request is read).  None if the transport keeps no such buffer.
    """
    total: int | None = None
    for _ in range(3):
        if transport is None:
            break
        app_buffer = getattr(transport, "_appSendBuffer", None)
        if app_buffer:
            total = (total or 0) + sum(len(data) for data in app_buffer)
        data_buffer = getattr(transport, "dataBuffer", None)
        if isinstance(data_buffer, bytes):
            pending = (
                len(data_buffer) - int(getattr(transport, "offset", 0)) + int(getattr(transport, "_tempDataLen", 0))
            )
            total = (total or 0) + pending
            break
        transport = getattr(transport, "transport", None)
    return total


def kernel_send_queue(transport: Any) -> int | None:
    """
    Bytes in the kernel's send queue of a TCP connection's socket (Linux ``SIOCOUTQ``: not
    yet sent plus sent but not yet acknowledged), or None where unavailable (not TCP: on
    a UNIX socket the same call reports buffer memory, not bytes).
    """
    sock = find_socket(transport)
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        answer = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    return int(struct.unpack("i", answer)[0])


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe_connection(protocol: ChatServerProtocol, now: float) -> dict[str, Any]:
    """One entry of ``/connections``."""
    backpressure = protocol.factory.backpressure
    entry = {
        "nick": protocol.nick.decode("utf-8", "replace") if protocol.nick is not None else None,
        "peer": protocol.peer,
        "listener": protocol.listener,
        "connected_since": _timestamp(protocol.connectedAt),
        "connected_seconds": round(now - protocol.connectedAt, 3),
        "idle_seconds": round(now - protocol.lastReceived, 3),
        "rtt_seconds": None if protocol.rtt is None else round(protocol.rtt, 6),
        "unsent_bytes": unsent_bytes(protocol.transport),
        "kernel_send_queue_bytes": kernel_send_queue(protocol.transport),
        "congested": backpressure.is_congested(protocol),
        "reading_paused": backpressure.is_paused(protocol),
        "received_bytes": protocol.bytesIn,
        "sent_bytes": protocol.bytesOut,
    }
    node = getattr(protocol.factory.chat, "nodeName", None)
    if node is not None:
        # --redis: which node of the cluster holds it.
        entry["node"] = node
    return entry


def _text(request: Request, status: int, body: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return body.encode("utf-8")


class Healthz(Resource):
    isLeaf = True

    def __init__(self, factory: ChatFactory) -> None:
        super().__init__()
        self.factory = factory

    def render_GET(self, request: Request) -> bytes:
        # Answering at all proves the reactor turns.
        return _text(request, 200, f"ok: reactor lag {self.factory.lag.last * 1000:.1f} ms\n")


class Readyz(Resource):
    isLeaf = True

    def __init__(self, factory: ChatFactory) -> None:
        super().__init__()
        self.factory = factory

    def render_GET(self, request: Request) -> bytes:
        why = readiness(self.factory)
        if why is None:
            return _text(request, 200, "ready\n")
        return _text(request, 503, f"not ready: {why}\n")


class MetricsPage(Resource):
    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        output = encoder(self.registry)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return output


class Connections(Resource):
    isLeaf = True

    def __init__(self, factory: ChatFactory) -> None:
        super().__init__()
        self.factory = factory

    def render_GET(self, request: Request) -> bytes:
        factory = self.factory
        now = factory.clock.seconds()
        entries = [
            describe_connection(protocol, now)
            for protocol in sorted(factory.connections, key=lambda protocol: protocol.connectedAt)
        ]
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        # A JSON list with one connection per line: compact, and still readable.
        return ("[\n" + ",\n".join(json.dumps(entry) for entry in entries) + "\n]\n").encode("utf-8")


class Index(Resource):
    def render_GET(self, request: Request) -> bytes:
        return _text(request, 200, "hbchat: /healthz /readyz /metrics /connections\n")


def ops_resource(factory: ChatFactory) -> Resource:
    """The root resource: ``/healthz``, ``/readyz``, ``/metrics``, ``/connections``."""
    root = Index()
    root.putChild(b"", root)
    root.putChild(b"healthz", Healthz(factory))
    root.putChild(b"readyz", Readyz(factory))
    root.putChild(b"metrics", MetricsPage(chat_registry(factory)))
    root.putChild(b"connections", Connections(factory))
    return root


class QuietSite(Site):
    """A site that writes no access log: scrapes every few seconds would flood it."""

    noisy = False

    def log(self, request: http.Request) -> None:
        pass


def ops_site(factory: ChatFactory) -> Site:
    return QuietSite(ops_resource(factory))


class WithMetrics(MultiService):
    """
    The chat service and its HTTP endpoint.

    The endpoint outlives the chat when stopping: the chat stops first (and may take its
    time to say goodbye), with ``/readyz`` answering 503 meanwhile; then the endpoint.
    """

    log = NamedLogger("hbchat.web.WithMetrics")

    def __init__(self, chat: IService, factory: ChatFactory, endpoint: str, reactor: Any) -> None:
        super().__init__()
        self.chat = chat
        self.factory = factory
        self.endpoint = endpoint
        chat.setServiceParent(self)
        self.http = endpoint_service(endpoint, ops_site(factory), reactor=reactor)
        # /connections lists every client's address: say so when it can be read from elsewhere.
        self.http.endpoint = WarnIfExposed(self.http.endpoint, endpoint)
        self.http.setServiceParent(self)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as error:
            self.log.critical("hbchat cannot serve --metrics {endpoint}: {error}", endpoint=self.endpoint, error=error)
            raise SystemExit(1) from None

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        stopped: Deferred[None] = maybeDeferred(self.chat.stopService)
        stopped.addBoth(lambda _: self.http.stopService())
        stopped.addBoth(lambda _: None)
        return stopped
