"""
A TLS scan of a running ssl: listener by a real tool, the ``openssl`` command: no protocol
below TLS 1.2 is accepted, and no cipher suite without forward secrecy and AEAD.

The probes lower the client's own security level (``@SECLEVEL=0``) so that it really
offers TLS 1.0 or a weak suite: what is tested is that the *server* refuses them (it
answers with an alert), not that a modern client will not ask.

Without ``openssl`` the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from twisted.internet.defer import DeferredSemaphore, gatherResults, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.test_integration import ChatTestCase, tcpPortOf
from tests.test_tls import sslDescription
from tests.tlscerts import CertificateAuthority

OPENSSL = shutil.which("openssl") or ("/usr/bin/openssl" if os.path.exists("/usr/bin/openssl") else None)

#: What an acceptable TLS 1.2 suite looks like: ephemeral key exchange, AEAD encryption.
STRONG_TLS12 = re.compile(r"(ECDHE|DHE)-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)")


class OpenSSLScanTests(ChatTestCase):
    timeout = 600  # one s_client per cipher suite openssl knows; generous for a busy machine

    def setUp(self) -> None:
        super().setUp()
        if OPENSSL is None:
            if os.environ.get("CI") == "true":
                self.fail("the openssl command is missing, and CI must scan the TLS listener")
            raise unittest.SkipTest("no openssl command on PATH or at /usr/bin/openssl")
        self.openssl = OPENSSL
        ca = CertificateAuthority()
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        self.caFile = str(ca.write(directory))
        service = self.startService("--listen", sslDescription(directory, ca.server("localhost", "127.0.0.1")))
        self.address = f"127.0.0.1:{tcpPortOf(service.factory)}"

    def sClient(self, *arguments: str, brief: bool = True) -> Any:
        """
        Fires with (exit status, output) of one ``openssl s_client`` handshake, verifying the
        server; not ``brief``, the output tells the ALPN outcome too.
        """
        command = [self.openssl, "s_client", "-connect", self.address, *(["-brief"] if brief else [])]
        command += ["-CAfile", self.caFile]
        command += ["-verify_return_error", *arguments]

        def run() -> tuple[int, str]:
            done = subprocess.run(command, input=b"", capture_output=True, timeout=120, check=False)
            return done.returncode, (done.stdout + done.stderr).decode(errors="replace")

        return deferToThread(run)

    @inlineCallbacks
    def test_tls_1_0_and_1_1_are_refused_by_the_server(self) -> Any:
        for version in ("-tls1", "-tls1_1"):
            status, output = yield self.sClient(version, "-cipher", "DEFAULT:@SECLEVEL=0")
            self.assertNotEqual(status, 0, output)
            self.assertIn("alert protocol version", output, f"{version}: not refused by the server\n{output}")

    @inlineCallbacks
    def test_tls_1_2_and_1_3_are_served_with_a_verified_certificate(self) -> Any:
        for version, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            status, output = yield self.sClient(version, "-verify_hostname", "localhost")
            self.assertEqual(status, 0, output)
            self.assertIn(f"Protocol version: {name}", output)
            self.assertIn("Verification: OK", output)

    @inlineCallbacks
    def test_weak_cipher_suites_are_refused_by_the_server(self) -> Any:
        weak = "RC4:DES:3DES:NULL:eNULL:EXPORT:aNULL:MD5:@SECLEVEL=0"
        status, output = yield self.sClient("-tls1_2", "-cipher", weak)
        self.assertNotEqual(status, 0, output)
        self.assertIn("alert handshake failure", output, output)

    @inlineCallbacks
    def test_every_tls_1_2_suite_accepted_is_forward_secret_and_aead(self) -> Any:
        listed = subprocess.run(
            [self.openssl, "ciphers", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"], capture_output=True, text=True, check=True
        )
        suites = listed.stdout.strip().split(":")
        self.assertGreater(len(suites), 50, listed.stdout)
        limit = DeferredSemaphore(4)

        @inlineCallbacks
        def probe(suite: str) -> Any:
            status, _ = yield limit.run(self.sClient, "-tls1_2", "-cipher", f"{suite}:@SECLEVEL=0")
            return suite if status == 0 else None

        results = yield gatherResults([probe(suite) for suite in suites])
        accepted = [suite for suite in results if suite is not None]
        self.assertTrue(accepted, "no TLS 1.2 suite accepted at all")
        weak = [suite for suite in accepted if not STRONG_TLS12.fullmatch(suite)]
        self.assertEqual(weak, [], f"accepted: {accepted}")

    @inlineCallbacks
    def test_a_client_offering_alpn_http_1_1_connects_and_gets_it(self) -> Any:
        status, output = yield self.sClient("-alpn", "http/1.1", brief=False)
        self.assertEqual(status, 0, output)
        self.assertIn("Verify return code: 0 (ok)", output)
        self.assertIn("ALPN protocol: http/1.1", output)

    @inlineCallbacks
    def test_a_client_offering_h2_and_http_1_1_connects_with_http_1_1(self) -> Any:
        status, output = yield self.sClient("-alpn", "h2,http/1.1", brief=False)
        self.assertEqual(status, 0, output)
        self.assertIn("ALPN protocol: http/1.1", output)

    @inlineCallbacks
    def test_a_client_offering_only_unknown_protocols_connects_without_alpn(self) -> Any:
        for version in ("-tls1_2", "-tls1_3"):
            status, output = yield self.sClient(version, "-alpn", "foo", brief=False)
            self.assertEqual(status, 0, f"{version}\n{output}")
            self.assertNotIn("alert", output)
            self.assertIn("No ALPN negotiated", output)
