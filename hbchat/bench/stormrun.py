"""
The storm's two front ends: ``benchmarks/storm.py`` (:func:`main`) and ``hbchat-bench storm``
(:func:`bench_main`).  Each runs the scenarios of :mod:`hbchat.bench.storm` in the reactor under a
time budget, writes the JSON, the plot and the text, and returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.copyright import version as twisted_version
from twisted.internet import defer, reactor
from twisted.python.failure import Failure

from hbchat.bench.storm import run_scenario
from hbchat.bench.stormclock import BenchmarkError, log
from hbchat.bench.stormdocs import write_section
from hbchat.bench.stormoptions import budget_for, outputs, parse_args
from hbchat.bench.stormplot import plot
from hbchat.bench.stormreport import section, summary_line
from hbchat.bench.stormresults import Result, Settings, Storm, saved, write_json
from hbchat.bench.stormserver import default_server_command, kill_all_servers

#: File descriptors kept free for the reactor, logs, pipes and the like.
FD_RESERVE = 256


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft fd limit to the hard one; return how many clients it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            log(f"could not raise the fd limit from {soft} to {hard}: {error}")
    if soft == resource.RLIM_INFINITY:
        return wanted
    allowed = max(1, soft - FD_RESERVE)
    if wanted > allowed:
        log(f"the fd limit is {soft}: {allowed} clients instead of {wanted}")
    return min(wanted, allowed)


def machine_note() -> str:
    try:
        load = "load average at the start {:.2f} / {:.2f} / {:.2f} (1/5/15 min)".format(*os.getloadavg())
    except OSError:
        load = "load average unknown"
    cpu = platform.processor() or platform.machine()
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, Twisted {twisted_version}; {load}"
    )


def report(results: list[Result], settings: Settings, command: str, machine: str, out: Path, write_docs: bool) -> None:
    png = out / "storm.png"
    plotted = plot(results, png)
    text = section(results, settings, command, machine, png if plotted else None, out / "performance.md")
    print(text)
    if write_docs:
        out.mkdir(parents=True, exist_ok=True)
        write_section(out / "performance.md", text)
    log(("wrote " + str(png) if plotted else "no plot") + (f", {out / 'performance.md'}" if write_docs else ""))


def redraw(args: argparse.Namespace, repo: Path) -> int:
    saved = json.loads(args.from_json.read_text())
    results = [Result(**result) for result in saved["results"]]
    out, _ = outputs(args, repo)
    report(results, Settings(**saved["settings"]), saved["command"], saved["machine"], out, args.docs)
    return 0 if all(r.all_back for r in results) else 1


async def run_scenarios(args: argparse.Namespace, server_command: str | None = None) -> Storm:
    clients = raise_fd_limit(args.clients)
    settings = Settings(
        clients=clients,
        rate=args.rate,
        max_pending=args.max_pending,
        restart_delay=args.restart_delay,
        quick_restart_delay=args.quick_restart_delay,
        retry_hint=args.retry_hint,
        connect_deadline=clients / args.rate + 60,
        storm_deadline=args.deadline,
        seed=args.seed,
        backlog=args.backlog,
    )
    machine = machine_note()
    started = time.monotonic()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="storm-") as work:
        for name in args.scenarios:
            results.append(await run_scenario(name, settings, Path(work), server_command))
    return Storm(settings, machine, time.monotonic() - started, results)


def failures(storm: Storm) -> int:
    """1 (and a log line) unless every client of every scenario came back, else 0."""
    failed = [r.name for r in storm.results if not r.all_back]
    if failed:
        log(f"FAILED: not all clients came back within {storm.settings.storm_deadline:g}s in {', '.join(failed)}")
        return 1
    return 0


async def run(args: argparse.Namespace, command: str, repo: Path) -> int:
    out, json_path = outputs(args, repo)
    storm = await run_scenarios(args)
    write_json(json_path, saved(storm, command))
    log(f"done in {storm.elapsed:.0f}s; wrote {json_path}")
    report(storm.results, storm.settings, command, storm.machine, out, args.docs)
    return failures(storm)


def drive(work: Callable[[], Any], budget: float, timeout_code: int = 2) -> int:
    """
    Run ``work()`` (a coroutine) in the reactor and return its exit status.

    The servers it started are killed whatever happens, and ``budget`` seconds caps the
    whole run (the work is cancelled then, and the status is ``timeout_code``).
    """
    outcome: dict[str, Any] = {"code": 2}

    def finished(code: int) -> None:
        outcome["code"] = code

    def failed(failure: Failure) -> None:
        log(f"error: {failure.getErrorMessage()}")
        if not failure.check(BenchmarkError, defer.CancelledError):
            failure.printTraceback(file=sys.stderr)

    stopper: Callable[[Any], Any] = lambda _: reactor.stop()  # noqa: E731
    d = defer.ensureDeferred(work())
    d.addCallbacks(finished, failed)
    d.addBoth(stopper)

    # A hard ceiling on the whole run, whatever happens.
    def time_up() -> None:
        outcome["code"] = timeout_code
        log(f"the time budget ({budget:g}s) is used up: stopping")
        d.cancel()

    watchdog = reactor.callLater(budget, time_up)
    reactor.addSystemEventTrigger("before", "shutdown", kill_all_servers)
    reactor.run()
    kill_all_servers()
    if not d.called:
        log("stopped before the benchmark finished; its servers are killed")
    if watchdog.active():
        watchdog.cancel()
    return int(outcome["code"])


def main(argv: list[str] | None = None, repo: Path | None = None) -> int:
    """``benchmarks/storm.py``; ``repo`` is the checkout whose docs/ and benchmarks/ ``--docs`` writes."""
    argv = sys.argv[1:] if argv is None else argv
    repo = Path.cwd() if repo is None else repo
    args = parse_args(argv)
    if args.from_json is not None:
        return redraw(args, repo)
    command = "python benchmarks/storm.py " + " ".join(argv)
    return drive(lambda: run(args, command.strip(), repo), budget_for(args))


async def run_bench(args: argparse.Namespace, command: str) -> int:
    storm = await run_scenarios(args, args.server_cmd)
    summary = summary_line(storm)
    if args.json is not None:
        data = saved(storm, command)
        data["summary"] = summary
        data["server_command"] = args.server_cmd or default_server_command(args.backlog)
        write_json(Path(args.json), data)
        log(f"wrote {args.json}")
    if args.plot is not None and plot(storm.results, Path(args.plot)):
        log(f"wrote {args.plot}")
    print(summary, flush=True)
    return failures(storm)


def bench_main(args: argparse.Namespace, argv: list[str]) -> int:
    """``hbchat-bench storm``, with arguments parsed and checked by :mod:`hbchat.bench.cli`."""
    command = "hbchat-bench " + " ".join(shlex.quote(arg) for arg in argv)
    return drive(lambda: run_bench(args, command), min(budget_for(args), args.max_time), timeout_code=3)
