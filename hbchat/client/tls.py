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
files, and wording.
"""

from __future__ import annotations

import ipaddress
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
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

from hbchat.client.policy import Diagnosis, PermanentConnectionError

#: The parameters of Twisted's ``tls:`` endpoint that hbchat-client takes as options instead.
TWISTED_TLS_FILES = {"trustRoots": "--ca", "certificate": "--cert", "privateKey": "--key"}

_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL)

# OpenSSL's X509_V_ERR_* codes that get their own words.
_UNABLE_TO_GET_ISSUER_CERT = 2
_CERT_NOT_YET_VALID = 9
_CERT_HAS_EXPIRED = 10
_DEPTH_ZERO_SELF_SIGNED_CERT = 18
_SELF_SIGNED_CERT_IN_CHAIN = 19
_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
_CERT_REVOKED = 23
_INVALID_PURPOSE = 26
_UNTRUSTED_ISSUER = {_UNABLE_TO_GET_ISSUER_CERT, _UNABLE_TO_GET_ISSUER_CERT_LOCALLY, _UNABLE_TO_VERIFY_LEAF_SIGNATURE}

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

_HINT_CA = "--ca FILE trusts a private CA"


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


def split_description(description: str) -> tuple[list[str], dict[str, str]]:
    """
    Twisted's endpoint syntax: ``:`` separates fields, the first ``=`` makes a field a
    keyword, and a backslash takes the next character literally (``tls:\\:\\:1:6697``).
    """
    positional: list[str] = []
    keywords: dict[str, str] = {}
    key: str | None = None
    current: list[str] = []

    def end_field() -> None:
        value = "".join(current)
        if key is None:
            positional.append(value)
        else:
            keywords[key] = value

    characters = iter(description)
    for character in characters:
        if character == "\\":
            current.append(next(characters, ""))
        elif character == ":":
            end_field()
            key, current = None, []
        elif character == "=" and key is None:
            key, current = "".join(current), []
        else:
            current.append(character)
    end_field()
    return positional, keywords


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
    blocks = _CERTIFICATE.findall(_read(path))
    if not blocks:
        raise TLSSetupError(f"{path}: no PEM certificate in it")
    try:
        return [Certificate.loadPEM(block) for block in blocks]
    except crypto.Error:
        raise TLSSetupError(f"{path}: a certificate in it is not valid PEM") from None


def load_client_certificate(cert_path: str, key_path: str | None = None) -> PrivateCertificate:
    """
    Our certificate (the first in ``cert_path``) and its key (from ``key_path``, or from
    ``cert_path`` too when it holds both).
    """
    blocks = _CERTIFICATE.findall(_read(cert_path))
    if not blocks:
        raise TLSSetupError(f"{cert_path}: no PEM certificate in it")
    try:
        certificate = Certificate.loadPEM(blocks[0])
    except crypto.Error:
        raise TLSSetupError(f"{cert_path}: the certificate in it is not valid PEM") from None
    key_path = key_path or cert_path
    match = _PRIVATE_KEY.search(_read(key_path))
    if match is None:
        raise TLSSetupError(f"{key_path}: no PEM private key in it (give it with --key FILE)")
    encrypted = TLSSetupError(f"{key_path}: the private key is encrypted; hbchat-client needs it unencrypted")
    if match.group(1).strip() == b"ENCRYPTED":
        raise encrypted

    def refuse_passphrase(*args: object) -> bytes:
        # Without this OpenSSL would ask for a passphrase on the terminal (a traditional
        # "Proc-Type: 4,ENCRYPTED" key) and the client would wait there.
        raise encrypted

    try:
        key = KeyPair(crypto.load_privatekey(crypto.FILETYPE_PEM, match.group(0), passphrase=refuse_passphrase))
    except TLSSetupError:
        raise
    except crypto.Error:
        raise TLSSetupError(f"{key_path}: the private key in it is not valid PEM") from None
    try:
        combined: PrivateCertificate = PrivateCertificate.fromCertificateAndKeyPair(certificate, key)
    except Exception:
        raise TLSSetupError(f"{key_path}: the key does not belong to the certificate in {cert_path}") from None
    return combined


# --- words for what went wrong ---


def _subject(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


def _issuer(certificate: x509.Certificate) -> str:
    names = certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.issuer.rfc4514_string()


def certificate_names(certificate: x509.Certificate) -> list[str]:
    """The host names and addresses a certificate is for (its subjectAltName, else its CN)."""
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [f"{_subject(certificate)} (common name only; no subjectAltName)"]
    names = [str(name) for name in alternative.get_values_for_type(x509.DNSName)]
    names += [str(address) for address in alternative.get_values_for_type(x509.IPAddress)]
    return names


def _when(moment: Any) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _openssl_text(code: int) -> str:
    try:
        from OpenSSL._util import ffi, lib

        return str(ffi.string(lib.X509_verify_cert_error_string(code)).decode("ascii", "replace"))
    except Exception:
        return f"OpenSSL verify error {code}"


def describe_verify_error(label: str, code: int, depth: int, certificate: x509.Certificate) -> str:
    """
    OpenSSL's verdict on one certificate of ``label``'s chain, in words: the issuer not
    trusted, the dates, or OpenSSL's own text for rarer errors.
    """
    whose = f"the certificate of {label}"
    if depth > 0:
        whose += f' is signed by "{_subject(certificate)}", whose certificate'
    if code in _UNTRUSTED_ISSUER:
        return f'TLS: {whose} is issued by "{_issuer(certificate)}", which is not a trusted CA ({_HINT_CA})'
    if code == _DEPTH_ZERO_SELF_SIGNED_CERT:
        return f'TLS: {whose} is self-signed ("{_subject(certificate)}") and not trusted (--ca FILE trusts it)'
    if code == _SELF_SIGNED_CERT_IN_CHAIN:
        issuer = _subject(certificate)
        return f'TLS: the certificate of {label} is issued by "{issuer}", which is not a trusted CA ({_HINT_CA})'
    if code == _CERT_HAS_EXPIRED:
        return f"TLS: {whose} expired on {_when(certificate.not_valid_after_utc)}"
    if code == _CERT_NOT_YET_VALID:
        return f"TLS: {whose} is not valid before {_when(certificate.not_valid_before_utc)}"
    if code == _CERT_REVOKED:
        return f"TLS: {whose} has been revoked"
    if code == _INVALID_PURPOSE:
        return f"TLS: {whose} is not meant for a TLS server (its key usage forbids it)"
    return f'TLS: {whose} did not verify ("{_subject(certificate)}"): {_openssl_text(code)}'


def describe_name_mismatch(label: str, host: str, certificate: x509.Certificate) -> str:
    """The certificate is trusted but made out to someone else."""
    names = ", ".join(certificate_names(certificate))
    return f'TLS: the certificate of {label} is not valid for "{host}": it is for {names}'


def _openssl_reasons(error: BaseException | None) -> list[str]:
    """The reason strings of an ``SSL.Error`` (its args are a list of (library, function, reason))."""
    entries = error.args[0] if error is not None and error.args and isinstance(error.args[0], list) else []
    return [str(entry[-1]) for entry in entries if isinstance(entry, tuple) and entry and entry[-1]]


def _alert(reason: Failure) -> str | None:
    """The TLS alert in an OpenSSL error (``"certificate required"``), if it is one."""
    for text in _openssl_reasons(reason.value):
        match = re.search(r"alert (.+)$", text)
        if match is not None:
            return match.group(1).replace("_", " ")
    return None


def _openssl_error(reason: Failure) -> str:
    return "; ".join(_openssl_reasons(reason.value)) or "the TLS handshake failed"


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
        alert = _alert(reason)
        if alert is None:
            error = _openssl_error(reason)
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
