"""
A client's address as hbchat sees it: one spelling for limits, logs and ``/connections``.

A dual-stack IPv6 listener (``tcp6:6464``, or systemd's ``ListenStream=6464``) sees an IPv4
client as the IPv4-mapped address ``::ffff:a.b.c.d``.  Every use of a peer address goes
through :func:`normal_host`, so such a client counts against ``--max-per-ip`` together with
its IPv4 connections, ``::ffff:127.0.0.1`` is loopback (exempt), and logs and
``/connections`` name it ``a.b.c.d:port`` as on an IPv4 listener.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.interfaces import IAddress


def normal_host(host: str) -> str:
    """``host`` with an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) written as ``a.b.c.d``."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return host
    mapped = address.ipv4_mapped
    return host if mapped is None else str(mapped)


def peer_host(address: IAddress) -> str | None:
    """The normalised host of a TCP address; None for UNIX sockets and the like."""
    host = getattr(address, "host", None)
    return normal_host(host) if isinstance(host, str) else None


def limited_host(address: IAddress) -> str | None:
    """
    The address a connection counts against for --max-per-ip; None for loopback and UNIX
    sockets, which are exempt (behind a local proxy every client would share 127.0.0.1).
    """
    host = peer_host(address)
    if host is None:
        return None
    try:
        if ipaddress.ip_address(host.split("%", 1)[0]).is_loopback:
            return None
    except ValueError:
        pass
    return host


def describe_peer(address: IAddress) -> str:
    """``host:port``, ``[v6host]:port`` or ``unix:path``, as logs and ``/connections`` show it."""
    host = peer_host(address)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    return f"unix:{name.decode(errors='replace') if isinstance(name, bytes) else name or '?'}"
