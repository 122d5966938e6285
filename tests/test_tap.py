"""The twistd options and the service they build."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

import hbchat
import twisted
from hbchat.server import tap
from hbchat.server.factory import ChatFactory
from hbchat.server.listeners import Listener
from hbchat.server.service import ChatService
from tests.tlscerts import CertificateAuthority


def parse(*arguments: str) -> tap.ServerOptions:
    options = tap.ServerOptions()
    options.parseOptions(list(arguments))
    return options


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = parse().config
        self.assertEqual(config.listen, ("tcp:6464",))
        self.assertEqual((config.ping, config.timeout, config.register_timeout), (30, 90, 10))
        self.assertEqual((config.max_line, config.max_clients, config.history), (4096, 10000, 1000))

    def test_every_option_is_taken(self) -> None:
        config = parse(
            "--ping",
            "0.5",
            "--timeout",
            "2",
            "--register-timeout",
            "3",
            "--max-line",
            "100",
            "--max-clients",
            "7",
            "--history",
            "9",
            "--listen",
            "tcp:1234",
            "--listen",
            "unix:/tmp/x.sock",
        ).config
        self.assertEqual(
            (config.ping, config.timeout, config.register_timeout, config.max_line, config.max_clients, config.history),
            (0.5, 2, 3, 100, 7, 9),
        )
        self.assertEqual(config.listen, ("tcp:1234", "unix:/tmp/x.sock"))

    def test_limits_have_their_documented_defaults(self) -> None:
        config = parse().config
        self.assertEqual((config.rate, config.burst), (100, 200))
        self.assertEqual((config.sendq_soft, config.sendq_max), (256 * 1024, 4 * 1024 * 1024))
        self.assertEqual((config.max_per_ip, config.max_handshakes), (50, 500))

    def test_limits_are_taken(self) -> None:
        config = parse(
            *("--rate", "2.5", "--burst", "5", "--sendq-soft", "10000", "--sendq-max", "50000"),
            *("--max-handshakes", "7"),
        ).config
        self.assertEqual(
            (config.rate, config.burst, config.sendq_soft, config.sendq_max, config.max_handshakes),
            (2.5, 5, 10000, 50000, 7),
        )

    def test_read_batching_is_one_millisecond_unless_told_otherwise(self) -> None:
        self.assertEqual(parse().config.batch_window, 0.001)
        self.assertEqual(parse("--batch-window", "0.005").config.batch_window, 0.005)
        self.assertEqual(parse("--batch-window", "0").config.batch_window, 0)

    def test_the_server_batches_reads_by_its_window(self) -> None:
        factory = ChatFactory(parse("--batch-window", "0.004").config, Clock())
        self.assertEqual(factory.pacer.window, 0.004)

    def test_rate_zero_turns_rate_limiting_off(self) -> None:
        self.assertEqual(parse("--rate", "0").config.rate, 0)

    def test_bad_values_name_their_option(self) -> None:
        cases = [
            (["--ping", "x"], "--ping"),
            (["--timeout", "0"], "--timeout"),
            (["--register-timeout", "-1"], "--register-timeout"),
            (["--max-line", "1.5"], "--max-line"),
            (["--max-clients", "0"], "--max-clients"),
            (["--history", "none"], "--history"),
            (["--ping", "2", "--timeout", "1"], "--timeout"),
            (["--listen", "bogus:thing"], "--listen"),
            (["--listen", "tcp:notaport"], "--listen"),
            (["--rate", "-1"], "--rate"),
            (["--rate", "fast"], "--rate"),
            (["--burst", "0"], "--burst"),
            (["--sendq-soft", "0"], "--sendq-soft"),
            (["--sendq-soft", "100"], "--sendq-soft"),
            (["--sendq-soft", "20000", "--sendq-max", "10000"], "--sendq-soft"),
            (["--max-handshakes", "0"], "--max-handshakes"),
            (["--batch-window", "0.02"], "--batch-window"),
            (["--batch-window", "-0.001"], "--batch-window"),
            (["--batch-window", "soon"], "--batch-window"),
        ]
        for arguments, option in cases:
            error = self.assertRaises(usage.UsageError, parse, *arguments)
            self.assertIn(option, str(error), arguments)

    def test_a_checker_that_cannot_be_made_names_auth_not_an_unexpected_error(self) -> None:
        for description, cause in [
            ("memory:alice", "argstring must be in format U:P:..."),
            ("hbpasswd:/nonexistent/passwd", "no such file"),
        ]:
            error = str(self.assertRaises(usage.UsageError, parse, "--auth", description))
            self.assertEqual(error, f"--auth {description}: {cause}")

    def test_twistd_options_print_one_line_and_exit_1(self) -> None:
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        error = self.assertRaises(SystemExit, tap.Options().parseOptions, ["--ping", "2", "--timeout", "1"])
        self.assertEqual(error.code, 1)
        self.assertEqual(len(stderr.getvalue().splitlines()), 1)
        self.assertIn("--timeout", stderr.getvalue())

    def test_version_prints_hbchats_version_then_twisteds_on_its_own_line(self) -> None:
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        error = self.assertRaises(SystemExit, tap.Options().parseOptions, ["--version"])
        self.assertEqual(error.code, 0)
        self.assertEqual(
            stdout.getvalue().splitlines(), [f"hbchat {hbchat.__version__}", f"Twisted {twisted.__version__}"]
        )

    def test_help_shows_every_default(self) -> None:
        text = str(tap.ServerOptions())
        for option, default in [
            ("--listen", "tcp:6464"),
            ("--ping", "30"),
            ("--timeout", "90"),
            ("--register-timeout", "10"),
            ("--max-line", "4096"),
            ("--max-clients", "10000"),
            ("--history", "1000"),
        ]:
            self.assertIn(option, text)
            self.assertIn(f"[default: {default}]", " ".join(text.split()))


class MakeServiceTests(SynchronousTestCase):
    def test_one_listener_per_endpoint_sharing_one_factory(self) -> None:
        service = tap.makeService(parse("--listen", "tcp:0", "--listen", "unix:/tmp/hb-test.sock"), Clock())
        self.assertIsInstance(service, ChatService)
        assert isinstance(service, ChatService)
        endpoints = list(service)
        self.assertEqual(len(endpoints), 2)
        for endpoint, description in zip(endpoints, ["tcp:0", "unix:/tmp/hb-test.sock"], strict=True):
            assert isinstance(endpoint, StreamServerEndpointService)
            # Each endpoint listens with a Listener that labels and counts its connections
            # and hands them to the one chat.
            assert isinstance(endpoint.factory, Listener)
            self.assertIs(endpoint.factory.chat, service.factory)
            self.assertEqual(endpoint.factory.description, description)
        self.assertEqual(service.factory.listeners, [endpoint.factory for endpoint in endpoints])
        self.assertIsInstance(service.factory, ChatFactory)


class TLSOptionsTests(SynchronousTestCase):
    """--listen ssl:, --tls-client-ca and --tls-identity: mistakes are usage errors, caught at parse time."""

    def setUp(self) -> None:
        self.ca = CertificateAuthority()
        self.directory = Path(self.mktemp())
        self.directory.mkdir(parents=True)
        cert, key = self.ca.server().write(self.directory, "server")
        self.ssl = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        self.caFile = str(self.ca.write(self.directory))

    def test_tls_options_are_taken(self) -> None:
        config = parse("--listen", self.ssl, "--tls-client-ca", self.caFile, "--tls-identity").config
        self.assertEqual((config.tls_client_ca, config.tls_identity), (self.caFile, True))

    def test_tls_mistakes_name_their_option(self) -> None:
        garbage = self.directory / "garbage.pem"
        garbage.write_text("nothing here\n")
        cases = [
            (["--listen", self.ssl, "--tls-client-ca", str(garbage)], "--tls-client-ca"),
            (["--listen", self.ssl, "--tls-client-ca", str(self.directory / "missing.pem")], "--tls-client-ca"),
            (["--tls-client-ca", self.caFile], "--tls-client-ca needs an ssl: --listen"),
            (["--listen", self.ssl, "--tls-identity"], "--tls-identity needs --tls-client-ca"),
            (["--listen", self.ssl + ":sslmethod=TLSv1_METHOD"], "sslmethod"),
            (["--listen", f"ssl:0:privateKey={self.directory / 'server.key'}:certKey={self.caFile}"], "ssl:0"),
        ]
        for arguments, message in cases:
            error = self.assertRaises(usage.UsageError, parse, *arguments)
            self.assertIn(message, str(error), arguments)

    def test_ssl_listeners_are_served_by_hbchat_tls(self) -> None:
        service = tap.makeService(parse("--listen", self.ssl, "--listen", "tcp:0"), Clock())
        assert isinstance(service, ChatService)
        [tls] = service.tls
        self.assertEqual(tls.listen.description, self.ssl)
        tlsEndpoint, _ = service
        assert isinstance(tlsEndpoint, StreamServerEndpointService)
        self.assertIsInstance(tlsEndpoint.factory, TLSMemoryBIOFactory)
        self.assertIs(tlsEndpoint.factory.wrappedFactory.chat, service.factory)
