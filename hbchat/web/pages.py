"""
What a ``--web`` listener answers over HTTP (``twisted.web``): the chat page and its static
files (shipped in the package, read once at start), and ``/ws``, the WebSocket.

Every answer carries the security headers (:data:`SECURITY_HEADERS`): a Content-Security-
Policy that allows only this origin's own scripts, styles and WebSocket (no inline script,
no framing), ``X-Content-Type-Options: nosniff``, no referrer.  Only the files shipped are
served, by name: anything else is 404, a directory is never listed.  ``GET /ws`` without an
upgrade is 426; with an ``Origin`` the policy refuses (:mod:`hbchat.web.origins`), 403
before the upgrade; while ``--max-handshakes`` has no room, 503 (``Retry-After: 1``).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request

from hbchat.lognames import NamedLogger
from hbchat.web.origins import OriginPolicy

log = NamedLogger("hbchat.web.pages")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    b"Content-Security-Policy": CONTENT_SECURITY_POLICY.encode("ascii"),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
    b"Cross-Origin-Opener-Policy": b"same-origin",
}

#: The types of the files served, by their name's ending; files of other types are not served.
CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
    ".webmanifest": b"application/manifest+json",
}


def static_files() -> dict[bytes, tuple[bytes, bytes]]:
    """The files of ``hbchat/web/static`` (not its folders), by name: their bytes and type."""
    files: dict[bytes, tuple[bytes, bytes]] = {}
    for entry in resources.files("hbchat.web").joinpath("static").iterdir():
        if not entry.is_file():
            continue
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        kind = CONTENT_TYPES.get(suffix)
        if kind is not None:
            files[entry.name.encode("utf-8")] = (entry.read_bytes(), kind)
    return files


def secure(request: Request) -> None:
    """Set the security headers on an answer."""
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


def plain(request: Request, code: int, text: str) -> bytes:
    """A short text answer with ``code``."""
    secure(request)
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    return (text + "\n").encode("utf-8")


#: The longest request body taken (the page has no forms: a body is never needed); a
#: longer one, or one of unknown length (chunked), closes the connection unread.
MAX_BODY = 16384


class PageRequest(Request):
    """
    A request whose answer carries the security headers whatever answers it, and whose body
    is bounded by :data:`MAX_BODY` (twisted.web would spool any size to disk).
    """

    _bodyTaken = 0

    def process(self) -> None:
        # Every answer carries the security headers, Twisted's own too (405, 500, ...).
        secure(self)
        super().process()

    def gotLength(self, length: int | None) -> None:
        if length is None or length > MAX_BODY:
            self._refuseBody()
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._bodyTaken += len(data)
        if self._bodyTaken > MAX_BODY:
            self._refuseBody()
            return
        super().handleContentChunk(data)

    def _refuseBody(self) -> None:
        channel: Any = self.channel
        transport = None if channel is None else channel.transport
        if transport is not None:
            log.info(
                "closed an HTTP connection from {peer}: request body over {limit} bytes",
                peer=str(self.client),
                limit=MAX_BODY,
            )
            transport.abortConnection()


class NotFound(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return plain(request, http.NOT_FOUND, "not found")


class StaticFile(Resource):
    """One shipped file."""

    isLeaf = True

    def __init__(self, body: bytes, kind: bytes) -> None:
        super().__init__()
        self.body = body
        self.kind = kind

    def render_GET(self, request: Request) -> bytes:
        if request.postpath:
            return NotFound().render(request)
        secure(request)
        request.setHeader(b"Content-Type", self.kind)
        request.setHeader(b"Cache-Control", b"no-cache")
        return self.body

    def render_HEAD(self, request: Request) -> bytes:
        return self.render_GET(request)


class Upgrade(Resource):
    """``/ws``: the checks an upgrade must pass, then autobahn's WebSocket takes the connection."""

    isLeaf = True

    def __init__(self, sockets: Any, policy: OriginPolicy, room: Any) -> None:
        super().__init__()
        self.policy = policy
        #: How many more connections --max-handshakes has room for (a callable).
        self.room = room
        self.websocket = WebSocketResource(sockets)

    def render_GET(self, request: Request) -> Any:
        if request.postpath:
            return NotFound().render(request)
        upgrade = (request.getHeader(b"upgrade") or b"").strip().lower()
        connection = [token.strip().lower() for token in (request.getHeader(b"connection") or b"").split(b",")]
        if upgrade != b"websocket" or b"upgrade" not in connection:
            request.setHeader(b"Upgrade", b"websocket")
            request.setHeader(b"Connection", b"Upgrade")
            return plain(request, 426, "upgrade required: /ws is a WebSocket (subprotocol hbchat.v1)")
        origin = request.getHeader(b"origin")
        host = request.getHeader(b"host")
        refusal = self.policy.refusal(
            None if origin is None else origin.decode("latin-1"),
            request.isSecure(),
            None if host is None else host.decode("latin-1"),
        )
        peer = request.getClientAddress()
        if refusal is not None:
            log.info("refused a WebSocket from {peer}: {why}", peer=str(peer), why=refusal)
            return plain(request, http.FORBIDDEN, "forbidden: " + refusal)
        if self.room() <= 0:
            request.setHeader(b"Retry-After", b"1")
            return plain(request, http.SERVICE_UNAVAILABLE, "too many connections registering, try again later")
        channel: Any = request.channel
        # The connection is the WebSocket's from now on: the HTTP channel neither times it
        # out nor stays the producer registered with the transport (the chat connection
        # registers itself there).
        channel.setTimeout(None)
        upgrading = getattr(channel, "upgrading", None)
        if upgrading is not None:
            upgrading()  # no longer an HTTP connection of hbchat.web.httproom's
        producer = getattr(channel, "_networkProducer", None)
        if producer is not None:
            producer.unregisterProducer()
        return self.websocket.render(request)

    def render_HEAD(self, request: Request) -> bytes:
        return plain(request, 426, "upgrade required: /ws is a WebSocket (subprotocol hbchat.v1)")


class Root(Resource):
    """``/`` (the page), the shipped files by name, ``/ws``; 404 for anything else."""

    def __init__(self, upgrade: Upgrade, files: dict[bytes, tuple[bytes, bytes]] | None = None) -> None:
        super().__init__()
        self.upgrade = upgrade
        self.files = {name: StaticFile(body, kind) for name, (body, kind) in (files or static_files()).items()}

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"ws":
            return self.upgrade
        if path == b"":
            path = b"index.html"
        return self.files.get(path) or NotFound()

    def render(self, request: Request) -> bytes:
        return self.getChild(b"", request).render(request)  # type: ignore[no-any-return]
