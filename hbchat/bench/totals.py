"""
The totals of an ``idle`` or ``fanout`` run (pure): every worker's counters, histograms and
timelines added up, the scenario's figures derived, and the server's CPU and memory.
"""

from __future__ import annotations

from typing import Any, Protocol

from hbchat.bench.conn import MAX_NOTES
from hbchat.bench.settings import RunSettings
from hbchat.bench.stats import Histogram, Timeline, merged


class RunState(Protocol):
    """What a run knows when it ends (:class:`hbchat.bench.runner.Run` is one)."""

    settings: RunSettings
    workers: int
    #: Each worker's last progress report and its result, by worker index.
    latest: dict[int, dict[str, Any]]
    results: dict[int, dict[str, Any]]
    errors: list[str]
    #: When each phase began (the run's clock), and the window (wall-clock ns).
    phases: dict[str, float]
    window: tuple[int, int]
    #: Samples of the server's /proc, by moment.
    server: dict[str, Any]
    timed_out: bool
    interrupted: bool
    settled: bool


def collect(run: RunState) -> dict[str, Any]:
    """Every worker's numbers added up into the run's results (JSON-ready; pure)."""
    s = run.settings
    results = [run.results[index] for index in sorted(run.results)]
    counters: dict[str, int] = {}
    for result in results:
        for key, value in result["counters"].items():
            counters[key] = max(counters.get(key, 0), value) if key == "last_event_ns" else counters.get(key, 0) + value
    if len(results) < run.workers:
        # A worker that never reported: use its last progress for the counts we have.
        for index, report in run.latest.items():
            if index not in run.results:
                for key, value in report.items():
                    if isinstance(value, int) and not isinstance(value, bool) and key != "worker":
                        counters[key] = counters.get(key, 0) + value
    rtt = merged(Histogram.from_json(r["rtt"]) for r in results)
    latency = merged(Histogram.from_json(r["latency"]) for r in results)
    lag = merged(Histogram.from_json(r["lag"]) for r in results)
    timelines = [Timeline.from_json(r["timeline"]) for r in results if r.get("timeline")]
    timeline = timelines[0] if timelines else None
    for other in timelines[1:]:
        assert timeline is not None
        timeline.merge(other)
    hello: dict[str, str] = next((r["hello"] for r in results if r.get("hello")), {})
    fail_notes = [note for r in results for note in r["fail_notes"]][:8]
    drop_notes = [note for r in results for note in r["drop_notes"]][:MAX_NOTES]
    data: dict[str, Any] = {
        "scenario": s.scenario,
        "workers": run.workers,
        "worker_pids": [r.get("pid") for r in results],
        "connections": {
            "requested": s.connections,
            "registered": counters.get("registered", 0),
            "failed": counters.get("failed", 0),
            "fail_notes": fail_notes,
            "ramp_s": round(max((r["connect_s"] for r in results), default=0.0), 3),
        },
        "server_hello": hello,
        "settled": run.settled,
        "window": {
            "start_ns": run.window[0],
            "end_ns": run.window[1],
            "seconds": round((run.window[1] - run.window[0]) / 1e9, 3),
        },
        "drops": {
            "total": counters.get("drops", 0),
            "window": counters.get("drops_window", 0),
            "notes": drop_notes,
        },
        "presence": {"join_lines": counters.get("joins", 0), "left_lines": counters.get("lefts", 0)},
        # The server's rate limit bit: lines refused with ERR 429, connections cut with BYE kicked.
        "rate_limit": {"err_429": counters.get("rate_limited", 0), "kicked": counters.get("kicked", 0)},
        "driver": {
            "cpu_util_per_worker": [r.get("cpu_util") for r in results],
            "reactor_lag": lag.stats(),
        },
        "counters": counters,
        "errors": run.errors,
        "timed_out": run.timed_out,
        "interrupted": run.interrupted,
    }
    if s.scenario == "idle":
        sent, got = counters.get("pings_sent_window", 0), counters.get("pongs_window", 0)
        data["idle"] = {
            "client_pings_sent": sent,
            "pongs": got,
            "missing_pongs": max(0, sent - got),
            "server_pings_answered": counters.get("server_pings_window", 0),
            "heartbeats": got + counters.get("server_pings_window", 0),
            "pong_rtt": rtt.stats(),
        }
    else:
        window_s = s.duration
        sent = counters.get("sent_window", 0)
        expected = sent * s.receivers
        received = counters.get("received_window", 0)
        data["fanout"] = {
            "target_msgs_per_s": s.rate,
            "sent_msgs_window": sent,
            "achieved_msgs_per_s": round(sent / window_s, 1),
            "expected_deliveries": expected,
            "received_deliveries": received,
            "loss": round(1 - received / expected, 6) if expected and received < expected else 0.0,
            "delivered_per_s": round(counters.get("delivered_in_window", 0) / window_s, 1),
            "sender_echoes": counters.get("echoes", 0),
            "out_of_order": counters.get("out_of_order", 0),
            "foreign_msgs": counters.get("foreign", 0),
            "unstamped_msgs": counters.get("unstamped", 0),
            "drain_s": round(run.phases.get("drained", 0.0) - run.phases.get("draining", 0.0), 3)
            if "drained" in run.phases
            else None,
            "latency": latency.stats(),
        }
    if run.server:
        data["server"] = server_summary(run)
    data["_histogram"] = (rtt if s.scenario == "idle" else latency).to_json()
    data["_timeline"] = timeline.to_json() if timeline is not None else None
    return data


def server_summary(run: RunState) -> dict[str, Any]:
    """The server's CPU and memory over the window, from the samples of its /proc."""
    summary: dict[str, Any] = {"pid": run.settings.server_pid}
    start, end = run.server.get("window_start"), run.server.get("window_end")
    if start and end and end["at"] > start["at"]:
        summary["cpu_util_window"] = round((end["cpu_s"] - start["cpu_s"]) / (end["at"] - start["at"]), 3)
        summary["rss_kib_window_end"] = end["rss_kib"]
    before = run.server.get("before_connect")
    if before and end:
        summary["rss_kib_before_connect"] = before["rss_kib"]
        registered = sum(int(report.get("registered", 0)) for report in run.latest.values())
        if registered:
            summary["rss_kib_per_connection"] = round((end["rss_kib"] - before["rss_kib"]) / registered, 2)
    return summary
