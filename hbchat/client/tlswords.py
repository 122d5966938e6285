"""
The client's TLS failures in words: OpenSSL's verify error and depth, a certificate made out
to another name, and the TLS alert or OpenSSL reason inside an ``SSL.Error``.  Pure: used by
:mod:`hbchat.client.tls`, which catches the failures.
"""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from twisted.python.failure import Failure

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

_HINT_CA = "--ca FILE trusts a private CA"


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


def alert(reason: Failure) -> str | None:
    """The TLS alert in an OpenSSL error (``"certificate required"``), if it is one."""
    for text in _openssl_reasons(reason.value):
        match = re.search(r"alert (.+)$", text)
        if match is not None:
            return match.group(1).replace("_", " ")
    return None


def openssl_error(reason: Failure) -> str:
    return "; ".join(_openssl_reasons(reason.value)) or "the TLS handshake failed"
