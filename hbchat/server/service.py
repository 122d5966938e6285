"""
The running server as a twistd service: its listeners, and a clean stop.

Stopping (SIGTERM under twistd) first closes every listener, so no one new arrives, then
says ``BYE shutdown`` to every connection and waits, boundedly, for them to close.

``ssl:`` listeners are built by :mod:`hbchat.tls`.  SIGHUP (``kill -HUP $(cat twistd.pid)``,
``systemctl reload``) is handled in every configuration, from the start until the process
exits: it reloads the ``ssl:`` listeners' keys and certificates, or logs that there is nothing
to reload (:mod:`hbchat.hangup`); it never kills the server.
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

from hbchat.lognames import NamedLogger
from hbchat.ops.hangup import HangupCore, hangup_machine
from hbchat.ops.observed import ObservedChatFactory as ChatFactory
from hbchat.server.listeners import listener_service
from hbchat.server.tls import ServerTLS, is_ssl, parse_ssl
from hbchat.web.origins import OriginPolicy
from hbchat.web.service import web_service


class ChatService(MultiService):
    """One chat served on any number of endpoints."""

    log = NamedLogger("hbchat.service.ChatService")

    def __init__(
        self,
        factory: ChatFactory,
        listen: tuple[str, ...],
        reactor: IReactorCore,
        web: tuple[str, ...] = (),
        web_origins: tuple[str, ...] = (),
        reuse_port: bool = False,
    ) -> None:
        super().__init__()
        self.factory = factory
        self.reactor = reactor
        #: The contexts of the ssl: listeners, which SIGHUP reloads.
        self.tls: list[ServerTLS] = []
        #: Restores SIGHUP's handler from before ours; None while ours is not installed.
        self._restoreHangup: Callable[[], None] | None = None
        for description in listen:
            tls = None
            if is_ssl(description):
                tls = ServerTLS(parse_ssl(description, factory.config.tls_client_ca))
                self.tls.append(tls)
            listener_service(factory, description, reactor, tls, reuse_port).setServiceParent(self)
        # --web: the page and its WebSocket (hbchat.web), ssl: ones with TLS as above.
        policy = OriginPolicy(web_origins)
        for description in web:
            tls = None
            if is_ssl(description):
                tls = ServerTLS(parse_ssl(description, factory.config.tls_client_ca))
                self.tls.append(tls)
            web_service(factory, description, reactor, policy, tls, reuse_port).setServiceParent(self)
        #: What SIGHUP does now: reload while serving and draining, nothing once stopped.
        self.hangup = hangup_machine(HangupCore(self.tls, factory.stats.reloads))

    def reloadTLS(self) -> str:
        """Read every ssl: listener's key and certificate files again, as SIGHUP does; the outcome."""
        return self.hangup.hangup()

    def privilegedStartService(self) -> None:
        # Under twistd this comes first (before the reactor runs): SIGHUP is safe from here on.
        self._handleHangups()
        # Listening happens here (before twistd drops privileges); a port in use is an
        # operator's mistake, so say it in one line rather than with a traceback.
        try:
            super().privilegedStartService()
        except CannotListenError as error:
            self.log.critical("hbchat cannot start: {error}", error=error)
            raise SystemExit(1) from None

    def startService(self) -> None:
        super().startService()
        self._handleHangups()

    def _handleHangups(self) -> None:
        """SIGHUP reloads (:mod:`hbchat.hangup`) from now until the drain is over, whatever the listeners."""
        self.hangup.start()
        if self._restoreHangup is None:
            self._restoreHangup = self._onSignals((signal.SIGHUP,), self._hungUp)

    def _hungUp(self, signum: int) -> None:
        self.hangup.hangup()

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
                # Where the previous action was the default one, and that is death (SIGHUP's),
                # the signal is ignored instead: the process is about to exit, and a reload sent
                # meanwhile must not turn a clean exit into a death by signal.
                if number == signal.SIGHUP and old in (signal.SIG_DFL, None):
                    old = signal.SIG_IGN
                signal.signal(number, old)

        return restore

    def stopService(self) -> Deferred[None]:
        """Stop listening, then drain (``--drain``); a second SIGTERM or SIGINT cuts it short."""
        stopped: Deferred[None] = Deferred()
        self.hangup.drain()
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
        self.hangup.stop()
        if self._restoreHangup is not None:
            self._restoreHangup()
        self._restoreHangup = None

    def _closeNow(self, signum: int) -> None:
        self.log.info("signal {signum} while draining: closing every connection now", signum=signum)
        self.factory.closeNow()
