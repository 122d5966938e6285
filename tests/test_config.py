"""Validation of settings: each bad value is rejected with a message naming its option."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from hbchat.config import ConfigError, ServerConfig, format_number, parse_count, parse_seconds, with_listen_backlog


class SecondsTests(SynchronousTestCase):
    def test_whole_and_fractional_seconds(self) -> None:
        self.assertEqual(parse_seconds("ping", "30"), 30.0)
        self.assertEqual(parse_seconds("ping", "0.5"), 0.5)

    def test_rejected_values_name_the_option(self) -> None:
        for text in ["abc", "", "0", "-1", "nan", "inf", "-inf"]:
            error = self.assertRaises(ConfigError, parse_seconds, "ping", text)
            self.assertIn("--ping", str(error))


class CountTests(SynchronousTestCase):
    def test_positive_whole_numbers(self) -> None:
        self.assertEqual(parse_count("history", "1000"), 1000)

    def test_rejected_values_name_the_option(self) -> None:
        for text in ["x", "1.5", "0", "-3", ""]:
            error = self.assertRaises(ConfigError, parse_count, "max-line", text)
            self.assertIn("--max-line", str(error))


class ServerConfigTests(SynchronousTestCase):
    def test_defaults_are_the_documented_ones(self) -> None:
        config = ServerConfig()
        self.assertEqual(
            (config.ping, config.timeout, config.register_timeout, config.max_line, config.max_clients, config.history),
            (30, 90, 10, 4096, 10000, 1000),
        )
        self.assertEqual(config.listen, ("tcp:6464",))

    def test_timeout_must_exceed_ping(self) -> None:
        for ping, timeout in [(2, 1), (5, 5)]:
            error = self.assertRaises(ConfigError, ServerConfig, ping=ping, timeout=timeout)
            self.assertIn("--timeout", str(error))
            self.assertIn("--ping", str(error))


class FormatNumberTests(SynchronousTestCase):
    def test_shortest_plain_decimal(self) -> None:
        cases = {30.0: "30", 0.5: "0.5", 2.25: "2.25", 0.1: "0.1", 1e-05: "0.00001", 1e16: "10000000000000000"}
        for value, text in cases.items():
            self.assertEqual(format_number(value), text)


class ListenBacklogTests(SynchronousTestCase):
    def test_stream_endpoints_get_a_large_backlog(self) -> None:
        self.assertEqual(with_listen_backlog("tcp:6464"), "tcp:6464:backlog=1024")
        self.assertEqual(with_listen_backlog("unix:/run/hb.sock"), "unix:/run/hb.sock:backlog=1024")
        self.assertEqual(
            with_listen_backlog("ssl:6697:privateKey=k.pem:certKey=c.pem"),
            "ssl:6697:privateKey=k.pem:certKey=c.pem:backlog=1024",
        )

    def test_a_backlog_named_by_the_operator_is_kept(self) -> None:
        self.assertEqual(with_listen_backlog("tcp:6464:backlog=10"), "tcp:6464:backlog=10")

    def test_other_endpoints_are_left_alone(self) -> None:
        self.assertEqual(with_listen_backlog("systemd:domain=INET:index=0"), "systemd:domain=INET:index=0")
