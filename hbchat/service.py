"""
The running server as a twistd service: its listeners, and a clean stop.

Stopping (SIGTERM under twistd) first closes every listener, so no one new arrives, then
says ``BYE shutdown`` to every connection and waits, boundedly, for them to close.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any, cast

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorCore, IReactorThreads
from twisted.logger import Logger

from hbchat.listeners import listener_service
from hbchat.server import ChatFactory


class ChatService(MultiService):
    """One chat served on any number of endpoints."""

    log = Logger()

    def __init__(self, factory: ChatFactory, listen: tuple[str, ...], reactor: IReactorCore) -> None:
        super().__init__()
        self.factory = factory
        self.reactor = reactor
        for description in listen:
            listener_service(factory, description, reactor).setServiceParent(self)

    def privilegedStartService(self) -> None:
        # Listening happens here (before twistd drops privileges); a port in use is an
        # operator's mistake, so say it in one line rather than with a traceback.
        try:
            super().privilegedStartService()
        except CannotListenError as error:
            self.log.critical("hbchat cannot start: {error}", error=error)
            raise SystemExit(1) from None

    def stopService(self) -> Deferred[None]:
        """Stop listening, then drain (``--drain``); a second SIGTERM or SIGINT cuts it short."""
        stopped: Deferred[None] = Deferred()
        restore = self._closeNowOnAnotherSignal()
        listeners_closed = super().stopService()
        listeners_closed.addBoth(lambda _: self.factory.shutdown(self.factory.config.drain))
        listeners_closed.addBoth(lambda _: restore())
        listeners_closed.addBoth(lambda _: stopped.callback(None))
        return stopped

    def _closeNowOnAnotherSignal(self) -> Callable[[], None]:
        """While draining, SIGTERM or SIGINT closes every connection at once."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        threads = cast(IReactorThreads, self.reactor)

        def closeNow(signum: int, frame: Any) -> None:
            self.log.info("signal {signum} while draining: closing every connection now", signum=signum)
            threads.callFromThread(self.factory.closeNow)

        previous = {number: signal.signal(number, closeNow) for number in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for number, handler in previous.items():
                signal.signal(number, handler)

        return restore
