"""
The installed ``twistd hbchat`` serving TLS as a real process: certificate rotation by
SIGHUP, sent the documented way (``kill -HUP $(cat twistd.pid)``).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.ssl import Certificate
from twisted.internet.task import deferLater

from tests.test_integration import DEADLINE, LineClient, within
from tests.test_tls import clientOptions
from tests.test_twistd import TwistdProcess, TwistdTestCase, freePort
from tests.tlscerts import CertificateAuthority


class TLSProcessTestCase(TwistdTestCase):
    """TLS connections to ``twistd hbchat`` processes (no tests of its own: other modules build on it)."""

    @inlineCallbacks
    def connectTLS(self, process: TwistdProcess, port: int, name: str, options: Any) -> Any:
        """A TLS connection to the starting server, retried until it listens (deadline: DEADLINE)."""
        deadline = reactor.seconds() + DEADLINE
        while True:
            client = LineClient(name)
            endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE))
            try:
                yield within(connectProtocol(endpoint, client), DEADLINE, f"{name}: connecting to twistd")
            except ConnectionRefusedError:
                if process.reason is not None or reactor.seconds() > deadline:
                    self.fail(f"twistd did not listen on {port}\n{process.output()}")
                yield deferLater(reactor, 0.1, lambda: None)
                continue
            self.addCleanup(client.disconnect)
            return client

    @inlineCallbacks
    def register(self, client: LineClient, nick: str) -> Any:
        yield client.waitForLine(r"HELLO .*")
        client.sendLine(f"NICK {nick}")
        yield client.waitForLine(rf"WELCOME {nick} .*")

    @inlineCallbacks
    def waitForOutput(self, process: TwistdProcess, text: str) -> Any:
        deadline = reactor.seconds() + DEADLINE
        while text.encode() not in process.out:
            if process.reason is not None or reactor.seconds() > deadline:
                self.fail(f"twistd never logged {text!r}\n{process.output()}")
            yield deferLater(reactor, 0.1, lambda: None)


class TwistdTLSTests(TLSProcessTestCase):
    @inlineCallbacks
    def test_sighup_serves_new_connections_the_new_certificate_while_old_ones_chat_on(self) -> Any:
        ca = CertificateAuthority()
        directory = Path(self.freshDirectory())
        first = ca.server("localhost")
        cert, key = first.write(directory, "server")
        port = freePort()
        description = f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        process = TwistdProcess()
        arguments = [self.twistd, "-n", "--pidfile=twistd.pid", "hbchat", "--listen", description]
        transport = reactor.spawnProcess(process, self.twistd, arguments, env=dict(os.environ), path=str(directory))
        self.addCleanup(self._kill, process, transport)

        old = yield self.connectTLS(process, port, "old", clientOptions(ca))
        yield self.register(old, "old")
        served = Certificate.peerFromTransport(old.transport).original.to_cryptography()
        self.assertEqual(served, first.certificate)

        second = ca.server("localhost")
        second.write(directory, "server")
        os.kill(int((directory / "twistd.pid").read_text()), signal.SIGHUP)
        yield self.waitForOutput(process, f"reloaded TLS certificate for {description}")

        new = yield self.connectTLS(process, port, "new", clientOptions(ca))
        yield self.register(new, "new")
        served = Certificate.peerFromTransport(new.transport).original.to_cryptography()
        self.assertEqual(served, second.certificate)
        old.sendLine("SAY rotated under me")
        yield new.waitForLine(r"MSG \d+ old rotated under me")
        yield old.waitForLine(r"MSG \d+ old rotated under me")
        self.assertIsNone(process.reason, process.output())
        self.assertNotIn(b"Traceback", process.out + process.err, process.output())

    def test_a_client_ca_that_is_no_certificate_is_one_line_and_exit_1(self) -> None:
        ca = CertificateAuthority()
        directory = Path(self.freshDirectory())
        cert, key = ca.server().write(directory, "server")
        garbage = directory / "garbage.pem"
        garbage.write_text("not a certificate\n")
        description = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        result = self.runTwistd("-n", "--pidfile=", "hbchat", "--listen", description, "--tls-client-ca", str(garbage))
        self.assertEqual(result.returncode, 1, result)
        self.assertEqual(len(result.stderr.splitlines()), 1, result)
        self.assertIn("--tls-client-ca", result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
