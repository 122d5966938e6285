"""
The chat saved across a graceful restart (``--state FILE``): what is saved, and its bytes.

Pure: no files, no reactor, no clock.  :func:`encode` turns a :class:`ChatState` into the
file's bytes and :func:`decode` reads them back or raises :class:`StateFileError`, whose
message is one line for the log.  The file is JSON with a format marker and a version, so
that a file of another program, or of a later format, is told apart from a damaged one:

.. code-block:: json

    {"format": "hbchat-state", "version": 1, "saved_at": 1764920000.5, "seq": 42,
     "history": ["MSG 41 alice hello", "JOIN 42 bob"],
     "sessions": [{"nick": "alice", "token": "...", "expires": 1764920120.5, "host": null}]}

``history`` holds the last events without their LF, the last one numbered ``seq``; ``expires`` is wall-clock
time (seconds since the epoch): the moment a session's grace ends, so that the time the server
was down counts against it.  Lines and nicks are the wire's bytes as UTF-8 text (bytes that are
not UTF-8 survive as surrogate escapes).  Tokens are secrets: the file is written mode 0600
(hbchat.server.statekeeper).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from hbchat import wire

#: The marker of an hbchat state file, and the version of its layout that this code writes and reads.
FORMAT = "hbchat-state"
VERSION = 1

#: A state file larger than this is not read (history and sessions are bounded by the options).
MAX_BYTES = 256 * 1024 * 1024


class StateFileError(ValueError):
    """The bytes are not a state file this server can use; the message says why, in one line."""


@dataclass(frozen=True)
class SessionRecord:
    """One saved session: its nick, its token, when its grace ends (wall clock) and its address."""

    nick: bytes
    token: bytes
    expires: float
    #: The address it counts against for --max-grace-per-ip (None: exempt).
    host: str | None = None


@dataclass(frozen=True)
class ChatState:
    """
    The chat as saved: the last seq, the recent events as sent (each ending in LF, the last
    one numbered ``seq``), the sessions.
    """

    seq: int = 0
    history: tuple[bytes, ...] = ()
    sessions: tuple[SessionRecord, ...] = field(default=())
    #: When it was saved (wall clock); informative.
    saved_at: float = 0.0


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _bytes(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise StateFileError(f"{what} is not text")
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise StateFileError(f"{what} is not valid text") from None


def encode(state: ChatState) -> bytes:
    """The bytes of a state file holding ``state``."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": state.saved_at,
        "seq": state.seq,
        "history": [_text(line.removesuffix(b"\n")) for line in state.history],
        "sessions": [
            {"nick": _text(s.nick), "token": _text(s.token), "expires": s.expires, "host": s.host}
            for s in state.sessions
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode("ascii") + b"\n"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StateFileError(f"{what} is not a finite number")
    return float(value)


def _session(entry: Any, index: int) -> SessionRecord:
    where = f"session {index}"
    if not isinstance(entry, dict):
        raise StateFileError(f"{where} is not an object")
    nick = _bytes(entry.get("nick"), f"{where}'s nick")
    if not wire.is_valid_nick(nick):
        raise StateFileError(f"{where}'s nick is not a valid nick")
    token = _bytes(entry.get("token"), f"{where}'s token")
    if not token or not token.isascii() or b" " in token:
        raise StateFileError(f"{where}'s token is not a session token")
    host = entry.get("host")
    if host is not None and not isinstance(host, str):
        raise StateFileError(f"{where}'s host is not text")
    return SessionRecord(nick, token, _number(entry.get("expires"), f"{where}'s expiry"), host)


def _is_event(line: bytes, seq: int) -> bool:
    """Whether ``line`` is the event numbered ``seq`` as the chat keeps it (docs/protocol.md, section 4)."""
    fields = line.split(b" ", 3)
    verb = fields[0]
    if verb not in (b"MSG", b"JOIN", b"LEFT") or len(fields) < 3 or fields[1] != b"%d" % seq:
        return False
    if not wire.is_valid_nick(fields[2]):
        return False
    if verb == b"JOIN":
        return len(fields) == 3
    return len(fields) == 4 and (verb == b"MSG" or b" " not in fields[3])


def decode(data: bytes) -> ChatState:
    """The state held by a state file's bytes; :class:`StateFileError` if they hold none."""
    if len(data) > MAX_BYTES:
        raise StateFileError(f"larger than {MAX_BYTES} bytes")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        # RecursionError: JSON nested deeper than the parser goes (a damaged or hostile file).
        raise StateFileError(f"not JSON (truncated or damaged?): {type(error).__name__}: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StateFileError(f'not an hbchat state file (no "format": "{FORMAT}" marker)')
    version = document.get("version")
    if version != VERSION:
        raise StateFileError(f"state file version {version!r}, this hbchat reads version {VERSION} only")
    seq = document.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise StateFileError("seq is not a non-negative whole number")
    history = document.get("history")
    if not isinstance(history, list):
        raise StateFileError("history is not a list")
    if len(history) > seq:
        raise StateFileError(f"history holds {len(history)} events, more than seq {seq}")
    lines = tuple(_bytes(line, f"history event {index}") for index, line in enumerate(history))
    first = seq - len(lines) + 1
    for index, line in enumerate(lines):
        if b"\n" in line or b"\r" in line:
            raise StateFileError(f"history event {index} holds a line break")
        if not _is_event(line, first + index):
            raise StateFileError(f"history event {index} is not a MSG, JOIN or LEFT numbered {first + index}")
    lines = tuple(line + b"\n" for line in lines)
    sessions = document.get("sessions")
    if not isinstance(sessions, list):
        raise StateFileError("sessions is not a list")
    records = tuple(_session(entry, index) for index, entry in enumerate(sessions))
    saved_at = _number(document.get("saved_at", 0.0), "saved_at")
    return ChatState(seq, lines, records, saved_at)
