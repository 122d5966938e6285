"""
Whether a listening address can be reached from other machines.

``--metrics`` serves ``/connections``, which lists every client's address; bound to anything
but loopback (no ``interface=``, ``0.0.0.0``, ``::`` or a real address), anyone who reaches
the port reads it.  :class:`WarnIfExposed` wraps the endpoint and logs a warning once the
port listens, from the address the kernel reports: that is the truth whatever the endpoint
string said (a socket from systemd included).  UNIX sockets are local by nature.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IListeningPort, IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer

from hbchat.lognames import NamedLogger


def reachable_from_elsewhere(address: IAddress) -> bool:
    """True for a TCP address that is not a loopback one (the wildcards included); False for UNIX sockets."""
    if not isinstance(address, IPv4Address | IPv6Address):
        return False
    host = address.host.split("%", 1)[0]  # an IPv6 scope (fe80::1%eth0)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True  # not an address we can vouch for
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_loopback


def describe(address: IAddress) -> str:
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    return str(address)


@implementer(IStreamServerEndpoint)
class WarnIfExposed:
    """An endpoint that warns, once listening, when ``--metrics`` is reachable beyond loopback."""

    log = NamedLogger("hbchat.exposure.WarnIfExposed")

    def __init__(self, endpoint: IStreamServerEndpoint, description: str) -> None:
        self.endpoint = endpoint
        self.description = description

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:  # noqa: N803
        def listening(port: IListeningPort) -> IListeningPort:
            address = port.getHost()
            if reachable_from_elsewhere(address):
                self.log.warn(
                    "--metrics {endpoint} listens on {address}, not on loopback only: anyone who reaches it can "
                    "read /connections (every client's address); bind it to loopback, e.g. "
                    "--metrics tcp:9464:interface=127.0.0.1",
                    endpoint=self.description,
                    address=describe(address),
                )
            return port

        return self.endpoint.listen(protocolFactory).addCallback(listening)
