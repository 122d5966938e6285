"""
What the server holds unsent for one connection: Twisted's buffer plus the kernel's.

Left alone, Linux grows a TCP socket's send buffer to ``net.ipv4.tcp_wmem``'s maximum (4 MiB
by default), so a thousand clients that do not read can pin gigabytes of kernel memory
that no limit of the server's sees, past the machine's ``tcp_mem`` pressure threshold,
where every connection suffers.  So each connection's kernel send buffer is capped at
``--sendq-soft`` (``SO_SNDBUF`` is given half of it: Linux doubles the value for its own
bookkeeping), and what the kernel still holds (``SIOCOUTQ``: sent but not acknowledged,
plus not yet sent) counts, with the transport's buffer, against ``--sendq-max``.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
from typing import Any

from hbchat.sockopts import socket_transport

#: The ioctl that tells a socket's unacknowledged and unsent bytes (Linux: SIOCOUTQ, the
#: same number as TIOCOUTQ); None where there is none.
SIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None)

_INT = struct.Struct("i")


def kernel_unsent(sock: socket.socket) -> int:
    """Bytes the kernel holds for ``sock`` that the peer has not acknowledged (0 if unknown)."""
    if SIOCOUTQ is None:
        return 0
    try:
        result = fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0" * _INT.size)
    except (OSError, ValueError):
        return 0
    return max(0, int(_INT.unpack(result)[0]))


class SendQueue:
    """One connection's unsent output, as bytes held in user space and in the kernel."""

    __slots__ = ("_owner", "_sock")

    def __init__(self, owner: Any, sock: socket.socket) -> None:
        self._owner = owner
        self._sock = sock

    def user_unsent(self) -> int:
        """Bytes the transport that owns the socket holds because the kernel would not take them."""
        owner = self._owner
        return len(owner.dataBuffer) - owner.offset + owner._tempDataLen  # type: ignore[no-any-return]

    def unsent(self) -> int:
        """Everything written that the peer has not acknowledged: the transport's and the kernel's."""
        return self.user_unsent() + kernel_unsent(self._sock)


def send_queue(transport: Any, kernel_max: int) -> SendQueue | None:
    """
    Cap the kernel's send buffer under ``transport`` at about ``kernel_max`` bytes, and the
    meter of its unsent output; ``None`` without a socket, or with a transport whose
    buffer is not Twisted's (a fake one in tests).
    """
    found = socket_transport(transport)
    if found is None:
        return None
    owner, sock = found
    if sock.type != socket.SOCK_STREAM:
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(1, kernel_max // 2))
    except OSError:
        pass
    data, offset, temp = (getattr(owner, name, None) for name in ("dataBuffer", "offset", "_tempDataLen"))
    if not isinstance(data, (bytes, memoryview)) or not isinstance(offset, int) or not isinstance(temp, int):
        return None
    return SendQueue(owner, sock)
