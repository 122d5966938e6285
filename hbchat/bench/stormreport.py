"""
The storm's results in words (pure): the table, the findings and the "Reconnect storm"
section of docs/performance.md, and ``hbchat-bench storm``'s one-line summary.
"""

from __future__ import annotations

import os
from pathlib import Path

from hbchat.bench.stats import peak_to_mean
from hbchat.bench.stormresults import BIN, SCENARIOS, SLOW_CONNECT, STALLED, Result, Settings, Storm
from hbchat.bench.stormserver import SERVER_OPTIONS
from hbchat.client.protocol import HELLO_TIMEOUT

SECTION_TITLE = "## Reconnect storm"

BACKOFF_LABELS = {
    "stock": "stock `ReconnectingClientFactory`",
    "hbchat": "hbchat backoff",
}


def seconds(value: float | None) -> str:
    return "not all back" if value is None else f"{value:.2f} s"


def backoff_label(r: Result) -> str:
    if r.stop == "graceful" and r.variant == "hbchat":
        return f"hbchat, `BYE shutdown retry={r.retry_hint:g}`"
    if r.stop == "graceful":
        return "stock (ignores the retry hint)"
    return BACKOFF_LABELS[r.variant]


def stop_label(r: Result) -> str:
    how = "SIGKILL (crash)" if r.stop == "crash" else "SIGTERM (graceful)"
    return f"{how}, server up again at {r.server_listening_at:.2f} s"


def peak_over_mean(r: Result) -> str:
    """The busiest 100 ms over the mean 100 ms, from the stop until the last client was back."""
    if r.time_all_back is None:
        return "-"
    peak, mean = peak_to_mean(r.attempts, r.time_all_back, BIN)
    return f"{peak / mean:.2f}" if mean else "-"


def table(results: list[Result]) -> str:
    lines = [
        "| Backoff | Server stop, new server listening | Peak attempts / 100 ms (all) "
        "| Peak / 100 ms on the new server | Time until all are back | Median back | 99 % back "
        "| Total attempts | Refused | Stalled | Peak / mean |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {backoff_label(r)} | {stop_label(r)} | {r.peak_per_bin} (at {r.peak_bin_start:.1f} s) "
            f"| {r.live_peak_per_bin} (at {r.live_peak_bin_start:.1f} s) | {seconds(r.time_all_back)} "
            f"| {seconds(r.back_p50)} | {seconds(r.back_p99)} | {r.total_attempts} | {r.failed_attempts} "
            f"| {r.stalled_connections} | {peak_over_mean(r)} |"
        )
    return "\n".join(lines)


def findings(results: list[Result]) -> list[str]:
    """What the numbers say, worded from the numbers themselves (the section is regenerated each run)."""
    by_name = {r.name: r for r in results}
    stock, full, hint = (by_name.get(name) for name in ("stock-crash", "hbchat-crash", "hbchat-graceful"))
    stock_quick, full_quick = by_name.get("stock-crash-quick"), by_name.get("hbchat-crash-quick")
    points: list[str] = []

    def queue_trouble(r: Result) -> str:
        text = ""
        if r.slow_connects:
            counted = r.kernel_counters.get("ListenOverflows")
            kernel = f" (Linux counted {counted} listen-queue overflows meanwhile, system-wide)" if counted else ""
            text += (
                f" {r.slow_connects} connects took over {SLOW_CONNECT:g} s: their SYN was dropped by the server's "
                f"full listen queue{kernel} and sent again a second later."
            )
        if r.stalled_connections:
            cookies = r.kernel_counters.get("SyncookiesSent", 0)
            how = (
                f" (Linux sent {cookies} SYN cookies meanwhile, system-wide: a handshake completed with a cookie "
                "while the accept "
                "queue was full leaves the client connected and the server with no trace of it)"
                if cookies
                else ""
            )
            text += (
                f" {r.stalled_connections} connections were established for the client but never accepted by the "
                f"server{how}: those clients waited for a HELLO that never came until their {HELLO_TIMEOUT:g} s "
                f"HELLO timeout, and the last came back only after {seconds(r.time_all_back)}."
            )
        return text

    if stock is not None:
        points.append(
            f"- **Stock, crash.** The clients retry in waves: the first ({stock.peak_per_bin} attempts in the "
            f"busiest 100 ms, at {stock.peak_bin_start:.1f} s) "
            + (
                "comes while no server listens; the next, about e times later, puts"
                if stock.peak_bin_start + BIN <= stock.server_listening_at
                else "lands on the new server:"
            )
            + f" up to {stock.live_peak_per_bin} connects per 100 ms on the new server."
            + queue_trouble(stock)
        )
    if full is not None:
        versus = (lambda value: f" (stock: {value})") if stock is not None else (lambda value: "")
        points.append(
            f"- **hbchat, crash.** hbchat's backoff: at most {full.live_peak_per_bin} connects per 100 ms on the new "
            f"server{versus(stock.live_peak_per_bin if stock else 0)}; half of the clients back after "
            f"{seconds(full.back_p50)}{versus(seconds(stock.back_p50) if stock else '')}, 99 % after "
            f"{seconds(full.back_p99)}, all after {seconds(full.time_all_back)}"
            f"{versus(seconds(stock.time_all_back) if stock else '')}; {full.failed_attempts} attempts refused while "
            f"no server listened{versus(stock.failed_attempts if stock else 0)}. Refusals early in the outage do not "
            "lengthen the wait (it grows with the outage's age), so there is no tail of clients refused several "
            "times." + queue_trouble(full)
        )
    if hint is not None:
        points.append(
            f"- **hbchat, graceful stop.** With `retry={hint.retry_hint:g}` and the moment `at=` each BYE names, the "
            f"clients come back one after another until the drain plus {hint.retry_hint:g} s: at most "
            f"{hint.live_peak_per_bin} connects per 100 ms on the new server; only those sent back before it "
            f"listened ({hint.failed_attempts} refused attempts) fall back to the backoff; all back after "
            f"{seconds(hint.time_all_back)}." + queue_trouble(hint)
        )
    if stock_quick is not None:
        points.append(
            f"- **Quick restart, stock.** When the new server is up ({stock_quick.server_listening_at:.2f} s) before "
            f"the stock clients' first wave, the whole wave lands on it: {stock_quick.live_peak_per_bin} connects in "
            f"100 ms." + queue_trouble(stock_quick)
        )
    if full_quick is not None:
        points.append(
            f"- **Quick restart, hbchat.** The same quick restart with hbchat's backoff: at most "
            f"{full_quick.live_peak_per_bin} connects per 100 ms, all back after {seconds(full_quick.time_all_back)}."
            + queue_trouble(full_quick)
        )
    return [*points, ""] if points else []


def section(results: list[Result], settings: Settings, command: str, machine: str, png: Path | None, md: Path) -> str:
    quick = any(SCENARIOS[r.name][2] for r in results)
    quick_text = (
        f' ("quick" rows: {settings.quick_restart_delay:g} s, so that it is up before the stock clients\' first retry)'
        if quick
        else ""
    )
    parts = [
        SECTION_TITLE,
        "",
        f"`benchmarks/storm.py` connects {settings.clients} `ChatClientFactory` clients (all in one process, over "
        "loopback) to `twistd hbchat`, stops the server, spawns a new one on the same port "
        f"{settings.restart_delay:g} s later{quick_text}, and timestamps every connection attempt the clients make, "
        "and the moment each is registered again (WELCOME), relative to the stop. `SIGKILL` is a crash: the "
        "clients see their connections reset and nothing else, so only the backoff spreads them. `SIGTERM` is a "
        f"graceful stop: every client gets `BYE shutdown retry={settings.retry_hint:g} at=A` and comes back after "
        "A s, a moment the server chose so that the returns are spread evenly (docs/protocol.md, section 9). "
        "The stock variant is the same client with "
        "`ReconnectingClientFactory.retry` (Gaussian jitter of 12 % around a delay that starts at 1 s and grows by "
        "a factor of e, cap 30 s) instead of hbchat's backoff (the first retry after uniform(0, 1.5) s, each later "
        "one after uniform(c/2, c) s with c = min(30, max(1, half the outage's age)); reset after WELCOME). "
        "*Peak / mean*: the busiest 100 ms over the mean 100 ms, from the stop until the last client was back.",
        "",
        f"Command: `{command}`",
        "",
        f"N = {settings.clients} clients, connected at {settings.rate:g}/s before the stop. Server options: "
        f"`{' '.join(SERVER_OPTIONS)} --retry-hint {settings.retry_hint:g}`, listening with "
        + (
            f"a listen backlog of {settings.backlog}"
            if settings.backlog
            else (
                "hbchat's default listen backlog (1024; Twisted's own default of 50 overflowed "
                "in this storm, leaving clients waiting for a HELLO)"
            )
        )
        + f". Machine: {machine}. The server, the clients and whatever else runs on "
        "the machine share its CPUs, so timings move by a few hundred milliseconds between runs; the new "
        "server's start-up (Python imports) comes on top of the restart delay.",
        "",
        table(results),
        "",
        "*Peak attempts (all)*: the busiest 100 ms, counting attempts refused while no server listened. "
        "*Peak on the new server*: the busiest 100 ms counting only attempts that connected, i.e. the load the "
        "restarted server has to accept. *Time until all are back*: from the stop to the last client's WELCOME; "
        "*median* and *99 % back*: the same for half and for 99 % of them. *Refused*: attempts made while "
        f"nothing listened. *Stalled*: connections that got no HELLO for {STALLED:g} s or more.",
        "",
        *findings(results),
        *(
            [
                "The quick-restart rows are the most sensitive to timing: where the new server comes up relative to "
                "the clients' retries decides how many handshakes overflow its listen queue, so their stalled counts "
                "vary a lot from run to run. `--backlog N` reruns the storm against a server listening with "
                "`tcp:PORT:backlog=N`.",
                "",
            ]
            if quick
            else []
        ),
    ]
    if png is not None:
        rel = os.path.relpath(png, md.parent)
        parts += [f"![Connection attempts per 100 ms after a server restart]({rel})", ""]
    return "\n".join(parts)


def summary_line(storm: Storm) -> str:
    parts = []
    for r in storm.results:
        back = f"all back {seconds(r.time_all_back)}" if r.all_back else f"ONLY {r.back_count}/{r.clients} back"
        parts.append(
            f"{r.name}: {back}, p50 {seconds(r.back_p50)}, peak {r.peak_per_bin}/100ms "
            f"({r.live_peak_per_bin} on the new server), {r.total_attempts} attempts, {r.stalled_connections} stalled"
        )
    return f"storm n={storm.settings.clients} | " + " | ".join(parts)
