"""
The installed ``hbchat-client`` over TLS, as a real process against a TLS server in trial's
reactor: ``--ca``, ``--cert``/``--key``, one line and exit status 1 for every certificate
that does not verify, and the usage errors of the TLS options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks

from tests.test_cli import ClientProcess, CliTestCase
from tests.tlscerts import CertificateAuthority
from tests.tlsserver import TLSServers


class TLSCliTestCase(CliTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.tls = TLSServers(self)

    @inlineCallbacks
    def pipe(self, *arguments: str) -> Any:
        """``hbchat-client ARGUMENTS`` saying one line from a pipe, until it exits."""
        process = self.spawnClient(*arguments)
        process.process.write(b"hello over TLS\n")
        process.process.closeStdin()
        yield self.waitEnded(process)
        return process

    @inlineCallbacks
    def assertDelivered(self, *arguments: str) -> Any:
        process: ClientProcess = yield self.pipe(*arguments)
        self.assertEqual(process.exitCode(), 0, process.output())
        self.assertEqual(process.errLines(), [], process.output())
        self.assertTrue(any(line.endswith("<bot> hello over TLS") for line in process.outLines()), process.output())

    @inlineCallbacks
    def assertOneLineFailure(self, arguments: list[str], expected: str, status: int = 1) -> Any:
        """Exit ``status``, exactly one stderr line (``expected``), no traceback, no reconnect."""
        process: ClientProcess = yield self.pipe(*arguments)
        self.assertEqual(process.exitCode(), status, process.output())
        self.assertEqual(process.errLines(), [f"hbchat-client: {expected}"], process.output())
        self.assertNotIn("Traceback", process.output())
        self.assertNotIn("reconnecting", process.output())

    @inlineCallbacks
    def assertUsageError(self, arguments: list[str], *expected: str) -> Any:
        """Exit status 2, no traceback, and the last stderr line (after argparse's usage) says it."""
        process: ClientProcess = yield self.pipe(*arguments)
        self.assertEqual(process.exitCode(), 2, process.output())
        self.assertNotIn("Traceback", process.output())
        last = process.errLines()[-1] if process.errLines() else ""
        self.assertTrue(last.startswith("hbchat-client: "), process.output())
        for text in expected:
            self.assertIn(text, last, process.output())


class TLSDeliveryTests(TLSCliTestCase):
    def test_lines_are_delivered_over_tls_trusting_a_private_ca(self) -> Any:
        _, port = self.tls.start()
        return self.assertDelivered(f"tls:127.0.0.1:{port}", "--nick", "bot", "--ca", self.tls.caFile)

    def test_lines_are_delivered_over_mutual_tls_with_cert_and_key(self) -> Any:
        _, port = self.tls.start(clientCA=self.tls.ca)
        cert, key = self.tls.write(self.tls.ca.client("bot"), "bot")
        return self.assertDelivered(
            f"tls:127.0.0.1:{port}", "--nick", "bot", "--ca", self.tls.caFile, "--cert", cert, "--key", key
        )

    def test_one_file_with_key_and_certificate_is_enough_for_cert(self) -> Any:
        _, port = self.tls.start(clientCA=self.tls.ca)
        combined = self.tls.directory / "bot.pem"
        combined.write_bytes(self.tls.ca.client("bot").combined_pem)
        return self.assertDelivered(
            f"tls:127.0.0.1:{port}", "--nick", "bot", "--ca", self.tls.caFile, "--cert", str(combined)
        )


class TLSVerificationTests(TLSCliTestCase):
    def test_wrong_host_name_is_one_line_and_status_1(self) -> Any:
        _, port = self.tls.start(self.tls.ca.server("localhost"))
        return self.assertOneLineFailure(
            [f"tls:127.0.0.1:{port}", "--nick", "bot", "--ca", self.tls.caFile],
            f'TLS: the certificate of 127.0.0.1:{port} is not valid for "127.0.0.1": it is for localhost',
        )

    def test_untrusted_ca_is_one_line_and_status_1(self) -> Any:
        _, port = self.tls.start()
        other = str(CertificateAuthority("some other CA").write(self.tls.directory, "other"))
        return self.assertOneLineFailure(
            [f"tls:127.0.0.1:{port}", "--nick", "bot", "--ca", other],
            f'TLS: the certificate of 127.0.0.1:{port} is issued by "hbchat test CA", which is not a trusted CA '
            "(--ca FILE trusts a private CA)",
        )

    def test_untrusted_by_the_system_store_without_ca_is_one_line(self) -> Any:
        _, port = self.tls.start()
        return self.assertOneLineFailure(
            [f"tls:127.0.0.1:{port}", "--nick", "bot"],
            f'TLS: the certificate of 127.0.0.1:{port} is issued by "hbchat test CA", which is not a trusted CA '
            "(--ca FILE trusts a private CA)",
        )

    def test_expired_certificate_is_one_line_and_status_1(self) -> Any:
        expired = self.tls.ca.server("localhost", "127.0.0.1", expired=True)
        _, port = self.tls.start(expired)
        when = f"{expired.certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        return self.assertOneLineFailure(
            [f"tls:127.0.0.1:{port}", "--nick", "bot", "--ca", self.tls.caFile],
            f"TLS: the certificate of 127.0.0.1:{port} expired on {when}",
        )

    def test_a_server_requiring_a_client_certificate_is_one_line_and_status_1(self) -> Any:
        _, port = self.tls.start(clientCA=self.tls.ca)
        return self.assertOneLineFailure(
            [f"tls:127.0.0.1:{port}", "--nick", "bot", "--ca", self.tls.caFile],
            f'TLS: the server at 127.0.0.1:{port} requires a client certificate (TLS alert "certificate required"); '
            "give one with --cert FILE --key FILE",
        )


class TLSUsageTests(TLSCliTestCase):
    def test_tls_options_need_a_tls_endpoint(self) -> Any:
        return self.assertUsageError(
            ["tcp:127.0.0.1:1", "--nick", "bot", "--ca", self.tls.caFile], "--ca needs a tls: ENDPOINT"
        )

    def test_an_ssl_endpoint_is_refused_in_one_line_naming_tls(self) -> Any:
        return self.assertOneLineFailure(
            ["ssl:127.0.0.1:6697", "--nick", "bot"],
            "ENDPOINT 'ssl:127.0.0.1:6697': ssl: would not check the server's certificate; "
            "use tls:127.0.0.1:6697 (verified; --ca FILE trusts a private CA)",
            status=2,
        )

    @inlineCallbacks
    def test_an_ssl_endpoint_to_a_live_tls_server_never_connects(self) -> Any:
        listener, port = self.tls.start()
        process: ClientProcess = yield self.pipe(f"SSL:127.0.0.1:{port}", "--nick", "bot")
        self.assertEqual(process.exitCode(), 2, process.output())
        self.assertIn(f"use tls:127.0.0.1:{port}", process.output())
        self.assertEqual(listener.accepted, 0)

    def test_an_ssl_endpoint_is_refused_before_the_tls_options_are_checked(self) -> Any:
        return self.assertOneLineFailure(
            ["ssl:127.0.0.1:6697", "--nick", "bot", "--ca", self.tls.caFile],
            "ENDPOINT 'ssl:127.0.0.1:6697': ssl: would not check the server's certificate; "
            "use tls:127.0.0.1:6697 (verified; --ca FILE trusts a private CA)",
            status=2,
        )

    def test_key_needs_cert(self) -> Any:
        return self.assertUsageError(
            ["tls:127.0.0.1:1", "--nick", "bot", "--key", self.tls.caFile], "--key needs --cert"
        )

    def test_twisted_tls_file_parameters_point_to_the_options(self) -> Any:
        return self.assertUsageError(
            [f"tls:127.0.0.1:1:trustRoots={self.tls.directory}", "--nick", "bot"], "trustRoots=", "use --ca FILE"
        )

    def test_a_missing_ca_file_is_one_line_and_status_1(self) -> Any:
        missing = str(Path(self.tls.directory, "missing.crt"))
        return self.assertOneLineFailure(
            ["tls:127.0.0.1:1", "--nick", "bot", "--ca", missing], f"--ca: {missing}: No such file or directory"
        )

    def test_a_key_of_another_certificate_is_one_line_and_status_1(self) -> Any:
        cert, _ = self.tls.write(self.tls.ca.client("bot"), "bot")
        _, key = self.tls.write(self.tls.ca.client("eve"), "eve")
        return self.assertOneLineFailure(
            ["tls:127.0.0.1:1", "--nick", "bot", "--cert", cert, "--key", key],
            f"--cert/--key: {key}: the key does not belong to the certificate in {cert}",
        )
