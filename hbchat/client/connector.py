"""
An ``IConnector`` over Twisted client endpoints, so that ``ReconnectingClientFactory``
(hbchat.client.factory) reconnects through ``tcp:``, ``tls:`` and ``unix:`` alike, and
follows a cluster: given several endpoints (the nodes of one chat), each reconnect goes to
the next one, wrapping around, so that the clients of a node that died or stopped try
another node first (:class:`EndpointRing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.error import NotConnectingError
from twisted.internet.interfaces import IAddress, IConnector, IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

if TYPE_CHECKING:
    from hbchat.client.factory import ChatClientFactory


@implementer(IAddress)
@dataclass(frozen=True)
class EndpointAddress:
    """Where an :class:`EndpointConnector` connects to: its endpoint, as far as it can be told."""

    endpoint: IStreamClientEndpoint

    def __str__(self) -> str:
        return repr(self.endpoint)


class EndpointRing:
    """
    The endpoints of one chat, and which one the next attempt uses: the first at the start,
    then, for every attempt after it (a failed connect, or a lost connection), the next one,
    wrapping around.  With one endpoint it is always that one.
    """

    def __init__(self, endpoints: Sequence[IStreamClientEndpoint]) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.endpoints = tuple(endpoints)
        self.index = 0
        self._started = False

    def __len__(self) -> int:
        return len(self.endpoints)

    @property
    def current(self) -> IStreamClientEndpoint:
        return self.endpoints[self.index]

    def nextAttempt(self) -> IStreamClientEndpoint:
        """The endpoint of the attempt starting now: the first one first, then each next one in turn."""
        if self._started:
            self.index = (self.index + 1) % len(self.endpoints)
        self._started = True
        return self.current


def _ring(endpoints: IStreamClientEndpoint | Sequence[IStreamClientEndpoint]) -> EndpointRing:
    if isinstance(endpoints, (list, tuple)):
        return EndpointRing(endpoints)
    return EndpointRing([cast(IStreamClientEndpoint, endpoints)])


@implementer(IConnector)
class EndpointConnector:
    """
    Lets ``ReconnectingClientFactory`` drive a client endpoint.

    The factory was made for ``reactor.connectTCP`` connectors; this is an ``IConnector``
    over ``endpoint.connect()`` so that one backoff works for TCP, TLS and UNIX sockets
    alike: ``connect`` starts an attempt, ``stopConnecting`` cancels it, ``disconnect``
    also ends the connection made.  An attempt's outcome goes to the factory
    (``clientConnectionFailed``, or its protocol's ``connectionMade``) and to the hooks
    :meth:`attemptSucceeded` and :meth:`attemptFailed`, which a subclass may extend
    (the storm benchmark timestamps them).

    Given several endpoints (a list or tuple: the nodes of one chat), every attempt after the
    first goes to the next one (:class:`EndpointRing`); :attr:`endpoint` is the one in use.
    """

    def __init__(
        self, endpoint: IStreamClientEndpoint | Sequence[IStreamClientEndpoint], factory: ChatClientFactory
    ) -> None:
        self.ring = _ring(endpoint)
        self.factory = factory
        self._attempt: Deferred[Any] | None = None
        factory.connector = self

    @property
    def endpoint(self) -> IStreamClientEndpoint:
        """The endpoint of the attempt under way, or of the last one."""
        return self.ring.current

    def connect(self) -> None:
        endpoint = self.ring.nextAttempt()
        self.factory.connecting()
        attempt = self._attempt = endpoint.connect(self.factory)
        attempt.addCallbacks(self.attemptSucceeded, self.attemptFailed)

    def attemptSucceeded(self, protocol: Any) -> None:
        """The endpoint connected ``protocol``."""
        self._attempt = None

    def attemptFailed(self, reason: Failure) -> None:
        """The attempt failed (or was cancelled): the factory decides what next."""
        self._attempt = None
        self.factory.clientConnectionFailed(self, reason)

    def stopConnecting(self) -> None:
        if self._attempt is None:
            raise NotConnectingError()
        attempt, self._attempt = self._attempt, None
        attempt.cancel()

    def disconnect(self) -> None:
        """Stop the attempt under way, or close the factory's connection."""
        if self._attempt is not None:
            self.stopConnecting()
            return
        protocol = self.factory.protocolInstance
        if protocol is not None and protocol.transport is not None:
            protocol.link.loseConnection()

    def getDestination(self) -> EndpointAddress:
        return EndpointAddress(self.endpoint)


def connect(
    reactor: Any, endpoint: IStreamClientEndpoint | Sequence[IStreamClientEndpoint], factory: ChatClientFactory
) -> EndpointConnector:
    """
    Start connecting ``factory`` through ``endpoint`` (or the first of several, trying the
    next one at each reconnect), reconnecting as it decides.
    """
    connector = EndpointConnector(endpoint, factory)
    connector.connect()
    return connector
