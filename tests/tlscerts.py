"""
Certificates made on the spot for TLS tests: a private CA and the certificates it signs.

Everything is generated in the test (no key material in the repository), with small EC
keys so that making a handful costs milliseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


@dataclass
class Issued:
    """A certificate and its key, as PEM bytes and as files (written by :meth:`write`)."""

    cert_pem: bytes
    key_pem: bytes
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """``<stem>.crt`` and ``<stem>.key`` in ``directory``; returns their paths."""
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(self.cert_pem)
        key_path.write_bytes(self.key_pem)
        key_path.chmod(0o600)
        return cert_path, key_path

    def encrypted_key_pem(self, traditional: bool = False) -> bytes:
        """The key, encrypted with a passphrase (PKCS#8, or OpenSSL's traditional format)."""
        key_format = (
            serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, key_format, serialization.BestAvailableEncryption(b"secret")
        )

    @property
    def combined_pem(self) -> bytes:
        """Key and certificate in one file, as Twisted's ``ssl:`` endpoint takes them."""
        return self.key_pem + self.cert_pem


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    return Issued(
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        certificate=certificate,
        key=key,
    )


class CertificateAuthority:
    """A private CA that signs server and client certificates for one test."""

    def __init__(self, name: str = "hbchat test CA", issuer: CertificateAuthority | None = None) -> None:
        self.key = _key()
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name if issuer is None else issuer.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key if issuer is None else issuer.key, hashes.SHA256())
        )
        self.cert_pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def intermediate(self, name: str = "hbchat test intermediate CA") -> CertificateAuthority:
        """A CA whose certificate this one signs."""
        return CertificateAuthority(name, issuer=self)

    def write(self, directory: Path, stem: str = "ca") -> Path:
        path = directory / f"{stem}.crt"
        path.write_bytes(self.cert_pem)
        return path

    def _issue(
        self,
        common_name: str,
        names: list[x509.GeneralName],
        usage: x509.ObjectIdentifier,
        expired: bool,
    ) -> Issued:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        not_before, not_after = (now - 10 * _DAY, now - _DAY) if expired else (now - _DAY, now + 30 * _DAY)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return _pem(builder.sign(self.key, hashes.SHA256()), key)

    def server(self, *hosts: str, expired: bool = False) -> Issued:
        """A server certificate for ``hosts`` (DNS names or IP addresses); default localhost and 127.0.0.1."""
        hosts = hosts or ("localhost", "127.0.0.1")
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        return self._issue(hosts[0], names, ExtendedKeyUsageOID.SERVER_AUTH, expired)

    def client(self, common_name: str, expired: bool = False) -> Issued:
        """A client certificate whose common name is ``common_name`` (a nick, with --tls-identity)."""
        return self._issue(common_name, [], ExtendedKeyUsageOID.CLIENT_AUTH, expired)
