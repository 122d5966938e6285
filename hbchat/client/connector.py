"""
An ``IConnector`` over a Twisted client endpoint, so that ``ReconnectingClientFactory``
(hbchat.client.factory) reconnects through ``tcp:``, ``tls:`` and ``unix:`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    """

    def __init__(self, endpoint: IStreamClientEndpoint, factory: ChatClientFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self._attempt: Deferred[Any] | None = None
        factory.connector = self

    def connect(self) -> None:
        self.factory.connecting()
        attempt = self._attempt = self.endpoint.connect(self.factory)
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


def connect(reactor: Any, endpoint: IStreamClientEndpoint, factory: ChatClientFactory) -> EndpointConnector:
    """Start connecting ``factory`` through ``endpoint``, reconnecting as it decides."""
    connector = EndpointConnector(endpoint, factory)
    connector.connect()
    return connector
