"""
What a connection uses of the factory that built it, as a typing ``Protocol``: the factory
(:class:`hbchat.server.factory.ChatFactory`) provides it, and the connection names only
this, so that neither module imports the other both ways.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from hbchat.auth.authlimit import BoundedChecker, FailureLimit
from hbchat.coarseclock import CoarseClock
from hbchat.config import ServerConfig
from hbchat.ratelimit import Bucket
from hbchat.server.admission import Admission
from hbchat.server.backpressure import Backpressure
from hbchat.server.interfaces import IChat, IServerEvents
from hbchat.server.pacing import ReadPacer

#: Why a connection (its transport) may not take a nick; None: it may.
IdentityRefusal = Callable[[object, bytes], "str | None"]

#: A verb's handler: the connection, and the bytes after the verb and its space.
Command = Callable[[Any, bytes], None]


class Host(Protocol):
    """The factory as its connections see it."""

    #: Timeout verdicts withdrawn, and put off to PING first, during server stalls.
    sparedVerdicts: int
    askedVerdicts: int

    @property
    def config(self) -> ServerConfig: ...

    @property
    def clock(self) -> IReactorTime: ...

    @property
    def chat(self) -> IChat: ...

    @property
    def admission(self) -> Admission[Any]: ...

    @property
    def backpressure(self) -> Backpressure: ...

    @property
    def events(self) -> IServerEvents: ...

    @property
    def commands(self) -> Mapping[bytes, Command]: ...

    @property
    def checker(self) -> BoundedChecker | None: ...

    @property
    def identityRefusal(self) -> IdentityRefusal | None: ...

    @property
    def loginFailures(self) -> FailureLimit: ...

    @property
    def lineBucket(self) -> Bucket | None: ...

    @property
    def pingBucket(self) -> Bucket: ...

    @property
    def pacer(self) -> ReadPacer: ...

    @property
    def pingerClock(self) -> CoarseClock: ...

    @property
    def deadlineClock(self) -> CoarseClock: ...

    @property
    def greeting(self) -> bytes: ...

    @property
    def maxBacklog(self) -> int: ...

    def connectionLost(self, protocol: Any, reason: Failure) -> None: ...
