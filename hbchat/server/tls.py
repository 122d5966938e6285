"""
TLS for ``ssl:`` listeners: hbchat's own context, so that certificates can be reloaded and
client certificates required.

An ``ssl:`` description is the one Twisted users know (``ssl:6697:privateKey=key.pem:
certKey=cert.pem``, with ``extraCertChain=``, ``dhParameters=``, ``interface=`` and
``backlog=``), but Twisted's ``ssl:`` endpoint reads the files once and keeps the context
out of reach.  hbchat therefore reads the description itself (with Twisted's quoting rules)
and listens with a plain TCP endpoint whose connections are wrapped by Twisted's
``TLSMemoryBIOFactory`` around a :class:`ServerTLS`: an
``IOpenSSLServerConnectionCreator`` that makes each new connection from its current
context.  :meth:`ServerTLS.reload` builds a new context from the files and swaps it in;
connections already open keep the ``SSL.Connection`` (and context) they were made with, so
they are not disturbed.

The context is a Twisted ``CertificateOptions``: TLS 1.2 at least (``raiseMinimumTo``, even
on a Twisted whose default is lower), forward-secret AEAD cipher suites only
(:data:`CIPHERS`), and with ``--tls-client-ca`` a verified client certificate required.

ALPN (RFC 7301) is answered by :func:`select_alpn`, not by Twisted: Twisted's select
callback answers ``b""`` when it has no protocol in common with the client, which OpenSSL
turns into a fatal "internal error" alert, so that every client offering ALPN (browsers, Go,
Android) was refused.  hbchat picks ``http/1.1`` when offered (what a WebSocket client
wants) and otherwise carries on without ALPN, as the RFC allows.  Tested with Twisted 24.7.0
+ pyOpenSSL 24.2.1 and Twisted 26.10.0 + pyOpenSSL 26.4.0 (the range pyproject.toml admits).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IProtocolFactory, IReactorTCP
from twisted.internet.ssl import (
    AcceptableCiphers,
    Certificate,
    CertificateOptions,
    DiffieHellmanParameters,
    KeyPair,
    PrivateCertificate,
    TLSVersion,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from zope.interface import implementer

from hbchat.config import LISTEN_BACKLOG, ConfigError
from hbchat.lognames import NamedLogger
from hbchat.tlsfiles import EncryptedKeyError, certificate_blocks, load_private_key, split_description
from hbchat.tlsfiles import load_certificates as load_shared_certificates

#: The oldest TLS version served: TLS 1.0 and 1.1 are deprecated (RFC 8996).
MINIMUM_TLS_VERSION = TLSVersion.TLSv1_2

#: TLS 1.2 cipher suites: ephemeral key exchange (forward secrecy) and AEAD encryption only,
#: as Mozilla's "intermediate" profile.  Twisted's default list also takes the CBC-mode
#: suites (ECDHE-...-AES128-SHA and the like), which no known attack breaks with ECDHE but
#: which TLS scanners grade as weak; every TLS 1.2 client of the last decade has one of
#: these.  (TLS 1.3 has its own suites, all of them AEAD.)
CIPHERS = AcceptableCiphers.fromOpenSSLCipherString("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20")

#: The ALPN protocols an ``ssl:`` listener chooses from a client's offer, most preferred
#: first: ``http/1.1`` (the HTTP of a WebSocket's opening handshake).  A client offering
#: none of them is served without ALPN (RFC 7301, section 3.2, allows the server to ignore
#: the extension); it is never refused for its offer.
ALPN_PROTOCOLS: tuple[bytes, ...] = (b"http/1.1",)

#: The parameters of an ``ssl:`` server endpoint, in the order Twisted takes them positionally.
_SSL_PARAMETERS = (
    "port",
    "privateKey",
    "certKey",
    "sslmethod",
    "interface",
    "backlog",
    "extraCertChain",
    "dhParameters",
)


def choose_alpn(offered: Sequence[bytes], acceptable: Sequence[bytes] = ALPN_PROTOCOLS) -> bytes | None:
    """The protocol to answer a client's ALPN offer with: our most preferred one it offers, or None."""
    for protocol in acceptable:
        if protocol in offered:
            return protocol
    return None


def select_alpn(connection: SSL.Connection, offered: list[bytes]) -> bytes | object:
    """
    pyOpenSSL's ALPN select callback: :func:`choose_alpn`, or, with nothing in common,
    ``NO_OVERLAPPING_PROTOCOLS``, which makes OpenSSL go on without ALPN (no alert).
    """
    chosen = choose_alpn(offered)
    return SSL.NO_OVERLAPPING_PROTOCOLS if chosen is None else chosen


#: An ALPN select callback, as pyOpenSSL calls it.
ALPNSelect = Callable[[SSL.Connection, list[bytes]], "bytes | object"]

#: The ``hbchat_tls_alpn_total`` label of a client offer with nothing in common.
NO_ALPN = "none"


def is_ssl(description: str) -> bool:
    """Whether a ``--listen`` description is an ``ssl:`` endpoint (served by this module)."""
    return description.split(":", 1)[0].strip().lower() == "ssl"


#: Twisted's endpoint syntax, shared with the client (see :mod:`hbchat.tlsfiles`).
_split = split_description


@dataclass(frozen=True)
class TLSListen:
    """One ``ssl:`` listener: where it listens and the files its context is made from."""

    description: str
    port: int
    interface: str
    backlog: int
    private_key: str
    cert_key: str
    extra_cert_chain: str | None = None
    dh_parameters: str | None = None
    #: ``--tls-client-ca``: with it, clients must present a certificate this CA signed.
    client_ca: str | None = None


def parse_ssl(description: str, client_ca: str | None = None) -> TLSListen:
    """
    The settings of an ``ssl:`` description, with Twisted's defaults (``privateKey`` is
    ``server.pem``, ``certKey`` the same file as ``privateKey``), except the backlog, which
    is hbchat's (``LISTEN_BACKLOG``).  ``sslmethod=`` is refused: hbchat chooses the TLS
    versions (1.2 and later) and will not be talked into older ones.
    """
    args, kwargs = _split(description)
    if not args or args[0].strip().lower() != "ssl":
        raise ConfigError(f"{description!r} is not an ssl: endpoint")
    if len(args) - 1 > len(_SSL_PARAMETERS):
        raise ConfigError(f"{description!r} has too many parameters")
    parameters = dict(zip(_SSL_PARAMETERS, args[1:], strict=False))
    for name, value in kwargs.items():
        if name not in _SSL_PARAMETERS:
            raise ConfigError(f"{description!r}: unknown parameter {name!r}")
        if name in parameters:
            raise ConfigError(f"{description!r}: {name} given twice")
        parameters[name] = value
    if "sslmethod" in parameters:
        raise ConfigError(
            f"{description!r}: sslmethod= is not supported; hbchat serves TLS 1.2 and later, whatever the method"
        )
    try:
        port = int(parameters["port"])
        backlog = int(parameters.get("backlog", LISTEN_BACKLOG))
    except KeyError:
        raise ConfigError(f"{description!r} names no port") from None
    except ValueError:
        raise ConfigError(f"{description!r}: port and backlog must be whole numbers") from None
    private_key = parameters.get("privateKey", "server.pem")
    return TLSListen(
        description=description,
        port=port,
        interface=parameters.get("interface", ""),
        backlog=backlog,
        private_key=os.path.abspath(private_key),
        cert_key=os.path.abspath(parameters.get("certKey", private_key)),
        extra_cert_chain=_absolute(parameters.get("extraCertChain")),
        dh_parameters=_absolute(parameters.get("dhParameters")),
        client_ca=_absolute(client_ca),
    )


def _absolute(path: str | None) -> str | None:
    """Paths as of now: twistd may change directory (--rundir) before a SIGHUP reads them again."""
    return None if path is None else os.path.abspath(path)


def load_certificates(path: str, what: str) -> list[Certificate]:
    """Every PEM certificate in the file at ``path`` (at least one); ``what`` names the file in errors."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{what} {path!r} cannot be read: {error.strerror or error}") from None
    blocks = certificate_blocks(data)
    if not blocks:
        raise ConfigError(f"{what} {path!r} holds no PEM certificate")
    try:
        return load_shared_certificates(blocks)
    except crypto.Error as error:
        raise ConfigError(f"{what} {path!r} holds a certificate that cannot be read: {error}") from None


def load_options(listen: TLSListen, alpn_select: ALPNSelect = select_alpn) -> CertificateOptions:
    """
    A fresh ``CertificateOptions`` from the files, with its context already made, so that
    any problem (a missing file, a key that does not match its certificate) shows here, as
    one :class:`ConfigError`, not at the next handshake.
    """
    try:
        key_pem = Path(listen.private_key).read_bytes()
        cert_pem = key_pem if listen.cert_key == listen.private_key else Path(listen.cert_key).read_bytes()
    except OSError as error:
        raise ConfigError(f"{listen.description}: {error.filename!r} cannot be read: {error.strerror}") from None
    try:
        # An encrypted key is refused (hbchat.tlsfiles): OpenSSL would ask for its passphrase
        # on the terminal, and the whole server would wait there (at a SIGHUP, too).
        key = load_private_key(key_pem)
        private = PrivateCertificate.fromCertificateAndKeyPair(Certificate.loadPEM(cert_pem), KeyPair(key))
    except EncryptedKeyError:
        raise ConfigError(
            f"{listen.description}: the private key in {listen.private_key!r} is encrypted; hbchat needs it unencrypted"
        ) from None
    except Exception as error:
        # pyOpenSSL's errors, Twisted's VerifyError (key and certificate do not match), ValueError.
        raise ConfigError(f"{listen.description}: no usable key and certificate: {error}") from None
    chain = None
    if listen.extra_cert_chain is not None:
        chain = [
            c.original for c in load_certificates(listen.extra_cert_chain, f"{listen.description}: extraCertChain")
        ]
    dh = None
    if listen.dh_parameters is not None:
        if not Path(listen.dh_parameters).is_file():
            raise ConfigError(f"{listen.description}: dhParameters {listen.dh_parameters!r} is not a readable file")
        dh = DiffieHellmanParameters.fromFile(FilePath(listen.dh_parameters))
    verify: dict[str, Any] = {}
    client_cas: list[Certificate] = []
    if listen.client_ca is not None:
        client_cas = load_certificates(listen.client_ca, "--tls-client-ca")
        verify = {"verify": True, "requireCertificate": True, "caCerts": [c.original for c in client_cas]}
    try:
        options = CertificateOptions(
            privateKey=private.privateKey.original,
            certificate=private.original,
            extraCertChain=chain,
            dhParameters=dh,
            raiseMinimumTo=MINIMUM_TLS_VERSION,
            acceptableCiphers=CIPHERS,
            **verify,
        )
        context = options.getContext()
        # Replaces Twisted's callback, which refuses every ALPN offer it cannot match (see above).
        context.set_alpn_select_callback(alpn_select)  # type: ignore[arg-type]
        if client_cas:
            # A CA in --tls-client-ca is trusted as it is, an intermediate one included: a
            # client's chain need not go on up to a self-signed root.
            store = context.get_cert_store()
            assert store is not None  # a context always has one
            store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
        for ca in client_cas:
            # Tell clients which CA we take, so one holding several certificates picks the right one.
            context.add_client_ca(ca.original)
    except (SSL.Error, crypto.Error, ValueError) as error:
        raise ConfigError(f"{listen.description}: cannot make a TLS context: {error}") from None
    return options


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    The TLS side of one ``ssl:`` listener: it makes each new connection's
    ``SSL.Connection`` from the current context, and can swap in a new one (:meth:`reload`).
    """

    log = NamedLogger("hbchat.tls.ServerTLS")

    def __init__(self, listen: TLSListen) -> None:
        self.listen = listen
        #: Handshakes whose client offered ALPN, by the protocol chosen (NO_ALPN: none in common).
        self.alpn: Counter[str] = Counter()
        self._options = load_options(listen, self._selectALPN)
        #: Successful reloads so far.
        self.reloads = 0

    def _selectALPN(self, connection: SSL.Connection, offered: list[bytes]) -> bytes | object:
        """:func:`select_alpn`, counted."""
        chosen = select_alpn(connection, offered)
        self.alpn[chosen.decode("ascii", "replace") if isinstance(chosen, bytes) else NO_ALPN] += 1
        return chosen

    @property
    def certificate(self) -> Certificate:
        """The certificate new connections are served."""
        return Certificate(self._options.certificate)

    def serverConnectionForTLS(self, tls_protocol: object) -> SSL.Connection:
        return SSL.Connection(self._options.getContext(), None)

    def reload(self) -> bool:
        """
        Read the files again and serve what they hold to new connections.

        A file that is missing, unreadable or wrong must not take the server down or leave
        it without a certificate: the error is logged once and the previous context stays.
        """
        try:
            options = load_options(self.listen, self._selectALPN)
        except ConfigError as error:
            # The error names the listener already.
            self.log.error(
                "TLS certificate not reloaded, still serving the previous one: {error}",
                listener=self.listen.description,
                error=str(error),
            )
            return False
        self._options = options
        self.reloads += 1
        certificate = options.certificate
        assert certificate is not None
        served = certificate.to_cryptography()
        self.log.info(
            "reloaded TLS certificate for {listener}: {subject}, valid until {notAfter}",
            listener=self.listen.description,
            subject=served.subject.rfc4514_string(),
            notAfter=served.not_valid_after_utc.isoformat(),
        )
        return True

    def wrap(self, factory: IProtocolFactory) -> TLSMemoryBIOFactory:
        """``factory`` behind TLS: what the listener's TCP port accepts connections with."""
        return TLSMemoryBIOFactory(self, False, factory)

    def endpoint(self, reactor: IReactorTCP) -> TCP4ServerEndpoint:
        """
        The TCP endpoint under the TLS, as Twisted's ``ssl:`` builds it (an IPv6
        ``interface=`` works, as there).
        """
        listen = self.listen
        return TCP4ServerEndpoint(reactor, listen.port, listen.backlog, listen.interface)


def peer_common_name(transport: object) -> str | None:
    """
    The common name of the client certificate a connection presented; None without TLS,
    without a certificate, or with a certificate that has no single common name.
    """
    get_certificate = getattr(transport, "getPeerCertificate", None)
    if get_certificate is None:
        return None
    certificate = get_certificate()
    if certificate is None:
        return None
    try:
        names = certificate.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:  # a subject cryptography cannot parse (OpenSSL took it in the handshake)
        return None
    if len(names) != 1:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def identity_refusal(transport: object, nick: bytes) -> str | None:
    """
    ``--tls-identity``: why this connection may not take ``nick`` (None: it may).

    The nick must equal the common name of the client's certificate exactly, letter case
    included: the certificate names the nick everyone will see.  A connection without a
    client certificate (a non-TLS listener) cannot prove any identity, so it may take none.
    """
    name = peer_common_name(transport)
    if name is None:
        return "no client certificate"
    if name.encode("utf-8") != nick:
        return f"its certificate is for {name!r}"
    return None
