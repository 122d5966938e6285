"""
Telling a plain TCP client that it is talking to a TLS port (``hbchat-client tcp:`` against
an ``ssl:`` listener).

An hbchat server greets a new connection at once (``HELLO``) and reads afterwards; a TLS
server says nothing until it has a ClientHello, so a plain client waiting for HELLO would
only hear silence.  A plain client therefore starts with :data:`PROBE`, a few empty lines:
an hbchat server ignores empty lines (docs/protocol.md, section 1; they are not even rate
limited), while a TLS server takes their first five bytes for a record header that is
none, and closes the connection without a word (OpenSSL: "wrong version number").

So a plain TCP connection that ends cleanly before a single byte came back was, almost
surely, made to a TLS port (:func:`closed_unheard`); one that stays silent until the HELLO
deadline may be (:func:`silent_unheard`: a TLS server that waits for more, or a hung
server).  The opposite mistake, ``tls:`` against a plain port, is told by
:mod:`hbchat.client.tls`.

Pure functions of what the connection saw: no I/O here.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

#: What a plain client sends first: empty lines, which hbchat ignores, and which are more
#: than the five bytes of a TLS record header, so that a TLS server rejects them at once.
PROBE = b"\r\n\r\n\r\n"


def tls_address(address: object) -> tuple[str, str] | None:
    """
    For the TCP peer ``address``: how to show it (``HOST:PORT``, ``[::1]:PORT``) and the
    ``tls:`` endpoint that reaches it (colons of an IPv6 address escaped); None for
    anything else (a UNIX socket cannot be an ``ssl:`` listener).
    """
    if not isinstance(address, IPv4Address | IPv6Address):
        return None
    host, port = address.host, address.port
    if ":" in host:
        return f"[{host}]:{port}", "tls:" + host.replace(":", "\\:") + f":{port}"
    return f"{host}:{port}", f"tls:{host}:{port}"


def closed_unheard(label: str, endpoint: str, reason: Failure) -> str | None:
    """
    A plain connection ended before anything came back: why, in words, if it ended as a
    TLS server ends one that does not speak TLS (a clean close after our :data:`PROBE`);
    None for any other end (a reset, a refused connection), which says nothing of TLS.
    """
    if not reason.check(ConnectionDone):
        return None
    return (
        f"the server at {label} does not speak plain hbchat (it closed the connection at our first bytes, "
        f"without a HELLO); is it a TLS port? then use {endpoint}"
    )


def silent_unheard(label: str, endpoint: str, idle: float) -> str:
    """A plain connection heard nothing at all until the HELLO deadline."""
    return (
        f"the server at {label} was silent for {idle:.1f}s, without a HELLO (an hbchat server greets at once); "
        f"is it a TLS port? then use {endpoint}"
    )
