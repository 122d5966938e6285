"""
``hbchat-bench``: its pure logic, then one small real run of each scenario.

The unit tests need no reactor.  The real runs start the installed ``hbchat-bench`` as a
child process against a server in trial's reactor (``idle`` over TCP, ``fanout`` over a UNIX
socket) or, for ``storm``, against the ``twistd hbchat`` servers it starts itself, and check
the JSON it writes.  Nothing sleeps: each run is waited for with a deadline.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, cast
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IReactorUNIX
from twisted.internet.protocol import ServerFactory
from twisted.trial import unittest

from hbchat.bench import cli, plan, stats
from hbchat.bench.progress import Progress
from hbchat.bench.settings import (
    Endpoint,
    RunSettings,
    UsageError,
    effective_workers,
    is_loopback,
    loopback_endpoint,
    parse_endpoint,
    validate,
)
from hbchat.bench.stats import Histogram, Timeline
from hbchat.config import ServerConfig
from hbchat.server.factory import ChatFactory
from tests.test_client_integration import requireExecutable
from tests.test_integration import ChatTestCase, forgetSessions, within
from tests.test_twistd import TwistdProcess

#: A whole bench run (worker start-up, connecting, the window, finishing) must end within this.
RUN_DEADLINE = 90.0


def findExecutable(name: str) -> str | None:
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return shutil.which(name)


# --- pure logic ------------------------------------------------------------------------------


class HistogramTests(unittest.TestCase):
    @given(st.integers(min_value=0, max_value=2**38))
    def test_bucket_holds_its_value_within_one_percent(self, value: int) -> None:
        index = stats.bucket_of(value)
        low, high = stats.bucket_bounds(index)
        self.assertTrue(low <= value < high, (value, index, low, high))
        reported = stats.bucket_value(index)
        self.assertLessEqual(abs(reported - value), max(1, value * 0.008))

    def test_buckets_are_ordered(self) -> None:
        values = [0, 1, 255, 256, 257, 511, 512, 10**6, 10**9, 2**38]
        indexes = [stats.bucket_of(v) for v in values]
        self.assertEqual(indexes, sorted(indexes))
        self.assertEqual(stats.bucket_of(2**60), stats.BUCKETS - 1)

    def test_percentiles(self) -> None:
        h = Histogram()
        for ms in range(1, 1001):  # 1..1000 ms
            h.record(ms * stats.NS_PER_MS)
        s = h.stats()
        self.assertEqual(s["count"], 1000)
        for key, expected in (("p50_ms", 501), ("p90_ms", 901), ("p99_ms", 991), ("max_ms", 1000), ("min_ms", 1)):
            self.assertLessEqual(abs(s[key] - expected), expected * 0.01, (key, s[key]))
        self.assertAlmostEqual(s["mean_ms"], 500.5, places=3)

    def test_empty(self) -> None:
        self.assertEqual(Histogram().stats(), {"count": 0})
        self.assertEqual(Histogram().quantile(0.5), 0)

    def test_negative_values_count_as_zero(self) -> None:
        h = Histogram()
        h.record(-5)
        self.assertEqual((h.count, h.minimum, h.maximum), (1, 0, 0))

    @given(st.lists(st.integers(min_value=0, max_value=10**10)), st.lists(st.integers(min_value=0, max_value=10**10)))
    def test_merging_is_recording_everything(self, first: list[int], second: list[int]) -> None:
        a, b, both = Histogram(), Histogram(), Histogram()
        for value in first:
            a.record(value)
            both.record(value)
        for value in second:
            b.record(value)
            both.record(value)
        # Through JSON, as workers send them.
        a = Histogram.from_json(json.loads(json.dumps(a.to_json())))
        a.merge(Histogram.from_json(json.loads(json.dumps(b.to_json()))))
        self.assertEqual(a.buckets, both.buckets)
        self.assertEqual((a.count, a.total, a.minimum, a.maximum), (both.count, both.total, both.minimum, both.maximum))
        self.assertEqual(a.stats(), both.stats())

    def test_rows_for_plots(self) -> None:
        h = Histogram()
        h.record(100)
        h.record(2 * stats.NS_PER_MS)
        rows = h.rows()
        self.assertEqual([count for _, _, count in rows], [1, 1])
        low, high, _ = rows[1]
        self.assertTrue(low <= 2.0 < high)

    def test_log_bins_for_plots(self) -> None:
        h = Histogram()
        for ns in (100_000, 110_000, 1_000_000, 1_050_000, 9_000_000):
            h.record(ns)
        bins = stats.log_bins(h.rows(), per_decade=1)
        self.assertEqual(
            [(round(low, 6), round(high, 6), count) for low, high, count in bins], [(0.1, 1.0, 2), (1.0, 10.0, 3)]
        )
        self.assertEqual(stats.log_bins([]), [])

    def test_exact_quantile(self) -> None:
        self.assertIsNone(stats.quantile([], 0.5))
        self.assertEqual(stats.quantile([3.0, 1.0, 2.0], 0.5), 2.0)
        self.assertEqual(stats.quantile([1.0, 2.0, 3.0, 4.0], 0.99), 4.0)

    def test_peak_to_mean_counts_bins_from_zero_until_the_end(self) -> None:
        self.assertEqual(stats.peak_to_mean([0.0, 0.05, 0.25], 0.4, 0.1), (2, 0.75))
        self.assertEqual(stats.peak_to_mean([], 0.0, 0.1), (0, 0.0))
        # attempts after the end are not counted
        self.assertEqual(stats.peak_to_mean([0.01, 0.5], 0.2, 0.1), (1, 0.5))

    def test_histogram_of_times(self) -> None:
        self.assertEqual(stats.histogram_of_times([], 0.1), [])
        self.assertEqual(stats.histogram_of_times([0.0, 0.05, 0.25], 0.1), [2, 0, 1])


class TimelineTests(unittest.TestCase):
    def test_record_and_merge(self) -> None:
        a = Timeline(1000, 100, 3)
        a.record(1050, 7)
        a.record(1250, 9)
        a.record(999, 1)  # before the start: ignored
        a.record(1300, 1)  # after the end: ignored
        b = Timeline.from_json(json.loads(json.dumps(Timeline(1000, 100, 4).to_json())))
        b.record(1350, 3)
        b.record(1060, 2)
        a.merge(b)
        self.assertEqual(a.counts, [2, 0, 1, 1])
        self.assertEqual(a.maxima, [7, 0, 9, 3])

    def test_bin_width(self) -> None:
        self.assertEqual(stats.timeline_bin_ns(10), 100 * stats.NS_PER_MS)
        self.assertEqual(stats.timeline_bin_ns(600), 10**9)


class StampTests(unittest.TestCase):
    @given(
        st.integers(min_value=0, max_value=10**19 - 1),
        st.text(alphabet="0123456789abcdef", min_size=4, max_size=4),
        st.integers(min_value=0, max_value=99999),
        st.integers(min_value=0, max_value=10**10 - 1),
        st.integers(min_value=stats.MIN_TEXT_SIZE, max_value=4092),
    )
    def test_round_trip(self, sent: int, run: str, sender: int, seq: int, size: int) -> None:
        text = stats.stamp_text(sent, run.encode(), sender, seq, stats.padding_for(size))
        self.assertEqual(len(text), size)
        self.assertEqual(stats.parse_stamp(text), (sent, run.encode(), sender, seq))

    def test_real_timestamps_fit(self) -> None:
        text = stats.stamp_text(1_795_000_000_123_456_789, b"ab12", 3, 42, stats.padding_for(64))
        self.assertEqual(text[:20], b"T1795000000123456789")
        self.assertEqual(len(text), 64)

    def test_not_a_stamp(self) -> None:
        good = stats.stamp_text(5, b"abcd", 1, 2, b"x")
        for text in (b"", b"hello", good.replace(b"T", b"X", 1), good[:30], good.replace(b" R", b" Q", 1)):
            self.assertIsNone(stats.parse_stamp(text), text)
        self.assertIsNone(stats.parse_stamp(good[:1] + b"-" + good[2:]))

    def test_too_small(self) -> None:
        with self.assertRaises(ValueError):
            stats.padding_for(stats.STAMP_SIZE)


class ShareTests(unittest.TestCase):
    def test_split(self) -> None:
        self.assertEqual(stats.split(14, 3), [5, 5, 4])
        self.assertEqual(stats.split(2, 4), [1, 1, 0, 0])
        self.assertEqual(stats.offsets([5, 5, 4]), [0, 5, 10])
        with self.assertRaises(ValueError):
            stats.split(3, 0)

    def test_phases_spread_evenly(self) -> None:
        period = 10**9
        phases = [stats.phase_ns(i, 4, period) for i in range(4)]
        self.assertEqual(phases, [0, 250_000_000, 500_000_000, 750_000_000])

    def test_due_slots(self) -> None:
        self.assertEqual(stats.due_slots(3, 3, 10), [])
        self.assertEqual(stats.due_slots(3, 5, 10), [4, 5])
        self.assertEqual(stats.due_slots(8, 11, 10), [9, 0, 1])
        self.assertEqual(stats.due_slots(0, 25, 10), list(range(10)))

    def test_worker_plans_cover_everyone_once(self) -> None:
        settings = RunSettings("fanout", Endpoint("tcp", "127.0.0.1", 1), receivers=7, senders=3)
        plans = plan.plans(settings, 3, 0)
        self.assertEqual([p.receivers for p in plans], [3, 2, 2])
        self.assertEqual(sorted(p.senders for p in plans), [1, 1, 1])
        self.assertEqual([p.first_receiver for p in plans], [0, 3, 5])
        self.assertEqual(effective_workers(4, 2), 2)
        self.assertEqual(effective_workers(4, 0), 1)


class ProgressTests(unittest.TestCase):
    def test_bar(self) -> None:
        self.assertEqual(stats.progress_bar(0.5, 10), "[#####.....]  50%")
        self.assertEqual(stats.progress_bar(7.0, 4), "[####] 100%")
        self.assertEqual(stats.fit("abcdef", 4), "abc…")
        self.assertEqual(stats.fit("abc", 4), "abc")

    def test_status_lines_when_not_a_terminal(self) -> None:
        out = io.StringIO()
        progress = Progress(out, tty=False)
        progress.update("connecting", 0.1, "1/10")
        progress.update("connecting", 0.2, "2/10")  # same phase, too soon: not shown
        progress.update("window", 0.0, "0/2s")
        self.assertEqual(
            [line.split("] ", 1)[1] for line in out.getvalue().splitlines()], ["connecting: 1/10", "window: 0/2s"]
        )

    def test_bar_on_a_terminal(self) -> None:
        out = io.StringIO()
        progress = Progress(out, tty=True, width=60)
        progress.update("window", 0.5, "x" * 100)
        progress.clear()
        text = out.getvalue()
        self.assertTrue(text.startswith("\r[############............]  50% window: "))
        self.assertNotIn("\n", text)
        self.assertTrue(text.endswith("\r\x1b[K"))


class EndpointTests(unittest.TestCase):
    def test_forms(self) -> None:
        self.assertEqual(parse_endpoint("tcp:127.0.0.1:6464"), ("tcp", "127.0.0.1", 6464))
        self.assertEqual(parse_endpoint("tcp:host=localhost:port=7"), ("tcp", "localhost", 7))
        self.assertEqual(parse_endpoint("tcp:port=7:host=localhost"), ("tcp", "localhost", 7))
        self.assertEqual(parse_endpoint(r"tcp:\:\:1:6464"), ("tcp", "::1", 6464))
        self.assertEqual(parse_endpoint("tcp:[::1]:6464"), ("tcp", "::1", 6464))
        self.assertEqual(parse_endpoint("[::1]:6464"), ("tcp", "::1", 6464))
        self.assertEqual(parse_endpoint("localhost:6464"), ("tcp", "localhost", 6464))
        self.assertEqual(parse_endpoint("tcp:127.0.0.1:6464:timeout=5"), ("tcp", "127.0.0.1", 6464))
        self.assertEqual(parse_endpoint("unix:/run/hbchat.sock"), ("unix", "/run/hbchat.sock", 0))
        self.assertEqual(parse_endpoint("unix:path=/tmp/s"), ("unix", "/tmp/s", 0))

    def test_bad_forms(self) -> None:
        for text in ("ssl:127.0.0.1:6464", "tcp:127.0.0.1", "tcp:127.0.0.1:0", "tcp:127.0.0.1:x", "unix:", "nonsense"):
            with self.assertRaises(UsageError, msg=text):
                parse_endpoint(text)
        with self.assertRaises(UsageError):
            parse_endpoint("tcp:127.0.0.1:6464:bindAddress=1.2.3.4")

    def test_loopback_rule(self) -> None:
        self.assertTrue(is_loopback("127.0.0.1"))
        self.assertTrue(is_loopback("127.255.1.2"))
        self.assertTrue(is_loopback("::1"))
        for address in ("10.0.0.1", "192.0.2.1", "::", "0.0.0.0", "::ffff:8.8.8.8", "fe80::1", "garbage"):
            self.assertFalse(is_loopback(address), address)

    def test_resolves_once_and_uses_the_address(self) -> None:
        calls: list[tuple[str, int]] = []

        def resolve(host: str, port: int) -> list[str]:
            calls.append((host, port))
            return ["::1", "127.0.0.1"]

        endpoint = loopback_endpoint("tcp:localhost:6464", resolve)
        self.assertEqual((endpoint.address, endpoint.port, endpoint.describe()), ("127.0.0.1", 6464, "127.0.0.1:6464"))
        self.assertEqual(calls, [("localhost", 6464)])
        self.assertEqual(loopback_endpoint("[::1]:1", lambda h, p: ["::1"]).describe(), "[::1]:1")
        self.assertEqual(loopback_endpoint("unix:/tmp/x", resolve).describe(), "unix:/tmp/x")
        self.assertEqual(len(calls), 1)  # a UNIX socket is not resolved

    def test_refuses_anything_not_loopback(self) -> None:
        with self.assertRaises(UsageError) as caught:
            loopback_endpoint("tcp:chat.example:6464", lambda h, p: ["127.0.0.1", "203.0.113.9"])
        message = str(caught.exception)
        self.assertIn("chat.example resolves to 203.0.113.9", message)
        self.assertIn("your own test server", message)
        self.assertNotIn("\n", message)
        with self.assertRaises(UsageError):
            loopback_endpoint("tcp:192.0.2.1:6464")  # a literal: nothing to resolve
        with self.assertRaises(UsageError):
            loopback_endpoint("tcp:nowhere:1", lambda h, p: [])


class ValidationTests(unittest.TestCase):
    def idle(self, **changes: Any) -> RunSettings:
        settings = RunSettings("idle", Endpoint("tcp", "127.0.0.1", 1), clients=10, duration=2)
        for key, value in changes.items():
            setattr(settings, key, value)
        return settings

    def fanout(self, **changes: Any) -> RunSettings:
        settings = RunSettings("fanout", Endpoint("tcp", "127.0.0.1", 1), receivers=3, senders=1, rate=10.0)
        for key, value in changes.items():
            setattr(settings, key, value)
        return settings

    def test_good(self) -> None:
        validate(self.idle())
        validate(self.fanout())
        validate(self.fanout(rate=None))

    def test_bad(self) -> None:
        cases = [
            (self.idle(clients=0), "--clients"),
            (self.idle(period=0.001), "--period"),
            (self.idle(workers=0), "--workers"),
            (self.idle(duration=0), "--duration"),
            (self.idle(ramp=0), "--ramp"),
            (self.idle(nick_prefix="bad prefix"), "--nick-prefix"),
            (self.idle(nick_prefix="x" * 13), "--nick-prefix"),
            (self.fanout(receivers=0), "--receivers"),
            (self.fanout(senders=0), "--senders"),
            (self.fanout(rate=0.0), "--rate"),
            (self.fanout(size=stats.STAMP_SIZE), "--size"),
            (self.fanout(size=5000), "--size"),
            (self.fanout(drain=-1), "--drain"),
            (self.idle(duration=400), "--max-time"),
            (self.idle(clients=100_000, ramp=100), "--max-time"),
        ]
        for settings, option in cases:
            with self.assertRaises(UsageError, msg=option) as caught:
                validate(settings)
            self.assertIn(option, str(caught.exception))

    def test_planned_time(self) -> None:
        self.assertAlmostEqual(self.idle(clients=2000, ramp=1000, settle=1, duration=10, grace=2).planned_seconds(), 15)


class CommandLineTests(unittest.TestCase):
    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = cli.main(list(argv))
            except SystemExit as exit:
                code = int(exit.code or 0)
        return code, out.getvalue(), err.getvalue()

    def assertOneLineError(self, code: int, out: str, err: str, *words: str) -> None:
        self.assertEqual(code, 2)
        self.assertEqual(out, "")
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("error:", err)
        for word in words:
            self.assertIn(word, err)

    def test_refuses_a_remote_server(self) -> None:
        code, out, err = self.run_cli("idle", "tcp:192.0.2.1:6464", "--clients", "5")
        self.assertOneLineError(code, out, err, "not a loopback address", "your own test server")

    def test_help_says_why(self) -> None:
        code, out, _ = self.run_cli("idle", "--help")
        self.assertEqual(code, 0)
        self.assertIn("a load tool for your own test server", " ".join(out.split()).lower())
        self.assertIn("127.0.0.0/8", out)

    def test_usage_errors_are_one_line(self) -> None:
        self.assertOneLineError(*self.run_cli("idle", "tcp:127.0.0.1:6464"), "--clients")
        self.assertOneLineError(*self.run_cli("fanout", "tcp:127.0.0.1:6464", "--rate", "5", "--flat"), "--flat")
        self.assertOneLineError(*self.run_cli("fanout", "tcp:127.0.0.1:6464", "--rate", "5", "--size", "9"), "--size")
        self.assertOneLineError(*self.run_cli("storm", "--server-cmd", "twistd -n hbchat"), "{port}")
        self.assertOneLineError(*self.run_cli("storm", "--server-cmd", "x {port}", "--backlog", "5"), "--backlog")
        self.assertOneLineError(*self.run_cli("storm", "--clients", "0"), "--clients")

    def test_plot_needs_matplotlib(self) -> None:
        with mock.patch("hbchat.bench.report.have_matplotlib", return_value=False):
            code, out, err = self.run_cli("idle", "tcp:127.0.0.1:6464", "--clients", "5", "--plot", "x.png")
        self.assertOneLineError(code, out, err, "matplotlib", "hbchat[bench]")

    def test_storm_default_server(self) -> None:
        from hbchat.bench import stormresults, stormserver

        if os.path.exists(os.path.join(os.path.dirname(sys.executable), "twistd")):
            command = stormserver.default_server_command()
            self.assertIn("{port}", command)
            self.assertIn("{retry_hint}", command)
        else:
            with self.assertRaises(SystemExit):
                stormserver.default_server_command()
        self.assertEqual(stormresults.histogram([0.05, 0.15, 0.16]), [1, 2])


# --- real runs --------------------------------------------------------------------------------


class BenchRunTests(ChatTestCase):
    """One small run of each scenario through the installed ``hbchat-bench`` console script."""

    def setUp(self) -> None:
        super().setUp()
        self.bench = requireExecutable(findExecutable("hbchat-bench"), "hbchat-bench")
        self.workdir = Path(os.path.abspath(self.mktemp()))
        self.workdir.mkdir(parents=True)

    def startUNIXServer(self, **settings: Any) -> str:
        factory = ChatFactory(ServerConfig(**settings), reactor)
        # Not under the trial temp dir: inside a tox env that path passes AF_UNIX's limit.
        socket_dir = tempfile.mkdtemp(prefix="hb-")
        self.addCleanup(shutil.rmtree, socket_dir, True)
        path = os.path.join(socket_dir, "chat.sock")
        port = cast(IReactorUNIX, reactor).listenUNIX(path, cast(ServerFactory, factory))

        @inlineCallbacks
        def stop() -> Any:
            yield port.stopListening()
            yield within(factory.shutdown(), RUN_DEADLINE, "stopping the UNIX server")
            forgetSessions(factory)

        self.addCleanup(stop)
        return path

    @inlineCallbacks
    def runBench(self, *arguments: str) -> Any:
        """Run ``hbchat-bench ARGUMENTS`` to its end; returns (exit status, stdout, stderr)."""
        process = TwistdProcess()
        transport = reactor.spawnProcess(
            process, self.bench, [self.bench, *arguments], env=dict(os.environ), path=str(self.workdir)
        )

        def kill() -> None:
            if process.reason is None:
                transport.signalProcess("KILL")  # only this child, by its PID

        self.addCleanup(kill)
        ended: Deferred[Any] = process.whenEnded()
        yield within(ended, RUN_DEADLINE, f"hbchat-bench {arguments[0]}\n{process.output()}")
        reason = process.reason
        assert reason is not None
        if reason.check(ProcessDone):
            code = 0
        else:
            self.assertTrue(reason.check(ProcessTerminated), reason)
            code = cast(ProcessTerminated, reason.value).exitCode
        return code, process.out.decode(), process.err.decode()

    def assertRan(self, code: int, out: str, err: str, scenario: str) -> None:
        self.assertEqual(code, 0, f"exit status {code}\n--- stdout ---\n{out}--- stderr ---\n{err}")
        lines = out.splitlines()
        self.assertEqual(len(lines), 1, out)
        self.assertTrue(lines[0].startswith(f"{scenario} "), out)

    @inlineCallbacks
    def test_idle(self) -> Any:
        _, port = self.startServer(ping=0.25, timeout=2)
        result = self.workdir / "idle.json"
        plot = self.workdir / "idle.png"
        plotting = ["--plot", str(plot)] if stats_have_matplotlib() else []
        code, out, err = yield self.runBench(
            "idle",
            f"tcp:127.0.0.1:{port}",
            *("--clients", "20", "--period", "0.5", "--duration", "2", "--workers", "2"),
            *("--settle", "0.5", "--grace", "1", "--json", str(result), *plotting),
        )
        self.assertRan(code, out, err, "idle")
        self.assertIn("] connecting:", err)  # stderr is no terminal: status lines
        data = json.loads(result.read_text())
        self.assertEqual(data["workers"], 2)
        self.assertEqual(data["connections"]["registered"], 20)
        self.assertEqual(data["connections"]["failed"], 0)
        self.assertEqual(data["server_hello"], {"ping": "0.25", "timeout": "2"})
        idle = data["idle"]
        # 20 connections x 2 s / 0.5 s, give or take a ping at the window's edges.
        self.assertTrue(60 <= idle["client_pings_sent"] <= 100, idle)
        self.assertEqual(idle["missing_pongs"], 0)
        self.assertEqual(idle["pongs"], idle["client_pings_sent"])
        rtt = idle["pong_rtt"]
        self.assertEqual(rtt["count"], idle["pongs"])
        self.assertTrue(0 < rtt["p50_ms"] <= rtt["p90_ms"] <= rtt["p99_ms"] <= rtt["max_ms"] < 5000, rtt)
        self.assertGreater(idle["server_pings_answered"], 0)  # the server's own PINGs were answered too
        self.assertEqual(data["drops"]["total"], 0, data["drops"])
        self.assertEqual(data["errors"], [])
        self.assertEqual(sum(row[2] for row in data["histogram_ms"]), rtt["count"])
        self.assertGreaterEqual(sum(data["timeline"]["counts"]), rtt["count"])
        self.assertIn(f"p50={rtt['p50_ms']:.2f}ms", out)
        if plotting:
            self.assertEqual(plot.read_bytes()[:8], b"\x89PNG\r\n\x1a\n")

    @inlineCallbacks
    def test_fanout(self) -> Any:
        path = self.startUNIXServer(ping=1, timeout=5, rate=0)  # one sender at 200 lines/s
        result = self.workdir / "fanout.json"
        code, out, err = yield self.runBench(
            "fanout",
            f"unix:{path}",
            *("--receivers", "3", "--senders", "1", "--rate", "200", "--duration", "2", "--warmup", "0.5"),
            *("--workers", "2", "--settle", "0.5", "--json", str(result)),
        )
        self.assertRan(code, out, err, "fanout")
        data = json.loads(result.read_text())
        self.assertEqual(data["connections"]["registered"], 4)
        fanout = data["fanout"]
        sent = fanout["sent_msgs_window"]
        self.assertTrue(340 <= sent <= 460, fanout)  # 200/s for 2 s
        self.assertEqual(fanout["expected_deliveries"], 3 * sent)
        self.assertEqual(fanout["received_deliveries"], 3 * sent)
        self.assertEqual(fanout["loss"], 0.0)
        self.assertTrue(400 <= fanout["delivered_per_s"] <= 800, fanout)
        self.assertGreaterEqual(fanout["sender_echoes"], sent)
        for key in ("out_of_order", "foreign_msgs", "unstamped_msgs"):
            self.assertEqual(fanout[key], 0, key)
        latency = fanout["latency"]
        self.assertEqual(latency["count"], 3 * sent)
        self.assertTrue(0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"] < 5000, latency)
        self.assertEqual(data["drops"]["total"], 0, data["drops"])
        self.assertEqual(data["errors"], [])

    @inlineCallbacks
    def runOverTheRateLimit(self, *extra: str) -> Any:
        """fanout with one sender at 200 lines/s against a server that allows 20 (burst 20)."""
        _, port = self.startServer(ping=1, timeout=5, rate=20, burst=20)
        result = self.workdir / "limited.json"
        code, out, err = yield self.runBench(
            "fanout",
            f"tcp:127.0.0.1:{port}",
            *("--receivers", "2", "--senders", "1", "--rate", "200", "--duration", "1", "--warmup", "0.5"),
            *("--workers", "1", "--settle", "0.5", "--drain", "1", "--json", str(result), *extra),
        )
        return code, out, err, json.loads(result.read_text())

    @inlineCallbacks
    def test_fanout_over_the_rate_limit_counts_429s_and_kicks_and_fails(self) -> Any:
        code, out, err, data = yield self.runOverTheRateLimit()
        shown = f"exit status {code}\n--- stdout ---\n{out}--- stderr ---\n{err}"
        self.assertEqual(code, cli.RATE_LIMITED_EXIT, shown)
        limit = data["rate_limit"]
        self.assertGreaterEqual(limit["err_429"], 10, limit)  # the server kicks after ten
        self.assertEqual(limit["kicked"], 1, limit)
        [line] = out.splitlines()
        self.assertIn(f"429s {limit['err_429']} kicked 1", line)
        self.assertIn("FAILED", line)

    @inlineCallbacks
    def test_allow_rate_limit_counts_them_and_succeeds(self) -> Any:
        code, out, err, data = yield self.runOverTheRateLimit("--allow-rate-limit")
        self.assertEqual(code, 0, f"exit status {code}\n--- stdout ---\n{out}--- stderr ---\n{err}")
        self.assertEqual(data["rate_limit"]["kicked"], 1)
        self.assertIn(f"429s {data['rate_limit']['err_429']} kicked 1", out)
        self.assertNotIn("FAILED", out)

    @inlineCallbacks
    def test_storm_smoke(self) -> Any:
        requireExecutable(findExecutable("twistd"), "twistd")
        result = self.workdir / "storm.json"
        code, out, err = yield self.runBench(
            "storm", "--smoke", "--clients", "20", "--restart-delay", "0.5", "--json", str(result)
        )
        self.assertRan(code, out, err, "storm")
        data = json.loads(result.read_text())
        self.assertEqual([r["name"] for r in data["results"]], ["stock-crash", "hbchat-crash", "hbchat-graceful"])
        for r in data["results"]:
            self.assertTrue(r["all_back"], r["name"])
            self.assertEqual((r["clients"], r["back_count"], r["gave_up"]), (20, 20, 0), r["name"])
            self.assertGreaterEqual(r["total_attempts"], 20, r["name"])
            self.assertEqual(sum(r["histogram"]), r["total_attempts"], r["name"])
            self.assertGreater(r["server_listening_at"], 0.4, r["name"])
            self.assertEqual(r["server_log_problems"], 0, r["server_log_examples"])
        self.assertEqual(data["summary"], out.strip())
        self.assertIn("{port}", data["server_command"])


def stats_have_matplotlib() -> bool:
    from hbchat.bench.report import have_matplotlib

    return have_matplotlib()
