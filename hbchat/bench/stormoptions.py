"""
Reconnect storm: N clients, a server restart, and when every one of them tries to come back.

The options of the storm's two front ends (``benchmarks/storm.py`` and ``hbchat-bench storm``),
their defaults and their checks (pure: no reactor).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hbchat.bench.stormresults import DEFAULT_SCENARIOS, SCENARIOS, SMOKE_SCENARIOS


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, help="clients to connect (default 2000; 50 with --smoke)")
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for storm.png, the JSON and (with --docs) performance.md "
        "(default: docs/ with --docs, else a fresh temporary directory)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="results file (default: benchmarks/storm-results.json with --docs, else storm-results.json in --out)",
    )
    parser.add_argument("--smoke", action="store_true", help="50 clients, short hint; exit 1 unless all come back")
    add_storm_options(parser)
    parser.add_argument(
        "--docs",
        action="store_true",
        help="write the results into the checkout: the 'Reconnect storm' section of docs/performance.md "
        "(only that section is replaced), docs/storm.png and benchmarks/storm-results.json; "
        "without it nothing in the checkout is written",
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="do not write performance.md (the default; kept for old scripts)"
    )
    parser.add_argument(
        "--from-json", type=Path, metavar="JSON", help="run nothing: redraw the plot and the section from saved results"
    )
    args = parser.parse_args(argv)
    if args.docs and args.no_docs:
        parser.error("--docs and --no-docs contradict each other: choose one")
    apply_defaults(args, parser)
    return args


def add_storm_options(parser: argparse.ArgumentParser, backlog_help: str | None = None) -> None:
    """The options that shape the storm itself, shared by both front ends."""
    default_list = " ".join(DEFAULT_SCENARIOS)
    parser.add_argument(
        "--scenarios", nargs="+", metavar="NAME", choices=sorted(SCENARIOS), help=f"default: {default_list}"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="initial connects per second (default 500)")
    parser.add_argument("--max-pending", type=int, default=200, help="unregistered clients at once while ramping")
    parser.add_argument("--restart-delay", type=float, default=1.0, help="seconds from stop to respawn (default 1)")
    parser.add_argument(
        "--quick-restart-delay", type=float, default=0.2, help="the same for the *-quick scenarios (default 0.2)"
    )
    parser.add_argument("--retry-hint", type=float, help="server --retry-hint (default 10; 2 with --smoke)")
    parser.add_argument("--deadline", type=float, help="seconds after the stop for all to be back (default 60/20)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the clients' jitter")
    parser.add_argument(
        "--backlog", type=int, help=backlog_help or "listen backlog for the server (default: hbchat's, 1024)"
    )


def apply_defaults(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Fill in what depends on --smoke, and refuse values out of range (``parser.error``)."""
    if args.scenarios is None:
        args.scenarios = SMOKE_SCENARIOS if args.smoke else DEFAULT_SCENARIOS
    if args.smoke:
        args.clients = 50 if args.clients is None else args.clients
        args.retry_hint = 2.0 if args.retry_hint is None else args.retry_hint
        args.deadline = 20.0 if args.deadline is None else args.deadline
    args.clients = 2000 if args.clients is None else args.clients
    args.retry_hint = 10.0 if args.retry_hint is None else args.retry_hint
    args.deadline = 60.0 if args.deadline is None else args.deadline
    if not (0 < args.clients <= 20000):
        parser.error("--clients must be between 1 and 20000")
    delays_ok = 0 <= args.restart_delay <= 30 and 0 <= args.quick_restart_delay <= 30
    if not (0 < args.rate and 0 < args.max_pending and delays_ok and 0 < args.deadline <= 600):
        parser.error("--rate and --max-pending must be positive, restart delays 0 to 30, --deadline at most 600")


def outputs(args: argparse.Namespace, repo: Path) -> tuple[Path, Path]:
    """
    Where the PNG (and, with ``--docs``, performance.md) go, and where the JSON goes.

    Only ``--docs`` points them into the checkout (docs/, benchmarks/); otherwise they go to
    ``--out`` or a fresh temporary directory, so that a run leaves the checkout as it was.
    """
    if args.out is not None:
        out: Path = args.out
    elif args.docs:
        out = repo / "docs"
    else:
        out = Path(tempfile.mkdtemp(prefix="storm-"))
    json_path: Path = args.json or (repo / "benchmarks/storm-results.json" if args.docs else out / "storm-results.json")
    return out, json_path


def budget_for(args: argparse.Namespace) -> float:
    return float(len(args.scenarios) * (args.clients / args.rate + 90 + args.deadline) + 60)
