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
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
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
        """Drop the connection now (its pending commands fail); nothing if it is gone already."""
        transport = self._protocol.transport
        if transport is None or not self._protocol.connected:
            return
        try:
            transport.abortConnection()
        except Exception:  # a TLS transport that failed its handshake may refuse a second close
            transport.loseConnection()

    def close(self) -> Deferred[Any]:
        result: Deferred[Any] = self._handler.disconnect()
        return result


class _RawReplies(txredisapi.RedisProtocol):  # type: ignore[misc]
    """
    txredisapi's protocol (hiredis's parser when installed) with replies kept as parsed: the
    links ask for bytes and no number conversion, which makes txredisapi's conversion an
    identity that still walks every element of every reply (a sixth of a busy node's time).
    """

    def tryConvertData(self, data: Any) -> Any:
        return data


def _endpoint(url: RedisURL, connect_timeout: float) -> Any:
    from twisted.internet import reactor

    if url.scheme == "unix":
        return UNIXClientEndpoint(reactor, url.path, timeout=connect_timeout)
    endpoint = HostnameEndpoint(reactor, url.host, url.port, timeout=connect_timeout)
    if not url.tls:
        return endpoint
    trust = platformTrust()
    if url.ca is not None:
        with open(url.ca, "rb") as pem:
            trust = Certificate.loadPEM(pem.read())
    return wrapClientTLS(optionsForClientTLS(url.host, trustRoot=trust), endpoint)


def open_link(url: RedisURL, connect_timeout: float, reply_timeout: float) -> Deferred[Link]:
    """
    Connect (AUTH and SELECT included) to the Redis of ``url``; fails if it cannot, or if it
    is not ready within twice ``connect_timeout`` (txredisapi alone would wait forever for a
    connection that died in the turn it was made).  ``reply_timeout``: how long any later
    reply may take before the connection is aborted.
    """
    from twisted.internet import reactor

    factory = txredisapi.RedisFactory(
        None,
        url.db or None,
        1,
        charset=None,
        password=url.password,
        replyTimeout=reply_timeout,
        convertNumbers=False,
        username=url.username,
    )
    factory.reconnect = False
    factory.protocol = _RawReplies
    connected: Deferred[Any] = factory.deferred
    factory.startConnecting(_endpoint(url, connect_timeout))
    result: Deferred[Link] = Deferred()

    def ready(handler: Any) -> None:
        if timer.active():
            timer.cancel()
        if not result.called:
            result.callback(Link(handler))

    def failed(failure: Any) -> None:
        if timer.active():
            timer.cancel()
        if not result.called:
            result.errback(failure)

    def late() -> None:
        factory.disconnect()
        if not result.called:
            result.errback(TimeoutError(f"Redis not ready within {2 * connect_timeout:g}s"))

    timer = reactor.callLater(2 * connect_timeout, late)
    connected.addCallbacks(ready, failed)
    return result
