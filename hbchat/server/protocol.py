"""
Where the server's protocol and factory used to live, kept so that imports of
``hbchat.server.protocol`` keep working: the connection is in :mod:`hbchat.server.connection`,
the factory in :mod:`hbchat.server.factory`, the chat in :mod:`hbchat.server.chat`,
admission in :mod:`hbchat.server.admission` and the drain in :mod:`hbchat.server.drain`.
"""

from __future__ import annotations

from hbchat.server.admission import PAUSE_LOG_INTERVAL, Gate
from hbchat.server.connection import CLOSE_GRACE, SLOW_PATIENCE, ChatServerProtocol
from hbchat.server.drain import DRAIN_STEP
from hbchat.server.factory import ChatFactory
from hbchat.server.login import MAX_AUTH_FAILURES

__all__ = [
    "CLOSE_GRACE",
    "DRAIN_STEP",
    "MAX_AUTH_FAILURES",
    "PAUSE_LOG_INTERVAL",
    "SLOW_PATIENCE",
    "ChatFactory",
    "ChatServerProtocol",
    "Gate",
]
