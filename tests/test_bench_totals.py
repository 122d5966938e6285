"""
``hbchat-bench``'s totals (no reactor, no worker processes): what the workers reported, added
up into the run's results, and the server's CPU and memory from its /proc samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.trial import unittest

from hbchat.bench.settings import Endpoint, RunSettings
from hbchat.bench.stats import Histogram
from hbchat.bench.totals import collect, server_summary

ENDPOINT = Endpoint("tcp", "127.0.0.1", 6464, text="tcp:127.0.0.1:6464")


@dataclass
class Ended:
    """A run as it ends (a :class:`hbchat.bench.totals.RunState`), without any process behind it."""

    settings: RunSettings
    workers: int = 2
    latest: dict[int, dict[str, Any]] = field(default_factory=dict)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    window: tuple[int, int] = (1_000_000_000, 3_000_000_000)
    server: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False
    interrupted: bool = False
    settled: bool = True


def rtts(*nanoseconds: int) -> dict[str, Any]:
    histogram = Histogram()
    for value in nanoseconds:
        histogram.record(value)
    return histogram.to_json()


def workerResult(index: int, counters: dict[str, int], rtt: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "result",
        "worker": index,
        "pid": 100 + index,
        "counters": counters,
        "fail_notes": [],
        "drop_notes": [],
        "hello": {},
        "connect_s": 0.5 + index,
        "rtt": rtt or Histogram().to_json(),
        "latency": Histogram().to_json(),
        "timeline": None,
        "lag": Histogram().to_json(),
        "cpu_util": 0.25,
    }


class CollectTests(unittest.TestCase):
    def test_idle_counters_are_summed_over_the_workers(self) -> None:
        run = Ended(RunSettings("idle", ENDPOINT, clients=10))
        run.results = {
            0: workerResult(
                0, {"registered": 5, "pings_sent_window": 10, "pongs_window": 9}, rtts(1_000_000, 2_000_000)
            ),
            1: workerResult(1, {"registered": 5, "pings_sent_window": 10, "pongs_window": 10}, rtts(3_000_000)),
        }
        data = collect(run)
        self.assertEqual(data["connections"]["registered"], 10)
        self.assertEqual(data["connections"]["ramp_s"], 1.5)
        self.assertEqual(data["worker_pids"], [100, 101])
        self.assertEqual(data["window"]["seconds"], 2.0)
        idle = data["idle"]
        self.assertEqual((idle["client_pings_sent"], idle["pongs"], idle["missing_pongs"]), (20, 19, 1))
        self.assertEqual(idle["pong_rtt"]["count"], 3)
        self.assertNotIn("fanout", data)

    def test_a_silent_worker_counts_with_its_last_progress(self) -> None:
        run = Ended(RunSettings("idle", ENDPOINT, clients=10))
        run.results = {0: workerResult(0, {"registered": 5})}
        run.latest = {1: {"type": "progress", "worker": 1, "registered": 3, "connected_all": True}}
        self.assertEqual(collect(run)["connections"]["registered"], 8)

    def test_fanout_loss_is_what_did_not_arrive(self) -> None:
        run = Ended(RunSettings("fanout", ENDPOINT, receivers=4, senders=1, rate=100.0, duration=2.0))
        run.results = {0: workerResult(0, {"sent_window": 200, "received_window": 760})}
        run.phases = {"draining": 10.0, "drained": 10.5}
        fanout = collect(run)["fanout"]
        self.assertEqual((fanout["expected_deliveries"], fanout["received_deliveries"]), (800, 760))
        self.assertEqual(fanout["loss"], 0.05)
        self.assertEqual(fanout["achieved_msgs_per_s"], 100.0)
        self.assertEqual(fanout["drain_s"], 0.5)


class ServerSummaryTests(unittest.TestCase):
    def test_cpu_and_memory_per_connection(self) -> None:
        run = Ended(RunSettings("idle", ENDPOINT, clients=10, server_pid=42))
        run.latest = {0: {"registered": 6}, 1: {"registered": 4}}
        run.server = {
            "before_connect": {"cpu_s": 0.0, "rss_kib": 1000, "at": 0.0},
            "window_start": {"cpu_s": 1.0, "rss_kib": 1500, "at": 10.0},
            "window_end": {"cpu_s": 2.0, "rss_kib": 2000, "at": 14.0},
        }
        self.assertEqual(
            server_summary(run),
            {
                "pid": 42,
                "cpu_util_window": 0.25,
                "rss_kib_window_end": 2000,
                "rss_kib_before_connect": 1000,
                "rss_kib_per_connection": 100.0,
            },
        )

    def test_no_samples_no_figures(self) -> None:
        self.assertEqual(server_summary(Ended(RunSettings("idle", ENDPOINT, server_pid=42))), {"pid": 42})
