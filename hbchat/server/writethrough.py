"""
Write-through: send at once when nothing is queued, instead of waiting for the reactor.

``transport.write()`` on a Twisted TCP connection only buffers: it asks the reactor to
watch the socket for writability (an ``epoll_ctl``), sends on the next turn, then stops
watching (another ``epoll_ctl``).  For a chat server that writes a short line to thousands
of connections per turn, those two system calls and the extra wake-up cost more than the
send itself.  When the transport has nothing buffered, a line can go straight to the
socket; whatever the kernel does not take is handed to the transport as usual, so order,
backpressure and error handling stay Twisted's.

Only plain TCP connections qualify (a TLS transport must encrypt first), and only while the
transport exposes the buffer bookkeeping this relies on; otherwise ``transport.write`` is
used unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import tcp


def writer_for(transport: Any) -> Callable[[bytes], None]:
    """The fastest correct way to write to ``transport``."""
    if not isinstance(transport, tcp.Connection) or not hasattr(transport, "_tempDataLen"):
        return transport.write  # type: ignore[no-any-return]
    return _WriteThrough(transport)


class _WriteThrough:
    """A callable writer (one small object per connection, not a closure with its cells)."""

    __slots__ = ("_sock", "_transport")

    def __init__(self, transport: tcp.Connection) -> None:
        self._transport = transport
        self._sock = transport.socket

    def __call__(self, data: bytes) -> None:
        transport = self._transport
        if (
            transport._tempDataLen
            or len(transport.dataBuffer) > transport.offset
            or transport.disconnecting
            or not transport.connected
        ):
            transport.write(data)
            return
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Let Twisted find and report the error in its own way.
            transport.write(data)
            return
        if sent < len(data):
            transport.write(data[sent:])
