"""The storm's plot: connection attempts per 100 ms after the restart, and the share of clients back (matplotlib)."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

from hbchat.bench.stormclock import log
from hbchat.bench.stormreport import backoff_label, seconds, stop_label
from hbchat.bench.stormresults import BIN, Result

#: Beyond this many seconds the plot switches to a second, compressed panel (a broken axis),
#: so that a late wave (clients stalled for the HELLO timeout) does not squash the rest.
PLOT_SPLIT = 15.0


def plot(results: list[Result], path: Path) -> bool:
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    span = max((len(r.histogram) for r in results), default=1) * BIN
    span = max(span, max((r.time_all_back or 0.0) for r in results)) + 0.3
    late = [t for r in results for t in (*r.attempts, *r.back_times) if t > PLOT_SPLIT]
    split = bool(late)
    windows = [(0.0, PLOT_SPLIT), (math.floor(min(late)) - 0.5, span)] if split else [(0.0, span)]
    peak = max((r.peak_per_bin for r in results), default=1)
    fig = plt.figure(figsize=(11, 2.6 * len(results) + 0.6), layout="constrained")
    rows = fig.subfigures(len(results), 1, squeeze=False)[:, 0]
    legend: tuple[list[Any], list[str]] | None = None
    axes = []
    for row, r in enumerate(results):
        axes.append(
            rows[row].subplots(1, len(windows), sharey=True, squeeze=False, width_ratios=[3, 1] if split else [1])[0]
        )
        reached = r.reached_histogram + [0] * (len(r.histogram) - len(r.reached_histogram))
        other = [total - ok for total, ok in zip(r.histogram, reached, strict=True)]
        starts = [i * BIN for i in range(len(r.histogram))]
        percent_back = [(i + 1) / r.clients * 100 for i in range(len(r.back_times))]
        for column, (low, high) in enumerate(windows):
            ax = axes[row][column]
            ax.bar(starts, reached, width=BIN, align="edge", color="tab:blue", label="attempts that reached the server")
            ax.bar(starts, other, width=BIN, align="edge", bottom=reached, color="0.7", label="attempts refused")
            ax.set_ylim(0, peak * 1.15)
            ax.set_xlim(low, high)
            ax.grid(axis="y", alpha=0.3)
            ax.axvline(r.server_listening_at, color="tab:green", linestyle="--", label="new server listening")
            if r.time_all_back is not None:
                ax.axvline(r.time_all_back, color="tab:red", linestyle=":", label="last client back")
            back = ax.twinx()
            (line,) = back.step(
                [0.0, *r.back_times, span],
                [0.0, *percent_back, percent_back[-1] if percent_back else 0.0],
                where="post",
                color="tab:orange",
                label="% of clients registered again",
            )
            back.set_ylim(0, 105)
            if column == len(windows) - 1:
                back.set_ylabel("% back", color="tab:orange")
            else:
                back.set_yticks([])
            if column == 0:
                ax.set_ylabel("attempts / 100 ms")
            else:
                ax.tick_params(axis="y", left=False)
                ax.spines["left"].set_linestyle((0, (2, 2)))
            if legend is None:
                handles, labels = ax.get_legend_handles_labels()
                legend = ([*handles, line], [*labels, line.get_label()])
        stalled = f", {r.stalled_connections} stalled" if r.stalled_connections else ""
        rows[row].suptitle(
            f"{backoff_label(r).replace('`', '')}; {stop_label(r)}: peak {r.peak_per_bin} / 100 ms "
            f"({r.live_peak_per_bin} on the new server){stalled}, all back after {seconds(r.time_all_back)}",
            fontsize=10,
        )
    if legend is not None:
        axes[0][0].legend(*legend, loc="center right", fontsize=8)
    for column in range(len(windows)):
        axes[-1][column].set_xlabel("seconds after the server was stopped" if column == 0 else "(later)")
    fig.suptitle(f"Reconnect storm: {results[0].clients} clients, one server restart (100 ms bins)", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
