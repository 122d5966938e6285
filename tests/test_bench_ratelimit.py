"""
``hbchat-bench`` over the server's rate limit: every ``ERR 429`` and ``BYE kicked`` is counted,
shown in the summary line, and fails the run unless ``--allow-rate-limit``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from hbchat import wire
from hbchat.bench import cli
from hbchat.bench.conn import SENDER, BenchConnection, Tally
from hbchat.bench.report import summary_line
from hbchat.bench.settings import Endpoint, RunSettings


def registeredSender(tally: Tally) -> BenchConnection:
    connection = BenchConnection(tally, Clock(), 0, b"bench-0", SENDER, 30.0, lambda c: None, lambda c: None)
    connection.makeConnection(StringTransport())
    connection.dataReceived(b"HELLO hbchat/1 ping=30 timeout=90\r\nWELCOME bench-0 token 0\r\n")
    assert connection.registered
    return connection


class CountingTests(unittest.TestCase):
    def test_each_err_429_is_counted(self) -> None:
        tally = Tally(b"0000")
        connection = registeredSender(tally)
        connection.dataReceived(wire.err_rate_limited(b"SAY") * 3)
        connection.dataReceived(wire.err_rate_limited(b"PING"))
        self.assertEqual(tally.rate_limited, 4)
        self.assertEqual(tally.kicked, 0)

    def test_a_kick_is_counted(self) -> None:
        tally = Tally(b"0000")
        connection = registeredSender(tally)
        connection.dataReceived(wire.err_rate_limited(b"SAY") + wire.BYE_KICKED)
        self.assertEqual((tally.rate_limited, tally.kicked), (1, 1))

    def test_other_errors_and_byes_are_not_rate_limiting(self) -> None:
        tally = Tally(b"0000")
        connection = registeredSender(tally)
        connection.dataReceived(wire.ERR_NO_SUCH_NICK + wire.bye("shutdown", 10))
        self.assertEqual((tally.rate_limited, tally.kicked), (0, 0))
        self.assertEqual((tally.err_lines, tally.bye_lines), (1, 1))

    def test_the_counts_reach_the_worker_report(self) -> None:
        tally = Tally(b"0000")
        registeredSender(tally).dataReceived(wire.err_rate_limited(b"SAY") + wire.BYE_KICKED)
        counters = tally.counters()
        self.assertEqual((counters["rate_limited"], counters["kicked"]), (1, 1))


def fanoutData(err_429: int, kicked: int) -> dict[str, Any]:
    """A finished fanout run's totals, as ``Run.collect`` makes them (the parts the summary reads)."""
    return {
        "connections": {"requested": 5, "registered": 5, "failed": 0, "ramp_s": 0.1},
        "drops": {"total": kicked},
        "rate_limit": {"err_429": err_429, "kicked": kicked},
        "driver": {"cpu_util_per_worker": [0.1], "reactor_lag": {"count": 0}},
        "errors": [],
        "timed_out": False,
        "interrupted": False,
        "fanout": {"achieved_msgs_per_s": 950.0, "delivered_per_s": 3800.0, "loss": 0.04977, "latency": {"count": 0}},
    }


def fanoutSettings(allow_rate_limit: bool = False) -> RunSettings:
    endpoint = Endpoint("tcp", "127.0.0.1", 6464, text="tcp:127.0.0.1:6464")
    return RunSettings("fanout", endpoint, receivers=4, senders=1, rate=1000.0, allow_rate_limit=allow_rate_limit)


class SummaryTests(unittest.TestCase):
    def test_the_summary_counts_429s_and_kicks(self) -> None:
        line = summary_line(fanoutData(37, 2), fanoutSettings())
        self.assertIn("| drops 2 | 429s 37 kicked 2 |", line)

    def test_a_rate_limited_run_says_it_failed_and_what_to_do(self) -> None:
        line = summary_line(fanoutData(37, 2), fanoutSettings())
        self.assertIn("FAILED", line)
        self.assertIn("--allow-rate-limit", line)
        self.assertEqual(len(line.splitlines()), 1)

    def test_a_run_that_was_not_rate_limited_shows_zeros_and_no_failure(self) -> None:
        line = summary_line(fanoutData(0, 0), fanoutSettings())
        self.assertIn("| 429s 0 kicked 0 |", line)
        self.assertNotIn("FAILED", line)

    def test_allowed_rate_limiting_is_counted_but_not_a_failure(self) -> None:
        line = summary_line(fanoutData(37, 2), fanoutSettings(allow_rate_limit=True))
        self.assertIn("429s 37 kicked 2", line)
        self.assertNotIn("FAILED", line)


class ExitStatusTests(unittest.TestCase):
    def test_err_429_fails_the_run(self) -> None:
        self.assertEqual(cli.exit_status(fanoutData(1, 0), fanoutSettings()), cli.RATE_LIMITED_EXIT)

    def test_a_kick_fails_the_run(self) -> None:
        self.assertEqual(cli.exit_status(fanoutData(0, 1), fanoutSettings()), cli.RATE_LIMITED_EXIT)

    def test_the_rate_limited_status_is_its_own(self) -> None:
        self.assertNotIn(cli.RATE_LIMITED_EXIT, (0, 1, 2, 3, 130))

    def test_allow_rate_limit_makes_it_a_success(self) -> None:
        self.assertEqual(cli.exit_status(fanoutData(37, 2), fanoutSettings(allow_rate_limit=True)), 0)

    def test_a_clean_run_succeeds(self) -> None:
        self.assertEqual(cli.exit_status(fanoutData(0, 0), fanoutSettings()), 0)

    def test_the_option_reaches_the_settings(self) -> None:
        parser = cli.build_parser()
        for extra, allowed in (([], False), (["--allow-rate-limit"], True)):
            args = parser.parse_args(["fanout", "tcp:127.0.0.1:6464", "--rate", "10", *extra])
            self.assertEqual(cli.settings_from(args, "abcd").allow_rate_limit, allowed)
