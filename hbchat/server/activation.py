"""
Socket activation (``--listen systemd:...``) with the socket's real address family.

Twisted adopts an inherited socket with the family that ``domain=`` names, without looking.
systemd's ``ListenStream=6464`` is a dual-stack IPv6 socket, so the ``systemd:domain=INET``
that one naturally writes made Python decode every IPv6 peer address as an IPv4 one: garbage
like ``[::58cb:7508:627f:0%138178478]:35020`` in the logs and ``/connections``, and per-IP
counts of nonsense.  :func:`with_real_family` asks the socket for its family (``SO_DOMAIN``)
and adopts it with that one, whatever ``domain=`` says; a difference is logged once.
"""

from __future__ import annotations

import os
import socket

from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpoint

from hbchat.lognames import NamedLogger

log = NamedLogger("hbchat.activation")

_NAMES: dict[int, str] = {int(socket.AF_INET): "INET", int(socket.AF_INET6): "INET6", int(socket.AF_UNIX): "UNIX"}


def socket_family(fileno: int) -> int:
    """The address family of the socket open as ``fileno`` (which stays open)."""
    probe = socket.socket(fileno=os.dup(fileno))  # family, type and protocol read from the socket
    try:
        so_domain = getattr(socket, "SO_DOMAIN", None)
        if so_domain is not None:
            return int(probe.getsockopt(socket.SOL_SOCKET, so_domain))
        return int(probe.family)
    finally:
        probe.close()


def family_name(family: int) -> str:
    """``INET``, ``INET6`` or ``UNIX``, as a ``systemd:domain=`` would name it."""
    return _NAMES.get(family, str(family))


def with_real_family(endpoint: IStreamServerEndpoint, description: str) -> IStreamServerEndpoint:
    """
    ``endpoint``, adopting an inherited socket (``systemd:``) with the family the socket
    really has; any other endpoint as it is.
    """
    if not isinstance(endpoint, AdoptedStreamServerEndpoint):
        return endpoint
    given = int(endpoint.addressFamily)
    real = socket_family(endpoint.fileno)
    if real != given:
        log.info(
            "{listener}: the inherited socket is {real}, not {given}: adopted as {real}",
            listener=description,
            real=family_name(real),
            given=family_name(given),
        )
        endpoint.addressFamily = real
    return endpoint
