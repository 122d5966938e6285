"""
Which pages may open ``/ws``: the ``Origin`` policy (``--web-origin``), pure logic.

A browser sends the ``Origin`` of the page that opens a WebSocket, and lets any page open
one to any server: without this check, a page on another site could open a WebSocket to
the chat with the visitor's network position (cross-site WebSocket hijacking).  The page's
own origin (the scheme of the listener and the ``Host`` it was asked for) is always
allowed, and so are the origins given with ``--web-origin``; another one is refused with
HTTP 403 before the upgrade.  A request without ``Origin`` comes from a program, not from
a browser page (browsers always send it on a WebSocket), and is let through: it could send
any ``Origin`` it liked.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

#: The ports a scheme implies (an origin names them only when they differ).
DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginError(ValueError):
    """Not an origin of a web page (``http://`` or ``https://``, a host, maybe a port, nothing else)."""


def parse_origin(text: str) -> str:
    """
    ``text`` as a normalized origin: ``scheme://host`` or ``scheme://host:port``, lower case,
    a default port left out; :class:`OriginError` if it is anything else (a path, a query,
    credentials, another scheme).  ``null`` (a sandboxed or file page) stays ``null``.
    """
    text = text.strip()
    if text == "null":
        return text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as error:
        raise OriginError(f"{text!r} is not an origin: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise OriginError(f"{text!r} is not an origin: the scheme must be http or https")
    host = (parts.hostname or "").lower()
    if not host:
        raise OriginError(f"{text!r} is not an origin: it names no host")
    if parts.username is not None or parts.password is not None:
        raise OriginError(f"{text!r} is not an origin: it carries credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise OriginError(f"{text!r} is not an origin: an origin has no path, query or fragment")
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def own_origin(secure: bool, host_header: str | None) -> str | None:
    """The origin of a page served over this request (None without a usable ``Host``)."""
    if not host_header:
        return None
    try:
        return parse_origin(("https://" if secure else "http://") + host_header)
    except OriginError:
        return None


class OriginPolicy:
    """The origins allowed to open ``/ws`` besides the page's own (``--web-origin``)."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = frozenset(parse_origin(origin) for origin in allowed)

    def refusal(self, origin_header: str | None, secure: bool, host_header: str | None) -> str | None:
        """Why a request with this ``Origin`` may not open the WebSocket; None: it may."""
        if origin_header is None:
            return None
        try:
            origin = parse_origin(origin_header)
        except OriginError:
            return f"Origin {origin_header!r} is not an origin"
        if origin in self.allowed or origin == own_origin(secure, host_header):
            return None
        return f"Origin {origin} is not allowed (the page's own, or one given with --web-origin)"
