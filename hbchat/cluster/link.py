"""
One connection to Redis, through txredisapi (the Twisted-native client; hiredis parses its
replies when installed): commands out, replies back as Deferreds, and a Deferred for its end.

txredisapi's own reconnecting is off: a node decides itself when to try again (capped
full-jitter backoff, :mod:`hbchat.cluster.backoff`), because a lost connection means more
to it than a retry (503 to its users, its lease in doubt).  A reply that does not come
within ``reply_timeout`` seconds aborts the connection (txredisapi's replyTimeout), so a
Redis that hangs is found out like one that is gone.
"""

from __future__ import annotations

from typing import Any

import txredisapi
from twisted.internet.defer import Deferred
from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust

from hbchat.cluster.url import RedisURL


class Link:
    """A connected txredisapi connection of one socket."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler
        # txredisapi's handler names its one connection only through its factory.
        self._protocol = handler._factory.pool[0]

    def call(self, *arguments: bytes | str | int) -> Deferred[Any]:
        """One command; its reply (bytes, int, list, None), or a failure (ResponseError, ConnectionError)."""
        result: Deferred[Any] = self._handler.execute_command(*arguments)
        return result

    def whenLost(self) -> Deferred[Any]:
        """Fires when the connection has ended, for whatever reason."""
        if not self._protocol.connected:
            done: Deferred[Any] = Deferred()
            done.callback(None)
            return done
        lost: Deferred[Any] = self._protocol.whenDisconnected()
        return lost

    @property
    def connected(self) -> bool:
        return bool(self._protocol.connected)

    def abort(self) -> None:
        """Drop the connection now (its pending commands fail)."""
        transport = self._protocol.transport
        if transport is not None:
            transport.abortConnection()

    def close(self) -> Deferred[Any]:
        result: Deferred[Any] = self._handler.disconnect()
        return result


def _tls(url: RedisURL) -> Any:
    trust = platformTrust()
    if url.ca is not None:
        with open(url.ca, "rb") as pem:
            trust = Certificate.loadPEM(pem.read())
    return optionsForClientTLS(url.host, trustRoot=trust)


def open_link(url: RedisURL, connect_timeout: float, reply_timeout: float) -> Deferred[Link]:
    """Connect (AUTH and SELECT included) to the Redis of ``url``; fails if it cannot."""
    common: dict[str, Any] = {
        "dbid": url.db or None,
        "reconnect": False,
        "charset": None,
        "password": url.password,
        "username": url.username,
        "connectTimeout": connect_timeout,
        "replyTimeout": reply_timeout,
        "convertNumbers": False,
    }
    if url.scheme == "unix":
        connecting = txredisapi.UnixConnection(url.path, **common)
    else:
        connecting = txredisapi.Connection(
            url.host, url.port, ssl_context_factory=_tls(url) if url.tls else False, **common
        )
    result: Deferred[Link] = connecting.addCallback(Link)
    return result
