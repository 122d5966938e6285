"""
The running server as a twistd service: its listeners, and a clean stop.

Stopping (SIGTERM under twistd) first closes every listener, so no one new arrives, then
says ``BYE shutdown`` to every connection and waits, boundedly, for them to close.
"""

from __future__ import annotations

from twisted.application.service import MultiService
from twisted.application.strports import service as endpoint_service
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from hbchat.config import with_listen_backlog
from hbchat.listeners import Listener
from hbchat.server import ChatFactory


class ChatService(MultiService):
    """One chat served on any number of endpoints."""

    log = Logger()

    def __init__(self, factory: ChatFactory, listen: tuple[str, ...], reactor: IReactorCore) -> None:
        super().__init__()
        self.factory = factory
        for description in listen:
            # strports.service makes a listen failure (port in use, bad path) stop twistd
            # with an error instead of leaving a server that listens on nothing.
            listener = Listener(factory, description)
            endpoint_service(with_listen_backlog(description), listener, reactor=reactor).setServiceParent(self)

    def privilegedStartService(self) -> None:
        # Listening happens here (before twistd drops privileges); a port in use is an
        # operator's mistake, so say it in one line rather than with a traceback.
        try:
            super().privilegedStartService()
        except CannotListenError as error:
            self.log.critical("hbchat cannot start: {error}", error=error)
            raise SystemExit(1) from None

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[None] = Deferred()
        listeners_closed = super().stopService()
        listeners_closed.addBoth(lambda _: self.factory.shutdown())
        listeners_closed.addBoth(lambda _: stopped.callback(None))
        return stopped
