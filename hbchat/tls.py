"""TLS for hbchat's listeners."""

from __future__ import annotations

from twisted.protocols.tls import TLSMemoryBIOProtocol


def awaits_handshake(transport: object) -> bool:
    """
    Whether ``transport`` is TLS whose handshake has yet to happen: on a server, that is
    every TLS transport when its protocol's ``connectionMade`` runs (at the TCP accept,
    before the client has said anything), which then hears ``handshakeCompleted``.
    """
    return isinstance(transport, TLSMemoryBIOProtocol)
