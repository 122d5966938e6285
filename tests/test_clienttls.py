"""
The client's TLS setup without a network: the ``tls:`` description, the files, and the
words for every way a certificate or a server can fail us.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from OpenSSL import SSL, crypto
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from hbchat.client.cli import make_endpoint
from hbchat.client.policy import Diagnosis
from hbchat.client.tls import (
    TLSAddress,
    TLSClient,
    TLSSetupError,
    VerifyingCreator,
    describe_name_mismatch,
    describe_verify_error,
    load_client_certificate,
    load_trust_roots,
    parse_tls_description,
    split_description,
)
from tests.test_client import ClientTestCase
from tests.tlscerts import CertificateAuthority

LABEL = "127.0.0.1:6697"


class DescriptionTests(SynchronousTestCase):
    def test_host_and_port_are_read(self) -> None:
        self.assertEqual(parse_tls_description("tls:chat.example:6697"), TLSAddress("chat.example", 6697))

    def test_timeout_bind_address_and_inner_endpoint_are_kept(self) -> None:
        address = parse_tls_description(r"tls:chat.example:6697:timeout=5:bindAddress=10.0.0.2:endpoint=tcp\:h\:1")
        self.assertEqual(address, TLSAddress("chat.example", 6697, 5.0, "10.0.0.2", "tcp:h:1"))

    def test_escaped_ipv6_address_is_one_host_and_shown_in_brackets(self) -> None:
        address = parse_tls_description(r"tls:\:\:1:6697")
        self.assertEqual(address.host, "::1")
        self.assertEqual(address.label, "[::1]:6697")

    def test_keywords_stand_for_positions(self) -> None:
        self.assertEqual(parse_tls_description("tls:host=h:port=7"), TLSAddress("h", 7))

    def test_an_escaped_equals_sign_is_not_a_keyword(self) -> None:
        self.assertEqual(split_description(r"a\=b:c=d=e"), (["a=b"], {"c": "d=e"}))

    def test_twisted_file_parameters_point_to_the_options(self) -> None:
        for parameter, option in [("trustRoots", "--ca"), ("certificate", "--cert"), ("privateKey", "--key")]:
            with self.assertRaises(ValueError) as caught:
                parse_tls_description(f"tls:h:1:{parameter}=/x")
            self.assertIn(option, str(caught.exception))

    def test_malformed_descriptions_say_what_is_wrong(self) -> None:
        for description, words in [
            ("tls:h", "a part is missing"),
            ("tls:h:port", "not a number"),
            ("tls:h:70000", "out of range"),
            ("tls:h:1:timeout=-1", "timeout"),
            ("tls:h:1:color=red", "unknown parameter color="),
            ("tls:::1:6697", "too many parts"),
        ]:
            with self.assertRaises(ValueError, msg=description) as caught:
                parse_tls_description(description)
            self.assertIn(words, str(caught.exception), description)


class FileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.ca = CertificateAuthority()

    def test_a_ca_bundle_loads_every_certificate(self) -> None:
        other = CertificateAuthority("another CA")
        bundle = self.directory / "bundle.pem"
        bundle.write_bytes(self.ca.cert_pem + other.cert_pem)
        self.assertEqual(len(load_trust_roots(str(bundle))), 2)

    def test_a_missing_file_is_named(self) -> None:
        missing = str(self.directory / "nope.pem")
        with self.assertRaises(TLSSetupError) as caught:
            load_trust_roots(missing)
        self.assertEqual(str(caught.exception), f"{missing}: No such file or directory")

    def test_a_file_without_a_certificate_is_refused(self) -> None:
        path = self.directory / "empty.pem"
        path.write_bytes(b"nothing here\n")
        with self.assertRaises(TLSSetupError) as caught:
            load_trust_roots(str(path))
        self.assertIn(f"{path}: no PEM certificate", str(caught.exception))

    def test_the_key_defaults_to_the_certificate_file(self) -> None:
        alice = self.ca.client("alice")
        combined = self.directory / "alice.pem"
        combined.write_bytes(alice.combined_pem)
        loaded = load_client_certificate(str(combined))
        self.assertEqual(loaded.getSubject().commonName, b"alice")

    def test_a_separate_key_file_is_read(self) -> None:
        cert, key = self.ca.client("alice").write(self.directory, "alice")
        self.assertEqual(load_client_certificate(str(cert), str(key)).getSubject().commonName, b"alice")

    def test_a_certificate_file_without_its_key_asks_for_key(self) -> None:
        cert, _ = self.ca.client("alice").write(self.directory, "alice")
        with self.assertRaises(TLSSetupError) as caught:
            load_client_certificate(str(cert))
        self.assertIn("no PEM private key", str(caught.exception))
        self.assertIn("--key FILE", str(caught.exception))

    def test_a_key_of_another_certificate_is_refused(self) -> None:
        cert, _ = self.ca.client("alice").write(self.directory, "alice")
        _, key = self.ca.client("bob").write(self.directory, "bob")
        with self.assertRaises(TLSSetupError) as caught:
            load_client_certificate(str(cert), str(key))
        self.assertIn("does not belong to the certificate", str(caught.exception))

    def test_an_encrypted_key_is_refused_in_words(self) -> None:
        cert, _ = self.ca.client("alice").write(self.directory, "alice")
        key = self.directory / "locked.key"
        key.write_bytes(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
        with self.assertRaises(TLSSetupError) as caught:
            load_client_certificate(str(cert), str(key))
        self.assertIn("encrypted", str(caught.exception))

    def test_a_key_in_the_traditional_encrypted_format_is_refused_without_a_prompt(self) -> None:
        issued = self.ca.client("alice")
        cert, key = issued.write(self.directory, "alice")
        key.write_bytes(issued.encrypted_key_pem(traditional=True))
        with self.assertRaises(TLSSetupError) as caught:
            load_client_certificate(str(cert), str(key))
        self.assertIn("encrypted", str(caught.exception))


class WordingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = CertificateAuthority("Example Private CA")

    def test_an_untrusted_issuer_is_named(self) -> None:
        leaf = self.ca.server("localhost").certificate
        self.assertEqual(
            describe_verify_error(LABEL, 20, 0, leaf),
            f'TLS: the certificate of {LABEL} is issued by "Example Private CA", which is not a trusted CA '
            "(--ca FILE trusts a private CA)",
        )

    def test_an_expired_certificate_gives_its_date(self) -> None:
        leaf = self.ca.server("localhost", expired=True).certificate
        expected = f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        self.assertEqual(
            describe_verify_error(LABEL, 10, 0, leaf), f"TLS: the certificate of {LABEL} expired on {expected}"
        )

    def test_a_certificate_not_yet_valid_gives_its_start(self) -> None:
        leaf = self.ca.server("localhost").certificate
        self.assertIn(
            f"is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}", describe_verify_error(LABEL, 9, 0, leaf)
        )

    def test_an_expired_ca_in_the_chain_is_named(self) -> None:
        message = describe_verify_error(LABEL, 10, 1, self.ca.certificate)
        self.assertIn('is signed by "Example Private CA", whose certificate expired on', message)

    def test_a_self_signed_certificate_says_so(self) -> None:
        self.assertIn("is self-signed", describe_verify_error(LABEL, 18, 0, self.ca.certificate))

    def test_rarer_errors_use_openssl_words(self) -> None:
        message = describe_verify_error(LABEL, 7, 0, self.ca.server().certificate)
        self.assertIn("certificate signature failure", message)

    def test_a_name_mismatch_lists_the_names_in_the_certificate(self) -> None:
        leaf = self.ca.server("localhost", "::1").certificate
        self.assertEqual(
            describe_name_mismatch(LABEL, "127.0.0.1", leaf),
            f'TLS: the certificate of {LABEL} is not valid for "127.0.0.1": it is for localhost, ::1',
        )


class NameCheckTests(SynchronousTestCase):
    """The verify callback's own check of the name, on a certificate OpenSSL found trusted."""

    def setUp(self) -> None:
        self.leaf = crypto.X509.from_cryptography(CertificateAuthority().server("localhost").certificate)

    def creator(self, host: str) -> VerifyingCreator:
        return TLSClient(TLSAddress(host, 6697), trust_roots=[]).creator()

    def test_a_certificate_for_the_host_passes(self) -> None:
        self.assertIsNone(self.creator("localhost").problem(self.leaf, 0, 0, True))

    def test_a_certificate_for_another_host_fails_with_both_names(self) -> None:
        problem = self.creator("127.0.0.1").problem(self.leaf, 0, 0, True)
        self.assertEqual(
            problem, 'TLS: the certificate of 127.0.0.1:6697 is not valid for "127.0.0.1": it is for localhost'
        )

    def test_the_common_name_alone_is_not_enough(self) -> None:
        without_names = crypto.X509.from_cryptography(CertificateAuthority().client("localhost").certificate)
        problem = self.creator("localhost").problem(without_names, 0, 0, True)
        self.assertEqual(
            problem,
            'TLS: the certificate of localhost:6697 is not valid for "localhost": '
            "it is for localhost (common name only; no subjectAltName)",
        )

    def test_openssl_errors_come_first(self) -> None:
        problem = self.creator("localhost").problem(self.leaf, 10, 0, False)
        self.assertIsNotNone(problem)
        assert problem is not None
        self.assertIn("expired on", problem)


def ssl_error(reason: str) -> Failure:
    try:
        raise SSL.Error([("SSL routines", "", reason)])
    except SSL.Error:
        return Failure()


class DiagnosisTests(SynchronousTestCase):
    def setUp(self) -> None:
        ca = CertificateAuthority()
        directory = Path(self.mktemp())
        directory.mkdir()
        cert, key = ca.client("alice").write(directory, "alice")
        self.anonymous = TLSClient(TLSAddress("localhost", 6697))
        self.alice = TLSClient(
            TLSAddress("localhost", 6697), client_certificate=load_client_certificate(str(cert), str(key))
        )

    def test_a_refused_client_certificate_is_final(self) -> None:
        diagnosis = self.alice.diagnose(ssl_error("tlsv1 alert unknown ca"))
        assert diagnosis is not None
        self.assertTrue(diagnosis.final)
        self.assertEqual(
            diagnosis.text, 'TLS: the server at localhost:6697 refused our client certificate (TLS alert "unknown ca")'
        )

    def test_a_server_that_wants_a_certificate_we_lack_says_so(self) -> None:
        diagnosis = self.anonymous.diagnose(ssl_error("tlsv13 alert certificate required"))
        assert diagnosis is not None
        self.assertTrue(diagnosis.final)
        self.assertIn("requires a client certificate", diagnosis.text)
        self.assertIn("--cert FILE", diagnosis.text)

    def test_a_handshake_failure_alert_is_final_and_hints_at_a_certificate(self) -> None:
        diagnosis = self.anonymous.diagnose(ssl_error("sslv3 alert handshake failure"))
        self.assertEqual(
            diagnosis,
            Diagnosis(
                'TLS: the server at localhost:6697 refused the connection (TLS alert "handshake failure"); '
                "it may require a client certificate (--cert FILE)",
                final=True,
            ),
        )

    def test_a_server_that_does_not_speak_tls_is_final(self) -> None:
        self.assertEqual(
            self.anonymous.diagnose(ssl_error("wrong version number")),
            Diagnosis(
                "TLS: the server at localhost:6697 does not speak TLS (wrong version number); is it a tcp: port?",
                final=True,
            ),
        )

    def test_other_tls_errors_are_worded_but_retried(self) -> None:
        self.assertEqual(
            self.anonymous.diagnose(ssl_error("decryption failed or bad record mac")),
            Diagnosis("TLS: decryption failed or bad record mac", final=False),
        )

    def test_failures_that_are_not_tls_are_left_alone(self) -> None:
        self.assertIsNone(self.anonymous.diagnose(Failure(ConnectionRefusedError("refused"))))


class EndpointErrorTests(SynchronousTestCase):
    def test_an_unusable_tls_endpoint_is_one_line_and_exit_2(self) -> None:
        from twisted.internet import reactor

        for endpoint in ("tls:localhost:6697:endpoint=bogus", "tls:localhost:6697:endpoint=tcp"):
            stderr = io.StringIO()
            self.patch(sys, "stderr", stderr)
            arguments = argparse.Namespace(endpoint=endpoint, ca=None, cert=None, key=None)
            error = self.assertRaises(SystemExit, make_endpoint, reactor, arguments)
            self.assertEqual(error.code, 2)
            self.assertEqual(len(stderr.getvalue().splitlines()), 1, stderr.getvalue())
            self.assertIn("is not usable", stderr.getvalue())


class GreetedTLSErrorWordsTests(ClientTestCase):
    """A TLS error after HELLO reconnects (never final), told in words, not OpenSSL's tuples."""

    def test_a_tls_alert_after_the_greeting_is_told_in_words_and_reconnects(self) -> None:
        self.factory.diagnose = TLSClient(TLSAddress("localhost", 6697)).diagnose
        self.network.cut(SSL.Error([("SSL routines", "", "tlsv13 alert certificate required")]))
        events = " | ".join(self.observer.events)
        self.assertNotIn("gave up", events)
        self.assertNotIn("SSL routines", events)
        self.assertIn('TLS alert "certificate required"', events)
        self.assertEqual(len(self.observer.delays), 1)
