"""
The running server as a twistd service: its listeners, and a clean stop.

Stopping (SIGTERM under twistd) first closes every listener, so no one new arrives, then
says ``BYE shutdown`` to every connection and waits, boundedly, for them to close.

``ssl:`` listeners are built by :mod:`hbchat.tls`; while any is configured, SIGHUP reloads
their keys and certificates (``kill -HUP $(cat twistd.pid)``, ``systemctl reload``).
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
from hbchat.tls import ServerTLS, is_ssl, parse_ssl


class ChatService(MultiService):
    """One chat served on any number of endpoints."""

    log = Logger()

    def __init__(self, factory: ChatFactory, listen: tuple[str, ...], reactor: IReactorCore) -> None:
        super().__init__()
        self.factory = factory
        self.reactor = reactor
        #: The contexts of the ssl: listeners, which SIGHUP reloads.
        self.tls: list[ServerTLS] = []
        self._restoreHangup: Callable[[], None] = lambda: None
        for description in listen:
            tls = None
            if is_ssl(description):
                tls = ServerTLS(parse_ssl(description, factory.config.tls_client_ca))
                self.tls.append(tls)
            listener_service(factory, description, reactor, tls).setServiceParent(self)

    def reloadTLS(self) -> None:
        """Read every ssl: listener's key and certificate files again (SIGHUP)."""
        self.log.info("SIGHUP: reloading TLS certificates")
        for tls in self.tls:
            tls.reload()

    def privilegedStartService(self) -> None:
        # Listening happens here (before twistd drops privileges); a port in use is an
        # operator's mistake, so say it in one line rather than with a traceback.
        try:
            super().privilegedStartService()
        except CannotListenError as error:
            self.log.critical("hbchat cannot start: {error}", error=error)
            raise SystemExit(1) from None

    def startService(self) -> None:
        super().startService()
        # While there is an ssl: listener, SIGHUP reloads its certificate; without one
        # SIGHUP keeps its usual meaning.
        if self.tls:
            self._restoreHangup = self._onSignals((signal.SIGHUP,), lambda signum: self.reloadTLS())

    def _onSignals(self, numbers: tuple[int, ...], action: Callable[[int], None]) -> Callable[[], None]:
        """
        Run ``action(signum)`` in the reactor's thread when one of these signals comes,
        until the returned function restores the previous handlers.  Signal handlers can
        only be set in the main thread; elsewhere (a test's thread) nothing is set.
        """
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        threads = cast(IReactorThreads, self.reactor)

        def handler(signum: int, frame: Any) -> None:
            # Only hand over: logging from a signal handler could re-enter a log write.
            threads.callFromThread(action, signum)

        previous = {number: signal.signal(number, handler) for number in numbers}

        def restore() -> None:
            for number, old in previous.items():
                signal.signal(number, old)

        return restore

    def stopService(self) -> Deferred[None]:
        """Stop listening, then drain (``--drain``); a second SIGTERM or SIGINT cuts it short."""
        stopped: Deferred[None] = Deferred()
        # While draining, SIGTERM or SIGINT closes every connection at once.
        restore = self._onSignals((signal.SIGTERM, signal.SIGINT), self._closeNow)
        listeners_closed = super().stopService()
        listeners_closed.addBoth(lambda _: self.factory.shutdown(self.factory.config.drain))
        listeners_closed.addBoth(lambda _: restore())
        # SIGHUP keeps reloading until the drain is over: a certificate renewal that
        # signals during a stop must not kill the server mid-drain.
        listeners_closed.addBoth(lambda _: self._stopReloading())
        listeners_closed.addBoth(lambda _: stopped.callback(None))
        return stopped

    def _stopReloading(self) -> None:
        self._restoreHangup()
        self._restoreHangup = lambda: None

    def _closeNow(self, signum: int) -> None:
        self.log.info("signal {signum} while draining: closing every connection now", signum=signum)
        self.factory.closeNow()
