"""
The HTTP connections of a ``--web`` listener that are not WebSockets (yet): bounded, so that
connections that never upgrade (a slowloris sending its request head a byte at a time)
cannot hold file descriptors and starve ``--listen``.

- At most ``--max-per-ip`` of them from one address (loopback and UNIX sockets exempt, as
  for chat connections: :func:`hbchat.server.addresses.limited_host`) and at most
  ``--max-handshakes`` in all (a WebSocket counts there from its upgrade until it
  registers): a connection over either is closed at once, unread.
- Each request must have come in whole (head and body) within ``--register-timeout`` of
  the moment the connection began waiting for it (accepted, TLS handshake included, or the
  previous answer sent): an absolute deadline, not an idle timer that each byte restarts.

A connection leaves the room when it closes or when it is upgraded to a WebSocket (from
then on it is a chat connection, counted by admission).  This module is pure: it counts.
"""

from __future__ import annotations

#: Why a connection is refused, as logged.
TOO_MANY_FROM_ADDRESS = "too many HTTP connections from its address (--max-per-ip)"
TOO_MANY = "too many HTTP connections (--max-handshakes)"


class HTTPRoom:
    """The HTTP connections not upgraded, in all and by address."""

    def __init__(self) -> None:
        self.count = 0
        self._per_host: dict[str, int] = {}

    def enter(self, host: str | None, per_host: int, total: int) -> str | None:
        """Count a new connection from ``host`` (None: exempt) in; or why it is refused."""
        if self.count >= total:
            return TOO_MANY
        if host is not None:
            here = self._per_host.get(host, 0)
            if here >= per_host:
                return TOO_MANY_FROM_ADDRESS
            self._per_host[host] = here + 1
        self.count += 1
        return None

    def leave(self, host: str | None) -> None:
        """A connection counted in by :meth:`enter` closed or was upgraded."""
        self.count -= 1
        if host is not None:
            remaining = self._per_host[host] - 1
            if remaining:
                self._per_host[host] = remaining
            else:
                del self._per_host[host]

    def from_host(self, host: str) -> int:
        """How many connections from ``host`` are counted."""
        return self._per_host.get(host, 0)
