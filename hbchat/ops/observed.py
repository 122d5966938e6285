"""
The chat with operations wired in: the server core's factory, telling its events to a
:class:`~hbchat.ops.stats.ServerStats` and measuring the reactor's lag while it listens.

The core (:mod:`hbchat.server`) imports nothing from :mod:`hbchat.ops`; it emits what it
counts through :class:`~hbchat.server.interfaces.IServerEvents`.  This is where the two
meet: ``twistd hbchat`` (:mod:`hbchat.server.tap`) builds this factory, and /metrics,
/readyz, /livez and /connections read it.
"""

from __future__ import annotations

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.interfaces import IReactorTime

from hbchat.config import ServerConfig
from hbchat.ops.lag import ReactorLag
from hbchat.ops.stats import ServerStats
from hbchat.server.factory import ChatFactory, ChatMaker
from hbchat.server.host import IdentityRefusal


class ObservedChatFactory(ChatFactory):
    """A :class:`ChatFactory` whose events are counted and whose reactor's lag is measured."""

    def __init__(
        self,
        config: ServerConfig,
        clock: IReactorTime,
        checker: ICredentialsChecker | None = None,
        identity_refusal: IdentityRefusal | None = None,
        chat_maker: ChatMaker | None = None,
    ) -> None:
        #: The chat's counters (what the core tells, through IServerEvents).
        self.stats = ServerStats()
        #: Started and stopped with the listeners (startFactory, stopFactory).
        self.lag = ReactorLag(clock)
        super().__init__(
            config, clock, checker, events=self.stats, identity_refusal=identity_refusal, chat_maker=chat_maker
        )

    def startFactory(self) -> None:
        super().startFactory()
        self.lag.start()

    def stopFactory(self) -> None:
        self.lag.stop()
        super().stopFactory()
