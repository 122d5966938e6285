"""
The client's side of TLS: whom to trust, who we are, and failures told in one line.

A ``tls:HOST:PORT`` endpoint is built here rather than by Twisted's parser so that the
client can trust a private CA (``--ca``), present a certificate (``--cert``/``--key``), and,
above all, say *why* a server was not trusted: OpenSSL's verify error and its depth, and
service_identity's verdict on the host name, are caught as they happen and turned into a
:class:`ServerCertificateError` that names the server, the name asked for and the problem.
Both it and a server's refusal of our own certificate (a TLS alert) are final: reconnecting
would only fail the same way, so :class:`~hbchat.client.factory.ChatClientFactory` gives up at once.

Everything but :meth:`TLSClient.endpoint` and the verify callback is pure: parsing, loading
files (with :mod:`hbchat.tlsfiles`, as the server does), and wording (:mod:`hbchat.client.tlswords`).
"""

from __future__ import annotations

import ipaddress
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from OpenSSL import SSL, crypto
from service_identity.exceptions import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, ServiceID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet.endpoints import HostnameEndpoint, clientFromString, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.ssl import (
    Certificate,
    KeyPair,
    PrivateCertificate,
    TLSVersion,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from hbchat.client import tlswords
from hbchat.client.policy import Diagnosis, PermanentConnectionError
from hbchat.tlsfiles import (
    EncryptedKeyError,
    certificate_blocks,
    load_certificates,
    load_private_key,
    private_key_block,
)
from hbchat.tlsfiles import split_description as split_description  # the client's endpoint syntax is Twisted's

#: The wording of certificate problems, from :mod:`hbchat.client.tlswords` (kept importable from here).
certificate_names = tlswords.certificate_names
describe_verify_error = tlswords.describe_verify_error
describe_name_mismatch = tlswords.describe_name_mismatch

#: The parameters of Twisted's ``tls:`` endpoint that hbchat-client takes as options instead.
TWISTED_TLS_FILES = {"trustRoots": "--ca", "certificate": "--cert", "privateKey": "--key"}


#: TLS alerts by which a server turns down a client certificate (or the lack of one).
CERTIFICATE_ALERTS = frozenset(
    {
        "bad certificate",
        "unsupported certificate",
        "certificate revoked",
        "certificate expired",
        "certificate unknown",
        "unknown ca",
        "access denied",
        "certificate required",
    }
)
#: Other alerts that a reconnect would only get again.
FINAL_ALERTS = frozenset({"handshake failure", "protocol version", "insufficient security", "illegal parameter"})

#: OpenSSL's words for bytes that are not a TLS record at all.
NOT_TLS = ("wrong version number", "packet length too long", "http request", "record layer failure")


class TLSSetupError(Exception):
    """A file for TLS cannot be used; the text names the file and the problem, in one line."""


class ServerCertificateError(PermanentConnectionError):
    """The server's certificate did not verify; the text says which server, which name, what is wrong."""


# --- the endpoint description ---


@dataclass(frozen=True)
class TLSAddress:
    """Where a ``tls:`` endpoint connects, and the name its certificate must carry."""

    host: str
    port: int
    timeout: float = 30.0
    bind_address: str | None = None
    #: Another client endpoint description to run TLS over (Twisted's ``endpoint=``).
    endpoint: str | None = None

    @property
    def label(self) -> str:
        """``host:port`` as a person would write it (``[::1]:6697`` for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def is_tls_description(description: str) -> bool:
    return description.split(":", 1)[0].lower() == "tls"


def parse_tls_description(description: str) -> TLSAddress:
    """``tls:HOST:PORT[:timeout=S][:bindAddress=IP][:endpoint=...]``; ValueError says what is wrong."""
    positional, keywords = split_description(description)
    if not positional or positional[0].lower() != "tls":
        raise ValueError("not a tls: endpoint")
    for name, option in TWISTED_TLS_FILES.items():
        if name in keywords:
            raise ValueError(f"{name}= is not taken here: use {option} FILE")
    fields = positional[1:]
    if len(fields) > 2:
        raise ValueError("too many parts (tls:HOST:PORT; an IPv6 address needs its colons escaped, as \\:)")
    for name, value in zip(("host", "port"), fields, strict=False):
        if name in keywords:
            raise ValueError(f"{name} is given twice")
        keywords[name] = value
    unknown = set(keywords) - {"host", "port", "timeout", "bindAddress", "endpoint"}
    if unknown:
        raise ValueError(f"unknown parameter {sorted(unknown)[0]}=")
    host = keywords.get("host", "")
    if not host or not keywords.get("port"):
        raise ValueError("a part is missing (tls:HOST:PORT)")
    try:
        port = int(keywords.get("port", ""))
    except ValueError:
        raise ValueError(f"port {keywords.get('port', '')!r} is not a number (tls:HOST:PORT)") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    try:
        timeout = float(keywords.get("timeout", "30"))
    except ValueError:
        timeout = 0
    if not 0 < timeout < float("inf"):
        raise ValueError(f"timeout={keywords['timeout']} is not a positive number of seconds")
    return TLSAddress(host, port, timeout, keywords.get("bindAddress"), keywords.get("endpoint"))


# --- files ---


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise TLSSetupError(f"{path}: {error.strerror or error}") from None


def load_trust_roots(path: str) -> list[Certificate]:
    """Every certificate in a PEM file (a CA, or a bundle of them)."""
    blocks = certificate_blocks(_read(path))
    if not blocks:
        raise TLSSetupError(f"{path}: no PEM certificate in it")
    try:
        return load_certificates(blocks)
    except crypto.Error:
        raise TLSSetupError(f"{path}: a certificate in it is not valid PEM") from None


def load_client_certificate(cert_path: str, key_path: str | None = None) -> PrivateCertificate:
    """
    Our certificate (the first in ``cert_path``) and its key (from ``key_path``, or from
    ``cert_path`` too when it holds both).
    """
    blocks = certificate_blocks(_read(cert_path))
    if not blocks:
        raise TLSSetupError(f"{cert_path}: no PEM certificate in it")
    try:
        [certificate] = load_certificates(blocks[:1])
    except crypto.Error:
        raise TLSSetupError(f"{cert_path}: the certificate in it is not valid PEM") from None
    key_path = key_path or cert_path
    block = private_key_block(_read(key_path))
    if block is None:
        raise TLSSetupError(f"{key_path}: no PEM private key in it (give it with --key FILE)")
    try:
        key = KeyPair(load_private_key(block))
    except EncryptedKeyError:
        raise TLSSetupError(f"{key_path}: the private key is encrypted; hbchat-client needs it unencrypted") from None
    except crypto.Error:
        raise TLSSetupError(f"{key_path}: the private key in it is not valid PEM") from None
    try:
        combined: PrivateCertificate = PrivateCertificate.fromCertificateAndKeyPair(certificate, key)
    except Exception:
        raise TLSSetupError(f"{key_path}: the key does not belong to the certificate in {cert_path}") from None
    return combined


# --- the connection ---


def _service_id(host: str) -> ServiceID:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return DNS_ID(host)
    return IPAddress_ID(host)


@implementer(IOpenSSLClientConnectionCreator)
class VerifyingCreator:
    """
    Twisted's client TLS (``optionsForClientTLS``: SNI, trust root, our certificate) with a
    verify callback of our own, which keeps OpenSSL's error and depth and service_identity's
    verdict and ends the handshake with a :class:`ServerCertificateError` that says them.
    """

    def __init__(self, address: TLSAddress, trust: Any, client_certificate: PrivateCertificate | None) -> None:
        self.address = address
        self._options = optionsForClientTLS(
            address.host,
            trustRoot=trust,
            clientCertificate=client_certificate,
            # Twisted's default, on the Twisteds that have it; stated for those that do not.
            extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2},
        )
        self._identity = _service_id(address.host)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N803 (the interface's name)
        connection: SSL.Connection = self._options.clientConnectionForTLS(tlsProtocol)
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._callback(tlsProtocol))
        return connection

    def _callback(self, tls_protocol: Any) -> Callable[[SSL.Connection, crypto.X509, int, int, int], bool]:
        # A weak reference: the connection keeps this callback, and the protocol keeps the connection.
        protocol = weakref.ref(tls_protocol)
        failed = False

        def verify(connection: SSL.Connection, certificate: crypto.X509, code: int, depth: int, ok: int) -> bool:
            # An exception here would be lost inside OpenSSL: every problem goes through the protocol.
            nonlocal failed
            if failed:
                return False
            try:
                problem = self.problem(certificate, code, depth, bool(ok))
            except Exception as error:
                problem = f"TLS: the certificate of {self.address.label} could not be checked: {error}"
            if problem is None:
                return True
            failed = True
            failing = protocol()
            if failing is not None:
                failing.failVerification(Failure(ServerCertificateError(problem)))
            return False

        return verify

    def problem(self, certificate: crypto.X509, code: int, depth: int, ok: bool) -> str | None:
        """What is wrong with one certificate of the chain, or None."""
        label = self.address.label
        if not ok:
            return describe_verify_error(label, code, depth, certificate.to_cryptography())
        if depth != 0:
            return None
        try:
            verify_service_identity(extract_patterns(certificate), [self._identity], [])
        except (VerificationError, CertificateError):
            return describe_name_mismatch(label, self.address.host, certificate.to_cryptography())
        return None


@dataclass
class TLSClient:
    """Everything the client needs for TLS: where, whom to trust, who we are."""

    address: TLSAddress
    #: Certificates to trust instead of the platform's store; None: the platform's.
    trust_roots: list[Certificate] | None = None
    client_certificate: PrivateCertificate | None = None

    def creator(self) -> VerifyingCreator:
        trust = trustRootFromCertificates(self.trust_roots) if self.trust_roots is not None else platformTrust()
        return VerifyingCreator(self.address, trust, self.client_certificate)

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        """TLS over ``HostnameEndpoint`` (or over ``endpoint=``), verified as :class:`VerifyingCreator` does."""
        address = self.address
        if address.endpoint is not None:
            inner = clientFromString(reactor, address.endpoint)
        else:
            bind = None if address.bind_address is None else (address.bind_address, 0)
            inner = HostnameEndpoint(reactor, address.host, address.port, address.timeout, bind)
        return wrapClientTLS(self.creator(), inner)

    def diagnose(self, reason: Failure) -> Diagnosis | None:
        """
        A TLS error in words (for :class:`~hbchat.client.factory.ChatClientFactory`'s ``diagnose``):
        the server's refusal of our certificate, or of our having none, is final.
        """
        if not reason.check(SSL.Error):
            return None
        label = self.address.label
        alert = tlswords.alert(reason)
        if alert is None:
            error = tlswords.openssl_error(reason)
            if any(sign in error for sign in NOT_TLS):
                # Plain text where a TLS record should be: a tcp: port, not a TLS one.
                return Diagnosis(
                    f"TLS: the server at {label} does not speak TLS ({error}); is it a tcp: port?", final=True
                )
            return Diagnosis(f"TLS: {error}", final=False)
        if alert in CERTIFICATE_ALERTS:
            if self.client_certificate is None:
                return Diagnosis(
                    f'TLS: the server at {label} requires a client certificate (TLS alert "{alert}"); '
                    "give one with --cert FILE --key FILE",
                    final=True,
                )
            return Diagnosis(
                f'TLS: the server at {label} refused our client certificate (TLS alert "{alert}")', final=True
            )
        if alert in FINAL_ALERTS:
            # Before TLS 1.3, a server that wants a certificate we did not give says only this.
            hint = "; it may require a client certificate (--cert FILE)" if self.client_certificate is None else ""
            return Diagnosis(
                f'TLS: the server at {label} refused the connection (TLS alert "{alert}"){hint}', final=True
            )
        return Diagnosis(f'TLS: the server at {label} ended the connection (TLS alert "{alert}")', final=False)
