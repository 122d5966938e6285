#!/usr/bin/env python3
"""
A picture of a load run, drawn from the server's own ``/metrics``: no Prometheus, no Grafana.

Starts ``twistd hbchat`` with ``--metrics`` (loopback only), scrapes ``/metrics`` every
``--interval`` seconds while ``hbchat-bench idle`` connects ``--clients`` clients, holds
them for ``--duration`` seconds and lets them go, then plots from the scrapes:

1. connections open and users registered;
2. the round trip of the server's PINGs: p50 and p99 of each scrape interval, computed from
   the deltas of the ``hbchat_ping_rtt_seconds`` histogram buckets as Prometheus's
   ``histogram_quantile`` would (linear within a bucket);
3. PINGs sent per second, and the reactor lag (largest of each interval, from its histogram).

Usage::

    python benchmarks/metrics_plot.py --out docs/metrics-run.png      # about a minute
    python benchmarks/metrics_plot.py --clients 100 --duration 5 --out /tmp/small.png

Needs matplotlib (``pip install '.[bench]'``) and the installed ``twistd`` and
``hbchat-bench`` (found next to this Python, else on PATH).  Both processes it starts are
stopped by PID when it ends, also on errors; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

DEADLINE = 30.0


def find_executable(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"metrics_plot: no {name} next to {sys.executable} or on PATH (pip install .)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fetch(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode("utf-8", "replace")


def parse(text: str) -> dict[str, Any]:
    """The samples this script plots, from one scrape."""
    values: dict[str, Any] = {"rtt": {}, "lag": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "hbchat_connections_open":
                values["open"] = values.get("open", 0.0) + value
            elif name in ("hbchat_users_registered", "hbchat_pings_sent_total", "hbchat_pongs_received_total"):
                values[name] = value
            elif name == "hbchat_ping_rtt_seconds_bucket":
                values["rtt"][float(labels["le"])] = value
            elif name == "hbchat_reactor_lag_seconds_bucket":
                values["lag"][float(labels["le"])] = value
    return values


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """``histogram_quantile(q, ...)`` over the increase of cumulative buckets between two scrapes."""
    bounds = sorted(after)
    increase = [after[bound] - before.get(bound, 0.0) for bound in bounds]
    total = increase[-1] if increase else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, increase, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower  # above the highest finite bucket: its bound, as Prometheus does
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def largest_bucket(before: dict[float, float], after: dict[float, float]) -> float:
    """
    The upper bound of the bucket that holds the largest observation made between two
    scrapes (0 if there was none): the lowest bucket whose increase counts them all.
    """
    total = after.get(math.inf, 0.0) - before.get(math.inf, 0.0)
    if total <= 0:
        return 0.0
    finite = sorted(bound for bound in after if not math.isinf(bound))
    for bound in finite:
        if after[bound] - before.get(bound, 0.0) >= total:
            return bound
    return finite[-1] if finite else 0.0


class Scraper(threading.Thread):
    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.started_at = time.monotonic()
        self.scrapes: list[tuple[float, dict[str, Any]]] = []
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            try:
                status, text = fetch(self.url)
                if status == 200:
                    self.scrapes.append((time.monotonic() - self.started_at, parse(text)))
                else:
                    self.errors += 1
            except OSError:
                self.errors += 1
            next_at += self.interval
            self._halt.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join(DEADLINE)


def series(scrapes: list[tuple[float, dict[str, Any]]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {key: [] for key in ("t", "open", "users", "t_mid", "p50", "p99", "pings", "lag")}
    for at, values in scrapes:
        out["t"].append(round(at, 3))
        out["open"].append(values.get("open", 0.0))
        out["users"].append(values.get("hbchat_users_registered", 0.0))
    for (t0, v0), (t1, v1) in itertools.pairwise(scrapes):
        out["t_mid"].append(round((t0 + t1) / 2, 3))
        p50, p99 = quantile(0.5, v0["rtt"], v1["rtt"]), quantile(0.99, v0["rtt"], v1["rtt"])
        out["p50"].append(None if p50 is None else p50 * 1000)
        out["p99"].append(None if p99 is None else p99 * 1000)
        pings = v1.get("hbchat_pings_sent_total", 0.0) - v0.get("hbchat_pings_sent_total", 0.0)
        out["pings"].append(pings / (t1 - t0))
        out["lag"].append(largest_bucket(v0["lag"], v1["lag"]) * 1000)
    return out


def plot(data: dict[str, list[Any]], title: str, path: str) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 8.5), sharex=True)
    top.plot(data["t"], data["open"], label="hbchat_connections_open")
    top.plot(data["t"], data["users"], label="hbchat_users_registered", linestyle="--")
    top.set_ylabel("connections")
    top.legend(loc="center right")
    top.set_title(title, fontsize=10)

    def present(key: str) -> tuple[list[float], list[float]]:
        pairs = [(t, v) for t, v in zip(data["t_mid"], data[key], strict=True) if v is not None]
        return [t for t, _ in pairs], [v for _, v in pairs]

    middle.plot(*present("p50"), label="PING round trip p50", marker=".")
    middle.plot(*present("p99"), label="p99", marker=".")
    middle.set_ylabel("ms (per scrape interval)")
    middle.set_yscale("log")
    middle.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    middle.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    middle.legend(loc="upper right")

    bottom.plot(data["t_mid"], data["pings"], label="PINGs sent per second", color="tab:green")
    bottom.set_ylabel("PINGs / s")
    bottom.set_xlabel("seconds since the first scrape")
    lag_axis = bottom.twinx()
    lag_axis.step(data["t_mid"], data["lag"], where="mid", color="tab:red", label="reactor lag (bucket of the max)")
    lag_axis.set_ylabel("reactor lag, ms")
    handles = bottom.get_legend_handles_labels()[0] + lag_axis.get_legend_handles_labels()[0]
    bottom.legend(handles, [str(h.get_label()) for h in handles], loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def stop_process(process: subprocess.Popen[bytes], name: str) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        print(f"metrics_plot: {name} ignored SIGTERM; killing it", file=sys.stderr)
        process.kill()
        process.wait(DEADLINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000, help="connections (default 1000)")
    parser.add_argument("--ramp", type=float, default=100, help="connections opened per second (default 100)")
    parser.add_argument("--duration", type=float, default=20, help="seconds the clients stay (default 20)")
    parser.add_argument("--period", type=float, default=5, help="seconds between a client's own PINGs (default 5)")
    parser.add_argument("--ping", default="1", help="the server's --ping (default 1)")
    parser.add_argument("--timeout", default="3", help="the server's --timeout (default 3)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between scrapes (default 0.5)")
    parser.add_argument("--out", default="metrics-run.png", help="the PNG to write")
    parser.add_argument("--json", help="also write the scraped series to this JSON file")
    args = parser.parse_args(argv)

    twistd, bench = find_executable("twistd"), find_executable("hbchat-bench")
    chat_port, metrics_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="hbchat-metrics-plot-")
    server_log = open(os.path.join(workdir, "twistd.log"), "wb")
    server = subprocess.Popen(
        [
            *(twistd, "-n", "--pidfile=", "hbchat", "--ping", args.ping, "--timeout", args.timeout),
            *(
                "--listen",
                f"tcp:{chat_port}:interface=127.0.0.1",
                "--metrics",
                f"tcp:{metrics_port}:interface=127.0.0.1",
            ),
            *("--max-clients", str(max(10000, args.clients * 2))),
        ],
        cwd=workdir,
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{metrics_port}"
    scraper = Scraper(base + "/metrics", args.interval)
    load: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                if fetch(base + "/readyz", 1.0)[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"metrics_plot: the server did not get ready; its log is in {workdir}")
            time.sleep(0.1)
        scraper.start()
        time.sleep(2)  # a baseline before the load
        load = subprocess.Popen(
            [
                *(bench, "idle", f"tcp:127.0.0.1:{chat_port}", "--clients", str(args.clients)),
                *("--ramp", str(args.ramp), "--period", str(args.period), "--duration", str(args.duration)),
                *("--max-time", str(args.clients / args.ramp + args.duration + 120)),
            ],
            stdout=subprocess.PIPE,
        )
        summary, _ = load.communicate()
        print(summary.decode(errors="replace").strip())
        time.sleep(4)  # the clients leave; the server settles
    finally:
        try:
            if load is not None and load.poll() is None:
                stop_process(load, "hbchat-bench")
            stop_process(server, "twistd")
        finally:
            server_log.close()
            scraper.stop()

    if len(scraper.scrapes) < 3:
        raise SystemExit(f"metrics_plot: only {len(scraper.scrapes)} scrapes; the server's log is in {workdir}")
    data = series(scraper.scrapes)
    title = (
        f"twistd hbchat --ping {args.ping} --timeout {args.timeout}: hbchat-bench idle, {args.clients} clients "
        f"at {args.ramp:g}/s, held {args.duration:g} s (PING every {args.period:g} s);\n"
        f"scraped from /metrics every {args.interval:g} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"title": title, "series": data}, indent=1) + "\n")
    plot(data, title, args.out)
    print(f"{len(scraper.scrapes)} scrapes ({scraper.errors} failed); wrote {args.out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
