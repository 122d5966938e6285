"""
The TLS pieces server and client share (:mod:`hbchat.tlsfiles`): endpoint descriptions split
by Twisted's rules, and PEM files read the same way on both sides.  No reactor, no network.
"""

from __future__ import annotations

from OpenSSL import crypto
from twisted.internet.endpoints import _parse as twisted_parse
from twisted.trial.unittest import SynchronousTestCase

from hbchat.client import tls as client_tls
from hbchat.server import tls as server_tls
from hbchat.tlsfiles import (
    EncryptedKeyError,
    certificate_blocks,
    load_certificates,
    load_private_key,
    private_key_block,
    split_description,
)
from tests.tlscerts import CertificateAuthority

#: Descriptions whose splitting Twisted's own (private) parser decides.
DESCRIPTIONS = [
    "ssl:6697",
    "ssl:6697:privateKey=key.pem:certKey=cert.pem",
    r"ssl:6697:privateKey=C\:\\keys\\server.pem",
    r"tls:\:\:1:6697",
    "tls:chat.example:6697:timeout=5:bindAddress=127.0.0.1",
    r"a\=b:c=d=e",
    "tls:host:1:endpoint=tcp\\:127.0.0.1\\:6697",
    "::",
    "",
    "ssl:port=6697:interface=\\:\\:1",
]


class SplitterTests(SynchronousTestCase):
    def test_descriptions_are_split_as_twisted_splits_them(self) -> None:
        for description in DESCRIPTIONS:
            args, kwargs = twisted_parse(description)
            self.assertEqual(split_description(description), (args, kwargs), description)

    def test_a_later_equals_sign_belongs_to_the_value(self) -> None:
        self.assertEqual(split_description("ssl:privateKey=a=b.pem"), (["ssl"], {"privateKey": "a=b.pem"}))

    def test_a_backslash_at_the_end_stands_for_nothing(self) -> None:
        self.assertEqual(split_description("ssl:6697\\"), (["ssl", "6697"], {}))

    def test_server_and_client_split_with_the_one_shared_splitter(self) -> None:
        self.assertIs(server_tls._split, split_description)
        self.assertIs(client_tls.split_description, split_description)


class CertificateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = CertificateAuthority()
        self.issued = self.ca.server("chat.example")

    def test_every_certificate_of_a_chain_is_found_in_file_order(self) -> None:
        data = self.issued.key_pem + self.issued.cert_pem + b"comment\n" + self.ca.cert_pem
        certificates = load_certificates(certificate_blocks(data))
        self.assertEqual(
            [c.original.to_cryptography() for c in certificates], [self.issued.certificate, self.ca.certificate]
        )

    def test_a_certificate_with_windows_line_endings_is_found(self) -> None:
        data = self.issued.cert_pem.replace(b"\n", b"\r\n")
        [certificate] = load_certificates(certificate_blocks(data))
        self.assertEqual(certificate.original.to_cryptography(), self.issued.certificate)

    def test_a_file_without_certificates_has_no_blocks(self) -> None:
        self.assertEqual(certificate_blocks(b"not a certificate\n" + self.issued.key_pem), [])

    def test_a_damaged_certificate_is_a_crypto_error(self) -> None:
        damaged = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        self.assertRaises(crypto.Error, load_certificates, certificate_blocks(damaged))


class PrivateKeyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.issued = CertificateAuthority().server("chat.example")

    def test_the_key_block_is_found_among_certificates(self) -> None:
        self.assertEqual(private_key_block(self.issued.cert_pem + self.issued.key_pem), self.issued.key_pem.strip())

    def test_a_file_without_a_key_has_no_key_block(self) -> None:
        self.assertIsNone(private_key_block(self.issued.cert_pem))

    def test_an_unencrypted_key_is_loaded(self) -> None:
        key = load_private_key(self.issued.combined_pem)
        self.assertEqual(key.to_cryptography_key().public_key(), self.issued.key.public_key())  # type: ignore[union-attr]

    def test_a_pkcs8_encrypted_key_is_refused(self) -> None:
        self.assertRaises(EncryptedKeyError, load_private_key, self.issued.encrypted_key_pem())

    def test_a_traditional_encrypted_key_is_refused_without_a_prompt(self) -> None:
        self.assertRaises(EncryptedKeyError, load_private_key, self.issued.encrypted_key_pem(traditional=True))

    def test_no_key_at_all_is_a_crypto_error(self) -> None:
        self.assertRaises(crypto.Error, load_private_key, self.issued.cert_pem)
