"""
TCP keepalive and TCP_USER_TIMEOUT: the kernel's second line of defence behind the heartbeat.

The heartbeat notices a silent peer; these options make the kernel give up on a peer that
stopped acknowledging, even where the application is not looking (a connection that only
receives, or unacknowledged output that would otherwise be retransmitted for ~15 minutes).
"""

from __future__ import annotations

import math
import socket
from typing import Any


def socket_transport(transport: Any) -> tuple[Any, socket.socket] | None:
    """
    The transport that owns the socket under ``transport``, and that socket, looking
    through wrappers such as TLS.

    A TLS transport's ``getHandle()`` is the OpenSSL connection; its socket is one level
    further down, on the wrapped transport.
    """
    for _ in range(8):
        if transport is None:
            return None
        get_handle = getattr(transport, "getHandle", None)
        if get_handle is not None:
            handle = get_handle()
            if isinstance(handle, socket.socket):
                return transport, handle
        transport = getattr(transport, "transport", None)
    return None


def find_socket(transport: Any) -> socket.socket | None:
    """The socket under a transport, looking through wrappers such as TLS."""
    found = socket_transport(transport)
    return None if found is None else found[1]


def keepalive_settings(timeout: float, user_timeout: float | None = None) -> dict[str, int]:
    """
    Keepalive numbers derived from the idle timeout.

    Probing starts after one idle timeout and gives up after about two; unacknowledged
    output is abandoned after ``user_timeout`` seconds, one idle timeout unless told
    otherwise (TCP_USER_TIMEOUT, in milliseconds).  The server gives a longer one
    (hbchat.backpressure.kernel_user_timeout): Linux also counts a zero window against it.
    """
    idle = max(1, math.ceil(timeout))
    interval = max(1, math.ceil(timeout / 3))
    abandon = timeout if user_timeout is None else user_timeout
    return {"idle": idle, "interval": interval, "count": 3, "user_timeout_ms": max(1, int(abandon * 1000))}


def enable_keepalive(transport: Any, timeout: float, user_timeout: float | None = None) -> bool:
    """Turn on keepalive for a TCP connection; ``False`` for UNIX sockets and the like."""
    sock = find_socket(transport)
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    settings = keepalive_settings(timeout, user_timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, key in (("TCP_KEEPIDLE", "idle"), ("TCP_KEEPINTVL", "interval"), ("TCP_KEEPCNT", "count")):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, settings[key])
    user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)
    if user_timeout is not None:
        sock.setsockopt(socket.IPPROTO_TCP, user_timeout, settings["user_timeout_ms"])
    return True
