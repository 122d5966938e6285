"""
One ``--listen`` endpoint in front of the chat: which connections came through it, and
whether it is listening.

A :class:`Listener` is the factory an endpoint listens with.  It hands every connection to
the one :class:`~hbchat.server.ChatFactory` (so all endpoints serve one chat), labels it
with the endpoint's description for ``/connections`` and the metrics, and counts it.  The
port tells it when it starts and stops listening (``doStart``/``doStop``), which is what
``/readyz`` reports.  Only the factory is wrapped, never the connection: the protocol
talks to its transport directly, as before (write-through depends on it).
"""

from __future__ import annotations

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory

from hbchat.server import ChatFactory, ChatServerProtocol


class Listener(Factory):
    """The factory of one listening endpoint, registered in ``chat.stats.listeners``."""

    noisy = False

    def __init__(self, chat: ChatFactory, description: str) -> None:
        self.chat = chat
        #: The endpoint as given to --listen (without the backlog hbchat may add).
        self.description = description
        #: Connections accepted so far (including those then refused as ERR 503).
        self.accepted = 0
        #: Between the port's start and stop.
        self.listening = False
        chat.stats.listeners.append(self)

    def buildProtocol(self, addr: IAddress | None) -> ChatServerProtocol:  # type: ignore[override]
        self.accepted += 1
        protocol = self.chat.buildProtocol(addr)
        protocol.listener = self.description
        return protocol

    def doStart(self) -> None:
        self.listening = True
        self.chat.doStart()

    def doStop(self) -> None:
        self.listening = False
        self.chat.doStop()

    def logPrefix(self) -> str:
        # The port logs "<prefix> starting on <port>": name the chat, as before.
        return self.chat.logPrefix()  # type: ignore[no-any-return]
