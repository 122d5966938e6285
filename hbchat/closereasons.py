"""
One vocabulary of why a connection ends.

Each :class:`CloseReason` carries everything said about a close: its ``label`` (the value
of ``hbchat_connections_closed_total{reason}`` and the ``({reason})`` of the server's log
line ``{peer} closed ({reason}): {why}``), the word a ``LEFT`` announces when a registered
user leaves this way (``left``), whether the session then stays resumable for ``--grace``
(``resumable``), and, for a close the server decides on, why in words (``why``).  The
server hands the reason to the close itself; nothing re-reads the bytes written to learn it.

Pure data: no I/O.
"""

from __future__ import annotations

from enum import Enum

#: The LEFT words that leave a session resumable.
_RESUMABLE_LEFT = frozenset({"timeout", "error", "slow"})


class CloseReason(Enum):
    """Why a connection ended: (label, LEFT word, why in words; None: told by the transport)."""

    QUIT = ("quit", "quit", "the client quit (QUIT)")
    TIMEOUT = ("timeout", "timeout", "silent for longer than --timeout")
    SLOW = ("slow", "slow", "cut as a slow consumer")
    ERROR = ("error", "error", None)
    REPLACED = ("replaced", "replaced", "its session was resumed by another connection")
    SHUTDOWN = ("shutdown", "error", "the server is shutting down (BYE shutdown)")
    REGISTER_TIMEOUT = ("register_timeout", "error", "not registered within --register-timeout")
    LINE_TOO_LONG = ("line_too_long", "error", "sent a line longer than --max-line")
    FULL = ("full", "error", "refused: the server or its address is full (ERR 503)")
    UNAUTHORIZED = ("unauthorized", "unauthorized", "a third failed login (ERR 401)")
    KICKED = ("kicked", "kicked", "kicked: still over the rate limit")
    TLS_ERROR = ("tls_error", "error", None)
    AUTH_BUSY = ("auth_busy", "auth_busy", "refused unchecked: --auth-checks and --auth-queue are full (ERR 503)")
    AUTH_BACKOFF = ("auth_backoff", "auth_backoff", "refused unchecked: its address used up --auth-failures (ERR 503)")
    EVICTED = (
        "evicted",
        "evicted",
        "closed unregistered to admit a newcomer: --max-handshakes was full (ERR 503)",
    )

    def __init__(self, label: str, left: str, why: str | None) -> None:
        self.label = label
        self.left = left
        self.why = why

    @property
    def resumable(self) -> bool:
        """Whether a registered user's session stays resumable for --grace after this close."""
        return self.left in _RESUMABLE_LEFT

    @classmethod
    def by_label(cls, label: str) -> CloseReason | None:
        """The reason of a metric label (None: no such reason)."""
        return _BY_LABEL.get(label)


_BY_LABEL = {reason.label: reason for reason in CloseReason}

#: Every metric label, in the order /metrics lists them.
CLOSE_LABELS = tuple(reason.label for reason in CloseReason)

#: The closes the server decides on, by label: why, in words.
PURPOSES = {reason.label: reason.why for reason in CloseReason if reason.why is not None}

#: The LEFT words that leave a session resumable.
RESUMABLE_ENDINGS = frozenset(reason.left for reason in CloseReason if reason.resumable)
