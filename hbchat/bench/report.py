"""What ``hbchat-bench`` shows: the one-line summary, the JSON file and the PNG."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import textwrap
import time
from pathlib import Path
from typing import Any

from twisted.copyright import version as twisted_version

import hbchat
from hbchat.bench.settings import RunSettings
from hbchat.bench.stats import Histogram, Timeline, log_bins, ms

PLOT_NEEDS = "--plot needs matplotlib, which is not installed (pip install 'hbchat[bench]')"


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def machine() -> dict[str, Any]:
    try:
        load: list[float] | None = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "twisted": twisted_version,
        "hbchat": hbchat.__version__,
        "load_average_at_start": load,
    }


def rate_limited(data: dict[str, Any]) -> bool:
    """Whether the server's rate limit bit: any line answered ERR 429, any connection kicked."""
    limit = data["rate_limit"]
    return bool(limit["err_429"] or limit["kicked"])


def failed_by_rate_limit(data: dict[str, Any], settings: RunSettings) -> bool:
    """A rate-limited run is a failed one, unless --allow-rate-limit."""
    return rate_limited(data) and not settings.allow_rate_limit


#: Why a rate-limited run failed, and what to do: the end of its summary line.
RATE_LIMIT_FAILURE = (
    "FAILED: the server's rate limit answered ERR 429 or kicked connections (their numbers are not the server's "
    "capacity): run it with a higher --rate (or --rate 0), send less, or pass --allow-rate-limit"
)


def summary_line(data: dict[str, Any], settings: RunSettings) -> str:
    line = _summary_line(data, settings)
    if failed_by_rate_limit(data, settings):
        line += " | " + RATE_LIMIT_FAILURE
    return line


def _summary_line(data: dict[str, Any], settings: RunSettings) -> str:
    c = data["connections"]
    drops = data["drops"]["total"]
    limit = data["rate_limit"]
    drops_and_limits = f"drops {drops} | 429s {limit['err_429']} kicked {limit['kicked']}"
    lag = data["driver"]["reactor_lag"]
    cpus = [f"{value * 100:.0f}%" for value in data["driver"]["cpu_util_per_worker"] if value is not None]
    driver = f"driver cpu {'/'.join(cpus) or '-'} lag p99 {ms(lag, 'p99_ms')}"
    server = ""
    if "cpu_util_window" in data.get("server", {}):
        server = f" | server cpu {data['server']['cpu_util_window'] * 100:.0f}%"
    errors = f" | ERROR: {'; '.join(data['errors'])}" if data["errors"] else ""
    connected = f"{c['registered']}/{c['requested']} connected"
    if c["failed"]:
        connected += f" ({c['failed']} failed)"
    if settings.scenario == "idle":
        i = data["idle"]
        rtt = i["pong_rtt"]
        return (
            f"idle {settings.endpoint.describe()} | {connected} in {c['ramp_s']:.2f}s, ping every {settings.period:g}s "
            f"| rtt p50={ms(rtt, 'p50_ms')} p90={ms(rtt, 'p90_ms')} p99={ms(rtt, 'p99_ms')} max={ms(rtt, 'max_ms')} "
            f"| pings {i['client_pings_sent']} missing {i['missing_pongs']} | {drops_and_limits} "
            f"| {driver}{server}{errors}"
        )
    f = data["fanout"]
    lat = f["latency"]
    target = "flat out" if settings.rate is None else f"{settings.rate:g} msg/s"
    return (
        f"fanout {settings.endpoint.describe()} r={settings.receivers} s={settings.senders} size={settings.size} "
        f"{target} | {connected} | sent {f['achieved_msgs_per_s']:.0f} msg/s, delivered {f['delivered_per_s']:.0f}/s, "
        f"loss {f['loss'] * 100:.3f}% | latency p50={ms(lat, 'p50_ms')} p90={ms(lat, 'p90_ms')} "
        f"p99={ms(lat, 'p99_ms')} max={ms(lat, 'max_ms')} | {drops_and_limits} | {driver}{server}{errors}"
    )


def document(data: dict[str, Any], settings: RunSettings, argv: list[str], summary: str) -> dict[str, Any]:
    """The JSON file: parameters, machine, every total, the histogram and the timeline."""
    histogram = Histogram.from_json(data["_histogram"])
    timeline = data["_timeline"]
    body = {key: value for key, value in data.items() if not key.startswith("_")}
    params = {
        key: value
        for key, value in vars(settings).items()
        if key not in ("endpoint", "json_path", "plot_path", "run_tag")
    }
    document: dict[str, Any] = {
        "tool": "hbchat-bench",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime()),
        "command": ["hbchat-bench", *argv],
        "endpoint": settings.endpoint.text,
        "address": settings.endpoint.describe(),
        "run_tag": settings.run_tag,
        "params": params,
        "machine": machine(),
        "summary": summary,
        **body,
        "histogram_ms": [[round(low, 6), round(high, 6), count] for low, high, count in histogram.rows()],
    }
    if timeline is not None:
        t = Timeline.from_json(timeline)
        document["timeline"] = {
            "bin_s": t.bin_ns / 1e9,
            "from": "window start",
            "what": "arrivals per bin (every PONG, or every message of this run) and the largest latency among them",
            "counts": t.counts,
            "max_ms": [round(value / 1e6, 3) for value in t.maxima],
        }
    return document


def write_json(path: str, document: dict[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=1) + "\n")


def plot(document: dict[str, Any], path: str) -> None:
    """Latency histogram (log scale) and the timeline of the window, in one PNG."""
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    scenario = document["scenario"]
    what = "PONG round trip" if scenario == "idle" else "send -> receive latency"
    stats = document["idle"]["pong_rtt"] if scenario == "idle" else document["fanout"]["latency"]
    rows = document["histogram_ms"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), layout="constrained")
    if rows:
        bins = log_bins(rows)
        top.bar(
            [low for low, _, _ in bins],
            [count for _, _, count in bins],
            width=[high - low for low, high, _ in bins],
            align="edge",
            color="tab:blue",
        )
        top.set_xscale("log")
        for key, colour in (("p50_ms", "tab:green"), ("p90_ms", "tab:orange"), ("p99_ms", "tab:red")):
            if key in stats:
                top.axvline(stats[key], color=colour, linestyle="--", label=f"{key[:-3]} {stats[key]:.2f} ms")
        top.legend(fontsize=8)
    top.set_xlabel(f"{what}, ms (log scale)")
    top.set_ylabel("count (20 bins per decade)")
    top.grid(alpha=0.3)
    top.set_title(textwrap.fill(document["summary"], 130), fontsize=8)
    timeline = document.get("timeline")
    if timeline:
        width = timeline["bin_s"]
        # Up to the last arrival (the drain may have ended long before its limit), and 1 s more.
        last = max((i for i, count in enumerate(timeline["counts"]) if count), default=0)
        shown = min(len(timeline["counts"]), last + 1 + int(1 / width))
        starts = [i * width for i in range(shown)]
        bottom.bar(starts, timeline["counts"][:shown], width=width, align="edge", color="0.6", label="per bin")
        bottom.set_ylabel(("PONGs" if scenario == "idle" else "deliveries") + f" per {width:g} s (all, by arrival)")
        right = bottom.twinx()
        right.plot([s + width / 2 for s in starts], timeline["max_ms"][:shown], color="tab:red", label="max ms")
        right.set_ylabel("max latency in the bin, ms", color="tab:red")
        bottom.axvline(document["window"]["seconds"], color="tab:green", linestyle=":", label="window end")
        bottom.legend(fontsize=8, loc="upper left")
    bottom.set_xlabel("seconds since the window started")
    bottom.grid(alpha=0.3)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=100)
    plt.close(fig)
