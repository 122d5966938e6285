"""
The hbchat v1 wire format: framing, nick rules and the exact bytes of every line.

Pure functions and one small class, no I/O, so the contract in docs/protocol.md can be
tested line by line without a reactor.  Lines travel as bytes end to end: the server
checks that a line is UTF-8 but builds what it sends from the bytes it received, so a
chat message is never decoded and re-encoded on the hot path.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from hbchat.config import DEFAULT_BURST, DEFAULT_RATE, format_number

PROTOCOL = b"hbchat/1"

# Verbs a client may send before registering; everything else is ERR 403 until then.
PRE_REGISTRATION_VERBS = frozenset({b"NICK", b"RESUME", b"PING", b"PONG", b"QUIT"})


_NICK = re.compile(rb"[A-Za-z0-9_\-\[\]{}^|]{1,32}")


class LineFramer:
    """
    Splits a byte stream into LF-terminated lines without ever holding more than one line.

    A CR before the LF is dropped.  The limit counts a line's bytes before the LF without
    that optional CR, so an unterminated remainder may be one byte longer than the limit
    only if that byte could still be the CR of a CRLF.
    """

    __slots__ = ("_pending", "max_line")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._pending = b""

    @property
    def pending(self) -> int:
        """How many bytes of an unfinished line are held for the next :meth:`feed`."""
        return len(self._pending)

    def feed(self, data: bytes) -> tuple[list[bytes], bool]:
        """
        Add received bytes; return the complete lines and whether the limit was exceeded.

        When the limit is exceeded the lines before the offending one are still returned,
        so they can be handled in order; the framer should then not be fed again.
        """
        if self._pending:
            data = self._pending + data
        lines = data.split(b"\n")
        self._pending = rest = lines.pop()
        limit = self.max_line
        if len(data) > limit:
            for index, line in enumerate(lines):
                if _too_long(line, limit):
                    del lines[index:]
                    self._pending = b""
                    return _strip_cr(lines), True
            if _too_long(rest, limit):
                self._pending = b""
                return _strip_cr(lines), True
        return _strip_cr(lines), False


def _too_long(line: bytes, limit: int) -> bool:
    size = len(line)
    return size > limit and (size > limit + 1 or not line.endswith(b"\r"))


def _strip_cr(lines: list[bytes]) -> list[bytes]:
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def is_valid_nick(nick: bytes) -> bool:
    """1 to 32 ASCII letters, digits or ``_ - [ ] { } ^ |``."""
    return _NICK.fullmatch(nick) is not None


def nick_key(nick: bytes) -> bytes:
    """Nicks are unique regardless of letter case; this is the form they are compared in."""
    return nick.lower()


def new_session_token() -> str:
    """128 random bits as base64url text."""
    return secrets.token_urlsafe(16)


# --- Lines the server sends.  Each returns the complete line, LF included. ---


def hello(
    ping: float, timeout: float, auth_required: bool = False, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST
) -> bytes:
    """
    The greeting.  ``rate=`` and ``burst=`` are told only when they differ from the
    defaults, which a client assumes when they are missing: the default greeting stays
    the one every v1 client knows.
    """
    line = b"HELLO %s ping=%s timeout=%s" % (
        PROTOCOL,
        format_number(ping).encode(),
        format_number(timeout).encode(),
    )
    if (rate, burst) != (DEFAULT_RATE, DEFAULT_BURST):
        line += b" rate=%s burst=%d" % (format_number(rate).encode(), burst)
    if auth_required:
        line += b" auth=required"
    return line + b"\n"


def welcome(nick: bytes, token: bytes, seq: int) -> bytes:
    return b"WELCOME %s %s %d\n" % (nick, token, seq)


def resumed(count: int, complete: bool) -> bytes:
    return b"RESUMED %d %s\n" % (count, b"complete" if complete else b"partial")


def msg(seq: int, nick: bytes, text: bytes) -> bytes:
    return b"MSG %d %s %s\n" % (seq, nick, text)


def join(seq: int, nick: bytes) -> bytes:
    return b"JOIN %d %s\n" % (seq, nick)


def left(seq: int, nick: bytes, reason: str) -> bytes:
    return b"LEFT %d %s %s\n" % (seq, nick, reason.encode("ascii"))


def priv(sender: bytes, text: bytes) -> bytes:
    return b"PRIV %s %s\n" % (sender, text)


def users(nicks: Iterable[bytes]) -> bytes:
    """USERS with the nicks sorted regardless of letter case."""
    ordered = sorted(nicks, key=lambda nick: (nick.lower(), nick))
    return b" ".join([b"USERS", *ordered]) + b"\n"


def ping(token: bytes) -> bytes:
    return b"PING " + token + b"\n"


def pong(token_part: bytes) -> bytes:
    """Answer a PING; ``token_part`` is everything after the verb, leading space included."""
    return b"PONG" + token_part + b"\n"


def bye(reason: str, retry: float | None = None, at: float | None = None) -> bytes:
    """
    ``BYE <reason>``, with ``retry=<seconds>`` when the client should come back within that,
    and ``at=<seconds>`` when the server chose the moment for it (docs/protocol.md, section 9).
    """
    line = b"BYE " + reason.encode("ascii")
    if retry is not None:
        line += b" retry=" + format_number(retry).encode()
    if at is not None:
        line += b" at=" + format_number(round(at, 3)).encode()
    return line + b"\n"


def decimal_at_most(text: bytes, bound: int) -> int | None:
    """
    A non-negative decimal number of any length (leading zeros allowed), or ``None``.

    A number above ``bound`` is returned as ``bound``, without converting all of its digits
    (``int()`` refuses more than a few thousand), so that no length of digits is an error.
    """
    if not (text.isdigit() and text.isascii()):
        return None
    digits = text.lstrip(b"0") or b"0"
    if len(digits) > len(b"%d" % bound):
        return bound
    return min(int(digits), bound)


def err(code: int, text: str) -> bytes:
    return b"ERR %d %s\n" % (code, text.encode("utf-8"))


BYE_KICKED = bye("kicked")

ERR_INVALID_UTF8 = err(400, "invalid UTF-8")
ERR_EMPTY_MESSAGE = err(400, "empty message")
ERR_ALREADY_REGISTERED = err(400, "already registered")
ERR_NICK_ARGUMENTS = err(400, "usage: NICK <nick> [<password>]")
ERR_RESUME_ARGUMENTS = err(400, "usage: RESUME <session-token> <last-seq>")
ERR_UNAUTHORIZED = err(401, "invalid nick or password")
ERR_REGISTER_FIRST = err(403, "register first")
ERR_UNKNOWN_SESSION = err(404, "unknown session")
ERR_NO_SUCH_NICK = err(406, "no such nick")
ERR_REGISTRATION_TIMEOUT = err(408, "registration timeout")
ERR_LINE_TOO_LONG = err(413, "line too long")
ERR_ERRONEOUS_NICKNAME = err(432, "erroneous nickname")
ERR_NICK_IN_USE = err(433, "nick in use")
ERR_SERVER_FULL = err(503, "server full")
ERR_TOO_MANY_FROM_ADDRESS = err(503, "too many connections from your address")
ERR_AUTH_BUSY = err(503, "busy checking passwords, try again later")
ERR_LOGIN_BACKOFF = err(503, "too many failed logins from your address, try again later")
#: Closed unregistered to admit a newcomer: --max-handshakes was full (hbchat.server.handshakes).
ERR_TOO_MANY_REGISTERING = err(503, "too many connections registering")


#: Verbs a client may send at all; ERR 429 names the one it refused, any other line is a "line".
VERBS = frozenset({b"NICK", b"RESUME", b"PING", b"PONG", b"QUIT", b"SAY", b"TELL", b"WHO"})

_RATE_LIMITED = {verb: err(429, f"too many requests: {verb.decode()} not handled") for verb in VERBS}
_RATE_LIMITED_LINE = err(429, "too many requests: line not handled")


def err_rate_limited(verb: bytes) -> bytes:
    """
    ``ERR 429`` for a line refused by the rate limit; ``verb`` (upper-cased) is named so
    that a client knows which of its lines to send again (a SAY is its oldest unechoed one).
    """
    return _RATE_LIMITED.get(verb, _RATE_LIMITED_LINE)


def err_unknown_command(verb: bytes) -> bytes:
    """``verb`` is already upper-cased; it is shown as text even if it is not valid UTF-8."""
    return err(400, "unknown command " + verb.decode("utf-8", "replace"))
