"""
Why a connection could not be made or was lost, in a few words for a person.

Twisted's own texts are written for programmers (``Connection was refused by other side:
111: Connection refused.``, ``Connection to the other side was lost in a non-clean
fashion``); the client shows these instead on every retry line and when it gives up:
``connection refused``, ``timed out``, ``DNS lookup failed for chat.example``, ``no route
to host``, ``the server closed the connection``, ``the connection broke: ...``.
TLS failures are worded by :mod:`hbchat.client.tls`, which is asked first.
"""

from __future__ import annotations

import os

from twisted.internet import error
from twisted.python.failure import Failure

#: Failures whose kind says it all, most specific first.
_PLAIN: list[tuple[type[BaseException], str]] = [
    (error.ConnectionRefusedError, "connection refused"),
    (error.TCPTimedOutError, "timed out"),
    (error.TimeoutError, "timed out"),
    (error.NoRouteError, "no route to host"),
    (error.ConnectingCancelledError, "the connection attempt was cancelled"),
    (error.ConnectionAborted, "the connection was aborted"),
    (error.ConnectionDone, "the server closed the connection"),
]


def _detail(value: BaseException) -> str:
    """What an exception adds to its kind: its arguments, as text, without the final period."""
    return " ".join(str(arg) for arg in value.args if arg not in (None, "")).strip().rstrip(".")


def describe(failure: Failure) -> str:
    """A connection's failure or loss as a short phrase starting in lower case."""
    value = failure.value
    for kind, words in _PLAIN:
        if isinstance(value, kind):
            return words
    if isinstance(value, (error.DNSLookupError, error.UnknownHostError)):
        host = _detail(value)
        return f"DNS lookup failed for {host}" if host else "DNS lookup failed"
    if isinstance(value, error.ConnectionLost):
        detail = _detail(value)
        return f"the connection broke: {detail}" if detail else "the connection broke"
    if isinstance(value, error.ConnectError):
        detail = _detail(value)
        if not detail and isinstance(value.osError, int):
            detail = os.strerror(value.osError)
        return _lower_first(detail) if detail else "could not connect"
    text = str(value).strip().rstrip(".")
    return _lower_first(text) if text else type(value).__name__


def _lower_first(text: str) -> str:
    """``No such file or directory`` as the middle of a sentence (an all-capital word stays)."""
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text
