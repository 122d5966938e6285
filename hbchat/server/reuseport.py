"""
``--reuse-port``: ``tcp:`` and ``ssl:`` listeners with ``SO_REUSEPORT``, so that several
hbchat processes on one host serve one port and the kernel spreads the connections among them.

Twisted's endpoint strings cannot ask for ``SO_REUSEPORT``, so :class:`ReusePortEndpoint`
makes the listening socket itself (``SO_REUSEADDR`` and ``SO_REUSEPORT``, bound, listening)
and hands it to the reactor with ``adoptStreamPort``: from then on it is an ordinary Twisted
port, and an ``ssl:`` listener wraps its factory in TLS as usual (hbchat.server.tls).
:func:`reuse_port_address` reads where a ``tcp:``/``tcp6:`` description listens (pure);
``unix:``, ``systemd:`` and the other kinds have no port to share and are refused.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer

from hbchat.config import LISTEN_BACKLOG, ConfigError
from hbchat.tlsfiles import split_description

#: Endpoint kinds --reuse-port applies to (``ssl:`` is read by hbchat.server.tls).
REUSABLE_KINDS = frozenset({"tcp", "tcp6", "ssl"})
_TCP_PARAMETERS = ("port", "backlog", "interface")


def reuse_port_supported() -> bool:
    """Whether this system has ``SO_REUSEPORT`` at all."""
    return hasattr(socket, "SO_REUSEPORT")


def kind_of(description: str) -> str:
    return description.split(":", 1)[0].strip().lower()


@dataclass(frozen=True)
class PortAddress:
    """Where a listener with ``SO_REUSEPORT`` listens."""

    port: int
    interface: str
    backlog: int
    family: int


def address_family(interface: str, kind: str = "tcp") -> int:
    """IPv6 for ``tcp6:`` and for an IPv6 ``interface=``, as Twisted's endpoints choose."""
    return int(socket.AF_INET6 if kind == "tcp6" or ":" in interface else socket.AF_INET)


def reuse_port_address(description: str) -> PortAddress:
    """Where a ``tcp:`` or ``tcp6:`` ``--listen`` description listens; ConfigError for anything else."""
    kind = kind_of(description)
    if kind not in ("tcp", "tcp6"):
        raise ConfigError(
            f"--reuse-port applies to tcp: and ssl: listeners only, not {description!r} (--listen, --web)"
        )
    args, kwargs = split_description(description)
    parameters = dict(zip(_TCP_PARAMETERS, args[1:], strict=False))
    for name, value in kwargs.items():
        if name not in _TCP_PARAMETERS:
            raise ConfigError(f"{description!r}: unknown parameter {name!r}")
        parameters[name] = value
    if len(args) - 1 > len(_TCP_PARAMETERS):
        raise ConfigError(f"{description!r} has too many parameters")
    try:
        port = int(parameters["port"])
        backlog = int(parameters.get("backlog", LISTEN_BACKLOG))
    except KeyError:
        raise ConfigError(f"{description!r} names no port") from None
    except ValueError:
        raise ConfigError(f"{description!r}: port and backlog must be whole numbers") from None
    if not 0 <= port <= 65535 or backlog <= 0:
        raise ConfigError(f"{description!r}: no such port or backlog")
    interface = parameters.get("interface", "::" if kind == "tcp6" else "")
    return PortAddress(port, interface, backlog, address_family(interface, kind))


def check_reuse_port(listen: tuple[str, ...]) -> None:
    """Every ``--listen`` and ``--web`` endpoint can take ``--reuse-port``, and the system has it; else ConfigError."""
    if not reuse_port_supported():
        raise ConfigError("--reuse-port: this system has no SO_REUSEPORT")
    for description in listen:
        if kind_of(description) != "ssl":
            reuse_port_address(description)


def reuse_port_socket(address: PortAddress) -> socket.socket:
    """A non-blocking socket listening on ``address`` with ``SO_REUSEADDR`` and ``SO_REUSEPORT``."""
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        interface = address.interface or ("::" if address.family == socket.AF_INET6 else "0.0.0.0")
        sock.bind((interface, address.port))
        sock.listen(address.backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """A TCP server endpoint whose socket has ``SO_REUSEPORT``: another process may listen on the same port."""

    def __init__(self, reactor: Any, address: PortAddress) -> None:
        self.reactor = reactor
        self.address = address

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:  # noqa: N803
        address = self.address
        try:
            sock = reuse_port_socket(address)
        except OSError as error:
            return fail(CannotListenError(address.interface, address.port, error))
        try:
            port = self.reactor.adoptStreamPort(sock.fileno(), address.family, protocolFactory)
        except Exception as error:
            return fail(CannotListenError(address.interface, address.port, error))
        finally:
            sock.close()  # the port has its own copy of the descriptor
        return succeed(port)
