"""
Why a connection ended, in words, for the server's log line ``{peer} closed ({reason}):
{why}``; ``reason`` is the label of ``hbchat_connections_closed_total``.

The transport's own failure says little and sometimes the wrong thing: a client that
closes without QUIT is Twisted's ``ConnectionDone`` ("Connection was closed cleanly"), a
QUIT over TLS whose client then closes its socket without a TLS close_notify is
``ConnectionLost`` ("lost in a non-clean fashion"), and a TLS error is OpenSSL's list of
``(library, function, reason)`` tuples.  So:

- a close the server decided on (QUIT, timeout, a refusal, ...) is told by its reason
  (:func:`purpose_why`), whatever the transport reported after it;
- a close the peer (or the network) decided on is told by :func:`peer_ending`: a clean
  EOF, a lost connection, a TLS error in OpenSSL's reason words, or a TLS connection that
  ended before its handshake was done, which is a failed handshake (``tls_error``) even
  when no TLS error was raised (the client closed or reset the TCP connection).

Pure functions: no I/O, no reactor.
"""

from __future__ import annotations

from dataclasses import dataclass

from OpenSSL import SSL
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from hbchat.closereasons import PURPOSES, CloseReason

TLS_ERROR, ERROR = CloseReason.TLS_ERROR.label, CloseReason.ERROR.label

#: The closes the server decides on, by the reason it counts them under: a view of
#: hbchat.closereasons.CloseReason (re-exported here).
__all__ = ["PURPOSES", "Ending", "openssl_reasons", "peer_ending", "purpose_why"]

#: OpenSSL reasons whose cause is worth a word to an operator.
_HINTS = {
    "wrong version number": "not TLS: a plain-text client on a TLS port?",
    "packet length too long": "not TLS: a plain-text client on a TLS port?",
    "http request": "plain HTTP on a TLS port",
    "peer did not return a certificate": "no client certificate",
    "no shared cipher": "no cipher suite in common",
    "unsupported protocol": "no TLS version in common",
}


@dataclass(frozen=True)
class Ending:
    """How a connection ended: the close reason it is counted under, and why, in words."""

    #: The label of a CloseReason (the metric label).
    reason: str
    why: str


def openssl_reasons(error: BaseException | None) -> str:
    """
    The reason words of an OpenSSL error (``SSL.Error``'s args are a list of (library,
    function, reason) tuples), joined, with a hint for the common ones; never the tuples.
    """
    entries = error.args[0] if error is not None and error.args and isinstance(error.args[0], list) else []
    reasons = [str(entry[-1]) for entry in entries if isinstance(entry, tuple) and entry and entry[-1]]
    if not reasons:
        return "an error without a reason from OpenSSL"
    return "; ".join(f"{text} ({_HINTS[text]})" if text in _HINTS else text for text in reasons)


def peer_ending(failure: Failure, tls: bool, handshaken: bool) -> Ending:
    """
    The peer or the network ended the connection (the server had not decided to):
    ``tls`` for a connection through an ``ssl:`` listener, ``handshaken`` once its TLS
    handshake completed.
    """
    if failure.check(SSL.Error):
        what = "TLS error" if handshaken else "TLS handshake failed"
        return Ending(TLS_ERROR, f"{what}: {openssl_reasons(failure.value)}")
    clean = failure.check(ConnectionDone) is not None
    if tls and not handshaken:
        how = "closed the connection" if clean else "dropped the connection"
        return Ending(TLS_ERROR, f"TLS handshake failed: the client {how} before it was done")
    if clean:
        return Ending(ERROR, "the client closed the connection without QUIT")
    if tls:
        # Twisted reports an EOF without a TLS close_notify, and a reset, as a lost connection.
        return Ending(ERROR, "the connection ended without QUIT (closed without TLS close_notify, or reset)")
    return Ending(ERROR, "the connection was lost without QUIT (reset, or broken in the network)")


def purpose_why(reason: str | None, failure: Failure) -> str:
    """Why a close the server decided on happened; the transport's failure only for the unnamed ones."""
    if reason is not None and reason in PURPOSES:
        return PURPOSES[reason]
    if failure.check(SSL.Error):
        return f"closed by the server, then a TLS error: {openssl_reasons(failure.value)}"
    return "closed by the server"
