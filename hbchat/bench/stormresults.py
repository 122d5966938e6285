"""
The storm's scenarios, its settings and the result of each scenario (pure data), and
their JSON form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hbchat.bench.stats import histogram_of_times

#: A TCP connect on loopback that takes this long had a SYN dropped (retransmitted after 1 s).
SLOW_CONNECT = 0.9
BIN = 0.1  # histogram bin width, seconds

SCENARIOS: dict[str, tuple[str, str, bool]] = {
    # name: (backoff variant, how the server is stopped, quick restart (--quick-restart-delay))
    "stock-crash": ("stock", "crash", False),
    "hbchat-crash": ("hbchat", "crash", False),
    "hbchat-graceful": ("hbchat", "graceful", False),
    "stock-crash-quick": ("stock", "crash", True),
    "hbchat-crash-quick": ("hbchat", "crash", True),
    "stock-graceful": ("stock", "graceful", False),
}
SMOKE_SCENARIOS = ["stock-crash", "hbchat-crash", "hbchat-graceful"]
DEFAULT_SCENARIOS = [*SMOKE_SCENARIOS, "stock-crash-quick", "hbchat-crash-quick"]
#: A connection that stays this long without WELCOME was not a slow server: it was stalled
#: (the client waits up to hbchat.client.HELLO_TIMEOUT for HELLO).
STALLED = 5.0


@dataclass
class Settings:
    clients: int
    rate: float
    max_pending: int
    restart_delay: float
    quick_restart_delay: float
    retry_hint: float
    connect_deadline: float
    storm_deadline: float
    seed: int
    backlog: int | None = None


@dataclass
class Result:
    name: str
    variant: str
    stop: str
    clients: int
    all_back: bool
    back_count: int
    time_all_back: float | None
    back_p50: float | None
    back_p99: float | None
    restart_delay: float
    server_listening_at: float
    losses_noticed: list[float | None]
    old_server_exited_at: float | None
    retry_hint: float
    peak_per_bin: int
    peak_bin_start: float
    live_peak_per_bin: int
    live_peak_bin_start: float
    total_attempts: int
    failed_attempts: int
    unfinished_attempts: int
    max_connect_latency: float
    slow_connects: int
    kernel_counters: dict[str, int]
    stalled_connections: int
    server_log_problems: int
    server_log_examples: list[str]
    gave_up: int
    initial_connect_seconds: float
    histogram: list[int]
    reached_histogram: list[int]
    attempts: list[float]
    back_times: list[float]


def histogram(times: list[float], width: float = BIN) -> list[int]:
    return histogram_of_times(times, width)


@dataclass
class Storm:
    """A finished run of scenarios: what :func:`saved` writes as JSON."""

    settings: Settings
    machine: str
    elapsed: float
    results: list[Result]


def saved(storm: Storm, command: str) -> dict[str, Any]:
    return {
        "command": command,
        "machine": storm.machine,
        "settings": vars(storm.settings),
        "bin_seconds": BIN,
        "elapsed_seconds": round(storm.elapsed, 1),
        "results": [vars(r) for r in storm.results],
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Indented, but with each list of numbers on one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1)
    path.write_text(re.sub(r"\[[-0-9.,\s]+\]", lambda m: re.sub(r"\s+", "", m.group(0)), text) + "\n")
