"""
Lines as WebSocket frames, pure logic: one protocol line (without its line ending) is one
unmasked text frame from the server (RFC 6455, section 5.2), and the close code that goes
with each way a connection ends.

The server writes the frames itself rather than through autobahn's ``sendMessage``: a
server's frames are not masked, so the frames of one chat line are the same bytes for
every receiver, and :class:`FrameCache` frames a turn's broadcast once for all of them.
"""

from __future__ import annotations

import struct

#: FIN and the text opcode: a whole message in one frame.
_TEXT = 0x81

#: Close codes (RFC 6455, section 7.4.1).
NORMAL = 1000
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
TRY_AGAIN_LATER = 1013

#: The close code after the server's last line, by the connection's close reason label
#: (hbchat.closereasons); anything else closes with 1000.
CLOSE_CODES = {
    "shutdown": GOING_AWAY,
    "line_too_long": MESSAGE_TOO_BIG,
    "kicked": POLICY_VIOLATION,
    "unauthorized": POLICY_VIOLATION,
    "register_timeout": POLICY_VIOLATION,
    "full": TRY_AGAIN_LATER,
    "evicted": TRY_AGAIN_LATER,
    "auth_busy": TRY_AGAIN_LATER,
    "auth_backoff": TRY_AGAIN_LATER,
}


def close_code(reason: str | None) -> int:
    """The close code that ends a connection closed for ``reason`` (a close reason label)."""
    return CLOSE_CODES.get(reason or "", NORMAL)


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame carrying ``payload``."""
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", _TEXT, size) + payload
    if size < 65536:
        return struct.pack("!BBH", _TEXT, 126, size) + payload
    return struct.pack("!BBQ", _TEXT, 127, size) + payload


def line_frames(data: bytes) -> bytes:
    """
    The frames of the lines in ``data`` (each ending in LF, CR LF allowed): one frame a
    line, without its line ending.  A last piece without LF is a line too.
    """
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return b"".join(text_frame(line[:-1] if line.endswith(b"\r") else line) for line in lines)


def small_text_frame(data: bytes) -> bytes | None:
    """
    The unmasked payload of ``data`` when it is exactly one client frame of the commonest
    kind: final, text, masked, no extension bits, under 126 bytes (a PONG, a chat line);
    None for anything else, which takes autobahn's general path (and its checks).
    """
    if len(data) < 6 or data[0] != _TEXT:
        return None
    second = data[1]
    size = second & 0x7F
    if not second & 0x80 or size > 125 or len(data) != 6 + size:
        return None
    if not size:
        return b""
    key = (data[2:6] * (size // 4 + 1))[:size]
    return (int.from_bytes(data[6:], "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def frame_error(payload: bytes) -> bytes | None:
    """
    What is wrong with a text frame's payload as a protocol line, as the ERR line that
    answers it; None: it is one line.  (Its length and its UTF-8 are checked elsewhere.)
    """
    if b"\n" in payload or b"\r" in payload:
        return b"ERR 400 one line per frame, without CR or LF\n"
    return None


class FrameCache:
    """
    The frames of the last data framed: a broadcast hands the same bytes object to every
    receiver in a turn, so they are framed once.
    """

    __slots__ = ("_data", "_frames")

    def __init__(self) -> None:
        self._data: bytes | None = None
        self._frames = b""

    def frames(self, data: bytes) -> bytes:
        if data is not self._data:
            self._frames = line_frames(data)
            self._data = data
        return self._frames
